"""
TLS between real clients and a running pgtwist: psql, psycopg, asyncpg and
pgbench with certificate verification, direct TLS with ALPN, what is
refused (plaintext smuggled after an SSLRequest, a ClientHello while TLS is
off, garbage, plaintext in C{require} mode, certificates the client cannot
trust), C{hostssl}/C{hostnossl} rules and a certificate renewed by SIGHUP
while a TLS client stays connected. Certificates are made at test time.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import psycopg
import pytest

from pgtwist.testing.certs import CertificateAuthority
from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire import codec
from pgtwist.wire.messages import SSLRequest, StartupMessage
from tests.integration.clients import runningPooler
from tests.integration.pooler import Pooler

USER, PASSWORD = "pgt_scram", "scram-secret"


class Certificates:
    """
    A throwaway CA and a server certificate for C{localhost} and
    C{127.0.0.1}, written into a directory.
    """

    def __init__(self, directory: Path, **issue: object) -> None:
        directory.mkdir(exist_ok=True)
        self.directory = directory
        self.authority = CertificateAuthority()
        self.rootPath = self.authority.writeCertificate(str(directory), "root")
        self.certificatePath, self.keyPath = self.issue(**issue)

    def issue(self, name: str = "server", **issue: object) -> tuple[str, str]:
        """
        Issue a server certificate and write it as C{<name>.crt}/C{.key}.
        """
        return self.authority.issue(
            "localhost",
            hosts=("localhost", "127.0.0.1"),
            **issue,  # type: ignore[arg-type]
        ).write(str(self.directory), name)


@contextmanager
def tlsPooler(
    directory: Path,
    cluster: PostgresCluster,
    certificates: Certificates,
    mode: str = "prefer",
    hba: Sequence[str] = ("host all all all scram-sha-256",),
    main: Mapping[str, object] | None = None,
) -> Iterator[Pooler]:
    """
    A running pgtwist serving TLS with C{certificates} in C{mode}.
    """
    settings: dict[str, object] = {
        "tls_cert_file": certificates.certificatePath,
        "tls_key_file": certificates.keyPath,
        "client_tls_sslmode": mode,
    }
    settings.update(main or {})
    with runningPooler(directory, cluster, main=settings, hba=hba) as pooler:
        yield pooler


def psql(
    cluster: PostgresCluster,
    pooler: Pooler,
    conninfo: str,
    *commands: str,
    user: str = USER,
    password: str = PASSWORD,
) -> subprocess.CompletedProcess[str]:
    """
    Run the cluster's C{psql} through C{pooler} with C{conninfo} added to
    the connection string.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
    dsn = f"host=localhost hostaddr=127.0.0.1 port={pooler.port} user={user} dbname={user} "
    args = [cluster.program("psql"), "-X", "-At", dsn + conninfo]
    for command in commands:
        args += ["-c", command]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=30)


def verifyFull(certificates: Certificates) -> str:
    """
    libpq's options to check pgtwist's certificate and host name.
    """
    return f"sslmode=verify-full sslrootcert={certificates.rootPath}"


def rawConnect(pooler: Pooler) -> socket.socket:
    """
    A plain TCP connection to pgtwist.
    """
    sock = socket.create_connection(("127.0.0.1", pooler.port), timeout=10)
    return sock


def readUntilClosed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """
    Everything pgtwist sends until it closes the connection.
    """
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return data
        if not chunk:
            return data
        data += chunk


def startupPacket(user: str = USER) -> bytes:
    """
    A StartupMessage for C{user}.
    """
    return codec.encode(StartupMessage({"user": user, "database": user}))


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    """
    A throwaway CA and server certificate for the test.
    """
    return Certificates(tmp_path / "tls")


def test_psqlVerifyFull(
    tmp_path: Path, pgCluster: PostgresCluster, certificates: Certificates
) -> None:
    """
    psql with C{sslmode=verify-full} checks pgtwist's certificate against
    the CA and the host name, and runs queries over TLS.
    """
    with tlsPooler(tmp_path, pgCluster, certificates) as pooler:
        result = psql(pgCluster, pooler, verifyFull(certificates), "SELECT 40 + 2", "\\conninfo")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == "42"
        assert "SSL connection (protocol: TLSv1.3" in result.stdout
        plain = psql(pgCluster, pooler, "sslmode=disable", "SELECT 1")
        assert plain.returncode == 0, plain.stderr


def test_psycopg(tmp_path: Path, pgCluster: PostgresCluster, certificates: Certificates) -> None:
    """
    psycopg (its libpq) verifies the certificate and queries over TLS.
    """
    with tlsPooler(tmp_path, pgCluster, certificates) as pooler:
        with psycopg.connect(
            f"host=localhost hostaddr=127.0.0.1 port={pooler.port} user={USER} "
            f"password={PASSWORD} dbname={USER} {verifyFull(certificates)}"
        ) as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("SELECT %s::int * 2", (21,)).fetchone() == (42,)
            rows = conn.execute("SELECT g FROM generate_series(1, 20000) g").fetchall()
            assert len(rows) == 20000


def test_channelBindingRequire(
    tmp_path: Path, pgCluster: PostgresCluster, certificates: Certificates
) -> None:
    """
    libpq's C{channel_binding=require} works through pgtwist: it offers
    SCRAM-SHA-256-PLUS over TLS, bound to the certificate it presented
    (libpq refuses any login that is not PLUS). A wrong password is still
    refused as PostgreSQL refuses it.
    """
    binding = f"{verifyFull(certificates)} channel_binding=require"
    with tlsPooler(tmp_path, pgCluster, certificates) as pooler:
        result = psql(pgCluster, pooler, binding, "SELECT 40 + 2")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == "42"
        with psycopg.connect(
            f"host=localhost hostaddr=127.0.0.1 port={pooler.port} user={USER} "
            f"password={PASSWORD} dbname={USER} {binding}"
        ) as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("SELECT 1").fetchone() == (1,)
        wrong = psql(pgCluster, pooler, binding, "SELECT 1", password="wrong")
        assert f'password authentication failed for user "{USER}"' in wrong.stderr
        stranger = psql(pgCluster, pooler, binding, "SELECT 1", user="pgt_nobody")
        assert 'password authentication failed for user "pgt_nobody"' in stranger.stderr


def test_asyncpg(tmp_path: Path, pgCluster: PostgresCluster, certificates: Certificates) -> None:
    """
    asyncpg over TLS with an C{ssl.SSLContext} that verifies pgtwist (its
    certificate names C{127.0.0.1} too).
    """
    context = ssl.create_default_context(cafile=certificates.rootPath)

    async def scenario(port: int) -> None:
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=port,
            user=USER,
            password=PASSWORD,
            database=USER,
            ssl=context,
            timeout=10,
        )
        try:
            assert await conn.fetchval("SELECT 40 + 2") == 42
            statement = await conn.prepare("SELECT $1::int * 2")
            assert [await statement.fetchval(i) for i in range(3)] == [0, 2, 4]
        finally:
            await conn.close()

    with tlsPooler(tmp_path, pgCluster, certificates, mode="require") as pooler:
        asyncio.run(asyncio.wait_for(scenario(pooler.port), 30))


def test_pgbench(tmp_path: Path, pgCluster: PostgresCluster, certificates: Certificates) -> None:
    """
    pgbench runs transactions over TLS, with a new connection for each
    (C{-C}: a handshake per transaction).
    """
    script = tmp_path / "select.sql"
    script.write_text("SELECT 1;\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        PGPASSWORD=PASSWORD,
        PGSSLMODE="verify-full",
        PGSSLROOTCERT=certificates.rootPath,
        PGCONNECT_TIMEOUT="10",
    )
    with tlsPooler(tmp_path, pgCluster, certificates, mode="require") as pooler:
        for extra in ([], ["-C"]):
            result = subprocess.run(
                [
                    pgCluster.program("pgbench"),
                    "-n",
                    "-c",
                    "4",
                    "-t",
                    "25",
                    *extra,
                    "-f",
                    str(script),
                    "-h",
                    "localhost",
                    "-p",
                    str(pooler.port),
                    "-U",
                    USER,
                    USER,
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            assert result.returncode == 0, result.stderr
            assert "number of transactions actually processed: 100/100" in result.stdout


def directTLS(pooler: Pooler, certificates: Certificates, alpn: list[str] | None) -> ssl.SSLSocket:
    """
    A direct-TLS connection (a ClientHello as the first bytes), verifying
    pgtwist, offering C{alpn}.
    """
    context = ssl.create_default_context(cafile=certificates.rootPath)
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    return context.wrap_socket(rawConnect(pooler), server_hostname="localhost")


def test_directTLS(tmp_path: Path, pgCluster: PostgresCluster, certificates: Certificates) -> None:
    """
    PostgreSQL 17's direct TLS: with ALPN C{postgresql}, the StartupMessage
    that follows the handshake is answered (SCRAM asked for); without ALPN
    the connection is closed without a message; with another ALPN protocol
    only, the handshake fails. libpq 17 and later (psycopg's) connects with
    C{sslnegotiation=direct} when available.
    """
    with tlsPooler(tmp_path, pgCluster, certificates) as pooler:
        with directTLS(pooler, certificates, ["postgresql"]) as sock:
            assert sock.selected_alpn_protocol() == "postgresql"
            sock.sendall(startupPacket())
            reply = sock.recv(1)
            assert reply == b"R"

        with directTLS(pooler, certificates, None) as sock:
            sock.sendall(startupPacket())
            assert readUntilClosed(sock) == b""
        pooler.waitForLog("direct TLS connection without ALPN")

        with pytest.raises(ssl.SSLError, match="(?i)no.application.protocol"):
            directTLS(pooler, certificates, ["http/1.1"])

        if psycopg.pq.version() >= 170000:
            with psycopg.connect(
                f"host=localhost hostaddr=127.0.0.1 port={pooler.port} user={USER} "
                f"password={PASSWORD} dbname={USER} sslnegotiation=direct "
                f"sslmode=verify-full sslrootcert={certificates.rootPath}"
            ) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)


def test_refusals(tmp_path: Path, pgCluster: PostgresCluster, certificates: Certificates) -> None:
    """
    Plaintext smuggled behind an SSLRequest gets PostgreSQL's 08P01 and no
    C{S}; garbage instead of a ClientHello ends the connection; a handshake
    that never completes is closed by C{authentication_timeout}; pgtwist
    serves the next client as usual.
    """
    main = {"authentication_timeout": 1}
    with tlsPooler(tmp_path, pgCluster, certificates, main=main) as pooler:
        with rawConnect(pooler) as sock:
            sock.sendall(codec.encode(SSLRequest()) + startupPacket())
            reply = readUntilClosed(sock)
            assert reply[:1] == b"E"
            assert b"08P01" in reply
            assert b"received unencrypted data after SSL request" in reply

        with rawConnect(pooler) as sock:
            sock.sendall(b"\x16\x03\x01\x00\x05garbage, not a ClientHello")
            started = time.monotonic()
            readUntilClosed(sock)
            assert time.monotonic() - started < 5

        with rawConnect(pooler) as sock:
            sock.sendall(codec.encode(SSLRequest()))
            assert sock.recv(1) == b"S"
            started = time.monotonic()
            assert readUntilClosed(sock) == b""
            assert 0.5 < time.monotonic() - started < 5

        result = psql(pgCluster, pooler, verifyFull(certificates), "SELECT 1")
        assert result.returncode == 0, result.stderr


def test_tlsOff(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    With TLS off, an SSLRequest gets C{N} (libpq's C{sslmode=require}
    gives up) and a ClientHello is closed without a reply.
    """
    with runningPooler(tmp_path, pgCluster) as pooler:
        result = psql(pgCluster, pooler, "sslmode=require", "SELECT 1")
        assert result.returncode != 0
        assert "server does not support SSL" in result.stderr
        with rawConnect(pooler) as sock:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
                context.wrap_socket(sock, server_hostname="localhost")
        pooler.waitForLog("TLS is off")


def test_require(tmp_path: Path, pgCluster: PostgresCluster, certificates: Certificates) -> None:
    """
    C{client_tls_sslmode = require}: a plaintext client gets FATAL "SSL
    required"; libpq's default C{prefer} gets TLS.
    """
    with tlsPooler(tmp_path, pgCluster, certificates, mode="require") as pooler:
        result = psql(pgCluster, pooler, "sslmode=disable", "SELECT 1")
        assert result.returncode != 0
        assert "FATAL:  SSL required" in result.stderr
        result = psql(pgCluster, pooler, "sslmode=prefer", "SELECT 1")
        assert result.returncode == 0, result.stderr


def test_hba(tmp_path: Path, pgCluster: PostgresCluster, certificates: Certificates) -> None:
    """
    C{hostssl} rules match TLS clients only, C{hostnossl} plaintext ones
    only, with PostgreSQL's message for the others.
    """
    hba = (
        "hostssl all pgt_scram all scram-sha-256",
        "hostnossl all pgt_trust all scram-sha-256",
    )
    with tlsPooler(tmp_path, pgCluster, certificates, hba=hba) as pooler:
        assert psql(pgCluster, pooler, verifyFull(certificates), "SELECT 1").returncode == 0
        refused = psql(pgCluster, pooler, "sslmode=disable", "SELECT 1")
        assert 'no pg_hba.conf entry for host "127.0.0.1", user "pgt_scram"' in refused.stderr
        assert "no encryption" in refused.stderr
        trust = {"user": "pgt_trust", "password": "trust-secret"}
        assert psql(pgCluster, pooler, "sslmode=disable", "SELECT 1", **trust).returncode == 0
        refused = psql(pgCluster, pooler, verifyFull(certificates), "SELECT 1", **trust)
        assert 'user "pgt_trust", database "pgt_trust", SSL encryption' in refused.stderr


def test_untrustedCertificates(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    A client refuses, with a clear error, a certificate from a CA it does
    not trust, an expired one and one for another host name.
    """
    expired = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    stale = Certificates(
        tmp_path / "stale", notBefore=expired - datetime.timedelta(days=30), notAfter=expired
    )
    other = Certificates(tmp_path / "other")
    with tlsPooler(tmp_path, pgCluster, stale) as pooler:
        result = psql(pgCluster, pooler, verifyFull(stale), "SELECT 1")
        assert result.returncode != 0
        assert "certificate verify failed" in result.stderr
        result = psql(pgCluster, pooler, verifyFull(other), "SELECT 1")
        assert result.returncode != 0
        assert "certificate verify failed" in result.stderr
    wrongHost = Certificates(tmp_path / "wrong")
    wrongHost.certificatePath, wrongHost.keyPath = wrongHost.authority.issue(
        "db.example.com", hosts=("db.example.com",)
    ).write(str(wrongHost.directory), "server")
    (tmp_path / "w").mkdir()
    with tlsPooler(tmp_path / "w", pgCluster, wrongHost) as pooler:
        result = psql(pgCluster, pooler, verifyFull(wrongHost), "SELECT 1")
        assert result.returncode != 0
        assert 'server certificate for "db.example.com" does not match host name "localhost"' in (
            result.stderr
        )


def test_reloadCertificate(
    tmp_path: Path, pgCluster: PostgresCluster, certificates: Certificates
) -> None:
    """
    SIGHUP with a certificate from a new CA at the same paths: a TLS client
    connected before keeps working; new clients get the new certificate; a
    broken file at the next SIGHUP keeps the new one and is logged.
    """
    with tlsPooler(tmp_path, pgCluster, certificates) as pooler:
        with psycopg.connect(
            f"host=localhost hostaddr=127.0.0.1 port={pooler.port} user={USER} "
            f"password={PASSWORD} dbname={USER} {verifyFull(certificates)}",
            autocommit=True,
        ) as kept:
            assert kept.execute("SELECT 1").fetchone() == (1,)
            renewed = Certificates(tmp_path / "renewed")
            Path(certificates.certificatePath).write_bytes(
                Path(renewed.certificatePath).read_bytes()
            )
            Path(certificates.keyPath).write_bytes(Path(renewed.keyPath).read_bytes())
            pooler.reload()
            pooler.waitForLog("Configuration reloaded")
            assert kept.execute("SELECT 2").fetchone() == (2,)
            result = psql(pgCluster, pooler, verifyFull(renewed), "SELECT 3")
            assert result.returncode == 0, result.stderr
            result = psql(pgCluster, pooler, verifyFull(certificates), "SELECT 4")
            assert "certificate verify failed" in result.stderr

            Path(certificates.certificatePath).write_text("not a certificate\n")
            pooler.reload()
            pooler.waitForLog("TLS for clients unchanged")
            result = psql(pgCluster, pooler, verifyFull(renewed), "SELECT 5")
            assert result.returncode == 0, result.stderr
            assert kept.execute("SELECT 6").fetchone() == (6,)
        assert re.search(r"tls_cert_file: cannot load the certificate", pooler.log())


def test_transactionPooling(
    tmp_path: Path, pgCluster: PostgresCluster, certificates: Certificates
) -> None:
    """
    TLS clients in transaction pooling: backends are lent and taken back
    each transaction (the backpressure throttle found again through
    Twisted's TLS layer each time) and large results flow.
    """
    dsn = (
        f"host=localhost hostaddr=127.0.0.1 port={{port}} user={USER} password={PASSWORD} "
        f"dbname={USER} {verifyFull(certificates)}"
    )
    main = {"pipeline": "transaction"}
    with tlsPooler(tmp_path, pgCluster, certificates, main=main) as pooler:
        connections = [
            psycopg.connect(dsn.format(port=pooler.port), autocommit=True) for _ in range(3)
        ]
        try:
            for round in range(20):
                for index, conn in enumerate(connections):
                    assert conn.execute("SELECT %s::int", (round * 10 + index,)).fetchone() == (
                        round * 10 + index,
                    )
            rows = connections[0].execute("SELECT repeat('x', 1000) FROM generate_series(1, 5000)")
            assert len(rows.fetchall()) == 5000
        finally:
            for conn in connections:
                conn.close()
