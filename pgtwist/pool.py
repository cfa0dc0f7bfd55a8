# -*- test-case-name: tests.unit.test_pool -*-
"""
Backends by (database, user), bounded by C{max_connections}.

Every backend has one L{BackendState}; L{PoolSet._moveTo} is the only place
that changes it, so the counts shown to operators cannot drift (PgBouncer's
C{change_server_state}).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pgtwist.backend import (
    BackendError,
    BackendGone,
    BackendProtocol,
    connectBackend,
    setStatements,
)
from pgtwist.config.model import Configuration, PoolKey, ServerSettings
from pgtwist.interfaces import IAuthMethod, IBackendLink, IBackendPool
from pgtwist.wire import constants, errors
from pgtwist.wire.messages import ErrorResponse


class BackendState(enum.Enum):
    """
    Where a backend is in its life.
    """

    CONNECTING = "connecting"  # TCP connect, startup and authentication
    IDLE = "idle"  # in the pool, ready to hand out
    ACTIVE = "active"  # lent to a client
    RESETTING = "resetting"  # running DISCARD ALL / SETs before reuse
    CLOSED = "closed"  # gone; no longer counted


class PoolTimeout(Exception):
    """
    No backend became available within C{blocking_timeout}.
    """


Connector = Callable[
    [ServerSettings, PoolKey, "str | None"],
    "tuple[BackendProtocol, Deferred[BackendProtocol]]",
]


class Pool:
    """
    The backends and waiting clients of one (database, user) pair.
    """

    def __init__(self, key: PoolKey) -> None:
        self.key = key
        self.backends: dict[BackendState, set[BackendProtocol]] = {s: set() for s in BackendState}
        #: Idle backends, most recently used last (handed out LIFO).
        self.idle: list[BackendProtocol] = []
        self.waiters: deque[_Waiter] = deque()
        #: What PostgreSQL asked for at login (resolves the HBA method C{all}).
        self.authRequestCode: int | None = None

    def count(self, state: BackendState) -> int:
        """
        How many backends are in C{state}.
        """
        return len(self.backends[state])

    @property
    def size(self) -> int:
        """
        Backends that count against the limits (everything not closed).
        """
        return sum(len(v) for s, v in self.backends.items() if s is not BackendState.CLOSED)


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
class PoolSet(Service):
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
        self.total = 0

    def _connect(
        self, server: ServerSettings, key: PoolKey, password: str | None
    ) -> tuple[BackendProtocol, Deferred[BackendProtocol]]:
        return connectBackend(self._reactor, server, key, password, self._authMethods)

    def reconfigure(self, config: Configuration) -> None:
        """
        Use C{config} from now on (limits, timeouts, passwords).
        """
        self.config = config

    def pool(self, key: PoolKey) -> Pool:
        """
        The pool for C{key}, created on first use.
        """
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = Pool(key)
        return pool

    # -- the single state mutator --------------------------------------------

    def _moveTo(self, backend: BackendProtocol, state: BackendState) -> None:
        pool = self.pool(backend.key)
        old: BackendState | None = backend.poolState
        if old is state:
            return
        if old is not None:
            pool.backends[old].discard(backend)
            if old is BackendState.IDLE:
                pool.idle.remove(backend)
                if backend.idleTimer is not None and backend.idleTimer.active():
                    backend.idleTimer.cancel()
                backend.idleTimer = None
            if old is not BackendState.CLOSED and state is BackendState.CLOSED:
                self.total -= 1
        elif state is not BackendState.CLOSED:
            self.total += 1
        backend.poolState = state
        if state is BackendState.CLOSED:
            return
        pool.backends[state].add(backend)
        if state is BackendState.IDLE:
            pool.idle.append(backend)
            backend.lastUsedAt = self._reactor.seconds()
            timeout = self.config.main.idleTimeout
            if timeout > 0:
                backend.idleTimer = self._reactor.callLater(timeout, self._idleExpired, backend)

    # -- IBackendPool ---------------------------------------------------------

    def acquire(self, key: PoolKey, parameters: Mapping[str, str] | None) -> Deferred[IBackendLink]:
        """
        See L{IBackendPool.acquire}.
        """
        pool = self.pool(key)
        if parameters is None and pool.idle and not pool.waiters:
            # The transaction pipeline's hot path: no timer, no waiter.
            backend = pool.idle[-1]
            self._moveTo(backend, BackendState.ACTIVE)
            return succeed(backend)
        waiter = _Waiter(parameters, self._reactor.seconds())

        def cancel(d: Deferred[IBackendLink]) -> None:
            self._forgetWaiter(pool, waiter)

        waiter.deferred = Deferred(cancel)
        timeout = self.config.main.blockingTimeout
        if timeout > 0:
            waiter.timer = self._reactor.callLater(timeout, self._waiterTimedOut, pool, waiter)
        pool.waiters.append(waiter)
        self._serve(pool)
        return waiter.deferred

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
        self._forgetWaiter(pool, waiter)
        self.log.warn(
            "A client of {poolKey} waited {timeout}s for a backend; giving up",
            poolKey=pool.key,
            timeout=self.config.main.blockingTimeout,
        )
        waiter.deferred.errback(PoolTimeout())

    def _serveAll(self, first: Pool | None = None) -> None:
        """
        Something was freed: serve waiters, oldest first.
        """
        if first is not None and first.waiters:
            self._serve(first)
        waiting = [p for p in self.pools.values() if p.waiters]
        waiting.sort(key=lambda p: p.waiters[0].since)
        for pool in waiting:
            self._serve(pool)

    def _serve(self, pool: Pool) -> None:
        """
        Give C{pool}'s waiters what can be given: idle backends, then new
        connections within the budget, then room made by closing another
        pool's idle backends.
        """
        while pool.waiters:
            if pool.idle:
                backend = pool.idle[-1]
                waiter = pool.waiters.popleft()
                if waiter.timer is not None and waiter.timer.active():
                    waiter.timer.cancel()
                self._moveTo(backend, BackendState.RESETTING)
                self._prepare(backend, waiter)
                continue
            connecting = pool.count(BackendState.CONNECTING)
            if connecting >= len(pool.waiters):
                return
            if self.total >= self.config.main.maxConnections and not self._evictIdle(pool):
                return
            self._open(pool)

    def _evictIdle(self, needy: Pool) -> bool:
        """
        Close the least recently used idle backend of another pool.
        """
        candidates = [b for p in self.pools.values() if p is not needy for b in p.idle]
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
        backend, ready = self._connector(self.config.primary, pool.key, password)
        self._moveTo(backend, BackendState.CONNECTING)
        backend.lostCallback = self._backendLost
        ready.addCallbacks(self._cbOpened, self._ebOpened, errbackArgs=(backend,))

    def _cbOpened(self, backend: BackendProtocol) -> None:
        pool = self.pool(backend.key)
        if backend.authRequestCode is not None:
            pool.authRequestCode = backend.authRequestCode
        self.log.debug(
            "New backend {backendPid} for {poolKey}", backendPid=backend.processId, poolKey=pool.key
        )
        self._moveTo(backend, BackendState.IDLE)
        self._serveAll(first=pool)

    def _ebOpened(self, reason: Failure, backend: BackendProtocol) -> None:
        pool = self.pool(backend.key)
        self._moveTo(backend, BackendState.CLOSED)
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
        # The oldest waiter of that pool hears why; others keep waiting.
        if pool.waiters:
            waiter = pool.waiters.popleft()
            self._forgetWaiter(pool, waiter)
            waiter.deferred.errback(BackendError(error))
        self._serveAll()

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
            fatalError = ErrorResponse(
                tuple(
                    (code, constants.SEVERITY_FATAL if code in (b"S", b"V") else value)
                    for code, value in error.fields
                )
            )
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
        waiter.deferred.callback(backend)

    def _ebPrepare(self, reason: Failure, backend: BackendProtocol, waiter: _Waiter) -> None:
        self.discard(backend, f"cannot apply settings: {reason.getErrorMessage()}")
        if not waiter.deferred.called:
            waiter.deferred.errback(reason)

    def _idleExpired(self, backend: BackendProtocol) -> None:
        backend.idleTimer = None
        if backend.poolState is BackendState.IDLE:
            self.log.debug(
                "Backend {backendPid} of {poolKey} idle for {timeout}s; closing",
                backendPid=backend.processId,
                poolKey=backend.key,
                timeout=self.config.main.idleTimeout,
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
