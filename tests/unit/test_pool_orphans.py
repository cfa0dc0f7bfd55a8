"""
Tests for what L{pgtwist.pool.poolset.PoolSet} does when a client leaves a
request running (L{PoolSet.abandon}), over the scripted connector of
L{tests.unit.test_pool} (no sockets).
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.model import ServerSettings
from pgtwist.net import cancel
from pgtwist.net.cancel import sendCancel
from pgtwist.pool.poolset import BackendState
from pgtwist.wire import codec
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
