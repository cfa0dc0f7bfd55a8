"""
Tests for L{pgtwist.config.pgagroalkeys}: pgagroal 2.x's files load as they
are, its keys honoured or warned, and C{md5} in the HBA file warned.
"""

from __future__ import annotations

import os

from pgtwist.config.loader import loadConfiguration
from pgtwist.config.model import MainSettings
from pgtwist.config.pgagroalkeys import parseServerResetQuery
from tests.unit._configfiles import FilesTestCase

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

MAIN = "[pgagroal]\nhost = *\nport = 2345\n"
SERVER = "\n[primary]\nhost = localhost\nport = 5432\n"


class Pgagroal2FilesTests(FilesTestCase):
    """
    pgagroal 2.x's sample files load.
    """

    def test_docSamples(self) -> None:
        """
        pgagroal 2.1's doc/etc/pgagroal.conf and pgagroal_hba.conf load
        without a warning.
        """
        config = loadConfiguration(
            os.path.join(FIXTURES, "pgagroal2_doc.conf"),
            os.path.join(FIXTURES, "pgagroal2_hba.conf"),
            warn=self.warnings.append,
        )
        self.assertEqual((config.main.host, config.main.port), ("localhost", 2345))
        self.assertEqual([rule.method for rule in config.hba], ["all"])
        self.assertEqual(self.warnings, [])

    def test_everyKey(self) -> None:
        """
        Every key pgagroal 2.x documents loads at its default; the two whose
        default asks for what pgtwist does not do warn, one line each, with
        the file and line.
        """
        path = os.path.join(FIXTURES, "pgagroal2_every_key.conf")
        config = loadConfiguration(path, warn=self.warnings.append)
        self.assertEqual(config.main.serverResetQuery, "DISCARD ALL")
        self.assertEqual(config.main.pipeline, "auto")
        main = config.main
        self.assertEqual(
            (main.healthCheck, main.healthCheckPeriod, main.healthCheckTimeout),
            (False, 30.0, 5.0),
        )
        with open(path) as f:
            lines = f.read().splitlines()
        where = {line.split("=")[0].strip(): n for n, line in enumerate(lines, 1) if "=" in line}
        self.assertEqual(
            [w.split(": ")[0:2] for w in self.warnings],
            [
                [f"{path}:{where['flush_timeout']}", "flush_timeout"],
                [f"{path}:{where['startup_validation']}", "startup_validation"],
            ],
        )


class PgagroalKeysTests(FilesTestCase):
    """
    Each pgagroal 2.x key pgtwist has no parser of its own for.
    """

    def test_serverResetQuery(self) -> None:
        """
        C{server_reset_query} is run before C{DISCARD ALL} unless it is
        C{DISCARD ALL}; empty is warned (pgtwist still resets).
        """
        config = self.load(MAIN + 'server_reset_query = "RESET ALL; SET ROLE NONE"\n' + SERVER)
        self.assertEqual(config.main.serverResetQuery, "RESET ALL; SET ROLE NONE")
        self.assertEqual(self.warnings, [])
        for same in ("DISCARD ALL", "discard  all;", "'DISCARD ALL'"):
            self.assertEqual(
                self.load(MAIN + f"server_reset_query = {same}\n" + SERVER).main.serverResetQuery,
                "DISCARD ALL",
            )
        self.assertEqual(MainSettings().serverResetQuery, "DISCARD ALL")
        self.assertEqual(self.warnings, [])
        config = self.load(MAIN + "server_reset_query =\n" + SERVER)
        self.assertEqual(config.main.serverResetQuery, "DISCARD ALL")
        self.assertEqual(len(self.warnings), 1)
        self.assertIn("pgtwist.conf:4: server_reset_query: empty", self.warnings[0])

    def test_parseServerResetQuery(self) -> None:
        """
        Only the statement itself is kept.
        """
        self.assertEqual(parseServerResetQuery("  DEALLOCATE ALL  "), "DEALLOCATE ALL")
        self.assertEqual(parseServerResetQuery("Discard All ;"), "DISCARD ALL")

    def test_warnedWhenAsked(self) -> None:
        """
        A value asking for what pgtwist does not do is one warning line;
        the value pgtwist does anyway is silent.
        """
        cases = {
            "server_reset_query_behavior_on_failure = ignore": "server_reset_query_behavior_on_failure",
            "startup_validation = on": "startup_validation",
            "flush_timeout = 5m": "flush_timeout",
            "failover_notify_script = /bin/true": "failover_notify_script",
            "console = 8080": "console",
        }
        for line, key in cases.items():
            del self.warnings[:]
            self.load(MAIN + line + "\n" + SERVER)
            self.assertEqual(len(self.warnings), 1, line)
            self.assertIn(f"pgtwist.conf:4: {key}", self.warnings[0])
        silent = (
            "server_reset_query_always = off\nserver_reset_query_behavior_on_failure = discard\n"
            "startup_validation = off\nflush_timeout = 0\nfailover_notify_script =\nconsole = 0\n"
            "connection_retry_delay = 100\n"
        )
        del self.warnings[:]
        self.load(MAIN + silent + SERVER)
        self.assertEqual(self.warnings, [])

    def test_serverResetQueryAlways(self) -> None:
        """
        C{server_reset_query_always} is honoured, on or off, without a
        warning; off by default.
        """
        self.assertFalse(self.load(MAIN + SERVER).main.serverResetQueryAlways)
        config = self.load(MAIN + "server_reset_query_always = on\n" + SERVER)
        self.assertTrue(config.main.serverResetQueryAlways)
        config = self.load(MAIN + "server_reset_query_always = off\n" + SERVER)
        self.assertFalse(config.main.serverResetQueryAlways)
        self.assertEqual(self.warnings, [])

    def test_channelBinding(self) -> None:
        """
        A server section's C{channel_binding} (pgagroal 2.2) is stored on
        that server, without a warning: libpq's C{disable}, C{prefer} (the
        default) and C{require}, and pgagroal's spelling C{disabled}.
        """
        self.assertEqual(self.load(MAIN + SERVER).servers[0].channelBinding, "prefer")
        for value, stored in (
            ("disable", "disable"),
            ("disabled", "disable"),
            ("prefer", "prefer"),
            ("Require", "require"),
        ):
            config = self.load(
                MAIN + SERVER + f"server_tls_sslmode = prefer\nchannel_binding = {value}\n"
            )
            self.assertEqual(config.servers[0].channelBinding, stored, value)
        self.assertEqual(self.warnings, [])

    def test_channelBindingPerServer(self) -> None:
        """
        Each server section has its own C{channel_binding}.
        """
        config = self.load(
            MAIN
            + SERVER
            + "channel_binding = require\n"
            + "\n[replica]\nhost = localhost\nport = 5433\nchannel_binding = disable\n"
        )
        self.assertEqual([s.channelBinding for s in config.servers], ["require", "disable"])

    def test_channelBindingRequireWithoutTls(self) -> None:
        """
        C{require} toward a server pgtwist never reaches over TLS (sslmode
        C{disable}, the default, or a unix socket) loads with one warning at
        its line: every login would fail.
        """
        socket = "\n[primary]\nhost = /run/postgresql\nport = 5432\nserver_tls_sslmode = require\n"
        for section in (SERVER, socket):
            del self.warnings[:]
            config = self.load(MAIN + section + "channel_binding = require\n")
            self.assertEqual(config.servers[0].channelBinding, "require")
            self.assertEqual(len(self.warnings), 1, section)
            self.assertIn("pgtwist.conf:", self.warnings[0])
            self.assertIn(": channel_binding: require needs TLS", self.warnings[0])
        del self.warnings[:]
        self.load(MAIN + SERVER + "server_tls_sslmode = prefer\nchannel_binding = require\n")
        self.assertEqual(self.warnings, [])

    def test_channelBindingBadValue(self) -> None:
        """
        Any other value is a one-line error naming the file, the line and
        the key.
        """
        error = self.loadError(MAIN + SERVER + "channel_binding = always\n")
        self.assertEqual((error.line, error.key), (8, "channel_binding"))
        self.assertIn("pgtwist.conf:8", str(error))
        self.assertIn("channel_binding", str(error))
        self.assertNotIn("\n", str(error))

    def test_badValues(self) -> None:
        """
        A value pgagroal would refuse is an error at its line.
        """
        for line in (
            "server_reset_query_behavior_on_failure = retry",
            "startup_validation = maybe",
            "server_reset_query_always = perhaps",
            "connection_retry_delay = soon",
            "console = -1",
        ):
            error = self.loadError(MAIN + line + "\n" + SERVER)
            self.assertEqual(error.line, 4, line)
            self.assertEqual(error.key, line.split(" ")[0])


class Md5WarningTests(FilesTestCase):
    """
    C{md5} in the HBA file loads, with one warning.
    """

    def test_md5Warned(self) -> None:
        """
        Two md5 lines give one warning naming the first; other methods none.
        """
        hba = self.write(
            "pgtwist_hba.conf",
            "host all all all scram-sha-256\nhost db a all md5\nhost db b all md5\n",
        )
        config = self.load(MAIN + SERVER, hbaPath=hba)
        self.assertEqual([rule.method for rule in config.hba], ["scram-sha-256", "md5", "md5"])
        self.assertEqual(len(self.warnings), 1)
        self.assertTrue(self.warnings[0].startswith(f"{hba}:2: method md5 (and 1 more"))
        del self.warnings[:]
        hba = self.write("pgtwist_hba.conf", "host all all all scram-sha-256\n")
        self.load(MAIN + SERVER, hbaPath=hba)
        self.assertEqual(self.warnings, [])
