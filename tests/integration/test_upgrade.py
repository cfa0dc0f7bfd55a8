"""
Upgrading a running pgtwist (issue 17): SIGUSR2 and C{pgtwist-cli upgrade}
start a new process that takes the listening sockets, no connection attempt
is refused meanwhile, the old process serves its clients until they leave
and then exits; a new process that cannot start leaves everything with the
old one.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from tests.integration.pooler import BIN, Pooler

USER, PASSWORD = "pgt_scram", "scram-secret"
"""
The role clients log in as.
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _successorPid(pooler: Pooler) -> int:
    """
    The new process's pid, as the old one logged it.
    """
    pooler.waitForLog(r"Upgrade: the new process took \d+ listeners", timeout=30)
    found = re.findall(r"Upgrade: pgtwist \S+ \(pid (\d+)\) asks for the listeners", pooler.log())
    return int(found[-1])


def _stopPid(pid: int) -> None:
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def pooler(tmp_path: Path, pgCluster: PostgresCluster) -> Iterator[Pooler]:
    """
    A pgtwist in session pooling on TCP and its unix socket, with the
    management port; every process an upgrade started is stopped after.
    """
    started = Pooler(
        tmp_path,
        pgCluster,
        main={"pipeline": "session", "unix_socket_dir": str(tmp_path)},
        hba=["host all all all scram-sha-256", "local all all scram-sha-256"],
        users={USER: PASSWORD},
    ).start()
    try:
        yield started
    finally:
        for pid in re.findall(r"\(pid (\d+)\) asks for the listeners", started.log()):
            _stopPid(int(pid))
        started.stop()


def _connectLoop(pooler: Pooler, stop: threading.Event, results: list[str]) -> None:
    """
    Connect, query and disconnect over and over (TCP and unix socket in
    turn) until C{stop}; each outcome goes to C{results}.
    """
    hosts = ["127.0.0.1", str(pooler.directory)]
    turn = 0
    while not stop.is_set():
        turn += 1
        try:
            with psycopg.connect(pooler.dsn(USER, PASSWORD, host=hosts[turn % 2])) as conn:
                conn.execute("SELECT 1").fetchone()
            results.append("ok")
        except Exception as e:  # noqa: BLE001 - recorded, asserted on
            results.append(repr(e))


def test_upgradeRefusesNoConnection(pooler: Pooler) -> None:
    """
    Through SIGUSR2 and an upgrade, clients connecting in a loop over TCP
    and the unix socket are all served; a session open before it is handed
    to the new process with its backend (same backend pid, settings and
    prepared statements), and the old process exits while it is still
    connected; the new process serves on the same addresses.
    """
    assert pooler.process is not None
    old = pooler.process.pid
    session = psycopg.connect(pooler.dsn(USER, PASSWORD), autocommit=True)
    backend = session.execute("SELECT pg_backend_pid()").fetchone()
    session.execute("SET application_name = 'kept'")
    session.execute("SELECT %s::int + 1", (1,), prepare=True)
    stop, results = threading.Event(), []  # type: ignore[var-annotated]
    loop = threading.Thread(target=_connectLoop, args=(pooler, stop, results))
    loop.start()
    try:
        time.sleep(0.3)
        pooler.process.send_signal(signal.SIGUSR2)
        new = _successorPid(pooler)
        assert new != old
        before = len(results)
        deadline = time.monotonic() + 10
        while len(results) < before + 10 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join()
    assert [r for r in results if r != "ok"] == []
    assert len(results) > 10
    # The session went to the new process with its backend, its settings
    # and prepared statements: the old process is gone.
    assert pooler.process.wait(15) == 0
    assert session.execute("SELECT pg_backend_pid()").fetchone() == backend
    assert session.execute("SHOW application_name").fetchone() == ("kept",)
    assert session.execute("SELECT %s::int + 1", (2,), prepare=True).fetchone() == (3,)
    prepared = session.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
    assert prepared is not None and prepared[0] >= 1
    session.close()
    with psycopg.connect(pooler.dsn(USER, PASSWORD)) as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)
    assert _alive(new)
    # The unix socket's file stayed for the new process.
    assert (pooler.directory / f".s.PGSQL.{pooler.port}").exists()


def test_failedUpgradeKeepsRunning(pooler: Pooler) -> None:
    """
    A new process that cannot start (its configuration is broken now)
    takes nothing: the old one logs why and goes on listening.
    """
    good = pooler.configPath.read_text()
    pooler.configPath.write_text(good.replace("[primary]", "max_connections = x\n\n[primary]", 1))
    assert pooler.process is not None
    pooler.process.send_signal(signal.SIGUSR2)
    pooler.waitForLog("Upgrade failed, this process goes on", timeout=30)
    pooler.configPath.write_text(good)
    with psycopg.connect(pooler.dsn(USER, PASSWORD)) as conn:
        assert conn.execute("SELECT 4").fetchone() == (4,)
    with psycopg.connect(pooler.dsn(USER, PASSWORD, host=str(pooler.directory))) as conn:
        assert conn.execute("SELECT 5").fetchone() == (5,)
    assert pooler.process.poll() is None


def test_cancelAfterUpgrade(pooler: Pooler) -> None:
    """
    A session left with the old process (the new one serves its pool in
    transaction pooling, so it will not take it) runs a long query; the
    cancel its driver sends after the upgrade reaches the new process,
    which offers it to the old one: the query is cancelled.
    """
    session = psycopg.connect(pooler.dsn(USER, PASSWORD), autocommit=True)
    assert pooler.process is not None
    config = pooler.configPath.read_text()
    pooler.configPath.write_text(config.replace("pipeline = session", "pipeline = transaction"))
    pooler.process.send_signal(signal.SIGUSR2)
    _successorPid(pooler)
    pooler.waitForLog(r"the new process did not take client", timeout=15)
    outcome: list[BaseException | None] = []

    def sleep() -> None:
        try:
            session.execute("SELECT pg_sleep(30)")
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - asserted on
            outcome.append(e)

    runner = threading.Thread(target=sleep)
    began = time.monotonic()
    runner.start()
    time.sleep(1.0)
    session.cancel()
    runner.join(20)
    assert isinstance(outcome[0], psycopg.errors.QueryCanceled)
    assert time.monotonic() - began < 15
    session.close()
    assert pooler.process.wait(15) == 0


def test_asyncpgSessionHandedOver(pooler: Pooler) -> None:
    """
    An asyncpg session (its statement cache: named prepared statements)
    with a SET and a prepared statement of its own goes to the new process
    with its backend: same backend pid, setting and statements after the
    old process exited; a cancel sent then cancels its query.
    """
    assert pooler.process is not None
    process = pooler.process

    async def run() -> None:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=pooler.port, user=USER, password=PASSWORD, database=USER
        )
        try:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("SET search_path = pg_catalog, public")
            statement = await conn.prepare("SELECT $1::int * 2")
            assert await statement.fetchval(21) == 42
            process.send_signal(signal.SIGUSR2)
            deadline = time.monotonic() + 20
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert process.poll() == 0
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid
            assert await conn.fetchval("SHOW search_path") == "pg_catalog, public"
            assert await statement.fetchval(4) == 8
            sleeping = asyncio.ensure_future(conn.execute("SELECT pg_sleep(30)"))
            await asyncio.sleep(0.5)
            began = time.monotonic()
            # asyncpg cancels a query whose task is cancelled (a CancelRequest).
            sleeping.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sleeping
            assert await conn.fetchval("SELECT 5") == 5
            assert time.monotonic() - began < 10
        finally:
            await conn.close()

    asyncio.run(run())
    assert re.search(r"1 clients and 0 idle backends taken over", pooler.log())


@pytest.mark.parametrize("pipeline", ["session", "transaction"])
def test_pgbenchThroughThreeUpgrades(
    tmp_path: Path, pgCluster: PostgresCluster, pipeline: str
) -> None:
    """
    C{pgbench -C -c 50} (a new connection for every transaction) runs
    while pgtwist is upgraded three times in a row with C{pgtwist-cli
    upgrade} (each upgrading the process the one before started): not one
    connection or transaction fails.
    """
    pooler = Pooler(
        tmp_path,
        pgCluster,
        main={
            "pipeline": pipeline,
            "max_connections": 10,
            "blocking_timeout": 60,
            "unix_socket_dir": str(tmp_path),
        },
        hba=["host all pgt_trust all trust", "local all all scram-sha-256"],
        users={"pgt_trust": "trust-secret"},
    ).start()
    script = tmp_path / "select.sql"
    script.write_text("SELECT 1;\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "30"
    # A thread per client: pgbench connects synchronously, and in session
    # pooling a thread blocked on a login that waits for a backend would
    # stall the clients of that thread holding the backends.
    command = [pgCluster.pgbench, "-n", "-C", "-c", "50", "-j", "50", "-T", "2", "-f", str(script)]
    command += ["-h", "127.0.0.1", "-p", str(pooler.port), "-U", "pgt_trust", "pgt_trust"]
    stop, outputs = threading.Event(), []  # type: ignore[var-annotated]

    def bench() -> None:
        while not stop.is_set():
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
            outputs.append((done.returncode, done.stdout + done.stderr))

    loop = threading.Thread(target=bench)
    loop.start()
    try:
        for round in range(3):
            upgraded = subprocess.run(
                [str(BIN / "pgtwist-cli"), "-c", str(pooler.configPath), "upgrade"],
                capture_output=True,
                text=True,
                timeout=60,
                env=pooler.environ,
            )
            assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
            pooler.waitForLog(r"Upgrade: the new process took \d+ listeners", count=round + 1)
    finally:
        stop.set()
        loop.join()
        for pid in re.findall(r"\(pid (\d+)\) asks for the listeners", pooler.log()):
            _stopPid(int(pid))
        pooler.stop()
    assert outputs
    for returncode, output in outputs:
        assert returncode == 0, output
        assert re.search(r"number of failed transactions: 0\b", output), output
        assert re.search(r"number of transactions actually processed: [1-9]", output), output


@pytest.fixture
def transactionPooler(tmp_path: Path, pgCluster: PostgresCluster) -> Iterator[Pooler]:
    """
    A pgtwist in transaction pooling on TCP and its unix socket; every
    process an upgrade started is stopped after.
    """
    started = Pooler(
        tmp_path,
        pgCluster,
        main={"pipeline": "transaction", "unix_socket_dir": str(tmp_path)},
        hba=["host all all all scram-sha-256", "local all all scram-sha-256"],
        users={USER: PASSWORD},
    ).start()
    try:
        yield started
    finally:
        for pid in re.findall(r"\(pid (\d+)\) asks for the listeners", started.log()):
            _stopPid(int(pid))
        started.stop()


def _backendPids(cluster: PostgresCluster) -> set[int]:
    """
    The pids of the PostgreSQL backends of L{USER} now.
    """
    out = cluster.psql(f"SELECT pid FROM pg_stat_activity WHERE usename = '{USER}'")
    return {int(line) for line in out.split() if line.strip().isdigit()}


def test_transactionClientsHandedOver(
    transactionPooler: Pooler, pgCluster: PostgresCluster
) -> None:
    """
    In transaction pooling, clients idle between transactions go to the
    new process with their settings, prepared statements and cancel key:
    the old process exits while they are still connected, and they carry
    on as if nothing happened; a cancel reaches the new process, which
    knows the key. The idle pooled backends go too: PostgreSQL sees the
    same backends, no new login.
    """
    pooler = transactionPooler
    assert pooler.process is not None
    sessions = [
        psycopg.connect(pooler.dsn(USER, PASSWORD, host=host), autocommit=True)
        for host in ("127.0.0.1", str(pooler.directory))
    ]
    for number, session in enumerate(sessions):
        session.execute(f"SET application_name = 'kept{number}'")
        assert session.execute("SELECT %s::int + 1", (1,), prepare=True).fetchone() == (2,)
    before = _backendPids(pgCluster)
    assert before
    pooler.process.send_signal(signal.SIGUSR2)
    new = _successorPid(pooler)
    # The old process exits once it handed over both clients, which are
    # still connected, and its idle backends.
    assert pooler.process.wait(15) == 0
    assert re.search(r"Upgrade: every client left; exiting", pooler.log())
    pooler.waitForLog(r"2 clients and [1-9]\d* idle backends taken over", timeout=10)
    # No new login: every backend now was there before (one of an earlier
    # test's pooler may have gone meanwhile).
    assert _backendPids(pgCluster) <= before
    for number, session in enumerate(sessions):
        assert session.execute("SELECT %s::int + 1", (2,), prepare=True).fetchone() == (3,)
        assert session.execute("SHOW application_name").fetchone() == (f"kept{number}",)
    assert _backendPids(pgCluster) <= before
    outcome: list[BaseException | None] = []

    def sleep() -> None:
        try:
            sessions[0].execute("SELECT pg_sleep(30)")
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - asserted on
            outcome.append(e)

    runner = threading.Thread(target=sleep)
    runner.start()
    time.sleep(0.5)
    sessions[0].cancel()
    runner.join(20)
    assert isinstance(outcome[0], psycopg.errors.QueryCanceled)
    for session in sessions:
        assert session.execute("SELECT 7").fetchone() == (7,)
        session.close()
    assert _alive(new)


def test_newProcessKeepsNoClientItCannotServe(transactionPooler: Pooler) -> None:
    """
    A new process whose configuration serves the pool with another
    pipeline refuses the client: it stays with the old process, which goes
    on serving it (settings and prepared statements intact) and exits once
    it leaves.
    """
    pooler = transactionPooler
    assert pooler.process is not None
    session = psycopg.connect(pooler.dsn(USER, PASSWORD), autocommit=True)
    session.execute("SET application_name = 'stays'")
    assert session.execute("SELECT %s::int + 1", (1,), prepare=True).fetchone() == (2,)
    config = pooler.configPath.read_text()
    pooler.configPath.write_text(config.replace("pipeline = transaction", "pipeline = session"))
    pooler.process.send_signal(signal.SIGUSR2)
    _successorPid(pooler)
    pooler.waitForLog(r"the new process did not take client", timeout=15)
    assert pooler.process.poll() is None
    assert session.execute("SELECT %s::int + 1", (2,), prepare=True).fetchone() == (3,)
    assert session.execute("SHOW application_name").fetchone() == ("stays",)
    session.close()
    assert pooler.process.wait(15) == 0


@pytest.mark.parametrize("pipeline", ["session", "transaction"])
def test_pgbenchConnectedThroughThreeUpgrades(
    tmp_path: Path, pgCluster: PostgresCluster, pipeline: str
) -> None:
    """
    C{pgbench -c 50} (connections held for the whole run) runs while
    pgtwist is upgraded three times in a row, each old process handing
    every client over (with its backend in session pooling) before the
    next upgrade: not one transaction fails, and each old process exits
    while the run goes on.
    """
    pooler = Pooler(
        tmp_path,
        pgCluster,
        main={
            "pipeline": pipeline,
            "max_connections": 60,
            "blocking_timeout": 60,
            "unix_socket_dir": str(tmp_path),
        },
        hba=["host all pgt_trust all trust", "local all all scram-sha-256"],
        users={"pgt_trust": "trust-secret"},
    ).start()
    script = tmp_path / "select.sql"
    script.write_text("SELECT 1;\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    # At a bounded rate, so that starting each new process is not starved
    # of CPU on a small machine; long enough for three upgrades.
    command = [pgCluster.pgbench, "-n", "-c", "50", "-j", "10", "-R", "200", "-T", "15"]
    command += ["-f", str(script)]
    command += ["-h", "127.0.0.1", "-p", str(pooler.port), "-U", "pgt_trust", "pgt_trust"]
    try:
        bench = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        time.sleep(1.0)
        assert pooler.process is not None
        running = pooler.process.pid
        for round in range(3):
            # SIGUSR2 to the process running now (pgtwist-cli's start-up
            # would only make the test longer).
            os.kill(running, signal.SIGUSR2)
            pooler.waitForLog(r"Upgrade: every client left; exiting", count=round + 1, timeout=20)
            assert bench.poll() is None, "pgbench ended before the upgrades did"
            found = re.findall(r"\(pid (\d+)\) asks for the listeners", pooler.log())
            running = int(found[-1])
        output, _ = bench.communicate(timeout=60)
    finally:
        for pid in re.findall(r"\(pid (\d+)\) asks for the listeners", pooler.log()):
            _stopPid(int(pid))
        pooler.stop()
    assert bench.returncode == 0, output
    assert re.search(r"number of failed transactions: 0\b", output), output
    assert re.search(r"number of transactions actually processed: [1-9]", output), output
    assert len(re.findall(r"50 clients and \d+ idle backends taken over", pooler.log())) == 3


def test_daemonPidFileAndLock(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    With C{-d}, after an upgrade the pid file names the new process (the
    old one's twistd removed it as it exited) and the unix socket's lock
    file is the new process's; it removes the pid file when it exits.
    """
    from tests.integration.test_cli import fileArguments, running, waitFor

    pooler = Pooler(
        tmp_path,
        pgCluster,
        main={"unix_socket_dir": str(tmp_path)},
        users={USER: PASSWORD},
    )
    pidFile = tmp_path / "pgtwist.pid"
    lock = tmp_path / f".s.PGSQL.{pooler.port}.lock"
    started = subprocess.run(
        [str(BIN / "pgtwist"), "-d", *fileArguments(pooler)],
        cwd=tmp_path,
        env=pooler.environ,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    waitFor(lambda: pidFile.exists() and pidFile.read_text().strip() != "", "pgtwist.pid")
    old = int(pidFile.read_text())
    new = 0
    try:
        waitFor(lambda: lock.is_symlink(), "the socket's lock")
        os.kill(old, signal.SIGUSR2)
        waitFor(lambda: not running(old), "the old process to exit")
        waitFor(
            lambda: pidFile.exists() and pidFile.read_text().strip() not in ("", str(old)),
            "the new pid file",
        )
        new = int(pidFile.read_text())
        assert running(new)
        assert os.readlink(lock) == str(new)
        with psycopg.connect(pooler.dsn(USER, PASSWORD)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        for pid in (old, new):
            if pid and running(pid):
                os.kill(pid, signal.SIGTERM)
                waitFor(lambda: not running(pid), "pgtwist to exit")  # noqa: B023
    assert not pidFile.exists()


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return {int(child) for child in path.read_text().split()}
    except OSError:
        return set()


def test_workersHandOver(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    With C{workers = 2}, SIGUSR2 to the supervisor: each old worker hands
    its share of the listeners, its idle clients and its idle backends to
    the new worker of the same index. Idle clients in transaction pooling
    carry on, one in session pooling keeps its backend and settings, new
    connections (TCP and unix socket) are served all along, and the old
    supervisor and its workers exit.
    """
    pooler = Pooler(
        tmp_path,
        pgCluster,
        main={"workers": 2, "pipeline": "transaction", "max_connections": 8},
        hba=[
            "host all pgt_trust all trust",
            "host all all all scram-sha-256",
            "local all all scram-sha-256",
        ],
        users={USER: PASSWORD},
        limits=["all pgt_trust all 0 0 session"],
    ).start()
    assert pooler.process is not None
    old = pooler.process.pid
    new = 0
    try:
        deadline = time.monotonic() + 10
        while len(_children(old)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        oldWorkers = _children(old)
        assert len(oldWorkers) == 2
        clients = [psycopg.connect(pooler.dsn(USER, PASSWORD), autocommit=True) for _ in range(6)]
        for client in clients:
            assert client.execute("SELECT 1").fetchone() == (1,)
        session = psycopg.connect(pooler.dsn("pgt_trust", None), autocommit=True)
        backend = session.execute("SELECT pg_backend_pid()").fetchone()
        session.execute("SET application_name = 'kept'")
        stop, results = threading.Event(), []  # type: ignore[var-annotated]
        loop = threading.Thread(target=_connectLoop, args=(pooler, stop, results))
        loop.start()
        try:
            time.sleep(0.3)
            pooler.process.send_signal(signal.SIGUSR2)
            new = _successorPid(pooler)
            # Every old process exits once its clients went to the new ones.
            assert pooler.process.wait(30) == 0
            before = len(results)
            deadline = time.monotonic() + 10
            while len(results) < before + 5 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            loop.join()
        assert [r for r in results if r != "ok"] == []
        assert len(results) > 5
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in oldWorkers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in oldWorkers)
        for client in clients:
            assert client.execute("SELECT 2").fetchone() == (2,)
            client.close()
        assert session.execute("SELECT pg_backend_pid()").fetchone() == backend
        assert session.execute("SHOW application_name").fetchone() == ("kept",)
        assert len(_children(new)) == 2
        # Each new worker took over its predecessor (the kernel decides how
        # the seven clients were spread, so one may have had none); all of
        # them were taken over.
        takenOver = 0
        for index in (0, 1):
            log = Path(f"{pooler.logPath}.{index}").read_text()
            found = re.search(r"Upgrade: (\d+) clients and \d+ idle backends taken over", log)
            assert found is not None
            takenOver += int(found.group(1))
        assert takenOver >= len(clients) + 1
        # Again, through a worker's console: it asks its supervisor.
        upgraded = subprocess.run(
            [str(BIN / "pgtwist-cli"), "-c", str(pooler.configPath), "upgrade"],
            capture_output=True,
            text=True,
            timeout=60,
            env=pooler.environ,
        )
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        pooler.waitForLog(r"Upgrade: the new process took \d+ listeners", count=2)
        deadline = time.monotonic() + 30
        while _alive(new) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(new)
        assert session.execute("SELECT pg_backend_pid()").fetchone() == backend
        with psycopg.connect(pooler.dsn(USER, PASSWORD)) as conn:
            assert conn.execute("SELECT 3").fetchone() == (3,)
        session.close()
    finally:
        for pid in re.findall(r"\(pid (\d+)\) asks for the listeners", pooler.log()):
            _stopPid(int(pid))
        pooler.stop()
