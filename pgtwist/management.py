# -*- test-case-name: tests.unit.test_management -*-
"""
The local management API: what pgagroal-cli and PgBouncer's console can ask
of a running pgtwist (flush, enable/disable, switch-to, shutdown, reload,
status). The admin console and C{pgtwist-cli} are thin layers over it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pgtwist.pool import BackendState

if TYPE_CHECKING:
    from pgtwist.service import PoolerService

FLUSH_MODES = ("idle", "gracefully", "all")
SHUTDOWN_MODES = ("gracefully", "immediate", "cancel")


class Management:
    """
    Operations on a running L{PoolerService}.

    @ivar state: C{"running"}, or C{"gracefully"} while a graceful shutdown
        waits for clients to leave.
    """

    log = Logger()

    def __init__(self, service: PoolerService, reactor: Any) -> None:
        self.service = service
        self._reactor = reactor
        self.state = "running"
        self._watch: LoopingCall | None = None

    def flush(self, mode: str = "gracefully", database: str | None = None) -> int:
        """
        Close backends: C{idle} ones, C{gracefully} (idle now, busy ones when
        given back), or C{all} (busy ones too). C{database} C{None} or C{"*"}
        means every database. Returns how many backends were affected.
        """
        if mode not in FLUSH_MODES:
            raise ValueError(f"unknown flush mode {mode!r}; expected one of {FLUSH_MODES}")
        target = None if database in (None, "*") else database
        count = self.service.pools.flush(mode, target)
        self.log.info(
            "Flush {mode} of {database}: {count} backends",
            mode=mode,
            database=database or "*",
            count=count,
        )
        return count

    def disable(self, database: str = "*") -> None:
        """
        Refuse new clients of C{database} (C{"*"}: all) with a FATAL error;
        connected clients stay.
        """
        factory = self.service.factory
        if database == "*":
            factory.enabled.clear()
        else:
            factory.enabled.discard(database)
        factory.disabled.add(database)

    def enable(self, database: str = "*") -> None:
        """
        Accept new clients of C{database} (C{"*"}: all) again.
        """
        factory = self.service.factory
        if database == "*":
            factory.disabled.clear()
            factory.enabled.clear()
        else:
            factory.disabled.discard(database)
            if "*" in factory.disabled:
                factory.enabled.add(database)

    def isEnabled(self, database: str) -> bool:
        """
        Whether new clients of C{database} are accepted.
        """
        factory = self.service.factory
        if database in factory.disabled:
            return False
        return "*" not in factory.disabled or database in factory.enabled

    def switchTo(self, server: str) -> bool:
        """
        Make C{server} the primary; idle backends of the old one are closed,
        busy ones when given back. Returns whether the server exists.
        """
        pools = self.service.pools
        old = pools.servers.current.name
        if not pools.servers.switchTo(server):
            return False
        if old != server:
            for pool in pools.pools.values():
                for state in (BackendState.IDLE, BackendState.ACTIVE, BackendState.RESETTING):
                    for backend in list(pool.backends[state]):
                        if backend.server.name == old:
                            backend.closeOnRelease = True
            pools.flush("idle", None, server=old)
        return True

    def clearServer(self, server: str) -> bool:
        """
        Forget that C{server} failed.
        """
        return self.service.pools.servers.reset(server)

    def reload(self) -> tuple[bool, list[str]]:
        """
        Re-read the configuration; see L{PoolerService.reload}.
        """
        return self.service.reload()

    def shutdown(self, mode: str = "gracefully") -> None:
        """
        C{gracefully}: stop accepting clients and exit once the last one
        leaves; C{cancel}: accept clients again; C{immediate}: exit now.
        """
        if mode not in SHUTDOWN_MODES:
            raise ValueError(f"unknown shutdown mode {mode!r}; expected one of {SHUTDOWN_MODES}")
        if mode == "immediate":
            self.log.info("Immediate shutdown requested")
            self._reactor.callLater(0, self._reactor.stop)
        elif mode == "gracefully":
            if self.state == "gracefully":
                return
            self.log.info(
                "Graceful shutdown: no new clients; exiting when the {count} connected leave",
                count=len(self.service.factory.clients),
            )
            self.state = "gracefully"
            self.service.stopListening()
            self._watch = LoopingCall(self._checkDrained)
            self._watch.clock = self._reactor
            self._watch.start(0.1)
        else:
            if self.state != "gracefully":
                return
            self.log.info("Graceful shutdown cancelled")
            self.state = "running"
            if self._watch is not None and self._watch.running:
                self._watch.stop()
            self.service.startListening()

    def _checkDrained(self) -> None:
        if self.state == "gracefully" and not self.service.factory.clients:
            self.log.info("All clients left; shutting down")
            assert self._watch is not None
            self._watch.stop()
            self._reactor.stop()

    def status(self) -> dict[str, Any]:
        """
        What pgagroal-cli's C{status} shows: state, connection counts, servers
        and per-pool detail.
        """
        pools = self.service.pools
        main = self.service.config.main
        servers = [
            {
                "name": server.name,
                "host": server.host,
                "port": server.port,
                "state": pools.servers.states[server.name].value,
            }
            for server in pools.servers.servers
        ]
        detail = []
        for key, pool in sorted(pools.pools.items()):
            detail.append(
                {
                    "database": key[0],
                    "user": key[1],
                    **{state.value: pool.count(state) for state in BackendState},
                    "waiting": len(pool.waiters),
                }
            )
        return {
            "status": self.state,
            "active_connections": sum(p.count(BackendState.ACTIVE) for p in pools.pools.values()),
            "total_connections": pools.total,
            "max_connections": main.maxConnections,
            "clients": len(self.service.factory.clients),
            "servers": servers,
            "pools": detail,
            "disabled": sorted(self.service.factory.disabled),
            "configuration": dataclasses.asdict(self.service.config.paths),
        }
