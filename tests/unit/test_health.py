"""
Tests for L{pgtwist.pool.health}: rounds of health checks on a C{Clock},
over fake connections the test answers.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.model import Configuration, MainSettings, ServerSettings, UserEntry
from pgtwist.pool.health import HEALTH_QUERY, HealthChecker
from pgtwist.pool.routing import ROLE_PRIMARY, ROLE_STANDBY
from pgtwist.pool.servers import ServerSet

A = ServerSettings("a", "10.0.0.1", 5432, True)
B = ServerSettings("b", "10.0.0.2", 5432)


class FakeCheckConnection:
    """
    A health-check connection: its query answers with what the test set.
    """

    def __init__(self, row: tuple[bytes | None, ...] | None) -> None:
        self.row = row
        self.closed = False
        self.queries: list[str] = []
        self.pending: Deferred[list[tuple[bytes | None, ...]]] | None = None

    def queryRows(self, sql: str) -> Deferred[list[tuple[bytes | None, ...]]]:
        """
        Answer with the row, or never (C{None}: the server hangs).
        """
        self.queries.append(sql)
        if self.row is None:
            self.pending = Deferred()
            return self.pending
        return succeed([self.row])

    def close(self) -> None:
        """
        Record the close.
        """
        self.closed = True


class HealthCheckerTests(SynchronousTestCase):
    """
    L{HealthChecker}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.rows: dict[str, tuple[bytes | None, ...] | None] = {}
        self.refused: set[str] = set()
        self.logins: list[tuple[str, tuple[str, str], str | None]] = []
        self.connections: list[FakeCheckConnection] = []
        self.changes = 0
        self.config = Configuration(
            main=MainSettings(
                healthCheck=True,
                healthCheckPeriod=5.0,
                healthCheckTimeout=2.0,
                healthCheckUser="monitor",
            ),
            servers=(A, B),
            users={"monitor": UserEntry("monitor", "secret")},
        )
        self.servers = ServerSet(self.config.servers)
        self.checker = HealthChecker(
            self.config, self.servers, self.clock, self.connect, self.changed
        )

    def changed(self) -> None:
        """
        Count the rounds that told the pools.
        """
        self.changes += 1

    def connect(self, server: ServerSettings, key: tuple[str, str], password: str | None) -> Any:
        """
        A fake connection to C{server}, logged in at once unless refused.
        """
        self.logins.append((server.name, key, password))
        connection = FakeCheckConnection(self.rows.get(server.name))
        self.connections.append(connection)
        if server.name in self.refused:
            ready: Deferred[Any] = Deferred()
            ready.errback(ConnectionRefusedError("refused"))
            return connection, ready
        return connection, succeed(connection)

    def test_roundFindsRolesAndLag(self) -> None:
        """
        A round logs in as health_check_user with its vault password, to
        the database named after it (pgagroal's choice), learns each server's role, and a standby's lag behind the primary's
        WAL position.
        """
        self.rows = {"a": (b"f", b"0/3000", None, b"0"), "b": (b"t", b"0/1000", b"0/2000", b"4.5")}
        self.checker.start()
        self.clock.advance(0)
        self.assertEqual(
            self.logins,
            [("a", ("monitor", "monitor"), "secret"), ("b", ("monitor", "monitor"), "secret")],
        )
        self.assertEqual(self.connections[0].queries, [HEALTH_QUERY])
        self.assertTrue(all(c.closed for c in self.connections))
        health = self.servers.health
        self.assertEqual((health["a"].role, health["b"].role), (ROLE_PRIMARY, ROLE_STANDBY))
        self.assertEqual(health["b"].lagBytes, 0x2000)
        self.assertEqual(health["b"].lagSeconds, 4.5)
        self.assertIsNone(health["a"].lagBytes)
        self.assertEqual(self.changes, 1)
        self.clock.advance(5.0)
        self.assertEqual(len(self.logins), 4)
        self.assertEqual(self.changes, 2)

    def test_failedAndTimedOut(self) -> None:
        """
        A server that refuses, or does not answer within
        health_check_timeout, is unhealthy until a check passes again.
        """
        self.rows = {"a": (b"f", b"0/10", None, b"0"), "b": None}
        self.refused = {"a"}
        self.checker.start()
        self.clock.advance(0)
        self.assertEqual(self.changes, 0)
        self.clock.advance(2.0)
        health = self.servers.health
        self.assertFalse(health["a"].healthy)
        self.assertFalse(health["b"].healthy)
        self.assertIn("health_check_timeout", health["b"].error)
        self.assertTrue(self.connections[1].closed)
        self.rows = {"a": (b"f", b"0/10", None, b"0"), "b": (b"t", b"0/10", b"0/10", b"0")}
        self.refused = set()
        self.clock.advance(5.0)
        self.assertTrue(health["a"].healthy)
        self.assertTrue(health["b"].healthy)
        self.assertEqual(health["b"].lagBytes, 0)

    def test_offByDefault(self) -> None:
        """
        Without health_check nothing runs; switching it off on reload
        stops the rounds and forgets what they found.
        """
        checker = HealthChecker(
            Configuration(main=MainSettings(), servers=(A,)),
            ServerSet((A,)),
            self.clock,
            self.connect,
            self.changed,
        )
        checker.start()
        self.clock.advance(10)
        self.assertEqual(self.logins, [])
        self.refused = {"a", "b"}
        self.checker.start()
        self.clock.advance(0)
        self.clock.advance(2.0)
        self.assertFalse(self.servers.health["a"].healthy)
        self.checker.reconfigure(Configuration(main=MainSettings(), servers=(A, B)))
        self.assertTrue(self.servers.health["a"].healthy)
        count = len(self.logins)
        self.clock.advance(30)
        self.assertEqual(len(self.logins), count)
