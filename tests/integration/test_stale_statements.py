"""
Statements pgtwist shares between clients that a type or table made stale
(issue 14, point 2), with real drivers through the transaction pipeline,
each scenario run once straight against PostgreSQL and once through pgtwist:
what the clients see must be the same. One backend, so that the second
client always meets the copy prepared for the first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from tests.integration.clients import runningPooler
from tests.integration.pooler import Pooler
from tests.integration.pooling import (
    HBA,
    PASSWORD,
    TRANSACTION,
    USER,
    avoid,
    connect,
    direct,
    occupy,
)

#: Opens a psycopg connection, through pgtwist or straight to PostgreSQL.
Opener = Callable[[], psycopg.Connection]


@pytest.fixture
def pooler(tmp_path: Path, pgCluster: PostgresCluster) -> Iterator[Pooler]:
    """
    pgtwist in transaction mode with a single backend.
    """
    main = {"pipeline": "transaction", "max_connections": 1, "blocking_timeout": 30}
    with runningPooler(tmp_path, pgCluster, main=main, hba=HBA) as running:
        yield running


def ddl(cluster: PostgresCluster, sql: str) -> None:
    """
    Run C{sql} as the owner of the test database, straight to PostgreSQL.
    """
    with direct(cluster) as owner:
        owner.execute(sql)


def outcome(run: Callable[[], object]) -> object:
    """
    What C{run} returns, or the SQLSTATE of the error it raises.
    """
    try:
        return run()
    except psycopg.Error as e:
        return e.sqlstate


def openers(pooler: Pooler, cluster: PostgresCluster) -> list[Opener]:
    """
    psycopg connections (autocommit) straight to PostgreSQL, then through
    pgtwist.
    """

    def straight() -> psycopg.Connection:
        return psycopg.connect(
            host=cluster.socketDir, port=cluster.port, user=USER, dbname=USER, autocommit=True
        )

    return [straight, lambda: connect(pooler)]


def bothWays(
    pooler: Pooler, cluster: PostgresCluster, scenario: Callable[[Opener], list[object]]
) -> list[object]:
    """
    Run C{scenario} straight to PostgreSQL, then through pgtwist; assert
    that the clients saw the same and return it.
    """
    straight, pooled = (scenario(opener) for opener in openers(pooler, cluster))
    assert pooled == straight
    return pooled


def test_enumRecreated(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    psycopg, C{prepare=True}: an enum dropped and recreated between two
    clients' uses of the same statement text. The second client prepares
    the statement after the change and gets its rows, as on its own
    connection, although pgtwist answered its Parse with the copy prepared
    for the first client before the change.
    """
    query = "SELECT %s::stale_mood, %s::stale_mood::text"

    def scenario(open: Opener) -> list[object]:
        ddl(
            pgCluster,
            "DROP TYPE IF EXISTS stale_mood; CREATE TYPE stale_mood AS ENUM ('happy', 'sad')",
        )
        seen: list[object] = []
        with open() as first:
            seen.append(first.execute(query, ["happy", "sad"], prepare=True).fetchall())
            ddl(
                pgCluster,
                "DROP TYPE stale_mood; CREATE TYPE stale_mood AS ENUM ('happy', 'sad', 'ok')",
            )
            with open() as second:
                for value in ("ok", "sad"):
                    seen.append(
                        outcome(
                            lambda value=value: second.execute(
                                query, [value, value], prepare=True
                            ).fetchall()
                        )
                    )
        return seen

    assert bothWays(pooler, pgCluster, scenario) == [
        [("happy", "sad")],
        [("ok", "ok")],
        [("sad", "sad")],
    ]


@pytest.mark.parametrize("threshold", [0, None])
def test_compositeRecreated(
    pooler: Pooler, pgCluster: PostgresCluster, threshold: int | None
) -> None:
    """
    psycopg, with C{prepare_threshold=0} (named statements) and without
    preparing (the unnamed statement, which pgtwist shares too): a
    composite type dropped and recreated with other fields; the next
    client's query of the same text gets the new shape.
    """
    query = "SELECT (%s::int, 'x')::stale_pair::text"

    def scenario(open: Opener) -> list[object]:
        ddl(
            pgCluster,
            "DROP TYPE IF EXISTS stale_pair; CREATE TYPE stale_pair AS (a int, b text)",
        )
        seen: list[object] = []
        with open() as first:
            first.prepare_threshold = threshold
            seen.append(first.execute(query, [1]).fetchall())
            ddl(pgCluster, "DROP TYPE stale_pair; CREATE TYPE stale_pair AS (a bigint, b text)")
            with open() as second:
                second.prepare_threshold = threshold
                seen.append(outcome(lambda: second.execute(query, [2]).fetchall()))
        return seen

    assert bothWays(pooler, pgCluster, scenario) == [[("(1,x)",)], [("(2,x)",)]]


def test_tableRecreated(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    A table dropped and recreated with another column type ("cached plan
    must not change result type" for the copy prepared before): outside a
    transaction block, the next client's prepared query gets the new rows.
    """
    query = "SELECT * FROM stale_t"

    def scenario(open: Opener) -> list[object]:
        ddl(
            pgCluster,
            "DROP TABLE IF EXISTS stale_t; CREATE TABLE stale_t (x int); "
            "INSERT INTO stale_t VALUES (1)",
        )
        seen: list[object] = []
        with open() as first:
            seen.append(first.execute(query, prepare=True).fetchall())
            ddl(
                pgCluster,
                "DROP TABLE stale_t; CREATE TABLE stale_t (x text); "
                "INSERT INTO stale_t VALUES ('one')",
            )
            with open() as second:
                seen.append(outcome(lambda: second.execute(query, prepare=True).fetchall()))
        return seen

    assert bothWays(pooler, pgCluster, scenario) == [[(1,)], [("one",)]]


def test_tableRecreatedInTransaction(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    Inside a transaction block the client whose statement went stale gets
    PostgreSQL's error (it has aborted the transaction: nothing to retry),
    as on its own connection; after its rollback the statement works
    again.
    """
    query = "SELECT * FROM stale_t"

    def scenario(open: Opener) -> list[object]:
        ddl(
            pgCluster,
            "DROP TABLE IF EXISTS stale_t; CREATE TABLE stale_t (x int); "
            "INSERT INTO stale_t VALUES (1)",
        )
        seen: list[object] = []
        with open() as client:
            seen.append(client.execute(query, prepare=True).fetchall())
            ddl(
                pgCluster,
                "DROP TABLE stale_t; CREATE TABLE stale_t (x text); "
                "INSERT INTO stale_t VALUES ('one')",
            )

            def inTransaction() -> object:
                with client.transaction():
                    return client.execute(query, prepare=True).fetchall()

            seen.append(outcome(inTransaction))
            seen.append(client.info.transaction_status.name)
            seen.append(outcome(lambda: client.execute(query, prepare=True).fetchall()))
        return seen

    assert bothWays(pooler, pgCluster, scenario) == [
        [(1,)],
        "0A000",
        "IDLE",
        [("one",)],
    ]


# -- asyncpg ----------------------------------------------------------------------------------


AsyncOpener = Callable[[], Awaitable[Any]]


def asyncOpeners(pooler: Pooler, cluster: PostgresCluster) -> list[AsyncOpener]:
    """
    asyncpg connections (default statement cache) straight to PostgreSQL,
    then through pgtwist.
    """

    def straight() -> Awaitable[Any]:
        return asyncpg.connect(
            host=cluster.socketDir, port=cluster.port, user=USER, database=USER, timeout=30
        )

    def pooled() -> Awaitable[Any]:
        return asyncpg.connect(
            host="127.0.0.1",
            port=pooler.port,
            user=USER,
            password=PASSWORD,
            database=USER,
            timeout=30,
        )

    return [straight, pooled]


async def asyncOutcome(run: Callable[[], Awaitable[object]]) -> object:
    """
    What C{run} returns, or the name of the asyncpg exception it raises.
    """
    try:
        return await run()
    except asyncpg.PostgresError as e:
        return type(e).__name__


def asyncBothWays(
    pooler: Pooler,
    cluster: PostgresCluster,
    scenario: Callable[[AsyncOpener], Awaitable[list[object]]],
) -> list[object]:
    """
    Run C{scenario} straight to PostgreSQL, then through pgtwist; assert
    that the clients saw the same and return it.
    """
    straight, pooled = (asyncio.run(scenario(opener)) for opener in asyncOpeners(pooler, cluster))
    assert pooled == straight
    return pooled


def test_asyncpgEnumRecreated(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    asyncpg prepares every query (Parse, Describe of the statement, Sync):
    an enum dropped and recreated between two clients' uses of the same
    text; the second client, which prepares it after the change, gets its
    rows as on its own connection (pgtwist retries its Describe).
    """
    query = "SELECT $1::stale_mood::text"

    async def scenario(open: AsyncOpener) -> list[object]:
        ddl(
            pgCluster,
            "DROP TYPE IF EXISTS stale_mood; CREATE TYPE stale_mood AS ENUM ('happy', 'sad')",
        )
        seen: list[object] = []
        first = await open()
        try:
            seen.append(await first.fetchval(query, "happy"))
            ddl(
                pgCluster,
                "DROP TYPE stale_mood; CREATE TYPE stale_mood AS ENUM ('happy', 'sad', 'ok')",
            )
            second = await open()
            try:
                seen.append(await asyncOutcome(lambda: second.fetchval(query, "ok")))
            finally:
                await second.close()
        finally:
            await first.close()
        return seen

    assert asyncBothWays(pooler, pgCluster, scenario) == ["happy", "ok"]


def test_asyncpgTableRecreated(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    asyncpg reads rows with the description it got when it prepared a
    statement, and handles "cached plan must not change result type"
    itself (InvalidCachedStatementError): outside a transaction block it
    prepares again and retries, inside one it raises. pgtwist does not
    retry a Bind that is not described, so the client gets PostgreSQL's
    error and does what it does on its own connection.
    """
    query = "SELECT * FROM stale_t"

    async def scenario(open: AsyncOpener) -> list[object]:
        ddl(
            pgCluster,
            "DROP TABLE IF EXISTS stale_t; CREATE TABLE stale_t (x int); "
            "INSERT INTO stale_t VALUES (1)",
        )
        seen: list[object] = []
        client = await open()
        try:
            seen.append(await client.fetchval(query))
            ddl(
                pgCluster,
                "DROP TABLE stale_t; CREATE TABLE stale_t (x bigint); "
                "INSERT INTO stale_t VALUES (2)",
            )

            async def inTransaction() -> object:
                async with client.transaction():
                    return await client.fetchval(query)

            seen.append(await asyncOutcome(inTransaction))
            seen.append(await asyncOutcome(lambda: client.fetchval(query)))
            ddl(
                pgCluster,
                "DROP TABLE stale_t; CREATE TABLE stale_t (x text); "
                "INSERT INTO stale_t VALUES ('three')",
            )
            seen.append(await asyncOutcome(lambda: client.fetchval(query)))
        finally:
            await client.close()
        return seen

    assert asyncBothWays(pooler, pgCluster, scenario) == [
        1,
        "InvalidCachedStatementError",
        2,
        "three",
    ]


def test_asyncpgBindOnAnotherBackend(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    Two backends, both holding a copy of an asyncpg statement whose
    parameter type is then dropped and recreated. A new client prepares it
    on one backend (described afresh there) and runs it on the other, whose
    copy is stale: its Bind (asyncpg sends no Describe of the portal) fails
    with "cache lookup failed for type", and pgtwist prepares the statement
    again there and retries; the client gets its row, as on its own
    connection.
    """
    query = "SELECT $1::stale_mood::text AS v, pg_backend_pid() AS pid"
    ddl(
        pgCluster,
        "DROP TYPE IF EXISTS stale_mood; CREATE TYPE stale_mood AS ENUM ('happy', 'sad')",
    )
    with runningPooler(tmp_path, pgCluster, main=TRANSACTION, hba=HBA) as pooler:
        _, open = asyncOpeners(pooler, pgCluster)

        async def scenario() -> tuple[object, ...]:
            clients = [await open() for _ in range(3)]
            try:
                first = await clients[0].fetchrow(query, "happy")
                with occupy(pooler, first["pid"]):
                    second = await clients[1].fetchrow(query, "sad")
                assert second["pid"] != first["pid"]
                ddl(
                    pgCluster,
                    "DROP TYPE stale_mood; CREATE TYPE stale_mood AS ENUM ('happy', 'sad', 'ok')",
                )
                with avoid(pooler, first["pid"]):
                    statement = await clients[2].prepare(query)
                with avoid(pooler, second["pid"]):
                    row = await statement.fetchrow("ok")
                return (row["v"], row["pid"] == second["pid"])
            finally:
                for client in clients:
                    await client.close()

        assert asyncio.run(scenario()) == ("ok", True)
