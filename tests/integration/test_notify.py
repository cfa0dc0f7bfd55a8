"""
LISTEN/NOTIFY in transaction pooling (issue 14, point 1), with real
drivers: pgtwist's listener backend listens for every client, and each
notification reaches every client listening on its channel between that
client's transactions.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
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
    A client hears its own NOTIFY; after UNLISTEN *, or DISCARD ALL, it
    hears nothing.
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
        conn.execute("LISTEN a")
        conn.execute("DISCARD ALL")
        conn.execute("NOTIFY a, 'unheard'")
        assert list(conn.notifies(timeout=0.3)) == []


def test_savepoints(pooler: Pooler) -> None:
    """
    As on PostgreSQL, C{ROLLBACK TO SAVEPOINT} undoes the LISTEN and
    UNLISTEN run after the savepoint (an error's recovery too), C{RELEASE
    SAVEPOINT} keeps them, and C{ROLLBACK AND CHAIN} undoes its
    transaction's.
    """
    with connect(pooler) as conn, connect(pooler) as notifier:
        with conn.transaction():
            conn.execute("LISTEN kept")
            with conn.transaction(force_rollback=True):
                conn.execute("LISTEN undone")
                conn.execute("UNLISTEN kept")
            with conn.transaction():
                conn.execute("LISTEN released")
            with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
                conn.execute("LISTEN failed")
                conn.execute("SELECT 1/0")
            conn.execute("SAVEPOINT Mixed")
            conn.execute('LISTEN "Undone too"')
            conn.execute("ROLLBACK TO mixed")
        conn.execute("BEGIN")
        conn.execute("LISTEN chained")
        conn.execute("ROLLBACK AND CHAIN")
        conn.execute("LISTEN after")
        conn.execute("COMMIT")
        channels = ["kept", "undone", "released", "failed", "Undone too", "chained", "after"]
        for channel in channels:
            notifier.execute(f'NOTIFY "{channel}"')
        got = received(conn, 3)
        assert [n.channel for n in got] == ["kept", "released", "after"]
        assert list(conn.notifies(timeout=0.3)) == []


def test_notifierInAnotherWorker(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    With C{workers = 2}, a notification carries the pid its notifier was
    given whichever worker serves the notifier (connections spread over
    both).
    """
    main = {**SETTINGS, "workers": 2, "max_connections": 8}
    with runningPooler(tmp_path, pgCluster, main=main, hba=HBA) as pooler:
        with connect(pooler) as listener:
            listener.execute("LISTEN spread")
            expected = []
            for i in range(8):
                with connect(pooler) as notifier:
                    notifier.execute(f"NOTIFY spread, '{i}'")
                    expected.append(notifier.info.backend_pid)
            got = received(listener, 8)
            assert [n.pid for n in got] == expected


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


def test_psql(pooler: Pooler) -> None:
    """
    psql LISTENs, then runs a query while another client notifies: it
    prints the notification after that query's result, with the pid the
    notifier was given; UNLISTEN rolled back keeps it listening.
    """
    env = dict(os.environ, PGPASSWORD=PASSWORD)
    script = "LISTEN ch;\nBEGIN; UNLISTEN ch; ROLLBACK;\nSELECT pg_sleep(3);\nSELECT 'after';\n"
    command = [pooler.cluster.program("psql"), "-X", "-h", "127.0.0.1", "-p", str(pooler.port)]
    command += ["-U", USER, "-d", USER]
    with subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdin is not None
        process.stdin.write(script)
        process.stdin.close()
        with adminConnect(pooler.cluster) as admin:
            # LISTEN and the rolled back UNLISTEN are done once it sleeps.
            waitFor(
                lambda: admin.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(3)%'"
                    " AND state = 'active'"
                ).fetchone(),
                timeout=20,
            )
        with connect(pooler) as notifier:
            notifier.execute("NOTIFY ch, 'hi'")
            pid = notifier.info.backend_pid
        assert process.stdout is not None
        output = process.stdout.read()
        assert process.wait(timeout=30) == 0, output
    line = (
        f'Asynchronous notification "ch" with payload "hi" received from server process '
        f"with PID {pid}."
    )
    assert line in output, output
    assert output.index("pg_sleep") < output.index(line) < output.index("after"), output


def test_manyListenersOneBackend(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    Ten listening clients share one backend for their transactions (the
    other is the listener): each hears every notification of two
    notifiers, in each notifier's order, while all of them keep running
    transactions.
    """
    settings = dict(SETTINGS, max_connections=2)
    with runningPooler(tmp_path, pgCluster, main=settings, hba=HBA) as pooler:
        listeners = [connect(pooler) for _ in range(10)]
        notifiers = [connect(pooler) for _ in range(2)]
        try:
            for conn in listeners:
                conn.execute("LISTEN fan")
            for i in range(10):
                for n, notifier in enumerate(notifiers):
                    with notifier.transaction():
                        notifier.execute(f"NOTIFY fan, '{n}:{i}'")
                for conn in listeners[::3]:
                    conn.execute("SELECT 1")
            for conn in listeners:
                got = [n.payload for n in received(conn, 20)]
                for n in range(2):
                    assert [p for p in got if p.startswith(f"{n}:")] == [
                        f"{n}:{i}" for i in range(10)
                    ]
        finally:
            for conn in listeners + notifiers:
                conn.close()


def test_shownInConsoleAndMetrics(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    SHOW LISTENERS and SHOW CHANNELS in the admin console, and the
    metrics, show the listener backend, its channels and clients, and the
    notifications delivered.
    """
    from tests.integration.pooler import freePort
    from tests.integration.test_admin import ADMIN, ADMIN_PASSWORD, consolePooler
    from tests.integration.test_metrics import scrape

    port = freePort()
    main = dict(SETTINGS, metrics=port)
    with consolePooler(tmp_path, pgCluster, main=main) as pooler:
        with connect(pooler) as a, connect(pooler) as b:
            a.execute("LISTEN shown")
            b.execute("LISTEN shown; LISTEN other")
            a.execute("NOTIFY shown")
            received(a, 1)
            dsn = pooler.dsn(ADMIN, ADMIN_PASSWORD, "pgbouncer")
            with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as console:
                cursor = console.execute("SHOW LISTENERS")
                names = [c.name for c in cursor.description or ()]
                [row] = [dict(zip(names, r)) for r in cursor.fetchall()]
                assert (row["database"], row["user"], row["state"]) == (USER, USER, "active")
                assert (row["channels"], row["clients"]) == (2, 2)
                waitFor(
                    lambda: (
                        dict(zip(names, console.execute("SHOW LISTENERS").fetchone() or ()))[
                            "delivered"
                        ]
                        == 2
                    )
                )
                cursor = console.execute("SHOW CHANNELS")
                channels = {r[2]: (r[3], r[4]) for r in cursor.fetchall()}
                assert channels == {"other": (1, 1), "shown": (2, 1)}
            samples = scrape(port)
            pool = (("database", USER), ("user", USER))
            assert samples["pgtwist_listen_channels"][pool] == 2
            assert samples["pgtwist_listen_clients"][pool] == 2
            assert samples["pgtwist_listener_backend"][pool] == 1
            assert samples["pgtwist_notifications_delivered_total"][pool] == 2
