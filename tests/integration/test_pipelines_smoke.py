"""
A login and queries through pgtwist in every pipeline, with pg8000: a
pure-Python driver, so that C{make test-pypy} runs it on PyPy as well (a
smoke test of the runtime, beside the unit and contract tests).
"""

from __future__ import annotations

from pathlib import Path

import pg8000.native
import pytest

from pgtwist.testing.embedded import PostgresCluster
from tests.integration.pooler import Pooler


@pytest.mark.parametrize("pipeline", ["session", "transaction", "performance"])
def test_pipelines(tmp_path: Path, pgCluster: PostgresCluster, pipeline: str) -> None:
    """
    In each pipeline, a SCRAM client logs in and gets the right answers to
    a simple-protocol query, an extended-protocol one with a parameter, a
    named prepared statement run twice, and a transaction block.
    """
    pooler = Pooler(
        tmp_path,
        pgCluster,
        main={"pipeline": pipeline},
        hba=["host all all all scram-sha-256"],
        users={"pgt_scram": "scram-secret"},
    ).start()
    try:
        conn = pg8000.native.Connection(
            "pgt_scram",
            host="127.0.0.1",
            port=pooler.port,
            database="pgt_scram",
            password="scram-secret",
            timeout=10,
        )
        try:
            assert conn.execute_simple("SELECT 40 + 2").rows == [[42]]
            assert conn.run("SELECT :a::int + 1", a=41) == [[42]]
            statement = conn.prepare("SELECT :v::int * 2")
            assert [statement.run(v=n) for n in (21, 4)] == [[[42]], [[8]]]
            conn.run("BEGIN")
            conn.run("SELECT set_config('application_name', 'smoke', true)")
            assert conn.run("SHOW application_name") == [["smoke"]]
            conn.run("COMMIT")
            assert conn.run("SELECT current_user") == [["pgt_scram"]]
        finally:
            conn.close()
    finally:
        assert pooler.stop() == -15
