"""
Helpers for the transaction-pooling integration tests: psycopg connections
through pgtwist and straight to the cluster, many clients at once, a raw
extended-protocol client, and steering a client's next transaction onto a
chosen backend of a two-backend pool.

Steering: L{occupy} holds a backend inside an open transaction, so the other
client's next transaction has nowhere to go but the other backend; L{avoid}
holds the other one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TypeVar

import psycopg

from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire import codec
from pgtwist.wire.messages import (
    Bind,
    CommandComplete,
    DataRow,
    ErrorResponse,
    Message,
    Parse,
    ReadyForQuery,
)
from tests.integration.clients import RawClient
from tests.integration.pooler import Pooler

T = TypeVar("T")

USER, PASSWORD = "pgt_scram", "scram-secret"
"""
The SCRAM role the drivers log in as (its own database), through pgtwist and
toward PostgreSQL.
"""

TRUST = "pgt_trust"
"""
The role the raw client logs in as (trust, its own database).
"""

HBA = ["host all pgt_trust all trust", "host all all all scram-sha-256"]
"""
pgtwist HBA lines: trust for the raw client's role, SCRAM for the others.
"""

TRANSACTION = {"pipeline": "transaction", "max_connections": 2, "blocking_timeout": 30}
"""
The pgtwist settings of these tests: transaction pooling with two backends.
"""

CLIENTS = 20
"""
How many clients the concurrent tests run at once.
"""


def direct(cluster: PostgresCluster, role: str = USER) -> psycopg.Connection:
    """
    An autocommit connection as C{role} to its own database, straight to
    the cluster's unix socket (trust there), bypassing pgtwist: to set up
    tables and to check what really got committed.
    """
    return psycopg.connect(
        host=cluster.socketDir, port=cluster.port, user=role, dbname=role, autocommit=True
    )


@contextmanager
def table(cluster: PostgresCluster, name: str, columns: str, role: str = USER) -> Iterator[None]:
    """
    Create table C{name} in C{role}'s database for the duration of a test.
    """
    with direct(cluster, role) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"CREATE TABLE {name} ({columns})")
    try:
        yield
    finally:
        with direct(cluster, role) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}")


def connect(pooler: Pooler, autocommit: bool = True, **extra: object) -> psycopg.Connection:
    """
    A psycopg connection through C{pooler} as L{USER}.
    """
    return psycopg.connect(pooler.dsn(USER, PASSWORD), autocommit=autocommit, **extra)


def one(
    conn: psycopg.Connection,
    sql: str,
    params: Sequence[object] | None = None,
    prepare: bool | None = None,
) -> object:
    """
    The single value C{sql} returns on C{conn}.
    """
    row = conn.execute(sql, params, prepare=prepare).fetchone()
    assert row is not None
    return row[0]


def concurrently(count: int, work: Callable[[int], T], timeout: float = 60.0) -> list[T]:
    """
    Run C{work(0)} ... C{work(count - 1)} in as many threads at once; return
    their results in order, or re-raise the first failure.
    """
    results: list[T | None] = [None] * count
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = work(index)
        except BaseException as e:  # re-raised below
            failures.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = sum(thread.is_alive() for thread in threads)
    if failures:
        raise failures[0]
    assert stuck == 0, f"{stuck} of {count} clients still running after {timeout}s"
    return [result for result in results if result is not None]


@contextmanager
def holding(
    pooler: Pooler, wanted: Callable[[int], bool], role: str = USER
) -> Iterator[psycopg.Connection]:
    """
    Hold, inside an open transaction, the backend of C{role}'s pool whose
    pid C{wanted} accepts (the pool has two backends): the other client's
    transactions then run on the other backend.
    """
    password = PASSWORD if role == USER else None
    spare: list[psycopg.Connection] = []
    holder = None
    try:
        for _ in range(2):
            conn = psycopg.connect(pooler.dsn(role, password))
            if wanted(int(str(one(conn, "SELECT pg_backend_pid()")))):
                holder = conn
                break
            spare.append(conn)
        assert holder is not None, "backend not found in the pool"
    finally:
        for conn in spare:
            leave(conn)
    try:
        yield holder
    finally:
        leave(holder)


def leave(conn: psycopg.Connection) -> None:
    """
    End C{conn}'s transaction, then close it: a client that leaves inside a
    transaction gets its backend closed, and the tests want the pool kept.
    """
    try:
        conn.rollback()
    finally:
        conn.close()


def occupy(
    pooler: Pooler, pid: int, role: str = USER
) -> AbstractContextManager[psycopg.Connection]:
    """
    Hold backend C{pid}, so that other clients run on the other backend.
    """
    return holding(pooler, lambda seen: seen == pid, role)


def avoid(pooler: Pooler, pid: int, role: str = USER) -> AbstractContextManager[psycopg.Connection]:
    """
    Hold the backend that is not C{pid}, so that other clients run on C{pid}.
    """
    return holding(pooler, lambda seen: seen != pid, role)


class ExtendedClient(RawClient):
    """
    L{RawClient} that also reads the backend messages L{codec} leaves out
    (ParameterDescription, COPY responses) as L{Other}.
    """

    def read(self) -> Message:
        """
        The next message from the server.
        """
        while not self._messages:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            for type, body in self._framer.feed(data):
                try:
                    self._messages.append(codec.decodeBackend(type, body))
                except Exception:
                    self._messages.append(Other(type))
        return self._messages.popleft()

    def batch(self, *messages: Message) -> None:
        """
        Send C{messages} in a single write.
        """
        self.sock.sendall(b"".join(codec.encode(message) for message in messages))


@dataclass(frozen=True, slots=True)
class Other(Message):
    """
    A backend message L{codec} does not decode; only its type is kept.
    """

    kind: bytes


def summary(messages: Sequence[Message]) -> list[str]:
    """
    C{messages} as short strings: class names, C{DataRow} values, error
    codes and messages, ReadyForQuery status.
    """
    out = []
    for message in messages:
        if isinstance(message, DataRow):
            out.append(
                "row " + ",".join("NULL" if v is None else v.decode() for v in message.values)
            )
        elif isinstance(message, ErrorResponse):
            out.append(f"error {message.code} {message.message}")
        elif isinstance(message, ReadyForQuery):
            out.append(f"ready {message.status.decode()}")
        elif isinstance(message, CommandComplete):
            out.append(f"complete {message.tag}")
        elif isinstance(message, Other):
            out.append(f"other {message.kind.decode()}")
        else:
            out.append(type(message).__name__)
    return out


def parse(name: str, sql: str) -> Parse:
    """
    A Parse with no declared parameter types.
    """
    return Parse(name, sql)


def bind(statement: str, *values: str) -> Bind:
    """
    A Bind of the unnamed portal with text parameters.
    """
    return Bind("", statement, (), tuple(value.encode() for value in values))


def firstValue(cursor: psycopg.Cursor) -> object:
    """
    The single value of C{cursor}'s single row.
    """
    row = cursor.fetchone()
    assert row is not None
    return row[0]


def exchange(client: ExtendedClient, messages: Sequence[Message], syncs: int) -> list[list[str]]:
    """
    Send C{messages} in one write and read the replies up to each of the
    C{syncs} ReadyForQuery, summarised.
    """
    client.batch(*messages)
    return [summary(client.results()) for _ in range(syncs)]
