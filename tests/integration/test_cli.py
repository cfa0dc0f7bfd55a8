"""
pgtwist's command lines as an operator runs them: C{twistd pgtwist},
the pgagroal-style C{pgtwist} console script (C{-V}, C{-?}, C{-d}), start-up
failures on a bad configuration, logging as C{log_type}, C{log_level} and
C{log_path} ask, and pgagroal's own sample configuration.

Every process started here is stopped before its test ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg
import pytest

from pgtwist import __version__
from pgtwist.testing.embedded import PostgresCluster
from tests.integration.conftest import ROLES
from tests.integration.pooler import BIN, Pooler

#: The repository root (where C{twisted/plugins/pgtwist_plugin.py} lives).
ROOT = Path(__file__).resolve().parents[2]

#: A vault with one role, the one most tests log in as.
USERS = {"pgt_scram": ROLES["pgt_scram"][0]}


def waitFor(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """
    Poll C{condition} until it holds; fail the test after C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def accepting(port: int) -> bool:
    """
    Whether something accepts TCP connections on 127.0.0.1:C{port}.
    """
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def serve(pooler: Pooler, arguments: Sequence[str], cwd: Path) -> Pooler:
    """
    Start C{arguments} (a pgtwist command line for C{pooler}'s files) in
    C{cwd} as C{pooler}'s process and wait until it accepts connections.
    """
    with open(pooler.directory / "stdout.txt", "wb") as output:
        pooler.process = subprocess.Popen(
            list(arguments), cwd=cwd, env=pooler.environ, stdout=output, stderr=subprocess.STDOUT
        )
    process = pooler.process

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(
                f"pgtwist exited with {process.returncode}:\n"
                + (pooler.directory / "stdout.txt").read_text()
                + pooler.log()
            )
        return accepting(pooler.port)

    try:
        waitFor(ready, "pgtwist to listen")
    except BaseException:
        pooler.stop()
        raise
    return pooler


def fileArguments(pooler: Pooler) -> list[str]:
    """
    C{-c CONF -a HBA -u USERS} for C{pooler}'s files.
    """
    return ["-c", str(pooler.configPath), "-a", str(pooler.hbaPath), "-u", str(pooler.usersPath)]


def assertServes(pooler: Pooler) -> None:
    """
    A SCRAM client gets a result through C{pooler}.
    """
    with psycopg.connect(pooler.dsn("pgt_scram", USERS["pgt_scram"])) as conn:
        assert conn.execute("SELECT 6 * 7").fetchone() == (42,)


def runScript(*arguments: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """
    Run the C{pgtwist} console script to completion.
    """
    return subprocess.run(
        [str(BIN / "pgtwist"), *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_twistdHelpListsPgtwist() -> None:
    """
    C{twistd --help} finds the dropin and lists C{pgtwist} among its commands.
    """
    result = subprocess.run(
        [str(BIN / "twistd"), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    commands = result.stdout.split("Commands:", 1)[1]
    assert any(line.split()[:1] == ["pgtwist"] for line in commands.splitlines()), commands


def test_twistdRunsPgtwist(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    C{twistd -n pgtwist -c CONF -a HBA -u USERS} serves queries and stops on
    SIGTERM after a clean shutdown.
    """
    pooler = Pooler(tmp_path, pgCluster, hba=["host all all all scram-sha-256"], users=USERS)
    arguments = [str(BIN / "twistd"), "-n", "pgtwist", *fileArguments(pooler)]
    try:
        serve(pooler, arguments, cwd=tmp_path)
        assertServes(pooler)
    finally:
        status = pooler.stop()
    assert status == -signal.SIGTERM
    assert "Server Shut Down." in pooler.log()
    assert not accepting(pooler.port)


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(tmp_path: Path, flag: str) -> None:
    """
    C{pgtwist -V} prints the version and exits 0.
    """
    result = runScript(flag, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"pgtwist {__version__}\n",
        "",
    )


@pytest.mark.parametrize("flag", ["-?", "--help"])
def test_help(tmp_path: Path, flag: str) -> None:
    """
    C{pgtwist -?} prints pgagroal-style help and exits 0.
    """
    result = runScript(flag, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"pgtwist {__version__}\n")
    for option in ("-c, --config", "-a, --hba", "-u, --users", "-d, --daemon", "-?, --help"):
        assert option in result.stdout


def test_badConfiguration(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    A value that does not parse stops start-up with one line,
    C{pgtwist: path:line: ...}, no usage text, and exit status 1.
    """
    pooler = Pooler(tmp_path, pgCluster, users=USERS)
    pooler.configPath.write_text(
        "[pgtwist]\n"  # 1
        "host = 127.0.0.1\n"  # 2
        f"port = {pooler.port}\n"  # 3
        "log_type = console\n"  # 4
        "log_level = info\n"  # 5
        f"unix_socket_dir = {tmp_path}\n"  # 6
        "max_connections = abc\n"  # 7
        "\n"
        "[primary]\n"
        f"host = {pgCluster.host}\n"
        f"port = {pgCluster.port}\n"
    )
    result = runScript(*fileArguments(pooler), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith(f"pgtwist: {pooler.configPath}:7: max_connections: "), output
    assert "Usage:" not in output
    assert not accepting(pooler.port)


def test_unknownKeyWarns(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    An unknown key is a warning, logged, and pgtwist starts anyway.
    """
    pooler = Pooler(tmp_path, pgCluster, main={"frobnicate": "yes"}, users=USERS)
    try:
        serve(pooler, [str(BIN / "pgtwist"), *fileArguments(pooler)], cwd=tmp_path)
        assertServes(pooler)
    finally:
        pooler.stop()
    assert "unknown key 'frobnicate'" in pooler.log()


def test_logFileAndLevels(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    C{log_type = file} writes to C{log_path} and nothing to the console;
    C{log_level = warn} keeps warnings but hides the info line of a
    connection, which C{log_level = debug} shows along with debug lines.
    """
    logs: dict[str, str] = {}
    for level in ("warn", "debug"):
        directory = tmp_path / level
        directory.mkdir()
        logPath = directory / "elsewhere" / f"pgtwist-{level}.log"
        logPath.parent.mkdir()
        pooler = Pooler(
            directory,
            pgCluster,
            main={
                "log_level": level,
                "log_path": logPath,
                "log_connections": "on",
                "log_disconnections": "on",
            },
            hba=["host all all all scram-sha-256"],
            users=USERS,
        )
        try:
            serve(pooler, [str(BIN / "pgtwist"), *fileArguments(pooler)], cwd=directory)
            assertServes(pooler)
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(pooler.dsn("pgt_scram", "wrong-password"))
        finally:
            pooler.stop()
        assert not pooler.logPath.exists()
        assert (directory / "stdout.txt").read_text() == ""
        logs[level] = logPath.read_text()
    failed = "Authentication of 'pgt_scram' for 'pgt_scram' from 127.0.0.1 failed: wrong password"
    connected = "Connection from 127.0.0.1 for ('pgt_scram', 'pgt_scram')"
    disconnected = "Client 127.0.0.1 of ('pgt_scram', 'pgt_scram') disconnected"
    assert failed in logs["warn"]
    assert "#info]" not in logs["warn"] and "#debug]" not in logs["warn"]
    assert connected not in logs["warn"]
    assert "pgtwist listening on" not in logs["warn"]
    for line in (failed, connected, disconnected, "pgtwist listening on", "New backend"):
        assert line in logs["debug"]


def test_daemon(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    C{pgtwist -d} returns at once, leaves C{pgtwist.pid} in its working
    directory and serves in the background until killed.
    """
    pooler = Pooler(tmp_path, pgCluster, users=USERS)
    pidFile = tmp_path / "pgtwist.pid"
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "pgtwist"), "-d", *fileArguments(pooler)],
        cwd=tmp_path,
        env=pooler.environ,
        capture_output=True,
        text=True,
        timeout=30,
    )
    pid: int | None = None
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert time.monotonic() - started < 15
        waitFor(lambda: pidFile.exists() and pidFile.read_text().strip() != "", "pgtwist.pid")
        pid = int(pidFile.read_text())
        waitFor(lambda: accepting(pooler.port), "the daemon to listen")
        assertServes(pooler)
    finally:
        if pid is None and pidFile.exists() and pidFile.read_text().strip():
            pid = int(pidFile.read_text())
        if pid is not None and running(pid):
            os.kill(pid, signal.SIGTERM)
            try:
                waitFor(lambda: not running(pid), "the daemon to exit on SIGTERM")
            except BaseException:
                os.kill(pid, signal.SIGKILL)
                raise
    assert not accepting(pooler.port)
    assert not pidFile.exists()
    assert "Server Shut Down." in pooler.log()


def running(pid: int) -> bool:
    """
    Whether process C{pid} exists and is not a zombie (a daemon is not our
    child, so we cannot reap it).
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_pgagroalSampleConfiguration(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    pgagroal's getting-started C{pgagroal.conf}, with only its ports and
    directories changed, starts pgtwist and serves a vault user.
    """
    pooler = Pooler(tmp_path, pgCluster, users=USERS)
    configPath = tmp_path / "pgagroal.conf"
    configPath.write_text(
        "[pgagroal]\n"
        "host = *\n"
        f"port = {pooler.port}\n"
        "\n"
        "log_type = file\n"
        "log_level = info\n"
        f"log_path = {pooler.logPath}\n"
        "\n"
        "max_connections = 100\n"
        "idle_timeout = 600\n"
        "validation = off\n"
        f"unix_socket_dir = {tmp_path}\n"
        "\n"
        "[primary]\n"
        "host = localhost\n"
        f"port = {pgCluster.port}\n"
    )
    hbaPath = tmp_path / "pgagroal_hba.conf"
    hbaPath.write_text("host    all    all    all    all\n")
    arguments = [str(BIN / "pgtwist"), "-c", str(configPath), "-a", str(hbaPath)]
    arguments += ["-u", str(pooler.usersPath)]
    try:
        serve(pooler, arguments, cwd=tmp_path)
        assertServes(pooler)
        assert os.path.exists(tmp_path / f".s.PGSQL.{pooler.port}")
    finally:
        status = pooler.stop()
    assert status == -signal.SIGTERM
    assert "pgtwist listening on" in pooler.log()
