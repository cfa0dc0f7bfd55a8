"""
Client-side helpers for the integration tests: a raw protocol client built
on L{pgtwist.wire} (for what drivers hide, such as the cancel secret or an
abrupt disconnect), a superuser connection to the suite's cluster to watch
C{pg_stat_activity}, and a context manager that runs a L{Pooler}.
"""

from __future__ import annotations

import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psycopg

from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire import codec, constants
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    AuthenticationRequest,
    BackendKeyData,
    CancelRequest,
    DataRow,
    ErrorResponse,
    Message,
    ParameterStatus,
    PasswordMessage,
    Query,
    ReadyForQuery,
    StartupMessage,
    Terminate,
)
from tests.integration.pooler import Pooler

T = TypeVar("T")


class RawError(Exception):
    """
    The server answered with an ErrorResponse where the raw client expected
    success.

    @ivar error: That ErrorResponse.
    """

    def __init__(self, error: ErrorResponse) -> None:
        super().__init__(f"{error.severity} {error.code} {error.message}")
        self.error = error


class RawClient:
    """
    A minimal PostgreSQL client speaking the v3 protocol through
    L{pgtwist.wire}, with trust or cleartext-password login only.

    @ivar parameters: The ParameterStatus values received at login.
    @ivar processId: The pid of the BackendKeyData received at login.
    @ivar secretKey: The secret of that BackendKeyData.
    @ivar transactionStatus: The status byte of the last ReadyForQuery.
    """

    def __init__(
        self,
        port: int,
        user: str,
        database: str | None = None,
        password: str | None = None,
        parameters: Mapping[str, str] | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._framer = MessageFramer()
        self._messages: deque[Message] = deque()
        self.parameters: dict[str, str] = {}
        self.processId = 0
        self.secretKey = 0
        self.transactionStatus = b""
        startup = {"user": user, "database": database or user, **(parameters or {})}
        self.send(StartupMessage(startup))
        while True:
            message = self.read()
            if isinstance(message, AuthenticationRequest):
                if message.code == constants.AUTH_CLEARTEXT_PASSWORD and password is not None:
                    self.send(PasswordMessage(password.encode() + b"\x00"))
                elif message.code != constants.AUTH_OK:
                    raise AssertionError(f"unexpected authentication request {message.code}")
            elif isinstance(message, ParameterStatus):
                self.parameters[message.name] = message.value
            elif isinstance(message, BackendKeyData):
                self.processId = message.processId
                self.secretKey = message.secretKey
            elif isinstance(message, ErrorResponse):
                self.sock.close()
                raise RawError(message)
            elif isinstance(message, ReadyForQuery):
                self.transactionStatus = message.status
                return

    def send(self, message: Message) -> None:
        """
        Send one message.
        """
        self.sock.sendall(codec.encode(message))

    def read(self) -> Message:
        """
        The next message from the server.

        @raise ConnectionError: The server closed the connection.
        """
        while not self._messages:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            for type, body in self._framer.feed(data):
                self._messages.append(codec.decodeBackend(type, body))
        return self._messages.popleft()

    def results(self) -> list[Message]:
        """
        Every message up to and including the next ReadyForQuery.
        """
        messages = []
        while True:
            message = self.read()
            messages.append(message)
            if isinstance(message, ReadyForQuery):
                self.transactionStatus = message.status
                return messages

    def query(self, sql: str) -> list[tuple[str | None, ...]]:
        """
        Run C{sql} with the simple protocol; return its rows as text.

        @raise RawError: The server reported an error.
        """
        self.send(Query(sql))
        rows: list[tuple[str | None, ...]] = []
        error: ErrorResponse | None = None
        for message in self.results():
            if isinstance(message, DataRow):
                rows.append(tuple(None if v is None else v.decode() for v in message.values))
            elif isinstance(message, ErrorResponse) and error is None:
                error = message
        if error is not None:
            raise RawError(error)
        return rows

    def close(self) -> None:
        """
        Say goodbye politely (Terminate) and close.
        """
        try:
            self.send(Terminate())
        finally:
            self.sock.close()

    def terminate(self, timeout: float = 5.0) -> bool:
        """
        Send Terminate and wait for the server to close the connection, as
        PostgreSQL does; return whether it did within C{timeout} seconds.
        """
        self.send(Terminate())
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        finally:
            self.sock.close()
        return True

    def kill(self) -> None:
        """
        Close abruptly, with a TCP reset and no Terminate, as a crashed client
        would.
        """
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def sendCancel(port: int, processId: int, secretKey: int, timeout: float = 5.0) -> None:
    """
    Send a CancelRequest to 127.0.0.1:C{port} and wait until the server has
    read it and closed the connection, as libpq's C{PQcancel} does.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(codec.encode(CancelRequest(processId, secretKey)))
        while sock.recv(1024):
            pass


def adminConnect(cluster: PostgresCluster) -> psycopg.Connection:
    """
    An autocommit superuser connection to C{cluster} over its unix socket,
    bypassing pgtwist.
    """
    return psycopg.connect(
        host=cluster.socketDir,
        port=cluster.port,
        user=cluster.superuser,
        dbname="postgres",
        autocommit=True,
    )


def backendsOf(
    admin: psycopg.Connection, user: str, database: str | None = None
) -> list[tuple[int, object, str | None, str | None]]:
    """
    The cluster's client backends of C{user} (and C{database}, if given):
    C{(pid, backend_start, state, query)}, ordered by pid.
    """
    sql = (
        "SELECT pid, backend_start, state, query FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' AND usename = %s"
    )
    params: list[str] = [user]
    if database is not None:
        sql += " AND datname = %s"
        params.append(database)
    rows = admin.execute(sql + " ORDER BY pid", params).fetchall()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def waitFor(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """
    Poll C{predicate} until it returns something true, and return that.

    @raise AssertionError: Still false after C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def waitUntilPooled(admin: psycopg.Connection, pid: int, timeout: float = 10.0) -> None:
    """
    Wait until backend C{pid} has been reset by pgtwist (its last query is
    C{DISCARD ALL} and it is idle), so the next client finds it in the pool.
    """
    waitFor(
        lambda: admin.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'idle'"
            " AND query = 'DISCARD ALL'",
            (pid,),
        ).fetchone(),
        timeout,
    )


def waitUntilGone(admin: psycopg.Connection, pid: int, timeout: float = 10.0) -> None:
    """
    Wait until backend C{pid} no longer shows in C{pg_stat_activity}.
    """
    waitFor(
        lambda: (
            admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            is None
        ),
        timeout,
    )


@contextmanager
def runningPooler(
    directory: Path,
    cluster: PostgresCluster,
    main: Mapping[str, object] | None = None,
    hba: Sequence[str] = ("host all all all scram-sha-256",),
    users: Mapping[str, str] | None = None,
    limits: Sequence[str] | None = None,
    serverSections: str | None = None,
) -> Iterator[Pooler]:
    """
    Start a L{Pooler} (by default SCRAM for everyone, with C{pgt_scram} and
    C{pgt_trust} known), yield it, and stop it; on failure print its log so
    that pytest shows it. C{limits} are the lines of a
    C{pgtwist_databases.conf}; C{serverSections} replaces the single server.
    """
    if users is None:
        users = {"pgt_scram": "scram-secret", "pgt_trust": "trust-secret"}
    pooler = Pooler(
        directory,
        cluster,
        main=main,
        hba=hba,
        users=users,
        limits=limits,
        serverSections=serverSections,
    ).start()
    try:
        yield pooler
    except BaseException:
        print("---- pgtwist log ----")
        print(pooler.log())
        raise
    finally:
        pooler.stop()
