# -*- test-case-name: tests.unit.test_janitor -*-
"""
Pool maintenance: what the janitor asks of the pools between client
requests (minimum sizes, connection age, background validation, dropping
unused pools), apart
from the lending and taking back that L{pgtwist.pool.poolset.PoolSet} does
per request. It uses only the pool set's public operations.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from twisted.internet.interfaces import IReactorTime

from pgtwist.config.model import PoolKey
from pgtwist.pool.poolset import PoolSet


class PoolMaintenance:
    """
    The maintenance entry points, over one L{PoolSet}.
    """

    def __init__(self, pools: PoolSet, clock: IReactorTime) -> None:
        self.pools = pools
        self.clock = clock

    def maintain(self) -> None:
        """
        Open backends up to INITIAL_SIZE (once, at start) and MIN_SIZE for the
        databases-file lines naming a database and a user whose password is in
        the vault (not while an upgrade drains the process,
        L{PoolSet.draining}); close idle backends past C{max_connection_age}.
        """
        now = self.clock.seconds()
        pools = self.pools
        config = pools.config
        age = config.main.maxConnectionAge
        if age > 0:
            for pool in pools.pools.values():
                for entry in list(pool.idle):
                    if now - entry.createdAt >= age:
                        pools.closeAndForget(entry)
        # While an upgrade drains this process, its idle backends go to the
        # new one: none is opened here to keep a pool at its minimum.
        limits = () if pools.draining else config.limits
        for limit in limits:
            if "all" in (limit.database, limit.user):
                continue
            if config.backendPassword(limit.user) is None:
                # Only a verifier (or nothing) known: backends are opened by
                # pass-through, once a client has logged in.
                continue
            pool = pools.pool((limit.database, limit.user))
            if pool.paused:
                continue
            target = limit.minSize if pool.prefilled else max(limit.initialSize, limit.minSize)
            pool.prefilled = True
            if pool.connectFailures and now < pool.retryAt:
                continue
            if now < pool.openAfter or pools.servers.switching is not None:
                continue
            missing = target - pool.size
            while missing > 0 and pools.hasRoomFor(pool):
                if not pools.openBackend(pool):
                    break  # no server may take it now (routing)
                missing -= 1

    def dropUnusedPools(self, timeout: float, clientKeys: Callable[[], Collection[PoolKey]]) -> int:
        """
        PgBouncer's C{autodb_idle_timeout}: forget the pools that no
        databases-file line names (C{all} lines do not count) once they
        have had no backend, no waiter and no client for C{timeout}
        seconds. Pools are made only for pairs that authenticated (or are
        configured); without this, one client that knows a password could
        still grow them (and C{/metrics}) by asking for database after
        database. Returns how many were dropped.

        @param clientKeys: Gives the keys of the clients connected now;
            called once, and only if some pool has neither backend nor
            waiter.
        """
        now = self.clock.seconds()
        pools = self.pools
        dropped = 0
        inUse: Collection[PoolKey] | None = None
        for key, pool in list(pools.pools.items()):
            if pool.size or pool.waiters or pools.isConfigured(key):
                pool.unusedSince = None
                continue
            if inUse is None:
                inUse = clientKeys()
            if key in inUse:
                pool.unusedSince = None
            elif pool.unusedSince is None:
                pool.unusedSince = now
            elif now - pool.unusedSince >= timeout and pools.dropPool(key):
                dropped += 1
        return dropped

    def validateIdle(self) -> None:
        """
        Background validation: an empty query on every idle backend.
        """
        for pool in self.pools.pools.values():
            for entry in list(pool.idle):
                self.pools.validate(entry)


__all__ = ["PoolMaintenance"]
