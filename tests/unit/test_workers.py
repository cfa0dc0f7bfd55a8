"""
Tests for L{pgtwist.app.workers} and the worker bits of cancel keys.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.app.workers import shareOf
from pgtwist.config.model import ServerSettings
from pgtwist.net.cancel import WORKER_MASK, CancelRegistry, workerMask
from pgtwist.wire import codec
from pgtwist.wire.messages import CancelRequest

SERVER = ServerSettings("primary", "127.0.0.1", 5432, True)


class ShareTests(SynchronousTestCase):
    """
    max_connections is divided among workers.
    """

    def test_remainderToFirst(self) -> None:
        """
        The first workers take the remainder; the shares add up.
        """
        self.assertEqual([shareOf(10, i, 3) for i in range(3)], [4, 3, 3])
        self.assertEqual(sum(shareOf(100, i, 7) for i in range(7)), 100)

    def test_atLeastOne(self) -> None:
        """
        A worker always gets at least one backend.
        """
        self.assertEqual(shareOf(1, 1, 2), 1)


class WorkerCancelTests(SynchronousTestCase):
    """
    A cancel secret names its worker; other workers forward the request.
    """

    def setUp(self) -> None:
        self.forwarded: list[tuple[int, bytes]] = []
        self.reactor = MemoryReactor()
        self.registry = CancelRegistry(
            self.reactor,
            workerIndex=1,
            workers=3,
            forward=lambda worker, packet: self.forwarded.append((worker, packet)),
        )

    def test_secretNamesWorker(self) -> None:
        """
        Secrets registered by worker 1 of 3 carry 1 in their two low bits.
        """
        for _ in range(20):
            secret = self.registry.register(42, lambda: (SERVER, 42, 7))
            self.assertEqual(secret & 0b11, 1)

    def test_ownKeyCancelledHere(self) -> None:
        """
        A key of this worker is cancelled locally.
        """
        secret = self.registry.register(42, lambda: (SERVER, 42, 7))
        self.assertTrue(self.registry.cancel(CancelRequest(42, secret)))
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(self.forwarded, [])

    def test_otherWorkersKeyForwarded(self) -> None:
        """
        A key of worker 2 is sent to worker 2, untouched.
        """
        request = CancelRequest(42, (12345 << 4) | 2)
        self.assertFalse(self.registry.cancel(request))
        self.assertEqual(self.forwarded, [(2, codec.encode(request))])

    def test_noSuchWorker(self) -> None:
        """
        A key naming a worker that does not exist goes nowhere.
        """
        self.assertFalse(self.registry.cancel(CancelRequest(42, (1 << 4) | 3)))
        self.assertEqual(self.forwarded, [])

    def test_fewestBits(self) -> None:
        """
        Only as many low bits as the worker count needs name the worker; the
        rest of the 32 stay random (31 for 2 workers, 28 for 16).
        """
        self.assertEqual(
            [workerMask(n) for n in (1, 2, 3, 4, 5, 8, 9, 16)],
            [0, 1, 3, 3, 7, 7, 15, 15],
        )
        self.assertEqual(workerMask(16), WORKER_MASK)

    def test_highBitKept(self) -> None:
        """
        A secret with its top bit set keeps it when the worker bits are set,
        and is routed by them.
        """
        registry = CancelRegistry(
            self.reactor,
            randomInt=lambda: -(2**31),
            workerIndex=1,
            workers=2,
            forward=lambda worker, packet: self.forwarded.append((worker, packet)),
        )
        secret = registry.register(42, lambda: (SERVER, 42, 7))
        self.assertEqual(secret, -(2**31) + 1)
        self.assertTrue(registry.cancel(CancelRequest(42, secret)))
        request = CancelRequest(42, -2)
        self.assertFalse(registry.cancel(request))
        self.assertEqual(self.forwarded, [(0, codec.encode(request))])
