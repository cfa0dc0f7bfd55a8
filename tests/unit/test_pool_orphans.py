"""
Tests for what L{pgtwist.pool.poolset.PoolSet} does when a client leaves a
request running (L{PoolSet.abandon}), over the scripted connector of
L{tests.unit.test_pool} (no sockets).
"""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.model import DatabaseLimit, ServerSettings
from pgtwist.net import cancel
from pgtwist.net.backend import BackendError
from pgtwist.net.cancel import sendCancel
from pgtwist.pool import poolset
from pgtwist.pool.poolset import BackendState
from pgtwist.wire import codec, errors
from pgtwist.wire.messages import CancelRequest
from tests.unit.test_pool import SERVER, PoolTestCase


class AbandonTests(PoolTestCase):
    """
    L{PoolSet.abandon}: cancel, then close, only a backend still lent.
    """

    def setUp(self) -> None:
        super().setUp()
        self.cancels: list[tuple[ServerSettings, int, int]] = []
        self.pools.sendCancel = lambda *key: self.cancels.append(key)

    def test_cancelThenClose(self) -> None:
        """
        A lent backend whose client is gone gets a CancelRequest with its
        own key, to its own server, and is closed, never lent again.
        """
        backend = self.lendNew()
        self.pools.abandon(backend)
        self.assertEqual(self.cancels, [(SERVER, backend.processId, backend.secretKey)])
        self.assertTrue(backend.closed)
        self.assertEqual(self.stateOf(backend), BackendState.CLOSED)
        d = self.pools.acquire(self.key, {})
        self.assertNoResult(d)
        self.assertEqual(len(self.connects), 2)

    def test_notLent(self) -> None:
        """
        A backend the pool does not lend any more (given back, or to
        someone else since) is never cancelled.
        """
        backend = self.lendNew()
        self.pools.release(backend, reset=False)
        self.assertEqual(self.stateOf(backend), BackendState.IDLE)
        self.pools.abandon(backend)
        self.assertEqual(self.cancels, [])

    def test_closed(self) -> None:
        """
        A backend already closed (or unknown) is left alone.
        """
        backend = self.lendNew()
        self.pools.discard(backend, "test")
        self.pools.abandon(backend)
        self.assertEqual(self.cancels, [])

    def test_closing(self) -> None:
        """
        A backend PostgreSQL is closing already needs no cancel; it is closed.
        """
        backend = self.lendNew()
        backend.closing = True
        self.pools.abandon(backend)
        self.assertEqual(self.cancels, [])
        self.assertTrue(backend.closed)


class SendCancelTests(SynchronousTestCase):
    """
    L{sendCancel}: the connection a cancel of pgtwist's own goes over.
    """

    def test_packetAndTimeout(self) -> None:
        """
        One CancelRequest with the given key, on a connection that gives up
        after L{cancel.CANCEL_CONNECT_TIMEOUT}, closed once sent.
        """
        reactor = MemoryReactor()
        sendCancel(reactor, SERVER, 321, -5)
        [(host, port, factory, timeout, _)] = reactor.tcpClients
        self.assertEqual((host, port, timeout), ("127.0.0.1", 5432, cancel.CANCEL_CONNECT_TIMEOUT))
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), codec.encode(CancelRequest(321, -5)))
        self.assertTrue(transport.disconnecting)

    def test_tls(self) -> None:
        """
        Toward a server that requires TLS, the request waits for TLS: an
        SSLRequest goes first and a refusal sends nothing.
        """
        server = ServerSettings("primary", "127.0.0.1", 5432, True, sslmode="require")
        reactor = MemoryReactor()
        sendCancel(reactor, server, 321, 7)
        protocol = reactor.tcpClients[0][2].buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertNotIn(codec.encode(CancelRequest(321, 7)), transport.value())
        protocol.dataReceived(b"N")
        self.assertNotIn(codec.encode(CancelRequest(321, 7)), transport.value())
        self.assertTrue(transport.disconnecting)


class CloseIdleBackendsTests(PoolTestCase):
    """
    L{PoolSet.closeIdleBackends}: a database's idle backends, every user's,
    closed before a statement that needs the database to itself.
    """

    def setUp(self) -> None:
        super().setUp()
        self.pools = self.makePools(maxConnections=6)

    def test_idleOfEveryUser(self) -> None:
        """
        The idle backends of every pool of the database are closed, and the
        answer waits until their connections are gone; lent backends and
        other databases' stay.
        """
        alice = self.lendNew({})
        self.pools.release(alice, reset=False)
        bob = self.lendNew({}, key=("db", "bob"))
        self.pools.release(bob, reset=False)
        busy = self.lendNew({}, key=("db", "carol"))
        other = self.lendNew({}, key=("elsewhere", "alice"))
        self.pools.release(other, reset=False)
        d = self.pools.closeIdleBackends("db")
        self.assertTrue(alice.closed and bob.closed)
        self.assertFalse(busy.closed or other.closed)
        self.assertEqual(self.stateOf(busy), BackendState.ACTIVE)
        self.assertNoResult(d)
        alice.lose()
        self.assertNoResult(d)
        bob.lose()
        self.assertIsNone(self.successResultOf(d))

    def test_otherWorkers(self) -> None:
        """
        With C{closeIdleElsewhere} (C{workers = N}), the answer also waits
        for the other workers to have closed theirs.
        """
        asked: list[tuple[str, Deferred[None]]] = []

        def elsewhere(database: str) -> Deferred[None]:
            d: Deferred[None] = Deferred()
            asked.append((database, d))
            return d

        self.pools.closeIdleElsewhere = elsewhere
        d = self.pools.closeIdleBackends("db")
        self.assertEqual([database for database, _ in asked], ["db"])
        self.assertNoResult(d)
        asked[0][1].callback(None)
        self.assertIsNone(self.successResultOf(d))

    def test_nothingIdle(self) -> None:
        """
        With nothing idle to close, the answer comes at once.
        """
        self.lendNew({})
        self.assertIsNone(self.successResultOf(self.pools.closeIdleBackends("db")))
        self.assertIsNone(self.successResultOf(self.pools.closeIdleBackends("nowhere")))

    def test_waitBounded(self) -> None:
        """
        A connection that is slow to go is waited for L{CLOSE_WAIT} seconds
        at most.
        """
        backend = self.lendNew({})
        self.pools.release(backend, reset=False)
        d = self.pools.closeIdleBackends("db")
        self.clock.advance(poolset.CLOSE_WAIT - 0.1)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertIsNone(self.successResultOf(d))
        backend.lose()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_resettingClosedAfterReset(self) -> None:
        """
        A backend being reset (its client just left) is closed once the
        reset ends, not pooled.
        """
        backend = self.lendNew({})
        self.pools.release(backend)
        self.assertEqual(self.stateOf(backend), BackendState.RESETTING)
        self.successResultOf(self.pools.closeIdleBackends("db"))
        backend.queries[-1][1].callback(None)
        self.assertTrue(backend.closed)
        self.assertEqual(self.stateOf(backend), BackendState.CLOSED)


class ClosedForMaintenanceTests(PoolTestCase):
    """
    Maintenance opens no backend to a database whose idle backends were
    just closed for a statement.
    """

    def test_noReopen(self) -> None:
        """
        MIN_SIZE is not restored for L{poolset.CLOSE_WAIT} seconds.
        """
        self.pools = self.makePools()
        self.pools.config = replace(
            self.pools.config, limits=(DatabaseLimit("db", "alice", 2, minSize=1),)
        )
        self.pools.reconfigure(self.pools.config)
        self.maintain()
        self.login().lose()
        self.maintain()
        self.login()
        self.pools.closeIdleBackends("db")
        self.connects[-1][0].lose()
        self.maintain()
        self.assertEqual(len(self.connects), 2)
        self.clock.advance(poolset.CLOSE_WAIT)
        self.maintain()
        self.assertEqual(len(self.connects), 3)


class RefusedLoginBackoffTests(PoolTestCase):
    """
    Maintenance of a pool whose logins PostgreSQL refuses (its database
    was dropped) backs off instead of reconnecting at every round.
    """

    def test_backoff(self) -> None:
        """
        After a refused login the next attempt waits 1 s, then 2 s, then
        4 s...; a login that succeeds ends the back-off.
        """
        self.pools = self.makePools()
        self.pools.config = replace(
            self.pools.config, limits=(DatabaseLimit("db", "alice", 2, minSize=1),)
        )
        self.pools.reconfigure(self.pools.config)
        refused = BackendError(errors.fatal("3D000", 'database "db" does not exist'))
        attempts = []
        for wait in (1.0, 2.0, 4.0):
            self.maintain()
            attempts.append(len(self.connects))
            backend, d = self.connects[-1]
            d.errback(refused)
            self.clock.advance(wait - 0.5)
            self.maintain()
            self.assertEqual(len(self.connects), attempts[-1])
            self.clock.advance(0.5)
        self.assertEqual(attempts, [1, 2, 3])
        self.maintain()
        self.login()
        self.assertEqual(self.pools.pool(self.key).loginRefusals, 0)
