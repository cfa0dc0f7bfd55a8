"""
Shared harness for the admin console tests: a real L{PoolerService} over a
C{MemoryReactorClock}, its pools on a scripted connector, and console
sessions on L{FakeFrontendLink}s whose output is decoded back into messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.admin.console import ConsoleSession
from pgtwist.app.service import PoolerService, buildService
from pgtwist.config.model import (
    Configuration,
    DatabaseLimit,
    HbaRule,
    MainSettings,
    PoolKey,
    ServerSettings,
    UserEntry,
)
from pgtwist.interfaces import IPooledConnection
from pgtwist.net.frontend import FrontendProtocol, FrontendState
from pgtwist.testing import FakeFrontendLink
from pgtwist.wire import codec
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    CommandComplete,
    DataRow,
    ErrorResponse,
    Message,
    ReadyForQuery,
    RowDescription,
)
from tests.unit.test_pool import ScriptedBackend

SERVERS = (
    ServerSettings("primary", "127.0.0.1", 5432, True),
    ServerSettings("standby", "127.0.0.2", 5432),
)


def makeConfiguration(**main: Any) -> Configuration:
    """
    An admin C{root}, a stats user C{watcher} (password in the vault), a
    vault user C{alice}, a databases-file line for C{db} and an HBA rule
    letting everyone try SCRAM-SHA-256 (the console's too).
    """
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 6432,
        "statsUsers": ("watcher",),
        "maxConnections": 10,
        "blockingTimeout": 0.0,
    }
    settings.update(main)
    return Configuration(
        main=MainSettings(**settings),
        servers=SERVERS,
        hba=(HbaRule("host", "all", "all", None, "scram-sha-256"),),
        limits=(DatabaseLimit("db", "all", 5, 0, 1, aliases=("dbalias",)),),
        users={"alice": UserEntry("alice", "pw"), "watcher": UserEntry("watcher", "seen")},
        admins={"root": UserEntry("root", "rootpw")},
    )


class Result:
    """
    One statement's answer, decoded.
    """

    def __init__(self, messages: Sequence[Message]) -> None:
        self.messages = list(messages)
        descriptions = [m for m in messages if isinstance(m, RowDescription)]
        self.description = descriptions[0] if descriptions else None
        self.rows = [
            tuple(None if v is None else v.decode() for v in m.values)
            for m in messages
            if isinstance(m, DataRow)
        ]
        tags = [m.tag for m in messages if isinstance(m, CommandComplete)]
        self.tag = tags[0] if tags else None
        errors = [m for m in messages if isinstance(m, ErrorResponse)]
        self.error = errors[0] if errors else None

    @property
    def names(self) -> list[str]:
        """
        The column names.
        """
        assert self.description is not None
        return [f.name for f in self.description.fields]

    @property
    def types(self) -> list[int]:
        """
        The column type OIDs.
        """
        assert self.description is not None
        return [f.typeOid for f in self.description.fields]

    def column(self, name: str) -> list[str | None]:
        """
        One column's values.
        """
        index = self.names.index(name)
        return [row[index] for row in self.rows]

    def asDict(self) -> dict[str | None, str | None]:
        """
        Two-column rows (key, value) as a mapping.
        """
        return {row[0]: row[1] for row in self.rows}


class ConsoleTestCase(SynchronousTestCase):
    """
    A service with an admin console session (and helpers to add pool
    clients and backends).
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_700_000_000)
        self.nextConfiguration: Configuration | None = None
        self.service: PoolerService = buildService(
            makeConfiguration(), self.reactor, reloadConfiguration=self.reloadConfiguration
        )
        self.connects: list[tuple[ScriptedBackend, Deferred[IPooledConnection]]] = []
        self.service.pools._connector = self.connect
        self.stopped: list[bool] = []
        self.patch(self.reactor, "stop", lambda: self.stopped.append(True))
        self.sessions: dict[int, ConsoleSession] = {}
        self.frontend, self.session = self.openSession("admin")

    def reloadConfiguration(self) -> Configuration:
        """
        What a reload reads: C{nextConfiguration}, or a broken file.
        """
        if self.nextConfiguration is None:
            raise ValueError("pgtwist.conf:1: broken")
        return self.nextConfiguration

    def connect(
        self, server: ServerSettings, key: PoolKey, password: str | None
    ) -> tuple[IPooledConnection, Deferred[IPooledConnection]]:
        """
        The scripted connector: the test logs backends in with L{login}.
        """
        backend = ScriptedBackend(key, self.reactor, 2000 + len(self.connects))  # type: ignore[arg-type]
        backend.server = server
        backend.parameters = {"server_version": "15.4", "application_name": "app"}
        d: Deferred[IPooledConnection] = Deferred()
        self.connects.append((backend, d))
        return backend, d

    def openSession(self, role: str, user: str = "root") -> tuple[FakeFrontendLink, ConsoleSession]:
        """
        A logged-in console session for C{role}.
        """
        frontend = FakeFrontendLink(("pgbouncer", user))
        session = self.service.console.newSession(frontend, role)
        session.begin()
        self.sessions[id(frontend)] = session
        return frontend, session

    def query(self, sql: str, frontend: FakeFrontendLink | None = None) -> list[Result]:
        """
        Send one Query; return the answers per statement (the last item
        holds what followed the last CommandComplete or ErrorResponse).
        """
        frontend = frontend or self.frontend
        session = self.sessions[id(frontend)]
        frontend.written.clear()
        session.frontendDataReceived(codec.frame(b"Q", sql.encode() + b"\0"))
        return self.results(frontend)

    def results(self, frontend: FakeFrontendLink | None = None) -> list[Result]:
        """
        Decode (and clear) what was written, grouped per statement.
        """
        frontend = frontend or self.frontend
        messages = [
            codec.decodeBackend(t, b) for t, b in MessageFramer().feed(bytes(frontend.written))
        ]
        frontend.written.clear()
        if not messages:
            return []
        groups: list[list[Message]] = [[]]
        for message in messages:
            groups[-1].append(message)
            if isinstance(message, (CommandComplete, ErrorResponse)):
                groups.append([])
        return [Result(group) for group in groups]

    def one(self, sql: str, frontend: FakeFrontendLink | None = None) -> Result:
        """
        The answer to a one-statement Query, checking it ends with ReadyForQuery.
        """
        results = self.query(sql, frontend)
        self.assertEqual(len(results), 2, [r.messages for r in results])
        self.assertEqual(results[1].messages, [ReadyForQuery(b"I")])
        return results[0]

    def statsSession(self) -> FakeFrontendLink:
        """
        A session of the stats user C{watcher}.
        """
        frontend, _ = self.openSession("stats", "watcher")
        return frontend

    def login(self, index: int = -1) -> ScriptedBackend:
        """
        Complete a pending backend login.
        """
        backend, d = self.connects[index]
        d.callback(backend)
        return backend

    def activeBackend(self, key: PoolKey = ("db", "alice")) -> ScriptedBackend:
        """
        A backend lent to a client.
        """
        d = self.service.pools.acquire(key, None)
        backend = self.login()
        self.assertIs(self.successResultOf(d), backend)
        return backend

    def closesOnRelease(self, backend: IPooledConnection) -> bool:
        """
        Whether the pool closes C{backend} when it is given back (a graceful
        flush marked it).
        """
        entry = self.service.pools.entryFor(backend)
        self.assertIsNotNone(entry)
        assert entry is not None
        return entry.closeOnRelease

    def client(
        self,
        key: PoolKey = ("db", "alice"),
        backend: IPooledConnection | None = None,
        waiting: bool = False,
    ) -> FrontendProtocol:
        """
        A logged-in pool client on a StringTransport.
        """
        address = IPv4Address("TCP", "127.0.0.1", 40000 + len(self.service.factory.clients))
        protocol = self.service.factory.buildProtocol(address)
        protocol.makeConnection(StringTransport(peerAddress=address))
        protocol.state = FrontendState.READY
        protocol.key = key
        protocol.startupParameters = {
            "user": key[1],
            "database": key[0],
            "application_name": "psql",
        }
        protocol.backend = backend

        class Session:
            def waitingForBackend(self) -> bool:
                return waiting

            def busy(self) -> bool:
                return backend is not None

        protocol.session = Session()  # type: ignore[assignment]
        return protocol
