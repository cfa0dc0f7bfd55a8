"""
Connections freed by reference counting: once a client or a backend is
gone, its objects (protocols, pipeline session, pool entries, timers) must
not wait for Python's cyclic collector. Left in reference cycles they are
freed only in the collector's bulk passes, and the memory of a burst of
connections stays with the allocator meanwhile: the RSS growth the soak
measured (docs/reliability.rst).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from tests.integration.clients import adminConnect, waitFor
from tests.integration.test_pool_operations import PASSWORD, SHARED, USER, managedPooler

#: A (database, user, password) per pipeline.
POOLS = {
    "session": (SHARED, USER, PASSWORD),
    "transaction": (USER, USER, PASSWORD),
    "performance": (SHARED, "pgt_trust", "trust-secret"),
}


@pytest.fixture
def admin(pgCluster: PostgresCluster) -> Iterator[psycopg.Connection]:
    """
    A superuser connection to the cluster, to terminate backends.
    """
    with adminConnect(pgCluster) as conn:
        yield conn


def backends(admin: psycopg.Connection) -> list[int]:
    """
    The pids of the backends of L{POOLS}' users.
    """
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE usename IN ('pgt_scram', 'pgt_trust')"
    ).fetchall()
    return [row[0] for row in rows]


def test_connectionsLeaveNoCyclicGarbage(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    In every pipeline, clients that connect, run a transaction, prepared
    statements and COPY in and out, and leave; clients that leave inside a
    transaction (their backend closed) or while their query runs (cancelled
    first); backends
    PostgreSQL terminates while lent and while pooled: afterwards the cyclic
    collector finds no object of pgtwist's.
    """
    limits = [f"{db} {user} 2 0 0 {pipeline}" for pipeline, (db, user, _) in POOLS.items()]
    with managedPooler(tmp_path, pgCluster, limits=limits) as (pooler, managed):

        def connect(pipeline: str) -> psycopg.Connection:
            """
            A client of C{pipeline}'s pool.
            """
            database, user, password = POOLS[pipeline]
            return psycopg.connect(pooler.dsn(user, password, database), autocommit=True)

        def rounds(count: int) -> None:
            """
            C{count} rounds of every kind of coming and going, in every
            pipeline.
            """
            for _ in range(count):
                for pipeline in POOLS:
                    with connect(pipeline) as conn:
                        conn.execute("SELECT 1").fetchone()
                        with conn.transaction():
                            conn.execute("SELECT 2").fetchone()
                        conn.execute("SELECT %s::int", (3,), prepare=True).fetchone()
                        with conn.transaction():
                            conn.execute("CREATE TEMP TABLE copied (n int) ON COMMIT DROP")
                            with conn.cursor().copy("COPY copied FROM STDIN") as copy:
                                copy.write("1\n2\n")
                            with conn.cursor().copy("COPY copied TO STDOUT") as copy:
                                assert b"".join(copy) == b"1\n2\n"
                    cut = connect(pipeline)
                    cut.pgconn.send_query(b"SELECT pg_sleep(10)")
                    cut.pgconn.flush()
                    time.sleep(0.1)
                    with socket.socket(fileno=os.dup(cut.pgconn.socket)) as sock:
                        sock.shutdown(socket.SHUT_RDWR)
                    cut.close()
                    conn = connect(pipeline)
                    conn.execute("BEGIN")
                    conn.execute("SELECT 4").fetchone()
                    conn.close()
                    lent = connect(pipeline)
                    pid = lent.execute("SELECT pg_backend_pid()").fetchone()
                    assert pid is not None
                    if pipeline == "transaction":
                        lent.execute("BEGIN")
                        pid = lent.execute("SELECT pg_backend_pid()").fetchone()
                        assert pid is not None
                    admin.execute("SELECT pg_terminate_backend(%s)", pid)
                    with pytest.raises(psycopg.OperationalError):
                        lent.execute("SELECT 5")
                    lent.close()
                for pid in backends(admin):
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                waitFor(lambda: not backends(admin), timeout=10)

        rounds(1)
        time.sleep(0.5)
        managed.call("saveGarbage")
        rounds(3)
        time.sleep(0.5)
        assert managed.call("garbage") == {}
