"""
Transaction pooling never hands one client's session state to another
(issue 11, finding 4): what a client changes in its session (its role,
C{search_path}, C{statement_timeout}, a custom setting) follows it to its
next backend and never reaches the next client of its old one, and
session-only objects (temporary tables, SQL C{PREPARE}, C{WITH HOLD}
cursors, session advisory locks) keep its backend with it, with a WARNING,
until they are gone. Simple and extended protocol. Two backends; L{occupy}
and L{avoid} choose which one a client's next transaction runs on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from tests.integration.clients import adminConnect, runningPooler
from tests.integration.pooler import Pooler
from tests.integration.pooling import HBA, TRANSACTION, USER, avoid, connect, occupy, one
from tests.integration.test_admin import console, consolePooler
from tests.integration.test_transaction_state import collectWarnings

OTHER_ROLE = "pgt_txn_other"
"""
A role L{USER} may C{SET ROLE} to.
"""

PROBE = (
    "SELECT pg_backend_pid(), current_user::text, session_user::text,"
    " current_setting('search_path'), current_setting('statement_timeout'),"
    " nullif(current_setting('my.secret', true), ''),"
    " (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()),"
    " (SELECT count(*) FROM pg_prepared_statements WHERE from_sql),"
    " (SELECT count(*) FROM pg_cursors WHERE is_holdable),"
    " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
    " AND pid = pg_backend_pid())"
)
"""
What a client sees of its session: backend pid, current and session user,
C{search_path}, C{statement_timeout}, C{my.secret}, and how many temporary
relations, SQL prepared statements, holdable cursors and advisory locks it
holds.
"""


@pytest.fixture
def pooler(tmp_path: Path, pgCluster: PostgresCluster) -> Iterator[Pooler]:
    """
    pgtwist in transaction mode with two backends, and a role L{USER} may
    switch to; both gone after the test.
    """
    with adminConnect(pgCluster) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {OTHER_ROLE}")
        admin.execute(f"CREATE ROLE {OTHER_ROLE}")
        admin.execute(f"GRANT {OTHER_ROLE} TO {USER}")
    try:
        with runningPooler(tmp_path, pgCluster, main=TRANSACTION, hba=HBA) as running:
            yield running
    finally:
        with adminConnect(pgCluster) as admin:
            admin.execute(f"DROP ROLE IF EXISTS {OTHER_ROLE}")


def run(conn: psycopg.Connection, sql: str, extended: bool) -> None:
    """
    Run C{sql} on C{conn}, with the simple protocol or (psycopg's pipeline
    mode) the extended one.
    """
    if extended:
        with conn.pipeline():
            conn.execute(sql)
    else:
        conn.execute(sql)


def probe(conn: psycopg.Connection, extended: bool) -> tuple[object, ...]:
    """
    L{PROBE} on C{conn}, with either protocol.
    """
    if extended:
        row = conn.execute(PROBE, prepare=True).fetchone()
    else:
        row = conn.execute(PROBE).fetchone()
    assert row is not None
    return tuple(row)


def defaults(conn: psycopg.Connection) -> tuple[object, ...]:
    """
    What L{PROBE} shows past the pid on a session nobody changed.
    """
    row = conn.execute("SELECT boot_val FROM pg_settings WHERE name = 'search_path'").fetchone()
    assert row is not None
    return (USER, USER, row[0], "0", None, 0, 0, 0, 0)


@pytest.mark.parametrize("extended", [False, True], ids=["simple", "extended"])
def test_sessionStateStaysWithItsClient(pooler: Pooler, extended: bool) -> None:
    """
    Client A changes its role, C{search_path}, C{statement_timeout} and a
    custom setting, and creates a temporary table, an SQL prepared
    statement, a C{WITH HOLD} cursor and a session advisory lock: each
    object draws a WARNING naming it, and A keeps its backend (another
    client gets the other one) until they are gone. Then a new client B,
    on A's old backend, sees none of A's state, and A, on the other
    backend, still sees its own.
    """
    with connect(pooler) as a, connect(pooler) as bystander:
        fresh = defaults(bystander)
        seen = collectWarnings(a)
        for sql in (
            f"SET ROLE {OTHER_ROLE}",
            "SET search_path = evil",
            "SET statement_timeout = 1234",
            "select set_config('my.secret', 'A-' || 'secret', false)",
        ):
            run(a, sql, extended)
        assert seen == []
        pinned = []
        for sql, kind in (
            ("CREATE TEMP TABLE a_temp (x int)", "temporary tables"),
            ("PREPARE a_statement AS SELECT 1", "SQL prepared statements"),
            ("DECLARE a_cursor CURSOR WITH HOLD FOR SELECT 1", "WITH HOLD cursors"),
            ("SELECT pg_advisory_lock(4711)", "session advisory locks"),
        ):
            run(a, sql, extended)
            assert len(seen) == 1, (sql, seen)
            warning = seen.pop()
            assert warning.startswith("WARNING pgtwist:"), warning
            assert kind in warning, warning
            pinned.append(kind)
        mine = probe(a, extended)
        pid = mine[0]
        assert mine[1:] == (OTHER_ROLE, USER, "evil", "1234ms", "A-secret", 1, 1, 1, 1)
        # Pinned: A stays on its backend, others run on the other one.
        for _ in range(3):
            assert probe(a, extended)[0] == pid
            other = probe(bystander, extended)
            assert other[0] != pid
            assert other[1:] == fresh
        # Gone: A's backend goes back to the pool.
        for sql in (
            "DROP TABLE a_temp",
            "DEALLOCATE a_statement",
            "CLOSE a_cursor",
            "SELECT pg_advisory_unlock(4711)",
        ):
            run(a, sql, extended)
        assert seen == []
        with avoid(pooler, int(str(pid))), connect(pooler) as b:
            seenByB = probe(b, extended)
            assert seenByB[0] == pid
            assert seenByB[1:] == fresh
        with occupy(pooler, int(str(pid))):
            moved = probe(a, extended)
            assert moved[0] != pid
            assert moved[1:] == (OTHER_ROLE, USER, "evil", "1234ms", "A-secret", 0, 0, 0, 0)
        assert one(a, "SELECT current_setting('my.secret')") == "A-secret"


@pytest.mark.parametrize("extended", [False, True], ids=["simple", "extended"])
def test_resetUndoesSession(pooler: Pooler, extended: bool) -> None:
    """
    C{RESET ROLE}, C{RESET ALL} and C{DISCARD ALL} are followed as well: a
    client's later backends show the reset session, and a C{SET} undone by
    a rolled-back transaction is not carried anywhere.
    """
    with connect(pooler) as a:
        fresh = probe(a, extended)[1:]
        run(a, f"SET ROLE {OTHER_ROLE}", extended)
        run(a, "SET statement_timeout = '2s'", extended)
        run(a, "BEGIN; SET search_path = rolled_back; ROLLBACK", False)
        assert probe(a, extended)[1:] == (OTHER_ROLE, USER, fresh[2], "2s", None, 0, 0, 0, 0)
        pid = int(str(probe(a, extended)[0]))
        with occupy(pooler, pid):
            assert probe(a, extended)[1:4] == (OTHER_ROLE, USER, fresh[2])
        run(a, "RESET ROLE", extended)
        with avoid(pooler, pid):
            assert probe(a, extended)[1:] == (USER, USER, fresh[2], "2s", None, 0, 0, 0, 0)
        run(a, "select set_config('my.secret', 'kept', false)", extended)
        run(a, "RESET ALL", extended)
        with occupy(pooler, pid):
            assert probe(a, extended)[1:] == fresh
        run(a, f"SET ROLE {OTHER_ROLE}", extended)
        run(a, "DISCARD ALL", False)
        with avoid(pooler, pid):
            assert probe(a, extended)[1:] == fresh


def test_pinnedClientLeaves(pooler: Pooler) -> None:
    """
    A client that leaves while its session holds a temporary table and has
    another role: the next client of that backend gets a clean session.
    """
    with connect(pooler) as a:
        run(a, f"SET ROLE {OTHER_ROLE}", False)
        run(a, "CREATE TEMP TABLE left_behind (x int)", False)
        pid = int(str(probe(a, False)[0]))
    with connect(pooler) as b:
        with avoid(pooler, pid):
            seen = probe(b, False)
            assert seen[0] == pid
            assert seen[1:3] == (USER, USER)
            assert seen[6:] == (0, 0, 0, 0)


def test_pinnedInShowClients(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    SHOW CLIENTS and SHOW SERVERS say, in their C{pinned} column after
    PgBouncer's (SHOW SERVERS adds the server and its role after it), what
    keeps a pinned client on its backend.
    """
    with consolePooler(tmp_path, pgCluster, main=TRANSACTION) as pooler:
        with connect(pooler) as a, console(pooler) as admin:
            run(a, "CREATE TEMP TABLE shown (x int)", False)

            def pinnedColumn(command: str) -> list[str]:
                cursor = admin.execute(command)
                names = [column.name for column in cursor.description or ()]
                at = names.index("pinned")
                assert names[at - 1] == "id"
                assert names[at + 1 :] in ([], ["server", "server_role"])
                return [str(row[at]) for row in cursor.fetchall()]

            assert "temporary tables" in pinnedColumn("SHOW CLIENTS")
            assert "temporary tables" in pinnedColumn("SHOW SERVERS")
            run(a, "DROP TABLE shown", False)
            assert "temporary tables" not in pinnedColumn("SHOW CLIENTS")
