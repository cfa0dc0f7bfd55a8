# -*- test-case-name: tests.unit.test_pool,tests.unit.test_service -*-
"""
The PostgreSQL servers pgtwist knows, which one gets new backends, and
failover (pgagroal's C{failover}, C{failover_script} and C{switch-to}).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from pgtwist.config.model import ServerSettings


class ServerState(enum.Enum):
    """
    What pgtwist thinks of a server.
    """

    PRIMARY = "primary"  # new backends go here
    STANDBY = "standby"  # known, not in use
    FAILED = "failed"  # could not be reached, or switched away from


class ServerSet:
    """
    The configured servers and the one in use.
    """

    log = Logger()

    def __init__(self, servers: Sequence[ServerSettings], reactor: Any = None) -> None:
        self._reactor = reactor
        self.servers: list[ServerSettings] = []
        self.states: dict[str, ServerState] = {}
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
        for server in servers:
            state = old.get(server.name, ServerState.STANDBY)
            if state is ServerState.PRIMARY:
                state = ServerState.STANDBY
            self.states[server.name] = state
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
        old = self.current
        if old.name == name:
            return True
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
        The primary cannot be reached: mark it failed, move to the next server
        that has not failed, and run C{script} with pgagroal's arguments
        (old host, old port, new host, new port). Returns the new primary, or
        C{None} when every server failed.
        """
        old = self.current
        self.states[old.name] = ServerState.FAILED
        start = self.servers.index(old)
        for offset in range(1, len(self.servers)):
            candidate = self.servers[(start + offset) % len(self.servers)]
            if self.states[candidate.name] is not ServerState.FAILED:
                self.states[candidate.name] = ServerState.PRIMARY
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
                if script:
                    self._runScript(script, old, candidate)
                return candidate
        self.log.error("Server {old} failed and no other server is left", old=old.name)
        self.states[old.name] = ServerState.PRIMARY
        return None

    def _runScript(self, script: str, old: ServerSettings, new: ServerSettings) -> None:
        arguments = [script, old.host, str(old.port), new.host, str(new.port)]
        if self._reactor is None:
            return
        self._reactor.spawnProcess(_ScriptProtocol(script), script, arguments, env=None)


class _ScriptProtocol(ProcessProtocol):
    """
    Logs how a failover script ended.
    """

    log = Logger()

    def __init__(self, script: str) -> None:
        self.script = script

    def processEnded(self, reason: Failure) -> None:
        """
        Log the exit status.
        """
        code = getattr(reason.value, "exitCode", None)
        if code:
            self.log.error(
                "failover_script {script} exited with {code}", script=self.script, code=code
            )
        else:
            self.log.info("failover_script {script} finished", script=self.script)
