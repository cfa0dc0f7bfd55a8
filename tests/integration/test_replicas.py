"""
Read replicas and promotion with real streaming replication: a primary and
a C{pg_basebackup -R} standby started for this module, pgtwist routing by
C{target_session_attrs} with health checks on.

The tests run in file order: the last one promotes the standby, after
which the pair is no longer a primary and its standby.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster

from .pooler import Pooler

#: pg_hba.conf of both servers: trust over the socket and loopback TCP.
HBA = ["local all all trust", "host all all 127.0.0.1/32 trust"]

#: The password pgtwist checks clients against (PostgreSQL trusts them).
PASSWORD = "replica-secret"

#: max_lag_in_bytes for the read-only name: the paused standby passes it.
MAX_LAG = 256 * 1024


class Pair:
    """
    A primary, its standby, and pgtwist in front of both.
    """

    def __init__(self, primary: PostgresCluster, standby: PostgresCluster, pooler: Pooler):
        self.primary = primary
        self.standby = standby
        self.pooler = pooler

    def where(self, database: str) -> tuple[bool, int]:
        """
        Connect through pgtwist to C{database}: whether the server is in
        recovery, and its port.
        """
        dsn = self.pooler.dsn("postgres", PASSWORD, database)
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery(), inet_server_port()").fetchone()
        assert row is not None
        return bool(row[0]), int(row[1])


def waitFor(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """
    Poll C{check} until it is true.
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """
    Start the primary (with database C{app}), a standby of it, and pgtwist
    with C{app} (read-write) and C{app_ro} (prefer-standby, same database).
    """
    primary = PostgresCluster()
    standby = PostgresCluster()
    pooler: Pooler | None = None
    try:
        primary.start()
        primary.setHba(HBA)
        primary.createDatabase("app", owner=primary.superuser)
        primary.psql("CREATE TABLE t (n int)", database="app")
        standby.startStandby(primary)
        sections = "".join(
            f"[{name}]\nhost = {cluster.host}\nport = {cluster.port}\n"
            for name, cluster in (("one", primary), ("two", standby))
        )
        directory: Path = tmp_path_factory.mktemp("replicas")
        pooler = Pooler(
            directory,
            primary,
            main={
                "health_check": "on",
                "health_check_period": "0.3",
                "health_check_timeout": "2",
                "health_check_user": "postgres",
                "max_connections": 10,
                "blocking_timeout": 10,
            },
            hba=("host all all all scram-sha-256",),
            users={"postgres": PASSWORD},
            serverSections=sections,
            limits=[
                "app all 4",
                f"app_ro all 4 target_session_attrs=prefer-standby dbname=app "
                f"max_lag_in_bytes={MAX_LAG}",
            ],
        ).start()
        yield Pair(primary, standby, pooler)
    finally:
        if pooler is not None:
            pooler.stop()
        standby.stop()
        primary.stop()


def test_readOnlyOnStandbyReadWriteOnPrimary(pair: Pair) -> None:
    """
    Clients of the read-only name land on the standby, those of the
    read-write database on the primary.
    """
    waitFor(lambda: pair.where("app_ro") == (True, pair.standby.port), "app_ro on the standby")
    assert pair.where("app") == (False, pair.primary.port)
    assert pair.where("app_ro") == (True, pair.standby.port)


def test_laggingStandbySkippedAndTakenBack(pair: Pair) -> None:
    """
    With replay paused and writes on the primary, the standby falls past
    max_lag_in_bytes: read-only clients go to the primary. Replay resumed,
    they are back on the standby.
    """
    pair.standby.psql("SELECT pg_wal_replay_pause()")
    try:
        with psycopg.connect(pair.pooler.dsn("postgres", PASSWORD, "app"), autocommit=True) as conn:
            conn.execute("INSERT INTO t SELECT generate_series(1, 20000)")
        waitFor(lambda: pair.where("app_ro") == (False, pair.primary.port), "app_ro on primary")
    finally:
        pair.standby.psql("SELECT pg_wal_replay_resume()")
    waitFor(lambda: pair.where("app_ro") == (True, pair.standby.port), "app_ro back on standby")
    assert pair.pooler.logCount(r"failed its health check") == 0


def test_promotionFollowedWithoutScript(pair: Pair) -> None:
    """
    Under light write load, the primary stops and the standby is promoted:
    read-write clients follow to the new primary, with no failover_script.
    """
    stop = threading.Event()
    results: list[str] = []

    def write() -> None:
        while not stop.is_set():
            try:
                dsn = pair.pooler.dsn("postgres", PASSWORD, "app", connect_timeout="3")
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute("INSERT INTO t VALUES (1)")
                    port = conn.execute("SELECT inet_server_port()").fetchone()
                results.append(f"ok {port[0] if port else '?'}")
            except psycopg.Error as e:
                results.append(f"error {e}")
            time.sleep(0.05)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        waitFor(lambda: len(results) >= 3, "writes before the promotion")
        pair.primary.stop()
        pair.standby.psql("SELECT pg_promote()")
        waitFor(lambda: pair.where("app") == (False, pair.standby.port), "app on the new primary")
        count = len(results)
        waitFor(lambda: len(results) >= count + 3, "writes after the promotion")
    finally:
        stop.set()
        writer.join(10)
    assert results[-1] == f"ok {pair.standby.port}", results[-5:]
    assert pair.pooler.logCount(r"Server two is the primary now") == 1
    # Read-only clients fall back to the new primary: no standby is left.
    assert pair.where("app_ro") == (False, pair.standby.port)
