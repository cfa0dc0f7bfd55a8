# -*- test-case-name: tests.unit.test_pool -*-
"""
The state of pools: backend states, the pool's record of each backend, one
pool's bookkeeping, and which line of C{pgtwist_databases.conf} governs a
pool. L{pgtwist.pool.poolset.PoolSet} changes this state; maintenance, the
admin console and metrics read it.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall

from pgtwist.config.limits import ClientLimits
from pgtwist.config.model import PoolKey
from pgtwist.config.verifiers import BackendCredential
from pgtwist.pool.stats import PoolStats

if TYPE_CHECKING:
    from pgtwist.interfaces import IBackendLink, IPooledConnection


class BackendState(enum.Enum):
    """
    Where a backend is in its life.
    """

    CONNECTING = "connecting"  # TCP connect, startup and authentication
    IDLE = "idle"  # in the pool, ready to hand out
    ACTIVE = "active"  # lent to a client
    RESETTING = "resetting"  # running DISCARD ALL / SETs before reuse
    CLOSED = "closed"  # gone; no longer counted

    # Members are singletons: hashing by identity is right, and unlike
    # Enum's own __hash__ (Python code) it costs nothing on the hot path.
    __hash__ = object.__hash__


class PooledBackend:
    """
    The pool's record of one backend: its state and the pool's timestamps
    and timer for it. Kept by L{pgtwist.pool.poolset.PoolSet} from the
    moment it connects until it is closed; only the pool set changes it.

    @ivar backend: The connection.
    @ivar state: Its L{BackendState} (C{None} before it is first counted).
    @ivar createdAt: When the pool opened it.
    @ivar lastUsedAt: When it last went idle (what C{idle_timeout} and the
        least-recently-used eviction go by).
    @ivar closeOnRelease: Set by a graceful flush: close it instead of
        reusing it when it is given back.
    @ivar idleTimer: The C{idle_timeout} timer, while one is armed.
    """

    __slots__ = ("backend", "state", "createdAt", "lastUsedAt", "closeOnRelease", "idleTimer")

    def __init__(self, backend: IPooledConnection, now: float) -> None:
        self.backend = backend
        self.state: BackendState | None = None
        self.createdAt = now
        self.lastUsedAt = now
        self.closeOnRelease = False
        self.idleTimer: IDelayedCall | None = None

    def __repr__(self) -> str:
        state = self.state.value if self.state is not None else "new"
        return f"<PooledBackend {self.backend!r} {state}>"


class Waiter:
    """
    A client waiting for a backend.
    """

    __slots__ = ("deferred", "parameters", "since", "deadline")

    def __init__(
        self, parameters: Mapping[str, str] | None, since: float, deadline: float | None = None
    ) -> None:
        self.parameters = parameters
        self.deferred: Deferred[IBackendLink] = Deferred()
        self.since = since
        #: When its wait runs out (C{None}: never), fixed when it starts to
        #: wait, as a timer of its own would be.
        self.deadline = deadline


class Pool:
    """
    The backends and waiting clients of one (database, user) pair.

    @ivar limitIndex: The databases-file line that governs it, if any.
    """

    def __init__(
        self, key: PoolKey, limitIndex: int | None = None, limits: ClientLimits | None = None
    ) -> None:
        self.key = key
        self.limitIndex = limitIndex
        #: PgBouncer's limits for this pool (query_wait_timeout, reserve
        #: pool...), from the configuration; replaced on reload.
        self.limits = limits if limits is not None else ClientLimits()
        #: Failed connection attempts in a row, and when to try again.
        self.connectFailures = 0
        self.retryAt = 0.0
        #: Logins PostgreSQL refused in a row (no such database, role...);
        #: maintenance opens no backend for the pool before C{openAfter}
        #: (after a refusal, or while its database is being dropped).
        self.loginRefusals = 0
        self.openAfter = 0.0
        self.prefilled = False
        self.stats = PoolStats()
        #: While paused (console PAUSE), waiters are not served.
        self.paused = False
        #: The pool's records of its backends, by state (none is kept as CLOSED).
        self.backends: dict[BackendState, set[PooledBackend]] = {s: set() for s in BackendState}
        #: The records of idle backends, most recently used last (handed out LIFO).
        self.idle: list[PooledBackend] = []
        #: Oldest first (a waiter put back keeps its place by age).
        self.waiters: deque[Waiter] = deque()
        #: Fires when the oldest waiter's wait runs out: one timer per pool,
        #: not one per wait (see C{PoolSet._armWaitTimer}).
        self.waitTimer: IDelayedCall | None = None
        #: The deadline C{waitTimer} is armed for.
        self.waitDeadline = 0.0
        #: What PostgreSQL asked for at login (resolves the HBA method C{all}).
        self.authRequestCode: int | None = None
        #: For a user without a vault password: what the last client that
        #: authenticated against a verifier left to log in with
        #: (pass-through); it goes away with the pool.
        self.credential: BackendCredential | None = None
        #: Since when the janitor has found it with no backend, waiter or
        #: client (C{None}: in use); see C{autodb_idle_timeout}.
        self.unusedSince: float | None = None

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
