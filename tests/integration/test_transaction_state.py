"""
Transaction pooling end to end, what survives a backend swap and what does
not (issue 3, points 2, 3 and 5): session settings (C{TimeZone}) following
the client onto the other backend, clients killed inside a transaction,
WARNINGs for session-only features, C{DEALLOCATE ALL}, and prepared
statements after DDL. Two backends; L{occupy} and L{avoid} choose which one
a client's next transaction runs on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire import constants
from pgtwist.wire.messages import ErrorResponse, Execute, Flush, Query, Sync
from tests.integration.clients import adminConnect, runningPooler, waitUntilGone
from tests.integration.pooler import Pooler
from tests.integration.pooling import (
    CLIENTS,
    HBA,
    TRANSACTION,
    TRUST,
    ExtendedClient,
    avoid,
    bind,
    concurrently,
    connect,
    direct,
    exchange,
    occupy,
    one,
    parse,
    summary,
    table,
)


@pytest.fixture
def pooler(tmp_path: Path, pgCluster: PostgresCluster) -> Iterator[Pooler]:
    """
    pgtwist in transaction mode with two backends, stopped after the test.
    """
    with runningPooler(tmp_path, pgCluster, main=TRANSACTION, hba=HBA) as running:
        yield running


@pytest.fixture
def admin(pgCluster: PostgresCluster) -> Iterator[psycopg.Connection]:
    """
    A superuser connection to the cluster itself, to watch its backends.
    """
    with adminConnect(pgCluster) as conn:
        yield conn


# -- session settings ------------------------------------------------------------------------

ZONE_PROBE = (
    "SELECT pg_backend_pid(), current_setting('TimeZone'),"
    " '2024-01-15 12:00:00+00'::timestamptz::text, now()::text"
)
"""
A query showing which backend ran it and in which time zone.
"""

NOON_UTC = {
    "America/New_York": "2024-01-15 07:00:00-05",
    "Asia/Tokyo": "2024-01-15 21:00:00+09",
    "Europe/Paris": "2024-01-15 13:00:00+01",
}
"""
Noon UTC on 15 January 2024 as C{timestamptz::text} shows it in each zone.
"""


def probeZone(conn: psycopg.Connection, zone: str, expectedNoon: str) -> int:
    """
    Check that C{conn} runs in C{zone} (C{SHOW}, conversions, C{now()}, the
    ParameterStatus it saw); return the backend pid that answered.
    """
    row = conn.execute(ZONE_PROBE).fetchone()
    assert row is not None
    pid, shown, noon, now = row
    assert (shown, noon) == (zone, expectedNoon)
    assert now[-3:] == expectedNoon[-3:] or zone == "America/New_York" and now[-3:] == "-04"
    assert conn.info.parameter_status("TimeZone") == zone
    return int(pid)


def test_timeZoneFollowsClient(pooler: Pooler, admin: psycopg.Connection) -> None:
    """
    A client that runs C{SET TimeZone} and one that set it at startup
    (C{options=-c TimeZone=...}) keep their zone in later transactions that
    run on the other backend; a client with the default zone, on the
    backend where the zone was set, keeps the default.
    """
    default = str(one(admin, "SHOW TimeZone"))
    defaultNoon = str(one(admin, "SELECT '2024-01-15 12:00:00+00'::timestamptz::text"))
    assert default not in NOON_UTC
    with connect(pooler) as york, connect(pooler, options="-c TimeZone=Asia/Tokyo") as tokyo:
        with connect(pooler) as plain:
            york.execute("SET TimeZone = 'America/New_York'")
            pid = probeZone(york, "America/New_York", NOON_UTC["America/New_York"])
            for _ in range(3):
                with occupy(pooler, pid):
                    moved = probeZone(york, "America/New_York", NOON_UTC["America/New_York"])
                    assert moved != pid
                    assert probeZone(tokyo, "Asia/Tokyo", NOON_UTC["Asia/Tokyo"]) == moved
                with occupy(pooler, moved):
                    assert probeZone(plain, default, defaultNoon) == pid
                    assert probeZone(tokyo, "Asia/Tokyo", NOON_UTC["Asia/Tokyo"]) == pid
                    assert probeZone(york, "America/New_York", NOON_UTC["America/New_York"]) == pid
            york.execute("RESET TimeZone")
            assert probeZone(york, default, defaultNoon) in (pid, moved)
            assert probeZone(plain, default, defaultNoon) in (pid, moved)


def test_startupListSetting(pooler: Pooler) -> None:
    """
    A list setting at startup (C{options=-c search_path=alpha,beta}) is two
    schemas on every backend the client's transactions use, as PostgreSQL
    reads it from a StartupMessage (C{SHOW} gives the text as sent), not
    one schema named C{"alpha,beta"} (which C{SHOW} would give with its
    double quotes).
    """
    with connect(pooler) as plain:
        plain.execute("SELECT 1")
        with connect(pooler, options="-c search_path=alpha,beta") as listed:
            assert one(listed, "SHOW search_path") == "alpha,beta"
            assert one(listed, "SELECT pg_catalog.current_setting('search_path')") == "alpha,beta"


def test_timeZonesConcurrently(pooler: Pooler, admin: psycopg.Connection) -> None:
    """
    20 clients in four zones (the default, and three set by C{SET} or at
    startup) share two backends: every transaction, in or out of
    C{BEGIN ... COMMIT}, runs in its client's zone.
    """
    default = str(one(admin, "SHOW TimeZone"))
    defaultNoon = str(one(admin, "SELECT '2024-01-15 12:00:00+00'::timestamptz::text"))
    zones = [None, *NOON_UTC]

    def work(index: int) -> set[int]:
        zone = zones[index % len(zones)]
        extra = {"options": f"-c TimeZone={zone}"} if zone and index % 2 else {}
        pids: set[int] = set()
        with connect(pooler, **extra) as conn:
            if zone and not extra:
                conn.execute(f"SET TimeZone = '{zone}'")
            for i in range(10):
                expected = (zone, NOON_UTC[zone]) if zone else (default, defaultNoon)
                if i % 2:
                    with conn.transaction():
                        pids.add(probeZone(conn, *expected))
                else:
                    pids.add(probeZone(conn, *expected))
        return pids

    pids = set().union(*concurrently(CLIENTS, work))
    assert len(pids) == 2


# -- a client dies -----------------------------------------------------------------------------


def test_clientKilledInTransaction(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    A client that vanishes after C{BEGIN; INSERT}, or in the middle of an
    extended-protocol batch (no Sync yet), leaves no trace: the row is not
    committed, its backend is closed (gone from C{pg_stat_activity}) rather
    than reused, and the next client runs outside any transaction.
    """
    with (
        table(pgCluster, "killed_t", "id int", role=TRUST),
        runningPooler(tmp_path, pgCluster, main=TRANSACTION, hba=HBA) as pooler,
    ):
        victim = ExtendedClient(pooler.port, TRUST)
        victim.query("BEGIN")
        victim.query("INSERT INTO killed_t VALUES (1)")
        [(pid,)] = victim.query("SELECT pg_backend_pid()")
        assert victim.transactionStatus == constants.TRANSACTION_IN_BLOCK
        victim.kill()
        waitUntilGone(admin, int(str(pid)))

        victim = ExtendedClient(pooler.port, TRUST)
        victim.batch(
            parse("", "INSERT INTO killed_t VALUES (2)"),
            bind(""),
            Execute(""),
            parse("", "SELECT pg_backend_pid()"),
            bind(""),
            Execute(""),
            Sync(),
        )
        assert summary(victim.results())[:3] == [
            "ParseComplete",
            "BindComplete",
            "complete INSERT 0 1",
        ]
        victim.batch(
            parse("", "INSERT INTO killed_t VALUES (3)"),
            bind(""),
            Execute(""),
            parse("", "SELECT pg_backend_pid()"),
            bind(""),
            Execute(""),
            Flush(),
        )
        replies = []
        while not replies or replies[-1] != "complete SELECT 1" or len(replies) < 6:
            replies += summary([victim.read()])
        assert replies[:3] == ["ParseComplete", "BindComplete", "complete INSERT 0 1"]
        assert replies[3:5] == ["ParseComplete", "BindComplete"]
        unsyncedPid = int(replies[5].split()[1])
        victim.kill()
        waitUntilGone(admin, unsyncedPid)

        with direct(pgCluster, TRUST) as check:
            assert one(check, "SELECT count(*) FROM killed_t WHERE id = 1") == 0
        successor = ExtendedClient(pooler.port, TRUST)
        try:
            for _ in range(4):
                assert successor.query("SELECT count(*) FROM killed_t") == [("1",)]
                assert successor.transactionStatus == constants.TRANSACTION_IDLE
                assert successor.query("SELECT txid_current_if_assigned()") == [(None,)]
        finally:
            successor.close()
        with direct(pgCluster, TRUST) as check:
            assert one(check, "SELECT array_agg(id) FROM killed_t") == [2]


def test_clientsKilledConcurrently(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    20 clients each vanish inside a transaction that inserted a row, while
    sharing two backends: none of the rows is committed, every backend that
    served them is closed, and pgtwist keeps serving.
    """
    with (
        table(pgCluster, "killed_t", "id int", role=TRUST),
        runningPooler(tmp_path, pgCluster, main=TRANSACTION, hba=HBA) as pooler,
    ):

        def work(index: int) -> int:
            victim = ExtendedClient(pooler.port, TRUST)
            victim.query("BEGIN")
            victim.query(f"INSERT INTO killed_t VALUES ({index})")
            [(pid,)] = victim.query("SELECT pg_backend_pid()")
            victim.kill()
            return int(str(pid))

        pids = concurrently(CLIENTS, work)
        assert len(set(pids)) == CLIENTS
        for pid in pids:
            waitUntilGone(admin, pid)
        survivor = ExtendedClient(pooler.port, TRUST)
        try:
            assert survivor.query("SELECT count(*) FROM killed_t") == [("0",)]
            assert survivor.transactionStatus == constants.TRANSACTION_IDLE
        finally:
            survivor.close()


# -- what transaction mode cannot carry ---------------------------------------------------------

SESSION_FEATURES = [
    "SELECT pg_advisory_lock(4242)",
    "CREATE TEMP TABLE pgtwist_temp (x int)",
    "PREPARE pgtwist_prepared AS SELECT 1",
    "DECLARE pgtwist_cursor CURSOR WITH HOLD FOR SELECT 1",
]
"""
Statements whose effect outlives the transaction, which transaction pooling
cannot carry to the client's next backend.
"""


def collectWarnings(conn: psycopg.Connection) -> list[str]:
    """
    A list that receives, from now on, C{"SEVERITY message"} for every
    notice C{conn} gets.
    """
    seen: list[str] = []

    def onNotice(diagnostic: psycopg.errors.Diagnostic) -> None:
        seen.append(f"{diagnostic.severity_nonlocalized} {diagnostic.message_primary}")

    conn.add_notice_handler(onNotice)
    return seen


def test_sessionFeatureWarnings(pooler: Pooler) -> None:
    """
    A session advisory lock, a temporary table, SQL C{PREPARE} and a C{WITH
    HOLD} cursor each get one WARNING from pgtwist (the statement still
    runs); ordinary statements, even with those words in a literal or a
    transaction-level advisory lock, get none, and neither does LISTEN,
    which transaction pooling carries (tests/integration/test_notify.py).
    """
    with connect(pooler) as conn:
        seen = collectWarnings(conn)
        for sql in SESSION_FEATURES:
            conn.execute(sql)
            assert len(seen) == 1, (sql, seen)
            assert seen.pop().startswith("WARNING pgtwist:"), sql
        conn.execute("SELECT 1")
        conn.execute("SELECT 'listen, prepare, temp, with hold, advisory'")
        conn.execute("SELECT pg_advisory_xact_lock(4242)")
        conn.execute("SELECT %s::text", ("LISTEN",))
        conn.execute("LISTEN pgtwist_channel")
        with conn.pipeline():
            conn.execute("UNLISTEN pgtwist_channel")
        with conn.transaction():
            conn.execute("SELECT 2")
        assert seen == []


def test_sessionFeatureWarningsExtended(pooler: Pooler) -> None:
    """
    The same statements sent with the extended protocol (psycopg with
    parameters, or in pipeline mode) get the same WARNING.
    """
    with connect(pooler) as conn:
        seen = collectWarnings(conn)
        conn.execute("SELECT pg_advisory_lock(%s)", (4243,))
        assert [w.split(":")[0] for w in seen] == ["WARNING pgtwist"]
        seen.clear()
        for sql in SESSION_FEATURES:
            with conn.pipeline():
                conn.execute(sql.replace("4242", "4244").replace("pgtwist_", "pgtwist_x_"))
            assert [w.split(":")[0] for w in seen] == ["WARNING pgtwist"], sql
            seen.clear()


# -- prepared statements --------------------------------------------------------------------------


def test_deallocateAll(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    C{DEALLOCATE ALL} (simple protocol) drops the client's statements as
    PostgreSQL does: a Bind of an old name fails with PostgreSQL's own
    error, and the name can be prepared again with another query. psycopg
    (C{prepare=True}) prepares again after it runs C{DEALLOCATE ALL}.
    """
    with runningPooler(tmp_path, pgCluster, main=TRANSACTION, hba=HBA) as pooler:
        client = ExtendedClient(pooler.port, TRUST)
        try:
            client.batch(parse("s1", "SELECT 1"), Sync())
            assert summary(client.results()) == ["ParseComplete", "ready I"]
            client.batch(bind("s1"), Execute(""), Sync())
            assert summary(client.results()) == [
                "BindComplete",
                "row 1",
                "complete SELECT 1",
                "ready I",
            ]
            client.send(Query("DEALLOCATE ALL"))
            assert summary(client.results()) == ["complete DEALLOCATE ALL", "ready I"]
            client.batch(bind("s1"), Execute(""), Sync())
            [error, ready] = client.results()
            assert isinstance(error, ErrorResponse)
            assert (error.code, error.message) == (
                "26000",
                'prepared statement "s1" does not exist',
            )
            assert summary([ready]) == ["ready I"]
            client.batch(parse("s1", "SELECT 2"), bind("s1"), Execute(""), Sync())
            assert summary(client.results()) == [
                "ParseComplete",
                "BindComplete",
                "row 2",
                "complete SELECT 1",
                "ready I",
            ]
        finally:
            client.close()

        with psycopg.connect(pooler.dsn(TRUST, None), autocommit=True) as conn:
            for i in range(3):
                assert one(conn, "SELECT %s::int + 10", (i,), prepare=True) == i + 10
                conn.execute("DEALLOCATE ALL")
                assert one(conn, "SELECT %s::int + 10", (i,), prepare=True) == i + 10


def test_deallocateAllExtended(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    C{DEALLOCATE ALL} sent with the extended protocol (as psycopg does in
    pipeline mode, and pg8000 always) also drops the client's statements:
    the name can be prepared again, and another client's statement of the
    same text still works on that backend afterwards.
    """
    with runningPooler(tmp_path, pgCluster, main=TRANSACTION, hba=HBA) as pooler:
        client = ExtendedClient(pooler.port, TRUST)
        other = ExtendedClient(pooler.port, TRUST)
        try:
            client.batch(
                parse("s1", "SELECT 41"),
                bind("s1"),
                Execute(""),
                parse("", "SELECT pg_backend_pid()"),
                bind(""),
                Execute(""),
                parse("", "DEALLOCATE ALL"),
                bind(""),
                Execute(""),
                Sync(),
            )
            replies = summary(client.results())
            assert replies[:4] == ["ParseComplete", "BindComplete", "row 41", "complete SELECT 1"]
            pid = int(replies[6].split()[1])
            assert replies[-4:] == [
                "ParseComplete",
                "BindComplete",
                "complete DEALLOCATE ALL",
                "ready I",
            ]
            with avoid(pooler, pid, TRUST):
                other.batch(parse("t", "SELECT 41"), bind("t"), Execute(""), Sync())
                assert summary(other.results()) == [
                    "ParseComplete",
                    "BindComplete",
                    "row 41",
                    "complete SELECT 1",
                    "ready I",
                ]
                client.batch(parse("s1", "SELECT 42"), bind("s1"), Execute(""), Sync())
                assert summary(client.results()) == [
                    "ParseComplete",
                    "BindComplete",
                    "row 42",
                    "complete SELECT 1",
                    "ready I",
                ]
        finally:
            client.close()
            other.close()


def test_psycopgPipelineDeallocatesAll(pooler: Pooler) -> None:
    """
    psycopg forgets its prepared statements after an C{ALTER} (or C{DROP},
    C{ROLLBACK}) and, in pipeline mode, sends C{DEALLOCATE ALL} with the
    extended protocol before the next query; the queries after it still
    work.
    """
    with connect(pooler, prepare_threshold=0) as conn:
        for i in range(4):
            with conn.pipeline():
                cursor = conn.execute("SELECT %s::int", (i,))
                conn.execute("ALTER TABLE IF EXISTS pgtwist_no_such_table ADD COLUMN x int")
            assert cursor.fetchall() == [(i,)]


def test_resultTypeChangedByDDL(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    C{SELECT *} prepared by psycopg (C{prepare=True}) on both backends,
    then C{ALTER TABLE ... ADD COLUMN}: on each backend the client gets
    either the new rows or a clear error the first time, and its retry
    succeeds, wherever it runs.
    """
    query = "SELECT *, pg_backend_pid() AS pid FROM ddl_t"
    with table(pgCluster, "ddl_t", "a int"), connect(pooler) as conn:
        with direct(pgCluster) as owner:
            owner.execute("INSERT INTO ddl_t VALUES (1)")
        [(a, first)] = conn.execute(query, prepare=True).fetchall()
        assert a == 1
        with occupy(pooler, first):
            [(a, second)] = conn.execute(query, prepare=True).fetchall()
            assert a == 1 and second != first
        with direct(pgCluster) as owner:
            owner.execute("ALTER TABLE ddl_t ADD COLUMN b int DEFAULT 7")
        for pid in (first, second, first, second):
            with avoid(pooler, pid):
                try:
                    rows = conn.execute(query, prepare=True).fetchall()
                except psycopg.errors.FeatureNotSupported as e:
                    assert "cached plan must not change result type" in str(e)
                    rows = conn.execute(query, prepare=True).fetchall()
                assert rows == [(1, 7, pid)]


def test_resultTypeChangedRetryElsewhere(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    After C{ALTER TABLE ... ADD COLUMN}, a client whose first try of a
    prepared C{SELECT *} failed with "cached plan must not change result
    type" succeeds when it retries, even on the other backend (where the
    statement was prepared too).
    """
    query = "SELECT *, pg_backend_pid() AS pid FROM ddl_t"
    with table(pgCluster, "ddl_t", "a int"), connect(pooler) as conn:
        with direct(pgCluster) as owner:
            owner.execute("INSERT INTO ddl_t VALUES (1)")
        [(_, first)] = conn.execute(query, prepare=True).fetchall()
        with occupy(pooler, first):
            [(_, second)] = conn.execute(query, prepare=True).fetchall()
        with direct(pgCluster) as owner:
            owner.execute("ALTER TABLE ddl_t ADD COLUMN b int DEFAULT 7")
        outcomes = []
        for pid in (first, second, first, second):
            with avoid(pooler, pid):
                try:
                    outcomes.append(conn.execute(query, prepare=True).fetchall())
                except psycopg.errors.FeatureNotSupported as e:
                    outcomes.append([e.sqlstate])
        assert outcomes[1:] == [[(1, 7, second)], [(1, 7, first)], [(1, 7, second)]]
        assert outcomes[0] in (["0A000"], [(1, 7, first)])


def test_reparseAfterResultTypeChange(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    After C{ALTER TABLE ... ADD COLUMN} made a backend's copy of a statement
    fail with "cached plan must not change result type", a new Parse of the
    same text (another statement name) on that backend works, as it does on
    PostgreSQL, and so does the old name.
    """
    with (
        table(pgCluster, "ddl_t", "a int", role=TRUST),
        runningPooler(tmp_path, pgCluster, main=TRANSACTION, hba=HBA) as pooler,
    ):
        with direct(pgCluster, TRUST) as owner:
            owner.execute("INSERT INTO ddl_t VALUES (1)")
        client = ExtendedClient(pooler.port, TRUST)
        try:
            [replies] = exchange(
                client,
                [
                    parse("s1", "SELECT * FROM ddl_t"),
                    bind("s1"),
                    Execute(""),
                    parse("", "SELECT pg_backend_pid()"),
                    bind(""),
                    Execute(""),
                    Sync(),
                ],
                1,
            )
            assert replies[:4] == ["ParseComplete", "BindComplete", "row 1", "complete SELECT 1"]
            pid = int(replies[6].split()[1])
            with direct(pgCluster, TRUST) as owner:
                owner.execute("ALTER TABLE ddl_t ADD COLUMN b int DEFAULT 7")
            with avoid(pooler, pid, TRUST):
                [first] = exchange(client, [bind("s1"), Execute(""), Sync()], 1)
                assert first in (
                    ["error 0A000 cached plan must not change result type", "ready I"],
                    ["BindComplete", "row 1,7", "complete SELECT 1", "ready I"],
                )
                for name in ("s2", "s3"):
                    assert exchange(
                        client,
                        [parse(name, "SELECT * FROM ddl_t"), bind(name), Execute(""), Sync()],
                        1,
                    ) == [
                        ["ParseComplete", "BindComplete", "row 1,7", "complete SELECT 1", "ready I"]
                    ]
                assert exchange(client, [bind("s1"), Execute(""), Sync()], 1) == [
                    ["BindComplete", "row 1,7", "complete SELECT 1", "ready I"]
                ]
        finally:
            client.close()
