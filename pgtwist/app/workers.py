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
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import socket
import stat
import sys
import tempfile
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from pgtwist.app import bootstrap
from pgtwist.config.model import Configuration, MainSettings
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

    def privilegedStartService(self) -> None:
        """
        Listen before privileges are dropped.
        """
        super().privilegedStartService()
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
        protocol = _WorkerProcess(self, index)
        self.protocols[index] = protocol
        self.processes[index] = self._reactor.spawnProcess(
            protocol, sys.executable, arguments, env=dict(os.environ), childFDs=childFDs
        )

    def workerEnded(self, index: int, reason: Failure) -> None:
        """
        Restart a worker that died, unless pgtwist is stopping.
        """
        self.processes.pop(index, None)
        if self._stopping:
            return
        self.log.error(
            "Worker {index} ended ({reason}); starting it again",
            index=index,
            reason=reason.getErrorMessage(),
        )
        self._reactor.callLater(1.0, self.spawn, index)

    def signalWorkers(self, signal: str) -> None:
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
            if self.config.main.unixSocketDir:
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
    )
    service = buildService(config, reactor, reloadConfiguration=load, worker=role)
    bootstrap.setUpProcess(
        config.main,
        reactor,
        service.reload,
        terminate=service.management.terminate,
        quit=service.management.quit,
    )
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    workerMain()
