# -*- test-case-name: tests.unit.test_admin_control,tests.integration.test_pool_operations -*-
"""
Periodic maintenance (PgBouncer's janitor.c): prefill and minimum pool sizes,
lifetimes of idle backends, background validation, dropping unused pools
(PgBouncer's C{autodb_idle_timeout}), disconnecting idle clients
(pgagroal's C{disconnect_client}), and PgBouncer's client timeouts
(C{client_idle_timeout}, C{query_timeout}, C{idle_transaction_timeout},
C{transaction_timeout}) and C{query_wait_notify}.

The timeouts are checked here, once a round, as PgBouncer's janitor does:
the relay keeps no timer and does no work per message for them, and a
client is ended at most one round (L{INTERVAL}) after its limit.
"""

from __future__ import annotations

from twisted.application.internet import TimerService
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pgtwist.config.limits import ClientLimits, clientLimits
from pgtwist.config.model import Configuration, PoolKey
from pgtwist.interfaces import SESSION_IDLE, SESSION_RUNNING
from pgtwist.net.frontend import FrontendFactory, FrontendProtocol, FrontendState
from pgtwist.pool.maintenance import PoolMaintenance
from pgtwist.pool.poolset import PoolSet
from pgtwist.wire import constants, errors

#: How often the janitor runs (seconds).
INTERVAL = 1.0

#: PgBouncer's NOTICE to a client queued longer than C{query_wait_notify}.
WAIT_NOTICE = "No server connection available in postgres backend, client being queued"


_TIMEOUT_FIELDS = (
    "transactionTimeout",
    "idleTransactionTimeout",
    "queryTimeout",
    "clientIdleTimeout",
)


def _timeoutsSet(config: Configuration) -> bool:
    """
    Whether a timeout the janitor checks on clients not waiting for a
    backend is set, in the main section or on a databases-file line.
    """
    places: list[object] = [config.main, *config.limits]
    return any(getattr(place, name) for place in places for name in _TIMEOUT_FIELDS)


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
        #: What the last round saw of each client in a transaction: its
        #: phase, its last message's time, since when it has been in that
        #: phase and since when in its transaction (for a session that
        #: does not know these times).
        self._seen: dict[FrontendProtocol, tuple[int, float, float, float]] = {}

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
        self.enforceTimeouts(now)
        self.pools.serveWaiters()

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

    def enforceTimeouts(self, now: float) -> None:
        """
        End the clients past one of PgBouncer's timeouts, as PgBouncer does
        (a FATAL with SQLSTATE 08P01 whose message is its reason), and send
        PgBouncer's NOTICE, once, to clients queued longer than
        C{query_wait_notify}. A client's limits are its pool's
        (L{clientLimits}), read again at each round so that a reload
        applies to connected clients too.
        """
        config = self.pools.config
        notify = config.main.queryWaitNotify
        if not self.pools.hasWaiters() and not _timeoutsSet(config):
            # Nothing to check (the default): no look at every client.
            self._seen = {}
            return
        limitsOf: dict[PoolKey, ClientLimits] = {}
        seen: dict[FrontendProtocol, tuple[int, float, float, float]] = {}
        for client in list(self.factory.clients):
            if getattr(client, "state", None) is not FrontendState.READY:
                continue
            session = client.session
            if session is None:
                continue
            limits = limitsOf.get(client.key)
            if limits is None:
                limits = limitsOf[client.key] = clientLimits(config, client.key)
            if session.waitingForBackend():
                waited = now - client.lastActivity
                if notify > 0 and waited > notify and client.waitNotified != client.lastActivity:
                    client.waitNotified = client.lastActivity
                    client.notice(WAIT_NOTICE)
                if limits.queryTimeout and now - client.lastActivity > limits.queryTimeout:
                    self._end(client, "query_timeout")
                continue
            state = getattr(session, "timeoutState", None)
            if state is not None:
                phase, started, since = state()
            else:
                # A pipeline plugin written before timeoutState.
                phase, started, since = (
                    (SESSION_RUNNING if session.busy() else SESSION_IDLE),
                    0.0,
                    0.0,
                )
            if phase == SESSION_IDLE:
                idle = limits.clientIdleTimeout
                if idle and not session.busy() and now - client.lastActivity > idle:
                    self._end(client, "client_idle_timeout")
                continue
            if not limits.transactional:
                continue
            last = self._seen.get(client)
            if phase == SESSION_RUNNING:
                if not since:
                    # The relay keeps no time per request: its last message
                    # (never before the request began) stands for it.
                    since = client.lastActivity
            elif not since:
                # Idle in a transaction since an unknown moment: since this
                # round, unless the last one saw it so already.
                if last is not None and last[0] == phase and last[1] == client.lastActivity:
                    since = last[2]
                else:
                    since = now
            if not started:
                started = last[3] if last is not None else since
            seen[client] = (phase, client.lastActivity, since, started)
            if phase == SESSION_RUNNING:
                if limits.queryTimeout and now - since > limits.queryTimeout:
                    self._end(client, "query timeout")
                    continue
            elif limits.idleTransactionTimeout and now - since > limits.idleTransactionTimeout:
                self._end(client, "idle transaction timeout")
                continue
            if limits.transactionTimeout and now - started > limits.transactionTimeout:
                self._end(client, "transaction timeout")
        self._seen = seen

    def _end(self, client: FrontendProtocol, reason: str) -> None:
        """
        End C{client} with PgBouncer's words for C{reason}.
        """
        self.log.info(
            "Disconnecting client {clientAddress} of {poolKey}: {reason}",
            clientAddress=client.peer(),
            poolKey=client.key,
            reason=reason,
        )
        client.fail(errors.fatal(constants.SQLSTATE_PROTOCOL_VIOLATION, reason))
