"""
The startup phase over real sockets: what a running pgtwist answers to
encryption requests, foreign protocols, malformed packets and clients that
never finish logging in, byte for byte as PostgreSQL would, and the unix
socket that C{psql -h DIR} uses.

Replies are parsed with L{pgtwist.wire.framing.MessageFramer} and
L{pgtwist.wire.codec.decodeBackend}.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire import codec, constants
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    AuthenticationRequest,
    DataRow,
    ErrorResponse,
    GSSENCRequest,
    Message,
    NegotiateProtocolVersion,
    Query,
    ReadyForQuery,
    SSLRequest,
    StartupMessage,
    Terminate,
)
from tests.integration.conftest import ROLES
from tests.integration.pooler import Pooler

#: The pooler's C{authentication_timeout}, in seconds.
AUTHENTICATION_TIMEOUT = 1

#: How long any single read here may block.
READ_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def pooler(
    tmp_path_factory: pytest.TempPathFactory, pgCluster: PostgresCluster
) -> Iterator[Pooler]:
    """
    One pgtwist for the whole module: C{pgt_trust} is trusted, C{pgt_scram}
    must use SCRAM, and clients have one second to log in.
    """
    instance = Pooler(
        tmp_path_factory.mktemp("protocol"),
        pgCluster,
        main={"authentication_timeout": AUTHENTICATION_TIMEOUT},
        hba=["host all pgt_trust all trust", "host all pgt_scram all scram-sha-256"],
        users={name: ROLES[name][0] for name in ("pgt_trust", "pgt_scram")},
    ).start()
    try:
        yield instance
    finally:
        instance.stop()


def connect(pooler: Pooler) -> socket.socket:
    """
    A raw TCP connection to C{pooler}.
    """
    return socket.create_connection(("127.0.0.1", pooler.port), timeout=READ_TIMEOUT)


def receiveExactly(sock: socket.socket, count: int) -> bytes:
    """
    Read exactly C{count} bytes (the connection must stay open that long).
    """
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def receiveUntilClosed(sock: socket.socket) -> bytes:
    """
    Read until the peer closes; fail if it does not within L{READ_TIMEOUT}.
    """
    data = b""
    deadline = time.monotonic() + READ_TIMEOUT
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"pgtwist did not close the connection; received {data!r}")
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def decode(data: bytes) -> list[Message]:
    """
    Every complete backend message in C{data}; nothing may be left over.
    """
    framer = MessageFramer()
    messages = [codec.decodeBackend(type, body) for type, body in framer.feed(data)]
    assert framer.pending == 0, f"trailing partial message in {data!r}"
    return messages


def receiveUntil(sock: socket.socket, kind: type[Message]) -> list[Message]:
    """
    Read messages until one of type C{kind} arrives; return all of them.
    """
    framer = MessageFramer()
    messages: list[Message] = []
    while not messages or not isinstance(messages[-1], kind):
        data = sock.recv(65536)
        assert data, f"connection closed; got {messages!r}"
        for type, body in framer.feed(data):
            messages.append(codec.decodeBackend(type, body))
            if isinstance(messages[-1], (kind, ErrorResponse)):
                break
        if isinstance(messages[-1], ErrorResponse) and kind is not ErrorResponse:
            pytest.fail(f"unexpected error: {messages[-1]!r}")
    return messages


def assertFatalThenClose(sock: socket.socket, sqlstate: str, message: str) -> ErrorResponse:
    """
    The connection receives exactly one FATAL ErrorResponse with C{sqlstate}
    and C{message}, then is closed.
    """
    messages = decode(receiveUntilClosed(sock))
    assert len(messages) == 1, messages
    (error,) = messages
    assert isinstance(error, ErrorResponse), error
    assert (error.severity, error.code, error.message) == ("FATAL", sqlstate, message)
    return error


def startupAndQuery(sock: socket.socket, user: str = "pgt_trust") -> None:
    """
    Log in as a trusted user on C{sock}, run C{SELECT 42} and say goodbye.
    """
    sock.sendall(codec.encode(StartupMessage({"user": user, "database": user})))
    login = receiveUntil(sock, ReadyForQuery)
    assert login[0] == AuthenticationRequest(constants.AUTH_OK)
    sock.sendall(codec.encode(Query("SELECT 42")))
    result = receiveUntil(sock, ReadyForQuery)
    assert [m for m in result if isinstance(m, DataRow)] == [DataRow((b"42",))]
    sock.sendall(codec.encode(Terminate()))
    assert receiveUntilClosed(sock) == b""


def test_sslRequestRefused(pooler: Pooler) -> None:
    """
    An SSLRequest gets the single byte C{N} (no TLS yet); the connection
    stays open and the StartupMessage that follows logs in as usual.
    """
    with connect(pooler) as sock:
        sock.sendall(codec.encode(SSLRequest()))
        assert receiveExactly(sock, 1) == b"N"
        startupAndQuery(sock)


def test_gssencRequestRefused(pooler: Pooler) -> None:
    """
    A GSSENCRequest gets C{N} too, and the client may go on in the clear.
    """
    with connect(pooler) as sock:
        sock.sendall(codec.encode(GSSENCRequest()))
        assert receiveExactly(sock, 1) == b"N"
        startupAndQuery(sock)


def test_bothEncryptionRequestsRefused(pooler: Pooler) -> None:
    """
    libpq may try GSSAPI first and then TLS on the same connection: both get
    C{N}, then the login works.
    """
    with connect(pooler) as sock:
        sock.sendall(codec.encode(GSSENCRequest()))
        assert receiveExactly(sock, 1) == b"N"
        sock.sendall(codec.encode(SSLRequest()))
        assert receiveExactly(sock, 1) == b"N"
        startupAndQuery(sock)


def test_secondEncryptionRequestRefused(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    A second SSLRequest gets what PostgreSQL itself answers (checked
    against the suite's cluster, which does not offer TLS): the request
    code is read as protocol 1234.5679, FATAL C{0A000}, then the
    connection is closed.
    """
    for address in [("127.0.0.1", pooler.port), (pgCluster.host, pgCluster.port)]:
        with socket.create_connection(address, timeout=READ_TIMEOUT) as sock:
            sock.sendall(codec.encode(SSLRequest()))
            assert receiveExactly(sock, 1) == b"N"
            sock.sendall(codec.encode(SSLRequest()))
            error = decode(receiveUntilClosed(sock))[0]
            assert isinstance(error, ErrorResponse), error
            assert (error.severity, error.code) == ("FATAL", "0A000")
            assert error.message.startswith(
                "unsupported frontend protocol 1234.5679: server supports 3.0 to 3."
            )
    with connect(pooler) as sock:
        sock.sendall(codec.encode(GSSENCRequest()))
        assert receiveExactly(sock, 1) == b"N"
        sock.sendall(codec.encode(GSSENCRequest()))
        assertFatalThenClose(
            sock, "0A000", "unsupported frontend protocol 1234.5680: server supports 3.0 to 3.0"
        )


def test_queryAndTerminateInOneWrite(pooler: Pooler) -> None:
    """
    A query and Terminate in one write get the query's answer before the
    connection closes, as from PostgreSQL.
    """
    with connect(pooler) as sock:
        sock.sendall(codec.encode(StartupMessage({"user": "pgt_trust", "database": "pgt_trust"})))
        receiveUntil(sock, ReadyForQuery)
        sock.sendall(codec.encode(Query("SELECT 42")) + codec.encode(Terminate()))
        messages = decode(receiveUntilClosed(sock))
        assert DataRow((b"42",)) in messages
        assert messages[-1] == ReadyForQuery(b"I")


def test_newerProtocolNegotiated(pooler: Pooler) -> None:
    """
    libpq 18 asking for protocol 3.2 (C{max_protocol_version}) is told 3.0
    by NegotiateProtocolVersion, as by a PostgreSQL that speaks 3.0, and
    goes on with a working session (and cancel key) in 3.0.
    """
    with psycopg.connect(pooler.dsn("pgt_trust", None, max_protocol_version="3.2")) as conn:
        assert conn.pgconn.full_protocol_version == 30000
        assert conn.execute("SELECT 42").fetchone() == (42,)
        canceller = threading.Timer(0.5, conn.cancel_safe)
        canceller.start()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(10)")
        finally:
            canceller.join()


def test_protocolOptionsNamed(pooler: Pooler) -> None:
    """
    A C{_pq_.} option is named back in a NegotiateProtocolVersion before
    the login, and is not passed on: the session works and PostgreSQL never
    sees it as a setting.
    """
    with connect(pooler) as sock:
        startup = {"user": "pgt_trust", "database": "pgt_trust", "_pq_.example": "on"}
        sock.sendall(codec.encode(StartupMessage(startup)))
        login = receiveUntil(sock, ReadyForQuery)
        assert login[0] == NegotiateProtocolVersion(constants.PROTOCOL_3_0, ("_pq_.example",))
        assert login[1] == AuthenticationRequest(constants.AUTH_OK)
        sock.sendall(codec.encode(Query("SELECT current_setting('_pq_.example', true)")))
        result = receiveUntil(sock, ReadyForQuery)
        assert [m for m in result if isinstance(m, DataRow)] == [DataRow((None,))]


def test_dataAfterSslRequest(pooler: Pooler) -> None:
    """
    Bytes sent with the SSLRequest, before its answer, could have been
    injected by a man in the middle: FATAL 08P01, then the connection is
    closed and the StartupMessage is never acted on. (PostgreSQL writes its
    C{N} before the error; pgtwist may leave it out.)
    """
    startup = codec.encode(StartupMessage({"user": "pgt_trust", "database": "pgt_trust"}))
    with connect(pooler) as sock:
        sock.sendall(codec.encode(SSLRequest()) + startup)
        data = receiveUntilClosed(sock)
    if data.startswith(b"N"):
        data = data[1:]
    messages = decode(data)
    assert len(messages) == 1, messages
    (error,) = messages
    assert isinstance(error, ErrorResponse), error
    assert (error.severity, error.code, error.message) == (
        "FATAL",
        "08P01",
        "received unencrypted data after SSL request",
    )


def test_protocolTwo(pooler: Pooler) -> None:
    """
    A protocol 2.0 StartupMessage gets PostgreSQL's FATAL 0A000.
    """
    with connect(pooler) as sock:
        sock.sendall(codec.encode(StartupMessage({"user": "pgt_trust"}, protocol=2 << 16)))
        assertFatalThenClose(
            sock, "0A000", "unsupported frontend protocol 2.0: server supports 3.0 to 3.0"
        )


def test_garbage(pooler: Pooler) -> None:
    """
    Something that is not PostgreSQL at all (an HTTP request) gets FATAL
    08P01 and is closed.
    """
    with connect(pooler) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assertFatalThenClose(sock, "08P01", "invalid length of startup packet")


def test_oversizedStartupPacket(pooler: Pooler) -> None:
    """
    A startup packet longer than PostgreSQL's 10000-byte limit is refused as
    soon as its length word arrives.
    """
    with connect(pooler) as sock:
        sock.sendall(struct.pack("!ii", 10001, constants.PROTOCOL_3_0) + b"user\x00")
        assertFatalThenClose(sock, "08P01", "invalid length of startup packet")


def test_largestStartupPacket(pooler: Pooler) -> None:
    """
    A startup packet of exactly 10000 bytes is still accepted.
    """
    head = codec.encode(StartupMessage({"user": "pgt_trust", "application_name": ""}))
    padding = 10000 - len(head)
    packet = codec.encode(StartupMessage({"user": "pgt_trust", "application_name": "x" * padding}))
    assert len(packet) == 10000
    with connect(pooler) as sock:
        sock.sendall(packet)
        login = receiveUntil(sock, ReadyForQuery)
        assert login[0] == AuthenticationRequest(constants.AUTH_OK)


def test_noUser(pooler: Pooler) -> None:
    """
    A StartupMessage without C{user} gets PostgreSQL's FATAL 28000.
    """
    with connect(pooler) as sock:
        sock.sendall(codec.encode(StartupMessage({"database": "pgt_trust"})))
        assertFatalThenClose(sock, "28000", "no PostgreSQL user name specified in startup packet")


def test_silentClientTimesOut(pooler: Pooler) -> None:
    """
    A client that connects and says nothing is closed, without a word, once
    C{authentication_timeout} has passed.
    """
    started = time.monotonic()
    with connect(pooler) as sock:
        assert receiveUntilClosed(sock) == b""
    elapsed = time.monotonic() - started
    assert AUTHENTICATION_TIMEOUT * 0.8 <= elapsed <= AUTHENTICATION_TIMEOUT + 2, elapsed


def test_halfStartupPacketTimesOut(pooler: Pooler) -> None:
    """
    A client that sends part of its StartupMessage and stops is closed after
    the timeout too.
    """
    packet = codec.encode(StartupMessage({"user": "pgt_trust"}))
    started = time.monotonic()
    with connect(pooler) as sock:
        sock.sendall(packet[:7])
        assert receiveUntilClosed(sock) == b""
    elapsed = time.monotonic() - started
    assert AUTHENTICATION_TIMEOUT * 0.8 <= elapsed <= AUTHENTICATION_TIMEOUT + 2, elapsed


def test_stalledScramTimesOut(pooler: Pooler) -> None:
    """
    A client that starts a SCRAM exchange and never finishes it is closed
    once C{authentication_timeout} has passed since it connected.
    """
    started = time.monotonic()
    with connect(pooler) as sock:
        sock.sendall(codec.encode(StartupMessage({"user": "pgt_scram", "database": "pgt_scram"})))
        (request,) = receiveUntil(sock, AuthenticationRequest)
        assert isinstance(request, AuthenticationRequest)
        assert request.code == constants.AUTH_SASL
        assert codec.parseSASLMechanisms(request.data) == ["SCRAM-SHA-256"]
        clientFirst = b"n,,n=,r=" + os.urandom(18).hex().encode()
        sock.sendall(codec.encode(codec.encodeSASLInitialResponse("SCRAM-SHA-256", clientFirst)))
        (serverFirst,) = receiveUntil(sock, AuthenticationRequest)
        assert isinstance(serverFirst, AuthenticationRequest)
        assert serverFirst.code == constants.AUTH_SASL_CONTINUE
        assert receiveUntilClosed(sock) == b""
    elapsed = time.monotonic() - started
    assert AUTHENTICATION_TIMEOUT * 0.8 <= elapsed <= AUTHENTICATION_TIMEOUT + 2, elapsed


def test_loginBeatsTimeout(pooler: Pooler) -> None:
    """
    A session that logged in is not cut off by C{authentication_timeout}.
    """
    with connect(pooler) as sock:
        sock.sendall(codec.encode(StartupMessage({"user": "pgt_trust"})))
        receiveUntil(sock, ReadyForQuery)
        time.sleep(AUTHENTICATION_TIMEOUT + 0.5)
        sock.sendall(codec.encode(Query("SELECT 42")))
        result = receiveUntil(sock, ReadyForQuery)
        assert DataRow((b"42",)) in result


def test_psqlOverUnixSocket(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    C{psql -h <unix_socket_dir> -p <port>} reaches pgtwist through
    C{.s.PGSQL.<port>} and runs a query.
    """
    assert os.path.exists(os.path.join(pooler.socketDir, f".s.PGSQL.{pooler.port}"))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    result = subprocess.run(
        [
            pgCluster.program("psql"),
            "-X",
            "-A",
            "-t",
            "-h",
            pooler.socketDir,
            "-p",
            str(pooler.port),
            "-U",
            "pgt_trust",
            "-d",
            "pgt_trust",
            "-c",
            "SELECT current_user || '@' || current_database()",
        ],
        capture_output=True,
        text=True,
        env=environ,
        timeout=30,
    )
    assert (result.returncode, result.stdout.strip(), result.stderr) == (
        0,
        "pgt_trust@pgt_trust",
        "",
    )
