# -*- test-case-name: tests.unit.test_health -*-
"""
Health checks (pgagroal 2.x's C{health_check*} keys): every
C{health_check_period} seconds, one short connection to each server asks
whether it is in recovery and how far behind its replay is. A server that
does not answer within C{health_check_timeout} gets no new backend until a
check passes again (L{pgtwist.pool.routing}).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from pgtwist.config.model import Configuration, PoolKey, ServerSettings
from pgtwist.pool.routing import ROLE_PRIMARY, ROLE_STANDBY, parseLsn
from pgtwist.pool.servers import ServerSet

__all__ = ["HEALTH_QUERY", "HealthChecker"]

#: One round trip: in recovery or not; the WAL position (the primary's
#: insert position, a standby's replay position); a standby's receive
#: position; and its replay lag in seconds, counted only while it has WAL
#: received and not replayed (an idle primary does not make it late).
HEALTH_QUERY = (
    "SELECT pg_is_in_recovery(), "
    "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
    "ELSE pg_current_wal_lsn() END, "
    "pg_last_wal_receive_lsn(), "
    "CASE WHEN pg_is_in_recovery() AND pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn() "
    "THEN COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) "
    "ELSE 0 END"
)

#: Opens a connection: (server, (database, user), password) to the
#: connection and a Deferred that fires once it is ready for queries.
Connect = Callable[[ServerSettings, PoolKey, "str | None"], "tuple[Any, Deferred[Any]]"]


class _Answer:
    """
    What one server answered (C{error} set when it did not).
    """

    __slots__ = ("error", "lsn", "received", "lagSeconds", "standby")

    def __init__(self) -> None:
        self.error = ""
        self.standby = False
        self.lsn: int | None = None
        self.received: int | None = None
        self.lagSeconds = 0.0


class HealthChecker:
    """
    Runs the rounds of health checks and tells the pools what changed.

    @ivar changed: Called after each round (the pools close backends a
        change of roles, health or lag leaves on the wrong server, and
        serve their waiters).
    """

    log = Logger()

    def __init__(
        self,
        config: Configuration,
        servers: ServerSet,
        reactor: Any,
        connect: Connect,
        changed: Callable[[], None],
    ) -> None:
        self.config = config
        self.servers = servers
        self._reactor = reactor
        self._connect = connect
        self.changed = changed
        self._timer: Any = None
        self._running: Deferred[None] | None = None
        self.rounds = 0

    @property
    def enabled(self) -> bool:
        """
        Whether C{health_check} is on.
        """
        return self.config.main.healthCheck

    def start(self) -> None:
        """
        Run a round now and every C{health_check_period} seconds (while on).
        """
        if self.enabled and self._timer is None and self._running is None:
            self._timer = self._reactor.callLater(0, self._round)

    def stop(self) -> None:
        """
        Run no more rounds.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def reconfigure(self, config: Configuration) -> None:
        """
        Use C{config}'s keys from the next round (switching checks on or off).
        """
        self.config = config
        if not self.enabled:
            self.stop()
            for health in self.servers.health.values():
                health.healthy = True
                health.lagBytes = health.lagSeconds = None
        else:
            self.start()

    def _credentials(self) -> tuple[str, str | None]:
        config = self.config
        name = config.main.healthCheckUser
        if name is None:
            name = config.superuser.name if config.superuser is not None else "postgres"
        entry = config.users.get(name)
        if entry is not None and entry.password is not None:
            return name, entry.password
        superuser = config.superuser
        if superuser is not None and superuser.name == name:
            return name, superuser.password
        return name, None

    def _round(self) -> None:
        self._timer = None
        if not self.enabled:
            return
        servers: Sequence[ServerSettings] = list(self.servers.servers)
        done = gatherResults([self.check(server) for server in servers])
        self._running = done.addCallback(lambda answers: self._apply(servers, answers))
        self._running.addErrback(lambda f: self.log.failure("Health check round failed", f))
        self._running.addBoth(self._ended)

    def _ended(self, result: object) -> None:
        self._running = None
        self.rounds += 1
        if self.enabled and self._timer is None:
            period = max(self.config.main.healthCheckPeriod, 0.1)
            self._timer = self._reactor.callLater(period, self._round)

    def check(self, server: ServerSettings) -> Deferred[_Answer]:
        """
        Ask C{server} once; the answer has C{error} set when it failed or
        took longer than C{health_check_timeout}.
        """
        answer = _Answer()
        main = self.config.main
        user, password = self._credentials()
        result: Deferred[_Answer] = Deferred()
        try:
            # pgagroal connects to the database named after the user.
            database = main.healthCheckDatabase or user
            backend, ready = self._connect(server, (database, user), password)
        except Exception as e:
            answer.error = str(e)
            result.callback(answer)
            return result

        def fail(reason: object) -> None:
            if not result.called:
                text = reason.getErrorMessage() if isinstance(reason, Failure) else str(reason)
                answer.error = text or "failed"
                result.callback(answer)
            backend.close()

        timer = self._reactor.callLater(
            main.healthCheckTimeout or 5.0,
            fail,
            f"no answer within health_check_timeout ({main.healthCheckTimeout}s)",
        )

        def rows(found: list[tuple[bytes | None, ...]]) -> None:
            if timer.active():
                timer.cancel()
            if result.called:
                return
            row = found[0]
            answer.standby = row[0] == b"t"
            answer.lsn = parseLsn(row[1])
            answer.received = parseLsn(row[2])
            answer.lagSeconds = float(row[3] or 0)
            result.callback(answer)
            backend.close()

        def failed(reason: Failure) -> None:
            if timer.active():
                timer.cancel()
            fail(reason)

        ready.addCallback(lambda connection: connection.queryRows(HEALTH_QUERY))
        ready.addCallbacks(rows, failed)
        return result

    def _apply(self, servers: Sequence[ServerSettings], answers: Sequence[_Answer]) -> None:
        """
        Record a round's answers: roles, health, and each standby's lag
        behind the furthest primary position seen (or behind what it
        received itself).
        """
        now = self._reactor.seconds()
        primaryLsn = max(
            (a.lsn for a in answers if not a.error and not a.standby and a.lsn is not None),
            default=None,
        )
        for server, answer in zip(servers, answers):
            health = self.servers.health.get(server.name)
            if health is None:
                continue
            health.checkedAt = now
            if answer.error:
                if health.healthy:
                    self.log.warn(
                        "Server {server} failed its health check: {error}; no new backends "
                        "go there until it passes",
                        server=server.name,
                        error=answer.error,
                    )
                health.healthy = False
                health.error = answer.error
                continue
            if not health.healthy:
                self.log.info("Server {server} passed its health check", server=server.name)
            health.healthy = True
            health.error = ""
            self.servers.observeRole(server.name, answer.standby)
            if health.role == ROLE_STANDBY and answer.lsn is not None:
                ahead = max(x for x in (primaryLsn, answer.received, answer.lsn) if x is not None)
                health.lagBytes = max(0, ahead - answer.lsn)
                health.lagSeconds = answer.lagSeconds
            elif health.role == ROLE_PRIMARY:
                health.lagBytes = health.lagSeconds = None
        self.changed()
