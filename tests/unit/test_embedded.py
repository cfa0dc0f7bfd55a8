"""
Tests for L{pgtwist.testing.embedded}: binary discovery, the unprivileged account,
and the configuration, SQL and DSN text it generates. Nothing here runs a
program or opens a socket; the cluster itself is exercised by
C{tests/integration/test_embedded_cluster.py}.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.testing import embedded
from pgtwist.testing.embedded import (
    PostgresCluster,
    PostgresNotFound,
    RunAs,
    buildDsn,
    debianBinDirs,
    findPostgresBin,
    hbaForRoles,
    hbaText,
    pgConfigBindir,
    pgserverBinDir,
    roleSql,
    serverSettings,
    settingsText,
    unprivilegedUser,
)


def fakeInstall(*binDirs: str, programs: tuple[str, ...] = embedded.REQUIRED_PROGRAMS) -> set[str]:
    """
    The executable paths of complete installations in C{binDirs}.
    """
    return {os.path.join(d, p) for d in binDirs for p in programs}


class Lookups:
    """
    Fake system look-ups for L{findPostgresBin}, recording which were made.

    @ivar calls: The names of the look-ups made, in order.
    """

    def __init__(
        self,
        executables: set[str],
        pgConfig: str | None = None,
        debian: tuple[str, ...] = (),
        pgserver: str | None = None,
    ) -> None:
        """
        @param executables: The paths that exist and are executable.
        @param pgConfig: What C{pg_config --bindir} answers (C{None}: absent).
        @param debian: The Debian bin directories, in preference order.
        @param pgserver: The pgserver bin directory (C{None}: not installed).
        """
        self.executables = executables
        self._pgConfig = pgConfig
        self._debian = debian
        self._pgserver = pgserver
        self.calls: list[str] = []

    def find(self, environ: Mapping[str, str]) -> str:
        """
        Run L{findPostgresBin} against these fakes.
        """
        return findPostgresBin(
            environ,
            isExecutable=self.executables.__contains__,
            pgConfig=self.pgConfig,
            debian=self.debian,
            pgserver=self.pgserver,
        )

    def pgConfig(self, environ: Mapping[str, str]) -> str | None:
        """
        Fake C{pg_config --bindir}.
        """
        self.calls.append("pg_config")
        return self._pgConfig

    def debian(self) -> tuple[str, ...]:
        """
        Fake Debian directory listing.
        """
        self.calls.append("debian")
        return self._debian

    def pgserver(self) -> str | None:
        """
        Fake pgserver location.
        """
        self.calls.append("pgserver")
        return self._pgserver


class FindPostgresBinTests(SynchronousTestCase):
    """
    Tests for L{findPostgresBin}'s search order.
    """

    def test_environmentFirst(self) -> None:
        """
        C{$PGTWIST_PG_BIN} wins over everything and no other look-up is made.
        """
        lookups = Lookups(
            fakeInstall("/opt/pg/bin", "/cfg/bin", "/usr/lib/postgresql/16/bin"),
            pgConfig="/cfg/bin",
            debian=("/usr/lib/postgresql/16/bin",),
        )
        self.assertEqual(lookups.find({"PGTWIST_PG_BIN": "/opt/pg/bin"}), "/opt/pg/bin")
        self.assertEqual(lookups.calls, [])

    def test_environmentIncomplete(self) -> None:
        """
        An explicit C{$PGTWIST_PG_BIN} without C{initdb} is an error naming
        the missing program, not a silent fall-through.
        """
        lookups = Lookups(
            fakeInstall("/opt/pg/bin", programs=("postgres", "pg_ctl"))
            | fakeInstall("/usr/lib/postgresql/16/bin"),
            debian=("/usr/lib/postgresql/16/bin",),
        )
        error = self.assertRaises(PostgresNotFound, lookups.find, {"PGTWIST_PG_BIN": "/opt/pg/bin"})
        self.assertIn("PGTWIST_PG_BIN=/opt/pg/bin", str(error))
        self.assertIn("initdb", str(error))

    def test_pgConfigSecond(self) -> None:
        """
        Without C{$PGTWIST_PG_BIN}, C{pg_config --bindir} is used when it
        holds the server programs, before Debian's directories.
        """
        lookups = Lookups(
            fakeInstall("/cfg/bin", "/usr/lib/postgresql/16/bin"),
            pgConfig="/cfg/bin",
            debian=("/usr/lib/postgresql/16/bin",),
        )
        self.assertEqual(lookups.find({}), "/cfg/bin")

    def test_pgConfigWithoutServer(self) -> None:
        """
        A C{pg_config} whose bindir has only client programs (a libpq-dev
        install) is passed over for Debian's server directory.
        """
        lookups = Lookups(
            fakeInstall("/usr/bin", programs=("pg_config", "psql"))
            | fakeInstall("/usr/lib/postgresql/15/bin"),
            pgConfig="/usr/bin",
            debian=("/usr/lib/postgresql/15/bin",),
        )
        self.assertEqual(lookups.find({}), "/usr/lib/postgresql/15/bin")

    def test_debianHighestFirst(self) -> None:
        """
        The first complete Debian directory in the given order is used.
        """
        lookups = Lookups(
            fakeInstall("/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"),
            debian=("/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"),
        )
        self.assertEqual(lookups.find({}), "/usr/lib/postgresql/16/bin")

    def test_debianSkipsIncomplete(self) -> None:
        """
        A Debian version directory with only client programs is skipped.
        """
        lookups = Lookups(
            fakeInstall("/usr/lib/postgresql/17/bin", programs=("psql",))
            | fakeInstall("/usr/lib/postgresql/15/bin"),
            debian=("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/15/bin"),
        )
        self.assertEqual(lookups.find({}), "/usr/lib/postgresql/15/bin")

    def test_pgserverLast(self) -> None:
        """
        The pgserver wheel is used only when nothing else is installed, and
        every look-up is made once, in order.
        """
        lookups = Lookups(
            fakeInstall("/venv/pgserver/pginstall/bin"),
            pgserver="/venv/pgserver/pginstall/bin",
        )
        self.assertEqual(lookups.find({}), "/venv/pgserver/pginstall/bin")
        self.assertEqual(lookups.calls, ["pg_config", "debian", "pgserver"])

    def test_nothingFound(self) -> None:
        """
        With nothing installed, L{PostgresNotFound} lists every place tried.
        """
        lookups = Lookups(
            fakeInstall("/usr/bin", programs=("psql",)),
            pgConfig="/usr/bin",
            pgserver="/venv/pgserver/pginstall/bin",
        )
        error = self.assertRaises(PostgresNotFound, lookups.find, {})
        message = str(error)
        self.assertIn("$PGTWIST_PG_BIN: not set", message)
        self.assertIn("pg_config --bindir: /usr/bin lacks initdb, postgres, pg_ctl", message)
        self.assertIn("/usr/lib/postgresql/*/bin: none found", message)
        self.assertIn("pgserver wheel: /venv/pgserver/pginstall/bin lacks", message)

    def test_emptyEnvironmentValueIgnored(self) -> None:
        """
        An empty C{PGTWIST_PG_BIN} counts as unset.
        """
        lookups = Lookups(fakeInstall("/cfg/bin"), pgConfig="/cfg/bin")
        self.assertEqual(lookups.find({"PGTWIST_PG_BIN": ""}), "/cfg/bin")


class SystemLookupTests(SynchronousTestCase):
    """
    Tests for the individual look-ups L{findPostgresBin} uses by default,
    each with its system access replaced.
    """

    def test_debianOrder(self) -> None:
        """
        L{debianBinDirs} orders versions numerically, highest first, with
        non-numeric names last.
        """
        found = [
            "/usr/lib/postgresql/9.6/bin",
            "/usr/lib/postgresql/custom/bin",
            "/usr/lib/postgresql/16/bin",
            "/usr/lib/postgresql/10/bin",
        ]
        patterns: list[str] = []

        def globber(pattern: str) -> list[str]:
            patterns.append(pattern)
            return found

        self.assertEqual(
            debianBinDirs(globber),
            [
                "/usr/lib/postgresql/16/bin",
                "/usr/lib/postgresql/10/bin",
                "/usr/lib/postgresql/9.6/bin",
                "/usr/lib/postgresql/custom/bin",
            ],
        )
        self.assertEqual(patterns, ["/usr/lib/postgresql/*/bin"])

    def test_pgConfigOnPath(self) -> None:
        """
        L{pgConfigBindir} looks C{pg_config} up on the environment's C{PATH}
        and returns what it answers.
        """
        seen: list[tuple[str, str | None]] = []

        def which(name: str, path: str | None) -> str | None:
            seen.append((name, path))
            return "/usr/bin/pg_config"

        result = pgConfigBindir(
            {"PATH": "/usr/bin:/bin"},
            which=which,
            runPgConfig=lambda p: (
                "/usr/lib/postgresql/15/bin" if p == "/usr/bin/pg_config" else None
            ),
        )
        self.assertEqual(result, "/usr/lib/postgresql/15/bin")
        self.assertEqual(seen, [("pg_config", "/usr/bin:/bin")])

    def test_pgConfigMissing(self) -> None:
        """
        Without C{pg_config} on C{PATH}, L{pgConfigBindir} answers C{None}
        and runs nothing.
        """

        def run(path: str) -> str | None:
            raise AssertionError("must not run")

        self.assertIsNone(pgConfigBindir({}, which=lambda name, path: None, runPgConfig=run))

    def test_pgserverFromSpec(self) -> None:
        """
        L{pgserverBinDir} finds C{pginstall/bin} inside the package directory
        that the import system reports.
        """
        spec = SimpleNamespace(submodule_search_locations=["/venv/site-packages/pgserver"])
        self.assertEqual(
            pgserverBinDir(lambda name: spec if name == "pgserver" else None),
            "/venv/site-packages/pgserver/pginstall/bin",
        )

    def test_pgserverAbsent(self) -> None:
        """
        L{pgserverBinDir} answers C{None} when the package is not installed.
        """
        self.assertIsNone(pgserverBinDir(lambda name: None))


class UnprivilegedUserTests(SynchronousTestCase):
    """
    Tests for L{unprivilegedUser}.
    """

    def getpwnam(self, name: str) -> Any:
        """
        A fake password database with C{nobody} and C{pgrunner}.
        """
        entries = {"nobody": (65534, 65534), "pgrunner": (1001, 1002), "toor": (0, 0)}
        if name not in entries:
            raise KeyError(name)
        uid, gid = entries[name]
        return SimpleNamespace(pw_uid=uid, pw_gid=gid)

    def test_notRoot(self) -> None:
        """
        When we are not root, PostgreSQL runs as ourselves.
        """
        self.assertIsNone(unprivilegedUser({}, geteuid=lambda: 1000, getpwnam=self.getpwnam))

    def test_rootUsesNobody(self) -> None:
        """
        As root, PostgreSQL runs as C{nobody} by default.
        """
        self.assertEqual(
            unprivilegedUser({}, geteuid=lambda: 0, getpwnam=self.getpwnam),
            RunAs("nobody", 65534, 65534),
        )

    def test_rootWithOverride(self) -> None:
        """
        C{$PGTWIST_PG_USER} chooses another account.
        """
        self.assertEqual(
            unprivilegedUser(
                {"PGTWIST_PG_USER": "pgrunner"}, geteuid=lambda: 0, getpwnam=self.getpwnam
            ),
            RunAs("pgrunner", 1001, 1002),
        )

    def test_unknownUser(self) -> None:
        """
        A C{$PGTWIST_PG_USER} that does not exist is a clear error.
        """
        error = self.assertRaises(
            PostgresNotFound,
            unprivilegedUser,
            {"PGTWIST_PG_USER": "ghost"},
            geteuid=lambda: 0,
            getpwnam=self.getpwnam,
        )
        self.assertIn("'ghost'", str(error))

    def test_rootAccountRefused(self) -> None:
        """
        A C{$PGTWIST_PG_USER} with uid 0 is refused, as PostgreSQL would.
        """
        self.assertRaises(
            PostgresNotFound,
            unprivilegedUser,
            {"PGTWIST_PG_USER": "toor"},
            geteuid=lambda: 0,
            getpwnam=self.getpwnam,
        )


class HbaTests(SynchronousTestCase):
    """
    Tests for the C{pg_hba.conf} text helpers.
    """

    def test_hbaForRoles(self) -> None:
        """
        L{hbaForRoles} gives each role its method on both loopback addresses.
        """
        self.assertEqual(
            hbaForRoles({"alice": "scram-sha-256", "bob": "md5"}),
            [
                "host all alice 127.0.0.1/32 scram-sha-256",
                "host all alice ::1/128 scram-sha-256",
                "host all bob 127.0.0.1/32 md5",
                "host all bob ::1/128 md5",
            ],
        )

    def test_hbaForRolesQuotes(self) -> None:
        """
        Role names that are not plain words, or are keywords, are quoted.
        """
        self.assertEqual(
            hbaForRoles({"Odd Name": "trust", "all": "md5"})[::2],
            ['host all "Odd Name" 127.0.0.1/32 trust', 'host all "all" 127.0.0.1/32 md5'],
        )

    def test_hbaTextSuperuserFirst(self) -> None:
        """
        L{hbaText} puts the superuser's C{local} line before the given lines,
        so the cluster's own helpers keep working whatever the caller sets.
        """
        lines = hbaText("postgres", ["host all x 127.0.0.1/32 md5"]).splitlines()
        rules = [line for line in lines if not line.startswith("#")]
        self.assertEqual(rules, ["local all postgres trust", "host all x 127.0.0.1/32 md5"])


class RoleSqlTests(SynchronousTestCase):
    """
    Tests for L{roleSql}.
    """

    def test_md5(self) -> None:
        """
        An md5 role is created with md5 password encryption in effect, so
        its stored hash is an md5 one.
        """
        self.assertEqual(
            roleSql("pgt_md5", "md5-secret", "md5"),
            "SET password_encryption = 'md5';\n"
            "CREATE ROLE \"pgt_md5\" LOGIN PASSWORD 'md5-secret';\n",
        )

    def test_scramForOthers(self) -> None:
        """
        scram-sha-256, password and trust roles get SCRAM verifiers.
        """
        for method in ("scram-sha-256", "password", "trust"):
            self.assertTrue(
                roleSql("r", "p", method).startswith("SET password_encryption = 'scram-sha-256';"),
                method,
            )

    def test_quoting(self) -> None:
        """
        Names and passwords are quoted, so quotes in them cannot inject SQL.
        """
        self.assertIn(
            "CREATE ROLE \"we\"\"ird\" LOGIN PASSWORD 'it''s';",
            roleSql('we"ird', "it's", "scram-sha-256"),
        )

    def test_noPassword(self) -> None:
        """
        A role without a password gets no C{PASSWORD} clause.
        """
        self.assertIn('CREATE ROLE "r" LOGIN;', roleSql("r", None, "trust"))

    def test_unknownMethod(self) -> None:
        """
        An unknown method is refused before any SQL is produced.
        """
        self.assertRaises(ValueError, roleSql, "r", "p", "sha1")


class SettingsTests(SynchronousTestCase):
    """
    Tests for the C{postgresql.conf} settings.
    """

    def test_settings(self) -> None:
        """
        The server listens on loopback only, on our port and socket
        directory, with durability off and SCRAM password encryption.
        """
        settings = serverSettings(15432, "/tmp/x/sock", 200)
        self.assertEqual(settings["listen_addresses"], "127.0.0.1")
        self.assertEqual(settings["port"], 15432)
        self.assertEqual(settings["unix_socket_directories"], "/tmp/x/sock")
        self.assertEqual(settings["max_connections"], 200)
        self.assertEqual(settings["fsync"], "off")
        self.assertEqual(settings["password_encryption"], "scram-sha-256")

    def test_settingsText(self) -> None:
        """
        Strings are single-quoted (quotes doubled), numbers bare.
        """
        self.assertEqual(
            settingsText({"port": 5, "unix_socket_directories": "/tmp/it's"}),
            "port = 5\nunix_socket_directories = '/tmp/it''s'\n",
        )


class DsnTests(SynchronousTestCase):
    """
    Tests for L{buildDsn} and L{PostgresCluster.dsn}.
    """

    def test_plain(self) -> None:
        """
        Plain values are written bare, in libpq C{key=value} form.
        """
        self.assertEqual(
            buildDsn("127.0.0.1", 5432, "alice", "db"),
            "host=127.0.0.1 port=5432 dbname=db user=alice",
        )

    def test_password(self) -> None:
        """
        A password is appended; spaces, quotes and backslashes are quoted the
        way libpq expects, and an empty value becomes C{''}.
        """
        self.assertEqual(
            buildDsn("127.0.0.1", 1, "u", "d", "a b'c\\d"),
            "host=127.0.0.1 port=1 dbname=d user=u password='a b\\'c\\\\d'",
        )
        self.assertTrue(buildDsn("h", 1, "u", "d", "").endswith("password=''"))

    def test_clusterDsn(self) -> None:
        """
        L{PostgresCluster.dsn} points at the loopback address and the
        cluster's port; building a cluster with an explicit port and bin
        directory touches nothing.
        """
        cluster = PostgresCluster(port=15999, binDir="/nowhere/bin")
        self.assertEqual(
            cluster.dsn("pgt_md5", "pgt_md5", "md5-secret"),
            "host=127.0.0.1 port=15999 dbname=pgt_md5 user=pgt_md5 password=md5-secret",
        )
        self.assertEqual(cluster.host, "127.0.0.1")
        self.assertEqual(cluster.pgbench, "/nowhere/bin/pgbench")
        self.assertFalse(cluster.running)

    def test_socketDirBeforeStart(self) -> None:
        """
        The socket directory is unknown until the cluster is started.
        """
        cluster = PostgresCluster(port=15999, binDir="/nowhere/bin")
        self.assertRaises(RuntimeError, lambda: cluster.socketDir)

    def test_authMethodMustBeTrust(self) -> None:
        """
        A superuser method other than C{trust} is refused: the helpers
        connect without a password.
        """
        self.assertRaises(
            ValueError, PostgresCluster, port=15999, binDir="/nowhere/bin", authMethod="md5"
        )

    def test_stopBeforeStart(self) -> None:
        """
        L{PostgresCluster.stop} before L{PostgresCluster.start} does nothing.
        """
        cluster = PostgresCluster(port=15999, binDir="/nowhere/bin")
        cluster.stop()
        cluster.stop()
        self.assertFalse(cluster.running)


class RestartModeTests(SynchronousTestCase):
    """
    Tests for the shutdown mode of L{PostgresCluster.restart}.
    """

    def restarted(self, **kwargs: str) -> list[list[str]]:
        """
        The programs a running cluster (faked) runs for C{restart(**kwargs)}.
        """
        cluster = PostgresCluster(port=15999, binDir="/nowhere/bin")
        cluster._running = True
        cluster.dataDir = "/nowhere/data"
        ran: list[list[str]] = []

        def runAsServer(args: list[str], what: str, timeout: float, stdout: object = None) -> None:
            ran.append(args)

        cluster._runAsServer = runAsServer  # type: ignore[assignment,method-assign]
        cluster._startServer = lambda: ran.append(["start"])  # type: ignore[method-assign]
        cluster.restart(**kwargs)
        return ran

    def test_fastByDefault(self) -> None:
        """
        Without a mode the server is stopped with C{pg_ctl -m fast}, then
        started again.
        """
        ran = self.restarted()
        self.assertIn(["-m", "fast"], [args[3:5] for args in ran[:1]])
        self.assertEqual(ran[-1], ["start"])

    def test_immediate(self) -> None:
        """
        C{mode="immediate"} stops it as a crash would (C{pg_ctl -m
        immediate}).
        """
        ran = self.restarted(mode="immediate")
        self.assertEqual(ran[0][3:5], ["-m", "immediate"])

    def test_unknownMode(self) -> None:
        """
        Any other mode is refused before anything is stopped.
        """
        self.assertRaises(ValueError, self.restarted, mode="smart")


class ProcessGuardTests(SynchronousTestCase):
    """
    Tests for the guard that keeps a stale C{postmaster.pid} from killing an
    unrelated process.
    """

    def fakeProc(self, pid: int, cmdline: bytes) -> str:
        """
        A temporary C{/proc}-like tree holding one process's command line.
        (Not C{self.mktemp()}: under pytest that writes into the checkout.)
        """
        root = tempfile.mkdtemp(prefix="pgtwist-proc-")
        self.addCleanup(shutil.rmtree, root)
        os.makedirs(os.path.join(root, str(pid)))
        with open(os.path.join(root, str(pid), "cmdline"), "wb") as f:
            f.write(cmdline)
        return root

    def test_postgresProcess(self) -> None:
        """
        A process whose command line mentions postgres is recognised.
        """
        root = self.fakeProc(42, b"/usr/lib/postgresql/15/bin/postgres\0-D\0/tmp/x\0")
        self.assertTrue(embedded._isPostgresProcess(42, procRoot=root))

    def test_otherProcess(self) -> None:
        """
        Another program, or a pid that is gone, is not.
        """
        root = self.fakeProc(42, b"/usr/bin/vim\0")
        self.assertFalse(embedded._isPostgresProcess(42, procRoot=root))
        self.assertFalse(embedded._isPostgresProcess(43, procRoot=root))
