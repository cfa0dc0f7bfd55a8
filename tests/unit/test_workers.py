"""
Tests for L{pgtwist.app.workers} and the worker bits of cancel keys.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.app.workers import shareOf
from pgtwist.config.model import ServerSettings
from pgtwist.net.cancel import WORKER_MASK, CancelRegistry
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
        Secrets registered by worker 1 carry 1 in their low bits.
        """
        for _ in range(20):
            secret = self.registry.register(42, lambda: (SERVER, 42, 7))
            self.assertEqual(secret & WORKER_MASK, 1)

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
        self.assertFalse(self.registry.cancel(CancelRequest(42, (1 << 4) | 9)))
        self.assertEqual(self.forwarded, [])
