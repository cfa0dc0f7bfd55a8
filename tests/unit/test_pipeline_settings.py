"""
Tests for L{pgtwist.pipelines._settings}: the session state a client
believes in, the statements that bring a backend in line, and the queries
transaction pooling warns about or tracks.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.pipelines._settings import (
    LISTEN,
    OBJECTS,
    RESETS,
    SETTINGS,
    ClientSettings,
    LoginCache,
    customNames,
    matchStatements,
    readState,
    resetsStatements,
    sessionFeature,
    sessionFlags,
    splitStartupSettings,
    stateQuery,
    syncStatements,
)
from pgtwist.pipelines._statements import StatementRegistry
from pgtwist.pipelines.transaction import TransactionPipelineSession
from pgtwist.testing import FakeBackendPool, FakeFrontendLink


class ClientSettingsTests(SynchronousTestCase):
    """
    L{ClientSettings} and its fingerprint.
    """

    def test_equalSettingsEqualFingerprints(self) -> None:
        """
        Two clients with the same settings share a fingerprint, so neither
        needs a C{SET} on a backend the other synced.
        """
        one = ClientSettings({"TimeZone": "UTC"}, {"search_path": "s1"})
        two = ClientSettings({"TimeZone": "UTC"}, {"search_path": "s1"})
        self.assertEqual(one.fingerprint, two.fingerprint)
        self.assertNotEqual(one.fingerprint, ClientSettings({"TimeZone": "UTC"}, {}).fingerprint)

    def test_updateChangesFingerprint(self) -> None:
        """
        A new value changes the fingerprint; the same value keeps it.
        """
        settings = ClientSettings({"TimeZone": "UTC"}, {})
        before = settings.fingerprint
        settings.update("TimeZone", "UTC")
        self.assertIs(settings.fingerprint, before)
        settings.update("TimeZone", "Europe/Paris")
        self.assertNotEqual(settings.fingerprint, before)
        self.assertEqual(settings.reported["TimeZone"], "Europe/Paris")
        settings.update("TimeZone", "UTC")
        self.assertEqual(settings.fingerprint, before)

    def test_copiesItsMaps(self) -> None:
        """
        Changing the maps it was built from changes nothing.
        """
        reported = {"TimeZone": "UTC"}
        settings = ClientSettings(reported, {})
        reported["TimeZone"] = "Mars"
        self.assertEqual(settings.reported, {"TimeZone": "UTC"})

    def test_searchPath(self) -> None:
        """
        The C{search_path} statements are keyed by: a startup setting first,
        else the reported one (PostgreSQL 18), else empty.
        """
        self.assertEqual(ClientSettings({}, {"search_path": "a"}).searchPath, "a")
        self.assertEqual(ClientSettings({"search_path": "b"}, {}).searchPath, "b")
        self.assertEqual(ClientSettings({"search_path": "b"}, {"search_path": "a"}).searchPath, "a")
        self.assertEqual(ClientSettings({}, {}).searchPath, "")


class SplitStartupSettingsTests(SynchronousTestCase):
    """
    Startup settings PostgreSQL does not report.
    """

    def test_split(self) -> None:
        """
        Names are compared without case and kept lowercase.
        """
        self.assertEqual(
            splitStartupSettings(
                [("timezone", "UTC"), ("Search_Path", "s1"), ("work_mem", "1MB")],
                ["TimeZone", "client_encoding"],
            ),
            {"search_path": "s1", "work_mem": "1MB"},
        )


class SyncStatementsTests(SynchronousTestCase):
    """
    L{syncStatements} makes a backend match a client.
    """

    def test_reportedDifferences(self) -> None:
        """
        Each reported parameter whose backend value differs is set, quoted.
        """
        client = ClientSettings(
            {"TimeZone": "Europe/Paris", "DateStyle": "ISO, MDY", "application_name": "it's"},
            {},
        )
        statements, applied = syncStatements(
            client, {"TimeZone": "UTC", "DateStyle": "ISO, MDY", "application_name": ""}, {}
        )
        self.assertEqual(
            statements,
            [
                "SELECT pg_catalog.set_config('TimeZone', 'Europe/Paris', false)",
                "SELECT pg_catalog.set_config('application_name', 'it''s', false)",
            ],
        )
        self.assertEqual(applied, {})

    def test_nothingToDo(self) -> None:
        """
        A backend that already matches needs no statement.
        """
        client = ClientSettings({"TimeZone": "UTC"}, {"search_path": "s1"})
        self.assertEqual(
            syncStatements(client, {"TimeZone": "UTC"}, {"search_path": "s1"}),
            ([], {"search_path": "s1"}),
        )

    def test_readOnlySkipped(self) -> None:
        """
        Parameters a client cannot set are never set.
        """
        client = ClientSettings(
            {
                "server_version": "16.0",
                "server_encoding": "LATIN1",
                "integer_datetimes": "off",
                "is_superuser": "on",
                "session_authorization": "alice",
                "in_hot_standby": "on",
                "scram_iterations": "8192",
            },
            {},
        )
        self.assertEqual(syncStatements(client, {}, {}), ([], {}))

    def test_unreported(self) -> None:
        """
        Unreported settings are compared with what pgtwist applied: missing
        or different ones are set, and ones the client does not have are
        reset.
        """
        client = ClientSettings({}, {"search_path": "s1", "statement_timeout": "5s"})
        statements, applied = syncStatements(
            client, {}, {"statement_timeout": "1s", "work_mem": "1GB"}
        )
        self.assertEqual(
            statements,
            [
                "SELECT pg_catalog.set_config('search_path', 's1', false)",
                "SELECT pg_catalog.set_config('statement_timeout', '5s', false)",
                'RESET "work_mem"',
            ],
        )
        self.assertEqual(applied, {"search_path": "s1", "statement_timeout": "5s"})

    def test_backslashQuoted(self) -> None:
        """
        Values with backslashes are quoted whatever
        C{standard_conforming_strings} is.
        """
        client = ClientSettings({}, {"search_path": "a\\b"})
        self.assertEqual(
            syncStatements(client, {}, {})[0],
            ["SELECT pg_catalog.set_config('search_path', E'a\\\\b', false)"],
        )


class SessionFeatureTests(SynchronousTestCase):
    """
    L{sessionFeature} spots what does not survive the transaction.
    """

    def test_features(self) -> None:
        """
        Each session-only feature is named, whatever its case or position in
        a multi-statement query.
        """
        cases = {
            b"LISTEN chan\x00": "LISTEN",
            b"  listen chan": "LISTEN",
            b"PREPARE p AS SELECT 1": "SQL-level PREPARE",
            b"CREATE TEMP TABLE t (a int)": "temporary objects",
            b"create temporary view v as select 1": "temporary objects",
            b"CREATE GLOBAL TEMPORARY SEQUENCE s": "temporary objects",
            b"DECLARE c CURSOR WITH HOLD FOR SELECT 1": "WITH HOLD cursors",
            b"declare c scroll cursor\nwith hold for select 1": "WITH HOLD cursors",
            b"SELECT pg_advisory_lock(1)": "session-level advisory locks",
            b"SELECT pg_try_advisory_lock(1, 2)": "session-level advisory locks",
            b"select pg_advisory_lock_shared (1)": "session-level advisory locks",
            b"SELECT 1; LISTEN chan": "LISTEN",
        }
        for sql, feature in cases.items():
            self.assertEqual((sql, sessionFeature(sql)), (sql, feature))

    def test_notFeatures(self) -> None:
        """
        Transaction-scoped variants and look-alikes are not warned about.
        """
        for sql in (
            b"SELECT pg_advisory_xact_lock(1)",
            b"SELECT pg_try_advisory_xact_lock_shared(1)",
            b"SELECT 'listen'",
            b"SELECT * FROM preparedness",
            b"CREATE TABLE temperatures (a int)",
            b"CREATE TEMP TABLE t (a int) ON COMMIT DROP",
            b"PREPARE TRANSACTION 'gid'",
            b"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1",
            b"UNLISTEN *",
            b"",
        ):
            self.assertEqual((sql, sessionFeature(sql)), (sql, None))


class ResetsStatementsTests(SynchronousTestCase):
    """
    L{resetsStatements} spots the queries that drop every prepared statement.
    """

    def test_resets(self) -> None:
        """
        C{DEALLOCATE ALL}, C{DEALLOCATE PREPARE ALL} and C{DISCARD ALL}.
        """
        for sql in (
            b"DEALLOCATE ALL\x00",
            b"deallocate prepare all",
            b"  DISCARD ALL ; ",
            b"discard all\x00",
            b"\n\tDeallocate All",
        ):
            self.assertTrue(resetsStatements(sql), sql)

    def test_others(self) -> None:
        """
        Other statements, or several statements, do not count.
        """
        for sql in (
            b"DEALLOCATE p",
            b"DISCARD PLANS",
            b"SELECT 1",
            b"DISCARD ALL; SELECT 1",
            b"",
            b"\x00",
        ):
            self.assertFalse(resetsStatements(sql), sql)


class LoginCacheTests(SynchronousTestCase):
    """
    Transaction-mode logins reuse what a recent login with the same settings
    reported, instead of borrowing a backend.
    """

    def session(
        self, pool: FakeBackendPool, clock: Clock, cache: LoginCache, **startup: str
    ) -> Any:
        """
        A begun transaction-mode session.
        """
        frontend = FakeFrontendLink(startupParameters={"user": "u", "database": "d", **startup})
        session = TransactionPipelineSession(frontend, pool, clock, StatementRegistry(), 200, cache)
        session.begin()
        return frontend

    def test_secondLoginNeedsNoBackend(self) -> None:
        """
        Same pool and settings within the TTL: no acquire, same parameters.
        """
        clock, cache, pool = Clock(), LoginCache(ttl=60), FakeBackendPool()
        first = self.session(pool, clock, cache, application_name="a")
        self.assertEqual(len(pool.acquired), 1)
        second = self.session(pool, clock, cache, application_name="a")
        self.assertEqual(len(pool.acquired), 1)
        self.assertEqual(second.loginParameters, first.loginParameters)

    def test_otherSettingsOrExpired(self) -> None:
        """
        Other settings, or an entry older than the TTL, borrow a backend.
        """
        clock, cache, pool = Clock(), LoginCache(ttl=60), FakeBackendPool()
        self.session(pool, clock, cache, application_name="a")
        self.session(pool, clock, cache, application_name="b")
        self.assertEqual(len(pool.acquired), 2)
        clock.advance(61)
        self.session(pool, clock, cache, application_name="a")
        self.assertEqual(len(pool.acquired), 3)

    def test_agedEntriesDropped(self) -> None:
        """
        Entries older than the TTL are dropped when another is put, so that
        clients each logging in with settings of their own (an
        application_name per connection) do not fill the cache; beyond its
        size the oldest go first.
        """
        cache = LoginCache(ttl=60, maxSize=3)
        for n in range(3):
            cache.put(("pool", n), float(n), {"application_name": str(n)}, {})
        self.assertEqual(len(cache), 3)
        cache.put(("pool", 3), 10.0, {}, {})
        self.assertEqual(len(cache), 3)
        self.assertIsNone(cache.get(("pool", 0), 10.0))
        kept = cache.get(("pool", 1), 10.0)
        assert kept is not None
        self.assertEqual((kept.reported, kept.unreported), ({"application_name": "1"}, {}))
        cache.put(("pool", 1), 65.0, {}, {})
        self.assertEqual(len(cache), 2)
        for key in (("pool", 3), ("pool", 1)):
            kept = cache.get(key, 65.0)
            assert kept is not None
            self.assertEqual((kept.reported, kept.unreported), ({}, {}))
        cache.put(("pool", 4), 200.0, {}, {})
        self.assertEqual(len(cache), 1)

    def test_clientsShareUntilTheyChange(self) -> None:
        """
        The clients given one entry's settings share its maps and
        fingerprint (idle clients that logged in alike cost one copy); a
        client's own change copies what it changes, and neither the entry
        nor another client sees it.
        """
        cache = LoginCache(ttl=60)
        first = cache.put("key", 0.0, {"TimeZone": "UTC", "search_path": "a"}, {"work_mem": "4MB"})
        second = cache.get("key", 1.0)
        assert second is not None
        self.assertIs(first.reported, second.reported)
        self.assertIs(first.unreported, second.unreported)
        self.assertIs(first.fingerprint, second.fingerprint)
        self.assertEqual(second.searchPath, "a")
        first.update("TimeZone", "Europe/Paris")
        self.assertEqual(first.reported["TimeZone"], "Europe/Paris")
        self.assertEqual(second.reported["TimeZone"], "UTC")
        self.assertNotEqual(first.fingerprint, second.fingerprint)
        third = cache.get("key", 2.0)
        assert third is not None
        self.assertEqual(third.reported, {"TimeZone": "UTC", "search_path": "a"})
        self.assertEqual(third.fingerprint, second.fingerprint)
        second.adopt({"work_mem": "8MB"}, None)
        self.assertEqual(third.unreported, {"work_mem": "4MB"})
        self.assertIsNone(third.session)


class SessionFlagsTests(SynchronousTestCase):
    """
    L{sessionFlags} spots, from the query text, what may change the session
    beyond the transaction.
    """

    def test_settings(self) -> None:
        """
        C{SET}, C{SET SESSION}, C{RESET}, C{SET ROLE}, C{SET SESSION
        AUTHORIZATION}, C{set_config} and C{DISCARD}, anywhere a statement
        starts (after comments, in a multi-statement query, in a DO block or
        an EXECUTEd string), whatever the case.
        """
        for sql in (
            b"SET search_path = evil",
            b"set session statement_timeout = 1234",
            b"RESET ALL",
            b"reset role",
            b"SET ROLE other",
            b"SET SESSION AUTHORIZATION other",
            b"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            b"select set_config('my.secret', 'A-' || 'secret', false)",
            b"SELECT pg_catalog.set_config ($1, $2, false)",
            b"DISCARD ALL",
            b"discard temp",
            b"/* tenant */ SET app.tenant = '7'",
            b"-- tenant\nSET app.tenant = '7'",
            b"SELECT 1; SET TimeZone = 'UTC'",
            b"BEGIN; SET x.y = 1; COMMIT",
            b"DO $$BEGIN SET ROLE other; END$$",
            b"DO $$ BEGIN EXECUTE 'SET ROLE other'; END $$",
            b"UPDATE t SET a = set_config('x.y', '1', false)",
            b"SELECT set_config('a.b', 'x', true), set_config('c.d', 'y', false)",
            b"SELECT set_config('a.b', 'x', $1)",
            b"update t set a = 1; set role x",
            b"UPDATE t SET a = 1;\n RESET ROLE",
        ):
            self.assertTrue(sessionFlags(sql) & SETTINGS, sql)

    def test_notSettings(self) -> None:
        """
        Ordinary queries, C{UPDATE ... SET}, transaction-local C{SET LOCAL},
        C{SET TRANSACTION}, and a function's own C{SET} clause do not count:
        most need no regular expression at all.
        """
        for sql in (
            b"SELECT 1",
            b"UPDATE accounts SET balance = balance + 1 WHERE id = 3",
            b"INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 1",
            b"ALTER TABLE t ALTER c SET DEFAULT 1",
            b"SET LOCAL statement_timeout = 5",
            b"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            b"SET CONSTRAINTS ALL DEFERRED",
            b"CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = x AS 'SELECT 1'",
            b"SELECT * FROM settings_history",
            b"SELECT set_config('app.tenant', $1, true)",
            b"select set_config('app.tenant', lower('A,)'), TRUE), set_config('a.b', 'x', true)",
            b"",
        ):
            self.assertEqual((sql, sessionFlags(sql) & SETTINGS), (sql, 0))

    def test_objects(self) -> None:
        """
        What may create a session-only object; transaction-level locks and
        look-alike words do not count.
        """
        for sql in (
            b"CREATE TEMP TABLE t (a int)",
            b"create temporary view v as select 1",
            b"PREPARE p AS SELECT 1",
            b"DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            b"SELECT pg_advisory_lock(1)",
            b"SELECT pg_try_advisory_lock_shared(1, 2)",
        ):
            self.assertTrue(sessionFlags(sql) & OBJECTS, sql)
        for sql in (
            b"SELECT pg_advisory_xact_lock(1)",
            b"CREATE TABLE temperatures (a int)",
            b"SELECT * FROM preparedness",
            b"DROP TABLE a_temp",
        ):
            self.assertEqual((sql, sessionFlags(sql) & OBJECTS), (sql, 0))

    def test_listenAndResets(self) -> None:
        """
        C{LISTEN} at a statement's start (not in a literal), and the
        statements that drop every prepared statement, have bits of their
        own.
        """
        self.assertTrue(sessionFlags(b"LISTEN chan") & LISTEN)
        self.assertTrue(sessionFlags(b"SELECT 1; listen chan") & LISTEN)
        self.assertFalse(sessionFlags(b"SELECT 'listen'") & LISTEN)
        self.assertTrue(sessionFlags(b"DISCARD ALL") & RESETS)
        self.assertTrue(sessionFlags(b"DEALLOCATE ALL") & RESETS)
        self.assertFalse(sessionFlags(b"DISCARD TEMP") & RESETS)


class CustomNamesTests(SynchronousTestCase):
    """
    L{customNames} finds the custom settings a query names, which
    C{pg_settings} does not list.
    """

    def test_names(self) -> None:
        """
        Dotted names of C{SET}, C{RESET} and a literal first argument of
        C{set_config}, lowercased and unquoted; plain settings are not
        custom.
        """
        self.assertEqual(
            customNames(
                b"SET My.Secret = 1; select set_config('app.tenant', x, false);"
                b" RESET \"Ext\".y; SET search_path = a; select set_config('it''s.x', 1, false)"
            ),
            {"my.secret", "app.tenant", "ext.y", "it's.x"},
        )


class StateTests(SynchronousTestCase):
    """
    L{stateQuery}, L{readState} and L{matchStatements}: reading a backend's
    session and making another match it.
    """

    def test_queryQualified(self) -> None:
        """
        The state query names everything with its schema (the client may
        have set any C{search_path}) and asks for custom settings by quoted
        name.
        """
        sql = stateQuery({"it's.x"})
        self.assertIn("pg_catalog.pg_settings", sql)
        self.assertIn("'it''s.x'", sql)
        self.assertNotIn(" = ", sql)
        for view in ("pg_class", "pg_prepared_statements", "pg_cursors", "pg_locks"):
            self.assertIn(f"pg_catalog.{view}", sql)

    def test_read(self) -> None:
        """
        Session settings by lowercase name, custom ones that hold a value,
        the identity when it is not the login user's own, objects that are
        not zero.
        """
        rows = [
            ("s", "search_path", "evil, public"),
            ("s", "statement_timeout", "1234ms"),
            ("s", "role", "other"),
            ("c", "my.secret", "A-secret"),
            ("c", "my.reset", ""),
            ("c", "my.never", None),
            ("u", "app", "other"),
            ("o", "temporary tables", "2"),
            ("o", "WITH HOLD cursors", "0"),
        ]
        self.assertEqual(
            readState(rows, "app"),
            (
                {
                    "search_path": "evil, public",
                    "statement_timeout": "1234ms",
                    "my.secret": "A-secret",
                },
                ("app", "other"),
                {"temporary tables": 2},
            ),
        )
        self.assertIsNone(readState([("u", "app", "app")], "app")[1])

    def test_match(self) -> None:
        """
        Everything is reset first, in a query of its own; then the client's
        values are applied exactly with C{set_config} (quoted, a list such
        as C{search_path} kept as it is), then its role.
        """
        client = ClientSettings({"TimeZone": "UTC", "server_version": "15.0"}, {"work_mem": "8MB"})
        client.adopt({"search_path": '"$user", ev\'il', "my.secret": "A\\secret"}, ("app", "x"))
        queries = matchStatements(client, "app")
        self.assertEqual(queries[0], "RESET ALL; RESET SESSION AUTHORIZATION; RESET ROLE")
        self.assertEqual(
            queries[1],
            "SELECT pg_catalog.set_config('TimeZone', 'UTC', false),"
            " pg_catalog.set_config('search_path', '\"$user\", ev''il', false),"
            " pg_catalog.set_config('my.secret', E'A\\\\secret', false)",
        )
        self.assertEqual(queries[2], 'SET ROLE "x"')
        self.assertEqual(client.unreported, {})
        self.assertEqual(client.searchPath, '"$user", ev\'il')
        authorized = ClientSettings({}, {})
        authorized.adopt({}, ("boss", "boss"))
        self.assertEqual(
            matchStatements(authorized, "app")[1:], ['SET SESSION AUTHORIZATION "boss"']
        )

    def test_fingerprint(self) -> None:
        """
        Adopting a read state changes the fingerprint, so that a backend
        synced to the old one is synced again.
        """
        client = ClientSettings({"TimeZone": "UTC"}, {})
        before = client.fingerprint
        client.adopt({}, None)
        self.assertNotEqual(client.fingerprint, before)
        after = client.fingerprint
        client.adopt({}, ("app", "x"))
        self.assertNotEqual(client.fingerprint, after)
