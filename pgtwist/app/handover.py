# -*- test-case-name: tests.unit.test_handover -*-
"""
Upgrading a running pgtwist without refusing a connection (issue 17).

C{pgtwist-cli upgrade}, the console's C{UPGRADE} or SIGUSR2 make the running
process (the I{old} one) open a private unix socket and start the pgtwist
installed now, with the same command line and configuration files (read
again). The I{new} process connects before it listens, says which hand-over
formats it reads (L{pgtwist.net.handover}), and is sent the old process's
listening sockets. It adopts them, says so, and only then starts accepting;
the old process then stops accepting, closes its copies and drains: it
exits once its last client leaves, or after C{upgrade_grace_period}, when
the clients still connected get C{57P01} as in a shutdown. Connection
attempts in between wait in the kernel's accept queue of the very same
socket, so none is refused.

Anything that goes wrong before the new process says it took the sockets
(it exits, refuses, breaks the format, or takes longer than
L{HANDOVER_TIMEOUT}) leaves the old process exactly as it was, listening.

Then, in format version 2, the clients go too: each client of transaction
pooling, as soon as it is idle between transactions (it holds no backend
and nothing it sent waits for an answer), stops being read here and is
sent with its descriptor and everything needed to go on
(L{pgtwist.net.handover.ClientRecord}: pool key, startup parameters, cancel
key, the session settings and prepared statements its pipeline tracks).
The new process adopts the descriptor and answers; only then does the old
one close its copy, without a word on the connection, so the client sees
nothing: its next query is read by the new process. A client the new
process cannot take (it says why) is read here again and stays.

In session and performance pooling a client goes with its backend, as
soon as no request of it runs: both descriptors, and the backend's key
data, parameters and pgtwist's own prepared statements
(L{pgtwist.net.handover.BackendRecord}); the new process counts the
backend in its pool and the client goes on with the same PostgreSQL
session.

Left with the old process until they leave: clients over TLS (their TLS
state lives in this process) or whose backend is, clients of transaction
pooling that LISTEN or hold session objects on a pinned backend, and admin
consoles. Idle pooled backends go too (L{pgtwist.net.handover.IdleBackend}),
so PostgreSQL sees no new login for them; the new process resets each
(C{DISCARD ALL}) before its first client. The new process
offers the old one the CancelRequests whose keys it does not know (over
the old process's cancel socket, named in the listeners message), so their
cancels still work.
"""

from __future__ import annotations

import array
import os
import shutil
import socket
import struct
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet import protocol, task
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IFileDescriptorReceiver
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pgtwist import __version__
from pgtwist.config.limits import pipelineName
from pgtwist.net import handover, servertls
from pgtwist.net.backend import BackendProtocol
from pgtwist.net.cancel import OfferedCancelFactory, _CancelFactory
from pgtwist.net.frontend import FrontendProtocol, FrontendState
from pgtwist.pipelines.performance import PerformancePipelineSession
from pgtwist.pipelines.session import SessionPipelineSession
from pgtwist.pipelines.transaction import TransactionPipelineSession
from pgtwist.wire import constants, errors

if TYPE_CHECKING:
    from twisted.application.service import Service

    from pgtwist.admin.management import Management
    from pgtwist.config.model import Configuration
    from pgtwist.net.cancel import CancelRegistry
    from pgtwist.net.frontend import FrontendFactory
    from pgtwist.net.listeners import ListenerService

#: The environment variable that tells a starting pgtwist where the running
#: one waits to hand over (the path of the hand-over socket).
ENVIRONMENT = "PGTWIST_HANDOVER"
#: The environment variable that names the running one's pid file (an
#: absolute path, or empty for none) to a pgtwist an upgrade starts: it
#: writes its own pid there once the old process has exited.
PIDFILE_ENVIRONMENT = "PGTWIST_PIDFILE"
#: How long the old process waits for the new one to take its listeners
#: (starting Python and reading the configuration included).
HANDOVER_TIMEOUT = 60.0

#: The description of a new worker's TCP listener while it waits for the
#: socket its predecessor of the same index hands it (L{Successor}).
WORKER_TCP = "adopt:handover"

#: The most clients sent to the new process and not answered yet.
MAX_IN_FLIGHT = 500

_twistdRun = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


def pidfileOf(argv: list[str]) -> str:
    """
    The pid file twistd writes for C{argv} (its C{--pidfile}, by default
    C{twistd.pid}), as an absolute path; C{""} for none.
    """
    pidfile = "twistd.pid"
    arguments = argv[1:]
    for index, argument in enumerate(arguments):
        if argument == "pgtwist":
            break
        if argument == "--pidfile" and index + 1 < len(arguments):
            pidfile = arguments[index + 1]
        elif argument.startswith("--pidfile="):
            pidfile = argument[len("--pidfile=") :]
    return os.path.abspath(pidfile) if pidfile else ""


def successorCommand(argv: list[str]) -> list[str]:
    """
    The command line that starts the new process: twistd with this one's
    arguments, less its pid file (the old process still holds it, and
    twistd refuses to start over a running one's).
    """
    arguments = []
    skip = False
    for argument in argv[1:]:
        if skip:
            skip = False
            continue
        if argument == "--pidfile":
            skip = True
            continue
        if argument.startswith("--pidfile="):
            continue
        arguments.append(argument)
    if "pgtwist" in arguments:
        arguments.insert(arguments.index("pgtwist"), "--pidfile=")
    return [sys.executable, "-c", _twistdRun, *arguments]


class PoolerService(Protocol):
    """
    What an upgrade uses of L{pgtwist.app.service.PoolerService} (which
    imports this module).
    """

    config: Configuration
    cancels: CancelRegistry

    @property
    def worker(self) -> object:
        """
        The worker role, C{None} unless C{workers > 1}.
        """

    factory: FrontendFactory
    management: Management
    listeners: list[ListenerService]
    managementListener: ListenerService | None
    observability: list[Service]


class UpgradeError(Exception):
    """
    An upgrade cannot start (one is under way).
    """


class _Successor(protocol.ProcessProtocol):
    """
    Watches the new process until it took the listeners.
    """

    def __init__(self, upgrade: Upgrade) -> None:
        self.upgrade = upgrade

    def processEnded(self, reason: Failure) -> None:
        """
        A new process that ends before taking the listeners failed.
        """
        self.upgrade.successorEnded(reason)


class _OldSide(protocol.Protocol):
    """
    The old process's end of the hand-over socket.
    """

    def __init__(self, upgrade: Upgrade) -> None:
        self.upgrade = upgrade
        self.decoder = handover.Decoder()
        self.sent: list[ListenerService] = []

    def connectionMade(self) -> None:
        """
        Only this user (or root) may take the listeners: the socket's mode
        says so already, the peer's credentials say so again. One
        successor at a time.
        """
        if self.upgrade.peer is not None or not _sameUser(self.transport):
            self.upgrade.log.warn("Hand-over socket: a connection refused")
            assert self.transport is not None
            self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        self.upgrade.peer = self

    def dataReceived(self, data: bytes) -> None:
        """
        Act on each message; a broken one ends the hand-over.
        """
        try:
            messages = self.decoder.feed(data)
        except handover.HandoverError as e:
            self.refuse(str(e))
            return
        for message in messages:
            self.upgrade.received(self, message)

    def refuse(self, reason: str) -> None:
        """
        Tell the new process why not, and give up.
        """
        assert self.transport is not None
        self.transport.write(handover.encode(handover.Refuse(reason), self.upgrade.version))
        self.transport.loseConnection()
        self.upgrade.failed(f"refused the new process: {reason}")

    def sendListeners(self, listeners: list[tuple[ListenerService, str]], cancel: str) -> None:
        """
        Send C{listeners}' sockets, then the message that describes them.
        """
        assert self.transport is not None
        records = []
        for listener, role in listeners:
            assert listener.port is not None
            sock = listener.port.socket  # type: ignore[attr-defined]
            records.append(handover.ListenerRecord(listener.description, sock.family, role))
            self.transport.sendFileDescriptor(sock.fileno())  # type: ignore[attr-defined]
            self.sent.append(listener)
        self.transport.write(
            handover.encode(handover.Listeners(tuple(records), cancel), self.upgrade.version)
        )

    def sendClient(
        self, record: handover.ClientRecord | handover.IdleBackend, descriptors: list[int]
    ) -> None:
        """
        Send a client's descriptors (its own, then its backend's), then its
        record; or an idle backend's.

        @raise handover.HandoverError: The record is too long (nothing is
            sent).
        """
        assert self.transport is not None
        data = handover.encode(record, self.upgrade.version)
        for fd in descriptors:
            self.transport.sendFileDescriptor(fd)  # type: ignore[attr-defined]
        self.transport.write(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        """
        The new process went away: unless it took the listeners, the
        upgrade failed.
        """
        if self.upgrade.peer is self:
            self.upgrade.failed("the new process closed the hand-over socket")
            self.upgrade.peerLost()


#: C{SO_PEERCRED}'s value on Linux (asm-generic/socket.h).
_LINUX_SO_PEERCRED = 17


def _sameUser(transport: Any) -> bool:
    """
    Whether the peer of a unix transport runs as this process's user or
    as root (Linux's C{SO_PEERCRED}; elsewhere the socket's mode decides).
    """
    # PyPy 3.9's socket module lacks the constant Linux has had since 2.2.
    option = getattr(socket, "SO_PEERCRED", _LINUX_SO_PEERCRED if sys.platform == "linux" else None)
    if option is None:
        return True
    try:
        raw = transport.getHandle().getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return False
    _, uid, _ = struct.unpack("3i", raw)
    return uid in (0, os.getuid())


class Upgrade:
    """
    One upgrade of the old process, from starting the new one until the
    old one drained (or the attempt failed).

    @ivar done: Fires with C{True} once the new process took the
        listeners, C{False} if the attempt failed.
    """

    log = Logger()

    def __init__(
        self,
        service: PoolerService,
        reactor: Any,
        command: list[str],
        onEnd: Callable[[Upgrade], None],
        path: str | None = None,
    ) -> None:
        """
        @param path: Where a worker of C{workers = N} waits for its
            successor (its supervisor starts the new pgtwist, whose worker
            of the same index connects there); C{None} to start the new
            process here and wait in a directory of this upgrade's own.
        """
        self.service = service
        self._reactor = reactor
        self.command = command
        self._onEnd = onEnd
        self.done: Deferred[bool] = Deferred()
        self.peer: _OldSide | None = None
        self.handedOver = False
        self._finished = False
        self._stoppedObservability: list[Any] = []
        self._cancelPort: Any = None
        #: The format version agreed with the new process (its hello).
        self.version = handover.HELLO_VERSION
        #: Clients sent to the new process and not answered yet, by id.
        self.inFlight: dict[int, FrontendProtocol] = {}
        #: Ids of the clients the new process would not take (never sent
        #: again), and how many it took.
        self.kept: set[int] = set()
        self.handed = 0
        #: Idle pooled backends sent and not answered yet, by id; those
        #: the new process would not take; how many it took.
        self.backendsInFlight: dict[int, BackendProtocol] = {}
        self.keptBackends: set[BackendProtocol] = set()
        self.handedBackends = 0
        self.runtime = tempfile.mkdtemp(prefix="pgtwist-upgrade-")
        self.path = path or os.path.join(self.runtime, "handover.sock")
        factory = protocol.Factory.forProtocol(lambda: _OldSide(self))
        self._port = reactor.listenUNIX(self.path, factory, mode=0o600)
        self._timeout = reactor.callLater(HANDOVER_TIMEOUT, self._timedOut)
        self.process: Any = None
        if path is not None:
            self.log.info("Upgrade: waiting for the new worker on {path}", path=path)
            return
        env = dict(os.environ)
        env[ENVIRONMENT] = self.path
        env[PIDFILE_ENVIRONMENT] = pidfileOf(sys.argv)
        self.process = reactor.spawnProcess(
            _Successor(self), command[0], command, env=env, childFDs={0: "w", 1: 1, 2: 2}
        )
        self.log.info("Upgrade: started the new pgtwist (pid {pid})", pid=self.process.pid)

    def received(self, peer: _OldSide, message: handover.HandoverMessage) -> None:
        """
        The next step of the conversation.
        """
        if isinstance(message, handover.Hello) and not peer.sent:
            common = handover.READABLE_VERSIONS.intersection(message.readable)
            if not common:
                peer.refuse(
                    f"the new pgtwist {message.version} reads hand-over format "
                    f"{', '.join(map(str, message.readable))}, this one writes "
                    f"{', '.join(map(str, sorted(handover.READABLE_VERSIONS)))}"
                )
                return
            self.version = max(common)
            self.log.info(
                "Upgrade: pgtwist {version} (pid {pid}) asks for the listeners",
                version=message.version,
                pid=message.pid,
            )
            # The metrics and manhole ports are not handed over: the new
            # process binds them itself, so they close here first.
            stops = []
            for child in self.service.observability:
                if child.running:
                    self._stoppedObservability.append(child)
                    stops.append(child.stopService())
            d: Deferred[Any] = DeferredList([s for s in stops if s is not None])
            d.addCallback(lambda _: self._sendListeners(peer))
        elif isinstance(message, handover.Taken) and peer.sent:
            if message.count != len(peer.sent):
                peer.refuse(f"took {message.count} listeners of {len(peer.sent)}")
                return
            self._tookOver(peer)
        elif isinstance(message, (handover.Adopted, handover.Kept)) and self.handedOver:
            self._answered(message)
        elif isinstance(message, handover.Refuse) and self.handedOver:
            self.log.error(
                "Upgrade: the new process takes no more clients: {reason}", reason=message.reason
            )
            peer.transport.loseConnection()  # type: ignore[union-attr]
        elif isinstance(message, handover.Refuse):
            self.failed(f"the new process refused: {message.reason}")
        else:
            peer.refuse(f"unexpected {type(message).__name__.lower()} message")

    def _sendListeners(self, peer: _OldSide) -> None:
        if self._finished or self.peer is not peer:
            return
        listeners = [(listener, "listen") for listener in handedListeners(self.service)]
        if self.service.managementListener is not None:
            listeners.append((self.service.managementListener, "management"))
        missing = [str(listener.name) for listener, _ in listeners if listener.port is None]
        if missing:
            peer.refuse(f"not listening on {', '.join(missing)}")
            return
        # CancelRequests for the clients that stay here will reach the new
        # process, which offers them here (as workers do to each other).
        cancelPath = os.path.join(self.runtime, "cancel.sock")
        self._cancelPort = self._reactor.listenUNIX(
            cancelPath, OfferedCancelFactory(self.service.cancels, self._reactor), mode=0o600
        )
        peer.sendListeners(listeners, cancelPath)

    def _tookOver(self, peer: _OldSide) -> None:
        """
        The new process listens: stop accepting here, without removing
        the unix socket's file (it is the new process's now), then drain.
        """
        self.handedOver = True
        self.log.info(
            "Upgrade: the new process took {count} listeners; this one ({pid}) exits once "
            "its {clients} clients left, within {grace}s",
            count=len(peer.sent),
            pid=os.getpid(),
            clients=len(self.service.factory.clients),
            grace=self.service.config.main.upgradeGracePeriod,
        )
        for listener in peer.sent:
            detach(listener)
        if self.service.worker is not None:
            # The shared unix socket is the new supervisor's (it handed it
            # down to its workers): stop accepting on this copy.
            for listener in sharedListeners(self.service):
                detach(listener)
        self._stoppedObservability = []
        self._finish(True)
        # Not a graceful shutdown: a client this process accepted just
        # before is still logging in, and must not be refused as if the
        # database were shutting down.
        self.service.management.state = "upgraded"
        if self.version >= 2:
            # Its idle backends go to the new process: none to open here.
            self.service.factory.pool.draining = True  # type: ignore[attr-defined]
        self._drain = task.LoopingCall(self._checkDrained)
        self._drain.clock = self._reactor
        self._drain.start(0.1)
        grace = self.service.config.main.upgradeGracePeriod
        if grace > 0:
            self._reactor.callLater(grace, self._graceOver)

    def _checkDrained(self) -> None:
        peer = self.peer
        if self.version >= 2 and peer is not None:
            try:
                self._handOverIdle(peer)
            except Exception:  # noqa: BLE001 - draining must go on
                # Stop handing over (the clients not answered for are
                # served here again), but go on draining.
                self.log.failure("Upgrade: handing clients over failed; they stay here")
                if peer.transport is not None:
                    peer.transport.loseConnection()
                self.peerLost()
        if not self.service.factory.clients and not self.backendsInFlight:
            self.log.info("Upgrade: every client left; exiting")
            self._drain.stop()
            if self._reactor.running:
                self._reactor.stop()

    def _handOverIdle(self, peer: _OldSide) -> None:
        """
        Send the new process every client that is idle between
        transactions now (L{exportClient}), up to L{MAX_IN_FLIGHT}
        unanswered.
        """
        inFlight = self.inFlight
        for client in list(self.service.factory.clients):
            if len(inFlight) >= MAX_IN_FLIGHT:
                break
            if client.id in inFlight or client.id in self.kept:
                continue
            exported = exportClient(client)
            if exported is None:
                continue
            record, descriptors = exported
            try:
                peer.sendClient(record, descriptors)
            except handover.HandoverError as e:
                # Too much state to send: it stays here.
                resumeReading(client)
                self.kept.add(client.id)
                self.log.info(
                    "Upgrade: client {client} stays with this process: {reason}",
                    client=client.id,
                    reason=str(e),
                )
                continue
            inFlight[client.id] = client
        self._handOverIdleBackends(peer)

    def _handOverIdleBackends(self, peer: _OldSide) -> None:
        """
        Send the new process the pooled backends no client holds now, so
        that it need not log in again.
        """
        pools = self.service.factory.pool
        takeIdle = getattr(pools, "takeIdle", None)
        if takeIdle is None:
            return
        room = MAX_IN_FLIGHT - len(self.inFlight) - len(self.backendsInFlight)
        records: dict[Any, handover.BackendRecord] = {}

        def wanted(backend: Any) -> bool:
            if len(records) >= room or not isinstance(backend, BackendProtocol):
                return False
            if backend in self.keptBackends:
                return False
            if backend.transactionStatus != constants.TRANSACTION_IDLE:
                return False
            record = backendRecordOf(backend)
            if record is None:
                return False
            records[backend] = record
            return True

        for backend in takeIdle(wanted):
            database, user = backend.key
            message = handover.IdleBackend(
                self.service.factory.nextId(), database, user, records[backend]
            )
            transport: Any = backend.transport
            transport.pauseProducing()
            peer.sendClient(message, [transport.fileno()])
            self.backendsInFlight[message.id] = backend

    def _backendAnswered(self, message: handover.Adopted | handover.Kept) -> None:
        """
        The new process took an idle backend, or would not: then it is
        idle here again.
        """
        backend = self.backendsInFlight.pop(message.id, None)
        if backend is None:
            return
        pools: Any = self.service.factory.pool
        if isinstance(message, handover.Adopted):
            self.handedBackends += 1
            pools.letGo(backend)
            _quietClose(backend.transport)
            return
        self.keptBackends.add(backend)
        self.log.info(
            "Upgrade: the new process did not take backend {backendPid} ({poolKey}): {reason}",
            backendPid=backend.processId,
            poolKey=backend.key,
            reason=message.reason,
        )
        self._giveBack(backend)

    def _giveBack(self, backend: BackendProtocol) -> None:
        transport: Any = backend.transport
        if transport is not None:
            transport.resumeProducing()
        self.service.factory.pool.release(backend, reset=False)

    def _answered(self, message: handover.Adopted | handover.Kept) -> None:
        """
        The new process took a client, or would not.
        """
        client = self.inFlight.pop(message.id, None)
        if client is None:
            self._backendAnswered(message)
            return
        if isinstance(message, handover.Adopted):
            self.handed += 1
            forget(client)
            return
        self.kept.add(client.id)
        self.log.info(
            "Upgrade: the new process did not take client {client} ({poolKey}): {reason}",
            client=client.id,
            poolKey=client.key,
            reason=message.reason,
        )
        resumeReading(client)

    def peerLost(self) -> None:
        """
        The hand-over socket closed after the listeners went: the clients
        whose answer did not come are served here again (the new process
        is gone, and its copies of their descriptors with it).
        """
        for client in self.inFlight.values():
            resumeReading(client)
        self.inFlight.clear()
        backends, self.backendsInFlight = self.backendsInFlight, {}
        for backend in backends.values():
            self._giveBack(backend)
        self.peer = None

    def _graceOver(self) -> None:
        """
        The grace period is over: the clients left get 57P01, as in a
        shutdown, and this process exits.
        """
        clients = list(self.service.factory.clients)
        self.log.info(
            "Upgrade: grace period over; disconnecting {count} clients", count=len(clients)
        )
        error = errors.fatal(
            constants.SQLSTATE_ADMIN_SHUTDOWN,
            "terminating connection due to administrator command",
        )
        for client in clients:
            client.fail(error)
        if self._drain.running:
            self._drain.stop()
        if self._reactor.running:
            self._reactor.stop()

    def successorEnded(self, reason: Failure) -> None:
        """
        The new process ended: a failure unless it took over (a daemon's
        first process ends at once; its child connects).
        """
        if not self.handedOver and self.peer is None and not _daemonizes(self.command):
            self.failed(f"the new process ended ({reason.getErrorMessage()})")

    def _timedOut(self) -> None:
        self.failed(f"the new process did not take the listeners within {HANDOVER_TIMEOUT}s")

    def failed(self, reason: str) -> None:
        """
        Give up: this process keeps (or takes back) everything.
        """
        if self._finished:
            return
        self.log.error("Upgrade failed, this process goes on: {reason}", reason=reason)
        for child in self._stoppedObservability:
            if not child.running:
                child.startService()
        self._stoppedObservability = []
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.loseConnection()
        try:
            if self.process is not None:
                self.process.signalProcess("TERM")
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._finish(False)

    def _finish(self, result: bool) -> None:
        self._finished = True
        if self._timeout.active():
            self._timeout.cancel()
        self._port.stopListening()
        if result:
            # The cancel socket serves until this process exits.
            self._reactor.addSystemEventTrigger(
                "after", "shutdown", shutil.rmtree, self.runtime, True
            )
        else:
            if self._cancelPort is not None:
                self._cancelPort.stopListening()
            shutil.rmtree(self.runtime, ignore_errors=True)
        self._onEnd(self)
        self.done.callback(result)


def _isAdoptedTcp(listener: ListenerService) -> bool | None:
    """
    For a worker's listener: C{True} for its own share of the TCP address
    (a C{SO_REUSEPORT} socket), C{False} for the unix socket its
    supervisor shares, C{None} for anything else (its cancel socket).
    """
    if not listener.description.startswith("adopt:"):
        return None
    port: Any = listener.port
    if port is None:
        return None
    return bool(port.socket.family != socket.AF_UNIX)


def handedListeners(service: PoolerService) -> list[ListenerService]:
    """
    The client listeners an upgrade hands over: all of a single process's;
    a worker's own share of the TCP address only (its supervisor hands the
    shared unix socket to the new supervisor, and its cancel socket is
    private to this generation of workers).
    """
    if service.worker is None:
        return list(service.listeners)
    return [listener for listener in service.listeners if _isAdoptedTcp(listener)]


def sharedListeners(service: PoolerService) -> list[ListenerService]:
    """
    A worker's listeners on the sockets its supervisor shares.
    """
    return [listener for listener in service.listeners if _isAdoptedTcp(listener) is False]


def exportClient(client: FrontendProtocol) -> tuple[handover.ClientRecord, list[int]] | None:
    """
    The record and descriptors that hand C{client} to a new process, if it
    can go now: logged in, not over TLS, with nothing buffered to write,
    and idle between transactions (L{TransactionPipelineSession.exportState})
    or, in session and performance pooling, between requests with its
    backend (L{SessionPipelineSession.exportState}), which goes too. It is
    no longer read here, nor is its backend: what either sends next waits
    in the kernel for whichever process ends up serving it.
    """
    session = client.session
    transport: Any = client.transport
    if (
        client.state is not FrontendState.READY
        or client.consoleRole is not None
        or client.encrypted
        or client._tlsStarted
        or not isinstance(session, (TransactionPipelineSession, SessionPipelineSession))
        or transport is None
        or transport.disconnecting
        or transport.dataBuffer
        or transport._tempDataLen
        or getattr(transport, "TLS", False)
        or client._pending
    ):
        return None
    state = session.exportState()
    if state is None:
        return None
    descriptors = [transport.fileno()]
    backendRecord = None
    if isinstance(session, SessionPipelineSession):
        backend = session.backend
        if not isinstance(backend, BackendProtocol):
            return None
        backendRecord = backendRecordOf(backend)
        if backendRecord is None:
            return None
        backendTransport: Any = backend.transport
        descriptors.append(backendTransport.fileno())
        backendTransport.pauseProducing()
    # In the same turn of the reactor: nothing was read since.
    client.pauseReading()
    database, user = client.key
    record = handover.ClientRecord(
        client.id,
        transport.getHandle().family,
        database,
        user,
        client.requestedDatabase,
        tuple(client.startupParameters.items()),
        client.processId,
        client.secretKey,
        _pipelineOf(session),
        state,
        backendRecord,
    )
    return record, descriptors


def backendRecordOf(backend: BackendProtocol) -> handover.BackendRecord | None:
    """
    What hands C{backend} over, if nothing is under way on it
    (L{BackendProtocol.handOverState}).
    """
    state = backend.handOverState()
    if state is None:
        return None
    server = backend.server
    transport: Any = backend.transport
    return handover.BackendRecord(
        transport.getHandle().family, server.name, server.host, server.port, **state
    )


def _pipelineOf(session: object) -> str:
    if isinstance(session, TransactionPipelineSession):
        return "transaction"
    if isinstance(session, PerformancePipelineSession):
        return "performance"
    return "session"


def resumeReading(client: FrontendProtocol) -> None:
    """
    Serve a client that was not handed over after all: read it (and its
    backend) again.
    """
    if client.state is not FrontendState.READY:
        return
    client.resumeReading()
    session = client.session
    if isinstance(session, SessionPipelineSession) and session.backend is not None:
        transport: Any = session.backend.transport
        if transport is not None:
            transport.resumeProducing()


def _quietClose(transport: Any) -> None:
    """
    Close this process's copy of a socket another process serves now:
    without shutting it down, which would end the other copy too.
    """
    if transport is not None:
        transport._shouldShutdown = False
        transport.loseConnection()


def forget(client: FrontendProtocol) -> None:
    """
    Let go of a client the new process serves now: its session ends
    without a word, its cancel key goes, and its socket is closed here
    without being shut down (that would end the new process's copy too);
    so is its backend's, which the pool stops counting.
    """
    session, client.session = client.session, None
    client.state = FrontendState.CLOSED
    if client.secretKey:
        client.factory.cancels.unregister(client.processId, client.secretKey)
    client.processId = client.secretKey = 0
    if isinstance(session, SessionPipelineSession) and session.backend is not None:
        backend, session.backend = session.backend, None
        backend.detach()
        letGo = getattr(client.factory.pool, "letGo", None)
        if letGo is not None:
            letGo(backend)
        _quietClose(backend.transport)
    if session is not None:
        session.frontendLost(Failure(ConnectionDone("handed over")))
    _quietClose(client.transport)


def _daemonizes(command: list[str]) -> bool:
    return "--nodaemon" not in command and "-n" not in command


def detach(listener: ListenerService) -> None:
    """
    Stop C{listener} without removing its unix socket's file, which now
    belongs to the process the socket was handed to.
    """
    port = listener.port
    if port is not None:
        # Twisted shuts a port's socket down before closing it, which would
        # stop the shared socket listening in the other process too (it
        # skips that for a socket it adopted, for the same reason).
        port._shouldShutdown = False  # type: ignore[attr-defined]
        if getattr(port, "_bindPath", None):
            # Its unix port unlinks its path when it closes, unless the
            # path is in the abstract namespace (a leading NUL).
            port._bindPath = "\0"  # type: ignore[attr-defined]
            port.lockFile = None  # type: ignore[attr-defined]
    listener.stopService()


def installUpgradeSignal(reactor: Any, upgrade: Callable[[], object]) -> None:
    """
    SIGUSR2 starts an upgrade (on the main thread only).
    """
    import signal
    import threading

    def onSignal() -> None:
        try:
            upgrade()
        except UpgradeError as e:
            Upgrade.log.error("Upgrade not started: {reason}", reason=str(e))

    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGUSR2"):
        signal.signal(signal.SIGUSR2, lambda *_: reactor.callFromThread(onSignal))


# -- the new process -----------------------------------------------------------


def _receive(sock: socket.socket) -> tuple[handover.HandoverMessage, list[int], int]:
    """
    The next message from the old process, the descriptors with it and
    the version it was framed in.

    @raise handover.HandoverError: The old process broke the format, sent
        the wrong number of descriptors or closed the socket.
    """
    decoder = handover.Decoder()
    descriptors: list[int] = []
    space = socket.CMSG_SPACE(handover.MAX_DESCRIPTORS * array.array("i").itemsize)
    try:
        while True:
            data, ancillary, flags, _ = sock.recvmsg(65536, space)
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                    descriptors.extend(fds)
            if flags & getattr(socket, "MSG_CTRUNC", 0):
                raise handover.HandoverError("too many descriptors")
            if len(descriptors) > handover.MAX_DESCRIPTORS:
                raise handover.HandoverError("too many descriptors")
            if not data:
                raise handover.HandoverError("the old process closed the hand-over socket")
            messages = decoder.feed(data)
            if messages:
                if len(messages) > 1 or decoder.pending:
                    raise handover.HandoverError("more than one message at once")
                expected = handover.descriptorCount(messages[0])
                if len(descriptors) != expected:
                    raise handover.HandoverError(
                        f"{len(descriptors)} descriptors came with a message for {expected}"
                    )
                return messages[0], descriptors, decoder.version
    except BaseException:
        for fd in descriptors:
            os.close(fd)
        raise


def _peerPid(sock: socket.socket) -> int:
    """
    The pid of the process at the other end of a unix socket (Linux's
    C{SO_PEERCRED}), or 0.
    """
    option = getattr(socket, "SO_PEERCRED", _LINUX_SO_PEERCRED if sys.platform == "linux" else None)
    if option is None:
        return 0
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return 0
    return int(struct.unpack("3i", raw)[0])


class Inheritance:
    """
    What the new process takes over once the old one has exited: the pid
    file (which the old one's twistd removes as it exits; this process was
    started without one) and the lock files of the unix sockets (which
    keep another pgtwist from removing a socket in use; the old one's lock
    is stale once it is gone). Both are given up when this process exits.
    """

    log = Logger()

    def __init__(self, reactor: Any, predecessor: int, pidfile: str, locks: list[str]) -> None:
        self._reactor = reactor
        self.predecessor = predecessor
        self.pidfile = pidfile
        self.lockPaths = locks
        self.locks: list[Any] = []
        self._loop = task.LoopingCall(self._check)
        self._loop.clock = reactor

    def start(self) -> None:
        """
        Look for the old process's end twice a second.
        """
        if self.pidfile or self.lockPaths:
            self._loop.start(0.5, now=False)

    def _check(self) -> None:
        try:
            os.kill(self.predecessor, 0)
        except ProcessLookupError:
            pass
        except OSError:
            return
        else:
            return
        self._loop.stop()
        self.inherit()

    def inherit(self) -> None:
        """
        Write the pid file and take the socket locks; give them up at exit.
        """
        from twisted.python.lockfile import FilesystemLock

        pid = str(os.getpid())
        if self.pidfile:
            try:
                with open(self.pidfile, "w") as f:
                    f.write(pid)
            except OSError as e:
                self.log.error("Upgrade: cannot write the pid file: {error}", error=str(e))
        for path in self.lockPaths:
            lock = FilesystemLock(path)
            if lock.lock():
                self.locks.append(lock)
        self._reactor.addSystemEventTrigger("after", "shutdown", self.release)

    def release(self) -> None:
        """
        Remove the pid file if it is still this process's; unlock.
        """
        if self.pidfile:
            try:
                with open(self.pidfile) as f:
                    mine = f.read().strip() == str(os.getpid())
                if mine:
                    os.unlink(self.pidfile)
            except OSError:
                pass
        for lock in self.locks:
            try:
                lock.unlock()
            except (OSError, ValueError):
                pass
        self.locks = []


def successorFromEnvironment(service: PoolerService, reactor: Any) -> Successor | None:
    """
    When this process was started by an upgrade (L{ENVIRONMENT} is set),
    take the running pgtwist's listeners for C{service}; the caller
    listens, then calls L{Successor.taken}. Exits on failure: the running
    pgtwist goes on.
    """
    path = os.environ.pop(ENVIRONMENT, None)
    pidfile = os.environ.pop(PIDFILE_ENVIRONMENT, "")
    if not path:
        return None
    try:
        successor = Successor(path)
        successor.pidfile = pidfile
        successor.takeListeners(service, reactor)
    except (OSError, handover.HandoverError) as e:
        Successor.log.error("Upgrade: cannot take over: {error}", error=str(e))
        raise SystemExit(1) from None
    return successor


class Successor:
    """
    The new process's end: takes the old process's listeners before any
    listener of its own starts, and tells it once they are adopted.
    """

    log = Logger()

    def __init__(self, path: str, timeout: float = HANDOVER_TIMEOUT) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.adopted = 0
        #: The old process's pid (its end's credentials), and its pid file.
        self.predecessor = _peerPid(self.sock)
        self.pidfile = ""
        #: The format version the old process answered in.
        self.version = handover.HELLO_VERSION
        self._service: PoolerService | None = None
        self._reactor: Any = None

    def takeListeners(self, service: PoolerService, reactor: Any) -> None:
        """
        Ask for the listeners and point C{service}'s at them (each
        adopts C{<fd>:<family>}); refuse them, and raise, when they
        are not the ones this configuration listens on.

        @raise handover.HandoverError: The hand-over cannot go on.
        """
        self.sock.sendall(
            handover.encode(
                handover.Hello(os.getpid(), __version__, tuple(sorted(handover.READABLE_VERSIONS)))
            )
        )
        self._service, self._reactor = service, reactor
        message, fds, self.version = _receive(self.sock)
        if isinstance(message, handover.Refuse):
            raise handover.HandoverError(f"the running pgtwist refused: {message.reason}")
        if not isinstance(message, handover.Listeners):
            for fd in fds:
                os.close(fd)
            self.refuse(f"expected listeners, got {type(message).__name__.lower()}")
        assert isinstance(message, handover.Listeners)
        if service.worker is not None:
            self._takeWorkerListeners(service, message, fds)
        else:
            self._takeListeners(service, message, fds)
        self.adopted = len(fds)
        if message.cancel:
            path = message.cancel
            service.cancels.predecessor = lambda packet: reactor.connectUNIX(
                path, _CancelFactory(packet)
            )

    def _takeWorkerListeners(
        self, service: PoolerService, message: handover.Listeners, fds: list[int]
    ) -> None:
        """
        A worker's: its predecessor's share of the TCP address (and the
        management port for worker 0), matched by role, since their
        descriptions name the descriptors the supervisors passed down.
        """
        ours: dict[str, list[ListenerService]] = {
            "listen": [
                listener for listener in service.listeners if listener.description == WORKER_TCP
            ],
            "management": []
            if service.managementListener is None
            else [service.managementListener],
        }
        theirs: dict[str, list[tuple[handover.ListenerRecord, int]]] = {
            "listen": [],
            "management": [],
        }
        for record, fd in zip(message.listeners, fds):
            theirs[record.role].append((record, fd))
        if {role: len(items) for role, items in ours.items()} != {
            role: len(items) for role, items in theirs.items()
        }:
            for fd in fds:
                os.close(fd)
            self.refuse("the running worker listens on other sockets; restart instead")
        for role, listeners in ours.items():
            for listener, (record, fd) in zip(listeners, theirs[role]):
                os.set_blocking(fd, False)
                listener.adopt = f"{fd}:{record.family}"

    def _takeListeners(
        self, service: PoolerService, message: handover.Listeners, fds: list[int]
    ) -> None:
        ours = {listener.description: listener for listener in service.listeners}
        if service.managementListener is not None:
            ours[service.managementListener.description] = service.managementListener
        theirs = {record.description for record in message.listeners}
        if set(ours) != theirs:
            for fd in fds:
                os.close(fd)
            self.refuse(
                "the listen addresses changed (running: "
                f"{', '.join(sorted(theirs))}; configured: {', '.join(sorted(ours))}); "
                "restart instead"
            )
        for record, fd in zip(message.listeners, fds):
            os.set_blocking(fd, False)
            ours[record.description].adopt = f"{fd}:{record.family}"

    def taken(self) -> None:
        """
        Tell the old process its listeners are adopted: it stops
        accepting on them.
        """
        self.sock.sendall(handover.encode(handover.Taken(self.adopted), self.version))
        service, reactor = self._service, self._reactor
        if service is not None and self.predecessor:
            locks = [
                listener.description[len("unix:") :].split(":")[0] + ".lock"
                for listener in service.listeners
                if listener.description.startswith("unix:") and "lockfile=1" in listener.description
            ]
            Inheritance(reactor, self.predecessor, self.pidfile, locks).start()
        if self.version >= 2 and service is not None:
            # The clients come next, over the same socket, once the reactor runs.
            self.sock.setblocking(False)
            reactor.adoptStreamConnection(
                self.sock.fileno(),
                socket.AF_UNIX,
                protocol.Factory.forProtocol(lambda: _NewSide(service, reactor)),
            )
        self.sock.close()

    def refuse(self, reason: str) -> None:
        """
        Tell the old process why not; it goes on as before.

        @raise handover.HandoverError: Always.
        """
        try:
            self.sock.sendall(handover.encode(handover.Refuse(reason), self.version))
        finally:
            self.sock.close()
        raise handover.HandoverError(reason)


@implementer(IFileDescriptorReceiver)
class _NewSide(protocol.Protocol):
    """
    The new process's end of the hand-over socket once it listens: takes
    each client the old process sends (L{adoptClient}) and answers.
    """

    log = Logger()

    def __init__(self, service: PoolerService, reactor: Any) -> None:
        self.service = service
        self.reactor = reactor
        self.decoder = handover.Decoder()
        self.descriptors: deque[int] = deque()
        self.taken = 0
        self.backends = 0

    def fileDescriptorReceived(self, descriptor: int) -> None:
        """
        A client's descriptor: its record follows.
        """
        self.descriptors.append(descriptor)

    def dataReceived(self, data: bytes) -> None:
        """
        Take each client, or say why not; a broken message ends the
        hand-over (the old process keeps the clients it has not been
        answered for).
        """
        assert self.transport is not None
        try:
            messages = self.decoder.feed(data)
            for message in messages:
                if not isinstance(message, (handover.ClientRecord, handover.IdleBackend)):
                    raise handover.HandoverError(
                        f"unexpected {type(message).__name__.lower()} message"
                    )
                count = handover.descriptorCount(message)
                if len(self.descriptors) < count:
                    raise handover.HandoverError("a client message came without its descriptors")
                fds = [self.descriptors.popleft() for _ in range(count)]
                if isinstance(message, handover.IdleBackend):
                    reply = adoptIdleBackend(self.service, self.reactor, message, fds)
                    if isinstance(reply, handover.Adopted):
                        self.backends += 1
                    self.transport.write(handover.encode(reply, self.decoder.version))
                    continue
                reply = adoptClient(self.service, self.reactor, message, fds)
                if isinstance(reply, handover.Adopted):
                    self.taken += 1
                self.transport.write(handover.encode(reply, self.decoder.version))
        except handover.HandoverError as e:
            self.log.error("Upgrade: no more clients taken: {reason}", reason=str(e))
            self.transport.write(handover.encode(handover.Refuse(str(e)), self.decoder.version))
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure | None = None) -> None:
        """
        The old process exited (or broke off): close what it sent and no
        record came for.
        """
        while self.descriptors:
            os.close(self.descriptors.popleft())
        self.log.info(
            "Upgrade: {count} clients and {backends} idle backends taken over from the "
            "previous process",
            count=self.taken,
            backends=self.backends,
        )


class _Given(protocol.Factory):
    """
    Gives the one client protocol it was made with to an adopted socket.
    """

    def __init__(self, client: FrontendProtocol) -> None:
        self.client = client

    def buildProtocol(self, addr: Any) -> FrontendProtocol:
        """
        The client, at its address.
        """
        self.client.address = addr
        return self.client


class _GivenBackend(protocol.Factory):
    """
    Gives the one backend protocol it was made with to an adopted socket.
    """

    def __init__(self, backend: BackendProtocol) -> None:
        self.backend = backend

    def buildProtocol(self, addr: Any) -> BackendProtocol:
        """
        The backend.
        """
        return self.backend


def adoptClient(
    service: PoolerService,
    reactor: Any,
    record: handover.ClientRecord,
    descriptors: list[int],
) -> handover.Adopted | handover.Kept:
    """
    Serve the client of C{record} from here on: its socket (a copy of the
    first of C{descriptors}) and its state, as if it had logged in here,
    and in session and performance pooling its backend (a copy of the
    second), counted in its pool; or say why not (the old process keeps
    it). The descriptors are closed either way.
    """
    try:
        return _adoptClient(service, reactor, record, descriptors)
    finally:
        for fd in descriptors:
            os.close(fd)


def _adoptClient(
    service: PoolerService,
    reactor: Any,
    record: handover.ClientRecord,
    descriptors: list[int],
) -> handover.Adopted | handover.Kept:
    factory = service.factory
    key = (record.database, record.user)
    if not factory.accepting:
        return handover.Kept(record.id, "this process is shutting down")
    name = pipelineName(factory.config, key)
    if name != record.pipeline:
        return handover.Kept(record.id, f"the pool's pipeline is {name} now")
    pipeline = factory.pipelines.get(name)
    resume = getattr(pipeline, "resumeSession", None)
    if resume is None:
        return handover.Kept(record.id, f"the {name} pipeline cannot take over clients")
    wantsBackend = name != "transaction"
    if wantsBackend != (record.backend is not None):
        return handover.Kept(record.id, "its backend did not come with it")
    backend = None
    if record.backend is not None:
        resumed = _resumedBackend(factory, key, record.backend)
        if isinstance(resumed, str):
            return handover.Kept(record.id, resumed)
        backend = resumed
    client = factory.buildProtocol(None)
    client.key = key
    client.requestedDatabase = record.requestedDatabase
    client.startupParameters = dict(record.startupParameters)
    try:
        session = resume(client, factory.pool, factory.clock, record.session)
    except ValueError as e:
        return handover.Kept(record.id, str(e))
    if not service.cancels.registerKey(record.processId, record.secretKey, client._cancelTarget):
        return handover.Kept(record.id, "its cancel key is taken here")
    try:
        clientTransport = reactor.adoptStreamConnection(
            descriptors[0], record.family, _Given(client)
        )
    except Exception as e:  # noqa: BLE001 - the old process keeps it
        service.cancels.unregister(record.processId, record.secretKey)
        return handover.Kept(record.id, f"cannot adopt its socket: {e}")
    # Logged in already: no timer, no startup.
    client._cancelAuthTimer()
    client._negotiation = None
    if backend is not None and record.backend is not None:
        adopt = getattr(factory.pool, "adoptBackend", None)
        try:
            reactor.adoptStreamConnection(
                descriptors[1], record.backend.family, _GivenBackend(backend)
            )
        except Exception as e:  # noqa: BLE001 - the old process keeps it
            reason = f"cannot adopt its backend's socket: {e}"
        else:
            reason = "" if adopt is not None and adopt(backend) else "max_connections is reached"
            if reason:
                _quietClose(backend.transport)
        if reason:
            service.cancels.unregister(record.processId, record.secretKey)
            client.state = FrontendState.CLOSED
            factory.clients.discard(client)
            _quietClose(clientTransport)
            return handover.Kept(record.id, reason)
    client.processId = record.processId
    client.secretKey = record.secretKey
    client.session = session
    client.state = FrontendState.READY
    if backend is not None:
        session.resume(backend)
    return handover.Adopted(record.id)


def _resumedBackend(
    factory: FrontendFactory, key: tuple[str, str], b: handover.BackendRecord
) -> BackendProtocol | str:
    """
    A backend protocol that goes on with the connection C{b} describes,
    not adopted yet; or why not.
    """
    server = next((s for s in factory.config.servers if s.name == b.server), None)
    if server is None or (server.host, server.port) != (b.host, b.port):
        return f"server {b.server} is not configured here"
    if servertls.usesTls(server):
        return f"server {b.server} is reached over TLS here"
    backend = BackendProtocol(key, server, None, [], factory.clock)
    backend.resume(
        b.processId, b.secretKey, b.parameters, b.transactionStatus.encode("ascii"), b.prepared
    )
    return backend


def adoptIdleBackend(
    service: PoolerService,
    reactor: Any,
    record: handover.IdleBackend,
    descriptors: list[int],
) -> handover.Adopted | handover.Kept:
    """
    Pool the idle backend of C{record} here (a copy of C{descriptors}'
    one, which is closed), within C{max_connections}; it is reset
    (C{DISCARD ALL}: the old process's statement names and settings go)
    before its first client. Or say why not.
    """
    try:
        factory = service.factory
        adopt = getattr(factory.pool, "adoptBackend", None)
        if adopt is None or not factory.accepting:
            return handover.Kept(record.id, "this process takes no backend")
        resumed = _resumedBackend(factory, (record.database, record.user), record.backend)
        if isinstance(resumed, str):
            return handover.Kept(record.id, resumed)
        try:
            reactor.adoptStreamConnection(
                descriptors[0], record.backend.family, _GivenBackend(resumed)
            )
        except Exception as e:  # noqa: BLE001 - the old process keeps it
            return handover.Kept(record.id, f"cannot adopt its socket: {e}")
        if not adopt(resumed):
            _quietClose(resumed.transport)
            return handover.Kept(record.id, "max_connections is reached")
        factory.pool.release(resumed, reset=True)
        return handover.Adopted(record.id)
    finally:
        for fd in descriptors:
            os.close(fd)
