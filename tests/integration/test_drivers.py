"""
Real drivers through pgtwist in session mode (SCRAM toward the client and
toward PostgreSQL): psql, psycopg 3, asyncpg and pg8000, plus many
concurrent clients sharing a small pool.

These live in C{tests/integration} rather than C{tests/compat}: a
session-scoped fixture imported into a second conftest is a second fixture
definition, so pytest would start a second cluster for the same run.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pg8000.native
import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from tests.integration.clients import adminConnect, backendsOf, runningPooler, waitFor
from tests.integration.conftest import SHARED_DATABASE
from tests.integration.pooler import Pooler

USER, PASSWORD = "pgt_scram", "scram-secret"
"""
The SCRAM role every driver logs in as, through pgtwist and toward PostgreSQL.
"""


def psql(cluster: PostgresCluster, pooler: Pooler, *commands: str) -> str:
    """
    Run the cluster's C{psql} through C{pooler} with one C{-c} per command
    (all in one session, unaligned, tuples only); return its stdout.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=PASSWORD, PGCONNECT_TIMEOUT="10")
    args = [cluster.program("psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1"]
    args += ["-h", "127.0.0.1", "-p", str(pooler.port), "-U", USER, "-d", USER]
    for command in commands:
        args += ["-c", command]
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_psql(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    psql runs a simple query, and C{\\copy} moves rows in from a file and
    back out to another, byte for byte, through pgtwist.
    """
    source = tmp_path / "in.tsv"
    target = tmp_path / "out.tsv"
    source.write_text("".join(f"{i}\tname {i}\n" for i in range(1, 501)))
    with runningPooler(tmp_path, pgCluster) as pooler:
        assert psql(pgCluster, pooler, "SELECT 40 + 2, current_user") == "42|pgt_scram\n"
        out = psql(
            pgCluster,
            pooler,
            "CREATE TEMP TABLE c (id int, name text)",
            f"\\copy c from '{source}'",
            "SELECT count(*), sum(id) FROM c",
            f"\\copy c to '{target}'",
        )
    assert out.splitlines() == ["CREATE TABLE", "COPY 500", "500|125250", "COPY 500"]
    assert target.read_text() == source.read_text()


@pytest.fixture
def pooler(tmp_path: Path, pgCluster: PostgresCluster) -> Iterator[Pooler]:
    """
    pgtwist with SCRAM for everyone, stopped after the test.
    """
    with runningPooler(tmp_path, pgCluster) as running:
        yield running


def test_psycopgSimpleAndExtended(pooler: Pooler) -> None:
    """
    psycopg sends parameterless queries with the simple protocol (several
    statements in one string work) and parameterised ones with the extended
    protocol (where several statements are refused by PostgreSQL); both
    work through pgtwist, in text and binary, and so do prepared statements.
    """
    with psycopg.connect(pooler.dsn(USER, PASSWORD), autocommit=True) as conn:
        cursor = conn.execute("SELECT 1; SELECT 2")
        assert cursor.fetchall() == [(1,)]
        assert cursor.nextset()
        assert cursor.fetchall() == [(2,)]

        assert conn.execute("SELECT %s::int + %s::int", (40, 2)).fetchone() == (42,)
        with pytest.raises(psycopg.errors.SyntaxError, match="multiple commands"):
            conn.execute("SELECT %s::int; SELECT 2", (1,))
        binary = conn.cursor(binary=True)
        assert binary.execute("SELECT %s::text || 'b'", ("a",)).fetchone() == ("ab",)

        for i in range(3):
            row = conn.execute("SELECT %s::int * 2", (i,), prepare=True).fetchone()
            assert row == (i * 2,)
        prepared = conn.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%* 2%'"
        ).fetchone()
        assert prepared == (1,)

        with conn.transaction():
            conn.execute("CREATE TEMP TABLE tx (x int)")
        assert conn.execute("SELECT count(*) FROM tx").fetchone() == (0,)


def test_psycopgCopy(pooler: Pooler) -> None:
    """
    C{COPY FROM STDIN} and C{COPY TO STDOUT} with psycopg's C{cursor.copy()};
    a COPY the client aborts (CopyFail) or PostgreSQL refuses (bad data)
    leaves the connection usable.
    """
    rows = [(i, f"name {i}") for i in range(5000)]
    with psycopg.connect(pooler.dsn(USER, PASSWORD), autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE c (id int, name text)")
        cursor = conn.cursor()
        with cursor.copy("COPY c (id, name) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        assert conn.execute("SELECT count(*), sum(id) FROM c").fetchone() == (5000, 12497500)

        with cursor.copy("COPY c TO STDOUT") as copy:
            copy.set_types(["int4", "text"])
            assert list(copy.rows()) == rows

        # psycopg sends CopyFail and re-raises the client's own exception.
        with pytest.raises(RuntimeError, match="gives up"):
            with cursor.copy("COPY c FROM STDIN") as copy:
                copy.write_row((1, "partial"))
                raise RuntimeError("the client gives up")
        assert conn.execute("SELECT count(*) FROM c").fetchone() == (5000,)

        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            with cursor.copy("COPY c FROM STDIN") as copy:
                copy.write(b"1\tfine\nnot a number\tbad\n")
        assert conn.execute("SELECT count(*) FROM c").fetchone() == (5000,)


def test_psycopgLargeResult(pooler: Pooler) -> None:
    """
    A 100,000-row result arrives whole (count and checksum), both fetched at
    once and streamed from a server-side cursor.
    """
    query = "SELECT g, repeat('x', 50) FROM generate_series(1, 100000) g"
    with psycopg.connect(pooler.dsn(USER, PASSWORD)) as conn:
        rows = conn.execute(query).fetchall()
        assert len(rows) == 100000
        assert sum(g for g, _ in rows) == 5000050000
        assert {text for _, text in rows} == {"x" * 50}

        count = total = 0
        with conn.cursor(name="big") as named:
            named.itersize = 7000
            named.execute(query)
            for g, text in named:
                count += 1
                total += g
                assert len(text) == 50
        assert (count, total) == (100000, 5000050000)


def test_asyncpg(pooler: Pooler) -> None:
    """
    asyncpg (its own protocol code, named prepared statements, SSL
    negotiation refused) connects, fetches, prepares, runs C{executemany}
    and copies in and out.
    """

    async def scenario() -> None:
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=pooler.port,
            user=USER,
            password=PASSWORD,
            database=USER,
            timeout=10,
        )
        try:
            assert await conn.fetchval("SELECT 40 + 2") == 42
            rows = await conn.fetch("SELECT g FROM generate_series(1, $1::int) g", 5)
            assert [r["g"] for r in rows] == [1, 2, 3, 4, 5]
            statement = await conn.prepare("SELECT $1::int * 2")
            assert [await statement.fetchval(i) for i in range(3)] == [0, 2, 4]

            await conn.execute("CREATE TEMP TABLE a (id int, name text)")
            await conn.executemany(
                "INSERT INTO a VALUES ($1, $2)", [(i, f"n{i}") for i in range(100)]
            )
            await conn.copy_records_to_table("a", records=[(i, f"c{i}") for i in range(100, 300)])
            assert await conn.fetchrow("SELECT count(*), sum(id) FROM a") == (300, 44850)
            output = io.BytesIO()
            await conn.copy_from_table("a", output=output)
            lines = output.getvalue().decode().splitlines()
            assert len(lines) == 300
            assert lines[0] == "0\tn0" and lines[-1] == "299\tc299"
        finally:
            await conn.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_pg8000(pooler: Pooler) -> None:
    """
    pg8000's native API (pure-Python SCRAM, extended protocol, named
    parameters, prepared statements) works through pgtwist.
    """
    conn = pg8000.native.Connection(
        USER, host="127.0.0.1", port=pooler.port, database=USER, password=PASSWORD, timeout=10
    )
    try:
        assert conn.run("SELECT :a::int + :b::int", a=40, b=2) == [[42]]
        conn.run("CREATE TEMP TABLE p (id int, name text)")
        for i in range(20):
            conn.run("INSERT INTO p VALUES (:id, :name)", id=i, name=f"n{i}")
        statement = conn.prepare("SELECT name FROM p WHERE id = :id")
        try:
            assert statement.run(id=7) == [["n7"]]
            assert statement.run(id=19) == [["n19"]]
        finally:
            statement.close()
        assert conn.run("SELECT count(*), sum(id) FROM p") == [[20, 190]]
    finally:
        conn.close()


def test_manyClients(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    20 threads, each connecting and running 10 queries, share
    C{max_connections = 4}: every query succeeds, and PostgreSQL never sees
    more than 4 backends of that (database, user) at once.
    """
    clients, queries = 20, 10
    main = {"max_connections": 4, "blocking_timeout": 10}
    peak = 0
    stop = threading.Event()
    failures: list[BaseException] = []
    results: list[tuple[int, int]] = []
    pids: set[int] = set()
    lock = threading.Lock()

    def sample() -> None:
        nonlocal peak
        with adminConnect(pgCluster) as admin:
            while not stop.is_set():
                seen = len(backendsOf(admin, USER, SHARED_DATABASE))
                peak = max(peak, seen)
                stop.wait(0.01)

    def work(pooler: Pooler, client: int) -> None:
        try:
            dsn = pooler.dsn(USER, PASSWORD, SHARED_DATABASE)
            with psycopg.connect(dsn, autocommit=True) as conn:
                for i in range(queries):
                    row = conn.execute(
                        "SELECT %s::int, pg_backend_pid() FROM pg_sleep(0.01)",
                        (client * 100 + i,),
                    ).fetchone()
                    assert row is not None
                    with lock:
                        results.append((client, row[0]))
                        pids.add(row[1])
        except BaseException as e:  # reported below, with the pgtwist log
            with lock:
                failures.append(e)

    with adminConnect(pgCluster) as admin:
        # Backends of an earlier test's pgtwist may take a moment to exit.
        waitFor(lambda: not backendsOf(admin, USER, SHARED_DATABASE))
    with runningPooler(tmp_path, pgCluster, main=main) as pooler:
        sampler = threading.Thread(target=sample)
        sampler.start()
        workers = [threading.Thread(target=work, args=(pooler, c)) for c in range(clients)]
        try:
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(60)
        finally:
            stop.set()
            sampler.join(10)
        assert failures == []
    assert not any(worker.is_alive() for worker in workers)
    assert sorted(value for _, value in results) == sorted(
        c * 100 + i for c in range(clients) for i in range(queries)
    )
    # All four backends were opened and shared, and never a fifth.
    assert len(pids) == 4
    assert peak == 4
