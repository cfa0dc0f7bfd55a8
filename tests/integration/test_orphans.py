"""
Orphaned queries (issue 14, point 3): a client that dies while its query
runs leaves nothing running in PostgreSQL. pgtwist cancels the query with a
CancelRequest of its own and closes the backend, in every pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire.messages import Query
from tests.integration.clients import RawClient, adminConnect, runningPooler, waitFor

TRUST = "pgt_trust"
"""
The role the raw client logs in as (trust, its own database).
"""

HBA = ("host all pgt_trust all trust", "host all all all scram-sha-256")
"""
pgtwist HBA lines: trust for the raw client's role.
"""

SLEEP = "SELECT pg_sleep(60) /* orphaned by its client */"
"""
The query the client leaves running; its text finds it in C{pg_stat_activity}.
"""


@pytest.fixture
def admin(pgCluster: PostgresCluster) -> Iterator[psycopg.Connection]:
    """
    A superuser connection to the cluster itself, to watch backends.
    """
    with adminConnect(pgCluster) as conn:
        yield conn


def running(admin: psycopg.Connection) -> list[int]:
    """
    The pids of the backends running L{SLEEP} now.
    """
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE query = %s AND state = 'active'", (SLEEP,)
    ).fetchall()
    return [row[0] for row in rows]


def alive(admin: psycopg.Connection, pid: int) -> bool:
    """
    Whether backend C{pid} still shows in C{pg_stat_activity}.
    """
    found = admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return found is not None


@pytest.mark.parametrize("pipeline", ["session", "transaction", "performance"])
def test_killedClientQueryStops(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection, pipeline: str
) -> None:
    """
    A client whose connection is reset while C{pg_sleep(60)} runs: its
    backend is gone from C{pg_stat_activity} within a second, and the pool
    goes on serving the next client.
    """
    with runningPooler(tmp_path, pgCluster, main={"pipeline": pipeline}, hba=HBA) as pooler:
        client = RawClient(pooler.port, TRUST)
        client.send(Query(SLEEP))
        [pid] = waitFor(lambda: running(admin))
        client.kill()
        started = time.monotonic()
        waitFor(lambda: not alive(admin, pid), timeout=1.0, interval=0.02)
        assert time.monotonic() - started < 1.0
        pooler.waitForLog("Cancelling the request of backend")
        after = RawClient(pooler.port, TRUST)
        try:
            assert after.query("SELECT 1") == [("1",)]
        finally:
            after.close()


@pytest.mark.parametrize("pipeline", ["session", "transaction"])
def test_idleClientNotCancelled(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection, pipeline: str
) -> None:
    """
    A client killed with no query running costs no CancelRequest: between
    queries of a transaction its backend is closed (it was in a
    transaction), and nothing is cancelled.
    """
    with runningPooler(tmp_path, pgCluster, main={"pipeline": pipeline}, hba=HBA) as pooler:
        client = RawClient(pooler.port, TRUST)
        client.query("BEGIN")
        [(pid,)] = client.query("SELECT pg_backend_pid()")
        client.kill()
        waitFor(lambda: not alive(admin, int(str(pid))))
        assert pooler.logCount("Cancelling the request of backend") == 0
