"""
The SSH manhole end to end: the real C{pgtwist} process with C{manhole}
set and an admins file, reached by a conch SSH client over loopback TCP.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.conch.ssh.keys import Key
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import ClientFactory
from twisted.internet.task import deferLater

from pgtwist.admin.manhole import HOST_KEY_FILE
from pgtwist.testing.embedded import PostgresCluster
from tests.integration.pooler import Pooler, freePort
from tests.unit.test_manhole import ManholeClient

reactor: Any = _reactor

ADMIN, ADMIN_PASSWORD = "admin", "manhole-secret"


class _ClientFactory(ClientFactory):
    """
    Builds one L{ManholeClient}.
    """

    def __init__(self, user: str, password: str) -> None:
        self.client = ManholeClient(user, password)

    def buildProtocol(self, addr: Any) -> ManholeClient:
        """
        The client, once.
        """
        self.client.factory = self
        return self.client


async def login(port: int, user: str, password: str) -> ManholeClient:
    """
    Connect to the manhole on 127.0.0.1:C{port} and log in.
    """
    factory = _ClientFactory(user, password)
    await TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10).connect(factory)
    return factory.client


async def waitFor(client: ManholeClient, text: bytes, timeout: float = 10.0) -> None:
    """
    Wait until the terminal shows C{text}.
    """
    for _ in range(int(timeout / 0.05)):
        if text in client.output:
            return
        await deferLater(reactor, 0.05)
    raise AssertionError(f"{text!r} not in {client.output!r}")


def hostKeyFile(pooler: Pooler) -> Path:
    """
    Where pgtwist keeps its manhole host key by default (C{HOME} is the
    pooler's own directory).
    """
    return pooler.home / ".pgtwist" / "manhole" / HOST_KEY_FILE


@pytest_twisted.ensureDeferred
async def test_sessionAndKeyKept(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    An admin logs in over SSH, sees the running service in the namespace,
    and gets the same host key after a restart; the key was generated in
    C{~/.pgtwist/manhole} with private permissions.
    """
    port = freePort()
    pooler = Pooler(
        tmp_path,
        pgCluster,
        main={"manhole": port},
        users={"pgt_scram": "scram-secret"},
        admins={ADMIN: ADMIN_PASSWORD},
    )
    pooler.start()
    try:
        pooler.waitForLog(rf"manhole listening on tcp:{port}:interface=127\.0\.0\.1")
        keyPath = hostKeyFile(pooler)
        assert stat.S_IMODE(os.stat(keyPath).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(keyPath.parent).st_mode) == 0o700
        expected = Key.fromFile(str(keyPath)).fingerprint()

        client = await login(port, ADMIN, ADMIN_PASSWORD)
        await client.ready
        assert client.loggedIn
        assert [key.fingerprint() for key in client.hostKeys] == [expected]
        client.type("print('servers=' + ','.join(s.name for s in config.servers))")
        await waitFor(client, b"servers=primary")
        client.type("service.management.status()['max_connections'] * 1000")
        await waitFor(client, b"10000")
        client.type("type(pools).__name__")
        await waitFor(client, b"'PoolSet'")
        client.transport.loseConnection()

        pooler.stop()
        pooler.start()
        again = await login(port, ADMIN, ADMIN_PASSWORD)
        await again.ready
        assert [key.fingerprint() for key in again.hostKeys] == [expected]
        again.transport.loseConnection()
    except BaseException:
        print(pooler.log())
        raise
    finally:
        pooler.stop()


@pytest_twisted.ensureDeferred
async def test_wrongPasswordRefused(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    A wrong password gets no shell: the server ends the connection after
    the client runs out of methods, and pgtwist logs the refusal.
    """
    port = freePort()
    pooler = Pooler(
        tmp_path,
        pgCluster,
        main={"manhole": f"tcp:{port}:interface=127.0.0.1"},
        users={"pgt_scram": "scram-secret"},
        admins={ADMIN: ADMIN_PASSWORD},
    )
    pooler.start()
    try:
        client = await login(port, ADMIN, "wrong")
        await client.lost.addTimeout(15, reactor)
        assert not client.loggedIn
        assert client.channel is None
        pooler.waitForLog(r"Manhole login refused for 'admin'")
    finally:
        pooler.stop()
