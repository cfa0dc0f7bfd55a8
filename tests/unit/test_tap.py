"""
Tests for L{pgtwist.app.tap}: options are parsed and the service tree is built
without starting anything.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.app import tap
from pgtwist.app.service import ListenerService, PoolerService, buildService
from pgtwist.net.endpoints import listenEndpoints
from pgtwist.pool.poolset import PoolSet
from tests.unit._tempdir import temporaryDirectory


class TapTests(SynchronousTestCase):
    """
    C{twistd pgtwist} options and service.
    """

    def writeFiles(self, main: str = "") -> Path:
        """
        A minimal configuration family in a temporary directory.
        """
        directory = temporaryDirectory(self)
        (directory / "pgtwist.conf").write_text(
            "[pgtwist]\nhost = 127.0.0.1\nport = 16543\n"
            f"unix_socket_dir = {directory}\n{main}\n[primary]\nhost = localhost\nport = 5432\n"
        )
        (directory / "pgtwist_hba.conf").write_text("host all all all trust\n")
        return directory

    def test_dropinFound(self) -> None:
        """
        C{twistd --help} finds the C{pgtwist} service maker.
        """
        names = [maker.tapname for maker in getPlugins(IServiceMaker)]
        self.assertIn("pgtwist", names)

    def test_filesNextToConfig(self) -> None:
        """
        Files not named on the command line are found next to the main file.
        """
        directory = self.writeFiles()
        options = tap.Options()
        options.parseOptions(["-c", str(directory / "pgtwist.conf")])
        self.assertEqual(options.paths["hba"], str(directory / "pgtwist_hba.conf"))
        self.assertEqual(options.configuration.main.port, 16543)
        self.assertEqual(options.configuration.hba[0].method, "trust")

    def badConfiguration(self, line: str) -> str:
        """
        Parse options naming a main file with C{line} in it; return what was
        printed on stderr, after checking that start-up stopped with status 1.
        """
        directory = self.writeFiles(line)
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        with self.assertRaises(SystemExit) as caught:
            tap.Options().parseOptions(["-c", str(directory / "pgtwist.conf")])
        self.assertEqual(caught.exception.code, 1)
        return err.getvalue()

    def test_badConfigOneLine(self) -> None:
        """
        A bad value stops start-up with one line, C{pgtwist: path:line:
        message}, and no usage text.
        """
        printed = self.badConfiguration("max_connections = abc")
        self.assertTrue(printed.startswith("pgtwist: "), printed)
        self.assertIn("pgtwist.conf:5: max_connections", printed)
        self.assertEqual(printed.count("\n"), 1)

    def test_unknownPipeline(self) -> None:
        """
        A pipeline no plugin provides is refused at start.
        """
        printed = self.badConfiguration("pipeline = statement")
        self.assertIn("unknown pipeline 'statement'", printed)
        self.assertEqual(printed.count("\n"), 1)

    def test_noConfig(self) -> None:
        """
        Without -c (or -D) there is nothing to run.
        """
        self.patch(tap.os.path, "exists", lambda path: False)
        self.assertRaises(usage.UsageError, tap.Options().parseOptions, [])

    def test_listPlugins(self) -> None:
        """
        C{--list-plugins} prints the pipelines and auth methods.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        self.assertRaises(SystemExit, tap.Options().parseOptions, ["--list-plugins"])
        self.assertIn("session", out.getvalue())
        self.assertIn("scram-sha-256", out.getvalue())

    def test_serviceTree(self) -> None:
        """
        The tree holds the pools and one listener per endpoint (TCP + unix).
        """
        directory = self.writeFiles()
        options = tap.Options()
        options.parseOptions(["-c", str(directory / "pgtwist.conf")])
        service = buildService(options.configuration, MemoryReactorClock())
        self.assertIsInstance(service, PoolerService)
        self.assertIsInstance(service.getServiceNamed("pools"), PoolSet)
        listeners = [s for s in service if isinstance(s, ListenerService)]
        self.assertEqual(
            [listener.description for listener in listeners],
            listenEndpoints(options.configuration.main),
        )
        self.assertEqual(
            listeners[1].description,
            f"unix:{directory}/.s.PGSQL.16543:mode=777:lockfile=1".replace(":", ":", 1),
        )
