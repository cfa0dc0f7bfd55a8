"""
PgBouncer's limits and timeouts through a real pgtwist process: each ends
the right client with PgBouncer's error (FATAL, SQLSTATE 08P01, its
reason as the message). Sub-second timeouts; the janitor checks once a
second, so a client is ended within about a second of its limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pg8000.exceptions
import pg8000.native
import pytest

from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire import codec, constants
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import ErrorResponse, Message, NoticeResponse
from tests.integration.conftest import ROLES, SHARED_DATABASE
from tests.integration.pooler import Pooler

ROLE = "pgt_scram"
PASSWORD = ROLES[ROLE][0]
OTHER = "pgt_md5"


def connect(
    pooler: Pooler, user: str = ROLE, database: str = SHARED_DATABASE
) -> pg8000.native.Connection:
    """
    A pg8000 connection to C{pooler}.
    """
    return pg8000.native.Connection(
        user,
        host="127.0.0.1",
        port=pooler.port,
        database=database,
        password=ROLES[user][0],
        timeout=10,
    )


def assertEnded(error: pytest.ExceptionInfo[pg8000.exceptions.DatabaseError], reason: str) -> None:
    """
    The error is PgBouncer's ending: FATAL 08P01 with C{reason}.
    """
    fields = error.value.args[0]
    assert (fields["V"], fields["C"], fields["M"]) == ("FATAL", "08P01", reason)


def assertEndedIdle(
    client: pg8000.native.Connection, reason: str, sql: str | None = None
) -> list[Message]:
    """
    C{client} was sent PgBouncer's ending with C{reason}, then closed: read
    from its socket, after sending the query C{sql} if given (pg8000 reads
    on to a ReadyForQuery after an error, and would only see the close).

    @return: The messages that came before the error.
    """
    sock = client._usock
    if sql is not None:
        sock.sendall(codec.frame(constants.QUERY, codec.encodeString(sql)))
    sock.settimeout(10)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    messages = [codec.decodeBackend(t, b) for t, b in MessageFramer().feed(data)]
    error = messages[-1]
    assert isinstance(error, ErrorResponse), messages
    assert (error.severity, error.code, error.message) == ("FATAL", "08P01", reason)
    return messages[:-1]


@pytest.fixture
def started(tmp_path: Path, pgCluster: PostgresCluster) -> Iterator[list[Pooler]]:
    """
    Poolers the test starts; each is stopped after it.
    """
    poolers: list[Pooler] = []
    yield poolers
    for pooler in poolers:
        pooler.stop()


def start(
    started: list[Pooler],
    directory: Path,
    cluster: PostgresCluster,
    limits: list[str] | None = None,
    **main: object,
) -> Pooler:
    """
    Start a pgtwist with these main settings and databases-file lines.
    """
    pooler = Pooler(
        directory,
        cluster,
        main=main,
        hba=["host all all all scram-sha-256"],
        users={ROLE: PASSWORD, OTHER: ROLES[OTHER][0]},
        limits=limits,
    ).start()
    started.append(pooler)
    return pooler


def test_idleTransactionTimeout(
    tmp_path: Path, pgCluster: PostgresCluster, started: list[Pooler]
) -> None:
    """
    Transaction pooling: a client idle inside its transaction past
    C{idle_transaction_timeout} is ended with PgBouncer's C{idle
    transaction timeout}; its backend is not given to anyone else in that
    transaction, and a client that keeps working is left alone.
    """
    pooler = start(
        started, tmp_path, pgCluster, pipeline="transaction", idle_transaction_timeout="300ms"
    )
    busy = connect(pooler)
    idle = connect(pooler)
    idle.run("BEGIN")
    idle.run("CREATE TEMP TABLE left_behind (x int)")
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert busy.run("SELECT 1") == [[1]]
        time.sleep(0.05)
    assertEndedIdle(idle, "idle transaction timeout")
    assert busy.run("SELECT count(*) FROM pg_class WHERE relname = 'left_behind'") == [[0]]
    busy.close()


def test_transactionTimeout(
    tmp_path: Path, pgCluster: PostgresCluster, started: list[Pooler]
) -> None:
    """
    Session pooling, per user from the databases file: a transaction open
    past C{transaction_timeout} ends its client, counted from its start
    (not from its last statement); another user's (no limit) is left
    alone.
    """
    pooler = start(
        started,
        tmp_path,
        pgCluster,
        limits=[f"all {ROLE} all 0 0 session transaction_timeout=1s"],
        pipeline="session",
    )
    limited = connect(pooler)
    free = connect(pooler, OTHER)
    limited.run("BEGIN")
    free.run("BEGIN")
    began = time.monotonic()
    while time.monotonic() - began < 0.7:
        limited.run("SELECT 1")
        free.run("SELECT 1")
        time.sleep(0.05)
    assertEndedIdle(limited, "transaction timeout")
    assert time.monotonic() - began < 3
    assert free.run("SELECT 1") == [[1]]
    free.run("COMMIT")
    free.close()


def test_queryTimeout(tmp_path: Path, pgCluster: PostgresCluster, started: list[Pooler]) -> None:
    """
    A query running past C{query_timeout} ends its client with PgBouncer's
    C{query timeout}, long before the query would have finished.
    """
    pooler = start(started, tmp_path, pgCluster, pipeline="transaction", query_timeout="300ms")
    client = connect(pooler)
    began = time.monotonic()
    assert assertEndedIdle(client, "query timeout", "SELECT pg_sleep(10)") == []
    assert time.monotonic() - began < 5


def test_clientIdleTimeout(
    tmp_path: Path, pgCluster: PostgresCluster, started: list[Pooler]
) -> None:
    """
    A client silent past C{client_idle_timeout} is ended with PgBouncer's
    C{client_idle_timeout}.
    """
    pooler = start(
        started, tmp_path, pgCluster, pipeline="transaction", client_idle_timeout="300ms"
    )
    client = connect(pooler)
    assert client.run("SELECT 1") == [[1]]
    assertEndedIdle(client, "client_idle_timeout")


def test_queryWaitTimeoutAndNotify(
    tmp_path: Path, pgCluster: PostgresCluster, started: list[Pooler]
) -> None:
    """
    A client queued for a backend hears PgBouncer's NOTICE after
    C{query_wait_notify}, then is ended with C{query_wait_timeout} (the
    databases file's, over the main section's); the client holding the
    only backend is untouched.
    """
    pooler = start(
        started,
        tmp_path,
        pgCluster,
        limits=[f"{SHARED_DATABASE} all 1 0 0 transaction query_wait_timeout=1500ms"],
        query_wait_timeout=60,
        query_wait_notify="200ms",
    )
    # The waiter logs in first: a login borrows a backend too.
    waiter = connect(pooler, OTHER)
    holder = connect(pooler)
    holder.run("BEGIN")
    began = time.monotonic()
    before = assertEndedIdle(waiter, "query_wait_timeout", "SELECT 1")
    assert 1.2 < time.monotonic() - began < 5
    assert len(before) == 1
    notice = before[0]
    assert isinstance(notice, NoticeResponse)
    assert notice.fields == (
        (b"S", "NOTICE"),
        (b"C", "00000"),
        (b"M", "No server connection available in postgres backend, client being queued"),
    )
    assert holder.run("SELECT 1") == [[1]]
    holder.run("COMMIT")
    holder.close()


def test_clientConnectionLimits(
    tmp_path: Path, pgCluster: PostgresCluster, started: list[Pooler]
) -> None:
    """
    C{max_db_client_connections} (databases file) and
    C{max_user_client_connections} (main section) refuse the client past
    them with PgBouncer's words.
    """
    pooler = start(
        started,
        tmp_path,
        pgCluster,
        limits=[f"{SHARED_DATABASE} all all 0 0 transaction max_db_client_connections=2"],
        max_user_client_connections=1,
    )
    first = connect(pooler)
    with pytest.raises(pg8000.exceptions.DatabaseError) as error:
        connect(pooler)
    assertEnded(error, "client connections exceeded (max_user_client_connections)")
    second = connect(pooler, OTHER)
    with pytest.raises(pg8000.exceptions.DatabaseError) as error:
        connect(pooler, "pgt_password")
    assertEnded(error, "client connections exceeded (max_db_client_connections)")
    first.close()
    second.close()
