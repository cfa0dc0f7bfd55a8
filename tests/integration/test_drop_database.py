"""
Databases dropped through the pooler (issue 14, point 4): C{DROP DATABASE}
of a database pgtwist holds idle pooled backends to succeeds, for session
and transaction pooling, while a client connected to it still blocks it as
on PostgreSQL; and a pool kept at MIN_SIZE for the dropped database backs
off instead of reconnecting at every janitor round.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire.sql import quoteIdentifier
from tests.integration.clients import (
    RawClient,
    RawError,
    adminConnect,
    runningPooler,
    waitFor,
)

OWNER = "pgt_trust"
"""
The role that owns the dropped database, and drops it (trust, through pgtwist).
"""

OTHER, OTHER_PASSWORD = "pgt_scram", "scram-secret"
"""
A second role with pooled backends to the dropped database.
"""

DOOMED = "pgt_doomed"
"""
The database created, then dropped, by each test.
"""

COPY = "pgt_doomed_copy"
"""
A copy of L{DOOMED} made with C{CREATE DATABASE ... TEMPLATE}.
"""

HBA = ("host all pgt_trust all trust", "host all all all scram-sha-256")
"""
pgtwist HBA lines: trust for L{OWNER}, SCRAM for the others.
"""


def exists(admin: psycopg.Connection) -> bool:
    """
    Whether L{DOOMED} exists.
    """
    found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DOOMED,)).fetchone()
    return found is not None


@pytest.fixture
def admin(pgCluster: PostgresCluster) -> Iterator[psycopg.Connection]:
    """
    A superuser connection to the cluster; L{DOOMED} is created for the
    test and dropped after it if still there.
    """
    with adminConnect(pgCluster) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DOOMED} WITH (FORCE)")
        conn.execute(f"DROP DATABASE IF EXISTS {COPY} WITH (FORCE)")
        pgCluster.createDatabase(DOOMED, owner=OWNER)
        # Renaming and copying a database takes CREATEDB.
        conn.execute(f"ALTER ROLE {OWNER} CREATEDB")
        try:
            yield conn
        finally:
            conn.execute(f"ALTER ROLE {OWNER} NOCREATEDB")
            conn.execute(f"DROP DATABASE IF EXISTS {DOOMED} WITH (FORCE)")
            conn.execute(f"DROP DATABASE IF EXISTS {COPY} WITH (FORCE)")


def idleSessions(admin: psycopg.Connection) -> list[str]:
    """
    The users of the idle sessions connected to L{DOOMED}, sorted.
    """
    rows = admin.execute(
        "SELECT usename FROM pg_stat_activity WHERE datname = %s AND state = 'idle'"
        " ORDER BY usename",
        (DOOMED,),
    ).fetchall()
    return [row[0] for row in rows]


def poolBackends(port: int) -> None:
    """
    Leave an idle pooled backend to L{DOOMED} for each of two users.
    """
    client = RawClient(port, OWNER, DOOMED)
    client.query("SELECT 1")
    client.close()
    dsn = f"host=127.0.0.1 port={port} user={OTHER} password={OTHER_PASSWORD}"
    with psycopg.connect(f"{dsn} dbname={DOOMED}", autocommit=True) as conn:
        conn.execute("SELECT 1")


@pytest.mark.parametrize("pipeline", ["session", "transaction"])
def test_dropWithIdlePooledBackends(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection, pipeline: str
) -> None:
    """
    With idle pooled backends of two users to the database, C{DROP
    DATABASE} through pgtwist (from a client of another database) closes
    them first and succeeds at once; so do C{ALTER DATABASE ... RENAME} and
    C{CREATE DATABASE ... TEMPLATE} of it.
    """
    with runningPooler(tmp_path, pgCluster, main={"pipeline": pipeline}, hba=HBA) as pooler:
        poolBackends(pooler.port)
        waitFor(lambda: idleSessions(admin) == [OTHER, OWNER])
        dropper = RawClient(pooler.port, OWNER)
        try:
            started = time.monotonic()
            dropper.query(f"ALTER DATABASE {DOOMED} RENAME TO {DOOMED}_renamed")
            dropper.query(f"ALTER DATABASE {DOOMED}_renamed RENAME TO {DOOMED}")
            poolBackends(pooler.port)
            dropper.query(f"/* copy */ CREATE DATABASE {COPY} TEMPLATE = {DOOMED}")
            dropper.query(f"DROP DATABASE {COPY}")
            poolBackends(pooler.port)
            dropper.query(f"DROP DATABASE {quoteIdentifier(DOOMED)}")
            assert time.monotonic() - started < 4.0
        finally:
            dropper.close()
        assert not exists(admin)
        pooler.waitForLog("idle backends of database")


def test_dropWithWorkers(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    With C{workers = 2}, C{DROP DATABASE} through one worker first closes
    the idle backends every worker holds to the database.
    """
    main = {"pipeline": "transaction", "workers": 2, "max_connections": 8}
    with runningPooler(tmp_path, pgCluster, main=main, hba=HBA) as pooler:
        logs = [Path(f"{pooler.logPath}.{index}") for index in (0, 1)]

        def opened() -> bool:
            # Each worker opened a backend to the database (debug lines).
            found = f"for ('{DOOMED}'"
            return all(log.exists() and found in log.read_text() for log in logs)

        # Short clients: the kernel spreads them over both workers once both
        # listen; each worker keeps its backend idle.
        deadline = time.monotonic() + 20
        while not opened() and time.monotonic() < deadline:
            client = RawClient(pooler.port, OWNER, DOOMED)
            client.query("SELECT 1")
            client.close()
        assert opened()
        waitFor(lambda: len(idleSessions(admin)) >= 2)
        dropper = RawClient(pooler.port, OWNER)
        try:
            started = time.monotonic()
            dropper.query(f"DROP DATABASE {DOOMED}")
            assert time.monotonic() - started < 4.0
        finally:
            dropper.close()
        assert not exists(admin)
        assert all("idle backends of database" in log.read_text() for log in logs)


def test_dropWithPsycopg(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    psycopg sends C{DROP DATABASE} with the extended protocol (Parse of
    the statement): it succeeds through transaction pooling too.
    """
    main = {"pipeline": "transaction"}
    with runningPooler(tmp_path, pgCluster, main=main, hba=HBA) as pooler:
        poolBackends(pooler.port)
        waitFor(lambda: idleSessions(admin) == [OTHER, OWNER])
        dsn = f"host=127.0.0.1 port={pooler.port} user={OWNER} dbname={OWNER}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {DOOMED}", prepare=False)
        assert not exists(admin)


def test_connectedClientStillBlocks(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    In session pooling a client connected to the database keeps its
    backend: C{DROP DATABASE} fails with 55006 as it would on PostgreSQL,
    and the client's connection still works.
    """
    main = {"pipeline": "session"}
    with runningPooler(tmp_path, pgCluster, main=main, hba=HBA) as pooler:
        poolBackends(pooler.port)
        holder = RawClient(pooler.port, OWNER, DOOMED)
        dropper = RawClient(pooler.port, OWNER)
        try:
            with pytest.raises(RawError) as raised:
                dropper.query(f"DROP DATABASE {DOOMED}")
            assert raised.value.error.code == "55006"
            assert holder.query("SELECT 1") == [("1",)]
        finally:
            dropper.close()
            holder.close()
        assert exists(admin)


def test_droppedPoolBacksOff(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    A databases-file line keeps one backend to the database (MIN_SIZE):
    once the database is dropped through pgtwist, the janitor's attempts
    to reopen it are refused (3D000, logged) and spaced out 1, 2, 4... s
    apart instead of one per janitor round.
    """
    limits = [f"{DOOMED} {OTHER} 2 1 1"]
    with runningPooler(tmp_path, pgCluster, hba=HBA, limits=limits) as pooler:
        waitFor(lambda: idleSessions(admin) == [OTHER])
        dropper = RawClient(pooler.port, OWNER)
        try:
            dropper.query(f"DROP DATABASE {DOOMED}")
        finally:
            dropper.close()
        assert not exists(admin)
        refused = f"refused a login for .*{DOOMED}.*3D000"
        pooler.waitForLog(refused, timeout=10)
        time.sleep(6)
        # Without the back-off: one per second; with it, at most 3 in 7 s.
        assert 1 <= pooler.logCount(refused) <= 3, pooler.logCount(refused)
