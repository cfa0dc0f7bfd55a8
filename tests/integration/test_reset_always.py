"""
C{server_reset_query_always = on} with transaction pooling against a real
PostgreSQL: every transaction's backend is reset (C{DISCARD ALL}) before it
serves again, a client's prepared statements and settings still follow it,
and one client's C{SET} never reaches another. One backend, so that every
transaction runs on the same one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from tests.integration.clients import runningPooler
from tests.integration.pooler import Pooler
from tests.integration.pooling import HBA, TRANSACTION, connect, direct

SEQUENCE = "pgt_reset_always_seq"


def start(tmp_path: Path, cluster: PostgresCluster, always: str) -> Iterator[Pooler]:
    """
    pgtwist in transaction mode with one backend and
    C{server_reset_query_always = always}.
    """
    with direct(cluster) as conn:
        conn.execute(f"CREATE SEQUENCE IF NOT EXISTS {SEQUENCE}")
    main = {**TRANSACTION, "max_connections": 1, "server_reset_query_always": always}
    with runningPooler(tmp_path, cluster, main=main, hba=HBA) as running:
        yield running


@pytest.fixture
def pooler(tmp_path: Path, pgCluster: PostgresCluster) -> Iterator[Pooler]:
    """
    The key on; stopped after the test.
    """
    yield from start(tmp_path, pgCluster, "on")


@pytest.fixture
def plainPooler(tmp_path: Path, pgCluster: PostgresCluster) -> Iterator[Pooler]:
    """
    The key off (the default), for contrast.
    """
    yield from start(tmp_path, pgCluster, "off")


def currvalAfterNextval(pooler: Pooler) -> bool:
    """
    Whether C{currval} still works in the transaction after the one that
    called C{nextval} (on the one backend): only if the session was not
    reset (C{DISCARD ALL} forgets sequence state).
    """
    with connect(pooler) as conn:
        conn.execute(f"SELECT nextval('{SEQUENCE}')")
        try:
            conn.execute(f"SELECT currval('{SEQUENCE}')")
        except psycopg.errors.ObjectNotInPrerequisiteState:
            return False
        return True


def test_everyTransactionReset(pooler: Pooler, plainPooler: Pooler) -> None:
    """
    With the key on, the backend's session is reset after every
    transaction; without it, a transaction that changed nothing pgtwist
    tracks leaves the session as it was.
    """
    assert currvalAfterNextval(pooler) is False
    assert currvalAfterNextval(plainPooler) is True


def test_preparedStatementsAcrossResets(pooler: Pooler) -> None:
    """
    psycopg's prepared statements (named, server-side) keep working across
    transactions, each on a backend reset in between, for two clients taking
    turns, in autocommit and in explicit transactions.
    """
    with connect(pooler) as first, connect(pooler) as second:
        for i in range(4):
            for conn, offset in ((first, 1), (second, 100)):
                row = conn.execute("SELECT %s::int + %s::int", (i, offset), prepare=True)
                assert row.fetchone() == (i + offset,)
        with connect(pooler, autocommit=False) as conn:
            for i in range(3):
                with conn.transaction():
                    row = conn.execute("SELECT %s::int * 2", (i,), prepare=True).fetchone()
                    assert row == (i * 2,)
                    row = conn.execute("SELECT %s::int * 2", (i + 1,), prepare=True).fetchone()
                    assert row == ((i + 1) * 2,)


def test_setDoesNotLeak(pooler: Pooler) -> None:
    """
    One client's C{SET} does not reach another client served by the same
    backend afterwards, and it still holds for the client that made it.
    """
    with connect(pooler) as first, connect(pooler) as second:
        default = second.execute("SHOW work_mem").fetchone()
        first.execute("SET work_mem = '1234kB'")
        assert second.execute("SHOW work_mem").fetchone() == default
        assert first.execute("SHOW work_mem").fetchone() == ("1234kB",)
        assert second.execute("SHOW work_mem").fetchone() == default
