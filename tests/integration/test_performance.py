"""
The C{performance} pipeline end to end (issue 3, point 4): session
semantics through the real C{pgtwist} process, with the backend reused by
the next client after C{DISCARD ALL}.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from tests.integration.clients import adminConnect, backendsOf, runningPooler, waitUntilPooled
from tests.integration.pooler import Pooler

USER, PASSWORD = "pgt_scram", "scram-secret"
"""
The SCRAM role the clients log in as (its own database).
"""

PERFORMANCE = {"pipeline": "performance", "max_connections": 2, "blocking_timeout": 30}
"""
The pgtwist settings of this module: the performance pipeline, two backends.
"""


@pytest.fixture
def pooler(tmp_path: Path, pgCluster: PostgresCluster) -> Iterator[Pooler]:
    """
    pgtwist with the performance pipeline, stopped after the test.
    """
    with runningPooler(tmp_path, pgCluster, main=PERFORMANCE) as running:
        yield running


@pytest.fixture
def admin(pgCluster: PostgresCluster) -> Iterator[psycopg.Connection]:
    """
    A superuser connection to the cluster itself, to watch its backends.
    """
    with adminConnect(pgCluster) as conn:
        yield conn


def connect(pooler: Pooler) -> psycopg.Connection:
    """
    An autocommit psycopg connection through C{pooler} as L{USER}.
    """
    return psycopg.connect(pooler.dsn(USER, PASSWORD), autocommit=True)


def one(conn: psycopg.Connection, sql: str) -> object:
    """
    The single value C{sql} returns on C{conn}.
    """
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_session(pooler: Pooler) -> None:
    """
    A short psycopg session: simple and extended queries, several
    statements in one string, a prepared statement, a temporary table filled
    with COPY and read back, and a transaction, all on one backend whose pid
    is the one in BackendKeyData.
    """
    with connect(pooler) as conn:
        pid = one(conn, "SELECT pg_backend_pid()")
        assert conn.info.backend_pid == pid
        cursor = conn.execute("SELECT 1; SELECT 2")
        assert cursor.fetchall() == [(1,)]
        assert cursor.nextset() and cursor.fetchall() == [(2,)]
        assert conn.execute("SELECT %s::int + %s::int", (40, 2)).fetchone() == (42,)
        for i in range(3):
            assert conn.execute("SELECT %s::int * 3", (i,), prepare=True).fetchone() == (i * 3,)
        conn.execute("CREATE TEMP TABLE perf (id int, name text)")
        with conn.cursor().copy("COPY perf FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((i, f"n{i}"))
        with conn.transaction():
            conn.execute("DELETE FROM perf WHERE id >= 500")
        assert conn.execute("SELECT count(*), sum(id) FROM perf").fetchone() == (500, 124750)
        with conn.cursor().copy("COPY (SELECT * FROM perf ORDER BY id) TO STDOUT") as copy:
            copy.set_types(["int4", "text"])
            assert list(copy.rows()) == [(i, f"n{i}") for i in range(500)]
        assert one(conn, "SELECT pg_backend_pid()") == pid


def test_backendReusedAfterDiscardAll(pooler: Pooler, admin: psycopg.Connection) -> None:
    """
    The next client gets the same backend (same pid, same C{backend_start})
    with nothing of the previous session left: settings, temporary table,
    prepared statement, LISTEN and advisory lock are gone (C{DISCARD ALL}).
    """
    with connect(pooler) as first:
        pid = one(first, "SELECT pg_backend_pid()")
        defaults = (one(first, "SHOW statement_timeout"), one(first, "SHOW application_name"))
        first.execute("SET statement_timeout = '123s'")
        first.execute("SET application_name = 'perf-first'")
        first.execute("CREATE TEMP TABLE leftover (x int)")
        first.execute("PREPARE leftover_statement AS SELECT 1")
        first.execute("LISTEN leftover_channel")
        first.execute("SELECT pg_advisory_lock(4245)")
        assert one(first, "SHOW statement_timeout") == "123s"
    assert isinstance(pid, int)
    waitUntilPooled(admin, pid)
    [(seenPid, started, _, _)] = backendsOf(admin, USER, USER)
    assert seenPid == pid
    with connect(pooler) as second:
        assert one(second, "SELECT pg_backend_pid()") == pid
        assert second.info.parameter_status("application_name") == defaults[1]
        assert (one(second, "SHOW statement_timeout"), one(second, "SHOW application_name")) == (
            defaults
        )
        assert one(second, "SELECT to_regclass('pg_temp.leftover') IS NULL") is True
        assert one(second, "SELECT count(*) FROM pg_prepared_statements") == 0
        assert one(second, "SELECT count(*) FROM pg_listening_channels()") == 0
        locks = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        assert one(second, locks) == 0
        [(againPid, againStarted, _, _)] = backendsOf(admin, USER, USER)
    assert (againPid, againStarted) == (pid, started)


def test_manyClients(pooler: Pooler) -> None:
    """
    20 clients at once share two backends (each waits for one to be
    free), each a short session of 5 queries: every result is right.
    """
    failures: list[BaseException] = []
    pids: set[int] = set()
    lock = threading.Lock()

    def work(index: int) -> None:
        try:
            with connect(pooler) as conn:
                for i in range(5):
                    row = conn.execute(
                        "SELECT %s::int * 10 + %s::int, pg_backend_pid()", (index, i)
                    ).fetchone()
                    assert row is not None and row[0] == index * 10 + i
                    with lock:
                        pids.add(row[1])
        except BaseException as e:  # reported below
            with lock:
                failures.append(e)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(20)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert failures == []
    assert not any(thread.is_alive() for thread in threads)
    assert len(pids) == 2


def test_cancel(pooler: Pooler) -> None:
    """
    C{cancel()} stops a running C{pg_sleep} in the performance pipeline; the
    connection stays usable.
    """
    with connect(pooler) as conn:
        canceller = threading.Timer(0.5, conn.cancel)
        started = time.monotonic()
        canceller.start()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(10)")
        finally:
            canceller.join()
        assert time.monotonic() - started < 3.0
        assert one(conn, "SELECT 42") == 42
