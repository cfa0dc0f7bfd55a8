# -*- test-case-name: tests.unit.test_workers -*-
"""
Several reactor processes (C{workers = N}): one Twisted reactor per process
is the most CPython allows, so pgtwist scales over cores with processes.

The supervisor (the process twistd runs) listens on the unix socket and
starts N workers that inherit it; each worker binds the TCP address itself
with C{SO_REUSEPORT}, so the kernel spreads new connections over them. Each
worker runs a full pgtwist with C{max_connections / N} backends (the first
ones get the remainder). A CancelRequest that lands on a worker that did
not give out its key is offered to every other worker over their private
unix sockets (no bit of the secret names the worker). Worker 0 also serves the management
port, metrics and the manhole (describing itself only). SIGHUP reaches every
worker; a worker that dies is started again.

An upgrade (SIGUSR2 to the supervisor, or C{UPGRADE} on any worker's
console, which asks the supervisor) hands each worker over to the new
pgtwist's worker of the same index (L{SupervisorUpgrade}).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
from collections.abc import MutableMapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from pgtwist import __version__
from pgtwist.app import bootstrap
from pgtwist.app import handover as upgrades
from pgtwist.config.model import Configuration, MainSettings
from pgtwist.net import handover
from pgtwist.net.cancel import CloseIdleFactory, _CancelFactory
from pgtwist.net.endpoints import listenBacklog, socketPath, tcpHost
from pgtwist.pipelines._notify import sharePids

#: Seconds a C{DROP DATABASE} waits for the other workers to close their
#: idle backends to that database before it goes on.
CLOSE_IDLE_WAIT = 1.0

#: The most workers: a CancelRequest that reaches a worker that does not know
#: its key is offered to every other one, so the count bounds that fan-out.
MAX_WORKERS = 16


def shareOf(maxConnections: int, index: int, count: int) -> int:
    """
    Worker C{index}'s part of C{max_connections} or C{max_client_conn} (at least 1).
    """
    share, remainder = divmod(maxConnections, count)
    return max(1, share + (1 if index < remainder else 0))


def _shareClientLimits(config: Configuration, index: int, count: int) -> Configuration:
    """
    C{config} with worker C{index}'s share of each client limit set per
    database or user (C{max_db_client_connections},
    C{max_user_client_connections}), in the main section and on the
    databases-file lines, as for C{max_client_conn}; 0 (no limit) stays 0.
    """

    def share(value: int | None) -> int | None:
        return shareOf(value, index, count) if value else value

    main = config.main
    main = dataclasses.replace(
        main,
        maxDbClientConnections=share(main.maxDbClientConnections) or 0,
        maxUserClientConnections=share(main.maxUserClientConnections) or 0,
    )
    limits = tuple(
        dataclasses.replace(
            limit,
            maxDbClientConnections=share(limit.maxDbClientConnections),
            maxUserClientConnections=share(limit.maxUserClientConnections),
        )
        for limit in config.limits
    )
    return dataclasses.replace(config, main=main, limits=limits)


def tcpListeningSocket(main: MainSettings) -> socket.socket:
    """
    A socket listening on the main TCP address with C{SO_REUSEPORT}: every
    worker binds its own, and the kernel spreads new connections over them
    (a single shared socket lets whichever worker wakes first take them all).
    """
    if main.host == "*":
        tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        tcp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address: tuple[Any, ...] = ("::", main.port)
    elif ":" in main.host:
        tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        address = (main.host, main.port)
    else:
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = (tcpHost(main.host), main.port)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    tcp.bind(address)
    tcp.listen(listenBacklog(main))
    tcp.setblocking(False)
    return tcp


def listeningSockets(main: MainSettings) -> list[socket.socket]:
    """
    The listeners the supervisor shares with its workers: the unix socket
    (TCP is bound by each worker, see L{tcpListeningSocket}).
    """
    sockets = []
    if main.unixSocketDir:
        path = socketPath(main.unixSocketDir, main.port)
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)
        except FileNotFoundError:
            pass
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(path)
        os.chmod(path, 0o777)
        unix.listen(listenBacklog(main))
        sockets.append(unix)
    for sock in sockets:
        sock.setblocking(False)
        os.set_inheritable(sock.fileno(), True)
    return sockets


class _WorkerProcess(ProcessProtocol):
    """
    Watches one worker; the supervisor restarts it if it dies.
    """

    def __init__(self, supervisor: WorkerSupervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Failure) -> None:
        """
        Tell the supervisor.
        """
        self.ended.callback(None)
        self.supervisor.workerEnded(self.index, reason)


class WorkerSupervisor(Service):
    """
    Owns the shared listening sockets and the worker processes.
    """

    log = Logger()
    name = "workers"

    def __init__(self, config: Configuration, arguments: list[str], reactor: Any) -> None:
        self.config = config
        self.arguments = arguments
        self._reactor = reactor
        self.count = min(config.main.workers, MAX_WORKERS)
        self.sockets: list[socket.socket] = []
        self.processes: dict[int, Any] = {}
        self.protocols: dict[int, _WorkerProcess] = {}
        self.runtime = ""
        self._stopping = False
        #: The upgrade under way (L{upgrade}), and whether the new
        #: supervisor took the shared sockets (this one then only waits
        #: for its workers to hand over and drain).
        self.upgrading: SupervisorUpgrade | None = None
        self.handedOver = False
        #: A new supervisor's: the hand-over socket of each worker of the
        #: one it replaces, for the first start of the worker of that index.
        self.predecessors: dict[int, str] = {}
        self._inheritance: Any = None

    def privilegedStartService(self) -> None:
        """
        Listen before privileges are dropped.
        """
        super().privilegedStartService()
        upgrades.installUpgradeSignal(self._reactor, self.upgrade)
        taken = takeSupervisorSockets(self.count)
        if taken is not None:
            # The old workers go on accepting on the shared sockets until
            # their successors take over: no TCP check (a socket that
            # listens for an instant would take, and reset, a connection).
            self.sockets, self.predecessors, predecessor, pidfile = taken
            self._inheritance = upgrades.Inheritance(self._reactor, predecessor, pidfile, [])
        else:
            # Fail early, in this process, when the TCP address is taken.
            tcpListeningSocket(self.config.main).close()
            self.sockets = listeningSockets(self.config.main)
        self.runtime = tempfile.mkdtemp(prefix="pgtwist-workers-")

    def startService(self) -> None:
        """
        Start the workers.
        """
        if not self.runtime:
            self.privilegedStartService()
        super().startService()
        for index in range(self.count):
            self.spawn(index)
        if self._inheritance is not None:
            self._inheritance.start()
        self.log.info(
            "pgtwist supervising {count} workers on {port}",
            count=self.count,
            port=self.config.main.port,
        )

    def spawn(self, index: int) -> None:
        """
        Start worker C{index}.
        """
        listen = [f"{s.fileno()}:{s.family.value}" for s in self.sockets]
        arguments = [
            sys.executable,
            "-m",
            "pgtwist.app.workers",
            "--index",
            str(index),
            "--count",
            str(self.count),
            "--runtime",
            self.runtime,
            *[f"--listen={item}" for item in listen],
            "--",
            *self.arguments,
        ]
        childFDs: dict[int, Any] = {0: "w", 1: 1, 2: 2}
        for sock in self.sockets:
            childFDs[sock.fileno()] = sock.fileno()
        env = dict(os.environ)
        predecessor = self.predecessors.pop(index, None)
        if predecessor is not None:
            env[upgrades.ENVIRONMENT] = predecessor
        protocol = _WorkerProcess(self, index)
        self.protocols[index] = protocol
        self.processes[index] = self._reactor.spawnProcess(
            protocol, sys.executable, arguments, env=env, childFDs=childFDs
        )

    def workerEnded(self, index: int, reason: Failure) -> None:
        """
        Restart a worker that died, unless pgtwist is stopping.
        """
        self.processes.pop(index, None)
        if self.handedOver:
            if not self.processes and self._reactor.running:
                self.log.info("Upgrade: every worker handed over or drained; exiting")
                self._reactor.stop()
            return
        if self._stopping:
            return
        self.log.error(
            "Worker {index} ended ({reason}); starting it again",
            index=index,
            reason=reason.getErrorMessage(),
        )
        self._reactor.callLater(1.0, self.spawn, index)

    def signalWorkers(self, signal: str | int) -> None:
        """
        Send C{signal} (C{"HUP"}, C{"TERM"}) to every worker.
        """
        for process in list(self.processes.values()):
            try:
                process.signalProcess(signal)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def terminate(self) -> None:
        """
        SIGTERM or SIGINT: stop (each worker gets SIGTERM, a graceful
        shutdown, and is waited for); a second signal passes SIGTERM on
        again, which makes the workers' shutdown immediate.
        """
        if self._stopping:
            self.signalWorkers("TERM")
            return
        self._reactor.stop()

    def quit(self) -> None:
        """
        SIGQUIT: passed on to the workers (their immediate shutdown), then
        stop.
        """
        self.signalWorkers("QUIT")
        if not self._stopping:
            self._reactor.stop()

    def stopService(self) -> Deferred[Any]:
        """
        Stop the workers (SIGTERM), then close the shared sockets.
        """
        super().stopService()
        self._stopping = True
        waits = [p.ended for i, p in self.protocols.items() if i in self.processes]
        self.signalWorkers("TERM")

        def closeSockets(_: object) -> None:
            for sock in self.sockets:
                sock.close()
            if self.config.main.unixSocketDir and not self.handedOver:
                path = socketPath(self.config.main.unixSocketDir, self.config.main.port)
                try:
                    os.unlink(path)
                except OSError:
                    pass
            # The workers' cancel sockets lived here.
            shutil.rmtree(self.runtime, ignore_errors=True)

        d: Deferred[Any] = DeferredList(waits)
        d.addCallback(closeSockets)
        return d

    def upgrade(self) -> None:
        """
        SIGUSR2 (sent by C{pgtwist-cli upgrade} through a worker, or by
        an operator): start the pgtwist installed now; see
        L{SupervisorUpgrade}.
        """
        if self.upgrading is not None or self.handedOver or self._stopping:
            self.log.error("Upgrade not started: one is under way, or pgtwist is stopping")
            return
        self.upgrading = SupervisorUpgrade(self, self._reactor)

    def upgradeEnded(self, tookOver: bool) -> None:
        """
        The new supervisor took the shared sockets (this one closed its
        copies and exits once its workers did), or the attempt failed.
        """
        self.upgrading = None
        if not tookOver:
            return
        self.handedOver = True
        grace = self.config.main.upgradeGracePeriod
        if grace > 0:
            # A worker whose successor did not come keeps serving until
            # then, and is then shut down like the others.
            self._reactor.callLater(grace + 5.0, self.signalWorkers, "TERM")


def handoverPath(runtime: str, index: int) -> str:
    """
    Where worker C{index} waits for its successor in an upgrade.
    """
    return os.path.join(runtime, f"handover-{index}.sock")


#: Tells the supervisor an upgrade starts where its predecessor's workers
#: wait: C{<count>:<runtime directory>}.
WORKERS_ENVIRONMENT = "PGTWIST_HANDOVER_WORKERS"

#: How long the supervisor waits for its workers to be ready to hand over.
PREPARE_TIMEOUT = 10.0


class _SupervisorSide(Protocol):
    """
    The old supervisor's end of its hand-over socket: gives the new
    supervisor the shared sockets (L{pgtwist.net.handover} format).
    """

    def __init__(self, upgrade: SupervisorUpgrade) -> None:
        self.upgrade = upgrade
        self.decoder = handover.Decoder()
        self.sent = 0

    def connectionMade(self) -> None:
        """
        Only this user (or root), one successor.
        """
        assert self.transport is not None
        if self.upgrade.peer is not None or not upgrades._sameUser(self.transport):
            self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        self.upgrade.peer = self

    def dataReceived(self, data: bytes) -> None:
        """
        Hello: send the sockets; Taken: done; anything else: give up.
        """
        assert self.transport is not None
        try:
            messages = self.decoder.feed(data)
        except handover.HandoverError as e:
            self.upgrade.failed(str(e))
            return
        for message in messages:
            if isinstance(message, handover.Hello) and not self.sent:
                version = max(handover.READABLE_VERSIONS.intersection(message.readable), default=0)
                if not version:
                    self.transport.write(
                        handover.encode(handover.Refuse("no common hand-over format"))
                    )
                    self.upgrade.failed("no common hand-over format")
                    return
                self.upgrade.log.info(
                    "Upgrade: pgtwist {version} (pid {pid}) asks for the listeners",
                    version=message.version,
                    pid=message.pid,
                )
                records = []
                for sock in self.upgrade.supervisor.sockets:
                    records.append(
                        handover.ListenerRecord(f"shared:{sock.fileno()}", sock.family, "listen")
                    )
                    self.transport.sendFileDescriptor(sock.fileno())  # type: ignore[attr-defined]
                self.sent = len(records)
                self.transport.write(
                    handover.encode(handover.Listeners(tuple(records), ""), version)
                )
            elif isinstance(message, handover.Taken) and self.sent:
                self.upgrade.tookOver(message.count == self.sent)
            else:
                if isinstance(message, handover.Refuse):
                    self.upgrade.failed(f"the new process refused: {message.reason}")
                else:
                    self.upgrade.failed(f"unexpected {type(message).__name__.lower()} message")
                return

    def connectionLost(self, reason: Failure | None = None) -> None:
        """
        Before L{handover.Taken}, a failure.
        """
        if self.upgrade.peer is self:
            self.upgrade.failed("the new process closed the hand-over socket")


class SupervisorUpgrade:
    """
    An upgrade with C{workers = N}: every worker waits for its successor
    on a private socket (L{handoverPath}, in this supervisor's runtime
    directory, mode 0600, its peer's uid checked), then this supervisor
    starts the new pgtwist and hands it the shared unix socket. The new
    supervisor starts its N workers; worker I{i} connects to old worker
    I{i} and takes its share of the TCP address (and worker 0 the
    management port), then its idle clients and backends, exactly as a
    single process hands them over (L{pgtwist.app.handover}).
    """

    log = Logger()

    def __init__(self, supervisor: WorkerSupervisor, reactor: Any) -> None:
        self.supervisor = supervisor
        self._reactor = reactor
        self.peer: _SupervisorSide | None = None
        self.process: Any = None
        self._port: Any = None
        self._finished = False
        self.path = os.path.join(supervisor.runtime, "handover.sock")
        # Twisted's signalProcess knows only a few signals by name.
        supervisor.signalWorkers(signal.SIGUSR2)
        self._deadline = reactor.seconds() + PREPARE_TIMEOUT
        self.command = upgrades.successorCommand(sys.argv)
        self._timeout = reactor.callLater(
            PREPARE_TIMEOUT + upgrades.HANDOVER_TIMEOUT, self._timedOut
        )
        self._wait = reactor.callLater(0.05, self._ready)

    def _ready(self) -> None:
        """
        Start the new pgtwist once every worker waits for its successor.
        """
        supervisor = self.supervisor
        paths = [handoverPath(supervisor.runtime, i) for i in range(supervisor.count)]
        if not all(os.path.exists(path) for path in paths):
            if self._reactor.seconds() > self._deadline:
                self.failed("the workers did not get ready to hand over")
            else:
                self._wait = self._reactor.callLater(0.05, self._ready)
            return
        factory = Factory.forProtocol(lambda: _SupervisorSide(self))
        self._port = self._reactor.listenUNIX(self.path, factory, mode=0o600)
        command = self.command
        env = dict(os.environ)
        env[upgrades.ENVIRONMENT] = self.path
        env[upgrades.PIDFILE_ENVIRONMENT] = upgrades.pidfileOf(sys.argv)
        env[WORKERS_ENVIRONMENT] = f"{supervisor.count}:{supervisor.runtime}"
        self.process = self._reactor.spawnProcess(
            upgrades._Successor(self),  # type: ignore[arg-type]
            command[0],
            command,
            env=env,
            childFDs={0: "w", 1: 1, 2: 2},
        )
        self.log.info("Upgrade: started the new pgtwist (pid {pid})", pid=self.process.pid)

    def successorEnded(self, reason: Failure) -> None:
        """
        The new process ended before taking the sockets (unless twistd
        daemonizes it: its first process ends at once).
        """
        if self.peer is None and not upgrades._daemonizes(self.command):
            self.failed(f"the new process ended ({reason.getErrorMessage()})")

    def tookOver(self, complete: bool) -> None:
        """
        The new supervisor holds the shared sockets: this one's copies
        close (the unix socket's file stays, it is the new one's).
        """
        if not complete:
            self.failed("the new process did not take every socket")
            return
        self.log.info(
            "Upgrade: the new process took {count} listeners; this supervisor ({pid}) exits "
            "once its workers handed over",
            count=len(self.supervisor.sockets),
            pid=os.getpid(),
        )
        for sock in self.supervisor.sockets:
            sock.close()
        self._end(True)

    def _timedOut(self) -> None:
        self.failed("the new process did not take the listeners in time")

    def failed(self, reason: str) -> None:
        """
        Give up: the workers time out waiting for their successors and go
        on serving (L{pgtwist.app.handover.Upgrade}).
        """
        if self._finished:
            return
        self.log.error("Upgrade failed, this process goes on: {reason}", reason=reason)
        if self.process is not None:
            try:
                self.process.signalProcess("TERM")
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._end(False)

    def _end(self, tookOver: bool) -> None:
        self._finished = True
        if self._timeout.active():
            self._timeout.cancel()
        if self._wait.active():
            self._wait.cancel()
        peer, self.peer = self.peer, None
        if peer is not None and peer.transport is not None:
            peer.transport.loseConnection()
        if self._port is not None:
            self._port.stopListening()
        self.supervisor.upgradeEnded(tookOver)


def takeSupervisorSockets(
    count: int, environ: MutableMapping[str, str] | None = None
) -> tuple[list[socket.socket], dict[int, str], int, str] | None:
    """
    In a supervisor an upgrade started: take the shared sockets from the
    running one, with where each of its workers waits for its successor,
    its pid and its pid file; C{None} when not started by an upgrade.
    Exits when the hand-over fails (the running pgtwist goes on).
    """
    if environ is None:
        environ = os.environ
    path = environ.pop(upgrades.ENVIRONMENT, None)
    pidfile = environ.pop(upgrades.PIDFILE_ENVIRONMENT, "")
    workers = environ.pop(WORKERS_ENVIRONMENT, "")
    if not path:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        oldCount, _, runtime = workers.partition(":")
        sock.settimeout(60.0)
        sock.connect(path)
        if not workers:
            raise handover.HandoverError("the running pgtwist has no workers; restart instead")
        if int(oldCount) != count:
            raise handover.HandoverError(
                f"workers changed from {oldCount} to {count}; restart instead"
            )
        sock.sendall(
            handover.encode(
                handover.Hello(os.getpid(), __version__, tuple(sorted(handover.READABLE_VERSIONS)))
            )
        )
        message, fds, version = upgrades._receive(sock)
        if not isinstance(message, handover.Listeners) or len(fds) != len(message.listeners):
            for fd in fds:
                os.close(fd)
            raise handover.HandoverError(f"expected listeners, got {type(message).__name__}")
        sockets = [
            socket.socket(record.family, socket.SOCK_STREAM, fileno=fd)
            for record, fd in zip(message.listeners, fds)
        ]
        for shared in sockets:
            shared.setblocking(False)
            os.set_inheritable(shared.fileno(), True)
        sock.sendall(handover.encode(handover.Taken(len(sockets)), version))
        predecessor = upgrades._peerPid(sock)
    except (OSError, ValueError, handover.HandoverError) as e:
        WorkerSupervisor.log.error("Upgrade: cannot take over: {error}", error=str(e))
        try:
            sock.sendall(handover.encode(handover.Refuse(str(e))))
        except OSError:
            pass
        raise SystemExit(1) from None
    finally:
        sock.close()
    return sockets, {i: handoverPath(runtime, i) for i in range(count)}, predecessor, pidfile


def cancelPath(runtime: str, index: int) -> str:
    """
    Where worker C{index} takes CancelRequests forwarded by the others.
    """
    return os.path.join(runtime, f"cancel-{index}.sock")


def closeIdleElsewhere(
    reactor: Any,
    runtime: str,
    index: int,
    count: int,
    database: str,
    timeout: float = CLOSE_IDLE_WAIT,
) -> Deferred[None]:
    """
    Ask every worker but C{index}, on its private socket, to close its idle
    backends to C{database}: fires once all answered (or could not be
    reached), or after C{timeout} seconds, when the statement goes on and
    PostgreSQL decides.
    """
    factories = []
    connectors = []
    for other in range(count):
        if other != index:
            factory = CloseIdleFactory(database)
            connectors.append(
                reactor.connectUNIX(cancelPath(runtime, other), factory, timeout=timeout)
            )
            factories.append(factory)
    result: Deferred[None] = Deferred()

    def late() -> None:
        for connector in connectors:
            connector.disconnect()
        if not result.called:
            result.callback(None)

    timer = reactor.callLater(timeout, late)

    def answered(_: object) -> None:
        if timer.active():
            timer.cancel()
        if not result.called:
            result.callback(None)

    DeferredList([factory.done for factory in factories]).addCallback(answered)
    return result


def workerMain(argv: list[str] | None = None) -> None:
    """
    Run one worker: load the configuration like C{twistd pgtwist} does, take
    this worker's share of C{max_connections}, adopt the shared listeners.
    """
    parser = argparse.ArgumentParser(prog="pgtwist worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--listen", action="append", default=[])
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    rest = options.rest[1:] if options.rest[:1] == ["--"] else options.rest

    from pgtwist.net.reactor import install

    reactor = install()
    from pgtwist.app.service import WorkerRole, buildService

    files = bootstrap.filesFromArguments(rest)

    def load() -> Configuration:
        config = files.load()
        main = dataclasses.replace(
            config.main,
            maxConnections=shareOf(config.main.maxConnections, options.index, options.count),
            maxClientConn=shareOf(config.main.maxClientConn, options.index, options.count),
            # Several processes appending to one file would overwrite each
            # other's lines: each worker has its own file.
            logPath=f"{config.main.logPath}.{options.index}",
        )
        return _shareClientLimits(
            dataclasses.replace(config, main=main), options.index, options.count
        )

    config = load()
    # A notifier served by another worker is reported with its own pid.
    sharePids(os.path.join(options.runtime, "notify-pids"))
    if os.environ.get(upgrades.ENVIRONMENT):
        # An upgrade: this worker takes its predecessor's share of the TCP
        # address (binding one of its own would add a socket to the
        # SO_REUSEPORT group that accepts nothing until this one runs).
        listen = [upgrades.WORKER_TCP[len("adopt:") :], *options.listen]
    else:
        tcp = tcpListeningSocket(config.main)
        listen = [f"{tcp.fileno()}:{tcp.family.value}", *options.listen]

    def forward(owner: int, packet: bytes) -> None:
        reactor.connectUNIX(cancelPath(options.runtime, owner), _CancelFactory(packet))

    role = WorkerRole(
        options.index,
        options.count,
        [f"adopt:{item}" for item in listen],
        f"unix:{cancelPath(options.runtime, options.index)}:mode=600",
        forward,
        lambda database: closeIdleElsewhere(
            reactor, options.runtime, options.index, options.count, database
        ),
        handoverPath(options.runtime, options.index),
    )
    service = buildService(config, reactor, reloadConfiguration=load, worker=role)
    bootstrap.setUpProcess(
        config.main,
        reactor,
        service.reload,
        terminate=service.management.terminate,
        quit=service.management.quit,
    )
    # Before listening: SIGUSR2's default action ends the process.
    upgrades.installUpgradeSignal(reactor, service.prepareHandOver)
    successor = upgrades.successorFromEnvironment(service, reactor)
    service.startService()
    if successor is not None:
        successor.taken()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    workerMain()
