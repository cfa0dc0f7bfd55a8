"""
The limits on clients that have not logged in, through a real pgtwist
process: PgBouncer's C{max_client_conn}, and PostgreSQL's length limit on
an authentication message.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pg8000.exceptions
import pg8000.native
import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire import codec
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import AuthenticationRequest, ErrorResponse, Message, StartupMessage
from tests.integration.conftest import ROLES, SHARED_DATABASE
from tests.integration.pooler import Pooler

ROLE = "pgt_scram"
PASSWORD = ROLES[ROLE][0]


def scramPooler(directory: Path, cluster: PostgresCluster, **main: object) -> Pooler:
    """
    A started pgtwist asking every client for SCRAM, with C{main} settings.
    """
    return Pooler(
        directory,
        cluster,
        main=main,
        hba=["host all all all scram-sha-256"],
        users={ROLE: PASSWORD},
    ).start()


def receiveUntilClosed(sock: socket.socket) -> list[Message]:
    """
    Every backend message pgtwist sends until it closes the connection.
    """
    framer = MessageFramer()
    messages: list[Message] = []
    while True:
        data = sock.recv(65536)
        if not data:
            return messages
        messages.extend(codec.decodeBackend(t, b) for t, b in framer.feed(data))


def test_maxClientConn(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    With C{max_client_conn = 2}, a third client gets PgBouncer's FATAL
    C{no more connections allowed (max_client_conn)} with SQLSTATE 53300,
    the two connected keep working, and once one leaves a new one gets in.
    """
    pooler = scramPooler(tmp_path, pgCluster, max_client_conn=2)
    try:
        dsn = pooler.dsn(ROLE, PASSWORD, SHARED_DATABASE)
        with psycopg.connect(dsn) as first, psycopg.connect(dsn) as second:
            with pytest.raises(pg8000.exceptions.DatabaseError) as info:
                pg8000.native.Connection(
                    ROLE,
                    host="127.0.0.1",
                    port=pooler.port,
                    database=SHARED_DATABASE,
                    password=PASSWORD,
                    timeout=10,
                )
            fields = info.value.args[0]
            assert (fields["V"], fields["C"], fields["M"]) == (
                "FATAL",
                "53300",
                "no more connections allowed (max_client_conn)",
            )
            assert first.execute("SELECT 1").fetchone() == (1,)
            assert second.execute("SELECT 2").fetchone() == (2,)
        for _ in range(50):
            try:
                with psycopg.connect(dsn) as third:
                    assert third.execute("SELECT 3").fetchone() == (3,)
                break
            except psycopg.OperationalError as e:
                # The two leaving clients may not be noticed yet.
                assert "max_client_conn" in str(e)
                time.sleep(0.1)
        else:
            pytest.fail("no client got in after the others left")
    finally:
        pooler.stop()


def test_hugeAuthenticationMessage(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    A client answering the SCRAM request with a message that announces
    0x3FFFFFFF bytes is refused with FATAL 08P01 C{invalid message length}
    as soon as the header arrives, and closed; pgtwist keeps serving.
    """
    pooler = scramPooler(tmp_path, pgCluster)
    try:
        with socket.create_connection(("127.0.0.1", pooler.port), timeout=10) as sock:
            startup = StartupMessage({"user": ROLE, "database": SHARED_DATABASE})
            sock.sendall(codec.encode(startup))
            framer = MessageFramer()
            frames: list[tuple[bytes, bytes]] = []
            while not frames:
                frames = framer.feed(sock.recv(65536))
            assert isinstance(codec.decodeBackend(*frames[0]), AuthenticationRequest)
            sock.sendall(b"p" + codec.INT32.pack(0x3FFFFFFF))
            messages = receiveUntilClosed(sock)
        assert len(messages) == 1, messages
        error = messages[0]
        assert isinstance(error, ErrorResponse)
        assert (error.severity, error.code, error.message) == (
            "FATAL",
            "08P01",
            "invalid message length",
        )
        with psycopg.connect(pooler.dsn(ROLE, PASSWORD, SHARED_DATABASE)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pooler.stop()
