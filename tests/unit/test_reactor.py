"""
Tests for L{pgtwist.reactor}.
"""

from __future__ import annotations

import os

from twisted.application.reactors import getReactorTypes
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.reactor import PgtwistReactor


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
