"""
Tests for L{pgtwist.net.handover} (the hand-over message format) and the
old process's side of an upgrade, L{pgtwist.app.handover}.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.app import handover as app
from pgtwist.net import handover
from pgtwist.net.cancel import CancelRegistry
from pgtwist.wire import codec, constants
from pgtwist.wire.messages import CancelRequest, ErrorResponse

LISTENERS = handover.Listeners(
    (
        handover.ListenerRecord("tcp:6432:interface=127.0.0.1:backlog=128", 2, "listen"),
        handover.ListenerRecord("unix:/tmp/.s.PGSQL.6432:mode=777:lockfile=1", 1, "listen"),
    )
)


def frame(body: object, version: int = handover.FORMAT_VERSION, magic: bytes = b"PGTH") -> bytes:
    """
    A frame around the JSON of C{body}.
    """
    data = json.dumps(body).encode()
    return handover.HEADER.pack(magic, version, len(data)) + data


class FormatTests(SynchronousTestCase):
    """
    Every message survives encoding; anything off the format is refused.
    """

    def test_roundTrip(self) -> None:
        """
        Each message decodes to what was encoded.
        """
        messages: list[handover.HandoverMessage] = [
            handover.Hello(1234, "0.1.0", (1,)),
            LISTENERS,
            handover.Taken(2),
            handover.Refuse("no"),
        ]
        decoder = handover.Decoder()
        self.assertEqual(decoder.feed(b"".join(map(handover.encode, messages))), messages)

    def test_split(self) -> None:
        """
        A frame that arrives a byte at a time decodes once complete.
        """
        decoder = handover.Decoder()
        data = handover.encode(LISTENERS)
        for byte in data[:-1]:
            self.assertEqual(decoder.feed(bytes([byte])), [])
        self.assertEqual(decoder.pending, len(data) - 1)
        self.assertEqual(decoder.feed(data[-1:]), [LISTENERS])
        self.assertEqual(decoder.pending, 0)

    def test_header(self) -> None:
        """
        The header is the magic, the version and the body's length.
        """
        data = handover.encode(handover.Taken(3))
        self.assertEqual(data[:4], b"PGTH")
        self.assertEqual(struct.unpack("!HI", data[4:10]), (2, len(data) - 10))
        self.assertEqual(struct.unpack("!HI", handover.encode(handover.Taken(3), 1)[4:10])[0], 1)

    def test_helloVersion1(self) -> None:
        """
        A hello is framed as version 1, which every pgtwist reads, whatever
        versions it names.
        """
        data = handover.encode(handover.Hello(1, "x", (1, 2)))
        self.assertEqual(struct.unpack("!H", data[4:6]), (1,))

    def assertRefused(self, data: bytes, reason: str) -> None:
        """
        Decoding C{data} raises L{handover.HandoverError} mentioning C{reason}.
        """
        error = self.assertRaises(handover.HandoverError, handover.Decoder().feed, data)
        self.assertIn(reason, str(error))

    def test_otherVersion(self) -> None:
        """
        A version this pgtwist does not read is refused before its body.
        """
        self.assertRefused(frame({"type": "taken", "count": 1}, version=3), "version 3")

    def test_magic(self) -> None:
        """
        Bytes that are not a hand-over frame are refused.
        """
        self.assertRefused(frame({"type": "taken", "count": 1}, magic=b"GET "), "not a pgtwist")

    def test_tooLong(self) -> None:
        """
        A length over L{handover.MAX_BODY} is refused from the header alone.
        """
        header = handover.HEADER.pack(b"PGTH", 1, handover.MAX_BODY + 1)
        self.assertRefused(header, "too long")
        self.assertRaises(
            handover.HandoverError, handover.encode, handover.Refuse("x" * handover.MAX_BODY)
        )

    def test_notJson(self) -> None:
        """
        A body that is not a JSON object is refused.
        """
        self.assertRefused(handover.HEADER.pack(b"PGTH", 1, 3) + b"{{{", "not JSON")
        self.assertRefused(frame([1, 2]), "not a JSON object")

    def test_unknownType(self) -> None:
        """
        A message type this version does not know is refused.
        """
        self.assertRefused(frame({"type": "clients"}), "unknown message type")

    def test_badFields(self) -> None:
        """
        Missing fields, fields of the wrong type (booleans are not numbers)
        and unknown roles are refused.
        """
        self.assertRefused(frame({"type": "hello", "version": "1", "readable": [1]}), "'pid'")
        self.assertRefused(
            frame({"type": "hello", "pid": True, "version": "1", "readable": [1]}), "'pid'"
        )
        self.assertRefused(
            frame({"type": "hello", "pid": 1, "version": "1", "readable": []}), "readable"
        )
        self.assertRefused(frame({"type": "taken", "count": -1}), "negative")
        self.assertRefused(
            frame(
                {"type": "listeners", "listeners": [{"description": "x", "family": 2, "role": "?"}]}
            ),
            "unknown role",
        )
        self.assertRefused(frame({"type": "listeners", "listeners": [3]}), "not an object")

    def test_tooManyListeners(self) -> None:
        """
        A listeners message may carry at most L{handover.MAX_DESCRIPTORS}.
        """
        item = {"description": "x", "family": 2, "role": "listen"}
        many = {"type": "listeners", "listeners": [item] * (handover.MAX_DESCRIPTORS + 1)}
        self.assertRefused(frame(many), "too many")

    def test_descriptorCount(self) -> None:
        """
        Only a listeners message carries descriptors, one per listener.
        """
        self.assertEqual(handover.descriptorCount(LISTENERS), 2)
        self.assertEqual(handover.descriptorCount(handover.Taken(2)), 0)


class PredecessorCancelTests(SynchronousTestCase):
    """
    After an upgrade, a CancelRequest the new process does not know is
    offered to the old one, whose clients stayed there.
    """

    def test_unknownKeyOffered(self) -> None:
        """
        An unknown key goes to the predecessor as a CancelRequest packet; a
        known one does not.
        """
        registry = CancelRegistry(MemoryReactorClock())
        offered: list[bytes] = []
        registry.predecessor = offered.append
        self.assertFalse(registry.cancel(CancelRequest(7, 8)))
        self.assertEqual(offered, [codec.encode(CancelRequest(7, 8))])
        pid = 9
        secret = registry.register(pid, lambda: None)
        registry.cancel(CancelRequest(pid, secret))
        self.assertEqual(len(offered), 1)

    def test_listenersCarryCancelPath(self) -> None:
        """
        The listeners message says where the old process takes cancels.
        """
        message = handover.Listeners(LISTENERS.listeners, "/tmp/x/cancel.sock")
        self.assertEqual(handover.Decoder().feed(handover.encode(message)), [message])
        self.assertRaises(
            handover.HandoverError,
            handover.Decoder().feed,
            frame({"type": "listeners", "listeners": [], "cancel": 3}),
        )


class _ListeningSocket:
    def __init__(self) -> None:
        self.backlogs: list[int] = []

    def listen(self, backlog: int) -> None:
        self.backlogs.append(backlog)


class _AdoptedPort:
    def __init__(self) -> None:
        self.socket = _ListeningSocket()


class _AdoptingReactor:
    def __init__(self) -> None:
        self.adopted: list[tuple[int, int]] = []
        self.port = _AdoptedPort()

    def adoptStreamPort(self, fd: int, family: int, factory: object) -> _AdoptedPort:
        self.adopted.append((fd, family))
        return self.port


class AdoptTests(SynchronousTestCase):
    """
    A listener handed over by the process being upgraded is adopted.
    """

    def test_adopt(self) -> None:
        """
        The socket is adopted rather than bound, its descriptor closed (the
        port holds a copy), and the description's backlog applied again.
        """
        from pgtwist.net.listeners import ListenerService

        reactor = _AdoptingReactor()
        read, write = os.pipe()
        self.addCleanup(os.close, write)
        listener = ListenerService(reactor, "tcp:6432:interface=127.0.0.1:backlog=128", object())
        listener.adopt = f"{read}:2"
        listener.privilegedStartService()
        self.assertEqual(reactor.adopted, [(read, 2)])
        self.assertIs(listener.port, reactor.port)
        self.assertEqual(reactor.port.socket.backlogs, [128])
        self.assertRaises(OSError, os.fstat, read)

    def test_workerKeepsSupervisorsFile(self) -> None:
        """
        A worker's copy of the supervisor's unix socket does not remove its
        file when it closes: the supervisor does, once (each worker trying
        too found it gone and logged a FileNotFoundError at shutdown).
        """
        from pgtwist.net.listeners import ListenerService

        reactor = _AdoptingReactor()
        reactor.port._bindPath = "/tmp/.s.PGSQL.6432"  # type: ignore[attr-defined]
        listener = ListenerService(reactor, f"adopt:5:{socket.AF_UNIX}", object())
        listener.privilegedStartService()
        self.assertEqual(reactor.adopted, [(5, socket.AF_UNIX)])
        self.assertEqual(reactor.port._bindPath, "\0")  # type: ignore[attr-defined]


class SuccessorCommandTests(SynchronousTestCase):
    """
    The new process runs twistd with the old one's arguments.
    """

    def test_pidfile(self) -> None:
        """
        The old process's pid file is not given to the new one.
        """
        command = app.successorCommand(
            ["twistd", "--pidfile", "/run/p.pid", "--reactor=pgtwist", "pgtwist", "-c", "a"]
        )
        self.assertEqual(command[0], app.sys.executable)
        self.assertEqual(command[3:], ["--reactor=pgtwist", "--pidfile=", "pgtwist", "-c", "a"])
        command = app.successorCommand(["twistd", "--pidfile=/p", "-n", "pgtwist"])
        self.assertEqual(command[3:], ["-n", "--pidfile=", "pgtwist"])


class _Socket:
    def __init__(self, fd: int, family: int) -> None:
        self._fd = fd
        self.family = family

    def fileno(self) -> int:
        return self._fd


class _Port:
    def __init__(self, fd: int, family: int, bindPath: str | None = None) -> None:
        self.socket = _Socket(fd, family)
        self._shouldShutdown = True
        if bindPath is not None:
            self._bindPath = bindPath
            self.lockFile = object()


class _Listener:
    def __init__(self, description: str, port: _Port) -> None:
        self.description = description
        self.name = f"listen:{description}"
        self.port: _Port | None = port
        self.running = True

    def stopService(self) -> None:
        self.running = False
        self.port = None


class _Client:
    def __init__(self) -> None:
        self.failed: list[ErrorResponse | None] = []

    def fail(self, error: ErrorResponse | None) -> None:
        self.failed.append(error)


class _Management:
    state = "running"


class _Main:
    upgradeGracePeriod = 30.0


class _Config:
    main = _Main()


class _Factory:
    def __init__(self) -> None:
        self.clients = {_Client()}


class _Service:
    def __init__(self) -> None:
        self.listeners = [
            _Listener(LISTENERS.listeners[0].description, _Port(7, socket.AF_INET)),
            _Listener(
                LISTENERS.listeners[1].description,
                _Port(8, socket.AF_UNIX, "/tmp/.s.PGSQL.6432"),
            ),
        ]
        self.managementListener = None
        self.worker: Any = None
        self.observability: list[Any] = []
        self.factory = _Factory()
        self.cancels = CancelRegistry(MemoryReactorClock())
        self.management = _Management()
        self.config = _Config()


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
    def __init__(self, uid: int) -> None:
        self.uid = uid

    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        return struct.pack("3i", 99, self.uid, 0)


class _UnixTransport(StringTransport):
    def __init__(self, uid: int) -> None:
        super().__init__()
        self.descriptors: list[int] = []
        self.sock = _PeerSocket(uid)
        self.aborted = False

    def getHandle(self) -> Any:
        return self.sock

    def sendFileDescriptor(self, fd: int) -> None:
        self.descriptors.append(fd)

    def abortConnection(self) -> None:
        self.aborted = True


class OldSideTests(SynchronousTestCase):
    """
    The running pgtwist hands its listeners only to a new process that
    reads its format, and keeps them otherwise.
    """

    def setUp(self) -> None:
        self.reactor = _Reactor()
        self.service = _Service()
        self.ended: list[app.Upgrade] = []
        self.upgrade = app.Upgrade(
            self.service,  # type: ignore[arg-type]
            self.reactor,
            ["python", "-c", "run", "--nodaemon", "pgtwist"],
            self.ended.append,
        )
        self.results: list[bool] = []
        self.upgrade.done.addCallback(self.results.append)
        self.addCleanup(app.shutil.rmtree, self.upgrade.runtime, True)

    def connect(self, uid: int | None = None) -> tuple[app._OldSide, _UnixTransport]:
        """
        A connection to the hand-over socket from a peer running as C{uid}.
        """
        factory = self.reactor.unixServers[0][1]
        protocol = factory.buildProtocol(None)
        transport = _UnixTransport(os.getuid() if uid is None else uid)
        protocol.makeConnection(transport)
        return protocol, transport

    def replies(self, transport: _UnixTransport) -> list[handover.HandoverMessage]:
        """
        What the old process wrote to C{transport}.
        """
        return handover.Decoder().feed(transport.value())

    def hello(self, readable: tuple[int, ...] = (1,)) -> bytes:
        """
        A new process's hello.
        """
        return handover.encode(handover.Hello(5555, "9.9", readable))

    def test_started(self) -> None:
        """
        The new process is started with the hand-over socket's path in its
        environment; the socket is private to this user.
        """
        self.assertEqual(self.reactor.unixServers[0][0], self.upgrade.path)
        self.assertEqual(self.reactor.unixServers[0][3], 0o600)
        _, executable, args, kw = self.reactor.spawned[0]
        self.assertEqual(executable, "python")
        self.assertEqual(kw["env"][app.ENVIRONMENT], self.upgrade.path)

    def test_handOver(self) -> None:
        """
        After a hello, the listeners are sent with their descriptors in
        order; once taken, they are closed here without removing the unix
        socket's file and without shutting the shared sockets down, and this
        process drains.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(self.hello())
        self.assertEqual(transport.descriptors, [7, 8])
        cancel = os.path.join(self.upgrade.runtime, "cancel.sock")
        self.assertEqual(self.replies(transport), [handover.Listeners(LISTENERS.listeners, cancel)])
        self.assertEqual(self.reactor.unixServers[1][0], cancel)
        self.assertEqual(self.reactor.unixServers[1][3], 0o600)
        ports = [listener.port for listener in self.service.listeners]
        protocol.dataReceived(handover.encode(handover.Taken(2)))
        self.assertEqual(self.results, [True])
        self.assertEqual([listener.running for listener in self.service.listeners], [False] * 2)
        self.assertEqual([port._shouldShutdown for port in ports if port], [False, False])
        self.assertEqual(ports[1]._bindPath, "\0")  # type: ignore[union-attr]
        self.assertIsNone(ports[1].lockFile)  # type: ignore[union-attr]
        self.assertEqual(self.service.management.state, "upgraded")
        self.assertEqual(self.reactor.process.signals, [])
        self.assertFalse(self.reactor.stopped)
        self.service.factory.clients.clear()
        self.reactor.advance(0.1)
        self.assertTrue(self.reactor.stopped)
        self.assertEqual(self.ended, [self.upgrade])

    def test_graceOver(self) -> None:
        """
        After C{upgrade_grace_period}, the clients still here get 57P01 and
        the process stops.
        """
        protocol, _ = self.connect()
        protocol.dataReceived(self.hello())
        protocol.dataReceived(handover.encode(handover.Taken(2)))
        for _ in range(290):
            self.reactor.advance(0.1)
        self.assertFalse(self.reactor.stopped)
        self.reactor.advance(1.0)
        self.assertTrue(self.reactor.stopped)
        (client,) = self.service.factory.clients
        (error,) = client.failed
        assert error is not None
        self.assertIn(constants.SQLSTATE_ADMIN_SHUTDOWN, codec.encode(error).decode("latin-1"))

    def assertKept(self) -> None:
        """
        The upgrade failed: every listener still listens, the new process
        was told to stop.
        """
        self.assertEqual(self.results, [False])
        self.assertEqual([listener.running for listener in self.service.listeners], [True] * 2)
        self.assertEqual(self.service.management.state, "running")
        self.assertEqual(self.reactor.process.signals, ["TERM"])

    def test_otherFormat(self) -> None:
        """
        A new process that does not read this format is refused, and sent
        no descriptor.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(self.hello(readable=(3, 4)))
        (refusal,) = self.replies(transport)
        assert isinstance(refusal, handover.Refuse)
        self.assertIn("reads hand-over format 3, 4", refusal.reason)
        self.assertEqual(transport.descriptors, [])
        self.assertKept()

    def test_newRefuses(self) -> None:
        """
        A new process that refuses the listeners leaves them here.
        """
        protocol, _ = self.connect()
        protocol.dataReceived(self.hello())
        protocol.dataReceived(handover.encode(handover.Refuse("listen addresses changed")))
        self.assertKept()

    def test_garbage(self) -> None:
        """
        Bytes off the format end the hand-over.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertIsInstance(self.replies(transport)[0], handover.Refuse)
        self.assertKept()

    def test_wrongCount(self) -> None:
        """
        A new process that says it took another number of listeners than
        it was sent is refused.
        """
        protocol, _ = self.connect()
        protocol.dataReceived(self.hello())
        protocol.dataReceived(handover.encode(handover.Taken(1)))
        self.assertKept()

    def test_takenBeforeHello(self) -> None:
        """
        Messages out of order are refused.
        """
        protocol, _ = self.connect()
        protocol.dataReceived(handover.encode(handover.Taken(0)))
        self.assertKept()

    def test_closed(self) -> None:
        """
        A new process that goes away before taking the listeners leaves
        them here.
        """
        protocol, _ = self.connect()
        protocol.dataReceived(self.hello())
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertKept()

    def test_ended(self) -> None:
        """
        A new process that exits before connecting (a broken configuration)
        fails the upgrade at once.
        """
        protocol = self.reactor.spawned[0][0]
        protocol.processEnded(Failure(ConnectionDone()))
        self.assertKept()

    def test_timeout(self) -> None:
        """
        A new process that takes too long fails the upgrade.
        """
        self.reactor.advance(app.HANDOVER_TIMEOUT)
        self.assertKept()

    def test_otherUser(self) -> None:
        """
        A peer running as another user is cut off; so is a second peer.
        """
        _, transport = self.connect(uid=os.getuid() + 1)
        self.assertTrue(transport.aborted)
        self.connect()
        _, second = self.connect()
        self.assertTrue(second.aborted)
        self.assertEqual(self.results, [])


class _WorkerService(_Service):
    """
    A worker's service: its own TCP share and the supervisor's unix
    socket (both adopted), its private cancel socket, the management port.
    """

    def __init__(self) -> None:
        super().__init__()
        self.listeners = [
            _Listener("adopt:7:2", _Port(7, socket.AF_INET)),
            _Listener("adopt:3:1", _Port(3, socket.AF_UNIX, "/tmp/.s.PGSQL.6432")),
            _Listener("unix:/tmp/w/cancel-0.sock:mode=600", _Port(9, socket.AF_UNIX)),
        ]
        self.managementListener = _Listener("tcp:6433", _Port(11, socket.AF_INET))
        self.worker = object()


class WorkerOldSideTests(SynchronousTestCase):
    """
    A worker waits for its successor where its supervisor says, and hands
    it its own share of the TCP address and the management port only.
    """

    def setUp(self) -> None:
        self.reactor = _Reactor()
        self.service = _WorkerService()
        self.upgrade = app.Upgrade(
            self.service,  # type: ignore[arg-type]
            self.reactor,
            [],
            lambda upgrade: None,
            path="/tmp/w/handover-0.sock",
        )
        self.addCleanup(app.shutil.rmtree, self.upgrade.runtime, True)

    def test_waits(self) -> None:
        """
        No process is started: the socket at the given path, private to
        this user, waits for the new supervisor's worker.
        """
        self.assertEqual(self.reactor.spawned, [])
        self.assertEqual(self.reactor.unixServers[0][0], "/tmp/w/handover-0.sock")
        self.assertEqual(self.reactor.unixServers[0][3], 0o600)

    def test_handOver(self) -> None:
        """
        The TCP share and the management port go; once taken, both stop
        here and so does the supervisor's unix socket (without removing
        its file); the private cancel socket goes on serving.
        """
        factory = self.reactor.unixServers[0][1]
        protocol = factory.buildProtocol(None)
        transport = _UnixTransport(os.getuid())
        protocol.makeConnection(transport)
        protocol.dataReceived(handover.encode(handover.Hello(5555, "9.9", (1,))))
        self.assertEqual(transport.descriptors, [7, 11])
        (listeners,) = handover.Decoder().feed(transport.value())
        assert isinstance(listeners, handover.Listeners)
        self.assertEqual(
            [(r.family, r.role) for r in listeners.listeners],
            [(socket.AF_INET, "listen"), (socket.AF_INET, "management")],
        )
        shared = self.service.listeners[1].port
        protocol.dataReceived(handover.encode(handover.Taken(2)))
        self.assertEqual(
            [listener.running for listener in self.service.listeners], [False, False, True]
        )
        self.assertFalse(self.service.managementListener.running)
        assert shared is not None
        self.assertEqual(shared._bindPath, "\0")
        self.assertFalse(shared._shouldShutdown)
        self.assertFalse(self.reactor.stopped)

    def test_failedKeepsServing(self) -> None:
        """
        A successor that never comes: after the hand-over timeout this
        worker goes on as before, and there is no process to stop.
        """
        results: list[bool] = []
        self.upgrade.done.addCallback(results.append)
        self.reactor.advance(app.HANDOVER_TIMEOUT)
        self.assertEqual(results, [False])
        self.assertTrue(all(listener.running for listener in self.service.listeners))


class _HandoverSocket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True


class _NewWorkerService:
    def __init__(self, management: bool) -> None:
        self.listeners = [
            _Listener(app.WORKER_TCP, _Port(0, socket.AF_INET)),
            _Listener("adopt:3:1", _Port(3, socket.AF_UNIX)),
        ]
        self.managementListener = (
            _Listener("tcp:6433", _Port(0, socket.AF_INET)) if management else None
        )
        self.worker = object()
        self.cancels = CancelRegistry(MemoryReactorClock())


class WorkerSuccessorTests(SynchronousTestCase):
    """
    A new worker matches its predecessor's listeners by role (their
    descriptions name descriptors of another generation).
    """

    def successor(self) -> tuple[app.Successor, _HandoverSocket]:
        successor = app.Successor.__new__(app.Successor)
        sock = _HandoverSocket()
        successor.sock = sock  # type: ignore[assignment]
        successor.version = 2
        return successor, sock

    def pipes(self, count: int) -> list[int]:
        fds = []
        for _ in range(count):
            read, write = os.pipe()
            os.close(write)
            fds.append(read)
            self.addCleanup(lambda fd=read: _closeQuietly(fd))
        return fds

    def test_byRole(self) -> None:
        """
        The TCP share is adopted by the listener waiting for it, the
        management port by the management listener; the shared unix socket
        is not touched (the supervisor handed it down already).
        """
        successor, _ = self.successor()
        service = _NewWorkerService(management=True)
        fds = self.pipes(2)
        message = handover.Listeners(
            (
                handover.ListenerRecord("adopt:7:2", socket.AF_INET, "listen"),
                handover.ListenerRecord("tcp:6433", socket.AF_INET, "management"),
            )
        )
        successor._takeWorkerListeners(service, message, fds)  # type: ignore[arg-type]
        self.assertEqual(service.listeners[0].adopt, f"{fds[0]}:{socket.AF_INET}")  # type: ignore[attr-defined]
        self.assertFalse(hasattr(service.listeners[1], "adopt"))
        assert service.managementListener is not None
        self.assertEqual(service.managementListener.adopt, f"{fds[1]}:{socket.AF_INET}")  # type: ignore[attr-defined]

    def test_otherSockets(self) -> None:
        """
        A predecessor with other sockets (here a management port this
        worker does not serve) is refused: the old worker goes on.
        """
        successor, sock = self.successor()
        service = _NewWorkerService(management=False)
        fds = self.pipes(2)
        message = handover.Listeners(
            (
                handover.ListenerRecord("adopt:7:2", socket.AF_INET, "listen"),
                handover.ListenerRecord("tcp:6433", socket.AF_INET, "management"),
            )
        )
        with self.assertRaises(handover.HandoverError):
            successor._takeWorkerListeners(service, message, fds)  # type: ignore[arg-type]
        (refusal,) = handover.Decoder().feed(b"".join(sock.sent))
        self.assertIsInstance(refusal, handover.Refuse)
        self.assertTrue(sock.closed)
        for fd in fds:
            self.assertRaises(OSError, os.fstat, fd)


def _closeQuietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
