# -*- test-case-name: tests.unit.test_admin_control,tests.integration.test_pool_operations -*-
"""
Periodic maintenance (PgBouncer's janitor.c): prefill and minimum pool sizes,
lifetimes of idle backends, background validation, dropping unused pools
(PgBouncer's C{autodb_idle_timeout}), and disconnecting idle clients
(pgagroal's C{disconnect_client}).
"""

from __future__ import annotations

from twisted.application.internet import TimerService
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pgtwist.net.frontend import FrontendFactory
from pgtwist.pool.maintenance import PoolMaintenance
from pgtwist.pool.poolset import PoolSet
from pgtwist.wire import constants, errors

#: How often the janitor runs (seconds).
INTERVAL = 1.0


class Janitor(TimerService):
    """
    Runs L{runOnce} every L{INTERVAL} seconds.
    """

    log = Logger()
    name = "janitor"

    def __init__(self, pools: PoolSet, factory: FrontendFactory, clock: IReactorTime) -> None:
        super().__init__(INTERVAL, self.runOnce)
        self.clock = clock
        self.pools = pools
        self.maintenance = PoolMaintenance(pools, clock)
        self.factory = factory
        self._lastValidation: float = clock.seconds()

    def runOnce(self) -> None:
        """
        One round of maintenance.
        """
        main = self.pools.config.main
        self.maintenance.maintain()
        now: float = self.factory.clock.seconds()
        if (
            main.validation == "background"
            and now - self._lastValidation >= main.backgroundInterval
        ):
            self._lastValidation = now
            self.maintenance.validateIdle()
        if main.autodbIdleTimeout > 0:
            self.maintenance.dropUnusedPools(
                main.autodbIdleTimeout, lambda: {client.key for client in self.factory.clients}
            )
        if main.disconnectClient > 0:
            self.disconnectIdleClients(now, main.disconnectClient, main.disconnectClientForce)

    def disconnectIdleClients(self, now: float, limit: float, force: bool) -> None:
        """
        Close clients that sent nothing for C{limit} seconds; without
        C{force}, only those with no request running on a backend.
        """
        for client in list(self.factory.clients):
            if now - client.lastActivity < limit:
                continue
            if not force and client.busy():
                continue
            self.log.info(
                "Disconnecting client {clientAddress} of {poolKey}: idle for {limit}s",
                clientAddress=client.peer(),
                poolKey=client.key,
                limit=limit,
            )
            client.fail(
                errors.fatal(
                    constants.SQLSTATE_ADMIN_SHUTDOWN,
                    "terminating connection due to idle-session timeout",
                    detail=f"pgtwist disconnects clients idle for {limit:g}s (disconnect_client).",
                )
            )
