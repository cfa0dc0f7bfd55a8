"""
Tests for L{pgtwist.config.authquery}: auth_query's keys in both anchors'
forms (pgagroal's C{auth_query = on}, PgBouncer's C{auth_user},
C{auth_query}, C{auth_dbname}, main section and per database), and what a
login gets from them.
"""

from __future__ import annotations

import os

from pgtwist.config import vault
from pgtwist.config.authquery import (
    DEFAULT_AUTH_QUERY,
    AuthQuerySettings,
    authQueryFor,
    authUserPassword,
    parseAuthQuery,
)
from pgtwist.config.errors import ConfigError
from pgtwist.config.model import Configuration
from tests.unit._configfiles import MINIMAL, FilesTestCase

MASTER_KEY = b"a master key for the tests"
SERVER = "[primary]\nhost = 127.0.0.1\nport = 5432\n"


class DefaultQueryTests(FilesTestCase):
    """
    The default query and the C{auth_query} value.
    """

    def test_defaultQuery(self) -> None:
        """
        The default is PgBouncer's, every name schema-qualified, and gives
        no verifier to a role past its C{VALID UNTIL}.
        """
        self.assertEqual(
            DEFAULT_AUTH_QUERY,
            "SELECT rolname, CASE WHEN rolvaliduntil < pg_catalog.now() THEN NULL "
            "ELSE rolpassword END FROM pg_catalog.pg_authid WHERE rolname = $1 AND rolcanlogin",
        )

    def test_parseAuthQuery(self) -> None:
        """
        pgagroal's boolean turns the default query on or off; anything else
        is PgBouncer's SQL text.
        """
        self.assertEqual(parseAuthQuery("on"), DEFAULT_AUTH_QUERY)
        self.assertEqual(parseAuthQuery(" TRUE "), DEFAULT_AUTH_QUERY)
        self.assertIsNone(parseAuthQuery("off"))
        self.assertEqual(
            parseAuthQuery("SELECT * FROM pgtwist.get_auth($1)"),
            "SELECT * FROM pgtwist.get_auth($1)",
        )

    def test_offByDefault(self) -> None:
        """
        Without any auth_query key no login uses it.
        """
        config = self.load(MINIMAL)
        self.assertIsNone(config.main.authQuery)
        self.assertEqual(config.main.authQueryCacheTtl, 0.0)
        self.assertEqual(config.main.authQueryCacheSize, 1000)
        self.assertIsNone(authQueryFor(config, "db", "alice"))


class MainSectionTests(FilesTestCase):
    """
    The keys of the main section.
    """

    def vault(self, name: str, users: dict[str, str]) -> str:
        """
        Write a vault encrypted with L{MASTER_KEY}.
        """
        path = os.path.join(self.directory, name)
        vault.writeUsersFile(path, users, MASTER_KEY)
        return path

    def test_pgagroalForm(self) -> None:
        """
        C{auth_query = on} runs the default query as the superuser of the
        C{-S} file, in the client's database, with its password.
        """
        superuser = self.vault("su.conf", {"postgres": "su-secret"})
        config = self.load(
            "[pgagroal]\nhost = *\nport = 2345\nauth_query = on\n" + SERVER,
            superuserPath=superuser,
            masterKey=MASTER_KEY,
        )
        self.assertEqual(self.warnings, [])
        self.assertEqual(
            authQueryFor(config, "appdb", "alice"),
            AuthQuerySettings(DEFAULT_AUTH_QUERY, "postgres", "appdb"),
        )
        self.assertEqual(authUserPassword(config, "postgres"), "su-secret")

    def test_pgbouncerForm(self) -> None:
        """
        C{auth_user} alone turns the default query on; C{auth_query} and
        C{auth_dbname} choose the query and the database; the cache keys
        are read.
        """
        users = self.vault("users.conf", {"pgtwist_auth": "auth-secret"})
        config = self.load(
            "[pgtwist]\nhost = *\nport = 6432\nauth_user = pgtwist_auth\n"
            'auth_query = "SELECT usename, passwd FROM pgtwist.get_auth($1)"\n'
            "auth_dbname = postgres\nauth_query_cache_ttl = 5m\nauth_query_cache_size = 50\n"
            + SERVER,
            usersPath=users,
            masterKey=MASTER_KEY,
        )
        self.assertEqual(
            authQueryFor(config, "appdb", "alice"),
            AuthQuerySettings(
                "SELECT usename, passwd FROM pgtwist.get_auth($1)", "pgtwist_auth", "postgres"
            ),
        )
        self.assertEqual(config.main.authQueryCacheTtl, 300.0)
        self.assertEqual(config.main.authQueryCacheSize, 50)
        self.assertEqual(authUserPassword(config, "pgtwist_auth"), "auth-secret")

    def test_authUserAloneUsesDefault(self) -> None:
        """
        C{auth_user} without C{auth_query} runs the default query.
        """
        users = self.vault("users.conf", {"pgtwist_auth": "auth-secret"})
        config = self.load(
            "[pgtwist]\nhost = *\nport = 6432\nauth_user = pgtwist_auth\n" + SERVER,
            usersPath=users,
            masterKey=MASTER_KEY,
        )
        self.assertEqual(
            authQueryFor(config, "appdb", "alice"),
            AuthQuerySettings(DEFAULT_AUTH_QUERY, "pgtwist_auth", "appdb"),
        )

    def test_noRole(self) -> None:
        """
        auth_query without C{auth_user} and without a superuser file cannot
        run: the load fails naming the file.
        """
        error = self.loadError("[pgtwist]\nhost = *\nport = 6432\nauth_query = on\n" + SERVER)
        self.assertIn("auth_query runs as auth_user, or as the superuser", str(error))
        self.assertEqual(error.key, "auth_user")

    def test_noPassword(self) -> None:
        """
        An C{auth_user} with no password in the users or superuser file is
        refused at load.
        """
        users = self.vault("users.conf", {"alice": "a"})
        error = self.loadError(
            "[pgtwist]\nhost = *\nport = 6432\nauth_user = nobody\n" + SERVER,
            usersPath=users,
            masterKey=MASTER_KEY,
        )
        self.assertIn("auth_query runs as 'nobody', who has no password", str(error))

    def test_cacheSizeAtLeastOne(self) -> None:
        """
        The cache holds at least one answer.
        """
        error = self.loadError(
            "[pgtwist]\nhost = *\nport = 6432\nauth_query_cache_size = 0\n" + SERVER
        )
        self.assertEqual(error.key, "auth_query_cache_size")


class PerDatabaseTests(FilesTestCase):
    """
    PgBouncer's per-database keys as C{key=value} words of a
    databases-file line.
    """

    def setUp(self) -> None:
        super().setUp()
        path = os.path.join(self.directory, "users.conf")
        vault.writeUsersFile(path, {"auth_a": "a", "auth_b": "b"}, MASTER_KEY)
        self.users = path

    def loadLimits(self, main: str, limits: str) -> Configuration:
        """
        Load C{main} with C{limits} as the databases file.
        """
        return self.load(
            main + SERVER,
            limitsPath=self.write("databases.conf", limits),
            usersPath=self.users,
            masterKey=MASTER_KEY,
        )

    def test_options(self) -> None:
        """
        Words after the columns set the line's auth keys; a quoted value
        holds spaces, C{""} one quote; columns before them keep their
        meaning.
        """
        config = self.loadLimits(
            "[pgtwist]\nhost = *\nport = 6432\n",
            "sales=shop all 5 1 0 session auth_user=auth_a auth_dbname=postgres\n"
            'hr all 5 auth_user=auth_b auth_query="SELECT u, p FROM s.f($1) WHERE x = ""y"""\n'
            "other all 5\n",
        )
        sales, hr, other = config.limits
        self.assertEqual(
            (sales.aliases, sales.pipeline, sales.authUser, sales.authDbname),
            (("shop",), "session", "auth_a", "postgres"),
        )
        self.assertEqual(hr.authQuery, 'SELECT u, p FROM s.f($1) WHERE x = "y"')
        self.assertEqual(
            authQueryFor(config, "sales", "alice"),
            AuthQuerySettings(DEFAULT_AUTH_QUERY, "auth_a", "postgres"),
        )
        self.assertEqual(
            authQueryFor(config, "hr", "bob"),
            AuthQuerySettings('SELECT u, p FROM s.f($1) WHERE x = "y"', "auth_b", "hr"),
        )
        self.assertIsNone(authQueryFor(config, "other", "bob"))
        self.assertIsNone(authQueryFor(config, "elsewhere", "bob"))

    def test_lineOverridesMain(self) -> None:
        """
        A line's keys override the main section's; the others come from it.
        """
        config = self.loadLimits(
            "[pgtwist]\nhost = *\nport = 6432\nauth_user = auth_a\nauth_dbname = postgres\n",
            "hr all 5 auth_user=auth_b\n",
        )
        self.assertEqual(
            authQueryFor(config, "hr", "bob"),
            AuthQuerySettings(DEFAULT_AUTH_QUERY, "auth_b", "postgres"),
        )
        self.assertEqual(
            authQueryFor(config, "sales", "bob"),
            AuthQuerySettings(DEFAULT_AUTH_QUERY, "auth_a", "postgres"),
        )

    def test_lineAuthUserWithoutPassword(self) -> None:
        """
        A line's C{auth_user} must have a password: the load fails at that
        line.
        """
        error = self.assertRaises(
            ConfigError,
            self.loadLimits,
            "[pgtwist]\nhost = *\nport = 6432\n",
            "hr all 5\nsales all 5 auth_user=nobody\n",
        )
        self.assertIn(":2: auth_query runs as 'nobody'", str(error))

    def test_badOptions(self) -> None:
        """
        An unknown key, a repeated one, an empty value or an unterminated
        quote is refused at its line.
        """
        main = "[pgtwist]\nhost = *\nport = 6432\n"
        for line, message in [
            ("hr all 5 pool_mode=session\n", "unknown option 'pool_mode'"),
            ("hr all 5 auth_user=auth_a auth_user=auth_b\n", "option 'auth_user' is given twice"),
            ("hr all 5 auth_user=\n", "option 'auth_user' needs a value"),
            ('hr all 5 auth_query="SELECT\n', "unterminated quoted value"),
            ('hr all 5 auth_query="a"b\n', "expected a space after the closing quote"),
            ("hr all 5 auth_user=auth_a session\n", "expected key=value, got 'session'"),
        ]:
            error = self.assertRaises(ConfigError, self.loadLimits, main, line)
            self.assertIn(f":1: {message}", str(error))
