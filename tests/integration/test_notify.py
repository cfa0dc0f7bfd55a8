"""
LISTEN/NOTIFY in transaction pooling (issue 14, point 1), with real
drivers: pgtwist's listener backend listens for every client, and each
notification reaches every client listening on its channel between that
client's transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from tests.integration.clients import adminConnect, runningPooler, waitFor
from tests.integration.pooler import Pooler
from tests.integration.pooling import HBA, PASSWORD, USER, connect

SETTINGS = {"pipeline": "transaction", "max_connections": 3, "blocking_timeout": 30}
"""
Transaction pooling with three backends: the listener and two for clients.
"""


@pytest.fixture
def pooler(tmp_path: Path, pgCluster: PostgresCluster) -> Iterator[Pooler]:
    """
    pgtwist in transaction mode, stopped after the test.
    """
    with runningPooler(tmp_path, pgCluster, main=SETTINGS, hba=HBA) as running:
        yield running


def received(conn: psycopg.Connection, count: int, timeout: float = 5.0) -> list[psycopg.Notify]:
    """
    Wait for C{count} notifications on C{conn}.
    """
    got: list[psycopg.Notify] = []
    for notify in conn.notifies(timeout=timeout, stop_after=count):
        got.append(notify)
    return got


def test_psycopgAcrossTransactions(pooler: Pooler) -> None:
    """
    A psycopg 3 client listening hears notifications sent by others across
    many transactions and backends, in order, with the notifier's pid as
    the notifier knows it; a LISTEN rolled back listens to nothing.
    """
    with connect(pooler) as listener, connect(pooler) as notifier, connect(pooler) as third:
        listener.execute("LISTEN jobs")
        with listener.transaction(force_rollback=True):
            listener.execute("LISTEN rolledback")
        for i in range(20):
            notifier.execute("SELECT pg_notify('jobs', %s)", (str(i),))
            third.execute("SELECT 1")
            notifier.execute("NOTIFY rolledback, 'no'")
        got = received(listener, 20)
        assert [n.payload for n in got] == [str(i) for i in range(20)]
        assert {n.channel for n in got} == {"jobs"}
        assert {n.pid for n in got} == {notifier.info.backend_pid}
        assert list(listener.notifies(timeout=0.3)) == []


def test_selfNotifyAndUnlistenAll(pooler: Pooler) -> None:
    """
    A client hears its own NOTIFY; after UNLISTEN * it hears nothing.
    """
    with connect(pooler) as conn:
        conn.execute("LISTEN a")
        conn.execute('LISTEN "B"')
        conn.execute("NOTIFY a, 'self'")
        conn.execute("NOTIFY \"B\", 'upper'")
        got = received(conn, 2)
        assert [(n.channel, n.payload, n.pid) for n in got] == [
            ("a", "self", conn.info.backend_pid),
            ("B", "upper", conn.info.backend_pid),
        ]
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.execute("UNLISTEN *")
        conn.execute("NOTIFY a, 'unheard'")
        assert list(conn.notifies(timeout=0.3)) == []


def test_psycopgAsync(pooler: Pooler) -> None:
    """
    psycopg 3's async connection hears notifications too.
    """

    async def main() -> list[str]:
        dsn = pooler.dsn(USER, PASSWORD)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener:
            await listener.execute("LISTEN events")
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:
                for i in range(5):
                    await other.execute(f"NOTIFY events, '{i}'")
            payloads = []
            gen = listener.notifies(timeout=5.0, stop_after=5)
            async for notify in gen:
                payloads.append(notify.payload)
            return payloads

    assert asyncio.run(main()) == ["0", "1", "2", "3", "4"]


def test_asyncpgListener(pooler: Pooler) -> None:
    """
    asyncpg's add_listener, with a pool of clients larger than pgtwist's
    backends, hears every notification.
    """

    async def main() -> list[str]:
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=pooler.port,
            user=USER,
            password=PASSWORD,
            database=USER,
            ssl=False,
            statement_cache_size=0,
        )
        heard: list[str] = []
        await conn.add_listener("queue", lambda c, pid, ch, payload: heard.append(payload))
        others = [
            await asyncpg.connect(
                host="127.0.0.1",
                port=pooler.port,
                user=USER,
                password=PASSWORD,
                database=USER,
                ssl=False,
            )
            for _ in range(4)
        ]
        await asyncio.gather(*(o.execute(f"NOTIFY queue, '{i}'") for i, o in enumerate(others)))
        for _ in range(100):
            if len(heard) == 4:
                break
            await asyncio.sleep(0.05)
        for o in others:
            await o.close()
        await conn.close()
        return sorted(heard)

    assert asyncio.run(main()) == ["0", "1", "2", "3"]


def test_listenerKilled(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    When the listener backend is killed, the listening client loses its
    connection (08006) rather than missing notifications silently; it
    reconnects and listens again, and hears what follows.
    """
    with connect(pooler) as conn:
        conn.execute("LISTEN watched")
        with adminConnect(pgCluster) as admin:
            [(pid,)] = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN \"watched\"'"
            ).fetchall()
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        pooler.waitForLog("was lost")
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    with connect(pooler) as conn, connect(pooler) as other:
        conn.execute("LISTEN watched")
        other.execute("NOTIFY watched, 'again'")
        assert [n.payload for n in received(conn, 1)] == ["again"]
    waitFor(lambda: True)
