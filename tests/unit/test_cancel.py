"""
Tests for L{pgtwist.net.cancel.CancelRegistry}.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.model import ServerSettings
from pgtwist.net import cancel
from pgtwist.net.cancel import CancelRegistry, randomSecret
from pgtwist.wire import codec
from pgtwist.wire.messages import BackendKeyData, CancelRequest

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

    def test_connectorLetsGo(self) -> None:
        """
        Once the cancel's connection is over, its connector no longer holds
        the transport (which holds the connector): the connection is freed
        by reference counting, not left to the cyclic collector.
        """
        secret = self.registry.register(500, lambda: self.target)
        self.registry.cancel(CancelRequest(500, secret))
        factory = self.reactor.tcpClients[0][2]
        connector = self.reactor.connectors[0]
        connector.transport = StringTransport()  # what a real connector holds
        factory.clientConnectionLost(connector, Failure(ConnectionDone()))
        self.assertIsNone(connector.transport)

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


class _FakeSecrets:
    """
    Stands for the L{secrets} module: hands out given values and records
    how many bits were asked for.
    """

    def __init__(self, *values: int) -> None:
        self.values = list(values)
        self.bits: list[int] = []

    def randbits(self, bits: int) -> int:
        self.bits.append(bits)
        return self.values.pop(0)


class SecretTests(SynchronousTestCase):
    """
    Secrets come from L{secrets} with PostgreSQL's 32 bits, and every one of
    them survives the trip to the client and back.
    """

    def test_thirtyTwoBits(self) -> None:
        """
        L{randomSecret} asks L{secrets} for 32 bits and returns them as the
        signed Int32 the codec decodes: 2**31 and above become negative.
        """
        fake = _FakeSecrets(0, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
        self.patch(cancel, "secrets", fake)
        self.assertEqual([randomSecret() for _ in range(4)], [0, 0x7FFFFFFF, -(2**31), -1])
        self.assertEqual(fake.bits, [32, 32, 32, 32])

    def test_registryDefault(self) -> None:
        """
        A registry with one worker gives clients all 32 bits of the secret.
        """
        self.patch(cancel, "secrets", _FakeSecrets(0xDEADBEEF))
        registry = CancelRegistry(MemoryReactor())
        secret = registry.register(500, lambda: None)
        self.assertEqual(secret & 0xFFFFFFFF, 0xDEADBEEF)

    def test_highBitRoundTrip(self) -> None:
        """
        A secret with its top bit set goes out in BackendKeyData as the four
        bytes a client stores, and the CancelRequest a client builds from
        those bytes (libpq sends them back as they came) cancels.
        """
        self.patch(cancel, "secrets", _FakeSecrets(0xF00DCAFE))
        reactor = MemoryReactor()
        registry = CancelRegistry(reactor)
        secret = registry.register(500, lambda: (SERVER, 500, 9999))
        keyData = codec.encode(BackendKeyData(500, secret))
        self.assertEqual(keyData[-4:], bytes.fromhex("f00dcafe"))
        packet = (16).to_bytes(4, "big") + (80877102).to_bytes(4, "big") + keyData[-8:]
        request = codec.decodeStartupPacket(packet[4:])
        self.assertEqual(request, CancelRequest(500, secret))
        self.assertEqual(codec.encode(request), packet)
        self.assertTrue(registry.cancel(request))
        self.assertEqual(len(reactor.tcpClients), 1)

    def test_randomSecretsDiffer(self) -> None:
        """
        The real source gives different secrets, some with the top bit set.
        """
        values = {randomSecret() for _ in range(200)}
        self.assertGreater(len(values), 190)
        self.assertTrue(any(v < 0 for v in values))
        self.assertTrue(all(-(2**31) <= v < 2**31 for v in values))
