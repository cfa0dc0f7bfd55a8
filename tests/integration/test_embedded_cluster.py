"""
Tests for L{pgtwist.testing.embedded.PostgresCluster} against a real server: the
session cluster from C{conftest.py}, plus a few short-lived clusters for
the start/stop life cycle.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import tempfile

import psycopg
import pytest

from pgtwist.testing.embedded import (
    PostgresCluster,
    PostgresCommandError,
    PostgresStartError,
    hbaForRoles,
)
from pgtwist.wire import constants
from pgtwist.wire.sql import quoteIdentifier, quoteLiteral

SHARED_DATABASE = "pgtwist_test"
"""
The database every session role may connect to (see C{conftest.py}).
"""

EXPECTED_AUTH_REQUEST = {
    "scram-sha-256": constants.AUTH_SASL,
    "md5": constants.AUTH_MD5_PASSWORD,
    "password": constants.AUTH_CLEARTEXT_PASSWORD,
    "trust": constants.AUTH_OK,
}
"""
The first Authentication message PostgreSQL sends for each HBA method.
"""


def connect(
    cluster: PostgresCluster, user: str, database: str, password: str
) -> psycopg.Connection:
    """
    Connect with psycopg over loopback TCP, without TLS.
    """
    return psycopg.connect(
        cluster.dsn(user, database, password), sslmode="disable", connect_timeout=10
    )


def _recvExactly(sock: socket.socket, count: int) -> bytes:
    """
    Read exactly C{count} bytes from C{sock}.
    """
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    return data


def firstAuthRequest(cluster: PostgresCluster, user: str, database: str) -> int:
    """
    Send a StartupMessage over TCP and return the code of the server's
    first Authentication message, showing which HBA method applies.
    """
    params = f"user\0{user}\0database\0{database}\0\0".encode()
    body = struct.pack("!i", constants.PROTOCOL_3_0) + params
    with socket.create_connection((cluster.host, cluster.port), timeout=10) as sock:
        sock.sendall(struct.pack("!i", len(body) + 4) + body)
        messageType, length = struct.unpack("!ci", _recvExactly(sock, 5))
        payload = _recvExactly(sock, length - 4)
    assert messageType == constants.AUTHENTICATION, (messageType, payload)
    code: int = struct.unpack("!i", payload[:4])[0]
    return code


def isAlive(pid: int) -> bool:
    """
    Whether C{pid} is a live (not zombie) process.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def postmasterPid(cluster: PostgresCluster) -> int:
    """
    The running cluster's postmaster pid.
    """
    assert cluster.dataDir is not None
    with open(os.path.join(cluster.dataDir, "postmaster.pid")) as f:
        return int(f.readline())


def test_eachRoleConnects(pgCluster: PostgresCluster, pgRoles: dict[str, tuple[str, str]]) -> None:
    """
    Every role logs in over TCP with its password, to its own database and
    to the shared one.
    """
    for name, (password, _method) in pgRoles.items():
        for database in (name, SHARED_DATABASE):
            with connect(pgCluster, name, database, password) as conn:
                row = conn.execute("SELECT current_user, current_database()").fetchone()
            assert row == (name, database)


def test_eachRoleGetsItsMethod(
    pgCluster: PostgresCluster, pgRoles: dict[str, tuple[str, str]]
) -> None:
    """
    The server asks each role for the authentication its HBA line names.
    """
    for name, (_password, method) in pgRoles.items():
        assert firstAuthRequest(pgCluster, name, name) == EXPECTED_AUTH_REQUEST[method], name


@pytest.mark.parametrize("role", ["pgt_scram", "pgt_md5", "pgt_password"])
def test_wrongPasswordFails(
    pgCluster: PostgresCluster, pgRoles: dict[str, tuple[str, str]], role: str
) -> None:
    """
    A wrong password is refused for every role that is checked.
    """
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(pgCluster, role, role, "wrong-" + pgRoles[role][0])


def test_trustIgnoresPassword(pgCluster: PostgresCluster) -> None:
    """
    The trust role gets in whatever password it sends.
    """
    with connect(pgCluster, "pgt_trust", "pgt_trust", "anything") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("pgt_trust",)


def test_storedHashes(pgCluster: PostgresCluster) -> None:
    """
    The md5 role's stored password is an md5 hash, the others' SCRAM
    verifiers.
    """
    rows = pgCluster.psql(
        "SELECT rolname, split_part(rolpassword, '$', 1) FROM pg_authid "
        "WHERE rolname LIKE 'pgt\\_%' ORDER BY rolname;"
    )
    stored = dict(line.split("|") for line in rows.splitlines())
    assert stored["pgt_scram"] == "SCRAM-SHA-256"
    assert stored["pgt_password"] == "SCRAM-SHA-256"
    assert stored["pgt_trust"] == "SCRAM-SHA-256"
    assert stored["pgt_md5"].startswith("md5") and len(stored["pgt_md5"]) == 35


def test_serverSettings(pgCluster: PostgresCluster) -> None:
    """
    The server listens on loopback only, at the cluster's port and socket
    directory, with the settings L{pgtwist.testing.embedded} writes.
    """
    output = pgCluster.psql(
        "SHOW listen_addresses; SHOW port; SHOW unix_socket_directories; "
        "SHOW max_connections; SHOW fsync; SHOW password_encryption;"
    )
    assert output.splitlines() == [
        "127.0.0.1",
        str(pgCluster.port),
        pgCluster.socketDir,
        "200",
        "off",
        "scram-sha-256",
    ]


@pytest.mark.parametrize("conforming", ["on", "off"])
def test_quotingRoundTrips(pgCluster: PostgresCluster, conforming: str) -> None:
    """
    PostgreSQL reads back exactly what L{quoteLiteral} and
    L{quoteIdentifier} wrote, quotes and backslashes included, whatever
    C{standard_conforming_strings} is.
    """
    value = "it's a \\ back\\slash \\' and \\\\ two"
    name = 'od"d \\ name'
    output = pgCluster.psql(
        f"SET standard_conforming_strings = {conforming};\n"
        f"SELECT {quoteLiteral(value)};\n"
        f"SELECT {quoteLiteral('plain')} = 'plain';\n"
        f"CREATE TEMP TABLE quoted ({quoteIdentifier(name)} int);\n"
        "SELECT attname FROM pg_attribute WHERE attrelid = 'quoted'::regclass AND attnum = 1;\n"
    )
    assert output.splitlines() == [value, "t", name]


@pytest.mark.parametrize("conforming", ["on", "off"])
def test_nestedQuoting(pgCluster: PostgresCluster, conforming: str) -> None:
    """
    A literal quoted inside a C{DO} body quoted in turn (what the
    transaction pipeline sends to raise an error naming a client's
    statement) raises exactly the message, whatever the name holds.
    """
    message = 'prepared statement "a\\\'$pgtwist$" already exists'
    body = f"BEGIN RAISE EXCEPTION USING MESSAGE = {quoteLiteral(message)}; END"
    with pytest.raises(PostgresCommandError) as caught:
        pgCluster.psql(
            f"SET standard_conforming_strings = {conforming};\nDO {quoteLiteral(body)};\n"
        )
    assert f"ERROR:  {message}\n" in caught.value.output


def test_psqlAsOtherUser(pgCluster: PostgresCluster) -> None:
    """
    L{PostgresCluster.psql} can run as another role over the unix socket.
    """
    assert pgCluster.psql("SELECT current_user;", user="pgt_md5", database="pgt_md5") == (
        "pgt_md5\n"
    )


def test_unprivilegedWhenRoot(pgCluster: PostgresCluster) -> None:
    """
    As root, the server runs as, and its files belong to, the unprivileged
    account; otherwise as ourselves.
    """
    assert pgCluster.dataDir is not None
    expected = pgCluster.runAs.uid if pgCluster.runAs is not None else os.geteuid()
    if os.geteuid() == 0:
        assert pgCluster.runAs is not None
    assert os.stat(pgCluster.dataDir).st_uid == expected
    assert os.stat(f"/proc/{postmasterPid(pgCluster)}").st_uid == expected


def test_setHbaRoundTrip(pgCluster: PostgresCluster, pgRoles: dict[str, tuple[str, str]]) -> None:
    """
    L{PostgresCluster.setHba} takes effect for the very next connection,
    and setting the old lines back restores access.
    """
    password = pgRoles["pgt_scram"][0]
    original = list(pgCluster.hbaLines)
    assert "host all pgt_scram 127.0.0.1/32 scram-sha-256" in original
    try:
        pgCluster.setHba(hbaForRoles({"pgt_scram": "reject"}) + original)
        with pytest.raises(psycopg.OperationalError, match="rejects connection"):
            connect(pgCluster, "pgt_scram", "pgt_scram", password)
        pgCluster.setHba(hbaForRoles({"pgt_scram": "md5"}) + original)
        # md5 with a SCRAM verifier: PostgreSQL upgrades the exchange to SCRAM.
        assert firstAuthRequest(pgCluster, "pgt_scram", "pgt_scram") == constants.AUTH_SASL
        assert firstAuthRequest(pgCluster, "pgt_md5", "pgt_md5") == constants.AUTH_MD5_PASSWORD
    finally:
        pgCluster.setHba(original)
    with connect(pgCluster, "pgt_scram", "pgt_scram", password) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_setHbaInvalidKeepsRules(pgCluster: PostgresCluster) -> None:
    """
    A line PostgreSQL rejects raises L{ValueError} and leaves the file and
    the rules in force unchanged.
    """
    assert pgCluster.dataDir is not None
    path = os.path.join(pgCluster.dataDir, "pg_hba.conf")
    with open(path) as f:
        before = f.read()
    linesBefore = list(pgCluster.hbaLines)
    with pytest.raises(ValueError, match="invalid authentication method"):
        pgCluster.setHba(["host all all 127.0.0.1/32 sha1"])
    with open(path) as f:
        assert f.read() == before
    assert pgCluster.hbaLines == linesBefore
    assert firstAuthRequest(pgCluster, "pgt_md5", "pgt_md5") == constants.AUTH_MD5_PASSWORD


def test_pgbenchBesideServer(pgCluster: PostgresCluster) -> None:
    """
    The C{pgbench} path is in the server's bin directory.
    """
    assert os.path.dirname(pgCluster.pgbench) == pgCluster.binDir


def test_stopLeavesNothing() -> None:
    """
    A cluster used as a context manager removes its server process and its
    directory on exit, and stopping again is harmless.
    """
    with PostgresCluster() as cluster:
        pid = postmasterPid(cluster)
        base = os.path.dirname(cluster.socketDir)
        assert isAlive(pid)
        assert cluster.running
        assert cluster.psql("SELECT 1;") == "1\n"
    assert not isAlive(pid)
    assert not os.path.exists(base)
    assert not cluster.running
    cluster.stop()


def test_startFailureQuotesLog() -> None:
    """
    When the server cannot start (its fixed port is taken) the error quotes
    the server log, and nothing is left behind.
    """
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        cluster = PostgresCluster(port=blocker.getsockname()[1])
        with pytest.raises(PostgresStartError) as raised:
            cluster.start()
    assert "could not bind" in str(raised.value) or "already in use" in str(raised.value)
    assert cluster.dataDir is not None
    assert not os.path.exists(os.path.dirname(cluster.dataDir))
    assert not cluster.running


def test_givenBaseDirKeptAndReused() -> None:
    """
    With an explicit C{baseDir} the cluster survives L{PostgresCluster.stop}
    and the next start reuses it, data included.
    """
    base = tempfile.mkdtemp(prefix="pgtwist-reuse-", dir="/tmp")
    os.chmod(base, 0o755)
    try:
        with PostgresCluster(baseDir=base) as first:
            first.createDatabase("kept", owner=first.superuser)
        assert os.path.exists(os.path.join(base, "data", "PG_VERSION"))
        with PostgresCluster(baseDir=base) as second:
            assert "kept" in second.psql("SELECT datname FROM pg_database;").split()
            pid = postmasterPid(second)
        assert not isAlive(pid)
    finally:
        shutil.rmtree(base)
