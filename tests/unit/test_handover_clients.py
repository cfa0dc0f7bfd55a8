"""
Tests for handing live clients over in an upgrade (issue 17): what the
transaction pipeline exports of an idle client and takes back in another
process (L{pgtwist.pipelines.transaction}), and the old and new processes'
ends of a client's hand-over (L{pgtwist.app.handover}).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.app import handover as app
from pgtwist.app.bootstrap import loadPlugins
from pgtwist.config.model import Configuration, MainSettings, ServerSettings
from pgtwist.interfaces import SESSION_IDLE_IN_TRANSACTION
from pgtwist.net import handover
from pgtwist.net.backend import BackendProtocol
from pgtwist.net.cancel import CancelRegistry
from pgtwist.net.frontend import FrontendFactory, FrontendState
from pgtwist.pipelines._statements import StatementKey
from pgtwist.pipelines.session import SessionPipelineSession
from pgtwist.pool.poolset import PoolSet
from pgtwist.pool.state import BackendState
from pgtwist.testing import FakeBackendPool, FakeFrontendLink, FakePooledConnection
from pgtwist.wire import codec
from pgtwist.wire.messages import (
    BindComplete,
    CommandComplete,
    Execute,
    ParameterStatus,
    Parse,
    ParseComplete,
    Query,
    ReadyForQuery,
    Sync,
)
from tests.unit._pipelinescript import (
    Q1,
    TransactionScript,
    bind,
    fromClient,
    fromServer,
    makeBackend,
    selected,
)
from tests.unit.test_frontend import makeConfiguration


class ExportTests(SynchronousTestCase):
    """
    An idle transaction-pooling client's state survives an export and an
    import into another pipeline (another process): its settings and its
    prepared statements, which the next backend gets prepared.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self, startup={"application_name": "app"})
        self.script.play(
            [
                fromClient(
                    [Parse("s1", Q1, (23,)), bind("s1"), Execute(""), Sync()],
                    toServer=[
                        Parse("PGTWIST_1", Q1, (23,)),
                        bind("PGTWIST_1"),
                        Execute(""),
                        Sync(),
                    ],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), *selected(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), BindComplete(), *selected(), ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_roundTrip(self) -> None:
        """
        The exported state is JSON; imported into a new pipeline (another
        process: a statement registry of its own), the client's next Bind
        of its statement gets it prepared under that process's name, its
        settings are set on the new process's backend, and the client sees
        only its own answers.
        """
        state = self.script.session.exportState()
        assert state is not None
        state = json.loads(json.dumps(state))
        self.assertEqual(state["statements"], [["s1", Q1, [23], ""]])
        self.assertEqual(state["processId"], self.script.session.processId)
        other = TransactionScript(self, startup={"application_name": "app"}, login=False)
        # The new process named another statement first: PGTWIST_1 is not s1's there.
        other.pipeline.registry.nameFor(StatementKey("SELECT 0", (), ""))
        resumed = other.pipeline.resumeSession(
            other.frontend, other.pool, other.session.clock, state
        )
        other.session = resumed
        self.assertEqual(resumed.processId, self.script.session.processId)
        self.assertEqual(resumed.settings.fingerprint, self.script.session.settings.fingerprint)
        other.play(
            [
                fromClient(
                    [bind("s1", b"2"), Execute(""), Sync()],
                    toServer=[
                        Query("SELECT pg_catalog.set_config('application_name', 'app', false)"),
                        Parse("PGTWIST_2", Q1, (23,)),
                        bind("PGTWIST_2", b"2"),
                        Execute(""),
                        Sync(),
                    ],
                ),
                fromServer(
                    [ParameterStatus("application_name", "app"), CommandComplete("SET")]
                    + [ReadyForQuery(b"I"), ParseComplete(), BindComplete(), *selected(b"2")]
                    + [ReadyForQuery(b"I")],
                    toClient=[BindComplete(), *selected(b"2"), ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_notWhileBusy(self) -> None:
        """
        A client with a request out (its backend lent) is not exported.
        """
        self.script.useBackend(makeBackend(1002))
        self.script.session.frontendDataReceived(codec.encode(Query("SELECT 1")))
        self.assertIsNotNone(self.script.session.backend)
        self.assertIsNone(self.script.session.exportState())

    def test_badState(self) -> None:
        """
        A state that is not one an export gives is refused with
        C{ValueError}, whatever is wrong in it.
        """
        good = self.script.session.exportState()
        assert good is not None
        other = TransactionScript(self, login=False)
        for bad in [
            [],
            {},
            {**good, "processId": "1"},
            {**good, "reported": {"a": 1}},
            {**good, "identity": ["a"]},
            {**good, "statements": [["s1", Q1, ["23"], ""]]},
            {**good, "statements": [["s1"]]},
        ]:
            self.assertRaises(
                ValueError,
                other.pipeline.resumeSession,
                other.frontend,
                other.pool,
                other.session.clock,
                bad,
            )


class ClientFormatTests(SynchronousTestCase):
    """
    The version 2 messages survive encoding; they are refused in a
    version 1 frame; a client message carries one descriptor.
    """

    RECORD = handover.ClientRecord(
        3,
        socket.AF_INET,
        "db",
        "user",
        "alias",
        (("application_name", "app"),),
        1234,
        -5678,
        "transaction",
        {"statements": []},
    )

    def test_roundTrip(self) -> None:
        """
        Each message decodes to what was encoded.
        """
        backend = handover.BackendRecord(
            socket.AF_UNIX, "primary", "/tmp", 5432, 77, -1, {"TimeZone": "UTC"}, "T", {}
        )
        withBackend = dataclasses.replace(self.RECORD, backend=backend)
        idle = handover.IdleBackend(4, "db", "user", backend)
        messages: list[handover.HandoverMessage] = [
            self.RECORD,
            withBackend,
            idle,
            handover.Adopted(3),
            handover.Kept(3, "no"),
        ]
        data = b"".join(handover.encode(m) for m in messages)
        self.assertEqual(handover.Decoder().feed(data), messages)
        self.assertEqual(handover.descriptorCount(self.RECORD), 1)
        self.assertEqual(handover.descriptorCount(withBackend), 2)
        self.assertEqual(handover.descriptorCount(idle), 1)
        self.assertEqual(handover.descriptorCount(handover.Adopted(3)), 0)

    def test_notInVersion1(self) -> None:
        """
        A version 1 conversation has no client messages.
        """
        self.assertRaises(
            handover.HandoverError, handover.Decoder().feed, handover.encode(self.RECORD, 1)
        )

    def test_badFields(self) -> None:
        """
        Startup parameters must be pairs of strings.
        """
        body = json.loads(handover.encode(self.RECORD)[handover.HEADER.size :])
        body["startupParameters"] = [["a"]]
        data = json.dumps(body).encode()
        frame = handover.HEADER.pack(b"PGTH", 2, len(data)) + data
        self.assertRaises(handover.HandoverError, handover.Decoder().feed, frame)


SERVER = ServerSettings("primary", "127.0.0.1", 5432, True)


class _Handle:
    family = socket.AF_INET


class _SocketTransport(StringTransport):
    """
    A client connection as much as the hand-over looks at it.
    """

    dataBuffer = b""
    _tempDataLen = 0
    _shouldShutdown = True

    def getHandle(self) -> Any:
        return _Handle()

    def fileno(self) -> int:
        return 42


class _AdoptingReactor:
    """
    Adopts a descriptor as a connection over a L{_SocketTransport}.
    """

    def __init__(self) -> None:
        self.adopted: list[tuple[int, int]] = []
        self.transports: list[_SocketTransport] = []

    def adoptStreamConnection(self, fd: int, family: int, factory: Any) -> Any:
        self.adopted.append((fd, family))
        address = IPv4Address("TCP", "127.0.0.1", 50001)
        protocol = factory.buildProtocol(address)
        transport = _SocketTransport(peerAddress=address)
        protocol.makeConnection(transport)
        self.transports.append(transport)
        return transport


class _Service:
    def __init__(self, pipeline: str = "transaction") -> None:
        self.clock = Clock()
        self.cancels = CancelRegistry(None)
        methods, pipelines = loadPlugins()
        self.factory = FrontendFactory(
            makeConfiguration(pipeline=pipeline),
            FakeBackendPool(),
            self.clock,
            methods,
            pipelines,
            self.cancels,
        )


STATE = {
    "processId": 1234,
    "reported": {"application_name": "app"},
    "unreported": {},
    "session": None,
    "identity": None,
    "customs": None,
    "statements": [["s1", Q1, [23], ""]],
}


def _record(**changes: Any) -> handover.ClientRecord:
    fields: dict[str, Any] = {
        "id": 9,
        "family": socket.AF_INET,
        "database": "db",
        "user": "alice",
        "requestedDatabase": "db",
        "startupParameters": (("application_name", "app"),),
        "processId": 1234,
        "secretKey": -77,
        "pipeline": "transaction",
        "session": STATE,
    }
    fields.update(changes)
    return handover.ClientRecord(**fields)


class AdoptTests(SynchronousTestCase):
    """
    The new process takes a client as if it had logged in there, or says
    why not; either way it closes the descriptor it was sent.
    """

    def descriptor(self) -> int:
        """
        A descriptor to be sent (the read end of a pipe), whose close the
        test checks.
        """
        read, write = os.pipe()
        self.addCleanup(os.close, write)
        return read

    def assertClosed(self, fd: int) -> None:
        """
        C{fd} was closed.
        """
        self.assertRaises(OSError, os.fstat, fd)

    def test_adopted(self) -> None:
        """
        The client is served here: logged in, its cancel key known, its
        session resumed; no authentication timer runs; the old process
        can hand it back out (L{app.exportClient}) with the same state.
        """
        service, reactor, fd = _Service(), _AdoptingReactor(), self.descriptor()
        reply = app.adoptClient(service, reactor, _record(), [fd])  # type: ignore[arg-type]
        self.assertEqual(reply, handover.Adopted(9))
        self.assertClosed(fd)
        self.assertEqual(reactor.adopted, [(fd, socket.AF_INET)])
        (client,) = service.factory.clients
        self.assertIs(client.state, FrontendState.READY)
        self.assertEqual(client.key, ("db", "alice"))
        self.assertEqual(client.startupParameters, {"application_name": "app"})
        self.assertEqual((client.processId, client.secretKey), (1234, -77))
        self.assertEqual(len(service.cancels), 1)
        self.assertEqual(service.clock.getDelayedCalls(), [])
        exported = app.exportClient(client)
        assert exported is not None
        record, descriptors = exported
        self.assertEqual(descriptors, [42])
        self.assertEqual(record, _record(id=client.id))
        self.assertEqual(reactor.transports[0].producerState, "paused")
        app.forget(client)
        self.assertEqual(len(service.cancels), 0)
        self.assertIs(client.state, FrontendState.CLOSED)
        self.assertFalse(reactor.transports[0]._shouldShutdown)
        self.assertTrue(reactor.transports[0].disconnecting)
        self.assertEqual(reactor.transports[0].value(), b"")

    def test_otherPipeline(self) -> None:
        """
        A pool served by another pipeline here keeps its client there.
        """
        service, reactor, fd = _Service("session"), _AdoptingReactor(), self.descriptor()
        reply = app.adoptClient(service, reactor, _record(), [fd])  # type: ignore[arg-type]
        assert isinstance(reply, handover.Kept)
        self.assertIn("pipeline is session", reply.reason)
        self.assertClosed(fd)
        self.assertEqual((reactor.adopted, service.factory.clients), ([], set()))

    def test_badState(self) -> None:
        """
        A session state the pipeline does not take keeps the client there.
        """
        service, reactor, fd = _Service(), _AdoptingReactor(), self.descriptor()
        reply = app.adoptClient(
            service,  # type: ignore[arg-type]
            reactor,
            _record(session={"processId": "x"}),
            [fd],
        )
        self.assertIsInstance(reply, handover.Kept)
        self.assertClosed(fd)
        self.assertEqual((reactor.adopted, len(service.cancels)), ([], 0))

    def test_keyTaken(self) -> None:
        """
        A cancel key already given out here keeps the client there.
        """
        service, reactor, fd = _Service(), _AdoptingReactor(), self.descriptor()
        service.cancels.registerKey(1234, -77, lambda: None)
        reply = app.adoptClient(service, reactor, _record(), [fd])  # type: ignore[arg-type]
        assert isinstance(reply, handover.Kept)
        self.assertIn("cancel key", reply.reason)
        self.assertClosed(fd)
        self.assertEqual(reactor.adopted, [])

    def test_busyNotExported(self) -> None:
        """
        A client with something still to write, or over TLS, stays.
        """
        service, reactor = _Service(), _AdoptingReactor()
        app.adoptClient(service, reactor, _record(), [self.descriptor()])  # type: ignore[arg-type]
        (client,) = service.factory.clients
        reactor.transports[0].dataBuffer = b"x"
        self.assertIsNone(app.exportClient(client))
        reactor.transports[0].dataBuffer = b""
        client.encrypted = True
        self.assertIsNone(app.exportClient(client))
        self.assertEqual(reactor.transports[0].producerState, "producing")


class OldSideClientTests(SynchronousTestCase):
    """
    Once the new process took the listeners in format version 2, the old
    one sends it each idle client and acts on its answer.
    """

    def setUp(self) -> None:
        from tests.unit.test_handover import _Reactor
        from tests.unit.test_handover import _Service as _OldService

        self.reactor = _Reactor()
        self.service = _OldService()
        clients = _Service()
        self.service.factory = clients.factory  # type: ignore[assignment]
        self.service.cancels = clients.cancels
        adopting = _AdoptingReactor()
        read, write = os.pipe()
        os.close(write)
        app.adoptClient(clients, adopting, _record(), [read])  # type: ignore[arg-type]
        (self.client,) = clients.factory.clients
        self.clientTransport = adopting.transports[0]
        self.upgrade = app.Upgrade(
            self.service,  # type: ignore[arg-type]
            self.reactor,
            ["python", "-c", "run", "--nodaemon", "pgtwist"],
            lambda upgrade: None,
        )
        self.addCleanup(app.shutil.rmtree, self.upgrade.runtime, True)
        factory = self.reactor.unixServers[0][1]
        self.peer = factory.buildProtocol(None)
        from tests.unit.test_handover import _UnixTransport

        self.transport = _UnixTransport(os.getuid())
        self.peer.makeConnection(self.transport)
        self.peer.dataReceived(handover.encode(handover.Hello(5555, "9.9", (1, 2))))
        # Taken: the drain loop's first round sends the idle client at once.
        self.peer.dataReceived(handover.encode(handover.Taken(2), 2))

    def sent(self) -> list[handover.HandoverMessage]:
        """
        What the old process sent after the listeners.
        """
        return handover.Decoder().feed(self.transport.value())[1:]

    def test_sent(self) -> None:
        """
        The idle client goes with its descriptor, in format version 2, and
        is no longer read here.
        """
        self.assertEqual(self.upgrade.version, 2)
        self.assertEqual(self.transport.descriptors, [7, 8, 42])
        self.assertEqual(self.sent(), [_record(id=self.client.id)])
        self.assertEqual(self.clientTransport.producerState, "paused")
        self.reactor.advance(0.1)
        self.assertEqual(self.transport.descriptors, [7, 8, 42])

    def test_adopted(self) -> None:
        """
        A client the new process took is let go of without a word; once
        none is left, the old process exits.
        """
        self.peer.dataReceived(handover.encode(handover.Adopted(self.client.id), 2))
        self.assertIs(self.client.state, FrontendState.CLOSED)
        self.assertTrue(self.clientTransport.disconnecting)
        self.assertEqual(self.clientTransport.value(), b"")
        self.assertEqual(self.upgrade.handed, 1)
        self.service.factory.clients.clear()
        self.reactor.advance(0.1)
        self.assertTrue(self.reactor.stopped)

    def test_kept(self) -> None:
        """
        A client the new process would not take is read here again, and
        not sent again.
        """
        self.peer.dataReceived(handover.encode(handover.Kept(self.client.id, "no"), 2))
        self.assertIs(self.client.state, FrontendState.READY)
        self.assertEqual(self.clientTransport.producerState, "producing")
        self.reactor.advance(0.1)
        self.assertEqual(self.transport.descriptors, [7, 8, 42])
        self.assertFalse(self.reactor.stopped)

    def test_failureStopsHandingOver(self) -> None:
        """
        An error while handing clients over is logged and ends the
        hand-over: the clients sent are served here again, and the
        process goes on draining.
        """
        self.client.resumeReading()
        self.upgrade.inFlight.clear()

        def broken(client: object) -> None:
            raise RuntimeError("boom")

        self.patch(app, "exportClient", broken)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.upgrade.peer)
        self.service.factory.clients.clear()
        self.reactor.advance(0.1)
        self.assertTrue(self.reactor.stopped)

    def test_peerLost(self) -> None:
        """
        If the new process goes before answering, the clients it was sent
        are served here again.
        """
        self.peer.connectionLost(None)
        self.assertEqual(self.clientTransport.producerState, "producing")
        self.assertEqual(self.upgrade.inFlight, {})
        self.assertIs(self.client.state, FrontendState.READY)


class BackendHandOverTests(SynchronousTestCase):
    """
    A backend's side of a session-pooling hand-over: what it exports, how
    it resumes in the new process without a login, and how the pools
    count it in the new process and stop counting it in the old.
    """

    def test_resumedSendsNoStartup(self) -> None:
        """
        A resumed backend sends nothing when its socket is adopted; it has
        the key data, parameters, status and pgtwist's own prepared
        statements it had, and exports them again the same.
        """
        backend = BackendProtocol(("db", "alice"), SERVER, None, [], Clock())
        backend.resume(555, -9, {"TimeZone": "UTC"}, b"T", {"pgtwist_aq": "SELECT 1"})
        transport = _SocketTransport()
        backend.makeConnection(transport)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(
            backend.handOverState(),
            {
                "processId": 555,
                "secretKey": -9,
                "parameters": {"TimeZone": "UTC"},
                "transactionStatus": "T",
                "prepared": {"pgtwist_aq": "SELECT 1"},
            },
        )
        transport.dataBuffer = b"x"
        self.assertIsNone(backend.handOverState())

    def test_loggingInNotExported(self) -> None:
        """
        A backend still logging in is not handed over.
        """
        backend = BackendProtocol(("db", "alice"), SERVER, None, [], Clock())
        backend.makeConnection(_SocketTransport())
        self.assertIsNone(backend.handOverState())

    def test_poolAdoptsAndLetsGo(self) -> None:
        """
        An adopted backend is counted as lent, within C{max_connections};
        let go of, it is no longer counted, and not closed.
        """
        config = Configuration(main=MainSettings(maxConnections=1), servers=(SERVER,))
        pools = PoolSet(config, Clock(), [])
        first = FakePooledConnection(("db", "alice"), 1, SERVER)
        second = FakePooledConnection(("db", "alice"), 2, SERVER)
        self.assertTrue(pools.adoptBackend(first))
        self.assertFalse(pools.adoptBackend(second))
        entry = pools.entryFor(first)
        assert entry is not None
        self.assertIs(entry.state, BackendState.ACTIVE)
        self.assertEqual(pools.total, 1)
        self.assertIsNotNone(first.lostCallback)
        pools.letGo(first)
        self.assertEqual(pools.total, 0)
        self.assertIsNone(pools.entryFor(first))
        self.assertIsNone(first.lostCallback)
        self.assertFalse(first.closed)

    def test_takeIdle(self) -> None:
        """
        The idle backends wanted are taken out of the idle list, counted as
        lent; given back, they are idle again.
        """
        config = Configuration(main=MainSettings(maxConnections=3), servers=(SERVER,))
        pools = PoolSet(config, Clock(), [])
        backends = [FakePooledConnection(("db", "alice"), pid, SERVER) for pid in (1, 2)]
        for backend in backends:
            pools.adoptBackend(backend)
            pools.release(backend, reset=False)
        self.assertEqual(pools.takeIdle(lambda b: b.processId == 2), [backends[1]])
        self.assertEqual(len(pools.pool(("db", "alice")).idle), 1)
        entry = pools.entryFor(backends[1])
        assert entry is not None
        self.assertIs(entry.state, BackendState.ACTIVE)
        pools.release(backends[1], reset=False)
        self.assertEqual(len(pools.pool(("db", "alice")).idle), 2)

    def test_sessionExport(self) -> None:
        """
        A session-pooling client goes only between requests, with its
        backend; its state is its backend's.
        """
        frontend = FakeFrontendLink(("db", "alice"))
        session = SessionPipelineSession(frontend, FakeBackendPool(), Clock())
        self.assertIsNone(session.exportState())
        backend = FakePooledConnection(("db", "alice"), 1, SERVER)
        session.resume(backend)
        self.assertIs(session.backend, backend)
        self.assertEqual(session.exportState(), {})
        session.frontendDataReceived(codec.encode(Query("SELECT 1")))
        self.assertIsNone(session.exportState())

    def test_openTransactionTimedFromResume(self) -> None:
        """
        A transaction left open on a handed-over backend is timed from the
        hand-over, not from the start of the clock.
        """
        clock = Clock()
        clock.advance(1000)
        session = SessionPipelineSession(
            FakeFrontendLink(("db", "alice")), FakeBackendPool(), clock
        )
        backend = FakePooledConnection(("db", "alice"), 1, SERVER)
        backend.transactionStatus = b"T"
        session.resume(backend)
        self.assertEqual(session.timeoutState(), (SESSION_IDLE_IN_TRANSACTION, 1000.0, 1000.0))


class InheritanceTests(SynchronousTestCase):
    """
    The new process takes the pid file and the unix sockets' lock files
    once the old process has exited, and gives them up when it exits.
    """

    def test_pidfileOf(self) -> None:
        """
        twistd's C{--pidfile} in either spelling, its default, or none.
        """
        self.assertEqual(
            app.pidfileOf(["twistd", "--pidfile", "/run/p.pid", "pgtwist"]), "/run/p.pid"
        )
        self.assertEqual(app.pidfileOf(["twistd", "--pidfile=/run/q.pid", "pgtwist"]), "/run/q.pid")
        self.assertEqual(app.pidfileOf(["twistd", "--pidfile=", "pgtwist"]), "")
        self.assertEqual(
            app.pidfileOf(["twistd", "-n", "pgtwist", "--pidfile", "x"]),
            os.path.abspath("twistd.pid"),
        )

    def test_inherit(self) -> None:
        """
        Once the old process is gone, the pid file says this process's pid
        and the lock is taken; at shutdown both are given up.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        pidfile = os.path.join(directory, "pgtwist.pid")
        lock = os.path.join(directory, ".s.PGSQL.6432.lock")
        with open(pidfile, "w") as f:
            f.write("1")
        reactor = _ShutdownClock()
        # Above the largest pid_max Linux allows: no such process.
        gone = 2**22 + 1
        inheritance = app.Inheritance(reactor, gone, pidfile, [lock])
        inheritance.start()
        reactor.advance(0.5)
        with open(pidfile) as f:
            self.assertEqual(f.read(), str(os.getpid()))
        self.assertTrue(os.path.islink(lock))
        reactor.triggers[0]()
        self.assertFalse(os.path.exists(pidfile))
        self.assertFalse(os.path.lexists(lock))

    def test_waitsForPredecessor(self) -> None:
        """
        While the old process runs, nothing is touched.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        pidfile = os.path.join(directory, "pgtwist.pid")
        reactor = _ShutdownClock()
        inheritance = app.Inheritance(reactor, os.getpid(), pidfile, [])
        inheritance.start()
        reactor.advance(1.0)
        self.assertFalse(os.path.exists(pidfile))
        self.assertEqual(reactor.triggers, [])


class _ShutdownClock(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.triggers: list[Any] = []

    def addSystemEventTrigger(self, phase: str, event: str, f: Any, *args: Any) -> None:
        self.triggers.append(lambda: f(*args))


class NewSideTests(SynchronousTestCase):
    """
    The new process's end of the hand-over socket takes each client with
    the descriptors that came before its record, and answers; anything
    off the conversation ends it.
    """

    def setUp(self) -> None:
        self.service = _Service()
        self.reactor = _AdoptingReactor()
        self.side = app._NewSide(self.service, self.reactor)  # type: ignore[arg-type]
        self.transport = StringTransport()
        self.side.makeConnection(self.transport)

    def descriptor(self) -> int:
        """
        A descriptor as the old process would send (a pipe's read end).
        """
        read, write = os.pipe()
        os.close(write)
        return read

    def answers(self) -> list[handover.HandoverMessage]:
        """
        What the new process answered.
        """
        return handover.Decoder().feed(self.transport.value())

    def test_adopts(self) -> None:
        """
        A client record after its descriptor is adopted and answered in
        the conversation's version.
        """
        self.side.fileDescriptorReceived(self.descriptor())
        self.side.dataReceived(handover.encode(_record(id=5), 2))
        self.assertEqual(self.answers(), [handover.Adopted(5)])
        self.assertEqual(len(self.service.factory.clients), 1)
        self.assertEqual(self.side.taken, 1)

    def test_kept(self) -> None:
        """
        A client it cannot take is answered C{kept}, with the reason.
        """
        self.side.fileDescriptorReceived(self.descriptor())
        self.side.dataReceived(handover.encode(_record(id=5, pipeline="session"), 2))
        (answer,) = self.answers()
        assert isinstance(answer, handover.Kept)
        self.assertEqual(answer.id, 5)
        self.assertEqual(self.reactor.adopted, [])

    def test_noDescriptor(self) -> None:
        """
        A record without its descriptor ends the conversation.
        """
        self.side.dataReceived(handover.encode(_record(id=5), 2))
        (answer,) = self.answers()
        self.assertIsInstance(answer, handover.Refuse)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.service.factory.clients, set())

    def test_unexpected(self) -> None:
        """
        A message other than a client's or a backend's ends it too, and
        the descriptors received and not used are closed when it ends.
        """
        fd = self.descriptor()
        self.side.fileDescriptorReceived(fd)
        self.side.dataReceived(handover.encode(handover.Taken(1), 2))
        self.assertIsInstance(self.answers()[0], handover.Refuse)
        self.side.connectionLost(None)
        self.assertRaises(OSError, os.fstat, fd)


class IdleBackendAdoptTests(SynchronousTestCase):
    """
    The new process pools an idle backend it is handed, reset before its
    first client, within C{max_connections}.
    """

    def setUp(self) -> None:
        self.service = _Service()
        config = self.service.factory.config
        self.pools = PoolSet(config, Clock(), [])
        self.service.factory.pool = self.pools
        self.reactor = _AdoptingReactor()

    def record(self, server: str = "primary") -> handover.IdleBackend:
        """
        An idle backend of (db, alice) on C{server}.
        """
        backend = handover.BackendRecord(
            socket.AF_INET, server, "127.0.0.1", 5432, 77, -1, {"TimeZone": "UTC"}, "I", {}
        )
        return handover.IdleBackend(3, "db", "alice", backend)

    def descriptor(self) -> int:
        """
        A descriptor as the old process would send (a pipe's read end).
        """
        read, write = os.pipe()
        os.close(write)
        return read

    def test_adopted(self) -> None:
        """
        The backend is counted in its pool and reset (C{DISCARD ALL}): the
        old process's statement names and settings go before any client
        uses it.
        """
        fd = self.descriptor()
        reply = app.adoptIdleBackend(self.service, self.reactor, self.record(), [fd])  # type: ignore[arg-type]
        self.assertEqual(reply, handover.Adopted(3))
        self.assertRaises(OSError, os.fstat, fd)
        (transport,) = self.reactor.transports
        self.assertIn(b"DISCARD ALL", transport.value())
        self.assertEqual(self.pools.total, 1)
        pool = self.pools.pool(("db", "alice"))
        self.assertEqual(pool.count(BackendState.RESETTING), 1)

    def test_unknownServer(self) -> None:
        """
        A backend of a server this configuration lacks stays with the old
        process.
        """
        reply = app.adoptIdleBackend(
            self.service,  # type: ignore[arg-type]
            self.reactor,
            self.record("elsewhere"),
            [self.descriptor()],
        )
        self.assertIsInstance(reply, handover.Kept)
        self.assertEqual((self.reactor.adopted, self.pools.total), ([], 0))
