# -*- test-case-name: tests.unit.test_pool -*-
"""
Backends by (database, user), bounded by C{max_connections}.

Every backend has one L{BackendState}; L{PoolSet._moveTo} is the only place
that changes it, so the counts shown to operators cannot drift (PgBouncer's
C{change_server_state}).
"""

from __future__ import annotations

__all__ = [
    "BackendState",
    "Pool",
    "PoolSet",
    "PoolTimeout",
    "matchLimit",
    "resolveAlias",
]

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pgtwist.config.model import Configuration, PoolKey, ServerSettings
from pgtwist.interfaces import IAuthMethod, IBackendLink, IBackendPool
from pgtwist.net.backend import (
    BackendError,
    BackendGone,
    BackendProtocol,
    connectBackend,
    setStatements,
)
from pgtwist.pool.maintenance import PoolMaintenance
from pgtwist.pool.servers import ServerSet
from pgtwist.pool.state import BackendState, Pool, matchLimit, resolveAlias
from pgtwist.wire import constants, errors
from pgtwist.wire.messages import ErrorResponse

#: Foreground validation skips backends idle for less than this (seconds): one
#: used that recently has just proved itself, and checking it would add a
#: round trip to every transaction of a busy pool.
VALIDATION_DELAY = 1.0

#: An idle timer that finds less than this left of a backend's idle time
#: counts it as expired (float rounding must not re-arm it for nothing).
_TIMER_SLACK = 1e-6


class PoolTimeout(Exception):
    """
    No backend became available within C{blocking_timeout}.
    """


Connector = Callable[
    [ServerSettings, PoolKey, "str | None"],
    "tuple[BackendProtocol, Deferred[BackendProtocol]]",
]


class _Waiter:
    """
    A client waiting for a backend.
    """

    __slots__ = ("deferred", "parameters", "timer", "since")

    def __init__(self, parameters: Mapping[str, str] | None, since: float) -> None:
        self.parameters = parameters
        self.deferred: Deferred[IBackendLink] = Deferred()
        self.timer: Any = None
        self.since = since


@implementer(IBackendPool)
class PoolSet(PoolMaintenance, Service):
    """
    All pools, and the global C{max_connections} budget they share.
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
        #: Every pool with waiters, and perhaps a few whose waiters have gone
        #: since (see L{_queueWaiter}): L{_serveAll} runs at each release,
        #: and must not look at every pool of the process to find none.
        self._waiting: dict[PoolKey, Pool] = {}
        self.total = 0
        self.servers = ServerSet(config.servers, reactor)
        #: Console PAUSE: every pool (C{pausedAll}) or those of some databases.
        self.pausedAll = False
        self.pausedDatabases: set[str] = set()

    def _connect(
        self, server: ServerSettings, key: PoolKey, password: str | None
    ) -> tuple[BackendProtocol, Deferred[BackendProtocol]]:
        return connectBackend(self._reactor, server, key, password, self._authMethods)

    def reconfigure(self, config: Configuration) -> None:
        """
        Use C{config} from now on (limits, timeouts, passwords, servers).
        """
        self.config = config
        self.servers.reconfigure(config.servers)
        for pool in self.pools.values():
            pool.limitIndex = matchLimit(config.limits, *pool.key)
        self._serveAll()

    def pool(self, key: PoolKey) -> Pool:
        """
        The pool for C{key}, created on first use.
        """
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = Pool(key, matchLimit(self.config.limits, *key))
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

    def inUse(self, database: str | None = None) -> int:
        """
        Backends of C{database} (C{None}: all) lent, resetting or logging in.
        """
        busy = (BackendState.ACTIVE, BackendState.RESETTING, BackendState.CONNECTING)
        pools = [p for p in self.pools.values() if database in (None, p.key[0])]
        return sum(pool.count(state) for pool in pools for state in busy)

    # -- the single state mutator --------------------------------------------

    def _moveTo(self, backend: BackendProtocol, state: BackendState) -> None:
        # Runs twice per transaction in transaction pooling: kept lean (no
        # timer per move, the idle list popped from its end).
        pool = self.pool(backend.key)
        old: BackendState | None = backend.poolState
        if old is state:
            return
        if old is not None:
            pool.backends[old].discard(backend)
            if old is BackendState.IDLE:
                idle = pool.idle
                if idle[-1] is backend:
                    idle.pop()
                else:
                    idle.remove(backend)
            if old is not BackendState.CLOSED and state is BackendState.CLOSED:
                self.total -= 1
                pool.stats.connectionsClosed += 1
        elif state is not BackendState.CLOSED:
            self.total += 1
        backend.poolState = state
        if state is BackendState.CLOSED:
            if backend.idleTimer is not None:
                if backend.idleTimer.active():
                    backend.idleTimer.cancel()
                backend.idleTimer = None
            return
        pool.backends[state].add(backend)
        if state is BackendState.IDLE:
            pool.idle.append(backend)
            backend.lastUsedAt = self._reactor.seconds()
            if backend.idleTimer is None:
                timeout = self.config.main.idleTimeout
                if timeout > 0:
                    backend.idleTimer = self._reactor.callLater(timeout, self._idleExpired, backend)

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
        waiter = _Waiter(parameters, self._reactor.seconds())

        def cancel(d: Deferred[IBackendLink]) -> None:
            self._forgetWaiter(pool, waiter)

        waiter.deferred = Deferred(cancel)
        timeout = self.config.main.blockingTimeout
        if timeout > 0:
            waiter.timer = self._reactor.callLater(timeout, self._waiterTimedOut, pool, waiter)
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
        backend = pool.idle[-1]
        if not backend.connected or backend.closing:
            return None
        if (
            self.config.main.validation == "foreground"
            and self._reactor.seconds() - backend.lastUsedAt >= VALIDATION_DELAY
        ):
            return None
        self._moveTo(backend, BackendState.ACTIVE)
        pool.stats.serverAssignmentCount += 1
        return backend

    def release(self, backend: IBackendLink, reset: bool = True) -> None:
        """
        See L{IBackendPool.release}.
        """
        assert isinstance(backend, BackendProtocol)
        if backend.poolState is BackendState.CLOSED:
            return
        if (
            not backend.clean
            or backend.closing
            or backend.transactionStatus != constants.TRANSACTION_IDLE
        ):
            self.discard(backend, "released in a transaction or with a request in flight")
            return
        if backend.closeOnRelease:
            self.discard(backend, "flushed")
            return
        age = self.config.main.maxConnectionAge
        if age > 0 and self._reactor.seconds() - backend.createdAt >= age:
            self.discard(backend, "max_connection_age")
            return
        if not reset:
            self._moveTo(backend, BackendState.IDLE)
            self._serveAll(first=self.pool(backend.key))
            return
        self._moveTo(backend, BackendState.RESETTING)
        backend.simpleQuery("DISCARD ALL").addCallbacks(
            self._cbReset, self._ebReset, callbackArgs=(backend,), errbackArgs=(backend,)
        )

    def discard(self, backend: IBackendLink, reason: str) -> None:
        """
        See L{IBackendPool.discard}.
        """
        assert isinstance(backend, BackendProtocol)
        if backend.poolState is BackendState.CLOSED:
            return
        self.log.debug(
            "Closing backend {backendPid} of {poolKey}: {reason}",
            backendPid=backend.processId,
            poolKey=backend.key,
            reason=reason,
        )
        self._moveTo(backend, BackendState.CLOSED)
        backend.close()
        self._serveAll()

    # -- internals ------------------------------------------------------------

    def _cbReset(self, error: ErrorResponse | None, backend: BackendProtocol) -> None:
        if backend.poolState is not BackendState.RESETTING:
            return
        if error is not None or backend.closing:
            self.discard(backend, f"reset failed: {error.message if error else 'closing'}")
            return
        backend.forgetSessionState()
        self._moveTo(backend, BackendState.IDLE)
        self._serveAll(first=self.pool(backend.key))

    def _ebReset(self, reason: Failure, backend: BackendProtocol) -> None:
        self.discard(backend, f"reset failed: {reason.getErrorMessage()}")

    def _forgetWaiter(self, pool: Pool, waiter: _Waiter) -> None:
        try:
            pool.waiters.remove(waiter)
        except ValueError:
            pass
        if waiter.timer is not None and waiter.timer.active():
            waiter.timer.cancel()

    def _waiterTimedOut(self, pool: Pool, waiter: _Waiter) -> None:
        waiter.timer = None
        pool.stats.timeouts += 1
        self._forgetWaiter(pool, waiter)
        self.log.warn(
            "A client of {poolKey} waited {timeout}s for a backend; giving up",
            poolKey=pool.key,
            timeout=self.config.main.blockingTimeout,
        )
        waiter.deferred.errback(PoolTimeout())

    def _queueWaiter(self, pool: Pool, waiter: _Waiter, first: bool = False) -> None:
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
        waiting.sort(key=lambda p: p.waiters[0].since)
        for pool in waiting:
            self._serve(pool)

    def _serve(self, pool: Pool) -> None:
        """
        Give C{pool}'s waiters what can be given: idle backends, then new
        connections within the budget, then room made by closing another
        pool's idle backends.
        """
        while pool.waiters and not pool.paused:
            if pool.idle:
                backend = pool.idle[-1]
                if not backend.connected or backend.closing:
                    # Died in the pool before anyone noticed: replace it.
                    self._moveTo(backend, BackendState.CLOSED)
                    backend.close()
                    continue
                waiter = pool.waiters.popleft()
                if waiter.timer is not None and waiter.timer.active():
                    waiter.timer.cancel()
                idleFor = self._reactor.seconds() - backend.lastUsedAt
                self._moveTo(backend, BackendState.RESETTING)
                if self.config.main.validation == "foreground" and idleFor >= VALIDATION_DELAY:
                    backend.simpleQuery("").addCallbacks(
                        self._cbValidatedForWaiter,
                        self._ebValidatedForWaiter,
                        callbackArgs=(backend, waiter),
                        errbackArgs=(backend, waiter),
                    )
                else:
                    self._prepare(backend, waiter)
                continue
            connecting = pool.count(BackendState.CONNECTING)
            if connecting >= len(pool.waiters):
                return
            if pool.connectFailures and (connecting or self._reactor.seconds() < pool.retryAt):
                # Failing: probe with one connection at a time, after the back-off.
                return
            if not self._roomFor(pool) and not self._evictIdle(pool):
                return
            self._open(pool)

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

    def _roomFor(self, pool: Pool) -> bool:
        """
        Whether a new backend for C{pool} fits both the global
        C{max_connections} and its databases-file line.
        """
        if self.total >= self.config.main.maxConnections:
            return False
        index = pool.limitIndex
        return index is None or self._lineUsage(index) < self._lineCap(index)

    def _cbValidatedForWaiter(
        self, error: ErrorResponse | None, backend: BackendProtocol, waiter: _Waiter
    ) -> None:
        if error is None and backend.poolState is BackendState.RESETTING:
            self._prepare(backend, waiter)
            return
        self._ebValidatedForWaiter(Failure(BackendGone("validation failed")), backend, waiter)

    def _ebValidatedForWaiter(
        self, reason: Failure, backend: BackendProtocol, waiter: _Waiter
    ) -> None:
        """
        A backend failed its check: close it and serve the client with
        another, without the client noticing.
        """
        self.log.info(
            "Backend {backendPid} of {poolKey} failed validation; replacing it",
            backendPid=backend.processId,
            poolKey=backend.key,
        )
        pool = self.pool(backend.key)
        if backend.poolState is not BackendState.CLOSED:
            self._moveTo(backend, BackendState.CLOSED)
            backend.close()
        if waiter.deferred.called:
            return
        timeout = self.config.main.blockingTimeout
        if timeout > 0:
            remaining = max(0.0, waiter.since + timeout - self._reactor.seconds())
            waiter.timer = self._reactor.callLater(remaining, self._waiterTimedOut, pool, waiter)
        self._queueWaiter(pool, waiter, first=True)
        self._serveAll(first=pool)

    def _evictIdle(self, needy: Pool) -> bool:
        """
        Close the least recently used idle backend of another pool that frees
        the budget C{needy} lacks.
        """
        sameLine = needy.limitIndex is not None and self._lineUsage(
            needy.limitIndex
        ) >= self._lineCap(needy.limitIndex)
        candidates = [
            b
            for p in self.pools.values()
            if p is not needy and (not sameLine or p.limitIndex == needy.limitIndex)
            for b in p.idle
        ]
        if not candidates:
            return False
        victim = min(candidates, key=lambda b: b.lastUsedAt)
        self._moveTo(victim, BackendState.CLOSED)
        victim.close()
        return True

    def _open(self, pool: Pool) -> None:
        database, user = pool.key
        entry = self.config.users.get(user)
        password = entry.password if entry is not None else None
        backend, ready = self._connector(self.servers.current, pool.key, password)
        self._moveTo(backend, BackendState.CONNECTING)
        pool.stats.connectionsOpened += 1
        backend.lostCallback = self._backendLost
        ready.addCallbacks(self._cbOpened, self._ebOpened, errbackArgs=(backend,))

    def _cbOpened(self, backend: BackendProtocol) -> None:
        pool = self.pool(backend.key)
        pool.connectFailures = 0
        if backend.authRequestCode is not None:
            pool.authRequestCode = backend.authRequestCode
        self.log.debug(
            "New backend {backendPid} for {poolKey}", backendPid=backend.processId, poolKey=pool.key
        )
        self._moveTo(backend, BackendState.IDLE)
        self._serveAll(first=pool)

    def _ebOpened(self, reason: Failure, backend: BackendProtocol) -> None:
        pool = self.pool(backend.key)
        pool.stats.connectionErrors += 1
        self._moveTo(backend, BackendState.CLOSED)
        transient = not isinstance(reason.value, BackendError) or reason.value.error.code in (
            constants.SQLSTATE_TOO_MANY_CONNECTIONS,
            constants.SQLSTATE_CANNOT_CONNECT_NOW,
        )
        if transient and self._retry(pool, backend, reason):
            return
        if isinstance(reason.value, BackendError):
            error = reason.value.error
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
        if transient:
            # The server cannot be reached: every client waiting now hears why.
            failing = list(pool.waiters)
        else:
            # PostgreSQL refused this login (no such database...): the oldest
            # waiter hears why; the others try their luck.
            failing = list(pool.waiters)[:1]
        for waiter in failing:
            self._forgetWaiter(pool, waiter)
            waiter.deferred.errback(BackendError(error))
        self._serveAll()

    def _retry(self, pool: Pool, backend: BackendProtocol, reason: Failure) -> bool:
        """
        A connection attempt failed for a reason that may pass (server down,
        restarting, out of connection slots): try again with back-off up to
        C{max_retries} times, failing over to the next server if configured.
        Returns whether a retry is scheduled.
        """
        pool.connectFailures += 1
        main = self.config.main
        if pool.connectFailures > main.maxRetries:
            if main.failover and self.servers.current.name == backend.server.name:
                if self.servers.failover(main.failoverScript) is not None:
                    pool.connectFailures = 0
                    self.flush("all", None, server=backend.server.name)
                    self._reactor.callLater(0, self._serveAll)
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

    def _prepare(self, backend: BackendProtocol, waiter: _Waiter) -> None:
        """
        Apply the waiter's startup parameters to C{backend}, then hand it over.
        """
        if waiter.parameters is None:
            self._handOver(None, backend, waiter)
            return
        try:
            statements = setStatements(waiter.parameters, backend.parameters)
        except ValueError as e:
            self._moveTo(backend, BackendState.IDLE)
            waiter.deferred.errback(
                BackendError(errors.fatal(constants.SQLSTATE_PROTOCOL_VIOLATION, str(e)))
            )
            self._serveAll(first=self.pool(backend.key))
            return
        if not statements:
            self._handOver(None, backend, waiter)
            return
        backend.simpleQuery("; ".join(statements)).addCallbacks(
            self._handOver,
            self._ebPrepare,
            callbackArgs=(backend, waiter),
            errbackArgs=(backend, waiter),
        )

    def _handOver(
        self, error: ErrorResponse | None, backend: BackendProtocol, waiter: _Waiter
    ) -> None:
        if backend.poolState is not BackendState.RESETTING:
            waiter.deferred.errback(BackendGone())
            return
        if error is not None:
            # The client asked for a setting PostgreSQL refuses: at startup
            # PostgreSQL reports that as FATAL. The backend itself is fine.
            fatalError = errors.asFatal(error)
            self._moveTo(backend, BackendState.ACTIVE)
            backend.clean = True
            self.release(backend)
            waiter.deferred.errback(BackendError(fatalError))
            return
        if waiter.deferred.called:
            # Cancelled while the SETs ran: keep the backend for someone else.
            self._moveTo(backend, BackendState.ACTIVE)
            self.release(backend)
            return
        self._moveTo(backend, BackendState.ACTIVE)
        self.pool(backend.key).stats.addWait(self._reactor.seconds() - waiter.since)
        waiter.deferred.callback(backend)

    def _ebPrepare(self, reason: Failure, backend: BackendProtocol, waiter: _Waiter) -> None:
        self.discard(backend, f"cannot apply settings: {reason.getErrorMessage()}")
        if not waiter.deferred.called:
            waiter.deferred.errback(reason)

    def _minSize(self, pool: Pool) -> int:
        """
        The MIN_SIZE L{maintain} keeps up for C{pool} (0 when none applies).
        """
        index = pool.limitIndex
        if index is None or index >= len(self.config.limits):
            return 0
        limit = self.config.limits[index]
        entry = self.config.users.get(limit.user)
        if "all" in (limit.database, limit.user) or entry is None or entry.password is None:
            return 0
        return limit.minSize

    def _idleExpired(self, backend: BackendProtocol) -> None:
        """
        The idle timer of C{backend} ran out. One timer serves a backend
        across many uses (arming one per transaction would cost a
        C{callLater} and a cancel each time): a backend in use drops it
        (the next move to idle arms a new one), one used since it was armed
        waits the rest of its idle time.
        """
        backend.idleTimer = None
        if backend.poolState is not BackendState.IDLE:
            return
        timeout = self.config.main.idleTimeout
        if timeout <= 0:
            return
        remaining = backend.lastUsedAt + timeout - self._reactor.seconds()
        if remaining > _TIMER_SLACK:
            backend.idleTimer = self._reactor.callLater(remaining, self._idleExpired, backend)
            return
        pool = self.pool(backend.key)
        if pool.size <= self._minSize(pool):
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

    def _backendLost(self, backend: BackendProtocol, reason: Failure) -> None:
        if backend.poolState not in (None, BackendState.CLOSED, BackendState.CONNECTING):
            self._moveTo(backend, BackendState.CLOSED)
            self._serveAll()

    # -- service --------------------------------------------------------------

    def stopService(self) -> Deferred[None] | None:
        """
        Close every backend.
        """
        super().stopService()
        for pool in self.pools.values():
            for waiter in list(pool.waiters):
                self._forgetWaiter(pool, waiter)
                waiter.deferred.errback(CancelledError())
            for state in (
                BackendState.IDLE,
                BackendState.RESETTING,
                BackendState.ACTIVE,
                BackendState.CONNECTING,
            ):
                for backend in list(pool.backends[state]):
                    self._moveTo(backend, BackendState.CLOSED)
                    backend.close()
        return None

    def authRequestCode(self, key: PoolKey) -> int | None:
        """
        What PostgreSQL asked for when pgtwist last logged in for C{key}.
        """
        pool = self.pools.get(key)
        return pool.authRequestCode if pool is not None else None
