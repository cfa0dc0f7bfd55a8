"""
C{pgtwist-cli} against a real pgtwist in front of the suite's PostgreSQL:
every command through the unix socket (local mode, trusted as the same uid),
remote mode over the C{management} port with SCRAM and the admins file, the
JSON output and the exit statuses.

Every pgtwist started here is stopped before its test ends.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgtwist.config.vault import writeUsersFile
from pgtwist.testing.certs import CertificateAuthority
from pgtwist.testing.embedded import PostgresCluster
from tests.integration.clients import runningPooler, waitFor
from tests.integration.pooler import BIN, Pooler, freePort

USER, PASSWORD = "pgt_scram", "scram-secret"
"""
The role clients log in as, through pgtwist and toward PostgreSQL.
"""

SHARED = "pgtwist_test"
"""
A database every role of the suite may connect to.
"""

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
"""
The user of the admins file, for remote mode.
"""


def cli(pooler: Pooler, *argv: str, local: bool = True) -> subprocess.CompletedProcess[str]:
    """
    Run C{pgtwist-cli} (with C{-c} for C{pooler}'s configuration when
    C{local}) and return its exit status and output.
    """
    arguments = [str(BIN / "pgtwist-cli")]
    if local:
        arguments += ["-c", str(pooler.configPath)]
    return subprocess.run(
        [*arguments, *argv], capture_output=True, text=True, timeout=60, env=pooler.environ
    )


def cliJson(pooler: Pooler, *argv: str, status: int = 0) -> dict[str, Any]:
    """
    Run C{pgtwist-cli -F json}, check its exit status, and return the
    C{command} object of its document.
    """
    result = cli(pooler, "-F", "json", *argv)
    assert result.returncode == status, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["application"]["name"] == "pgtwist-cli"
    command: dict[str, Any] = document["command"]
    assert command["exit-status"] == status
    return command


def connect(pooler: Pooler) -> psycopg.Connection:
    """
    An autocommit client connection through C{pooler}.
    """
    return psycopg.connect(pooler.dsn(USER, PASSWORD, SHARED), autocommit=True)


def statusValues(pooler: Pooler) -> dict[str, Any]:
    """
    C{status}'s JSON output.
    """
    output: dict[str, Any] = cliJson(pooler, "status")["output"]
    return output


@pytest.fixture
def pooler(tmp_path: Path, pgCluster: PostgresCluster) -> Iterator[Pooler]:
    """
    A running pgtwist with a unix socket, two server sections (C{primary}
    and C{replica}, both the suite's cluster) and an admins file.
    """
    writeUsersFile(
        str(tmp_path / "pgtwist_admins.conf"),
        {ADMIN: ADMIN_PASSWORD},
        masterKey=b"integration-master-key",
    )
    servers = (
        f"[primary]\nhost = {pgCluster.host}\nport = {pgCluster.port}\nprimary = on\n\n"
        f"[replica]\nhost = localhost\nport = {pgCluster.port}\n"
    )
    with runningPooler(tmp_path, pgCluster, serverSections=servers) as running:
        yield running


def test_ping(pooler: Pooler) -> None:
    """
    C{ping} (and C{is-alive}) exit 0 and print nothing while pgtwist runs,
    and exit 1 once it is gone.
    """
    for command in ("ping", "is-alive"):
        result = cli(pooler, command)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    verbose = cli(pooler, "ping", "-v")
    assert verbose.stderr == "pgtwist-cli: Success (0)\n"
    assert cliJson(pooler, "ping")["output"]["message"] == "running"
    pooler.stop()
    gone = cli(pooler, "ping")
    assert gone.returncode == 1
    assert "cannot connect" in gone.stderr


def test_status(pooler: Pooler) -> None:
    """
    C{status} shows the state, the counts and the servers.
    """
    result = cli(pooler, "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Status:              Running"
    assert "Max connections:     10" in lines
    assert any(line.split()[:2] == ["primary", "primary"] for line in lines)
    output = statusValues(pooler)
    assert output["status"] == {"message": "Running", "status": 1}
    assert output["connections"]["max"] == 10
    assert [s["name"] for s in output["servers"]["list"]] == ["primary", "replica"]


def test_statusDetails(pooler: Pooler) -> None:
    """
    C{status details} lists the pools and the connections, including a
    connected client's.
    """
    with connect(pooler) as conn:
        conn.execute("SELECT 1")
        result = cli(pooler, "status", "details")
        assert result.returncode == 0, result.stderr
        assert "Pools:" in result.stdout
        assert SHARED in result.stdout
        output = cliJson(pooler, "details")["output"]
        pools = output["pools"]["list"]
        # PgBouncer also lists its console as the pool (pgbouncer, pgbouncer).
        assert (SHARED, USER) in [(p["database"], p["user"]) for p in pools]
        assert output["pools"]["count"] == len(pools)
        clients = output["client_connections"]["list"]
        assert any(c["user"] == USER and c["database"] == SHARED for c in clients)


def test_flush(pooler: Pooler) -> None:
    """
    C{flush idle} closes the backend a client left behind; the other
    modes and database forms are accepted.
    """
    with connect(pooler) as conn:
        conn.execute("SELECT 1")
    waitFor(lambda: statusValues(pooler)["connections"]["total"] == 1)
    assert cli(pooler, "flush", "idle").returncode == 0
    waitFor(lambda: statusValues(pooler)["connections"]["total"] == 0)
    for argv in (["flush"], ["flush", "all", SHARED], ["flush-gracefully", "*"]):
        result = cli(pooler, *argv)
        assert result.returncode == 0, (argv, result.stderr)


def test_disableEnable(pooler: Pooler) -> None:
    """
    While a database is disabled new clients of it are refused; C{enable}
    lets them in again, also after C{disable} of every database.
    """
    assert cli(pooler, "disable", SHARED).returncode == 0
    with pytest.raises(psycopg.OperationalError):
        connect(pooler).close()
    assert cli(pooler, "enable", SHARED).returncode == 0
    connect(pooler).close()
    assert cli(pooler, "disabledb").returncode == 0
    with pytest.raises(psycopg.OperationalError):
        connect(pooler).close()
    assert cli(pooler, "enable").returncode == 0
    connect(pooler).close()


def test_conf(pooler: Pooler) -> None:
    """
    C{conf ls} names the files, C{conf get} reads a setting, C{conf set}
    changes one the running pgtwist can change and exits 2 for one it
    cannot, and C{conf reload} re-reads the files (undoing the C{set}).
    """
    ls = cli(pooler, "conf", "ls")
    assert ls.returncode == 0, ls.stderr
    assert f"Main Configuration file:   {pooler.configPath}" in ls.stdout.splitlines()
    files = cliJson(pooler, "conf", "ls")["output"]["files"]["list"]
    assert {f["name"]: f["path"] for f in files}["hba"] == str(pooler.hbaPath)

    assert cli(pooler, "conf", "get", "max_connections").stdout == "10\n"
    assert cli(pooler, "conf", "get", "pgagroal.blocking_timeout", "-v").stdout == (
        "blocking_timeout = 5\n"
    )
    unknown = cli(pooler, "conf", "get", "no_such_key")
    assert (unknown.returncode, unknown.stdout) == (2, "")

    changed = cli(pooler, "conf", "set", "blocking_timeout", "7")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "Configuration change applied successfully" in changed.stdout
    assert cli(pooler, "conf", "get", "blocking_timeout").stdout == "7\n"

    refused = cliJson(pooler, "conf", "set", "port", "1", status=2)
    assert refused["error"] == 1
    assert "SET failed" in refused["status"]

    assert cli(pooler, "conf", "reload").returncode == 0
    waitFor(lambda: cli(pooler, "conf", "get", "blocking_timeout").stdout == "5\n")


def test_switchToAndClear(pooler: Pooler) -> None:
    """
    C{switch-to} makes another server the primary (an unknown one exits 2);
    C{clear server} and C{clear prometheus} succeed.
    """
    assert cli(pooler, "switch-to", "replica").returncode == 0
    servers = {s["name"]: s["state"] for s in statusValues(pooler)["servers"]["list"]}
    assert servers["replica"] == "primary"
    with connect(pooler) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    unknown = cliJson(pooler, "switch-to", "nowhere", status=2)
    assert "nowhere" in unknown["status"]
    for argv in (["clear", "server", "primary"], ["reset-server", "primary"], ["reset"]):
        result = cli(pooler, *argv)
        assert result.returncode == 0, (argv, result.stderr)
    assert cli(pooler, "clear", "server", "nowhere").returncode == 2


def test_shutdownGracefullyThenCancel(pooler: Pooler) -> None:
    """
    C{shutdown gracefully} with a client connected keeps pgtwist running
    (status says so), C{shutdown cancel} takes it back, and C{stop} ends it.
    """
    assert pooler.process is not None
    with connect(pooler) as conn:
        assert cli(pooler, "shutdown").returncode == 0
        assert statusValues(pooler)["status"] == {"message": "Graceful shutdown", "status": 2}
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert pooler.process.poll() is None
        assert cli(pooler, "shutdown", "cancel").returncode == 0
        assert statusValues(pooler)["status"]["message"] == "Running"
    connect(pooler).close()
    assert pooler.process.poll() is None
    assert cli(pooler, "stop").returncode == 0
    assert pooler.process.wait(10) == 0


def test_shutdownGracefullyEnds(pooler: Pooler) -> None:
    """
    Once the last client leaves, a graceful shutdown ends pgtwist.
    """
    assert pooler.process is not None
    with connect(pooler):
        assert cli(pooler, "gracefully").returncode == 0
    assert pooler.process.wait(10) == 0


def test_remote(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    With C{management} set, C{-h -p -U -P} log in with SCRAM as a user of
    the admins file; a wrong password exits 1 with "Bad credentials".
    """
    management = freePort()
    writeUsersFile(
        str(tmp_path / "pgtwist_admins.conf"),
        {ADMIN: ADMIN_PASSWORD},
        masterKey=b"integration-master-key",
    )
    with runningPooler(tmp_path, pgCluster, main={"management": management}) as pooler:
        remote = ["-h", "127.0.0.1", "-p", str(management), "-U", ADMIN]
        result = cli(pooler, *remote, "-P", ADMIN_PASSWORD, "status", local=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Status:              Running")
        assert cli(pooler, *remote, "-P", ADMIN_PASSWORD, "flush", local=False).returncode == 0
        bad = cli(pooler, *remote, "-P", "wrong", "ping", local=False)
        assert bad.returncode == 1
        assert f"Bad credentials for {ADMIN}" in bad.stderr
        stranger = cli(
            pooler, "-h", "127.0.0.1", "-p", str(management), "-U", "x", "-P", "y", "ping",
            local=False,
        )  # fmt: skip
        assert stranger.returncode == 1


def test_remoteOverTls(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    The C{management} port serves TLS as the listeners do: with
    C{client_tls_sslmode = require}, C{pgtwist-cli --sslmode verify-full}
    checks pgtwist's certificate against the CA and logs in, while a
    plaintext C{--sslmode disable} is refused.
    """
    management = freePort()
    writeUsersFile(
        str(tmp_path / "pgtwist_admins.conf"),
        {ADMIN: ADMIN_PASSWORD},
        masterKey=b"integration-master-key",
    )
    pki = tmp_path / "pki"
    pki.mkdir()
    authority = CertificateAuthority()
    root = authority.writeCertificate(str(pki), "root")
    certificate, key = authority.issue("localhost", hosts=["localhost", "127.0.0.1"]).write(
        str(pki), "server"
    )
    main = {
        "management": management,
        "tls_cert_file": certificate,
        "tls_key_file": key,
        "client_tls_sslmode": "require",
    }
    with runningPooler(tmp_path, pgCluster, main=main) as pooler:
        remote = ["-h", "127.0.0.1", "-p", str(management), "-U", ADMIN, "-P", ADMIN_PASSWORD]
        verified = ["--sslmode", "verify-full", "--sslrootcert", root]
        result = cli(pooler, *remote, *verified, "status", local=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Status:              Running")
        plain = cli(pooler, *remote, "--sslmode", "disable", "ping", local=False)
        assert plain.returncode == 1
        assert "SSL required" in plain.stderr
