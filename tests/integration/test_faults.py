"""
Fault behaviour end to end (issue 4, point 8): the real C{pgtwist} process
while PostgreSQL restarts under load, while backends are killed with
C{pg_terminate_backend}, and while PostgreSQL refuses new connections.

What an operator expects: clients in flight get an error and none hangs past
C{blocking_timeout}; the pool heals by itself once PostgreSQL is back; a
backend that dies idle in the pool is never seen by a client; and a server
refusing connections is retried a bounded number of times, never in a loop.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster, hbaForRoles
from tests.integration.clients import adminConnect, runningPooler, waitFor, waitUntilGone
from tests.integration.pooler import Pooler

USER, PASSWORD = "pgt_scram", "scram-secret"
"""
The SCRAM role the clients log in as, through pgtwist and toward PostgreSQL.
"""

SHARED = "pgtwist_test"
"""
The database every role of the suite may connect to.
"""

LIMITED, LIMITED_PASSWORD = "pgt_limited", "limited-secret"
"""
A role created for one test with C{CONNECTION LIMIT 1}, then dropped.
"""

PIPELINES = ["session", "transaction"]
"""
The pipelines each fault is checked with.
"""


def quiet(cluster: PostgresCluster) -> None:
    """
    Wait until the suite's roles have no backend left in C{cluster}, over a
    fresh connection (a restart kills older ones).
    """
    with adminConnect(cluster) as conn:
        waitFor(
            lambda: (
                not conn.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE usename LIKE 'pgt\\_%'"
                ).fetchone()
            ),
            timeout=10,
        )


@pytest.fixture
def admin(pgCluster: PostgresCluster) -> Iterator[psycopg.Connection]:
    """
    A superuser connection to the cluster itself, to find and kill backends;
    at the end, wait until the suite's roles have no backend left.
    """
    with adminConnect(pgCluster) as conn:
        yield conn
    quiet(pgCluster)


def connect(pooler: Pooler, user: str = USER, password: str = PASSWORD) -> psycopg.Connection:
    """
    An autocommit psycopg connection through C{pooler} to the shared database.
    """
    return psycopg.connect(pooler.dsn(user, password, SHARED), autocommit=True)


def scalar(conn: psycopg.Connection, sql: str) -> object:
    """
    The single value C{sql} returns on C{conn}.
    """
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


# -- PostgreSQL restarted under load --------------------------------------------


@dataclass
class Worker:
    """
    One client thread's record: every attempt as C{(start, end, error)}.
    """

    attempts: list[tuple[float, float, str | None]] = field(default_factory=list)

    def successesAfter(self, moment: float) -> list[float]:
        """
        When the attempts that started after C{moment} succeeded.
        """
        return [end for start, end, error in self.attempts if start > moment and error is None]


def runWorker(pooler: Pooler, worker: Worker, stop: threading.Event) -> None:
    """
    Loop short transactions (C{BEGIN; SELECT 1; COMMIT}) through C{pooler},
    reconnecting after an error, until C{stop} is set.
    """
    conn: psycopg.Connection | None = None
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                if conn is None:
                    conn = connect(pooler)
                with conn.transaction():
                    conn.execute("SELECT 1")
                worker.attempts.append((started, time.monotonic(), None))
            except psycopg.Error as e:
                worker.attempts.append((started, time.monotonic(), type(e).__name__))
                if conn is not None:
                    conn.close()
                    conn = None
                time.sleep(0.05)
    finally:
        if conn is not None:
            conn.close()


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_postgresRestartedUnderLoad(
    tmp_path: Path, pgCluster: PostgresCluster, pipeline: str
) -> None:
    """
    Ten clients loop short transactions while PostgreSQL restarts
    (C{pg_ctl -m fast}, down for two seconds): clients in flight get an
    error, no attempt takes longer than
    C{blocking_timeout} plus a margin, and every client commits again within
    a few seconds of PostgreSQL being back.
    """
    blockingTimeout = 5
    main = {"pipeline": pipeline, "blocking_timeout": blockingTimeout, "max_connections": 10}
    workers = [Worker() for _ in range(10)]
    stop = threading.Event()
    with runningPooler(tmp_path, pgCluster, main=main) as pooler:
        threads = [
            threading.Thread(target=runWorker, args=(pooler, worker, stop)) for worker in workers
        ]
        for thread in threads:
            thread.start()
        try:
            waitFor(lambda: all(worker.successesAfter(0) for worker in workers), timeout=10)
            down = time.monotonic()
            pgCluster.restart(downFor=2.0)
            back = time.monotonic()
            waitFor(lambda: all(worker.successesAfter(back) for worker in workers), timeout=15)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert not any(thread.is_alive() for thread in threads)
        attempts = [attempt for worker in workers for attempt in worker.attempts]
        failed = [(s, e, error) for s, e, error in attempts if error is not None]
        assert failed, "no client noticed the restart"
        assert all(down - 1 <= start <= back + blockingTimeout + 5 for start, _, _ in failed)
        assert max(end - start for start, end, _ in attempts) < blockingTimeout + 3
        recovered = max(min(worker.successesAfter(back)) for worker in workers)
        assert recovered - back < 10
    quiet(pgCluster)


# -- backends killed with pg_terminate_backend --------------------------------------


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_idleBackendKilled(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection, pipeline: str
) -> None:
    """
    A backend killed while idle in the pool is never seen by a client: a
    client that already ran a query on it (transaction pooling: the backend
    went back to the pool between transactions) and a new client both go on
    without an error, on another backend.
    """
    with runningPooler(tmp_path, pgCluster, main={"pipeline": pipeline}) as pooler:
        with connect(pooler) as first:
            pid = scalar(first, "SELECT pg_backend_pid()")
        if pipeline == "transaction":
            conn = connect(pooler)
            assert scalar(conn, "SELECT pg_backend_pid()") == pid
        waitFor(
            lambda: admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'idle'", (pid,)
            ).fetchone()
        )
        time.sleep(0.1)  # the release (and reset) has reached pgtwist
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        waitUntilGone(admin, pid)
        time.sleep(0.1)
        if pipeline == "transaction":
            assert scalar(conn, "SELECT pg_backend_pid()") != pid
            conn.close()
        with connect(pooler) as second:
            assert scalar(second, "SELECT pg_backend_pid()") != pid
            assert scalar(second, "SELECT 2") == 2
        assert pooler.logCount(rf"Idle backend {pid} .*57P01") == 1


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_activeBackendKilled(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection, pipeline: str
) -> None:
    """
    A backend killed while running a client's C{pg_sleep(5)}: that client
    gets PostgreSQL's error (AdminShutdown) at once, not after the sleep, and
    the pool heals: a new client works.
    """
    with runningPooler(tmp_path, pgCluster, main={"pipeline": pipeline}) as pooler:
        conn = connect(pooler)
        outcome: list[BaseException] = []

        def sleep() -> None:
            """
            Sleep five seconds through pgtwist; keep the error.
            """
            try:
                conn.execute("SELECT pg_sleep(5)")
            except psycopg.Error as e:
                outcome.append(e)

        thread = threading.Thread(target=sleep)
        thread.start()
        [(pid,)] = waitFor(
            lambda: admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE usename = %s AND state = 'active'"
                " AND query = 'SELECT pg_sleep(5)'",
                (USER,),
            ).fetchall()
        )
        killed = time.monotonic()
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        thread.join(10)
        assert time.monotonic() - killed < 3
        [error] = outcome
        assert isinstance(error, psycopg.errors.AdminShutdown)
        conn.close()
        with connect(pooler) as other:
            assert scalar(other, "SELECT pg_backend_pid()") != pid
            assert scalar(other, "SELECT 3") == 3


# -- PostgreSQL refusing new connections ---------------------------------------------


@pytest.fixture
def limitedRole(pgCluster: PostgresCluster) -> Iterator[str]:
    """
    A role allowed one connection (C{CONNECTION LIMIT 1}) to the shared
    database with SCRAM over TCP; dropped, and C{pg_hba.conf} restored, at
    the end.
    """
    hba = list(pgCluster.hbaLines)
    pgCluster.createRole(LIMITED, LIMITED_PASSWORD, "scram-sha-256")
    try:
        pgCluster.psql(
            f"ALTER ROLE {LIMITED} CONNECTION LIMIT 1;\n"
            f"GRANT CONNECT ON DATABASE {SHARED} TO {LIMITED};\n"
        )
        pgCluster.setHba(hba + hbaForRoles({LIMITED: "scram-sha-256"}))
        yield LIMITED
    finally:
        pgCluster.setHba(hba)
        quiet(pgCluster)
        pgCluster.psql(
            f"REVOKE CONNECT ON DATABASE {SHARED} FROM {LIMITED};\nDROP ROLE {LIMITED};\n"
        )


def limitedPooler(
    tmp_path: Path, cluster: PostgresCluster, **main: object
) -> AbstractContextManager[Pooler]:
    """
    A session-pooling pgtwist knowing only the limited role.
    """
    return runningPooler(
        tmp_path,
        cluster,
        main={"pipeline": "session", **main},
        users={LIMITED: LIMITED_PASSWORD},
    )


RETRY = rf"Connecting to primary for \('{SHARED}', '{LIMITED}'\) failed .*retry \d+ in"
"""
The log line of each retried connection attempt of the limited role.
"""


def test_tooManyConnectionsGivesUp(
    tmp_path: Path, pgCluster: PostgresCluster, limitedRole: str
) -> None:
    """
    PostgreSQL answers C{too many connections} (53300) while another client
    holds the role's only connection: the second client waits through
    C{max_retries} spaced retries and then gets PostgreSQL's error, before
    C{blocking_timeout}; pgtwist does not try again on its own meanwhile.
    Once the first client leaves, a new one is served at once.
    """
    with limitedPooler(tmp_path, pgCluster, max_retries=2, blocking_timeout=4) as pooler:
        holder = connect(pooler, LIMITED, LIMITED_PASSWORD)
        pid = scalar(holder, "SELECT pg_backend_pid()")
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
            connect(pooler, LIMITED, LIMITED_PASSWORD)
        assert time.monotonic() - started < 3
        assert pooler.logCount(RETRY) == 2
        time.sleep(1.5)
        assert pooler.logCount(RETRY) == 2
        holder.close()
        with connect(pooler, LIMITED, LIMITED_PASSWORD) as conn:
            assert scalar(conn, "SELECT pg_backend_pid()") == pid


def test_tooManyConnectionsWaits(
    tmp_path: Path, pgCluster: PostgresCluster, limitedRole: str
) -> None:
    """
    PostgreSQL answers C{too many connections} while another client holds
    the role's only connection: the second client waits, and gets that
    connection as soon as the first client leaves; the retries meanwhile are
    few and spaced (exponential back-off).
    """
    with limitedPooler(tmp_path, pgCluster, max_retries=5, blocking_timeout=5) as pooler:
        holder = connect(pooler, LIMITED, LIMITED_PASSWORD)
        pid = scalar(holder, "SELECT pg_backend_pid()")
        result: list[object] = []

        def second() -> None:
            """
            Log in while the role's only connection is taken; keep the pid or the error.
            """
            try:
                with connect(pooler, LIMITED, LIMITED_PASSWORD) as conn:
                    result.append(scalar(conn, "SELECT pg_backend_pid()"))
            except psycopg.Error as e:
                result.append(e)

        thread = threading.Thread(target=second)
        thread.start()
        waitFor(lambda: pooler.logCount(RETRY) >= 2, timeout=3)
        holder.close()
        thread.join(10)
        assert result == [pid]
        assert pooler.logCount(RETRY) <= 4


def test_stalledLoginTimesOut(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    A server that accepts the TCP connection and never answers the
    StartupMessage (a stalled network, a hung server) holds the login no
    longer than C{server_connect_timeout}, PgBouncer's bound on connect
    I{and} login: each attempt is closed then, and once C{max_retries} are
    spent the waiting client gets pgtwist's C{08001} naming the timeout,
    well before C{blocking_timeout}.
    """
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    # The kernel completes the handshake for the backlog; nobody reads.
    silent.listen(16)
    servers = f"[primary]\nhost = 127.0.0.1\nport = {silent.getsockname()[1]}\nprimary = on\n"
    main = {"pipeline": "session", "server_connect_timeout": "300ms", "max_retries": 1}
    try:
        with runningPooler(
            tmp_path, pgCluster, main={**main, "blocking_timeout": 20}, serverSections=servers
        ) as pooler:
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError) as caught:
                connect(pooler)
            elapsed = time.monotonic() - started
            assert "pgtwist cannot connect to the PostgreSQL server" in str(caught.value)
            assert "connect timeout (server_connect_timeout 0.3s)" in str(caught.value)
            assert elapsed < 5
            assert pooler.logCount("Closing a backend .*: connect timeout") == 2
    finally:
        silent.close()
