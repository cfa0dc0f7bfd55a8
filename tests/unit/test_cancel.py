"""
Tests for L{pgtwist.net.cancel.CancelRegistry}.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.model import ServerSettings
from pgtwist.net.cancel import CancelRegistry
from pgtwist.wire import codec
from pgtwist.wire.messages import CancelRequest

SERVER = ServerSettings("primary", "127.0.0.1", 5432, True)


class CancelRegistryTests(SynchronousTestCase):
    """
    Keys are registered per client and cancels reach the current backend.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        secrets = iter([11, 11, 22, 33])
        self.registry = CancelRegistry(self.reactor, randomInt=lambda: next(secrets))
        self.target: tuple[ServerSettings, int, int] | None = (SERVER, 500, 9999)

    def test_forwardedWithBackendKey(self) -> None:
        """
        A known key opens a connection to the backend's server that sends a
        CancelRequest with the backend's own key, then closes.
        """
        secret = self.registry.register(500, lambda: self.target)
        self.assertTrue(self.registry.cancel(CancelRequest(500, secret)))
        host, port, factory, timeout, bindAddress = self.reactor.tcpClients[0]
        self.assertEqual((host, port), ("127.0.0.1", 5432))
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertEqual(transport.value(), codec.encode(CancelRequest(500, 9999)))
        self.assertTrue(transport.disconnecting)

    def test_unknownKey(self) -> None:
        """
        A wrong secret cancels nothing.
        """
        self.registry.register(500, lambda: self.target)
        self.assertFalse(self.registry.cancel(CancelRequest(500, 12345)))
        self.assertEqual(self.reactor.tcpClients, [])

    def test_staleKey(self) -> None:
        """
        After unregistering, the same pid with a new client's secret works but
        the old key no longer does.
        """
        secrets = iter([11, 22])
        self.registry = CancelRegistry(self.reactor, randomInt=lambda: next(secrets))
        old = self.registry.register(500, lambda: self.target)
        self.registry.unregister(500, old)
        new = self.registry.register(500, lambda: self.target)
        self.assertNotEqual(old, new)
        self.assertFalse(self.registry.cancel(CancelRequest(500, old)))
        self.assertTrue(self.registry.cancel(CancelRequest(500, new)))

    def test_secretsUnique(self) -> None:
        """
        Two clients with the same pid never share a secret.
        """
        first = self.registry.register(500, lambda: self.target)
        second = self.registry.register(500, lambda: self.target)
        self.assertNotEqual(first, second)

    def test_noBackendNow(self) -> None:
        """
        A client with no backend at the moment has nothing to cancel.
        """
        secret = self.registry.register(500, lambda: None)
        self.assertFalse(self.registry.cancel(CancelRequest(500, secret)))
