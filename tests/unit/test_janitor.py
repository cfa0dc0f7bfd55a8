"""
Tests for L{pgtwist.pool.janitor.Janitor} and the maintenance it runs
(L{pgtwist.pool.maintenance.PoolMaintenance}): prefill and minimum sizes,
connection age, background validation and idle clients, on a
C{MemoryReactorClock} with fake backends (no sockets, no sleeping).
"""

from __future__ import annotations

import dataclasses

from pgtwist.config.model import PoolKey
from pgtwist.pool.janitor import INTERVAL
from pgtwist.pool.state import BackendState
from tests.unit._console import ConsoleTestCase, makeConfiguration
from tests.unit.test_pool import ScriptedBackend


class JanitorTestCase(ConsoleTestCase):
    """
    A service whose janitor the tests run, one round at a time.
    """

    def configure(self, **main: object) -> None:
        """
        Use the test configuration with these main settings.
        """
        self.service.reconfigure(makeConfiguration(**main))

    def idleBackend(self, key: PoolKey = ("db", "bob")) -> ScriptedBackend:
        """
        A logged-in backend, given back and idle.
        """
        backend = self.activeBackend(key)
        self.service.pools.release(backend, reset=False)
        return backend


class RoundTests(JanitorTestCase):
    """
    The janitor runs at start and every L{INTERVAL} seconds.
    """

    def test_periodic(self) -> None:
        """
        Started, the janitor prefills at once and keeps MIN_SIZE up each
        round after.
        """
        config = makeConfiguration()
        limits = (dataclasses.replace(config.limits[0], user="alice", minSize=1),)
        self.service.reconfigure(dataclasses.replace(config, limits=limits))
        janitor = self.service.janitor
        janitor.startService()
        self.addCleanup(janitor.stopService)
        self.assertEqual(len(self.connects), 1)
        backend = self.login()
        self.service.pools.discard(backend, "test")
        self.assertEqual(len(self.connects), 1)
        self.reactor.advance(INTERVAL)
        self.assertEqual(len(self.connects), 2)

    def test_maxConnectionAge(self) -> None:
        """
        An idle backend older than C{max_connection_age} is closed by the
        next round; a lent one is not.
        """
        self.configure(maxConnectionAge=60.0)
        idle = self.idleBackend()
        lent = self.activeBackend()
        self.reactor.advance(59)
        self.service.janitor.runOnce()
        self.assertFalse(idle.closed)
        self.reactor.advance(1)
        self.service.janitor.runOnce()
        self.assertTrue(idle.closed)
        self.assertFalse(lent.closed)


class BackgroundValidationTests(JanitorTestCase):
    """
    With C{validation = background}, idle backends are checked every
    C{background_interval}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.configure(validation="background", backgroundInterval=10.0)

    def test_everyInterval(self) -> None:
        """
        Idle backends get an empty query once the interval has passed, not
        before; a backend that passes is idle again.
        """
        backend = self.idleBackend()
        self.reactor.advance(9)
        self.service.janitor.runOnce()
        self.assertEqual(backend.queries, [])
        self.reactor.advance(1)
        self.service.janitor.runOnce()
        self.assertEqual([sql for sql, _ in backend.queries], [""])
        entry = self.service.pools.entryFor(backend)
        assert entry is not None
        self.assertIs(entry.state, BackendState.RESETTING)
        self.assertIsNone(self.service.pools.acquireIdle(("db", "bob")))
        backend.queries[0][1].callback(None)
        self.assertIs(entry.state, BackendState.IDLE)
        self.service.janitor.runOnce()
        self.assertEqual(len(backend.queries), 1)

    def test_checkIsNotUse(self) -> None:
        """
        A check does not count as a use: the backend keeps the time it was
        last used.
        """
        backend = self.idleBackend()
        entry = self.service.pools.entryFor(backend)
        assert entry is not None
        lastUsedAt = entry.lastUsedAt
        self.reactor.advance(10)
        self.service.janitor.runOnce()
        backend.queries[0][1].callback(None)
        self.assertEqual(entry.lastUsedAt, lastUsedAt)

    def test_failedCheckCloses(self) -> None:
        """
        A backend that fails its check is closed.
        """
        backend = self.idleBackend()
        self.reactor.advance(10)
        self.service.janitor.runOnce()
        backend.lose()
        self.assertIsNone(self.service.pools.entryFor(backend))
        self.assertEqual(self.service.pools.total, 0)

    def test_lentNotChecked(self) -> None:
        """
        A lent backend is not checked.
        """
        backend = self.activeBackend()
        self.reactor.advance(10)
        self.service.janitor.runOnce()
        self.assertEqual(backend.queries, [])

    def test_notInForeground(self) -> None:
        """
        With foreground validation the janitor checks nothing (clients'
        acquires do).
        """
        self.configure(validation="foreground", backgroundInterval=10.0)
        backend = self.idleBackend()
        self.reactor.advance(10)
        self.service.janitor.runOnce()
        self.assertEqual(backend.queries, [])


class DisconnectClientTests(JanitorTestCase):
    """
    C{disconnect_client}: clients idle that long are disconnected.
    """

    def assertDisconnected(self, client: object, expected: bool) -> None:
        """
        Whether C{client} was sent the idle-session error and closed.
        """
        transport = client.transport  # type: ignore[attr-defined]
        self.assertEqual(transport.disconnecting, expected)
        self.assertEqual(b"idle-session timeout" in transport.value(), expected)

    def test_idleClient(self) -> None:
        """
        A client silent for C{disconnect_client} seconds is disconnected with
        57P01; one heard from since is not.
        """
        self.configure(disconnectClient=60.0)
        old = self.client()
        self.reactor.advance(30)
        recent = self.client()
        self.reactor.advance(30)
        self.service.janitor.runOnce()
        self.assertDisconnected(old, True)
        self.assertIn(b"57P01", old.transport.value())  # type: ignore[attr-defined]
        self.assertDisconnected(recent, False)

    def test_busyClientSpared(self) -> None:
        """
        A client with a request running is left alone, unless
        C{disconnect_client_force} is on.
        """
        self.configure(disconnectClient=60.0)
        busy = self.client(backend=self.activeBackend())
        self.reactor.advance(60)
        self.service.janitor.runOnce()
        self.assertDisconnected(busy, False)
        self.configure(disconnectClient=60.0, disconnectClientForce=True)
        self.service.janitor.runOnce()
        self.assertDisconnected(busy, True)

    def test_off(self) -> None:
        """
        With C{disconnect_client} 0, no client is ever disconnected.
        """
        client = self.client()
        self.reactor.advance(86400)
        self.service.janitor.runOnce()
        self.assertDisconnected(client, False)
