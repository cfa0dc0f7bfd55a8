# -*- test-case-name: tests.unit.test_pool -*-
"""
Pool maintenance: what the janitor and the management API ask of the pools
between client requests (flush, minimum sizes and connection age,
background validation), apart from the lending and taking back that
L{pgtwist.pool.poolset.PoolSet} does per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.python.failure import Failure

from pgtwist.pool.state import BackendState
from pgtwist.wire.messages import ErrorResponse

if TYPE_CHECKING:
    from pgtwist.config.model import Configuration, PoolKey
    from pgtwist.net.backend import BackendProtocol
    from pgtwist.pool.state import Pool


class PoolMaintenance:
    """
    Mixed into L{pgtwist.pool.poolset.PoolSet}: the maintenance entry points.
    """

    if TYPE_CHECKING:
        config: Configuration
        pools: dict[PoolKey, Pool]
        _reactor: Any

        def pool(self, key: PoolKey) -> Pool: ...
        def discard(self, backend: Any, reason: str) -> None: ...
        def _moveTo(self, backend: BackendProtocol, state: BackendState) -> None: ...
        def _serveAll(self, first: Pool | None = None) -> None: ...
        def _roomFor(self, pool: Pool) -> bool: ...
        def _open(self, pool: Pool) -> None: ...

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
                for backend in list(pool.backends[state]):
                    if server is not None and backend.server.name != server:
                        continue
                    if state is BackendState.IDLE or mode == "all":
                        self._moveTo(backend, BackendState.CLOSED)
                        backend.close()
                        count += 1
                    elif mode == "gracefully" and state is not BackendState.CLOSED:
                        backend.closeOnRelease = True
                        count += 1
        return count

    def maintain(self) -> None:
        """
        Open backends up to INITIAL_SIZE (once, at start) and MIN_SIZE for the
        databases-file lines naming a database and a user whose password is in
        the vault; close idle backends past C{max_connection_age}.
        """
        now = self._reactor.seconds()
        age = self.config.main.maxConnectionAge
        if age > 0:
            for pool in self.pools.values():
                for backend in list(pool.idle):
                    if now - backend.createdAt >= age:
                        self._moveTo(backend, BackendState.CLOSED)
                        backend.close()
        for limit in self.config.limits:
            if "all" in (limit.database, limit.user):
                continue
            entry = self.config.users.get(limit.user)
            if entry is None or entry.password is None:
                continue
            pool = self.pool((limit.database, limit.user))
            if pool.paused:
                continue
            target = limit.minSize if pool.prefilled else max(limit.initialSize, limit.minSize)
            pool.prefilled = True
            if pool.connectFailures and now < pool.retryAt:
                continue
            missing = target - pool.size
            while missing > 0 and self._roomFor(pool):
                self._open(pool)
                missing -= 1

    def validateIdle(self) -> None:
        """
        Background validation: an empty query on every idle backend.
        """
        for pool in self.pools.values():
            for backend in list(pool.idle):
                self._moveTo(backend, BackendState.RESETTING)
                backend.simpleQuery("").addCallbacks(
                    self._cbValidated,
                    self._ebValidated,
                    callbackArgs=(backend, backend.lastUsedAt),
                    errbackArgs=(backend,),
                )

    def _cbValidated(
        self, error: ErrorResponse | None, backend: BackendProtocol, lastUsedAt: float
    ) -> None:
        if backend.poolState is not BackendState.RESETTING:
            return
        if error is not None:
            self.discard(backend, f"validation failed: {error.message}")
            return
        self._moveTo(backend, BackendState.IDLE)
        # A check is not a use: keep the idle time (and idle_timeout) running.
        backend.lastUsedAt = lastUsedAt
        timer = backend.idleTimer
        if timer is not None and timer.active():
            remaining = lastUsedAt + self.config.main.idleTimeout - self._reactor.seconds()
            timer.reset(max(0.0, remaining))
        self._serveAll(first=self.pool(backend.key))

    def _ebValidated(self, reason: Failure, backend: BackendProtocol) -> None:
        self.discard(backend, f"validation failed: {reason.getErrorMessage()}")


__all__ = ["PoolMaintenance"]
