"""
The harness itself: pgtwist starts in front of the suite's cluster, relays a
query, and stops on SIGTERM.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from pgtwist.testing.embedded import PostgresCluster
from tests.integration.pooler import Pooler


def test_startQueryStop(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    A SCRAM client gets a result through pgtwist; SIGTERM stops it cleanly.
    """
    pooler = Pooler(
        tmp_path,
        pgCluster,
        hba=["host all all all scram-sha-256"],
        users={"pgt_scram": "scram-secret"},
    ).start()
    try:
        with psycopg.connect(pooler.dsn("pgt_scram", "scram-secret")) as conn:
            assert conn.execute("SELECT 40 + 2").fetchone() == (42,)
    finally:
        # twistd re-raises the terminating signal after a clean shutdown.
        assert pooler.stop() == -15
    assert "Server Shut Down." in (tmp_path / "stdout.txt").read_text() + pooler.log()
