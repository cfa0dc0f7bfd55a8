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
    ClientSettings,
    LoginCache,
    resetsStatements,
    sessionFeature,
    splitStartupSettings,
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
            ["SET \"TimeZone\" = 'Europe/Paris'", "SET \"application_name\" = 'it''s'"],
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
                "SET \"search_path\" = 's1'",
                "SET \"statement_timeout\" = '5s'",
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
        self.assertEqual(syncStatements(client, {}, {})[0], ["SET \"search_path\" = E'a\\\\b'"])


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
