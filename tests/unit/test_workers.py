"""
Tests for L{pgtwist.app.workers} and cancel routing between workers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import tempfile
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.app import handover as upgrades
from pgtwist.app import workers
from pgtwist.app.workers import cancelPath, closeIdleElsewhere, shareOf
from pgtwist.config.model import ServerSettings
from pgtwist.net import handover
from pgtwist.net.cancel import CancelRegistry, OfferedCancelFactory, closeIdleRequest
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
    No bit of a cancel secret names its worker: a request this worker does
    not know is offered to every other worker, and an offered request is
    only ever acted on where its key was given out.
    """

    def setUp(self) -> None:
        self.forwarded: list[tuple[int, bytes]] = []
        self.reactor = MemoryReactorClock()
        self.registry = CancelRegistry(
            self.reactor,
            workerIndex=1,
            workers=3,
            forward=lambda worker, packet: self.forwarded.append((worker, packet)),
        )

    def test_secretsKeepAllBits(self) -> None:
        """
        Secrets are the random source's 32 bits, untouched by the worker index.
        """
        values = iter([0, -1, 2**31 - 1, -(2**31)])
        registry = CancelRegistry(
            self.reactor, randomInt=lambda: next(values), workerIndex=1, workers=16
        )
        self.assertEqual(
            [registry.register(pid, lambda: None) for pid in range(4)],
            [0, -1, 2**31 - 1, -(2**31)],
        )

    def test_ownKeyCancelledHere(self) -> None:
        """
        A key of this worker is cancelled locally and offered to nobody.
        """
        secret = self.registry.register(42, lambda: (SERVER, 42, 7))
        self.assertTrue(self.registry.cancel(CancelRequest(42, secret)))
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(self.forwarded, [])

    def test_unknownKeyOfferedToOthers(self) -> None:
        """
        A key this worker did not give out is offered, untouched, to every
        other worker.
        """
        request = CancelRequest(42, 12345)
        self.assertFalse(self.registry.cancel(request))
        packet = codec.encode(request)
        self.assertEqual(self.forwarded, [(0, packet), (2, packet)])

    def test_offeredKeyNotOfferedAgain(self) -> None:
        """
        L{CancelRegistry.cancelHere} (a request another worker offered) acts
        only on this worker's keys and offers nothing on, so requests never
        go round in circles.
        """
        self.assertFalse(self.registry.cancelHere(CancelRequest(42, 12345)))
        self.assertEqual(self.forwarded, [])
        secret = self.registry.register(42, lambda: (SERVER, 42, 7))
        self.assertTrue(self.registry.cancelHere(CancelRequest(42, secret)))
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_unknownKeyOfferedToPredecessor(self) -> None:
        """
        After an upgrade, a key this worker does not know is offered to the
        other workers and to the worker it took over from; one another
        worker offered goes to that predecessor only (whose clients may
        still be there), never to the other workers again.
        """
        offered: list[bytes] = []
        self.registry.predecessor = offered.append
        request = CancelRequest(42, 12345)
        packet = codec.encode(request)
        self.assertFalse(self.registry.cancel(request))
        self.assertEqual(self.forwarded, [(0, packet), (2, packet)])
        self.assertEqual(offered, [packet])
        self.assertFalse(self.registry.cancelHere(request))
        self.assertEqual(offered, [packet, packet])
        self.assertEqual(len(self.forwarded), 2)
        secret = self.registry.register(43, lambda: (SERVER, 43, 7))
        self.assertTrue(self.registry.cancelHere(CancelRequest(43, secret)))
        self.assertEqual(len(offered), 2)


class OfferedCancelTests(SynchronousTestCase):
    """
    A worker's private cancel socket takes one CancelRequest and nothing else.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.forwarded: list[tuple[int, bytes]] = []
        self.registry = CancelRegistry(
            self.reactor,
            workerIndex=0,
            workers=2,
            forward=lambda worker, packet: self.forwarded.append((worker, packet)),
        )
        self.secret = self.registry.register(42, lambda: (SERVER, 42, 7))

    def connect(self) -> tuple[Protocol, StringTransport]:
        protocol = OfferedCancelFactory(self.registry, self.reactor).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_cancelInPieces(self) -> None:
        """
        A CancelRequest for a key of this worker, in pieces, reaches the
        backend; the connection is closed.
        """
        protocol, transport = self.connect()
        packet = codec.encode(CancelRequest(42, self.secret))
        protocol.dataReceived(packet[:5])
        self.assertEqual(self.reactor.tcpClients, [])
        protocol.dataReceived(packet[5:])
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.forwarded, [])

    def test_unknownKeyGoesNowhere(self) -> None:
        """
        An offered key this worker does not know is dropped, not offered on.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(codec.encode(CancelRequest(42, self.secret ^ 1)))
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(self.forwarded, [])

    def test_notACancelRequest(self) -> None:
        """
        Sixteen bytes that are not a CancelRequest (a startup packet, say)
        close the connection and cancel nothing.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(struct.pack("!iiii", 16, 196608, 42, self.secret))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_stalledSenderDropped(self) -> None:
        """
        A sender that stops before sixteen bytes is dropped after a few seconds.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"\x00\x00")
        self.reactor.advance(5)
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_clockStoppedWhenDone(self) -> None:
        """
        A whole packet leaves no timer behind once the connection closes,
        and bytes after it are ignored.
        """
        protocol, transport = self.connect()
        packet = codec.encode(CancelRequest(42, self.secret))
        protocol.dataReceived(packet + packet)
        protocol.dataReceived(packet)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class CloseIdleTests(SynchronousTestCase):
    """
    C{DROP DATABASE} through one worker asks the others, on their private
    sockets, to close their idle backends to the database, and waits a
    bounded time for their answers.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.asked: list[tuple[str, Deferred[None]]] = []

    def closeIdle(self, database: str) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.asked.append((database, d))
        return d

    def offered(self) -> tuple[Protocol, StringTransport]:
        registry = CancelRegistry(self.reactor, workerIndex=1, workers=3, forward=None)
        factory = OfferedCancelFactory(registry, self.reactor, self.closeIdle)
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_answeredOnceClosed(self) -> None:
        """
        The request, in pieces, closes this worker's idle backends to the
        database; one byte answers once they are gone.
        """
        protocol, transport = self.offered()
        packet = closeIdleRequest("Doomed db")
        protocol.dataReceived(packet[:6])
        protocol.dataReceived(packet[6:])
        self.assertEqual([database for database, _ in self.asked], ["Doomed db"])
        self.assertEqual(transport.value(), b"")
        self.asked[0][1].callback(None)
        self.assertEqual(transport.value(), b"C")
        self.assertTrue(transport.disconnecting)

    def test_malformed(self) -> None:
        """
        A name without its NUL, or one too long, closes the connection
        unanswered, closing nothing.
        """
        protocol, transport = self.offered()
        packet = closeIdleRequest("x")
        protocol.dataReceived(packet[:-1] + b"y")
        self.assertTrue(transport.disconnecting)
        protocol, transport = self.offered()
        protocol.dataReceived(closeIdleRequest("x" * 100))
        self.assertEqual(self.asked, [])
        self.assertEqual(transport.value(), b"")

    def test_askOthers(self) -> None:
        """
        Every other worker is asked on its socket; the answer comes once
        all of them answered.
        """
        d = closeIdleElsewhere(self.reactor, "/run", 0, 3, "db")
        clients = self.reactor.unixClients
        self.assertEqual([c[0] for c in clients], [cancelPath("/run", 1), cancelPath("/run", 2)])
        protocols = []
        for client in clients:
            protocol = client[1].buildProtocol(None)
            transport = StringTransport()
            protocol.makeConnection(transport)
            self.assertEqual(transport.value(), closeIdleRequest("db"))
            protocols.append(protocol)
        protocols[0].dataReceived(b"C")
        protocols[0].connectionLost(Failure(ConnectionDone()))
        self.assertNoResult(d)
        protocols[1].connectionLost(Failure(ConnectionDone()))
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_bounded(self) -> None:
        """
        A worker that does not answer is waited for one second only.
        """
        d = closeIdleElsewhere(self.reactor, "/run", 1, 2, "db")
        self.assertNoResult(d)
        self.reactor.advance(1.0)
        self.assertIsNone(self.successResultOf(d))


class _SharedSocket:
    def __init__(self, fd: int, family: int) -> None:
        self._fd = fd
        self.family = family
        self.closed = False

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        self.closed = True


class _Supervisor:
    def __init__(self, runtime: str) -> None:
        self.runtime = runtime
        self.count = 2
        self.sockets = [_SharedSocket(5, socket.AF_UNIX)]
        self.signals: list[object] = []
        self.ended: list[bool] = []

    def signalWorkers(self, signal: object) -> None:
        self.signals.append(signal)

    def upgradeEnded(self, tookOver: bool) -> None:
        self.ended.append(tookOver)


class _Process:
    pid = 4321

    def __init__(self) -> None:
        self.signals: list[str] = []

    def signalProcess(self, signal: str) -> None:
        self.signals.append(signal)


class _Reactor(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, ...]] = []
        self.process = _Process()
        self.stopped = False
        self.running = True

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], **kw: Any) -> Any:
        self.spawned.append((protocol, executable, args, kw))
        return self.process

    def stop(self) -> None:
        self.stopped = True


class _PeerSocket:
    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        return struct.pack("3i", 99, os.getuid(), 0)


class _UnixTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.descriptors: list[int] = []

    def getHandle(self) -> Any:
        return _PeerSocket()

    def sendFileDescriptor(self, fd: int) -> None:
        self.descriptors.append(fd)


class SupervisorUpgradeTests(SynchronousTestCase):
    """
    With workers, the supervisor has every worker wait for its successor,
    then starts the new pgtwist and hands it the shared unix socket.
    """

    def setUp(self) -> None:
        self.runtime = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.runtime, True)
        self.supervisor = _Supervisor(self.runtime)
        self.reactor = _Reactor()
        self.upgrade = workers.SupervisorUpgrade(
            self.supervisor,  # type: ignore[arg-type]
            self.reactor,
        )

    def ready(self) -> None:
        """
        Both workers wait for their successors.
        """
        for index in range(2):
            open(workers.handoverPath(self.runtime, index), "w").close()
        self.reactor.advance(0.05)

    def test_workersFirst(self) -> None:
        """
        The workers are told (SIGUSR2) first; the new pgtwist starts only
        once each waits for its successor, told where they wait; the
        supervisor's socket is private to this user.
        """
        self.assertEqual(self.supervisor.signals, [signal.SIGUSR2])
        self.reactor.advance(0.05)
        self.assertEqual(self.reactor.spawned, [])
        self.ready()
        (spawned,) = self.reactor.spawned
        env = spawned[3]["env"]
        self.assertEqual(env[workers.WORKERS_ENVIRONMENT], f"2:{self.runtime}")
        self.assertEqual(env[upgrades.ENVIRONMENT], self.upgrade.path)
        self.assertEqual(self.reactor.unixServers[0][0], self.upgrade.path)
        self.assertEqual(self.reactor.unixServers[0][3], 0o600)

    def test_workersNotReady(self) -> None:
        """
        Workers that do not get ready in time: nothing is started and the
        supervisor goes on.
        """
        self.reactor.advance(workers.PREPARE_TIMEOUT + 0.1)
        self.reactor.advance(0.05)
        self.assertEqual(self.reactor.spawned, [])
        self.assertEqual(self.supervisor.ended, [False])

    def test_sharedSockets(self) -> None:
        """
        After its hello, the new supervisor is sent the shared sockets;
        once it took them, this supervisor's copies are closed.
        """
        self.ready()
        factory = self.reactor.unixServers[0][1]
        protocol = factory.buildProtocol(None)
        transport = _UnixTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(handover.encode(handover.Hello(1, "9.9", (1, 2))))
        self.assertEqual(transport.descriptors, [5])
        (listeners,) = handover.Decoder().feed(transport.value())
        assert isinstance(listeners, handover.Listeners)
        self.assertEqual([r.family for r in listeners.listeners], [socket.AF_UNIX])
        self.assertEqual(self.supervisor.ended, [])
        protocol.dataReceived(handover.encode(handover.Taken(1), 2))
        self.assertEqual(self.supervisor.ended, [True])
        self.assertTrue(self.supervisor.sockets[0].closed)
        self.assertEqual(self.reactor.process.signals, [])

    def test_refused(self) -> None:
        """
        A new supervisor that refuses (another worker count, say) leaves
        everything here; it is told to stop.
        """
        self.ready()
        protocol = self.reactor.unixServers[0][1].buildProtocol(None)
        protocol.makeConnection(_UnixTransport())
        protocol.dataReceived(handover.encode(handover.Refuse("workers changed")))
        self.assertEqual(self.supervisor.ended, [False])
        self.assertFalse(self.supervisor.sockets[0].closed)
        self.assertEqual(self.reactor.process.signals, ["TERM"])


class _Main:
    workers = 2
    upgradeGracePeriod = 30.0


class _Config:
    main = _Main()


class HandedOverSupervisorTests(SynchronousTestCase):
    """
    A supervisor whose successor took the shared sockets starts no worker
    again, and exits once the last one ended.
    """

    def test_exitsAfterWorkers(self) -> None:
        """
        Workers that end after handing over are not started again; the
        supervisor stops with the last one, and shuts the stragglers down
        after the grace period.
        """
        reactor = _Reactor()
        supervisor = workers.WorkerSupervisor(_Config(), [], reactor)  # type: ignore[arg-type]
        supervisor.processes = {0: _Process(), 1: _Process()}
        supervisor.upgradeEnded(True)
        supervisor.workerEnded(0, Failure(ConnectionDone()))
        self.assertFalse(reactor.stopped)
        reactor.advance(35.0)
        self.assertEqual(supervisor.processes[1].signals, ["TERM"])
        supervisor.workerEnded(1, Failure(ConnectionDone()))
        self.assertTrue(reactor.stopped)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_notFromUpgrade(self) -> None:
        """
        Without the hand-over variables, a supervisor listens itself.
        """
        self.assertIsNone(workers.takeSupervisorSockets(2, {}))


class WorkerUpgradeTests(SynchronousTestCase):
    """
    C{UPGRADE} on a worker's console asks the supervisor (SIGUSR2), which
    has every worker wait for its successor.
    """

    def setUp(self) -> None:
        from pgtwist.app.service import WorkerRole, buildService
        from tests.unit._console import makeConfiguration

        self.killed: list[tuple[int, int]] = []
        self.patch(os, "kill", lambda pid, sig: self.killed.append((pid, sig)))
        self.reactor = _Reactor()
        self.runtime = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.runtime, True)
        role = WorkerRole(
            1,
            2,
            [],
            f"unix:{cancelPath(self.runtime, 1)}:mode=600",
            lambda worker, packet: None,
            handover=workers.handoverPath(self.runtime, 1),
        )
        self.service = buildService(makeConfiguration(), self.reactor, worker=role)

    def test_asksSupervisor(self) -> None:
        """
        The supervisor is signalled; no answer from it within the bound
        means the upgrade failed.
        """
        results: list[bool] = []
        self.service.upgrade().addCallback(results.append)
        self.assertEqual(self.killed, [(os.getppid(), signal.SIGUSR2)])
        self.reactor.advance(14.0)
        self.assertEqual(results, [])
        self.reactor.advance(1.0)
        self.assertEqual(results, [False])

    def test_answeredByOwnPart(self) -> None:
        """
        Once the supervisor's SIGUSR2 comes back, this worker waits for its
        successor on its own socket, and the answer is whether it came.
        """
        results: list[bool] = []
        self.service.upgrade().addCallback(results.append)
        self.service.prepareHandOver()
        upgrade = self.service.upgrading
        assert upgrade is not None
        self.addCleanup(shutil.rmtree, upgrade.runtime, True)
        self.assertEqual(self.reactor.unixServers[-1][0], workers.handoverPath(self.runtime, 1))
        self.assertEqual(self.reactor.spawned, [])
        self.reactor.advance(15.0)
        self.assertEqual(results, [])
        self.reactor.advance(upgrades.HANDOVER_TIMEOUT)
        self.assertEqual(results, [False])
        self.assertIsNone(self.service.upgrading)
