# -*- test-case-name: tests.unit.test_pool -*-
"""
Backends by (database, user), bounded by C{max_connections}.

Every backend has one L{PooledBackend} record, kept here (not on the
connection) from its connect to its close, with its L{BackendState};
L{PoolSet._moveTo} is the only place that changes that state, so the counts
shown to operators cannot drift (PgBouncer's C{change_server_state}).
"""

from __future__ import annotations

__all__ = [
    "BackendState",
    "Pool",
    "PooledBackend",
    "PoolSet",
]

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, gatherResults, succeed
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pgtwist.config.limits import backendDatabase, clientLimits, matchLimit, routingFor
from pgtwist.config.model import Configuration, PoolKey, ServerSettings
from pgtwist.config.pgagroalkeys import DISCARD_ALL
from pgtwist.config.verifiers import BackendCredential
from pgtwist.interfaces import (
    IAuthMethod,
    IBackendLink,
    IBackendPool,
    IPooledConnection,
    PoolTimeout,
)
from pgtwist.net.backend import BackendError, BackendGone, connectBackend
from pgtwist.net.cancel import sendCancel
from pgtwist.pool.health import HealthChecker
from pgtwist.pool.servers import ServerSet
from pgtwist.pool.state import (
    BackendState,
    Pool,
    PooledBackend,
    Waiter,
)
from pgtwist.pool.stats import PoolStats
from pgtwist.wire import constants, errors
from pgtwist.wire.messages import ErrorResponse
from pgtwist.wire.startupsettings import setStatements

if TYPE_CHECKING:
    from pgtwist.net.backend import BackendProtocol

#: Foreground validation skips backends idle for less than this (seconds): one
#: used that recently has just proved itself, and checking it would add a
#: round trip to every transaction of a busy pool.
VALIDATION_DELAY = 1.0

#: The longest maintenance waits before opening another backend for a pool
#: whose logins PostgreSQL keeps refusing (seconds; 1, 2, 4... up to this).
REFUSED_BACKOFF_MAX = 60.0

#: The longest L{PoolSet.closeIdleBackends} waits for closed backends'
#: connections to be gone (seconds).
CLOSE_WAIT = 5.0

#: An idle timer that finds less than this left of a backend's idle time
#: counts it as expired (float rounding must not re-arm it for nothing).
_TIMER_SLACK = 1e-6


#: Opens a backend: the connection at once (so that it is counted while it
#: logs in) and a Deferred that fires with it once it is ready for queries.
Connector = Callable[
    [ServerSettings, PoolKey, "BackendCredential | None"],
    "tuple[IPooledConnection, Deferred[IPooledConnection]]",
]


@implementer(IBackendPool)
class PoolSet(Service):
    """
    All pools, and the global C{max_connections} budget they share.

    Besides L{IBackendPool}, its public operations (L{flush}, L{hasRoomFor},
    L{openBackend}, L{validate}, L{closeAndForget}) are what maintenance
    (L{pgtwist.pool.maintenance}) and the management API use.

    @ivar credentialRefused: Called with a pool's key when PostgreSQL (or
        pgtwist's SCRAM client, seeing another salt or iteration count)
        refused the pass-through credential that pool remembered: the
        verifier the clients were checked against is stale (the password
        was changed). Whoever supplies verifiers (the C{auth_query} cache)
        forgets its answer for the user, so that the next login looks again.
    """

    log = Logger()
    name = "pools"

    def __init__(
        self,
        config: Configuration,
        reactor: Any,
        authMethods: Sequence[IAuthMethod],
        connector: Connector | None = None,
    ) -> None:
        self.config = config
        self._reactor = reactor
        self._authMethods = authMethods
        self._connector: Connector = connector or self._connect
        self.pools: dict[PoolKey, Pool] = {}
        #: The record of every backend not closed yet.
        self._entries: dict[IBackendLink, PooledBackend] = {}
        #: Every pool with waiters, and perhaps a few whose waiters have gone
        #: since (see L{_queueWaiter}): L{_serveAll} runs at each release,
        #: and must not look at every pool of the process to find none.
        self._waiting: dict[PoolKey, Pool] = {}
        self.total = 0
        self.servers = ServerSet(config.servers, reactor)
        #: Clients that failed to authenticate, whatever names they gave
        #: (see L{countAuthFailure}).
        self.authFailures = 0
        #: Console PAUSE: every pool (C{pausedAll}) or those of some databases.
        self.pausedAll = False
        self.pausedDatabases: set[str] = set()
        #: Who waits for which closed backend's connection to be gone
        #: (see L{closeIdleBackends}).
        self._goneWaiters: dict[IPooledConnection, list[Deferred[None]]] = {}
        #: Sends a CancelRequest: C{(server, processId, secretKey)} (see L{abandon}).
        self.sendCancel: Callable[[ServerSettings, int, int], None] = (
            lambda server, processId, secretKey: sendCancel(reactor, server, processId, secretKey)
        )
        #: Called with a pool's key when PostgreSQL refuses the credential a
        #: client left for pass-through (a changed password): the auth_query
        #: cache drops its entry.
        self.credentialRefused: Callable[[PoolKey], None] | None = None
        #: pgagroal 2.x's health checks (L{pgtwist.pool.health}).
        self.health = HealthChecker(
            config, self.servers, reactor, self._healthConnect, self.serversChanged
        )
        #: With C{workers = N}: asks the other workers to close their idle
        #: backends to a database (L{closeIdleBackendsHere}); fires when
        #: they answered, or after a bound.
        self.closeIdleElsewhere: Callable[[str], Deferred[None]] | None = None
        #: Set in a process an upgrade replaced: it hands its idle backends
        #: to the new one, so maintenance opens none to keep pools at their
        #: minimum (each would be a login for nothing).
        self.draining = False

    def _connect(
        self, server: ServerSettings, key: PoolKey, password: BackendCredential | None
    ) -> tuple[IPooledConnection, Deferred[IPooledConnection]]:
        # server_connect_timeout bounds the TCP connect here, and the login
        # too (see openBackend); 0 leaves Twisted's connect timeout.
        timeout = self.config.main.serverConnectTimeout or 30.0
        backend, ready = connectBackend(
            self._reactor,
            server,
            key,
            password,
            self._authMethods,
            timeout,
            database=backendDatabase(self.config, key),
        )
        return backend, ready.addCallback(_pooled)

    def _healthConnect(
        self, server: ServerSettings, key: PoolKey, password: str | None
    ) -> tuple[Any, Deferred[Any]]:
        timeout = self.config.main.healthCheckTimeout or 5.0
        return connectBackend(self._reactor, server, key, password, self._authMethods, timeout)

    # -- servers: roles, health and routing (pgtwist.pool.routing) -----------

    def serversChanged(self) -> None:
        """
        A health check round ended, or a login found a server's role: a
        read-write pool follows a promotion (unless C{failover_script}
        decides), backends left on a server their pool should no longer
        use are closed (idle ones now, the others when given back), and
        waiters are served.
        """
        if routingFor(self.config, ("", "")).followPrimary:
            self.servers.followPrimary()
        for pool in list(self.pools.values()):
            allowed = {s.name for s in self.servers.candidates(routingFor(self.config, pool.key))}
            for state in (BackendState.IDLE, BackendState.ACTIVE, BackendState.RESETTING):
                for entry in list(pool.backends[state]):
                    if entry.backend.server.name in allowed:
                        continue
                    if state is BackendState.IDLE:
                        self.closeAndForget(entry)
                    else:
                        entry.closeOnRelease = True
        self._serveAll()

    def _roleFound(self, backend: IPooledConnection, entry: PooledBackend, standby: bool) -> None:
        """
        A new backend told its server's role: record it; keep the backend
        if its pool may use that server, else close it (and serve the
        waiters from a server it may use).
        """
        if entry.state is not BackendState.CONNECTING:
            return
        if self.servers.observeRole(backend.server.name, standby):
            self.serversChanged()
            if entry.state is not BackendState.CONNECTING:
                return
        routing = routingFor(self.config, backend.key)
        if backend.server.name not in {s.name for s in self.servers.candidates(routing)}:
            self.log.info(
                "Backend {backendPid} of {poolKey}: server {server} is no "
                "target_session_attrs={attrs} server; closing it",
                backendPid=backend.processId,
                poolKey=backend.key,
                server=backend.server.name,
                attrs=routing.targetSessionAttrs,
            )
            self.closeAndForget(entry)
            self._serveAll()
            return
        self._opened(backend, entry)

    def reconfigure(self, config: Configuration) -> None:
        """
        Use C{config} from now on (limits, timeouts, passwords, servers).
        """
        self.config = config
        self.servers.reconfigure(config.servers)
        self.health.reconfigure(config)
        for pool in self.pools.values():
            pool.limitIndex = matchLimit(config.limits, *pool.key)
            pool.limits = clientLimits(config, pool.key)
        self._serveAll()

    def pool(self, key: PoolKey) -> Pool:
        """
        The pool for C{key}, created on first use.
        """
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = Pool(
                key, matchLimit(self.config.limits, *key), clientLimits(self.config, key)
            )
            pool.paused = self.isPaused(key[0])
        return pool

    # -- PAUSE / RESUME (the admin console) ----------------------------------

    def isPaused(self, database: str | None = None) -> bool:
        """
        Whether C{database}'s waiters go unserved (C{None}: whether all do).
        """
        return self.pausedAll or (database is not None and database in self.pausedDatabases)

    def pause(self, database: str | None = None) -> None:
        """
        Serve no waiter of C{database} (C{None}: of any); lent backends stay lent.
        """
        if database is None:
            self.pausedAll = True
        else:
            self.pausedDatabases.add(database)
        for pool in self.pools.values():
            pool.paused = self.isPaused(pool.key[0])

    def resume(self, database: str | None = None) -> None:
        """
        Undo L{pause} of C{database} (C{None}: every pause) and serve the waiters.
        """
        if database is None:
            self.pausedAll = False
            self.pausedDatabases.clear()
        self.pausedDatabases.discard(database or "")
        for pool in self.pools.values():
            pool.paused = self.isPaused(pool.key[0])
        self._serveAll()

    def statsFor(self, key: PoolKey) -> PoolStats:
        """
        See L{IBackendPool.statsFor}.
        """
        return self.pool(key).stats

    def authRequestCode(self, key: PoolKey) -> int | None:
        """
        See L{IBackendPool.authRequestCode}.
        """
        pool = self.pools.get(key)
        return pool.authRequestCode if pool is not None else None

    def countAuthFailure(self, key: PoolKey) -> None:
        """
        See L{IBackendPool.countAuthFailure}.
        """
        self.authFailures += 1
        pool = self.pools.get(key)
        if pool is not None:
            pool.stats.authFailure += 1

    def rememberCredential(self, key: PoolKey, credential: BackendCredential) -> None:
        """
        See L{IBackendPool.rememberCredential}. The latest client's wins:
        after a password change, the first client to prove the new one
        brings the credential that works.
        """
        if self.config.backendPassword(key[1]) is not None:
            return
        pool = self.pools.get(key) or self.pool(key)
        pool.credential = credential
        if pool.waiters:
            # Waiters that found no credential (a refused one was forgotten)
            # may now be served.
            self._serveAll(first=pool)

    def _credentialFor(self, pool: Pool) -> BackendCredential | None:
        """
        What a new backend of C{pool} logs in with: the vault's password
        (or C{auth_file}'s plaintext one), else the pool's pass-through
        credential.
        """
        password = self.config.backendPassword(pool.key[1])
        return password if password is not None else pool.credential

    def _refused(
        self, pool: Pool, credential: BackendCredential | None, error: ErrorResponse
    ) -> bool:
        """
        After a refused login: if it used C{pool}'s pass-through credential
        and the refusal is a wrong password, forget the credential (it is
        stale), tell L{credentialRefused}, and return C{True}.
        """
        if (
            credential is None
            or pool.credential is not credential
            or error.code != constants.SQLSTATE_INVALID_PASSWORD
        ):
            return False
        pool.credential = None
        self.log.warn(
            "The pass-through login for {poolKey} failed as a wrong password does: the "
            "verifier its clients were checked against is stale (the password was "
            "changed?); forgetting the credential",
            poolKey=pool.key,
        )
        hook = self.credentialRefused
        if hook is not None:
            try:
                hook(pool.key)
            except Exception:
                self.log.failure("credentialRefused hook failed for {poolKey}", poolKey=pool.key)
        return True

    def isConfigured(self, key: PoolKey) -> bool:
        """
        Whether a databases-file line names C{key}'s database and user
        (neither C{all}): such a pool is kept however long it is unused
        (see L{dropPool}).
        """
        return "all" not in key and any(
            (limit.database, limit.user) == key for limit in self.config.limits
        )

    def dropPool(self, key: PoolKey) -> bool:
        """
        Forget C{key}'s pool, statistics included, if it has no backend and
        no waiter (PgBouncer's C{autodb_idle_timeout} dropping a database it
        made up); the next client of C{key} gets a new one. Returns whether
        it was dropped.
        """
        pool = self.pools.get(key)
        if pool is None or pool.size or pool.waiters:
            return False
        del self.pools[key]
        self._waiting.pop(key, None)
        self._disarmWaitTimer(pool)
        return True

    def entryFor(self, backend: IBackendLink) -> PooledBackend | None:
        """
        The pool's record of C{backend}, or C{None} once it is closed (or
        when it is none of this pool set's).
        """
        return self._entries.get(backend)

    def inUse(self, database: str | None = None) -> int:
        """
        Backends of C{database} (C{None}: all) lent, resetting or logging in.
        """
        busy = (BackendState.ACTIVE, BackendState.RESETTING, BackendState.CONNECTING)
        pools = [p for p in self.pools.values() if database in (None, p.key[0])]
        return sum(pool.count(state) for pool in pools for state in busy)

    # -- the single state mutator --------------------------------------------

    def _moveTo(self, entry: PooledBackend, state: BackendState) -> None:
        # Runs twice per transaction in transaction pooling: kept lean (no
        # timer per move, the idle list popped from its end).
        old = entry.state
        if old is state:
            return
        backend = entry.backend
        pool = self.pool(backend.key)
        if old is not None:
            pool.backends[old].discard(entry)
            if old is BackendState.IDLE:
                idle = pool.idle
                if idle[-1] is entry:
                    idle.pop()
                else:
                    idle.remove(entry)
            if old is not BackendState.CLOSED and state is BackendState.CLOSED:
                self.total -= 1
                pool.stats.connectionsClosed += 1
        elif state is not BackendState.CLOSED:
            self.total += 1
        entry.state = state
        if state is BackendState.CLOSED:
            self._entries.pop(backend, None)
            if entry.idleTimer is not None:
                if entry.idleTimer.active():
                    entry.idleTimer.cancel()
                entry.idleTimer = None
            return
        pool.backends[state].add(entry)
        if state is BackendState.IDLE:
            pool.idle.append(entry)
            entry.lastUsedAt = self._reactor.seconds()
            if entry.idleTimer is None:
                timeout = self.config.main.idleTimeout
                if timeout > 0:
                    entry.idleTimer = self._reactor.callLater(timeout, self._idleExpired, entry)

    def closeAndForget(self, entry: PooledBackend) -> None:
        """
        Close C{entry}'s backend and stop counting it, without serving
        waiters (the caller does, once it is done closing).
        """
        self._moveTo(entry, BackendState.CLOSED)
        entry.backend.close()

    def adoptBackend(self, backend: IPooledConnection) -> bool:
        """
        Count a backend another pgtwist process opened (an upgrade hands it
        over with its client) as lent to that client; C{False}, and nothing
        counted, when C{max_connections} leaves no room for it.
        """
        pool = self.pool(backend.key)
        if not self.hasRoomFor(pool):
            return False
        entry = self._entries[backend] = PooledBackend(backend, self._reactor.seconds())
        self._moveTo(entry, BackendState.ACTIVE)
        backend.lostCallback = self._backendLost
        return True

    def takeIdle(self, wanted: Callable[[IPooledConnection], bool]) -> list[IPooledConnection]:
        """
        Take the idle backends C{wanted} accepts out of the idle lists,
        counted as lent, for another pgtwist process (an upgrade): each is
        then either let go of (L{letGo}) or given back (L{release}).
        """
        taken = []
        for pool in list(self.pools.values()):
            for entry in list(pool.idle):
                if wanted(entry.backend):
                    self._moveTo(entry, BackendState.ACTIVE)
                    taken.append(entry.backend)
        return taken

    def letGo(self, backend: IPooledConnection) -> None:
        """
        Stop counting a lent backend without closing it: another pgtwist
        process serves it now (an upgrade).
        """
        backend.lostCallback = None
        entry = self._entries.get(backend)
        if entry is not None:
            self._moveTo(entry, BackendState.CLOSED)

    # -- IBackendPool ---------------------------------------------------------

    def acquire(self, key: PoolKey, parameters: Mapping[str, str] | None) -> Deferred[IBackendLink]:
        """
        See L{IBackendPool.acquire}.
        """
        if parameters is None:
            backend = self.acquireIdle(key)
            if backend is not None:
                return succeed(backend)
        pool = self.pool(key)
        now = self._reactor.seconds()
        timeout = self.waitTimeout(pool)[0]
        waiter = Waiter(parameters, now, now + timeout if timeout > 0 else None)

        def cancel(d: Deferred[IBackendLink]) -> None:
            self._forgetWaiter(pool, waiter)

        waiter.deferred = Deferred(cancel)
        self._queueWaiter(pool, waiter)
        self._serve(pool)
        return waiter.deferred

    def acquireIdle(self, key: PoolKey) -> IBackendLink | None:
        """
        See L{IBackendPool.acquireIdle}: the transaction pipeline's hot path,
        with no Deferred, timer or waiter, as long as the backend needs
        neither replacing nor checking.
        """
        pool = self.pools.get(key)
        if pool is None or not pool.idle or pool.waiters or pool.paused:
            return None
        entry = pool.idle[-1]
        backend = entry.backend
        if not backend.connected or backend.closing:
            return None
        if (
            self.config.main.validation == "foreground"
            and self._reactor.seconds() - entry.lastUsedAt >= VALIDATION_DELAY
        ):
            return None
        # _moveTo(entry, ACTIVE), inlined: the one move of every lend.
        pool.backends[BackendState.IDLE].discard(entry)
        pool.idle.pop()
        entry.state = BackendState.ACTIVE
        pool.backends[BackendState.ACTIVE].add(entry)
        pool.stats.serverAssignmentCount += 1
        return backend

    def release(self, backend: IBackendLink, reset: bool = True) -> None:
        """
        See L{IBackendPool.release}.
        """
        entry = self._entries.get(backend)
        if entry is None:
            return
        backend = entry.backend
        if (
            not backend.clean
            or backend.closing
            or backend.transactionStatus != constants.TRANSACTION_IDLE
        ):
            self.discard(backend, "released in a transaction or with a request in flight")
            return
        if entry.closeOnRelease:
            self.discard(backend, "flushed")
            return
        age = self.config.main.maxConnectionAge
        if age > 0 and self._reactor.seconds() - entry.createdAt >= age:
            self.discard(backend, "max_connection_age")
            return
        if not reset:
            if entry.state is BackendState.ACTIVE and (
                entry.idleTimer is not None or self.config.main.idleTimeout <= 0
            ):
                # _moveTo(entry, IDLE), inlined: the one move of every
                # take-back (the idle timer is armed from the first time the
                # backend went idle; it checks lastUsedAt when it fires).
                pool = self.pools[backend.key]
                backends = pool.backends
                backends[BackendState.ACTIVE].discard(entry)
                entry.state = BackendState.IDLE
                backends[BackendState.IDLE].add(entry)
                pool.idle.append(entry)
                entry.lastUsedAt = self._reactor.seconds()
                if pool.waiters or self._waiting:
                    self._serveAll(first=pool)
                return
            self._moveTo(entry, BackendState.IDLE)
            self._serveAll(first=self.pool(backend.key))
            return
        self._moveTo(entry, BackendState.RESETTING)
        query = self.config.main.serverResetQuery
        resetting: Deferred[ErrorResponse | None]
        if query == DISCARD_ALL:
            resetting = backend.resetSession()
        else:
            # server_reset_query first; DISCARD ALL after it, which the
            # pipelines' prepared-statement and LISTEN tracking rely on.
            resetting = backend.simpleQuery(query).addCallback(self._cbResetQuery, entry)
        resetting.addCallbacks(
            self._cbReset, self._ebReset, callbackArgs=(entry,), errbackArgs=(entry,)
        )

    def discard(self, backend: IBackendLink, reason: str) -> None:
        """
        See L{IBackendPool.discard}.
        """
        entry = self._entries.get(backend)
        if entry is None:
            return
        self.log.debug(
            "Closing backend {backendPid} of {poolKey}: {reason}",
            backendPid=backend.processId,
            poolKey=entry.backend.key,
            reason=reason,
        )
        self.closeAndForget(entry)
        self._serveAll()

    def abandon(self, backend: IBackendLink) -> None:
        """
        See L{IBackendPool.abandon}: PostgreSQL would go on running the
        request of a client that is gone until it next reads from the
        socket (a C{pg_sleep(60)} for a minute), so it is cancelled, then
        the backend is closed. The cancel is sent only while the backend is
        still lent (C{ACTIVE}), and it is closed in the same turn, never
        lent again: it cannot reach a backend serving someone else. Once
        the cancel arrives, the backend ends its request, reads the
        Terminate it was sent, and exits.
        """
        entry = self._entries.get(backend)
        if entry is None:
            return
        pooled = entry.backend
        if (
            entry.state is BackendState.ACTIVE
            and pooled.connected
            and not pooled.closing
            and pooled.processId
        ):
            self.log.info(
                "Cancelling the request of backend {backendPid} of {poolKey}: its client is gone",
                backendPid=pooled.processId,
                poolKey=pooled.key,
            )
            self.sendCancel(pooled.server, pooled.processId, pooled.secretKey)
        self.discard(backend, "its client is gone with a request running")

    def closeIdleBackends(self, database: str) -> Deferred[None]:
        """
        See L{IBackendPool.closeIdleBackends}: this process's idle backends
        to C{database} (L{closeIdleBackendsHere}), and the other workers'
        (L{closeIdleElsewhere}).
        """
        here = self.closeIdleBackendsHere(database)
        elsewhere = self.closeIdleElsewhere
        if elsewhere is None:
            return here
        both = gatherResults([here, elsewhere(database)], consumeErrors=True)
        return both.addBoth(lambda _: None)

    def closeIdleBackendsHere(self, database: str) -> Deferred[None]:
        """
        Idle backends of C{database}
        are closed now; those being reset (a client just gave them back)
        are closed once the reset ends, and PostgreSQL, which waits up to
        5 s for sessions on their way out, sees them go too. Waits at most
        L{CLOSE_WAIT} seconds for the connections to be gone, and for as
        long maintenance opens no backend to C{database} (MIN_SIZE would
        reopen one under the statement).
        """
        gone: list[Deferred[None]] = []
        closed = 0
        quiet = self._reactor.seconds() + CLOSE_WAIT
        for pool in list(self.pools.values()):
            if pool.key[0] != database:
                continue
            # Maintenance (MIN_SIZE) must not open one meanwhile.
            pool.openAfter = max(pool.openAfter, quiet)
            for entry in list(pool.backends[BackendState.RESETTING]):
                entry.closeOnRelease = True
            for entry in list(pool.idle):
                backend = entry.backend
                if backend.connected:
                    d: Deferred[None] = Deferred()
                    self._goneWaiters.setdefault(backend, []).append(d)
                    gone.append(d)
                self.closeAndForget(entry)
                closed += 1
        if closed:
            self.log.info(
                "Closed {count} idle backends of database {database!r} for a statement"
                " that needs it without other sessions",
                count=closed,
                database=database,
            )
        if not gone:
            return succeed(None)
        done: Deferred[None] = Deferred()
        timer = self._reactor.callLater(CLOSE_WAIT, self._cbGone, None, done, None)
        gatherResults(gone).addBoth(self._cbGone, done, timer)
        return done

    @staticmethod
    def _cbGone(result: object, done: Deferred[None], timer: Any) -> None:
        if timer is not None and timer.active():
            timer.cancel()
        if not done.called:
            done.callback(None)

    # -- internals ------------------------------------------------------------

    def _cbResetQuery(
        self, error: ErrorResponse | None, entry: PooledBackend
    ) -> Deferred[ErrorResponse | None]:
        """
        C{server_reset_query} ran: reset with C{DISCARD ALL} next, unless it
        failed (L{_cbReset} then closes the backend, pgagroal's C{discard}).
        """
        backend = entry.backend
        if error is not None or entry.state is not BackendState.RESETTING or backend.closing:
            return succeed(error)
        return backend.resetSession()

    def _cbReset(self, error: ErrorResponse | None, entry: PooledBackend) -> None:
        if entry.state is not BackendState.RESETTING:
            return
        backend = entry.backend
        if error is not None or backend.closing:
            self.discard(backend, f"reset failed: {error.message if error else 'closing'}")
            return
        if entry.closeOnRelease:
            self.discard(backend, "its database is wanted without other sessions")
            return
        self._moveTo(entry, BackendState.IDLE)
        self._serveAll(first=self.pool(backend.key))

    def _ebReset(self, reason: Failure, entry: PooledBackend) -> None:
        self.discard(entry.backend, f"reset failed: {reason.getErrorMessage()}")

    def _forgetWaiter(self, pool: Pool, waiter: Waiter) -> None:
        try:
            pool.waiters.remove(waiter)
        except ValueError:
            pass
        if not pool.waiters and pool.waitTimer is not None:
            self._disarmWaitTimer(pool)

    def waitTimeout(self, pool: Pool) -> tuple[float, str]:
        """
        How long a client of C{pool} may wait for a backend, and the key
        that says so: PgBouncer's C{query_wait_timeout} where one is set
        (main section or databases file), else pgagroal's
        C{blocking_timeout}.
        """
        limit = pool.limits.queryWaitTimeout
        if limit is not None:
            return limit, "query_wait_timeout"
        return self.config.main.blockingTimeout, "blocking_timeout"

    def _armWaitTimer(self, pool: Pool) -> None:
        """
        Have L{_waitersTimedOut} run at the earliest deadline of C{pool}'s
        waiters.

        One timer per pool, not one per wait: with more clients than
        backends every transaction waits, and a C{callLater} and a
        C{cancel} per wait cost more than the rest of the wait. A waiter
        served or gone leaves the timer armed while others wait (it finds
        the next deadline when it fires); the last one disarms it.
        """
        deadlines = [w.deadline for w in pool.waiters if w.deadline is not None]
        timer = pool.waitTimer
        if timer is not None:
            pool.waitTimer = None
            if timer.active():
                timer.cancel()
        if not deadlines:
            return
        deadline = pool.waitDeadline = min(deadlines)
        delay = max(0.0, deadline - self._reactor.seconds())
        pool.waitTimer = self._reactor.callLater(delay, self._waitersTimedOut, pool)

    def _disarmWaitTimer(self, pool: Pool) -> None:
        """
        Cancel C{pool}'s wait timer: its queue is empty.
        """
        timer = pool.waitTimer
        pool.waitTimer = None
        if timer is not None and timer.active():
            timer.cancel()

    def _waitersTimedOut(self, pool: Pool) -> None:
        """
        Fail the waiters of C{pool} whose wait has run out, oldest first,
        and arm the timer for the next deadline.
        """
        pool.waitTimer = None
        # A hair's slack: the timer's time, computed from a delay, may come
        # out a rounding error before the deadline it was set for.
        late = self._reactor.seconds() + 1e-6
        waiters = pool.waiters
        expired = [w for w in waiters if w.deadline is not None and w.deadline <= late]
        if expired:
            kept = [w for w in waiters if w.deadline is None or w.deadline > late]
            waiters.clear()
            waiters.extend(kept)
        setting = self.waitTimeout(pool)[1]
        for waiter in expired:
            pool.stats.timeouts += 1
            self.log.warn(
                "A client of {poolKey} waited {timeout}s for a backend; giving up ({setting})",
                poolKey=pool.key,
                timeout=round(waiter.deadline - waiter.since, 3),  # type: ignore[operator]
                setting=setting,
            )
            waiter.deferred.errback(PoolTimeout(setting))
        if waiters:
            self._armWaitTimer(pool)

    def _queueWaiter(self, pool: Pool, waiter: Waiter, first: bool = False) -> None:
        """
        Make C{waiter} wait in C{pool} (at the head of the queue if C{first}).

        Waiters leave their queue in several places (served, timed out,
        cancelled, failed); L{_serveAll} drops a pool from C{_waiting} once
        its queue is found empty.
        """
        if first:
            pool.waiters.appendleft(waiter)
        else:
            pool.waiters.append(waiter)
        deadline = waiter.deadline
        if deadline is not None and (pool.waitTimer is None or deadline < pool.waitDeadline):
            self._armWaitTimer(pool)
        self._waiting[pool.key] = pool

    def _serveAll(self, first: Pool | None = None) -> None:
        """
        Something was freed: serve waiters, oldest first.
        """
        if first is not None and first.waiters:
            self._serve(first)
        if not self._waiting:
            return
        waiting = [p for p in self._waiting.values() if p.waiters]
        if len(waiting) < len(self._waiting):
            self._waiting = {p.key: p for p in waiting}
        if len(waiting) > 1:
            waiting.sort(key=lambda p: p.waiters[0].since)
        for pool in waiting:
            if pool is not first:
                # first was served above; nothing since could help it more.
                self._serve(pool)

    def _serve(self, pool: Pool) -> None:
        """
        Give C{pool}'s waiters what can be given: idle backends, then new
        connections within the budget, then room made by closing another
        pool's idle backends.
        """
        while pool.waiters and not pool.paused:
            if pool.idle:
                entry = pool.idle[-1]
                backend = entry.backend
                if not backend.connected or backend.closing:
                    # Died in the pool before anyone noticed: replace it.
                    self.closeAndForget(entry)
                    continue
                waiter = pool.waiters.popleft()
                if not pool.waiters and pool.waitTimer is not None:
                    self._disarmWaitTimer(pool)
                idleFor = self._reactor.seconds() - entry.lastUsedAt
                self._moveTo(entry, BackendState.RESETTING)
                if self.config.main.validation == "foreground" and idleFor >= VALIDATION_DELAY:
                    backend.simpleQuery("").addCallbacks(
                        self._cbValidatedForWaiter,
                        self._ebValidatedForWaiter,
                        callbackArgs=(entry, waiter),
                        errbackArgs=(entry, waiter),
                    )
                else:
                    self._prepare(entry, waiter)
                continue
            connecting = pool.count(BackendState.CONNECTING)
            if connecting >= len(pool.waiters):
                return
            if pool.connectFailures and (connecting or self._reactor.seconds() < pool.retryAt):
                # Failing: probe with one connection at a time, after the back-off.
                return
            if self.servers.switching is not None:
                # Failing over: nowhere to connect until the script ends.
                return
            # Whether a server may take a new backend (target_session_attrs,
            # health, lag) is asked only once one could be opened: with more
            # clients than backends, every wait comes here and finds the
            # budget spent.
            if not self.hasRoomFor(pool):
                victim = self._evictionCandidate(pool)
                if victim is None and not self._hasReserveFor(pool):
                    return
                if not self._routable(pool):
                    return
                if victim is not None:
                    self.closeAndForget(victim)
            elif not self._routable(pool):
                return
            self.openBackend(pool)

    def _routable(self, pool: Pool) -> bool:
        """
        Whether some server may take a new backend of C{pool} now; if none
        (target_session_attrs, health, lag), its clients wait for one.
        """
        return bool(self.servers.candidates(routingFor(self.config, pool.key)))

    def _lineCap(self, index: int) -> int:
        limits = self.config.limits
        maxSize = limits[index].maxSize
        if maxSize is not None:
            return maxSize
        reserved = sum(
            limit.maxSize for i, limit in enumerate(limits) if i != index and limit.maxSize
        )
        return max(0, self.config.main.maxConnections - reserved)

    def _lineUsage(self, index: int) -> int:
        return sum(p.size for p in self.pools.values() if p.limitIndex == index)

    def hasRoomFor(self, pool: Pool) -> bool:
        """
        Whether a new backend for C{pool} fits both the global
        C{max_connections} and its databases-file line.
        """
        if self.total >= self.config.main.maxConnections:
            return False
        index = pool.limitIndex
        return index is None or self._lineUsage(index) < self._lineCap(index)

    def _hasReserveFor(self, pool: Pool) -> bool:
        """
        PgBouncer's reserve pool: once C{pool}'s oldest waiter has waited
        C{reserve_pool_timeout}, up to C{reserve_pool_size} backends beyond
        its databases-file line's size, still within C{max_connections}
        (the janitor looks again each round, see L{serveWaiters}).
        """
        reserve = pool.limits.reservePoolSize
        index = pool.limitIndex
        if not reserve or index is None or not pool.waiters:
            return False
        if self.total >= self.config.main.maxConnections:
            return False
        waited = self._reactor.seconds() - pool.waiters[0].since
        if waited < self.config.main.reservePoolTimeout:
            return False
        return self._lineUsage(index) < self._lineCap(index) + reserve

    def hasWaiters(self) -> bool:
        """
        Whether a client waits for a backend in some pool.
        """
        return any(pool.waiters for pool in self._waiting.values())

    def serveWaiters(self) -> None:
        """
        Serve the waiting clients again (the janitor calls it each round, so
        that a wait that reaches C{reserve_pool_timeout} gets its backend).
        """
        if self._waiting:
            self._serveAll()

    def _cbValidatedForWaiter(
        self, error: ErrorResponse | None, entry: PooledBackend, waiter: Waiter
    ) -> None:
        if error is None and entry.state is BackendState.RESETTING:
            self._prepare(entry, waiter)
            return
        self._ebValidatedForWaiter(Failure(BackendGone("validation failed")), entry, waiter)

    def _ebValidatedForWaiter(self, reason: Failure, entry: PooledBackend, waiter: Waiter) -> None:
        """
        A backend failed its check: close it and serve the client with
        another, without the client noticing.
        """
        backend = entry.backend
        self.log.info(
            "Backend {backendPid} of {poolKey} failed validation; replacing it",
            backendPid=backend.processId,
            poolKey=backend.key,
        )
        pool = self.pool(backend.key)
        if entry.state is not BackendState.CLOSED:
            self.closeAndForget(entry)
        if waiter.deferred.called:
            return
        self._queueWaiter(pool, waiter, first=True)
        self._serveAll(first=pool)

    def _evictionCandidate(self, needy: Pool) -> PooledBackend | None:
        """
        The least recently used idle backend of another pool whose closing
        frees the budget C{needy} lacks, if any.
        """
        sameLine = needy.limitIndex is not None and self._lineUsage(
            needy.limitIndex
        ) >= self._lineCap(needy.limitIndex)
        candidates = [
            e
            for p in self.pools.values()
            if p is not needy and (not sameLine or p.limitIndex == needy.limitIndex)
            for e in p.idle
        ]
        if not candidates:
            return None
        return min(candidates, key=lambda e: e.lastUsedAt)

    def openBackend(self, pool: Pool) -> bool:
        """
        Connect a new backend for C{pool} (the caller checked
        L{hasRoomFor}) to the server its routing picks
        (L{pgtwist.pool.routing}); it is counted as C{CONNECTING} at once,
        and idle once logged in. Returns C{False} when no server may take
        it now.
        """
        server = self.servers.pick(routingFor(self.config, pool.key), pool.key)
        if server is None:
            return False
        credential = self._credentialFor(pool)
        backend, ready = self._connector(server, pool.key, credential)
        entry = self._entries[backend] = PooledBackend(backend, self._reactor.seconds())
        self._moveTo(entry, BackendState.CONNECTING)
        pool.stats.connectionsOpened += 1
        backend.lostCallback = self._backendLost
        timeout = self.config.main.serverConnectTimeout
        if timeout > 0:
            # The idle timer's slot, unused until the backend is idle.
            entry.idleTimer = self._reactor.callLater(timeout, self._connectTimedOut, entry)
        ready.addCallbacks(
            self._cbOpened,
            self._ebOpened,
            callbackArgs=(entry,),
            errbackArgs=(entry, credential),
        )
        return True

    def _connectTimedOut(self, entry: PooledBackend) -> None:
        """
        PgBouncer's C{server_connect_timeout}: a backend that has not
        connected and logged in by now is closed ("connect timeout"); its
        login fails as any failed connect does.
        """
        entry.idleTimer = None
        if entry.state is not BackendState.CONNECTING:
            return
        backend = entry.backend
        self.log.warn(
            "Closing a backend of {poolKey} on {server}: connect timeout "
            "(server_connect_timeout {timeout}s)",
            poolKey=backend.key,
            server=backend.server.name,
            timeout=self.config.main.serverConnectTimeout,
        )
        backend.close()

    def _cbOpened(self, backend: IPooledConnection, entry: PooledBackend) -> None:
        if entry.idleTimer is not None:
            if entry.idleTimer.active():
                entry.idleTimer.cancel()
            entry.idleTimer = None
        # The server's role, found out on every new backend: PostgreSQL 14
        # and later report in_hot_standby at login (no round trip); before
        # it, one query asks.
        parameters = getattr(backend, "parameters", None) or {}
        hotStandby = parameters.get("in_hot_standby")
        if hotStandby is not None:
            self._roleFound(backend, entry, hotStandby == "on")
        elif _majorVersion(parameters.get("server_version")) in range(1, 14):
            query: Any = backend
            query.queryRows("SELECT pg_is_in_recovery()").addCallbacks(
                lambda rows: self._roleFound(backend, entry, rows[0][0] == b"t"),
                lambda reason: self._ebOpened(reason, entry),
            )
        else:
            self._opened(backend, entry)

    def _opened(self, backend: IPooledConnection, entry: PooledBackend) -> None:
        pool = self.pool(backend.key)
        pool.connectFailures = 0
        pool.loginRefusals = 0
        if backend.authRequestCode is not None:
            pool.authRequestCode = backend.authRequestCode
        self.log.debug(
            "New backend {backendPid} for {poolKey}", backendPid=backend.processId, poolKey=pool.key
        )
        self._moveTo(entry, BackendState.IDLE)
        self._serveAll(first=pool)

    def _ebOpened(
        self,
        reason: Failure,
        entry: PooledBackend,
        credential: BackendCredential | None = None,
    ) -> None:
        backend = entry.backend
        pool = self.pool(backend.key)
        pool.stats.connectionErrors += 1
        self._moveTo(entry, BackendState.CLOSED)
        timeout = self.config.main.serverConnectTimeout
        if (
            timeout > 0
            and reason.check(ConnectionDone) is not None
            and self._reactor.seconds() - entry.createdAt >= timeout
        ):
            # _connectTimedOut closed it: say so, not "closed cleanly".
            reason = Failure(BackendGone(f"connect timeout (server_connect_timeout {timeout}s)"))
        transient = not isinstance(reason.value, BackendError) or reason.value.error.code in (
            constants.SQLSTATE_TOO_MANY_CONNECTIONS,
            constants.SQLSTATE_CANNOT_CONNECT_NOW,
        )
        if transient and self._retry(pool, backend, reason):
            return
        if isinstance(reason.value, BackendError):
            error = reason.value.error
            if not transient:
                # Maintenance backs off (a dropped database, a removed
                # role): clients asking still try, and hear why.
                pool.loginRefusals += 1
                delay = min(REFUSED_BACKOFF_MAX, 2.0 ** (pool.loginRefusals - 1))
                pool.openAfter = self._reactor.seconds() + delay
            self.log.warn(
                "PostgreSQL {server} refused a login for {poolKey}: {sqlstate} {message}",
                server=backend.server.name,
                poolKey=pool.key,
                sqlstate=error.code,
                message=error.message,
            )
        else:
            self.log.error(
                "Cannot connect to {server} for {poolKey}: {reason}",
                server=backend.server.name,
                poolKey=pool.key,
                reason=reason.getErrorMessage(),
            )
            error = errors.fatal(
                constants.SQLSTATE_SQLCLIENT_UNABLE_TO_ESTABLISH,
                "pgtwist cannot connect to the PostgreSQL server",
                detail=reason.getErrorMessage(),
            )
        if transient or (
            isinstance(reason.value, BackendError) and self._refused(pool, credential, error)
        ):
            # The server cannot be reached, or the pass-through credential
            # every waiter was checked with is stale: every client waiting
            # now hears why (PostgreSQL's 28P01, a password failure).
            failing = list(pool.waiters)
        else:
            # PostgreSQL refused this login (no such database...): the oldest
            # waiter hears why; the others try their luck.
            failing = list(pool.waiters)[:1]
        for waiter in failing:
            self._forgetWaiter(pool, waiter)
            waiter.deferred.errback(BackendError(error))
        self._serveAll()

    def _retry(self, pool: Pool, backend: IPooledConnection, reason: Failure) -> bool:
        """
        A connection attempt failed for a reason that may pass (server down,
        restarting, out of connection slots): try again with back-off up to
        C{max_retries} times, failing over to the next server if configured.
        Returns whether a retry is scheduled.
        """
        pool.connectFailures += 1
        main = self.config.main
        if pool.connectFailures > main.maxRetries:
            if main.failover and self.servers.switching is not None:
                # A failover is waiting for failover_script: so do we.
                pool.connectFailures = 0
                return True
            if main.failover and self.servers.current.name == backend.server.name:
                if self.servers.failover(main.failoverScript) is not None:
                    pool.connectFailures = 0
                    self.flush("all", None, server=backend.server.name)
                    switching = self.servers.switching
                    if switching is None:
                        self._reactor.callLater(0, self._serveAll)
                    else:
                        switching.addCallback(self._cbSwitched)
                    return True
            # Give up on the clients waiting now; space out later attempts.
            pool.connectFailures = main.maxRetries
            delay = 1.0
            pool.retryAt = self._reactor.seconds() + delay
            self._reactor.callLater(delay, self._serveAll)
            return False
        delay = min(5.0, 0.1 * 2 ** (pool.connectFailures - 1))
        pool.retryAt = self._reactor.seconds() + delay
        self.log.info(
            "Connecting to {server} for {poolKey} failed ({reason}); retry {attempt} in {delay}s",
            server=backend.server.name,
            poolKey=pool.key,
            reason=reason.getErrorMessage(),
            attempt=pool.connectFailures,
            delay=delay,
        )
        self._reactor.callLater(delay, self._serveAll)
        return True

    def _cbSwitched(self, promoted: bool) -> bool:
        """
        C{failover_script} ended: serve the waiting clients, from the new
        primary or (the script failed) the old one, whose next failure
        fails over to the next server.
        """
        for pool in self.pools.values():
            pool.retryAt = 0.0
        self._serveAll()
        return promoted

    def _prepare(self, entry: PooledBackend, waiter: Waiter) -> None:
        """
        Apply the waiter's startup parameters to C{entry}'s backend, then hand it over.
        """
        if waiter.parameters is None:
            self._handOver(None, entry, waiter)
            return
        backend = entry.backend
        try:
            statements = setStatements(waiter.parameters, backend.parameters)
        except ValueError as e:
            self._moveTo(entry, BackendState.IDLE)
            # After a foreground validation, the client may have gone.
            if not waiter.deferred.called:
                waiter.deferred.errback(
                    BackendError(errors.fatal(constants.SQLSTATE_PROTOCOL_VIOLATION, str(e)))
                )
            self._serveAll(first=self.pool(backend.key))
            return
        if not statements:
            self._handOver(None, entry, waiter)
            return
        backend.simpleQuery("; ".join(statements)).addCallbacks(
            self._handOver,
            self._ebPrepare,
            callbackArgs=(entry, waiter),
            errbackArgs=(entry, waiter),
        )

    def _handOver(self, error: ErrorResponse | None, entry: PooledBackend, waiter: Waiter) -> None:
        # A client that went away (cancelled) while the SETs ran has had its
        # answer: it is told nothing more.
        if entry.state is not BackendState.RESETTING:
            if not waiter.deferred.called:
                waiter.deferred.errback(BackendGone())
            return
        backend = entry.backend
        if error is not None:
            # The client asked for a setting PostgreSQL refuses: at startup
            # PostgreSQL reports that as FATAL. The backend itself is fine.
            fatalError = errors.asFatal(error)
            self._moveTo(entry, BackendState.ACTIVE)
            backend.clean = True
            self.release(backend)
            if not waiter.deferred.called:
                waiter.deferred.errback(BackendError(fatalError))
            return
        if waiter.deferred.called:
            # Cancelled while the SETs ran: keep the backend for someone else.
            self._moveTo(entry, BackendState.ACTIVE)
            self.release(backend)
            return
        self._moveTo(entry, BackendState.ACTIVE)
        self.pool(backend.key).stats.addWait(self._reactor.seconds() - waiter.since)
        waiter.deferred.callback(backend)

    def _ebPrepare(self, reason: Failure, entry: PooledBackend, waiter: Waiter) -> None:
        self.discard(entry.backend, f"cannot apply settings: {reason.getErrorMessage()}")
        if not waiter.deferred.called:
            waiter.deferred.errback(reason)

    def minSize(self, pool: Pool) -> int:
        """
        The MIN_SIZE maintenance keeps up for C{pool} (0 when none applies).
        """
        index = pool.limitIndex
        if index is None or index >= len(self.config.limits):
            return 0
        limit = self.config.limits[index]
        if "all" in (limit.database, limit.user):
            return 0
        if self.config.backendPassword(limit.user) is None:
            # A pass-through pool opens backends once a client has logged in.
            return 0
        return limit.minSize

    def _idleExpired(self, entry: PooledBackend) -> None:
        """
        The idle timer of C{entry} ran out. One timer serves a backend
        across many uses (arming one per transaction would cost a
        C{callLater} and a cancel each time): a backend in use drops it
        (the next move to idle arms a new one), one used since it was armed
        waits the rest of its idle time.
        """
        entry.idleTimer = None
        if entry.state is not BackendState.IDLE:
            return
        timeout = self.config.main.idleTimeout
        if timeout <= 0:
            return
        remaining = entry.lastUsedAt + timeout - self._reactor.seconds()
        if remaining > _TIMER_SLACK:
            entry.idleTimer = self._reactor.callLater(remaining, self._idleExpired, entry)
            return
        backend = entry.backend
        pool = self.pool(backend.key)
        if pool.size <= self.minSize(pool):
            # MIN_SIZE backends stay, however long they idle: closing them
            # would only make the janitor open new ones.
            return
        self.log.debug(
            "Backend {backendPid} of {poolKey} idle for {timeout}s; closing",
            backendPid=backend.processId,
            poolKey=backend.key,
            timeout=timeout,
        )
        self.discard(backend, "idle_timeout")

    def _backendLost(self, backend: IPooledConnection, reason: Failure) -> None:
        for waiter in self._goneWaiters.pop(backend, ()):
            waiter.callback(None)
        entry = self._entries.get(backend)
        if entry is not None and entry.state not in (None, BackendState.CONNECTING):
            self._moveTo(entry, BackendState.CLOSED)
            self._serveAll()

    # -- maintenance and management operations -------------------------------

    def flush(self, mode: str, database: str | None, server: str | None = None) -> int:
        """
        pgagroal's flush: C{idle} closes idle backends; C{gracefully} also
        closes the others as their clients give them back; C{all} closes
        every backend at once (their clients get an error). Limited to one
        C{database} (or one C{server}) when given. Returns how many backends
        were closed or marked.
        """
        count = 0
        for pool in list(self.pools.values()):
            if database is not None and pool.key[0] != database:
                continue
            for state in list(BackendState):
                for entry in list(pool.backends[state]):
                    if server is not None and entry.backend.server.name != server:
                        continue
                    if state is BackendState.IDLE or mode == "all":
                        self.closeAndForget(entry)
                        count += 1
                    elif mode == "gracefully":
                        entry.closeOnRelease = True
                        count += 1
        return count

    def validate(self, entry: PooledBackend) -> None:
        """
        Check an idle backend with an empty query, lending it to no one
        meanwhile; it goes back to idle as it was (the check is not a use:
        its idle time keeps running), or is closed if the check fails.
        """
        lastUsedAt = entry.lastUsedAt
        self._moveTo(entry, BackendState.RESETTING)
        entry.backend.simpleQuery("").addCallbacks(
            self._cbValidated,
            self._ebValidated,
            callbackArgs=(entry, lastUsedAt),
            errbackArgs=(entry,),
        )

    def _cbValidated(
        self, error: ErrorResponse | None, entry: PooledBackend, lastUsedAt: float
    ) -> None:
        if entry.state is not BackendState.RESETTING:
            return
        if error is not None:
            self.discard(entry.backend, f"validation failed: {error.message}")
            return
        if entry.closeOnRelease:
            self.discard(entry.backend, "its database is wanted without other sessions")
            return
        self._moveTo(entry, BackendState.IDLE)
        entry.lastUsedAt = lastUsedAt
        timer = entry.idleTimer
        if timer is not None and timer.active():
            remaining = lastUsedAt + self.config.main.idleTimeout - self._reactor.seconds()
            timer.reset(max(0.0, remaining))
        self._serveAll(first=self.pool(entry.backend.key))

    def _ebValidated(self, reason: Failure, entry: PooledBackend) -> None:
        self.discard(entry.backend, f"validation failed: {reason.getErrorMessage()}")

    # -- service --------------------------------------------------------------

    def startService(self) -> None:
        """
        Start the health checks (when C{health_check} is on).
        """
        super().startService()
        self.health.start()

    def stopService(self) -> Deferred[None] | None:
        """
        Close every backend.
        """
        super().stopService()
        self.health.stop()
        for pool in self.pools.values():
            self._disarmWaitTimer(pool)
            for waiter in list(pool.waiters):
                self._forgetWaiter(pool, waiter)
                waiter.deferred.errback(CancelledError())
            for state in (
                BackendState.IDLE,
                BackendState.RESETTING,
                BackendState.ACTIVE,
                BackendState.CONNECTING,
            ):
                for entry in list(pool.backends[state]):
                    self.closeAndForget(entry)
        return None


def _pooled(backend: BackendProtocol) -> IPooledConnection:
    return backend


def _majorVersion(version: str | None) -> int:
    """
    PostgreSQL's major version from its C{server_version} (0: unknown).
    """
    digits = (version or "").split(".")[0].split()[0] if version else ""
    return int(digits) if digits.isdigit() else 0
