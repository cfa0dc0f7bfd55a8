"""
Tests for L{pgtwist.config.validate} and L{pgtwist.config.restart}: checks
of a whole configuration, and the console's C{SET} of one key.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.errors import ConfigError
from pgtwist.config.loader import _mainParsers
from pgtwist.config.model import (
    ConfigPaths,
    Configuration,
    DatabaseLimit,
    MainSettings,
    ServerSettings,
)
from pgtwist.config.restart import RESTART_KEYS, UPGRADE_CANNOT, restartNotice, restartRequired
from pgtwist.config.validate import FILE_KEYS, changeSetting, validateConfiguration

SERVERS = (ServerSettings("primary", "127.0.0.1", 5432, True),)


def noFailover(config: Configuration) -> list[str]:
    """
    A pipeline check that refuses C{failover}, as the performance pipeline's does.
    """
    return ["fast does not support failover"] if config.main.failover else []


#: The installed pipelines the tests validate against.
PIPELINES = {"session": lambda config: [], "fast": noFailover}


def configuration(limits: tuple[DatabaseLimit, ...] = (), **main: object) -> Configuration:
    """
    A configuration read from C{etc/pgtwist.conf} with C{main} settings.
    """
    return Configuration(
        main=MainSettings(**main),  # type: ignore[arg-type]
        servers=SERVERS,
        limits=limits,
        paths=ConfigPaths(config="etc/pgtwist.conf"),
    )


class ValidateConfigurationTests(SynchronousTestCase):
    """
    L{validateConfiguration}.
    """

    def test_valid(self) -> None:
        """
        A valid configuration is returned as it is.
        """
        config = configuration(pipeline="fast")
        self.assertIs(validateConfiguration(config, PIPELINES), config)
        auto = configuration(failover=True)
        self.assertIs(validateConfiguration(auto, PIPELINES), auto)

    def test_unknownPipeline(self) -> None:
        """
        A main C{pipeline} no plugin provides names the file, the key and
        the pipelines known.
        """
        error = self.assertRaises(
            ConfigError, validateConfiguration, configuration(pipeline="bogus"), PIPELINES
        )
        self.assertEqual(
            str(error),
            "etc/pgtwist.conf: pipeline: unknown pipeline 'bogus' (known: auto, fast, session)",
        )
        self.assertEqual(error.key, "pipeline")

    def test_unknownLimitPipeline(self) -> None:
        """
        A databases-file line naming an unknown pipeline is refused at its line.
        """
        limit = DatabaseLimit("db", "all", 5, pipeline="bogus", path="etc/db.conf", line=3)
        error = self.assertRaises(
            ConfigError, validateConfiguration, configuration((limit,)), PIPELINES
        )
        self.assertEqual(str(error), "etc/db.conf:3: unknown pipeline 'bogus'")

    def test_pipelineRefuses(self) -> None:
        """
        The main pipeline's own check is applied to the whole configuration.
        """
        error = self.assertRaises(
            ConfigError,
            validateConfiguration,
            configuration(pipeline="fast", failover=True),
            PIPELINES,
        )
        self.assertEqual(str(error), "etc/pgtwist.conf: fast does not support failover")

    def test_limitPipelineRefuses(self) -> None:
        """
        So is the check of a pipeline a databases-file line names.
        """
        limit = DatabaseLimit("db", "all", 5, pipeline="fast", path="etc/db.conf", line=4)
        error = self.assertRaises(
            ConfigError,
            validateConfiguration,
            configuration((limit,), pipeline="session", failover=True),
            PIPELINES,
        )
        self.assertEqual(str(error), "etc/db.conf:4: fast does not support failover")

    def test_notFromAFile(self) -> None:
        """
        A configuration built in memory is blamed on C{pgtwist.conf}.
        """
        config = Configuration(main=MainSettings(pipeline="bogus"), servers=SERVERS)
        error = self.assertRaises(ConfigError, validateConfiguration, config, PIPELINES)
        self.assertEqual(error.path, "pgtwist.conf")


class ChangeSettingTests(SynchronousTestCase):
    """
    L{changeSetting}.
    """

    def test_changed(self) -> None:
        """
        The value is parsed as the file's would be; the rest is kept.
        """
        config = configuration(maxConnections=9)
        changed = changeSetting(config, "IDLE_TIMEOUT", "5m")
        self.assertEqual(changed.main.idleTimeout, 300.0)
        self.assertEqual(changed.main.maxConnections, 9)
        self.assertEqual(config.main.idleTimeout, MainSettings().idleTimeout)

    def test_refused(self) -> None:
        """
        Unknown keys, keys only a restart changes and bad values are refused,
        a bad value with the words the file loader uses.
        """
        config = configuration()
        for key, value, message in (
            ("nothing", "1", "unknown parameter: nothing"),
            ("port", "1", "port cannot be changed at runtime; edit the file and restart"),
            ("max_connections", "lots", "max_connections: "),
        ):
            error = self.assertRaises(ConfigError, changeSetting, config, key, value)
            self.assertTrue(error.message.startswith(message), error.message)
            self.assertEqual(error.key, key)

    def test_programsAndPathsRefused(self) -> None:
        """
        Keys that name a program or a path cannot be set: a console admin
        must not make pgtwist run a program, or write or listen where the
        file does not say. The message says how they do change: the file
        and a RELOAD, or a restart for those only a restart applies.
        """
        config = configuration()
        for key, value, message in (
            (
                "failover_script",
                "/bin/sh",
                "failover_script names a program and cannot be changed from the console; "
                "edit the file and RELOAD",
            ),
            (
                "FAILOVER_SCRIPT",
                "",
                "failover_script names a program and cannot be changed from the console; "
                "edit the file and RELOAD",
            ),
            (
                "log_path",
                "/etc/passwd",
                "log_path names a file and cannot be changed from the console; "
                "edit the file and restart",
            ),
            ("unix_socket_dir", "/tmp", "unix_socket_dir names a directory and cannot"),
            ("manhole_keys_dir", "/tmp", "manhole_keys_dir names a directory and cannot"),
            ("listen", "unix:/tmp/x.sock:mode=666", "listen names listening endpoints and"),
            ("metrics", "unix:/tmp/m.sock", "metrics names a listening endpoint and"),
            ("manhole", "unix:/tmp/h.sock", "manhole names a listening endpoint and"),
        ):
            error = self.assertRaises(ConfigError, changeSetting, config, key, value)
            self.assertTrue(error.message.startswith(message), error.message)
            self.assertEqual(error.key, key.lower())
            self.assertEqual(error.path, "etc/pgtwist.conf")

    def test_authQueryKeysRefused(self) -> None:
        """
        auth_query's SQL, role and database come from the file only: a
        console admin must not make pgtwist run SQL of its choosing as a
        PostgreSQL role (the superuser, in pgagroal's form). The cache keys
        stay settable.
        """
        config = configuration()
        for key, value in (
            ("auth_query", "SELECT pg_catalog.pg_read_file('/etc/passwd'), $1"),
            ("auth_user", "postgres"),
            ("auth_dbname", "postgres"),
        ):
            error = self.assertRaises(ConfigError, changeSetting, config, key, value)
            self.assertIn(
                "cannot be changed from the console; edit the file and RELOAD", error.message
            )
        changed = changeSetting(config, "auth_query_cache_ttl", "30s")
        self.assertEqual(changed.main.authQueryCacheTtl, 30.0)

    def test_everyPathKeyRefused(self) -> None:
        """
        Every main-section key whose name says it holds a program or a path
        is in L{FILE_KEYS}, so a new one cannot slip through C{SET}; every
        L{FILE_KEYS} entry is a real key.
        """
        keys = set(_mainParsers({}))
        suffixes = ("_script", "_path", "_dir", "_file", "_program", "_command")
        named = {key for key in keys if key.endswith(suffixes)}
        self.assertLessEqual(named, set(FILE_KEYS))
        self.assertLessEqual(set(FILE_KEYS), keys)

    def test_failoverSettable(self) -> None:
        """
        C{failover} itself stays settable: it only enables the script the
        file configured, which the console cannot change.
        """
        config = configuration(failoverScript="/usr/local/bin/failover.sh")
        changed = changeSetting(config, "failover", "on")
        self.assertTrue(changed.main.failover)
        self.assertEqual(changed.main.failoverScript, "/usr/local/bin/failover.sh")

    def test_noCheckOfTheWhole(self) -> None:
        """
        A value every key parser accepts is set even if the whole is invalid:
        L{validateConfiguration} is the next step.
        """
        self.assertEqual(changeSetting(configuration(), "pipeline", "bogus").main.pipeline, "bogus")


class RestartKeysTests(SynchronousTestCase):
    """
    L{restartRequired}.
    """

    def test_changedRestartKeys(self) -> None:
        """
        Only changed restart-only keys are listed, by their file names.
        """
        old = configuration()
        new = configuration(port=7000, maxConnections=3, logFormat="json")
        self.assertEqual(restartRequired(old, new), ["port", "log_format"])
        self.assertEqual(RESTART_KEYS["unixSocketDir"], "unix_socket_dir")

    def test_notice(self) -> None:
        """
        A reload's notice says which keys need a restart and which an
        upgrade applies (every restart-only key but where pgtwist listens
        and C{workers}).
        """
        self.assertEqual(
            restartNotice(["port", "log_format", "metrics"]),
            "changes to port take effect after a restart; changes to log_format, metrics "
            "take effect after an upgrade (pgtwist-cli upgrade) or a restart",
        )
        self.assertEqual(restartNotice(["port"]), "changes to port take effect after a restart")
        self.assertLessEqual(UPGRADE_CANNOT, set(RESTART_KEYS.values()))
