# -*- test-case-name: tests.unit.test_pool,tests.unit.test_service -*-
"""
The PostgreSQL servers pgtwist knows, which one gets new backends, and
failover (pgagroal's C{failover}, C{failover_script} and C{switch-to}).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from pgtwist.config.limits import Routing
from pgtwist.config.model import ServerSettings
from pgtwist.pool.routing import (
    ROLE_PRIMARY,
    ROLE_STANDBY,
    ServerHealth,
    candidates,
    choose,
)


class ServerState(enum.Enum):
    """
    What pgtwist thinks of a server.
    """

    PRIMARY = "primary"  # new backends go here
    STANDBY = "standby"  # known, not in use
    FAILED = "failed"  # could not be reached, or switched away from
    PROMOTING = "promoting"  # failing over to it: failover_script is running


class ServerSet:
    """
    The configured servers and the one in use.
    """

    log = Logger()

    def __init__(self, servers: Sequence[ServerSettings], reactor: Any = None) -> None:
        self._reactor = reactor
        self.servers: list[ServerSettings] = []
        self.states: dict[str, ServerState] = {}
        #: While C{failover_script} runs: fires with whether the new server
        #: became the primary. No backend should be opened meanwhile (the
        #: old server is gone, the new one may not be promoted yet).
        self.switching: Deferred[bool] | None = None
        #: What the health checks and the logins found out, by server name
        #: (L{pgtwist.pool.routing}).
        self.health: dict[str, ServerHealth] = {}
        #: Each pool's round-robin turn (C{load_balance_hosts=round-robin}).
        self.positions: dict[object, int] = {}
        self.reconfigure(servers)

    def reconfigure(self, servers: Sequence[ServerSettings]) -> None:
        """
        Take a new server list; keep the current server and failed marks for
        servers that stay, otherwise start from the configured primary.
        """
        current = self.states and self.current.name
        old = self.states
        self.servers = list(servers)
        primary = next((s for s in servers if s.primary), servers[0])
        self.states = {}
        self.health = {s.name: self.health.get(s.name) or ServerHealth() for s in servers}
        for server in servers:
            state = old.get(server.name, ServerState.STANDBY)
            if state is ServerState.PRIMARY:
                state = ServerState.STANDBY
            self.states[server.name] = state
        if ServerState.PROMOTING in self.states.values():
            # A failover is waiting for its script: it decides the primary.
            return
        keep = current if current and current in self.states else None
        if keep is not None and self.states[keep] is not ServerState.FAILED:
            self.states[keep] = ServerState.PRIMARY
        else:
            self.states[primary.name] = ServerState.PRIMARY

    @property
    def current(self) -> ServerSettings:
        """
        The server new backends connect to.
        """
        for server in self.servers:
            if self.states[server.name] is ServerState.PRIMARY:
                return server
        return self.servers[0]

    def _usable(self, server: ServerSettings) -> bool:
        return self.states.get(server.name) not in (ServerState.FAILED, ServerState.PROMOTING)

    def candidates(self, routing: Routing) -> list[ServerSettings]:
        """
        The servers a new backend routed by C{routing} may go to now, best
        first (L{pgtwist.pool.routing.candidates}).
        """
        return candidates(self.servers, self.current, self.health, routing, self._usable)

    def pick(self, routing: Routing, key: object) -> ServerSettings | None:
        """
        The server a new backend of the pool C{key} goes to, or C{None}
        when none may take it now (its clients wait).
        """
        return choose(self.candidates(routing), routing, key, self.positions)

    def observeRole(self, name: str, standby: bool) -> bool:
        """
        A backend (or a health check) found C{name} in recovery or not.
        Returns whether its role changed.
        """
        health = self.health.get(name)
        if health is None:
            return False
        role = ROLE_STANDBY if standby else ROLE_PRIMARY
        if health.role == role:
            return False
        self.log.info("Server {server} is a {role}", server=name, role=role)
        health.role = role
        return True

    def followPrimary(self) -> ServerSettings | None:
        """
        After a promotion (no C{failover_script} deciding): when the
        current server is found to be a standby, or fails its health
        checks, and another one that passes them is found to be a primary,
        that one becomes the current server (what SHOW DATABASES and the
        metrics call the primary). Returns the new current server, if any.
        """
        if self.switching is not None:
            return None
        old = self.current
        oldHealth = self.health.get(old.name) or ServerHealth()
        if oldHealth.role == ROLE_PRIMARY and oldHealth.healthy:
            return None
        for server in self.servers:
            health = self.health[server.name]
            if (
                server.name != old.name
                and health.role == ROLE_PRIMARY
                and health.healthy
                and self._usable(server)
            ):
                if self.states[old.name] is ServerState.PRIMARY:
                    self.states[old.name] = ServerState.STANDBY
                self.states[server.name] = ServerState.PRIMARY
                self.log.warn(
                    "Server {new} is the primary now (was {old}): read-write clients follow",
                    old=old.name,
                    new=server.name,
                )
                return server
        return None

    def byName(self, name: str) -> ServerSettings | None:
        """
        The server section called C{name}.
        """
        return next((s for s in self.servers if s.name == name), None)

    def switchTo(self, name: str) -> bool:
        """
        Make C{name} the primary; the old one is marked failed (pgagroal's
        C{switch-to}). Returns whether C{name} exists.
        """
        target = self.byName(name)
        if target is None:
            return False
        for server, state in self.states.items():
            if state is ServerState.PROMOTING and server != name:
                # The operator chose: a failover under way will not promote.
                self.states[server] = ServerState.STANDBY
        old = self.current
        if old.name == name and self.states[name] is ServerState.PRIMARY:
            return True
        if self.states[old.name] is ServerState.PRIMARY:
            self.states[old.name] = ServerState.FAILED
        self.states[name] = ServerState.PRIMARY
        self.log.warn("Switched from server {old} to {new}", old=old.name, new=name)
        return True

    def reset(self, name: str) -> bool:
        """
        Forget that C{name} failed (pgagroal's C{clear server}).
        """
        if name not in self.states:
            return False
        if self.states[name] is ServerState.FAILED:
            self.states[name] = ServerState.STANDBY
        return True

    def failover(self, script: str | None) -> ServerSettings | None:
        """
        The primary cannot be reached: mark it failed and fail over to the
        next server that has not failed. Without C{script} that server is
        the primary at once. With one, pgagroal's order: the script runs
        with (old host, old port, new host, new port), the new server is
        L{ServerState.PROMOTING} meanwhile (L{switching} is set: no backend
        goes anywhere), and it becomes the primary only if the script exits
        0; otherwise it is marked failed and the old server stays the
        primary (the next failover tries the next server).

        @return: The server failed over to (promoted, or being promoted),
            or C{None} when every server failed.
        """
        old = self.current
        self.states[old.name] = ServerState.FAILED
        start = self.servers.index(old)
        for offset in range(1, len(self.servers)):
            candidate = self.servers[(start + offset) % len(self.servers)]
            if self.states[candidate.name] is not ServerState.FAILED:
                self.log.error(
                    "Server {old} ({oldHost}:{oldPort}) failed; failing over to {new} "
                    "({newHost}:{newPort})",
                    old=old.name,
                    oldHost=old.host,
                    oldPort=old.port,
                    new=candidate.name,
                    newHost=candidate.host,
                    newPort=candidate.port,
                )
                if script and self._reactor is not None:
                    self.states[candidate.name] = ServerState.PROMOTING
                    self.switching = Deferred()
                    self._runScript(script, old, candidate)
                else:
                    self.states[candidate.name] = ServerState.PRIMARY
                return candidate
        self.log.error("Server {old} failed and no other server is left", old=old.name)
        self.states[old.name] = ServerState.PRIMARY
        return None

    def _runScript(self, script: str, old: ServerSettings, new: ServerSettings) -> None:
        arguments = [script, old.host, str(old.port), new.host, str(new.port)]
        protocol = _ScriptProtocol(script, lambda code: self._scriptEnded(code, old, new))
        try:
            self._reactor.spawnProcess(protocol, script, arguments, env=None)
        except Exception as e:
            self.log.error("failover_script {script} cannot run: {error}", script=script, error=e)
            self._scriptEnded(None, old, new)

    def _scriptEnded(self, code: int | None, old: ServerSettings, new: ServerSettings) -> None:
        """
        C{failover_script} ended with exit status C{code} (C{None}: killed,
        or never ran): promote C{new} on 0, else give it up.
        """
        switching, self.switching = self.switching, None
        promoted = code == 0 and self.states.get(new.name) is ServerState.PROMOTING
        if promoted:
            self.states[new.name] = ServerState.PRIMARY
            self.log.warn("Failed over from server {old} to {new}", old=old.name, new=new.name)
        elif self.states.get(new.name) is ServerState.PROMOTING:
            self.states[new.name] = ServerState.FAILED
            if old.name in self.states and not any(
                state is ServerState.PRIMARY for state in self.states.values()
            ):
                self.states[old.name] = ServerState.PRIMARY
            self.log.error(
                "Not failing over to {new}: failover_script did not succeed", new=new.name
            )
        if switching is not None:
            switching.callback(promoted)


class _ScriptProtocol(ProcessProtocol):
    """
    Logs how a failover script ended, and says so to whoever waits for it.
    """

    log = Logger()

    def __init__(self, script: str, ended: Callable[[int | None], None] | None = None) -> None:
        self.script = script
        self.ended = ended

    def processEnded(self, reason: Failure) -> None:
        """
        Log the exit status (C{None} when a signal ended the script) and
        pass it on.
        """
        code = getattr(reason.value, "exitCode", None)
        if code == 0:
            self.log.info("failover_script {script} finished", script=self.script)
        else:
            self.log.error(
                "failover_script {script} exited with {code}", script=self.script, code=code
            )
        if self.ended is not None:
            self.ended(code)
