"""
Messages of 16 and 64 MiB through each pipeline against the real PostgreSQL
(issue 10, point 5): C{select repeat('x', N)}, C{COPY ... TO STDOUT} and
C{COPY ... FROM STDIN} arrive intact, and the pgtwist process's peak RSS
(C{VmHWM}) grows by less than 8 MiB: messages are relayed in pieces, never
held whole. Timing is not asserted here (see C{benchmarks/}).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from tests.integration.clients import runningPooler
from tests.integration.pooler import Pooler
from tests.integration.pooling import HBA, connect, table

MIB = 1 << 20
SIZES = (16 * MIB, 64 * MIB)
#: The most the pooler's peak RSS may grow while relaying them.
RSS_GROWTH = 8 * MIB


def peakRss(pooler: Pooler) -> int:
    """
    The pgtwist process's peak resident set size in bytes (C{VmHWM}).
    """
    assert pooler.process is not None
    with open(f"/proc/{pooler.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def selectRepeat(conn: psycopg.Connection, size: int) -> None:
    """
    C{select repeat('x', size)} returns one intact value.
    """
    row = conn.execute("SELECT repeat('x', %s)", (size,)).fetchone()
    assert row is not None
    value = row[0]
    assert len(value) == size
    assert value.count("x") == size


def copyOut(conn: psycopg.Connection, size: int) -> None:
    """
    C{COPY (select repeat('y', size)) TO STDOUT}: one row of C{size} bytes,
    one CopyData, arrives intact.
    """
    received = 0
    ys = 0
    with conn.cursor() as cursor:
        with cursor.copy(f"COPY (SELECT repeat('y', {size})) TO STDOUT") as copy:
            for chunk in copy:
                data = bytes(chunk)
                received += len(data)
                ys += data.count(b"y")
    assert (received, ys) == (size + 1, size)


def copyIn(conn: psycopg.Connection, size: int) -> None:
    """
    C{COPY big FROM STDIN} of one row of C{size} bytes sent as one CopyData:
    PostgreSQL stores it intact.
    """
    conn.execute("TRUNCATE big")
    with conn.cursor() as cursor:
        with cursor.copy("COPY big (v) FROM STDIN") as copy:
            copy.write(b"z" * size + b"\n")
    row = conn.execute("SELECT length(v), length(replace(v, 'z', '')) FROM big").fetchone()
    assert row == (size, 0)


@pytest.fixture(params=["session", "transaction", "performance"])
def pooler(
    request: pytest.FixtureRequest, tmp_path: Path, pgCluster: PostgresCluster
) -> Iterator[Pooler]:
    """
    pgtwist with each pipeline, stopped after the test.
    """
    main = {"pipeline": request.param, "max_connections": 2, "log_level": "info"}
    with runningPooler(tmp_path, pgCluster, main=main, hba=HBA) as running:
        yield running


def test_largeMessages(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    A 16 and a 64 MiB value, each way, through the pipeline: intact, and
    the pooler's peak RSS grows by less than 8 MiB (measured after the same
    work at 1 MiB warmed it up).
    """
    with table(pgCluster, "big", "v text"), connect(pooler) as conn:
        for work in (selectRepeat, copyOut, copyIn):
            work(conn, MIB)
        before = peakRss(pooler)
        for size in SIZES:
            for work in (selectRepeat, copyOut, copyIn):
                work(conn, size)
                growth = peakRss(pooler) - before
                assert growth < RSS_GROWTH, (work.__name__, size, growth)
