# -*- test-case-name: tests.unit.test_service,tests.unit.test_admin_control -*-
"""
The local management API: what pgagroal-cli and PgBouncer's console can ask
of a running pgtwist (flush, enable/disable, switch-to, shutdown, reload,
status). The admin console and C{pgtwist-cli} are thin layers over it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Set
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pgtwist.config.model import Configuration
from pgtwist.config.validate import changeSetting
from pgtwist.pool.poolset import BackendState
from pgtwist.wire import constants, errors

if TYPE_CHECKING:
    from pgtwist.config.model import PoolKey, ServerSettings
    from pgtwist.net.frontend import FrontendFactory, FrontendProtocol
    from pgtwist.pool.poolset import PoolSet
    from pgtwist.pool.servers import ServerState
    from pgtwist.pool.state import Pool
    from pgtwist.wire.messages import ErrorResponse

FLUSH_MODES = ("idle", "gracefully", "all")
SHUTDOWN_MODES = ("gracefully", "immediate", "cancel")

#: How long an ending shutdown waits for the clients it told to close.
CLOSE_WAIT = 1.0

#: How often a PAUSE or a SHUTDOWN WAIT_FOR_SERVERS checks whether the
#: backends it waits for were given back (seconds).
POLL_INTERVAL = 0.05


def _terminating() -> ErrorResponse:
    """
    What PostgreSQL's fast shutdown says to a session it ends.
    """
    return errors.fatal(
        constants.SQLSTATE_ADMIN_SHUTDOWN, "terminating connection due to administrator command"
    )


def _unwritten(transport: Any) -> bool:
    """
    Whether C{transport} still holds bytes it has not written (Twisted's
    socket transports keep them in C{dataBuffer} and C{_tempDataBuffer}).
    """
    return bool(getattr(transport, "dataBuffer", b"")) or bool(
        getattr(transport, "_tempDataLen", 0)
    )


def _inTransaction(client: FrontendProtocol) -> bool:
    """
    Whether C{client} has a request running, or an open (or failed)
    transaction on its backend.
    """
    if client.busy():
        return True
    backend = client.backend
    return backend is not None and backend.transactionStatus != constants.TRANSACTION_IDLE


class Pooler(Protocol):
    """
    What the management API, the console and the metrics use of a running
    pgtwist (L{pgtwist.app.service.PoolerService} provides it). Declared
    here so that admin/ depends on nothing of app/: the service builds the
    admin surfaces, never the other way round.

    Only L{Management} reads C{pools} and C{factory}: the console and the
    metrics ask L{Management}'s queries, so that what they may see of the
    pool set and the clients is written down in one place
    (C{tests/unit/test_layers.py} holds admin/ to it).
    """

    #: The running configuration.
    config: Configuration
    #: The pools, for counts and state (read by L{Management} only).
    pools: PoolSet
    #: The clients' factory: its clients, consoles and pipelines (read by
    #: L{Management} only).
    factory: FrontendFactory
    #: This API.
    management: Management

    def reload(self) -> tuple[bool, list[str]]:
        """
        Read the files again; apply them if the whole is valid.
        """

    def reconfigure(self, config: Configuration) -> None:
        """
        Validate C{config} as a whole, then apply it.
        """

    def stopListening(self) -> None:
        """
        Stop accepting clients.
        """

    def startListening(self) -> None:
        """
        Accept clients again.
        """

    def suspendListening(self) -> None:
        """
        Leave new connections in the listen queue (SUSPEND).
        """

    def resumeListening(self) -> None:
        """
        Accept the connections queued by L{suspendListening}.
        """

    def upgrade(self) -> Deferred[bool]:
        """
        Hand the listeners to the pgtwist installed now; fires with whether
        it took them.
        """


class Management:
    """
    Operations on a running pgtwist (a L{Pooler}), and the read-only
    queries the console's C{SHOW} commands and the metrics answer from.

    The queries run on the reactor thread at each C{SHOW} or scrape, so they
    copy nothing per row: they hand out the pool set's own records
    (L{Pool}, whose C{backends} by L{BackendState}, C{waiters} and C{stats}
    callers read and never change) and live read-only views of its
    collections, valid until the reactor next runs.

    @ivar state: C{"running"}, C{"gracefully"} while a graceful shutdown
        waits for clients to leave, or C{"terminating"} while the one a
        signal started waits for transactions (L{terminate}).
    """

    log = Logger()

    def __init__(self, service: Pooler, reactor: Any) -> None:
        self.service = service
        self._reactor = reactor
        self.state = "running"
        self._watch: LoopingCall | None = None
        #: A SHUTDOWN WAIT_FOR_SERVERS paused everything (cancel resumes).
        self._pausedToStop = False
        #: The keys only a restart applies whose configured value differs
        #: from the running one (kept in C{service.config}): key -> the
        #: value waiting for the restart. Set by each reload and C{SET}.
        self.restartPending: dict[str, object] = {}
        #: When a graceful shutdown (L{terminate}) cuts what is left.
        self._deadline: float | None = None
        #: SUSPEND: the transports no longer read from, until RESUME.
        self.suspended = False
        self._suspendedTransports: list[Any] = []

    # -- queries: what the console, metrics and manhole read ----------------

    def allPools(self) -> Collection[Pool]:
        """
        Every pool, in the order the pool set made them (a live view).
        """
        return self.service.pools.pools.values()

    def sortedPools(self) -> list[Pool]:
        """
        Every pool, by (database, user).
        """
        pools = self.service.pools.pools
        return [pools[key] for key in sorted(pools)]

    def totalBackends(self) -> int:
        """
        Backends open or opening, of every pool (what C{max_connections}
        bounds).
        """
        return self.service.pools.total

    def authFailures(self) -> int:
        """
        Clients that failed to authenticate since start, whatever names
        they gave (per-pool counts exist only for pools that exist).
        """
        return self.service.pools.authFailures

    def authQueryLookups(self) -> Mapping[str, int]:
        """
        auth_query's lookups since start by outcome (C{hit}, C{query},
        C{miss}, C{error}), every name together: no user name is kept.
        """
        lookup = self.service.factory.userLookup
        return dict(lookup.outcomes) if lookup is not None else {}

    def isPaused(self, database: str | None = None) -> bool:
        """
        Whether C{database}'s clients wait for a RESUME (C{None}: whether
        everything is paused).
        """
        return self.service.pools.isPaused(database)

    def clients(self) -> Set[FrontendProtocol]:
        """
        The clients connected to the pools (not the console sessions), in
        any state from startup on (a live view).
        """
        return self.service.factory.clients

    def consoles(self) -> Set[FrontendProtocol]:
        """
        The admin console's sessions (a live view).
        """
        return self.service.factory.consoles

    def pipelineName(self, key: PoolKey) -> str:
        """
        The name of the pipeline a new client of C{key} (database, user)
        gets.
        """
        name: str = self.service.factory.pipelineFor(key).name
        return name

    def currentServer(self) -> ServerSettings:
        """
        The server new backends connect to (the primary).
        """
        return self.service.pools.servers.current

    def serverStates(self) -> list[tuple[ServerSettings, ServerState]]:
        """
        Every configured server with its state, in the configuration's
        order.
        """
        servers = self.service.pools.servers
        return [(server, servers.states[server.name]) for server in servers.servers]

    def serverRole(self, name: str) -> tuple[str, bool, int | None]:
        """
        The role found out for server C{name} (C{unknown} until a backend
        or a health check told), whether it passes its health checks, and
        its replay lag in bytes (C{None}: not measured).
        """
        health = self.service.pools.servers.health.get(name)
        if health is None:
            return "unknown", True, None
        return health.role, health.healthy, health.lagBytes

    def backendsByServer(self) -> dict[str, int]:
        """
        How many backends (open or logging in) each server has, all pools
        together.
        """
        counts: dict[str, int] = {}
        for pool in self.service.pools.pools.values():
            for entries in pool.backends.values():
                for entry in entries:
                    name = entry.backend.server.name
                    counts[name] = counts.get(name, 0) + 1
        return counts

    def nextId(self) -> int:
        """
        A number from the clients' id sequence (the console's ids for
        backends share it, as PgBouncer's do).
        """
        return self.service.factory.nextId()

    # -- operations ------------------------------------------------------------

    def flush(self, mode: str = "gracefully", database: str | None = None) -> int:
        """
        Close backends: C{idle} ones, C{gracefully} (idle now, busy ones when
        given back), or C{all} (busy ones too). C{database} C{None} or C{"*"}
        means every database. Returns how many backends were affected.
        """
        if mode not in FLUSH_MODES:
            raise ValueError(f"unknown flush mode {mode!r}; expected one of {FLUSH_MODES}")
        target = None if database in (None, "*") else database
        count = self.service.pools.flush(mode, target)
        self.log.info(
            "Flush {mode} of {database}: {count} backends",
            mode=mode,
            database=database or "*",
            count=count,
        )
        return count

    def disable(self, database: str = "*") -> None:
        """
        Refuse new clients of C{database} (C{"*"}: all) with a FATAL error;
        connected clients stay.
        """
        self.service.factory.access.disable(database)

    def enable(self, database: str = "*") -> None:
        """
        Accept new clients of C{database} (C{"*"}: all) again.
        """
        self.service.factory.access.enable(database)

    def isEnabled(self, database: str) -> bool:
        """
        Whether new clients of C{database} are accepted.
        """
        return self.service.factory.access.isEnabled(database)

    def switchTo(self, server: str) -> bool:
        """
        Make C{server} the primary; idle backends of the old one are closed,
        busy ones when given back. Returns whether the server exists.
        """
        pools = self.service.pools
        old = pools.servers.current.name
        if not pools.servers.switchTo(server):
            return False
        if old != server:
            pools.flush("gracefully", None, server=old)
        return True

    def clearServer(self, server: str) -> bool:
        """
        Forget that C{server} failed.
        """
        return self.service.pools.servers.reset(server)

    def reload(self) -> tuple[bool, list[str]]:
        """
        Re-read the configuration files; applied only if the whole new
        configuration is valid (see L{Pooler.reload}).

        @return: Whether it was applied, and the changed keys that need a
            restart.
        """
        return self.service.reload()

    def configure(self, key: str, value: str) -> None:
        """
        Change the main-section C{key} to C{value} until the next reload, as
        the console's C{SET} does: parsed as the file's value would be, then
        the whole configuration validated, then applied.

        @raise pgtwist.config.errors.ConfigError: For an unknown key, a key
            only a restart can change, or a value the configuration file
            would be refused for (with the same message); nothing changes.
        """
        self.service.reconfigure(changeSetting(self.service.config, key, value))
        self.log.info("SET {key} = {value}", key=key.lower(), value=value)

    def shutdown(self, mode: str = "gracefully") -> None:
        """
        C{gracefully}: stop accepting clients and exit once the last one
        leaves; C{cancel}: accept clients again; C{immediate}: exit now.
        """
        if mode not in SHUTDOWN_MODES:
            raise ValueError(f"unknown shutdown mode {mode!r}; expected one of {SHUTDOWN_MODES}")
        if mode == "immediate":
            self.log.info("Immediate shutdown requested")
            self._reactor.callLater(0, self._reactor.stop)
        elif mode == "gracefully":
            if self.state == "gracefully":
                return
            self.log.info(
                "Graceful shutdown: no new clients; exiting when the {count} connected leave",
                count=len(self.service.factory.clients),
            )
            self.state = "gracefully"
            self.service.stopListening()
            self._watch = LoopingCall(self._checkDrained)
            self._watch.clock = self._reactor
            self._watch.start(0.1)
        else:
            if self.state != "gracefully":
                return
            self.log.info("Graceful shutdown cancelled")
            self.state = "running"
            if self._watch is not None and self._watch.running:
                self._watch.stop()
            if self._pausedToStop:
                self._pausedToStop = False
                self.service.pools.resume(None)
            self.service.startListening()

    def upgrade(self) -> Deferred[bool]:
        """
        Start the pgtwist installed now and hand it the listeners; this
        process then drains (L{pgtwist.app.handover}). Fires with whether
        the new one took them.

        @raise Exception: The upgrade cannot start (one is under way); the
            message says why.
        """
        self.log.info("Upgrade requested")
        return self.service.upgrade()

    def pause(self, database: str | None = None) -> Deferred[None]:
        """
        PgBouncer's PAUSE: hand out no more backends for C{database}
        (C{None}: all), wait until every backend in use was given back
        (session clients keep theirs until they leave), then close the idle
        ones. Fires when done (or when RESUMEd first); cancelling it stops
        the wait, not the pause.
        """
        pools = self.service.pools
        pools.pause(database)
        self.log.info("PAUSE of {database}", database=database or "*")

        def check() -> None:
            paused = pools.isPaused(database)
            if paused and pools.inUse(database):
                return
            if paused:
                pools.flush("idle", database)
            watch.stop()

        def cancel(d: Deferred[None]) -> None:
            if watch.running:
                watch.stop()

        done: Deferred[None] = Deferred(cancel)

        def finished(_: object) -> None:
            if not done.called:
                done.callback(None)

        watch = LoopingCall(check)
        watch.clock = self._reactor
        watch.start(POLL_INTERVAL, now=True).addCallback(finished)
        return done

    def paused(self) -> tuple[bool, frozenset[str]]:
        """
        What is paused: whether everything is (a PAUSE without a database),
        and the databases paused one by one.
        """
        pools = self.service.pools
        return pools.pausedAll, frozenset(pools.pausedDatabases)

    def resume(self, database: str | None = None) -> None:
        """
        PgBouncer's RESUME: serve C{database} (C{None}: everything paused,
        or suspended) again.
        """
        self.log.info("RESUME of {database}", database=database or "*")
        if database is None and self.suspended:
            self.suspended = False
            transports, self._suspendedTransports = self._suspendedTransports, []
            for transport in transports:
                if getattr(transport, "connected", False):
                    transport.resumeProducing()
            self.service.resumeListening()
        self.service.pools.resume(database)

    def suspend(self) -> Deferred[None]:
        """
        PgBouncer's SUSPEND (for an online restart): hand out no backend,
        leave new connections in the listen queue, and read nothing more
        from clients or PostgreSQL; fires once what pgtwist had to write
        has been written. RESUME undoes it. Cancelling the Deferred stops
        the wait, not the suspension.
        """
        self.log.info("SUSPEND")
        self.suspended = True
        pools = self.service.pools
        pools.pause(None)
        self.service.suspendListening()
        transports = [client.transport for client in self.service.factory.clients]
        transports += [
            getattr(entry.backend, "transport", None)
            for pool in pools.pools.values()
            for entries in pool.backends.values()
            for entry in entries
        ]
        self._suspendedTransports = [t for t in transports if t is not None]
        for transport in self._suspendedTransports:
            transport.pauseProducing()

        def flushed() -> bool:
            return not self.suspended or not any(_unwritten(t) for t in self._suspendedTransports)

        return self._until(flushed)

    def waitClose(self, database: str | None = None) -> Deferred[None]:
        """
        PgBouncer's WAIT_CLOSE: fires once no backend of C{database}
        (C{None}: any) is still marked to close when given back (by
        RECONNECT, or a graceful flush or switch-to). Cancelling it stops
        the wait.
        """
        self.log.info("WAIT_CLOSE of {database}", database=database or "*")
        pools = self.service.pools

        def closed() -> bool:
            return not any(
                entry.closeOnRelease
                for pool in pools.pools.values()
                if database is None or pool.key[0] == database
                for entries in pool.backends.values()
                for entry in entries
            )

        return self._until(closed)

    def _until(self, done: Callable[[], bool]) -> Deferred[None]:
        """
        A Deferred that fires once C{done()} holds, asked now and every
        L{POLL_INTERVAL}; cancelling it stops asking.
        """

        def check() -> None:
            if done():
                watch.stop()

        def cancel(d: Deferred[None]) -> None:
            if watch.running:
                watch.stop()

        result: Deferred[None] = Deferred(cancel)

        def finished(_: object) -> None:
            if not result.called:
                result.callback(None)

        watch = LoopingCall(check)
        watch.clock = self._reactor
        watch.start(POLL_INTERVAL, now=True).addCallback(finished)
        return result

    def reconnect(self, database: str | None = None) -> int:
        """
        PgBouncer's RECONNECT: close idle backends now and busy ones when
        given back, so that every client gets a fresh connection.
        """
        return self.flush("gracefully", database)

    def kill(self, database: str | None = None) -> int:
        """
        PgBouncer's KILL: pause C{database} (C{None}: every database in use)
        and drop its clients and backends at once. Returns how many clients
        were dropped.
        """
        pools = self.service.pools
        factory = self.service.factory
        if database is None:
            databases = {key[0] for key in pools.pools} | {
                client.key[0] for client in factory.clients if client.key[0]
            }
        else:
            databases = {database}
        for name in databases:
            pools.pause(name)
        dropped = 0
        for client in list(factory.clients):
            if database is None or client.key[0] == database:
                client.fail(
                    errors.fatal(
                        constants.SQLSTATE_ADMIN_SHUTDOWN,
                        "database removed",
                        detail="pgtwist's admin console killed this database's connections.",
                    )
                )
                dropped += 1
        pools.flush("all", database)
        self.log.info(
            "KILL of {database}: {count} clients dropped", database=database or "*", count=dropped
        )
        return dropped

    def killClient(self, clientId: int) -> bool:
        """
        PgBouncer's KILL_CLIENT: drop the client (or console session) with
        this id. Returns whether one was found.
        """
        factory = self.service.factory
        for client in [*factory.clients, *factory.consoles]:
            if client.id == clientId:
                client.fail(
                    errors.fatal(constants.SQLSTATE_ADMIN_SHUTDOWN, "admin forced disconnect")
                )
                self.log.info("KILL_CLIENT {clientId}", clientId=clientId)
                return True
        return False

    def shutdownWaitForServers(self) -> Deferred[None]:
        """
        PgBouncer's SHUTDOWN WAIT_FOR_SERVERS: stop accepting clients, PAUSE
        everything, and exit once every backend was given back. Returns the
        PAUSE (it fires just before the reactor is stopped).
        """
        self.log.info("Shutdown once every backend is given back")
        self.state = "gracefully"
        self.service.stopListening()
        self._pausedToStop = True
        paused = self.pause(None)

        def stop(_: object) -> None:
            if self.state == "gracefully":
                self._reactor.callLater(0, self._reactor.stop)

        paused.addCallback(stop)
        return paused

    def terminate(self) -> None:
        """
        SIGTERM or SIGINT (systemd stops services with SIGTERM): a graceful
        shutdown, as PostgreSQL's smart-then-fast one looks to clients. No
        new client is accepted (a login gets C{57P03 the database system is
        shutting down}), no new transaction starts (the pools are paused),
        clients not in a transaction are ended with C{57P01 terminating
        connection due to administrator command}, and those in one are
        ended the same way once it is over, or when C{shutdown_timeout}
        runs out; then pgtwist exits. A second signal exits at once.
        """
        if self.state == "terminating":
            self.log.warn("Second stop signal: shutting down immediately")
            self._stopTerminating()
            return
        timeout = self.service.config.main.shutdownTimeout
        self.log.info(
            "Stop signal: no new clients or transactions; exiting once the {count} "
            "transactions under way end (at most {timeout}s; 0 = no limit)",
            count=sum(1 for client in self.service.factory.clients if _inTransaction(client)),
            timeout=timeout,
        )
        if self._watch is not None and self._watch.running:
            self._watch.stop()
        self.state = "terminating"
        self.service.stopListening()
        self.service.pools.pause(None)
        self._deadline = self._reactor.seconds() + timeout if timeout > 0 else None
        self._watch = LoopingCall(self._endIdleClients)
        self._watch.clock = self._reactor
        self._watch.start(POLL_INTERVAL, now=True)

    def quit(self) -> None:
        """
        SIGQUIT, PgBouncer's immediate shutdown: no new client, and every
        client is ended at once with C{57P01}, transactions under way or
        not; pgtwist exits once their connections closed (a second at
        most, so that the error reaches them).
        """
        self.log.warn("SIGQUIT: shutting down immediately")
        if self.state != "terminating":
            self.state = "terminating"
            self.service.stopListening()
            self.service.pools.pause(None)
        self._stopTerminating()

    def _endIdleClients(self) -> None:
        """
        During a graceful shutdown: end the clients outside a transaction
        (all of them once C{shutdown_timeout} ran out); exit when none is
        left.
        """
        late = self._deadline is not None and self._reactor.seconds() >= self._deadline
        for client in list(self.service.factory.clients):
            if late or not _inTransaction(client):
                client.fail(_terminating())
        # A client already ended counts as gone: a TLS peer that never
        # answers the close_notify keeps its connection open, and must not
        # hold the exit until shutdown_timeout (_stopTerminating still
        # gives every close a moment to go out).
        if late or all(client.ended for client in self.service.factory.clients):
            if late:
                self.log.warn("shutdown_timeout ran out: transactions under way were cut")
            else:
                self.log.info("No transaction left; shutting down")
            self._stopTerminating()

    def _stopTerminating(self) -> None:
        """
        End every client left with 57P01 and exit once their connections
        closed (so that the error reaches them: the reactor's shutdown
        drops what is not written yet), or after L{CLOSE_WAIT} seconds.
        """
        if self._watch is not None and self._watch.running:
            self._watch.stop()
        clients = self.service.factory.clients
        for client in list(clients):
            client.fail(_terminating())
        deadline = self._reactor.seconds() + CLOSE_WAIT

        def check() -> None:
            if clients and self._reactor.seconds() < deadline:
                return
            watch.stop()
            try:
                self._reactor.stop()
            except ReactorNotRunning:
                pass  # already stopping: the first signal's shutdown goes on

        watch = self._watch = LoopingCall(check)
        watch.clock = self._reactor
        watch.start(POLL_INTERVAL, now=True)

    def _checkDrained(self) -> None:
        if self.state == "gracefully" and not self.service.factory.clients:
            self.log.info("All clients left; shutting down")
            assert self._watch is not None
            self._watch.stop()
            self._reactor.stop()

    def status(self) -> dict[str, Any]:
        """
        What pgagroal-cli's C{status} shows: state, connection counts, servers
        and per-pool detail.
        """
        main = self.service.config.main
        servers = [
            {
                "name": server.name,
                "host": server.host,
                "port": server.port,
                "state": state.value,
            }
            for server, state in self.serverStates()
        ]
        detail = []
        for pool in self.sortedPools():
            detail.append(
                {
                    "database": pool.key[0],
                    "user": pool.key[1],
                    **{state.value: pool.count(state) for state in BackendState},
                    "waiting": len(pool.waiters),
                }
            )
        return {
            "status": self.state,
            "active_connections": sum(p.count(BackendState.ACTIVE) for p in self.allPools()),
            "total_connections": self.totalBackends(),
            "max_connections": main.maxConnections,
            "clients": len(self.clients()),
            "servers": servers,
            "pools": detail,
            "disabled": sorted(self.service.factory.access.disabled),
            "configuration": dataclasses.asdict(self.service.config.paths),
        }
