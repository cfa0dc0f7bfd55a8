# -*- test-case-name: tests.unit.test_janitor -*-
"""
Pool maintenance: what the janitor asks of the pools between client
requests (minimum sizes, connection age, background validation), apart
from the lending and taking back that L{pgtwist.pool.poolset.PoolSet} does
per request. It uses only the pool set's public operations.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

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
        the vault; close idle backends past C{max_connection_age}.
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
        for limit in config.limits:
            if "all" in (limit.database, limit.user):
                continue
            user = config.users.get(limit.user)
            if user is None or user.password is None:
                continue
            pool = pools.pool((limit.database, limit.user))
            if pool.paused:
                continue
            target = limit.minSize if pool.prefilled else max(limit.initialSize, limit.minSize)
            pool.prefilled = True
            if pool.connectFailures and now < pool.retryAt:
                continue
            missing = target - pool.size
            while missing > 0 and pools.hasRoomFor(pool):
                pools.openBackend(pool)
                missing -= 1

    def validateIdle(self) -> None:
        """
        Background validation: an empty query on every idle backend.
        """
        for pool in self.pools.pools.values():
            for entry in list(pool.idle):
                self.pools.validate(entry)


__all__ = ["PoolMaintenance"]
