"""
Tests for L{pgtwist.pool.routing} (which server a new backend goes to) and
its use by L{pgtwist.pool.poolset.PoolSet}: roles found at login, backends
moved off a server a pool should no longer use, promotion followed.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.authquery import authQueryFor
from pgtwist.config.errors import ConfigError
from pgtwist.config.limits import Routing, backendDatabase, routingFor
from pgtwist.config.model import (
    Configuration,
    DatabaseLimit,
    MainSettings,
    PoolKey,
    ServerSettings,
    UserEntry,
)
from pgtwist.config.tables import readLimitsFile
from pgtwist.interfaces import IPooledConnection
from pgtwist.pool.poolset import BackendState, PoolSet
from pgtwist.pool.routing import (
    ROLE_PRIMARY,
    ROLE_STANDBY,
    ServerHealth,
    candidates,
    choose,
    parseLsn,
)
from pgtwist.pool.servers import ServerState
from pgtwist.testing import FakePooledConnection

from ._configfiles import FilesTestCase

A = ServerSettings("a", "10.0.0.1", 5432, True)
B = ServerSettings("b", "10.0.0.2", 5432)
C = ServerSettings("c", "10.0.0.3", 5432)
SERVERS = (A, B, C)


def known(**roles: str) -> dict[str, ServerHealth]:
    """
    Health records with the given roles (others unknown).
    """
    return {s.name: ServerHealth(role=roles.get(s.name, "unknown")) for s in SERVERS}


def names(servers: list[ServerSettings]) -> list[str]:
    """
    The servers' names.
    """
    return [s.name for s in servers]


class CandidatesTests(SynchronousTestCase):
    """
    L{candidates}: libpq's target_session_attrs over what is known.
    """

    def test_unknownRolesCurrentFirst(self) -> None:
        """
        Before any role is known, every attribute may try every server,
        the current one first: today's behaviour with one server.
        """
        for attrs in ("read-write", "read-only", "prefer-standby", "any"):
            self.assertEqual(
                names(candidates(SERVERS, B, known(), Routing(attrs))), ["b", "a", "c"], attrs
            )

    def test_readWriteGoesToPrimaries(self) -> None:
        """
        read-write and primary take the known primaries only.
        """
        health = known(a="standby", b="primary", c="standby")
        for attrs in ("read-write", "primary"):
            self.assertEqual(names(candidates(SERVERS, A, health, Routing(attrs))), ["b"])

    def test_readWriteFallsBackToCurrent(self) -> None:
        """
        With no primary and no unknown server, read-write takes the
        current server (a lone standby configured as the only server).
        """
        health = known(a="standby", b="standby", c="standby")
        self.assertEqual(names(candidates(SERVERS, A, health, Routing())), ["a"])

    def test_standbyNeverAPrimary(self) -> None:
        """
        read-only and standby take standbys, never a primary: with none,
        no server (the clients wait).
        """
        health = known(a="primary", b="standby", c="standby")
        for attrs in ("read-only", "standby"):
            self.assertEqual(names(candidates(SERVERS, A, health, Routing(attrs))), ["b", "c"])
        health = known(a="primary", b="primary", c="primary")
        self.assertEqual(candidates(SERVERS, A, health, Routing("read-only")), [])

    def test_preferStandbyFallsBack(self) -> None:
        """
        prefer-standby takes standbys, and the primary when none is healthy.
        """
        health = known(a="primary", b="standby", c="standby")
        routing = Routing("prefer-standby")
        self.assertEqual(names(candidates(SERVERS, A, health, routing)), ["b", "c"])
        health["b"].healthy = False
        health["c"].healthy = False
        self.assertEqual(names(candidates(SERVERS, A, health, routing)), ["a"])

    def test_lagLimits(self) -> None:
        """
        A standby past max_lag_in_bytes or catchup_timeout takes no new
        backend; back within them, it does again.
        """
        health = known(a="primary", b="standby", c="standby")
        health["b"].lagBytes = 5000
        health["c"].lagSeconds = 12.0
        byBytes = Routing("read-only", maxLagBytes=1000)
        self.assertEqual(names(candidates(SERVERS, A, health, byBytes)), ["c"])
        bySeconds = Routing("read-only", maxLagSeconds=10.0)
        self.assertEqual(names(candidates(SERVERS, A, health, bySeconds)), ["b"])
        both = Routing("prefer-standby", maxLagBytes=1000, maxLagSeconds=10.0)
        self.assertEqual(names(candidates(SERVERS, A, health, both)), ["a"])
        self.assertEqual(
            names(candidates(SERVERS, A, health, Routing("any", maxLagBytes=1000))), ["a", "c"]
        )
        health["b"].lagBytes = 10
        self.assertEqual(names(candidates(SERVERS, A, health, byBytes)), ["b", "c"])

    def test_unhealthyAndUnusableLeftOut(self) -> None:
        """
        A server failing its health checks, or one a failover marked
        failed, is in no tier.
        """
        health = known(a="primary", b="primary", c="standby")
        health["a"].healthy = False
        self.assertEqual(names(candidates(SERVERS, A, health, Routing())), ["b"])
        self.assertEqual(candidates(SERVERS, A, health, Routing(), lambda s: s.name != "b"), [])

    def test_failoverScriptDecides(self) -> None:
        """
        When a failover_script decides (followPrimary off), read-write
        takes the current server only, whatever other primary is seen.
        """
        health = known(a="standby", b="primary")
        routing = Routing(followPrimary=False)
        self.assertEqual(names(candidates(SERVERS, A, health, routing)), ["a"])


class ChooseTests(SynchronousTestCase):
    """
    L{choose}: load_balance_hosts.
    """

    def test_disable(self) -> None:
        """
        disable takes the first candidate.
        """
        self.assertIs(choose([B, C], Routing(), "k", {}), B)
        self.assertIsNone(choose([], Routing(), "k", {}))

    def test_roundRobinPerPool(self) -> None:
        """
        round-robin takes each candidate in turn, each pool its own turn.
        """
        positions: dict[object, int] = {}
        routing = Routing(loadBalanceHosts="round-robin")
        picked = [choose([B, C], routing, "k", positions) for _ in range(4)]
        self.assertEqual(names(picked), ["b", "c", "b", "c"])  # type: ignore[arg-type]
        self.assertIs(choose([B, C], routing, "other", positions), B)

    def test_random(self) -> None:
        """
        random takes any candidate, as the random generator says.
        """
        routing = Routing(loadBalanceHosts="random")
        rng = random.Random(7)
        picked = {choose([A, B, C], routing, "k", {}, rng) for _ in range(30)}
        self.assertEqual(picked, {A, B, C})

    def test_parseLsn(self) -> None:
        """
        pg_lsn text is a byte position; NULL and garbage are C{None}.
        """
        self.assertEqual(parseLsn(b"1/10"), (1 << 32) + 16)
        self.assertEqual(parseLsn("0/0"), 0)
        self.assertIsNone(parseLsn(None))
        self.assertIsNone(parseLsn("x"))


class ConfigTests(SynchronousTestCase):
    """
    The routing keys of the databases file and the main section.
    """

    def readLimits(self, text: str) -> tuple[DatabaseLimit, ...]:
        """
        Read C{text} as a databases file.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return readLimitsFile(path, 100, lambda message: None)

    def test_lineKeys(self) -> None:
        """
        A line's target_session_attrs, load_balance_hosts, max_lag_in_bytes,
        catchup_timeout and dbname govern its pools; the main section's
        apply elsewhere.
        """
        limits = self.readLimits(
            "app all 10\n"
            "app_ro all 10 target_session_attrs=Prefer-Standby load_balance_hosts=round-robin "
            "max_lag_in_bytes=1M catchup_timeout=10 dbname=app\n"
        )
        config = Configuration(
            main=MainSettings(targetSessionAttrs="any", maxLagInBytes=7),
            servers=SERVERS,
            limits=limits,
        )
        self.assertEqual(
            routingFor(config, ("app_ro", "u")),
            Routing("prefer-standby", "round-robin", 1024 * 1024, 10.0),
        )
        self.assertEqual(routingFor(config, ("app", "u")), Routing("any", "disable", 7, 0.0))
        self.assertEqual(backendDatabase(config, ("app_ro", "u")), "app")
        self.assertEqual(backendDatabase(config, ("app", "u")), "app")

    def test_authQueryRunsInDbname(self) -> None:
        """
        Without auth_dbname, auth_query runs in the database the line's
        backends log into (its dbname), not in the name clients use.
        """
        limits = self.readLimits("app_ro all 10 dbname=app auth_user=lookup\n")
        config = Configuration(main=MainSettings(), servers=SERVERS, limits=limits)
        settings = authQueryFor(config, "app_ro", "u")
        assert settings is not None
        self.assertEqual(settings.database, "app")

    def test_badValues(self) -> None:
        """
        Values libpq does not know, and a dbname on an all line, are refused.
        """
        for line in (
            "app all 10 target_session_attrs=writable\n",
            "app all 10 load_balance_hosts=sometimes\n",
            "all all 10 dbname=app\n",
        ):
            self.assertRaises(ConfigError, self.readLimits, line)

    def test_failoverScriptStopsFollowing(self) -> None:
        """
        With failover and a failover_script, read-write pools do not follow
        a primary seen elsewhere: the script decides.
        """
        config = Configuration(
            main=MainSettings(failover=True, failoverScript="/bin/true"), servers=SERVERS
        )
        self.assertFalse(routingFor(config, ("app", "u")).followPrimary)


class MainKeysTests(FilesTestCase):
    """
    pgagroal 2.x's health_check keys and the routing keys in the main file.
    """

    MAIN = "[pgtwist]\nhost = 127.0.0.1\nport = 6432\n"
    SERVER = "\n[primary]\nhost = 127.0.0.1\nport = 5432\n"

    def test_keys(self) -> None:
        """
        The keys load with their units; the defaults leave health checks
        off and route read-write, as before.
        """
        self.assertFalse(self.load(self.MAIN + self.SERVER).main.healthCheck)
        main = self.load(
            self.MAIN + "health_check = on\nhealth_check_period = 2s\nhealth_check_timeout = 1\n"
            "health_check_user = monitor\nhealth_check_database = ops\n"
            "target_session_attrs = any\nload_balance_hosts = random\n"
            "max_lag_in_bytes = 16M\ncatchup_timeout = 1m\n" + self.SERVER
        ).main
        self.assertEqual(
            (main.healthCheck, main.healthCheckPeriod, main.healthCheckTimeout),
            (True, 2.0, 1.0),
        )
        self.assertEqual((main.healthCheckUser, main.healthCheckDatabase), ("monitor", "ops"))
        self.assertEqual((main.targetSessionAttrs, main.loadBalanceHosts), ("any", "random"))
        self.assertEqual((main.maxLagInBytes, main.catchupTimeout), (16 * 1024 * 1024, 60.0))
        self.assertEqual(self.warnings, [])

    def test_healthCheckNeedsAUser(self) -> None:
        """
        health_check = on with neither health_check_user nor a superuser
        file is refused, naming the key.
        """
        error = self.loadError(self.MAIN + "health_check = on\n" + self.SERVER)
        self.assertEqual(error.key, "health_check_user")

    def test_badValue(self) -> None:
        """
        A target_session_attrs libpq does not know is refused.
        """
        error = self.loadError(self.MAIN + "target_session_attrs = writable\n" + self.SERVER)
        self.assertEqual(error.key, "target_session_attrs")


class RoutedPoolTests(SynchronousTestCase):
    """
    L{PoolSet} routing new backends over several servers.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.connects: list[tuple[FakePooledConnection, Deferred[IPooledConnection]]] = []
        limits = (
            DatabaseLimit("app", "all", 10),
            DatabaseLimit("app_ro", "all", 10, targetSessionAttrs="prefer-standby", dbname="app"),
        )
        config = Configuration(
            main=MainSettings(maxConnections=20, blockingTimeout=5.0),
            servers=(A, B),
            limits=limits,
            users={"u": UserEntry("u", "pw")},
        )
        self.pools = PoolSet(config, self.clock, [], connector=self.connect)

    def connect(
        self, server: ServerSettings, key: PoolKey, password: Any
    ) -> tuple[IPooledConnection, Deferred[IPooledConnection]]:
        """
        A fake backend of C{server}; the test fires its login.
        """
        backend = FakePooledConnection(key, 2000 + len(self.connects), server)
        d: Deferred[IPooledConnection] = Deferred()
        self.connects.append((backend, d))
        return backend, d

    def login(self, hotStandby: str | None) -> FakePooledConnection:
        """
        Complete the latest connect, the server reporting C{in_hot_standby}.
        """
        backend, d = self.connects[-1]
        if hotStandby is not None:
            backend.parameters["in_hot_standby"] = hotStandby
        d.callback(backend)
        return backend

    def test_roleFoundAtLogin(self) -> None:
        """
        A read-only client's first backend goes to the current server,
        whose role is not known yet; its login says primary, so the
        backend is closed and the next goes to the other server, which
        says standby: the client gets that one.
        """
        d = self.pools.acquire(("app_ro", "u"), None)
        self.assertEqual(self.connects[-1][0].server.name, "a")
        first = self.login("off")
        self.assertTrue(first.closed)
        self.assertEqual(self.pools.servers.health["a"].role, ROLE_PRIMARY)
        self.assertEqual(self.connects[-1][0].server.name, "b")
        second = self.login("on")
        self.assertIs(self.successResultOf(d), second)
        self.assertEqual(self.pools.servers.health["b"].role, ROLE_STANDBY)

    def test_roleQueriedBeforePostgreSQL14(self) -> None:
        """
        A server older than 14 reports no in_hot_standby: one
        C{pg_is_in_recovery()} tells the role before the backend is lent.
        """
        d = self.pools.acquire(("app_ro", "u"), None)
        backend, login = self.connects[-1]
        backend.parameters["server_version"] = "13.9"
        queries: list[tuple[str, Deferred[list[tuple[bytes | None, ...]]]]] = []

        def queryRows(sql: str) -> Deferred[list[tuple[bytes | None, ...]]]:
            answer: Deferred[list[tuple[bytes | None, ...]]] = Deferred()
            queries.append((sql, answer))
            return answer

        backend.queryRows = queryRows  # type: ignore[attr-defined]
        login.callback(backend)
        self.assertNoResult(d)
        self.assertEqual([sql for sql, _ in queries], ["SELECT pg_is_in_recovery()"])
        queries[0][1].callback([(b"t",)])
        self.assertIs(self.successResultOf(d), backend)
        self.assertEqual(self.pools.servers.health["a"].role, ROLE_STANDBY)

    def test_readWriteStaysOnPrimary(self) -> None:
        """
        A read-write client goes to the known primary.
        """
        self.pools.servers.observeRole("a", False)
        self.pools.servers.observeRole("b", True)
        d = self.pools.acquire(("app", "u"), None)
        self.assertEqual(self.connects[-1][0].server.name, "a")
        backend = self.login("off")
        self.assertIs(self.successResultOf(d), backend)

    def test_laggingStandbyLeftAndTakenBack(self) -> None:
        """
        A standby that falls behind loses its idle backends of a
        prefer-standby pool, whose next backend goes to the primary; once
        it catches up, the primary's idle backends of that pool are closed
        and new ones go to the standby again.
        """
        servers = self.pools.servers
        servers.observeRole("a", False)
        servers.observeRole("b", True)
        self.pools.config = Configuration(
            main=MainSettings(maxConnections=20, maxLagInBytes=100),
            servers=(A, B),
            limits=self.pools.config.limits,
            users=self.pools.config.users,
        )
        d = self.pools.acquire(("app_ro", "u"), None)
        onStandby = self.login("on")
        self.assertEqual(onStandby.server.name, "b")
        self.pools.release(self.successResultOf(d), reset=False)
        servers.health["b"].lagBytes = 5000
        self.pools.serversChanged()
        self.assertTrue(onStandby.closed)
        d = self.pools.acquire(("app_ro", "u"), None)
        onPrimary = self.login("off")
        self.assertEqual(onPrimary.server.name, "a")
        self.pools.release(self.successResultOf(d), reset=False)
        servers.health["b"].lagBytes = 0
        self.pools.serversChanged()
        self.assertTrue(onPrimary.closed)
        self.pools.acquire(("app_ro", "u"), None)
        self.assertEqual(self.connects[-1][0].server.name, "b")

    def test_promotionFollowed(self) -> None:
        """
        When the current server is found to be a standby and another
        healthy one a primary, that one becomes the current server, and
        read-write backends left on the old one are closed when given back.
        """
        servers = self.pools.servers
        servers.observeRole("a", False)
        servers.observeRole("b", True)
        d = self.pools.acquire(("app", "u"), None)
        old = self.login("off")
        lent = self.successResultOf(d)
        servers.health["a"].healthy = False
        servers.observeRole("b", False)
        self.pools.serversChanged()
        self.assertEqual(servers.current.name, "b")
        self.assertIs(servers.states["a"], ServerState.STANDBY)
        self.pools.release(lent, reset=False)
        self.assertTrue(old.closed)
        self.pools.acquire(("app", "u"), None)
        self.assertEqual(self.connects[-1][0].server.name, "b")

    def test_noServerClientsWait(self) -> None:
        """
        With no server its routing allows, a pool opens nothing: its
        clients wait (and time out as any wait does).
        """
        limits = (DatabaseLimit("app", "all", 10, targetSessionAttrs="standby"),)
        self.pools.config = Configuration(
            main=MainSettings(maxConnections=20, blockingTimeout=5.0),
            servers=(A, B),
            limits=limits,
            users=self.pools.config.users,
        )
        self.pools.servers.observeRole("a", False)
        self.pools.servers.observeRole("b", False)
        d = self.pools.acquire(("app", "u"), None)
        self.assertEqual(self.connects, [])
        self.assertNoResult(d)
        self.clock.advance(5.0)
        self.failureResultOf(d)
        pool = self.pools.pool(("app", "u"))
        self.assertFalse(self.pools.openBackend(pool))
        self.assertEqual(pool.count(BackendState.CONNECTING), 0)

    def test_noServerNothingEvicted(self) -> None:
        """
        With the budget spent and no server its routing allows, a pool's
        waiter closes no idle backend of another pool to make room it could
        not use.
        """
        limits = (
            DatabaseLimit("app", "all", 10),
            DatabaseLimit("ro", "all", 10, targetSessionAttrs="standby", dbname="app"),
        )
        self.pools.config = Configuration(
            main=MainSettings(maxConnections=1, blockingTimeout=5.0),
            servers=(A, B),
            limits=limits,
            users=self.pools.config.users,
        )
        self.pools.servers.observeRole("a", False)
        self.pools.servers.observeRole("b", False)
        d = self.pools.acquire(("app", "u"), None)
        idle = self.login("off")
        self.pools.release(self.successResultOf(d), reset=False)
        waiting = self.pools.acquire(("ro", "u"), None)
        self.assertFalse(idle.closed)
        self.assertEqual(len(self.connects), 1)
        self.assertNoResult(waiting)
        waiting.cancel()
        self.failureResultOf(waiting)
