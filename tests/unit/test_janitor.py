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


class UnusedPoolTests(JanitorTestCase):
    """
    C{autodb_idle_timeout}: pools no databases-file line names are
    forgotten once unused that long; the others stay.
    """

    def setUp(self) -> None:
        super().setUp()
        config = makeConfiguration(autodbIdleTimeout=60.0)
        limits = (*config.limits, dataclasses.replace(config.limits[0], user="alice"))
        self.service.reconfigure(dataclasses.replace(config, limits=limits))

    def test_unusedPoolDropped(self) -> None:
        """
        A pool that lost its last backend is dropped, statistics and all,
        C{autodb_idle_timeout} seconds after the janitor first finds it
        unused, not before.
        """
        pools = self.service.pools
        backend = self.activeBackend(("other", "alice"))
        pools.statsFor(("other", "alice")).queryCount = 5
        self.service.janitor.runOnce()
        pools.discard(backend, "test")
        self.service.janitor.runOnce()
        self.reactor.advance(59)
        self.service.janitor.runOnce()
        self.assertIn(("other", "alice"), pools.pools)
        self.reactor.advance(1)
        self.service.janitor.runOnce()
        self.assertNotIn(("other", "alice"), pools.pools)
        self.assertEqual(pools.statsFor(("other", "alice")).queryCount, 0)

    def test_usedPoolsKept(self) -> None:
        """
        A pool with a backend, a waiter or a client connected, and a pool a
        databases-file line names (C{db alice}, not C{db all}), are kept
        however long that lasts; the clock restarts when a pool is used.
        """
        pools = self.service.pools
        self.idleBackend(("withbackend", "alice"))
        pools.statsFor(("db", "alice"))
        pools.statsFor(("withclient", "alice"))
        client = self.service.factory.buildProtocol(None)
        client.key = ("withclient", "alice")
        self.service.factory.clients.add(client)
        pools.statsFor(("db", "bob"))
        for _ in range(3):
            self.service.janitor.runOnce()
            self.reactor.advance(60)
        self.service.janitor.runOnce()
        self.assertEqual(
            sorted(pools.pools),
            [("db", "alice"), ("withbackend", "alice"), ("withclient", "alice")],
        )
        self.service.factory.clients.discard(client)
        self.service.janitor.runOnce()
        self.reactor.advance(59)
        self.service.janitor.runOnce()
        self.assertIn(("withclient", "alice"), pools.pools)
        self.reactor.advance(1)
        self.service.janitor.runOnce()
        self.assertNotIn(("withclient", "alice"), pools.pools)

    def test_zeroKeepsEverything(self) -> None:
        """
        C{autodb_idle_timeout = 0} never drops a pool.
        """
        self.configure(autodbIdleTimeout=0.0)
        self.service.pools.statsFor(("other", "alice"))
        for _ in range(3):
            self.service.janitor.runOnce()
            self.reactor.advance(10_000)
        self.assertIn(("other", "alice"), self.service.pools.pools)
