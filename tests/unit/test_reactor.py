"""
Tests for L{pgtwist.net.reactor}.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

from twisted.application.reactors import getReactorTypes
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.net.reactor import PgtwistReactor


class Recorder(Protocol):
    """
    Records data received.
    """

    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        """
        Keep it.
        """
        self.received += data


class PgtwistReactorTests(SynchronousTestCase):
    """
    The reactor dispatches events like the epoll reactor.
    """

    def test_pluginListed(self) -> None:
        """
        C{twistd --help-reactors} lists C{pgtwist}.
        """
        self.assertIn("pgtwist", [r.shortName for r in getReactorTypes()])

    def test_uvloopPluginListed(self) -> None:
        """
        C{twistd --help-reactors} lists C{uvloop} too.
        """
        self.assertIn("uvloop", [r.shortName for r in getReactorTypes()])

    def test_dispatchesReads(self) -> None:
        """
        Bytes written to a pipe reach their reader after one poll.
        """
        reactor = PgtwistReactor()
        self.addCleanup(reactor.disconnectAll)
        reader, writer = os.pipe()
        self.addCleanup(os.close, writer)
        from twisted.internet import fdesc
        from twisted.internet.process import ProcessReader

        recorder = Recorder()

        class Reader(ProcessReader):  # type: ignore[misc]
            def dataReceived(self, data: bytes) -> None:
                recorder.dataReceived(data)

        fdesc.setNonBlocking(reader)
        process = type(
            "P", (), {"childDataReceived": lambda *a: None, "childConnectionLost": lambda *a: None}
        )()
        source = Reader(reactor, process, "out", reader)
        source.dataReceived = recorder.dataReceived  # type: ignore[method-assign]
        os.write(writer, b"hello")
        reactor.doPoll(1.0)
        self.assertEqual(recorder.received, b"hello")


class UvloopReactorTests(SynchronousTestCase):
    """
    C{--reactor=uvloop} installs Twisted's asyncio reactor on uvloop.
    """

    def test_installs(self) -> None:
        """
        In a fresh interpreter (installing a reactor is global), the
        installed reactor runs on a uvloop loop and runs a delayed call. On
        PyPy, for which uvloop has no build, it refuses with what it needs.
        """
        script = (
            "from pgtwist.net.uvloopreactor import install\n"
            "reactor = install()\n"
            "reactor.callLater(0, reactor.stop)\n"
            "reactor.run()\n"
            "print(type(reactor).__name__, type(reactor._asyncioEventloop).__module__)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        if platform.python_implementation() == "PyPy":
            self.assertNotEqual(result.returncode, 0)
            self.assertIn("--reactor=uvloop needs uvloop: pip install", result.stderr)
            return
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.split(), ["AsyncioSelectorReactor", "uvloop"])
