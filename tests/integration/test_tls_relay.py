"""
The relay path to a TLS client, whose replies pgtwist encrypts and sends at
once (L{pgtwist.net.tls.eagerTLS}) instead of through Twisted's buffered
path: values of 64 MiB arrive intact without the pooler holding them, a
client that stops reading pauses the backend, thousands of small replies
arrive in order, and the connection ends with a TLS shutdown
(C{close_notify}), both on Terminate and on a refused login.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire import codec
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    DataRow,
    ErrorResponse,
    Message,
    Query,
    ReadyForQuery,
    SSLRequest,
    StartupMessage,
    Terminate,
)
from tests.integration.clients import adminConnect
from tests.integration.pooler import Pooler
from tests.integration.test_large_messages import copyOut, peakRss, selectRepeat
from tests.integration.test_tls_clients import (
    PASSWORD,
    USER,
    Certificates,
    tlsPooler,
)

MIB = 1 << 20
TRUST = "pgt_trust"
HBA = (f"host all {TRUST} all trust", "host all all all scram-sha-256")
#: The most the pooler's peak RSS may grow while relaying a large result.
RSS_GROWTH = 8 * MIB


class TLSRawClient:
    """
    A raw protocol client over TLS (SSLRequest, then a verified handshake),
    to see what drivers hide: when bytes are read, and how the connection
    ends. Python's C{ssl} is told not to hide a missing C{close_notify}.
    """

    def __init__(self, pooler: Pooler, certificates: Certificates, database: str = TRUST) -> None:
        raw = socket.create_connection(("127.0.0.1", pooler.port), timeout=20)
        raw.sendall(codec.encode(SSLRequest()))
        assert raw.recv(1) == b"S"
        context = ssl.create_default_context(cafile=certificates.rootPath)
        self.sock = context.wrap_socket(
            raw, server_hostname="localhost", suppress_ragged_eofs=False
        )
        self._framer = MessageFramer()
        self._messages: list[Message] = []
        self.send(StartupMessage({"user": TRUST, "database": database}))

    def send(self, *messages: Message) -> None:
        """
        Send C{messages} in one write.
        """
        self.sock.sendall(b"".join(codec.encode(message) for message in messages))

    def read(self) -> Message:
        """
        The next message.

        @raise ConnectionError: pgtwist closed the connection.
        """
        while not self._messages:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("pgtwist closed the connection")
            for type, body in self._framer.feed(data):
                self._messages.append(codec.decodeBackend(type, body))
        return self._messages.pop(0)

    def untilReady(self) -> list[Message]:
        """
        Every message up to and including the next ReadyForQuery.
        """
        messages = []
        while True:
            message = self.read()
            messages.append(message)
            if isinstance(message, ReadyForQuery):
                return messages

    def closedCleanly(self) -> bool:
        """
        Read to the end: whether it came with a TLS C{close_notify} (a
        clean end of the TLS stream) rather than the TCP connection just
        closing. Our C{close_notify} is then sent back.
        """
        try:
            while self.sock.recv(65536):
                pass
        except (ssl.SSLEOFError, ConnectionResetError):
            return False
        self.sock.unwrap()
        self.sock.close()
        return True


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    """
    A throwaway CA and server certificate for the test.
    """
    return Certificates(tmp_path / "tls")


@pytest.fixture(params=["session", "transaction"])
def pooler(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    pgCluster: PostgresCluster,
    certificates: Certificates,
) -> Iterator[Pooler]:
    """
    pgtwist serving TLS, in each pipeline.
    """
    main = {"pipeline": request.param, "max_connections": 2}
    with tlsPooler(tmp_path, pgCluster, certificates, hba=HBA, main=main) as running:
        yield running


def test_largeValues(pooler: Pooler, certificates: Certificates) -> None:
    """
    A 16 and a 64 MiB value (C{select repeat}, C{COPY TO STDOUT}) reach a
    TLS client intact, and the pooler's peak RSS grows by less than 8 MiB:
    what the client has not taken waits in the socket buffer and the
    backend is paused, as in plaintext.
    """
    dsn = pooler.dsn(USER, PASSWORD, sslmode="verify-full", sslrootcert=certificates.rootPath)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for work in (selectRepeat, copyOut):
            work(conn, MIB)
        before = peakRss(pooler)
        for size in (16 * MIB, 64 * MIB):
            for work in (selectRepeat, copyOut):
                work(conn, size)
                growth = peakRss(pooler) - before
                assert growth < RSS_GROWTH, (work.__name__, size, growth)


def test_clientStopsReading(
    pooler: Pooler, pgCluster: PostgresCluster, certificates: Certificates
) -> None:
    """
    A TLS client that stops reading in the middle of a large result pauses
    its backend (PostgreSQL waits in C{ClientWrite}) without the pooler
    buffering the result; once it reads again, every row arrives, in order.
    """
    rows = 100_000
    client = TLSRawClient(pooler, certificates)
    client.untilReady()
    before = peakRss(pooler)
    client.send(
        Query(f"SELECT i, repeat('x', 1000) FROM generate_series(1, {rows}) AS s(i) ORDER BY i")
    )
    with adminConnect(pgCluster) as admin:
        deadline = time.monotonic() + 20
        while True:
            waiting = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
                "AND wait_event = 'ClientWrite'",
                (TRUST,),
            ).fetchone()
            if waiting == (1,):
                break
            assert time.monotonic() < deadline, "the backend never waited for the client"
            time.sleep(0.1)
        # Still paused a moment later, and the pooler held little of it.
        time.sleep(1)
        waiting = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
            "AND wait_event = 'ClientWrite'",
            (TRUST,),
        ).fetchone()
        assert waiting == (1,)
    assert peakRss(pooler) - before < RSS_GROWTH
    seen = 0
    for message in client.untilReady():
        if isinstance(message, DataRow):
            seen += 1
            assert message.values[0] == str(seen).encode()
            assert message.values[1] == b"x" * 1000
    assert seen == rows
    client.send(Terminate())
    assert client.closedCleanly()


def test_manySmallReplies(pooler: Pooler, certificates: Certificates) -> None:
    """
    Thousands of queries sent in one write get their small replies in
    order, each sent as soon as it is relayed.
    """
    count = 3000
    client = TLSRawClient(pooler, certificates)
    client.untilReady()
    client.send(*(Query(f"SELECT {i}") for i in range(count)))
    values = []
    for _ in range(count):
        for message in client.untilReady():
            if isinstance(message, DataRow):
                values.append(int(message.values[0] or b""))
            else:
                assert not isinstance(message, ErrorResponse), message
    assert values == list(range(count))
    client.send(Terminate())
    assert client.closedCleanly()


def test_shutdownOnRefusal(pooler: Pooler, certificates: Certificates) -> None:
    """
    A login refused over TLS (after AuthenticationOk, as from PostgreSQL)
    gets its ErrorResponse, then a TLS shutdown.
    """
    client = TLSRawClient(pooler, certificates, database="no_such_database")
    message = client.read()
    while not isinstance(message, ErrorResponse):
        message = client.read()
    assert client.closedCleanly()
