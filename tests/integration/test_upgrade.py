"""
Upgrading a running pgtwist (issue 17): SIGUSR2 and C{pgtwist-cli upgrade}
start a new process that takes the listening sockets, no connection attempt
is refused meanwhile, the old process serves its clients until they leave
and then exits; a new process that cannot start leaves everything with the
old one.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

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
    and the unix socket are all served; a session open before it carries
    on with the old process, which exits once it leaves; the new process
    serves on the same addresses.
    """
    assert pooler.process is not None
    old = pooler.process.pid
    session = psycopg.connect(pooler.dsn(USER, PASSWORD), autocommit=True)
    backend = session.execute("SELECT pg_backend_pid()").fetchone()
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
    # The session stays with the old process, on the same backend.
    assert session.execute("SELECT pg_backend_pid()").fetchone() == backend
    assert pooler.process.poll() is None
    session.close()
    assert pooler.process.wait(15) == 0
    with psycopg.connect(pooler.dsn(USER, PASSWORD)) as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)
    assert _alive(new)
    # The unix socket's file stayed for the new process.
    assert (pooler.directory / f".s.PGSQL.{pooler.port}").exists()


def test_cliUpgradeTwice(pooler: Pooler) -> None:
    """
    C{pgtwist-cli upgrade} answers once the new process took over; the new
    one can be upgraded in turn.
    """
    for round in range(2):
        done = subprocess.run(
            [str(BIN / "pgtwist-cli"), "-c", str(pooler.configPath), "upgrade"],
            capture_output=True,
            text=True,
            timeout=60,
            env=pooler.environ,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        pooler.waitForLog(r"Upgrade: the new process took \d+ listeners", count=round + 1)
        with psycopg.connect(pooler.dsn(USER, PASSWORD)) as conn:
            assert conn.execute("SELECT 3").fetchone() == (3,)
    assert pooler.process is not None
    assert pooler.process.wait(15) == 0


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
