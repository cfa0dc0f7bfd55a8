"""
Pool operations end to end (issue 4): the real C{pgtwist} process in front of
the suite's PostgreSQL, with C{pg_stat_activity} read directly from the
cluster to see what pgtwist really did to its backends.

Covered: C{pgtwist_databases.conf} limits, aliases, C{all} and corrected
sizes; prefill and minimum sizes; validation; C{max_connection_age};
C{disconnect_client}; C{max_retries} against a server that is down;
failover to a second server with C{failover_script}; reload on SIGHUP; stop
on SIGTERM.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire.messages import ErrorResponse
from tests.integration.clients import (
    RawClient,
    RawError,
    adminConnect,
    backendsOf,
    runningPooler,
    waitFor,
    waitUntilGone,
    waitUntilPooled,
)
from tests.integration.pooler import Pooler, freePort

USER, PASSWORD = "pgt_scram", "scram-secret"
"""
The SCRAM role most tests log in as, through pgtwist and toward PostgreSQL.
"""

SHARED = "pgtwist_test"
"""
The database every role of the suite may connect to.
"""

TRUST_HBA = ["host all pgt_trust all trust", "host all all all scram-sha-256"]
"""
pgtwist HBA lines letting the raw client (trust only) in as C{pgt_trust}.
"""

SESSION = {"pipeline": "session"}
"""
Session pooling: a client keeps its backend, so C{pg_backend_pid()} is stable
for the life of a connection.
"""


@pytest.fixture
def admin(pgCluster: PostgresCluster) -> Iterator[psycopg.Connection]:
    """
    A superuser connection to the cluster itself, to watch and kill its
    backends; at the end, wait until the suite's roles have no backend left,
    so that the next test starts from an empty cluster.
    """
    with adminConnect(pgCluster) as conn:
        yield conn
        waitFor(
            lambda: (
                not conn.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE usename LIKE 'pgt\\_%'"
                ).fetchone()
            ),
            timeout=10,
        )


def connect(
    pooler: Pooler, database: str = SHARED, user: str = USER, **extra: str
) -> psycopg.Connection:
    """
    An autocommit psycopg connection through C{pooler}.
    """
    password = {"pgt_scram": PASSWORD, "pgt_trust": "trust-secret"}[user]
    return psycopg.connect(pooler.dsn(user, password, database, **extra), autocommit=True)


def scalar(conn: psycopg.Connection, sql: str) -> object:
    """
    The single value C{sql} returns on C{conn}.
    """
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def pids(admin: psycopg.Connection, user: str = USER, database: str | None = SHARED) -> list[int]:
    """
    The pids of C{user}'s backends (on C{database}) in the cluster.
    """
    return [pid for pid, _, _, _ in backendsOf(admin, user, database)]


def terminate(admin: psycopg.Connection, pid: int) -> None:
    """
    C{pg_terminate_backend(pid)}, and wait until the backend is gone.
    """
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    waitUntilGone(admin, pid)


def concurrently(
    count: int, work: Callable[[int], None], admin: psycopg.Connection, user: str, database: str
) -> tuple[int, list[BaseException]]:
    """
    Run C{work(i)} in C{count} threads at once while watching the cluster;
    return the largest number of C{user}'s backends on C{database} seen at
    any time, and the exceptions the threads raised.
    """
    failures: list[BaseException] = []

    def run(i: int) -> None:
        """
        One thread: run C{work(i)} and keep what it raised.
        """
        try:
            work(i)
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            failures.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    peak = 0
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, len(pids(admin, user, database)))
        time.sleep(0.01)
    for thread in threads:
        thread.join()
    return peak, failures


# -- pgtwist_databases.conf ----------------------------------------------------


def test_lineBoundsItsPair(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    A line C{pgtwist_test pgt_scram 2} bounds that pair to two backends: five
    clients sleeping 0.3 s at once all succeed, and PostgreSQL never sees
    more than two backends of the pair, though C{max_connections} is 10.
    """
    with runningPooler(tmp_path, pgCluster, main=SESSION, limits=[f"{SHARED} {USER} 2"]) as pooler:

        def work(i: int) -> None:
            """
            One client of the pair: hold a backend 0.3 s.
            """
            with connect(pooler) as conn:
                conn.execute("SELECT pg_sleep(0.3)")

        peak, failures = concurrently(5, work, admin, USER, SHARED)
        assert failures == []
        assert peak == 2


def test_aliasAllAndCorrectedSizes(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    With C{max_connections = 4}:

      - C{pgtwist_test=alias1 pgt_scram 3 5} asks for an INITIAL_SIZE above
        MAX_SIZE: pgtwist logs a warning and prefills 3 backends, not 5;
      - a client asking for database C{alias1} is on C{pgtwist_test};
      - C{all pgt_trust all} gives C{pgt_trust} the rest of
        C{max_connections}, one backend: two clients at once both succeed
        but never use more than one.
    """
    limits = [f"{SHARED}=alias1 {USER} 3 5", "all pgt_trust all"]
    main = {**SESSION, "max_connections": 4}
    with runningPooler(tmp_path, pgCluster, main=main, limits=limits) as pooler:
        assert pooler.logCount(r"initial_size 5 is greater than max_size 3; using 3") == 1
        waitFor(lambda: len(pids(admin)) == 3)
        prefilled = set(pids(admin))
        time.sleep(1.2)  # at least one more janitor round
        assert set(pids(admin)) == prefilled
        with connect(pooler, database="alias1") as conn:
            assert scalar(conn, "SELECT current_database()") == SHARED
            assert scalar(conn, "SELECT pg_backend_pid()") in prefilled

        def work(i: int) -> None:
            """
            One client of C{pgt_trust}: hold a backend 0.3 s.
            """
            with connect(pooler, database="pgt_trust", user="pgt_trust") as conn:
                conn.execute("SELECT pg_sleep(0.3)")

        peak, failures = concurrently(2, work, admin, "pgt_trust", "pgt_trust")
        assert failures == []
        assert peak == 1


# -- prefill and minimum ---------------------------------------------------------


def test_prefillAndMinimum(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    C{pgtwist_test pgt_scram 4 2 1}: two backends are open right after start,
    before any client (PostgreSQL shows them with an empty
    C{application_name}); killed, they are replaced up to MIN_SIZE, one, and
    no further.
    """
    with runningPooler(tmp_path, pgCluster, limits=[f"{SHARED} {USER} 4 2 1"]):
        waitFor(lambda: len(pids(admin)) == 2, timeout=5)
        names = admin.execute(
            "SELECT application_name FROM pg_stat_activity WHERE usename = %s", (USER,)
        ).fetchall()
        assert names == [("",), ("",)]
        first = pids(admin)
        for pid in first:
            terminate(admin, pid)
        waitFor(lambda: len(pids(admin)) == 1, timeout=5)
        time.sleep(1.5)  # more janitor rounds: still MIN_SIZE, not INITIAL_SIZE
        [replacement] = pids(admin)
        assert replacement not in first


def test_idleTimeoutKeepsMinimum(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    With C{idle_timeout = 1}, the two prefilled backends of
    C{pgtwist_test pgt_scram 4 2 1} shrink to MIN_SIZE: one backend, the
    same one, kept open however long it idles.
    """
    main = {"idle_timeout": 1}
    with runningPooler(tmp_path, pgCluster, main=main, limits=[f"{SHARED} {USER} 4 2 1"]):
        waitFor(lambda: len(pids(admin)) == 2, timeout=5)
        waitFor(lambda: len(pids(admin)) == 1, timeout=5)
        [kept] = pids(admin)
        seen = set()
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            seen.add(tuple(pids(admin)))
            time.sleep(0.02)
        assert seen == {(kept,)}


# -- validation ------------------------------------------------------------------


@pytest.mark.parametrize("validation", ["foreground", "off"])
def test_deadIdleBackendReplaced(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection, validation: str
) -> None:
    """
    A pooled backend idle for over a second (the foreground validation
    delay) is handed out after a check when C{validation = foreground}; once
    killed with C{pg_terminate_backend}, the next client gets a new backend
    without an error, whatever C{validation} says.
    """
    main = {**SESSION, "validation": validation}
    with runningPooler(tmp_path, pgCluster, main=main) as pooler:
        with connect(pooler) as conn:
            pid = scalar(conn, "SELECT pg_backend_pid()")
        waitUntilPooled(admin, pid)
        time.sleep(1.2)
        with connect(pooler) as conn:
            assert scalar(conn, "SELECT pg_backend_pid()") == pid
        waitUntilPooled(admin, pid)
        terminate(admin, pid)
        time.sleep(1.5)
        with connect(pooler) as conn:
            replacement = scalar(conn, "SELECT pg_backend_pid()")
            assert scalar(conn, "SELECT 42") == 42
        assert replacement != pid
        assert pooler.logCount(r"Idle backend .*57P01") == 1


def test_backgroundValidation(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    C{validation = background} with C{background_interval = 1} checks idle
    backends every second (an empty query: C{query_start} moves on while
    the pid stays), and an idle backend killed is replaced by the minimum
    size within a few seconds.
    """
    main = {"validation": "background", "background_interval": 1}
    with runningPooler(tmp_path, pgCluster, main=main, limits=[f"{SHARED} {USER} 2 1 1"]):
        [pid] = waitFor(lambda: pids(admin), timeout=5)

        def queryStart() -> object:
            """
            When the prefilled backend last started a query.
            """
            return admin.execute(
                "SELECT query_start FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()

        before = waitFor(queryStart)
        waitFor(lambda: queryStart() != before, timeout=4)
        assert pids(admin) == [pid]
        terminate(admin, pid)
        [replacement] = waitFor(lambda: pids(admin), timeout=5)
        assert replacement != pid


def test_backgroundValidationKeepsIdleTimeout(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    Background validation does not count as use: with
    C{background_interval = 1} and C{idle_timeout = 2}, a backend nobody
    uses is still closed after about two seconds.
    """
    main = {**SESSION, "validation": "background", "background_interval": 1, "idle_timeout": 2}
    with runningPooler(tmp_path, pgCluster, main=main) as pooler:
        with connect(pooler) as conn:
            pid = scalar(conn, "SELECT pg_backend_pid()")
        started = time.monotonic()
        waitUntilGone(admin, pid, timeout=6)
        assert time.monotonic() - started >= 1.5


# -- lifetimes and idle clients --------------------------------------------------


def test_maxConnectionAgeWaitsForTheTransaction(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    C{max_connection_age = 1}: a client holding its backend 1.5 s inside a
    transaction is never interrupted; once it leaves, that backend is closed
    rather than pooled.
    """
    main = {**SESSION, "max_connection_age": 1}
    with runningPooler(tmp_path, pgCluster, main=main) as pooler:
        with psycopg.connect(pooler.dsn(USER, PASSWORD, SHARED)) as conn:
            pid = scalar(conn, "SELECT pg_backend_pid()")  # psycopg opened a transaction
            time.sleep(1.5)
            assert scalar(conn, "SELECT txid_current_if_assigned() IS NULL") is True
            assert scalar(conn, "SELECT pg_backend_pid()") == pid
            conn.commit()
            assert scalar(conn, "SELECT 7") == 7
            conn.commit()
        waitUntilGone(admin, pid, timeout=5)
        assert pooler.logCount(rf"Closing backend {pid} .*max_connection_age") == 1


@pytest.mark.parametrize("pipeline", ["session", "transaction"])
def test_disconnectIdleClient(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection, pipeline: str
) -> None:
    """
    C{disconnect_client = 1}: a client that sends nothing is disconnected by
    pgtwist after one to three seconds (it reads a FATAL 57P01, then EOF;
    psycopg's next query fails); a client running C{pg_sleep(2)} is not
    disconnected meanwhile, since C{disconnect_client_force} is off.
    """
    main = {"pipeline": pipeline, "disconnect_client": 1}
    with runningPooler(tmp_path, pgCluster, main=main, hba=TRUST_HBA) as pooler:
        idle = connect(pooler)
        busy = connect(pooler)
        raw = RawClient(pooler.port, "pgt_trust")
        started = time.monotonic()
        slept: list[object] = []
        sleeper = threading.Thread(
            target=lambda: slept.append(scalar(busy, "SELECT 1 FROM pg_sleep(2)"))
        )
        sleeper.start()
        message = raw.read()
        with pytest.raises(ConnectionError):
            raw.read()
        elapsed = time.monotonic() - started
        raw.sock.close()
        assert isinstance(message, ErrorResponse)
        assert (message.severity, message.code) == ("FATAL", "57P01")
        assert 0.9 <= elapsed <= 3.5
        sleeper.join(10)
        assert slept == [1]
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
        idle.close()
        busy.close()


def test_disconnectClientForce(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    With C{disconnect_client_force = on}, a client silent for a second is
    disconnected even while its C{pg_sleep(5)} runs (FATAL 57P01), and the
    backend it left mid-query is closed rather than pooled.
    """
    main = {**SESSION, "disconnect_client": 1, "disconnect_client_force": "on"}
    with runningPooler(tmp_path, pgCluster, main=main) as pooler:
        conn = connect(pooler)
        pid = scalar(conn, "SELECT pg_backend_pid()")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.AdminShutdown, match="idle-session timeout"):
            conn.execute("SELECT pg_sleep(5)")
        assert time.monotonic() - started < 3.5
        conn.close()
        waitUntilGone(admin, pid, timeout=5)


# -- servers that cannot be reached ------------------------------------------------


def test_maxRetriesAgainstADownServer(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    The only server is down (a port nobody listens on): with
    C{max_retries = 2} a client fails within about three seconds, well
    before C{blocking_timeout}, with FATAL 08001 saying pgtwist cannot
    connect; pgtwist logged two spaced retries, and no more while no
    client asks.
    """
    closed = freePort()
    servers = f"[primary]\nhost = 127.0.0.1\nport = {closed}\nprimary = on\n"
    main = {"max_retries": 2, "blocking_timeout": 10}
    with runningPooler(
        tmp_path, pgCluster, main=main, hba=TRUST_HBA, serverSections=servers
    ) as pooler:
        started = time.monotonic()
        with pytest.raises(RawError) as caught:
            RawClient(pooler.port, "pgt_trust")
        assert time.monotonic() - started < 3
        error = caught.value.error
        assert (error.severity, error.code) == ("FATAL", "08001")
        assert "cannot connect" in error.message
        assert pooler.logCount(r"retry \d+ in") == 2
        time.sleep(2)
        assert pooler.logCount(r"retry \d+ in") == 2
        assert pooler.logCount(r"Cannot connect to primary") == 1


def test_failover(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    Two servers, the primary down: with C{failover = on} and
    C{max_retries = 1}, pgtwist marks the primary failed, runs
    C{failover_script} with (old host, old port, new host, new port), and the
    waiting client is served by the standby.
    """
    closed = freePort()
    record = tmp_path / "failover.txt"
    script = tmp_path / "failover.sh"
    script.write_text(f'#!/bin/sh\necho "$1 $2 $3 $4" >> {record}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    servers = (
        f"[primary]\nhost = 127.0.0.1\nport = {closed}\nprimary = on\n\n"
        f"[standby]\nhost = {pgCluster.host}\nport = {pgCluster.port}\n"
    )
    main = {**SESSION, "failover": "on", "failover_script": script, "max_retries": 1}
    with runningPooler(tmp_path, pgCluster, main=main, serverSections=servers) as pooler:
        with connect(pooler) as conn:
            assert scalar(conn, "SELECT inet_server_port()") == pgCluster.port
        waitFor(record.exists, timeout=5)
        assert record.read_text() == f"127.0.0.1 {closed} {pgCluster.host} {pgCluster.port}\n"
        assert pooler.logCount(r"failing over to standby") == 1
        with connect(pooler) as conn:
            assert scalar(conn, "SELECT 1") == 1
        assert pooler.logCount(r"failing over to standby") == 1


def test_failoverScriptFails(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    A C{failover_script} that exits 3 switches no client (pgagroal's
    rule): the standby is marked failed, the client waiting hears that
    pgtwist cannot connect, and the dead primary stays the one in use.
    """
    closed = freePort()
    script = tmp_path / "failover.sh"
    script.write_text("#!/bin/sh\nexit 3\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    servers = (
        f"[primary]\nhost = 127.0.0.1\nport = {closed}\nprimary = on\n\n"
        f"[standby]\nhost = {pgCluster.host}\nport = {pgCluster.port}\n"
    )
    main = {**SESSION, "failover": "on", "failover_script": script, "max_retries": 0}
    with runningPooler(tmp_path, pgCluster, main=main, serverSections=servers) as pooler:
        with pytest.raises(psycopg.OperationalError, match="cannot connect"):
            connect(pooler)
        assert pooler.logCount(r"failover_script \S+ exited with 3") == 1
        assert pooler.logCount(r"Not failing over to standby") == 1
        assert pooler.logCount(r"Failed over from") == 0


# -- reload and stop ---------------------------------------------------------------


def test_reloadHba(tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection) -> None:
    """
    SIGHUP re-reads C{pgtwist_hba.conf}: once C{pgt_scram} is rejected, new
    connections of it are refused, while one already connected keeps
    working on its backend.
    """
    with runningPooler(tmp_path, pgCluster, main=SESSION) as pooler:
        with connect(pooler) as connected:
            pid = scalar(connected, "SELECT pg_backend_pid()")
            pooler.hbaPath.write_text(
                f"host all {USER} all reject\nhost all all all scram-sha-256\n"
            )
            pooler.reload()
            pooler.waitForLog(r"Configuration reloaded")
            with pytest.raises(psycopg.OperationalError, match="rejects connection"):
                connect(pooler)
            with connect(pooler, database="pgt_trust", user="pgt_trust") as other:
                assert scalar(other, "SELECT current_user") == "pgt_trust"
            assert scalar(connected, "SELECT pg_backend_pid()") == pid


def test_reloadReportsRestartKeys(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    A new C{port} in C{pgtwist.conf} is reported on SIGHUP as needing a
    restart, at every SIGHUP while it differs from the running one;
    pgtwist goes on listening on the old port.
    """
    with runningPooler(tmp_path, pgCluster) as pooler:
        text = pooler.configPath.read_text()
        pooler.configPath.write_text(
            text.replace(f"port = {pooler.port}\n", f"port = {freePort()}\n", 1)
        )
        pooler.reload()
        pooler.waitForLog(r"Configuration reloaded; changes to port take effect after a restart")
        pooler.reload()
        waitFor(
            lambda: pooler.logCount(r"changes to port take effect after a restart") == 2,
            timeout=10,
        )
        with connect(pooler) as conn:
            assert scalar(conn, "SELECT 1") == 1


def test_reloadKeepsConfigurationOnError(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    A broken C{pgtwist.conf} on SIGHUP is refused as a whole: pgtwist logs
    why and keeps running with the old configuration, including the part of
    the new one that was valid (here a stricter HBA file).
    """
    with runningPooler(tmp_path, pgCluster) as pooler:
        pooler.hbaPath.write_text(f"host all {USER} all reject\n")
        with open(pooler.configPath, "a") as f:
            f.write("[extra]\nhost = 127.0.0.1\nport = banana\n")
        pooler.reload()
        pooler.waitForLog(r"Reload failed, keeping the running configuration: .*banana")
        with connect(pooler) as conn:
            assert scalar(conn, "SELECT 1") == 1
        assert pooler.logCount(r"Configuration reloaded") == 0


def test_sigtermGraceful(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    SIGTERM (systemd's stop) is a graceful shutdown: a client outside a
    transaction is told C{57P01 terminating connection due to administrator
    command}; one inside its transaction finishes it and commits, then is
    told the same; pgtwist exits (by the signal, as twistd does), its
    backends closed and the unix socket removed.
    """
    with runningPooler(tmp_path, pgCluster, main=SESSION) as pooler:
        idle = connect(pooler)
        scalar(idle, "SELECT 1")
        busy = connect(pooler)
        pid = scalar(busy, "SELECT pg_backend_pid()")
        busy.execute("BEGIN")
        busy.execute("CREATE TEMP TABLE shutdown_probe (n int)")
        process = pooler.process
        assert process is not None
        process.send_signal(signal.SIGTERM)
        pooler.waitForLog(r"Stop signal: no new clients or transactions")
        with pytest.raises(psycopg.OperationalError, match="administrator command"):
            idle.execute("SELECT 1")
        busy.execute("INSERT INTO shutdown_probe VALUES (1)")
        busy.execute("COMMIT")
        started = time.monotonic()
        assert process.wait(10) == -signal.SIGTERM
        assert time.monotonic() - started < 5
        with pytest.raises(psycopg.OperationalError, match="administrator command"):
            busy.execute("SELECT 1")
        idle.close()
        busy.close()
        waitUntilGone(admin, pid, timeout=5)
        assert pooler.logCount(r"No transaction left; shutting down") == 1
        assert not os.path.exists(os.path.join(pooler.socketDir, f".s.PGSQL.{pooler.port}"))


def test_secondSigtermImmediate(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    A second SIGTERM while transactions are under way stops pgtwist at
    once; the client in its transaction is told why.
    """
    with runningPooler(tmp_path, pgCluster, main=SESSION) as pooler:
        busy = connect(pooler)
        busy.execute("BEGIN")
        process = pooler.process
        assert process is not None
        process.send_signal(signal.SIGTERM)
        pooler.waitForLog(r"Stop signal: no new clients or transactions")
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == -signal.SIGTERM
        assert pooler.logCount(r"Second stop signal: shutting down immediately") == 1
        with pytest.raises(psycopg.OperationalError, match="administrator command"):
            busy.execute("SELECT 1")
        busy.close()


def test_sigquitImmediate(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    SIGQUIT is PgBouncer's immediate shutdown: a client in its transaction
    is told why at once, and pgtwist exits cleanly (status 0, no core),
    its unix socket removed.
    """
    with runningPooler(tmp_path, pgCluster, main=SESSION) as pooler:
        busy = connect(pooler)
        busy.execute("BEGIN")
        process = pooler.process
        assert process is not None
        started = time.monotonic()
        process.send_signal(signal.SIGQUIT)
        assert process.wait(10) == 0
        assert time.monotonic() - started < 5
        assert pooler.logCount(r"SIGQUIT: shutting down immediately") == 1
        with pytest.raises(psycopg.OperationalError, match="administrator command"):
            busy.execute("SELECT 1")
        busy.close()
        assert not os.path.exists(os.path.join(pooler.socketDir, f".s.PGSQL.{pooler.port}"))


# -- the management API ------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
"""
The repository root, from which L{tests.integration.managed} is importable.
"""


class Managed:
    """
    pgtwist run by L{tests.integration.managed} on a L{Pooler}'s files, and
    its management API.
    """

    def __init__(self, pooler: Pooler) -> None:
        """
        Start the process on C{pooler}'s files and wait until it listens.
        """
        self.pooler = pooler
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.managed", *pooler.arguments()[1:]],
            cwd=ROOT,
            env=pooler.environ,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(pooler.directory / "stderr.txt", "wb"),
        )

        def listening() -> bool:
            """
            Whether the process accepts TCP connections (it must not have died).
            """
            assert self.process.poll() is None, (pooler.directory / "stderr.txt").read_text()
            try:
                socket.create_connection(("127.0.0.1", pooler.port), timeout=0.5).close()
            except OSError:
                return False
            return True

        waitFor(listening, timeout=20)

    def call(self, name: str, *arguments: object) -> Any:
        """
        Call C{Management.name(*arguments)} and return its result.
        """
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps([name, *arguments]).encode() + b"\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], 10)
        assert ready, f"no answer to {name}"
        answer = json.loads(self.process.stdout.readline())
        assert "error" not in answer, answer["error"]
        return answer["result"]

    def stop(self) -> int:
        """
        Close stdin (the process stops as on SIGTERM) and wait; kill after
        10 s. Returns the exit status.
        """
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextmanager
def managedPooler(
    directory: Path, cluster: PostgresCluster, **options: Any
) -> Iterator[tuple[Pooler, Managed]]:
    """
    Write a L{Pooler}'s files (C{options} as for L{Pooler}; SCRAM for
    everyone, C{pgt_scram} and C{pgt_trust} known), run it under
    L{tests.integration.managed}, and stop it at the end; on failure print
    its log.
    """
    options.setdefault("hba", ("host all all all scram-sha-256",))
    options.setdefault("users", {USER: PASSWORD, "pgt_trust": "trust-secret"})
    pooler = Pooler(directory, cluster, **options)
    managed = Managed(pooler)
    try:
        yield pooler, managed
    except BaseException:
        print("---- pgtwist log ----")
        print(pooler.log())
        raise
    finally:
        managed.stop()


def refused(pooler: Pooler, database: str = SHARED) -> str:
    """
    The error message a new client of C{database} is refused with.
    """
    with pytest.raises(psycopg.OperationalError) as caught:
        connect(pooler, database=database)
    return str(caught.value)


def test_managementDisableEnable(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    C{disable} refuses new clients of a database with FATAL 55000 while
    connected ones go on; C{disable("*")} with C{enable} of one database
    lets only that one in; C{enable("*")} lets everyone in again.
    """
    with managedPooler(tmp_path, pgCluster, main=SESSION) as (pooler, managed):
        with connect(pooler) as connected:
            managed.call("disable", SHARED)
            message = refused(pooler)
            assert f'database "{SHARED}" is not currently accepting connections' in message
            assert scalar(connected, "SELECT 1") == 1
            with connect(pooler, database=USER) as other:
                assert scalar(other, "SELECT current_database()") == USER
            assert managed.call("isEnabled", SHARED) is False
            managed.call("enable", SHARED)
            with connect(pooler) as again:
                assert scalar(again, "SELECT 1") == 1
            managed.call("disable", "*")
            managed.call("enable", USER)
            assert "is not currently accepting connections" in refused(pooler)
            with connect(pooler, database=USER) as other:
                assert scalar(other, "SELECT 1") == 1
            assert managed.call("status")["disabled"] == ["*"]
            managed.call("enable", "*")
            with connect(pooler) as again:
                assert scalar(again, "SELECT 1") == 1
            assert scalar(connected, "SELECT 1") == 1


def test_managementFlush(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    C{flush("idle")} closes pooled backends only; C{flush("gracefully")}
    also marks busy ones, closed when their client leaves instead of being
    pooled; C{flush("all")} closes busy ones at once (their client gets an
    error). C{status} counts backends by state.
    """
    with managedPooler(tmp_path, pgCluster, main=SESSION) as (pooler, managed):
        busy = connect(pooler)
        busyPid = scalar(busy, "SELECT pg_backend_pid()")
        with connect(pooler) as leaving:
            idlePid = scalar(leaving, "SELECT pg_backend_pid()")
        waitUntilPooled(admin, idlePid)
        status = managed.call("status")
        [pool] = status["pools"]
        assert (pool["database"], pool["user"], pool["idle"], pool["active"]) == (
            SHARED,
            USER,
            1,
            1,
        )
        assert (status["total_connections"], status["active_connections"]) == (2, 1)
        assert managed.call("flush", "idle") == 1
        waitUntilGone(admin, idlePid)
        assert scalar(busy, "SELECT pg_backend_pid()") == busyPid
        assert managed.call("flush", "gracefully") == 1
        assert scalar(busy, "SELECT pg_backend_pid()") == busyPid
        busy.close()
        waitUntilGone(admin, busyPid)
        doomed = connect(pooler)
        doomedPid = scalar(doomed, "SELECT pg_backend_pid()")
        assert managed.call("flush", "all", "other_database") == 0
        assert managed.call("flush", "all", SHARED) == 1
        waitUntilGone(admin, doomedPid)
        with pytest.raises(psycopg.OperationalError):
            doomed.execute("SELECT 1")
        doomed.close()
        assert managed.call("status")["total_connections"] == 0


def test_managementGracefulShutdown(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    C{shutdown("gracefully")} stops accepting clients while a connected one
    goes on; C{shutdown("cancel")} accepts clients again; after another
    graceful shutdown, pgtwist exits as soon as the last client leaves.
    """
    with managedPooler(tmp_path, pgCluster, main=SESSION) as (pooler, managed):
        conn = connect(pooler)
        managed.call("shutdown", "gracefully")
        assert managed.call("status")["status"] == "gracefully"
        with pytest.raises(psycopg.OperationalError):
            connect(pooler)
        assert scalar(conn, "SELECT 1") == 1
        managed.call("shutdown", "cancel")
        assert managed.call("status")["status"] == "running"
        with connect(pooler) as other:
            assert scalar(other, "SELECT 2") == 2
        managed.call("shutdown", "gracefully")
        time.sleep(0.5)
        assert managed.process.poll() is None
        assert scalar(conn, "SELECT 3") == 3
        conn.close()
        assert managed.process.wait(5) == 0
        assert pooler.logCount(r"All clients left; shutting down") == 1


def test_managementImmediateShutdown(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    C{shutdown("immediate")} exits at once, disconnecting connected clients
    and closing their backends.
    """
    with managedPooler(tmp_path, pgCluster, main=SESSION) as (pooler, managed):
        conn = connect(pooler)
        pid = scalar(conn, "SELECT pg_backend_pid()")
        managed.call("shutdown", "immediate")
        assert managed.process.wait(5) == 0
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        conn.close()
        waitUntilGone(admin, pid)


def test_managementSwitchToAndReload(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    Two server sections reaching the same cluster, over TCP and over its
    unix socket: C{switchTo} sends new backends to the second (PostgreSQL
    sees no client address), closes the first one's idle backends at once
    and its busy ones when given back, and marks it failed until
    C{clearServer}. C{reload} reports whether it applied and which keys need
    a restart.
    """
    servers = (
        f"[tcp]\nhost = {pgCluster.host}\nport = {pgCluster.port}\nprimary = on\n\n"
        f"[socket]\nhost = {pgCluster.socketDir}\nport = {pgCluster.port}\n"
    )
    with managedPooler(tmp_path, pgCluster, main=SESSION, serverSections=servers) as (
        pooler,
        managed,
    ):
        busy = connect(pooler)
        assert scalar(busy, "SELECT inet_client_addr() IS NOT NULL") is True
        busyPid = scalar(busy, "SELECT pg_backend_pid()")
        with connect(pooler) as leaving:
            idlePid = scalar(leaving, "SELECT pg_backend_pid()")
        waitUntilPooled(admin, idlePid)
        assert managed.call("switchTo", "nowhere") is False
        assert managed.call("switchTo", "socket") is True
        waitUntilGone(admin, idlePid)
        states = {s["name"]: s["state"] for s in managed.call("status")["servers"]}
        assert states == {"tcp": "failed", "socket": "primary"}
        with connect(pooler) as conn:
            assert scalar(conn, "SELECT inet_client_addr() IS NULL") is True
        assert scalar(busy, "SELECT pg_backend_pid()") == busyPid
        busy.close()
        waitUntilGone(admin, busyPid)
        assert managed.call("clearServer", "tcp") is True
        states = {s["name"]: s["state"] for s in managed.call("status")["servers"]}
        assert states == {"tcp": "standby", "socket": "primary"}
        assert managed.call("reload") == [True, []]
        text = pooler.configPath.read_text()
        pooler.configPath.write_text(text.replace("log_level = debug", "log_level = info"))
        assert managed.call("reload") == [True, ["log_level"]]
        pooler.configPath.write_text(text.replace("max_connections = 10", "max_connections = x"))
        assert managed.call("reload") == [False, []]
        with connect(pooler) as conn:
            assert scalar(conn, "SELECT inet_client_addr() IS NULL") is True
