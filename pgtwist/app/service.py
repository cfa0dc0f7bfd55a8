# -*- test-case-name: tests.unit.test_service -*-
"""
The service tree of a running pgtwist, built from one L{Configuration}.

    PoolerService "pgtwist"      reload() on SIGHUP; stops listeners, clients, then backends
    ├─ PoolSet "pools"
    ├─ ListenerService "listen:<endpoint>"  one per listening endpoint
    ├─ ListenerService "management:<endpoint>"  the admin console (C{management} port)
    ├─ TimerService "stats"       SHOW STATS_AVERAGES snapshots every C{stats_period}
    ├─ Janitor "janitor"          prefill, lifetimes, validation, idle clients
    ├─ MetricsService "metrics"   /metrics for Prometheus, when C{metrics} is set
    └─ ListenerService "manhole"  the SSH manhole, when C{manhole} is set

The management API (L{pgtwist.admin.management.Management}) is C{service.management}.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from pgtwist.admin.console import Console
from pgtwist.admin.management import Management
from pgtwist.app import bootstrap, handover
from pgtwist.config.model import Configuration
from pgtwist.config.restart import RESTART_KEYS, restartNotice, restartRequired
from pgtwist.net.authquery import AuthQueryConnections, UserLookup
from pgtwist.net.cancel import CancelRegistry, OfferedCancelFactory
from pgtwist.net.endpoints import listenEndpoints, managementEndpoint
from pgtwist.net.frontend import ConsoleOnlyFactory, FrontendFactory
from pgtwist.net.listeners import ListenerService
from pgtwist.net.servertls import contexts as serverTlsContexts
from pgtwist.pool.janitor import Janitor
from pgtwist.pool.poolset import PoolSet
from pgtwist.wire import constants, errors

if TYPE_CHECKING:
    from pgtwist.admin.metrics import MetricsService


class PoolerService(MultiService):
    """
    The root of a running pgtwist.
    """

    log = Logger()
    name = "pgtwist"

    def __init__(
        self,
        config: Configuration,
        reactor: Any,
        reloadConfiguration: Callable[[], Configuration] | None = None,
        worker: WorkerRole | None = None,
        plugins: bootstrap.Plugins | None = None,
    ) -> None:
        """
        @param reloadConfiguration: Reads the files again (for L{reload}).
        @param plugins: The installed plugins; by default this process's
            (L{bootstrap.plugins}).
        """
        super().__init__()
        self.config = config
        #: The main settings this process started with: what is in effect
        #: for the keys only a restart changes (L{RESTART_KEYS}).
        self._started = config
        self.worker = worker
        self._reactor = reactor
        self._reloadConfiguration = reloadConfiguration
        self.plugins = plugins if plugins is not None else bootstrap.plugins()
        self.authMethods = dict(self.plugins.authMethods)
        self.pipelines = dict(self.plugins.pipelines)
        # TLS toward the servers: read their files now, so a bad one is in
        # the log at start rather than at the first connection.
        serverTlsContexts.reload(config.servers)
        self.pools = PoolSet(config, reactor, list(self.authMethods.values()))
        self.pools.setServiceParent(self)
        if worker is None:
            self.cancels = CancelRegistry(reactor)
        else:
            self.cancels = CancelRegistry(
                reactor, workerIndex=worker.index, workers=worker.count, forward=worker.forward
            )
        self.factory = FrontendFactory(
            config, self.pools, reactor, self.authMethods, self.pipelines, self.cancels
        )
        #: auth_query: its connections and its lookups (idle until a login
        #: needs them, so always there for a reload to switch it on).
        self.authQueries = AuthQueryConnections(reactor, list(self.authMethods.values()))
        self.factory.userLookup = lookup = UserLookup(reactor, self.authQueries.run)
        # PostgreSQL refusing a pass-through login means the verifier its
        # clients were checked against is stale: the next login asks again.
        self.pools.credentialRefused = lambda key: lookup.forget(key[1])
        self.listeners: list[ListenerService] = []
        descriptions = worker.listen if worker is not None else listenEndpoints(config.main)
        for description in descriptions:
            listener = ListenerService(reactor, description, self.factory)
            listener.setServiceParent(self)
            self.listeners.append(listener)
        if worker is not None:
            # The supervisor owns the shared listeners; this worker also takes
            # the CancelRequests other workers offer it, on a socket of its own
            # that speaks nothing else.
            # DROP DATABASE through any worker closes every worker's idle
            # backends to that database.
            self.pools.closeIdleElsewhere = worker.closeIdleElsewhere
            offered = ListenerService(
                reactor,
                worker.cancelEndpoint,
                OfferedCancelFactory(self.cancels, reactor, self.pools.closeIdleBackendsHere),
            )
            offered.setServiceParent(self)
            self.listeners.append(offered)
        #: The admin console (a virtual database on every listener, and the
        #: only thing the C{management} port serves).
        self.console = Console(self, reactor)
        self.factory.console = self.console.newSession
        self.managementListener: ListenerService | None = None
        management = managementEndpoint(config.main)
        if worker is not None and worker.index != 0:
            management = None
        if management is not None:
            self.managementListener = ListenerService(
                reactor, management, ConsoleOnlyFactory(self.factory), prefix="management"
            )
            self.managementListener.setServiceParent(self)
        period = config.main.statsPeriod if config.main.statsPeriod > 0 else 60.0
        self.statsTimer = TimerService(period, self.console.refreshAverages)
        self.statsTimer.clock = reactor
        self.statsTimer.setName("stats")
        self.statsTimer.setServiceParent(self)
        self.janitor = Janitor(self.pools, self.factory, reactor)
        self.janitor.clock = reactor
        self.janitor.setServiceParent(self)
        self.management = Management(self, reactor)
        # Observability (issue 5): the metrics and manhole listeners, off
        # unless configured; imported here so that neither prometheus_client
        # nor conch is loaded when unused.
        self.observability: list[Service] = []
        observed = worker is None or worker.index == 0
        self.metrics: MetricsService | None = None
        if config.main.metrics and observed:
            from pgtwist.admin.metrics import MetricsService

            self.metrics = MetricsService(self, reactor)
            self.observability.append(self.metrics)
        if config.main.manhole and observed:
            from pgtwist.admin.manhole import makeManholeService

            self.observability.append(
                makeManholeService(
                    config,
                    lambda: {"service": self, "pools": self.pools, "config": self.config},
                    reactor,
                    admins=lambda: self.config.admins,
                )
            )
        for child in self.observability:
            child.setServiceParent(self)
        #: The upgrade under way or done (L{upgrade}).
        self.upgrading: handover.Upgrade | None = None
        #: A worker's console C{UPGRADE}s waiting for its part to start.
        self._upgradeAnswers: list[Deferred[bool]] = []

    def privilegedStartService(self) -> None:
        """
        Listen before privileges are dropped; a pgtwist started by an
        upgrade first takes the running one's listeners
        (L{pgtwist.app.handover}).
        """
        if self.worker is None:
            # Before listening: SIGUSR2's default action ends the process.
            handover.installUpgradeSignal(self._reactor, self.upgrade)
        successor = handover.successorFromEnvironment(self, self._reactor)
        super().privilegedStartService()
        if successor is not None:
            successor.taken()

    def startService(self) -> None:
        """
        Start everything.
        """
        super().startService()
        if self.worker is None:
            handover.installUpgradeSignal(self._reactor, self.upgrade)
        main = self.config.main
        self.log.info(
            "pgtwist listening on {endpoints} for {server} ({host}:{port}), max_connections "
            "{maxConnections}",
            endpoints=", ".join(listenEndpoints(main)),
            server=self.config.primary.name,
            host=self.config.primary.host,
            port=self.config.primary.port,
            maxConnections=main.maxConnections,
        )
        self._warnAboutSettings()

    def _warnAboutSettings(self) -> None:
        """
        Log one warning for each setting that switches off a protection:
        with C{authentication_timeout = 0}, a client that never
        authenticates keeps its connection (and its place under
        C{max_client_conn}) for as long as it likes. Called at start and
        each time a configuration is applied (reload, console C{SET}).
        """
        if self.config.main.authenticationTimeout <= 0:
            self.log.warn(
                "authentication_timeout = 0: clients that never authenticate are never "
                "disconnected; only max_client_conn ({maxClientConn}) bounds how many stay",
                maxClientConn=self.config.main.maxClientConn,
            )

    def reload(self) -> tuple[bool, list[str]]:
        """
        Re-read every file; if the whole new configuration is valid, apply
        what can change at runtime (no client is dropped) and log the changed
        keys that need a restart. Otherwise keep the running configuration and
        log why.

        @return: Whether it was applied, and the keys that need a restart.
        """
        if self._reloadConfiguration is None:
            return False, []
        try:
            self.reconfigure(self._reloadConfiguration())
        except Exception as e:
            self.log.error(
                "Reload failed, keeping the running configuration: {error}", error=str(e)
            )
            return False, []
        # New backends use the new certificates and keys; open ones keep theirs.
        serverTlsContexts.reload(self.config.servers)
        if self.metrics is not None:
            self.metrics.reloadTls(self.config.main)
        # Compared with what runs, not with the last reload: a change stays
        # reported (and in SHOW CONFIG) until a restart applies it.
        restart = list(self.management.restartPending)
        if restart:
            self.log.warn("Configuration reloaded; {notice}", notice=restartNotice(restart))
        else:
            self.log.info("Configuration reloaded")
        return True, restart

    def reconfigure(self, config: Configuration) -> None:
        """
        Apply C{config} at runtime (a reload, or the console's C{SET}): the
        pools and new clients use it; keys in
        L{pgtwist.config.restart.RESTART_KEYS} keep their running value
        until a restart. C{config} is validated as a whole first, so a
        refused one changes nothing.

        @raise pgtwist.config.errors.ConfigError: C{config} is not valid;
            the running one stays.
        """
        bootstrap.validate(config, self.plugins)
        # Keys only a restart changes keep their running value, so that
        # everything reading the configuration (SHOW CONFIG first) sees
        # what is in effect; the file's values wait in restartPending.
        pending = set(restartRequired(self._started, config))
        self.management.restartPending = {
            key: getattr(config.main, field)
            for field, key in RESTART_KEYS.items()
            if key in pending
        }
        running = {field: getattr(self._started.main, field) for field in RESTART_KEYS}
        config = replace(config, main=replace(config.main, **running))
        self.config = config
        self.pools.reconfigure(config)
        self.factory.reconfigure(config)
        # auth_query's answers and connections were for the old settings
        # (auth user, password, query, server): start afresh, letting the
        # lookups under way finish.
        if self.factory.userLookup is not None:
            self.factory.userLookup.clear()
        self.authQueries.retire()
        self._warnAboutSettings()

    def upgrade(self) -> Deferred[bool]:
        """
        Start the pgtwist installed now and hand it the listeners
        (L{pgtwist.app.handover.Upgrade}); fires with whether it took them.
        A worker asks its supervisor, which upgrades every worker
        (L{pgtwist.app.workers.SupervisorUpgrade}); it fires with whether
        this worker's successor took over.

        @raise pgtwist.app.handover.UpgradeError: One is under way.
        """
        if self.worker is not None:
            return self._askSupervisor()
        if self.upgrading is not None:
            raise handover.UpgradeError("an upgrade is already under way")
        self.upgrading = handover.Upgrade(
            self, self._reactor, handover.successorCommand(sys.argv), self._upgradeEnded
        )
        return self.upgrading.done

    def _askSupervisor(self) -> Deferred[bool]:
        """
        A worker's upgrade: the supervisor starts the new pgtwist and has
        every worker wait for its successor (L{prepareHandOver}); fires
        with whether this worker's successor took its listeners.
        """
        if self.upgrading is not None:
            raise handover.UpgradeError("an upgrade is already under way")
        answer: Deferred[bool] = Deferred()
        self._upgradeAnswers.append(answer)
        os.kill(os.getppid(), signal.SIGUSR2)

        def unanswered() -> None:
            # The supervisor did not start one (one was under way there).
            if answer in self._upgradeAnswers:
                self._upgradeAnswers.remove(answer)
                answer.callback(False)

        self._reactor.callLater(ASK_SUPERVISOR_TIMEOUT, unanswered)
        return answer

    def prepareHandOver(self) -> None:
        """
        A worker's part of an upgrade (SIGUSR2 from its supervisor): wait
        for the new pgtwist's worker of the same index on the private
        socket L{WorkerRole.handover} names, and hand it this worker's
        listeners and clients as a single process hands them to its
        successor.

        @raise pgtwist.app.handover.UpgradeError: One is under way.
        """
        assert self.worker is not None
        if self.upgrading is not None:
            raise handover.UpgradeError("an upgrade is already under way")
        self.upgrading = handover.Upgrade(
            self, self._reactor, [], self._upgradeEnded, path=self.worker.handover
        )
        answers, self._upgradeAnswers = self._upgradeAnswers, []

        def tell(result: bool) -> bool:
            for answer in answers:
                answer.callback(result)
            return result

        self.upgrading.done.addCallback(tell)

    def _upgradeEnded(self, upgrade: handover.Upgrade) -> None:
        if not upgrade.handedOver:
            self.upgrading = None

    def stopListening(self) -> None:
        """
        Stop accepting clients (graceful shutdown); connected ones stay. Unix
        sockets stay open for the admin console only (PgBouncer closes only
        its TCP sockets), so a local C{pgtwist-cli} can still cancel.
        """
        self.factory.accepting = False
        for listener in self.listeners:
            if listener.running and not listener.description.startswith("unix:"):
                listener.stopService()

    def suspendListening(self) -> None:
        """
        SUSPEND: accept nothing more on the clients' listeners (the
        connections wait in the listen queue); the management port stays.
        """
        for listener in self.listeners:
            if listener.factory is self.factory and listener.port is not None:
                stop = getattr(listener.port, "stopReading", None)
                if stop is not None:
                    stop()

    def resumeListening(self) -> None:
        """
        RESUME after SUSPEND: accept on the clients' listeners again.
        """
        for listener in self.listeners:
            if listener.factory is self.factory and listener.port is not None:
                start = getattr(listener.port, "startReading", None)
                if start is not None:
                    start()

    def startListening(self) -> None:
        """
        Accept clients again.
        """
        self.factory.accepting = True
        for listener in self.listeners:
            if not listener.running:
                listener.startService()

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, disconnect clients, then close backends.
        """
        self.running = False
        self.janitor.stopService()
        if self.statsTimer.running:
            self.statsTimer.stopService()
        every = [*self.listeners, *filter(None, [self.managementListener])]
        listeners = [
            d
            for d in (listener.stopService() for listener in every if listener.running)
            if d is not None
        ]
        listeners.extend(
            d
            for d in (child.stopService() for child in self.observability if child.running)
            if d is not None
        )

        def clientsThenPools(_: object) -> Deferred[None] | None:
            # PostgreSQL's words for a session its shutdown ends.
            ending = errors.fatal(
                constants.SQLSTATE_ADMIN_SHUTDOWN,
                "terminating connection due to administrator command",
            )
            for client in [*self.factory.clients, *self.factory.consoles]:
                client.fail(ending)
            self.authQueries.close()
            return self.pools.stopService()

        d: Deferred[Any] = DeferredList(listeners)
        d.addCallback(clientsThenPools)
        return d

    def whenListening(self) -> Deferred[list[IListeningPort]]:
        """
        Fires with every listening port once all listen.
        """
        d: Deferred[Any] = DeferredList(
            [listener.whenListening() for listener in self.listeners], fireOnOneErrback=True
        )
        return d.addCallback(lambda results: [port for _, port in results])


#: How long a worker's C{UPGRADE} waits for its supervisor to start one.
ASK_SUPERVISOR_TIMEOUT = 15.0


class WorkerRole:
    """
    What a worker process of a C{workers = N} pgtwist needs to know.

    @ivar index: This worker's number, 0 to C{count - 1}; worker 0 also
        serves the management port, metrics and the manhole.
    @ivar listen: The listeners to adopt (C{adopt:<fd>:<family>}).
    @ivar cancelEndpoint: Where this worker takes forwarded CancelRequests.
    @ivar forward: Sends a CancelRequest packet to another worker.
    @ivar closeIdleElsewhere: Asks the other workers to close their idle
        backends to a database (C{DROP DATABASE}); fires when they answered
        or after a bound.
    """

    def __init__(
        self,
        index: int,
        count: int,
        listen: list[str],
        cancelEndpoint: str,
        forward: Callable[[int, bytes], None],
        closeIdleElsewhere: Callable[[str], Deferred[None]] | None = None,
        handover: str = "",
    ) -> None:
        self.index = index
        self.count = count
        self.listen = listen
        self.cancelEndpoint = cancelEndpoint
        self.forward = forward
        self.closeIdleElsewhere = closeIdleElsewhere
        #: Where this worker waits for its successor in an upgrade.
        self.handover = handover


def buildService(
    config: Configuration,
    reactor: Any,
    reloadConfiguration: Callable[[], Configuration] | None = None,
    worker: WorkerRole | None = None,
    plugins: bootstrap.Plugins | None = None,
) -> PoolerService:
    """
    The service tree for C{config}.
    """
    return PoolerService(config, reactor, reloadConfiguration, worker, plugins)
