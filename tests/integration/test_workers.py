"""
C{workers = 2}: two reactor processes share the listeners; cancels find the
worker that owns the key; stopping the supervisor stops the workers and
removes their runtime directory.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire.messages import ErrorResponse, Query
from tests.integration.clients import RawClient, sendCancel
from tests.integration.pooler import Pooler

USER = "pgt_scram"
PASSWORD = "scram-secret"


def workerPids(pooler: Pooler) -> set[int]:
    """
    The pids of the supervisor's child processes.
    """
    assert pooler.process is not None
    children = Path(f"/proc/{pooler.process.pid}/task/{pooler.process.pid}/children")
    return {int(pid) for pid in children.read_text().split()}


def test_twoWorkers(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    Two workers serve clients, each with half of max_connections; a cancel
    sent on new connections reaches the right worker every time.
    """
    pooler = Pooler(
        tmp_path,
        pgCluster,
        main={"workers": 2, "max_connections": 4},
        hba=["host all pgt_trust all trust", "host all all all scram-sha-256"],
        users={USER: PASSWORD},
    ).start()
    try:
        deadline = time.monotonic() + 10
        while len(workerPids(pooler)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workerPids(pooler)) == 2
        # Short connections: both workers accept some (each needs a moment
        # to start listening).
        secrets = set()
        deadline = time.monotonic() + 20
        while secrets != {0, 1} and time.monotonic() < deadline:
            client = RawClient(pooler.port, "pgt_trust", "pgt_trust")
            # With two workers one low bit of the secret names the worker.
            secrets.add(client.secretKey & 0x1)
            client.close()
        assert secrets == {0, 1}
        # A cancel reaches the owner, wherever the kernel hands the
        # CancelRequest's connection.
        for _ in range(4):
            with psycopg.connect(pooler.dsn(USER, PASSWORD, "pgtwist_test")) as conn:
                timer = threading.Timer(0.5, conn.cancel)
                timer.start()
                started = time.monotonic()
                with pytest.raises(psycopg.errors.QueryCanceled):
                    conn.execute("SELECT pg_sleep(10)")
                assert time.monotonic() - started < 5
                timer.join()
        # Raw cancels of a raw client, several times over fresh connections.
        client = RawClient(pooler.port, "pgt_trust", "pgt_trust")
        client.send(Query("SELECT pg_sleep(10)"))
        time.sleep(0.3)
        for _ in range(3):
            sendCancel(pooler.port, client.processId, client.secretKey)
        started = time.monotonic()
        messages = client.results()
        assert time.monotonic() - started < 5
        codes = [m.code for m in messages if isinstance(m, ErrorResponse)]
        assert codes == ["57014"], messages
        client.close()
        children = workerPids(pooler)
        arguments = Path(f"/proc/{min(children)}/cmdline").read_bytes().split(b"\0")
        runtime = arguments[arguments.index(b"--runtime") + 1].decode()
        assert os.path.isdir(runtime)
    finally:
        pooler.stop()
    # The directory of the workers' cancel sockets goes with them.
    assert not os.path.exists(runtime)
    for pid in children:
        assert (
            not os.path.exists(f"/proc/{pid}")
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )
