# -*- test-case-name: tests.unit.test_pool -*-
"""
The state of pools: backend states, one pool's bookkeeping, and which line
of C{pgtwist_databases.conf} governs a pool. L{pgtwist.pool.poolset.PoolSet} changes
this state; the admin console and metrics read it.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pgtwist.config.model import DatabaseLimit, PoolKey
from pgtwist.pool.stats import PoolStats

if TYPE_CHECKING:
    from pgtwist.net.backend import BackendProtocol
    from pgtwist.pool.poolset import _Waiter


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


def matchLimit(limits: Sequence[DatabaseLimit], database: str, user: str) -> int | None:
    """
    The index of the C{pgtwist_databases.conf} line governing (database,
    user), in pgagroal's order: exact pair, then the user with database
    C{all}, then the database with user C{all}, then C{all all}.
    """
    for wanted in ((database, user), ("all", user), (database, "all"), ("all", "all")):
        for index, limit in enumerate(limits):
            if (limit.database, limit.user) == wanted:
                return index
    return None


def resolveAlias(limits: Sequence[DatabaseLimit], database: str) -> str:
    """
    The real database behind an alias of the databases file (or C{database}).
    """
    for limit in limits:
        if database in limit.aliases:
            return limit.database
    return database


class Pool:
    """
    The backends and waiting clients of one (database, user) pair.

    @ivar limitIndex: The databases-file line that governs it, if any.
    """

    def __init__(self, key: PoolKey, limitIndex: int | None = None) -> None:
        self.key = key
        self.limitIndex = limitIndex
        #: Failed connection attempts in a row, and when to try again.
        self.connectFailures = 0
        self.retryAt = 0.0
        self.prefilled = False
        self.stats = PoolStats()
        #: While paused (console PAUSE), waiters are not served.
        self.paused = False
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
