"""
Transaction pooling end to end with real drivers (issue 3, point 5): the
real C{pgtwist} process with C{pipeline = transaction} and two backends for
20 concurrent clients of asyncpg, psycopg 3 (pipeline mode, every query
prepared), pg8000 and a raw L{pgtwist.wire} client; COPY, errors in the
middle of an extended-protocol batch, cancel, and pgbench.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pg8000.native
import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire import constants
from pgtwist.wire.messages import Close, Describe, Execute, Sync
from tests.integration.clients import runningPooler
from tests.integration.conftest import SHARED_DATABASE
from tests.integration.pooler import Pooler
from tests.integration.pooling import (
    CLIENTS,
    HBA,
    PASSWORD,
    TRANSACTION,
    TRUST,
    USER,
    ExtendedClient,
    bind,
    concurrently,
    connect,
    direct,
    exchange,
    firstValue,
    occupy,
    one,
    parse,
    summary,
    table,
)


@pytest.fixture
def pooler(tmp_path: Path, pgCluster: PostgresCluster) -> Iterator[Pooler]:
    """
    pgtwist in transaction mode with two backends, stopped after the test.
    """
    with runningPooler(tmp_path, pgCluster, main=TRANSACTION, hba=HBA) as running:
        yield running


# -- drivers -----------------------------------------------------------------------------


def test_asyncpgStatementCache(pooler: Pooler) -> None:
    """
    20 asyncpg connections (default statement cache: named statements,
    prepared once per connection) on two backends, each running 20
    parameterised queries, half inside explicit transactions: every result
    is right, and both backends served statements prepared on the other.
    """
    pids: set[int] = set()

    async def client(index: int) -> int:
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=pooler.port,
            user=USER,
            password=PASSWORD,
            database=USER,
            timeout=30,
        )
        try:
            done = 0
            for i in range(20):
                if i % 2:
                    async with conn.transaction():
                        row = await conn.fetchrow(
                            "SELECT $1::int * 1000 + $2::int AS v, pg_backend_pid() AS pid",
                            index,
                            i,
                        )
                        assert row is not None
                        text = await conn.fetchval("SELECT $1::text || '-' || $2::int", "t", i)
                        assert text == f"t-{i}"
                else:
                    row = await conn.fetchrow(
                        "SELECT $1::int * 1000 + $2::int AS v, pg_backend_pid() AS pid",
                        index,
                        i,
                    )
                    assert row is not None
                assert row["v"] == index * 1000 + i
                pids.add(row["pid"])
                statement = await conn.prepare("SELECT $1::int + 1")
                assert await statement.fetchval(i) == i + 1
                done += 1
            return done
        finally:
            await conn.close()

    async def everyone() -> list[int]:
        return await asyncio.gather(*(client(i) for i in range(CLIENTS)))

    assert asyncio.run(asyncio.wait_for(everyone(), 90)) == [20] * CLIENTS
    assert len(pids) == 2


def test_psycopgPipelineMode(pooler: Pooler) -> None:
    """
    20 psycopg connections in pipeline mode (several Parse/Bind/Execute
    sent before one Sync), in and out of explicit transactions, on two
    backends: every result arrives, in order, on the right cursor.
    """

    def work(index: int) -> set[int]:
        pids: set[int] = set()
        with connect(pooler) as conn:
            for round in range(5):
                with conn.pipeline():
                    cursors = [
                        conn.execute("SELECT %s::int * 100 + %s::int", (index, i)) for i in range(5)
                    ]
                    pid = conn.execute("SELECT pg_backend_pid()")
                values = [c.fetchone() for c in cursors]
                assert values == [(index * 100 + i,) for i in range(5)]
                pids.add(int(firstValue(pid)))
                with conn.pipeline(), conn.transaction():
                    first = conn.execute("SELECT %s::text || 'a'", (str(round),))
                    second = conn.execute("SELECT txid_current() = txid_current()")
                assert first.fetchone() == (f"{round}a",)
                assert second.fetchone() == (True,)
        return pids

    pids = set().union(*concurrently(CLIENTS, work))
    assert len(pids) == 2


def test_psycopgPrepareEverything(pooler: Pooler) -> None:
    """
    20 psycopg connections with C{prepare_threshold=0} (each query prepared
    with its own Parse and Sync, then run with Bind/Execute/Sync in the next
    transaction, maybe on the other backend): every result is right.
    """

    def work(index: int) -> set[int]:
        pids: set[int] = set()
        with connect(pooler, prepare_threshold=0) as conn:
            for i in range(10):
                row = conn.execute(
                    "SELECT %s::int * 100 + %s::int, pg_backend_pid()", (index, i)
                ).fetchone()
                assert row is not None and row[0] == index * 100 + i
                pids.add(row[1])
                with conn.transaction():
                    text = one(conn, "SELECT %s::text || %s::text", (str(index), "x"))
                    assert text == f"{index}x"
                    assert one(conn, "SELECT count(*) FROM generate_series(1, %s)", (i,)) == i
        return pids

    pids = set().union(*concurrently(CLIENTS, work))
    assert len(pids) == 2


def test_pg8000(pooler: Pooler) -> None:
    """
    20 pg8000 native connections (extended protocol, unnamed statements for
    C{run}, named ones for C{prepare}), in and out of transactions.
    """

    def work(index: int) -> set[int]:
        conn = pg8000.native.Connection(
            USER, host="127.0.0.1", port=pooler.port, database=USER, password=PASSWORD, timeout=30
        )
        pids: set[int] = set()
        try:
            statement = conn.prepare("SELECT :a::int * 2, pg_backend_pid()")
            try:
                for i in range(10):
                    [[value, pid]] = conn.run(
                        "SELECT :a::int + :b::int, pg_backend_pid()", a=index, b=i
                    )
                    assert value == index + i
                    pids.add(pid)
                    conn.run("BEGIN")
                    [[doubled, _]] = statement.run(a=i)
                    assert doubled == i * 2
                    assert conn.run("SELECT :t::text", t=f"c{index}") == [[f"c{index}"]]
                    conn.run("COMMIT")
            finally:
                statement.close()
        finally:
            conn.close()
        return pids

    pids = set().union(*concurrently(CLIENTS, work))
    assert len(pids) == 2


# -- raw protocol -------------------------------------------------------------------------


def test_mixedNamedAndUnnamed(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    20 raw clients send, each in a single write, a Parse of a named
    statement (same text for everyone), a Parse of an unnamed one, and
    Bind/Describe/Execute of both, then Sync; later batches use the named
    statement without parsing it again (on whichever backend they land).
    Every reply is exactly what PostgreSQL would send one client.
    """
    with runningPooler(tmp_path, pgCluster, main=TRANSACTION, hba=HBA) as pooler:

        def work(index: int) -> set[str]:
            client = ExtendedClient(pooler.port, TRUST)
            pids: set[str] = set()
            try:
                client.batch(
                    parse("double", "SELECT $1::int * 2"),
                    parse("", "SELECT $1::text || '/' || pg_backend_pid()"),
                    bind("double", str(index)),
                    Describe(b"P", ""),
                    Execute(""),
                    bind("", f"c{index}"),
                    Execute(""),
                    Sync(),
                )
                replies = summary(client.results())
                assert replies[:5] == [
                    "ParseComplete",
                    "ParseComplete",
                    "BindComplete",
                    "RowDescription",
                    f"row {index * 2}",
                ]
                assert replies[5] == "complete SELECT 1"
                assert replies[6] == "BindComplete"
                assert replies[7].startswith(f"row c{index}/")
                assert replies[8:] == ["complete SELECT 1", "ready I"]
                for i in range(8):
                    client.batch(
                        bind("double", str(i)),
                        Execute(""),
                        Describe(b"S", "double"),
                        parse("", "SELECT pg_backend_pid()::text"),
                        bind(""),
                        Describe(b"P", ""),
                        Execute(""),
                        Sync(),
                    )
                    replies = summary(client.results())
                    assert replies[:6] == [
                        "BindComplete",
                        f"row {i * 2}",
                        "complete SELECT 1",
                        "other t",
                        "RowDescription",
                        "ParseComplete",
                    ]
                    assert replies[6:8] == ["BindComplete", "RowDescription"]
                    assert replies[8].startswith("row ")
                    pids.add(replies[8])
                    assert replies[9:] == ["complete SELECT 1", "ready I"]
                # Closed, the name can be prepared again with another query.
                client.batch(
                    Close(b"S", "double"),
                    parse("double", "SELECT $1::int * 3"),
                    bind("double", str(index)),
                    Execute(""),
                    Sync(),
                    bind("double", "5"),
                    Execute(""),
                    Sync(),
                )
                assert summary(client.results()) == [
                    "CloseComplete",
                    "ParseComplete",
                    "BindComplete",
                    f"row {index * 3}",
                    "complete SELECT 1",
                    "ready I",
                ]
                assert summary(client.results()) == [
                    "BindComplete",
                    "row 15",
                    "complete SELECT 1",
                    "ready I",
                ]
                return pids
            finally:
                client.close()

        pids = set().union(*concurrently(CLIENTS, work))
    assert len(pids) == 2


def test_errorInExtendedBatch(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    An error in the middle of an extended-protocol batch: the client gets
    exactly the replies PostgreSQL itself sends for the same write (the
    error, nothing for the skipped messages up to Sync, the next Sync's
    batch run normally; a named statement parsed after the error is unknown
    afterwards), and 20 clients doing this at once on two backends never
    see one another's replies or an unclean backend.
    """
    with runningPooler(tmp_path, pgCluster, main=TRANSACTION, hba=HBA) as pooler:

        def work(index: int) -> None:
            client = ExtendedClient(pooler.port, TRUST)
            reference = ExtendedClient(pgCluster.port, TRUST)
            try:
                for i in range(5):
                    messages = [
                        parse("", "SELECT $1::int"),
                        bind("", str(index)),
                        Execute(""),
                        parse("", "SELECT 1 / (g - $1::int) FROM generate_series(1, 1) g"),
                        bind("", "1"),
                        Execute(""),
                        parse(f"late{i}", "SELECT 3"),
                        bind(f"late{i}"),
                        Execute(""),
                        Sync(),
                        parse("", "SELECT $1::int + 1"),
                        bind("", str(i)),
                        Execute(""),
                        Sync(),
                    ]
                    expected = exchange(reference, messages, 2)
                    assert expected[0][-2:] == ["error 22012 division by zero", "ready I"]
                    assert exchange(client, messages, 2) == expected
                    late = [bind(f"late{i}"), Execute(""), Sync()]
                    expected = exchange(reference, late, 1)
                    assert expected == [
                        [f'error 26000 prepared statement "late{i}" does not exist', "ready I"]
                    ]
                    assert exchange(client, late, 1) == expected
                    assert client.query("SELECT 'clean'") == [("clean",)]
                    assert client.transactionStatus == constants.TRANSACTION_IDLE
            finally:
                client.close()
                reference.close()

        concurrently(CLIENTS, work)


def test_statementVerifiedPerDatabase(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    A statement PostgreSQL accepted in one database is not answered without
    a backend for a client of another database: there its Parse fails as
    PostgreSQL fails it, at the Parse.
    """
    sql = "SELECT a FROM only_here"
    with (
        table(pgCluster, "only_here", "a int", role=TRUST),
        runningPooler(tmp_path, pgCluster, main=TRANSACTION, hba=HBA) as pooler,
    ):
        here = ExtendedClient(pooler.port, TRUST)
        elsewhere = ExtendedClient(pooler.port, TRUST, database=SHARED_DATABASE)
        reference = ExtendedClient(pgCluster.port, TRUST, database=SHARED_DATABASE)
        try:
            messages = [parse("s", sql), Sync()]
            assert exchange(here, messages, 1) == [["ParseComplete", "ready I"]]
            # Now verified in pgt_trust's database, and answered there at once.
            assert exchange(here, [parse("t", sql), Sync()], 1) == [["ParseComplete", "ready I"]]
            expected = exchange(reference, messages, 1)
            assert expected == [['error 42P01 relation "only_here" does not exist', "ready I"]]
            assert exchange(elsewhere, messages, 1) == expected
        finally:
            here.close()
            elsewhere.close()
            reference.close()


def test_statementSkippedAfterErrorInSameWrite(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    A named statement whose Parse PostgreSQL skipped (an error came first)
    is unknown to a Bind sent in the same write after the Sync, as on
    PostgreSQL: the error names the client's statement, and no row of
    another client's statement of the same text comes back.
    """
    with runningPooler(tmp_path, pgCluster, main=TRANSACTION, hba=HBA) as pooler:
        other = ExtendedClient(pooler.port, TRUST)
        client = ExtendedClient(pooler.port, TRUST)
        reference = ExtendedClient(pgCluster.port, TRUST)
        try:
            # Another client has "SELECT 3" prepared on both backends.
            prepareThree = [
                parse("", "SELECT 3, pg_backend_pid()"),
                bind(""),
                Execute(""),
                parse("three", "SELECT 3"),
                bind("three"),
                Execute(""),
                Sync(),
            ]
            [replies] = exchange(other, prepareThree, 1)
            pid = int(replies[2].split()[1].split(",")[1])
            with occupy(pooler, pid, TRUST):
                assert exchange(other, prepareThree[4:], 1) == [
                    ["BindComplete", "row 3", "complete SELECT 1", "ready I"]
                ]
            messages = [
                parse("", "SELECT 1 / 0"),
                bind(""),
                Execute(""),
                parse("late", "SELECT 3"),
                Sync(),
                bind("late"),
                Execute(""),
                Sync(),
            ]
            expected = exchange(reference, messages, 2)
            assert expected == [
                ["ParseComplete", "error 22012 division by zero", "ready I"],
                ['error 26000 prepared statement "late" does not exist', "ready I"],
            ]
            for _ in range(2):
                assert exchange(client, messages, 2) == expected
        finally:
            other.close()
            client.close()
            reference.close()


def test_errorInPsycopgPipeline(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    psycopg pipeline mode with a failing statement in the middle: the client
    gets C{DivisionByZero}, what follows in the batch is not run, the
    connection stays usable; 20 clients at once, and the rows committed are
    exactly those PostgreSQL itself commits for the same calls.
    """

    def scenario(conn: psycopg.Connection, index: int) -> list[str]:
        seen = []
        for round in range(3):
            try:
                with conn.pipeline():
                    conn.execute("INSERT INTO batch_t VALUES (%s, %s, 1)", (index, round))
                    conn.execute("SELECT 1 / 0")
                    conn.execute("INSERT INTO batch_t VALUES (%s, %s, 3)", (index, round))
            except psycopg.errors.DivisionByZero:
                seen.append("division by zero")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            with conn.pipeline():
                conn.execute("INSERT INTO batch_t VALUES (%s, %s, 4)", (index, round))
                check = conn.execute("SELECT %s::int", (round,))
            seen.append(f"check {firstValue(check)}")
        return seen

    with table(pgCluster, "batch_t", "client int, round int, step int"):
        with direct(pgCluster) as conn:
            expected = scenario(conn, -1)
            reference = conn.execute(
                "SELECT round, step FROM batch_t ORDER BY round, step"
            ).fetchall()
        assert "division by zero" in expected

        def work(index: int) -> None:
            with connect(pooler) as conn:
                assert scenario(conn, index) == expected

        concurrently(CLIENTS, work)
        with direct(pgCluster) as conn:
            for index in range(CLIENTS):
                rows = conn.execute(
                    "SELECT round, step FROM batch_t WHERE client = %s ORDER BY round, step",
                    (index,),
                ).fetchall()
                assert rows == reference, index


# -- COPY ------------------------------------------------------------------------------------


def test_copy(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    20 clients each copy 500 rows in with C{COPY FROM STDIN}, alone and
    inside C{BEGIN ... COMMIT} with other statements, and read them back
    with C{COPY TO STDOUT}; a COPY the client aborts commits nothing and
    leaves the connection usable.
    """

    def work(index: int) -> None:
        rows = [(index, i, f"name {i}") for i in range(500)]
        with connect(pooler) as conn:
            cursor = conn.cursor()
            with cursor.copy("COPY copy_t (client, i, name) FROM STDIN") as copy:
                for row in rows[:250]:
                    copy.write_row(row)
            with conn.transaction():
                conn.execute("INSERT INTO copy_t VALUES (%s, -1, 'in transaction')", (index,))
                with cursor.copy("COPY copy_t (client, i, name) FROM STDIN") as copy:
                    for row in rows[250:]:
                        copy.write_row(row)
                conn.execute("DELETE FROM copy_t WHERE client = %s AND i = -1", (index,))
            with pytest.raises(RuntimeError, match="gives up"):
                with cursor.copy("COPY copy_t (client, i, name) FROM STDIN") as copy:
                    copy.write_row((index, 9999, "partial"))
                    raise RuntimeError("the client gives up")
            query = f"COPY (SELECT * FROM copy_t WHERE client = {index} ORDER BY i) TO STDOUT"
            with cursor.copy(query) as copy:
                copy.set_types(["int4", "int4", "text"])
                assert list(copy.rows()) == rows
            with conn.transaction():
                with cursor.copy(query) as copy:
                    copy.set_types(["int4", "int4", "text"])
                    assert len(list(copy.rows())) == 500
                assert one(conn, "SELECT count(*) FROM copy_t WHERE client = %s", (index,)) == 500

    with table(pgCluster, "copy_t", "client int, i int, name text"):
        concurrently(CLIENTS, work)
        with direct(pgCluster) as conn:
            assert one(conn, "SELECT count(*) FROM copy_t") == CLIENTS * 500


def test_copyExtendedProtocol(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    20 pg8000 clients run COPY with the extended protocol (Parse, Bind,
    Execute, Sync, then the copy data): FROM STDIN alone and inside
    C{BEGIN ... COMMIT}, and TO STDOUT; every row arrives.
    """

    def work(index: int) -> None:
        conn = pg8000.native.Connection(
            USER, host="127.0.0.1", port=pooler.port, database=USER, password=PASSWORD, timeout=30
        )
        try:
            lines = [f"{index}\t{i}\tname {i}\n" for i in range(300)]
            data = "".join(lines)
            conn.run("COPY copy_t FROM STDIN", stream=io.StringIO("".join(lines[:150])))
            conn.run("BEGIN")
            conn.run("COPY copy_t FROM STDIN", stream=io.StringIO("".join(lines[150:])))
            assert conn.run("SELECT count(*) FROM copy_t WHERE client = :c", c=index) == [[300]]
            conn.run("COMMIT")
            for transaction in (False, True):
                if transaction:
                    conn.run("BEGIN")
                out = io.StringIO()
                conn.run(
                    f"COPY (SELECT * FROM copy_t WHERE client = {index} ORDER BY i) TO STDOUT",
                    stream=out,
                )
                assert out.getvalue() == data
                if transaction:
                    conn.run("COMMIT")
            assert conn.run("SELECT :v::int", v=index) == [[index]]
        finally:
            conn.close()

    with table(pgCluster, "copy_t", "client int, i int, name text"):
        concurrently(CLIENTS, work)
        with direct(pgCluster) as conn:
            assert one(conn, "SELECT count(*) FROM copy_t") == CLIENTS * 300


# -- cancel ------------------------------------------------------------------------------------------


def cancelSoon(conn: psycopg.Connection, method: Callable[[], None]) -> None:
    """
    Call C{method} half a second from now and run C{pg_sleep(10)} on
    C{conn}: it must be cancelled within 3 seconds.
    """
    canceller = threading.Timer(0.5, method)
    started = time.monotonic()
    canceller.start()
    try:
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(10)")
    finally:
        canceller.join()
    assert time.monotonic() - started < 3.0


def test_cancel(pooler: Pooler) -> None:
    """
    A transaction-mode client gets a BackendKeyData, and C{cancel()} /
    C{cancel_safe()} stop its running query, in or out of a transaction and
    on whichever backend it runs; a cancel while it holds no backend is
    harmless, and the other client's transaction is not touched.
    """
    with connect(pooler) as conn:
        assert conn.info.backend_pid != 0
        conn.cancel()
        assert one(conn, "SELECT 1") == 1
        cancelSoon(conn, conn.cancel)
        cancelSoon(conn, conn.cancel_safe)
        with conn.transaction():
            conn.execute("SELECT 1")
            cancelSoon(conn, conn.cancel)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        pid = int(str(one(conn, "SELECT pg_backend_pid()")))
        with occupy(pooler, pid) as holder:
            cancelSoon(conn, conn.cancel)
            assert one(holder, "SELECT 3") == 3
        assert one(conn, "SELECT 4") == 4


# -- pgbench ----------------------------------------------------------------------------------------


def test_pgbench(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    C{pgbench -i}, then 20 pgbench clients for 5 seconds with
    C{-M prepared} and with C{-M extended}, through pgtwist in transaction
    mode with four backends: no failed transaction.
    """
    database = "pgtwist_bench"
    pgCluster.createDatabase(database, owner=USER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=PASSWORD, PGCONNECT_TIMEOUT="10")
    main = {"pipeline": "transaction", "max_connections": 4, "blocking_timeout": 30}
    with runningPooler(tmp_path, pgCluster, main=main) as pooler:
        connection = ["-h", "127.0.0.1", "-p", str(pooler.port), "-U", USER, database]

        def pgbench(*args: str) -> str:
            result = subprocess.run(
                [pgCluster.pgbench, *args, *connection],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            output = result.stdout + result.stderr
            assert result.returncode == 0, output
            return output

        pgbench("-i", "-s", "1", "-q")
        for mode in ("prepared", "extended"):
            output = pgbench("-n", "-M", mode, "-c", "20", "-j", "2", "-T", "5")
            assert re.search(r"number of failed transactions: 0\b", output), output
            processed = re.search(r"number of transactions actually processed: (\d+)", output)
            assert processed is not None and int(processed.group(1)) > 0, output
