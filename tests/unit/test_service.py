"""
Tests for L{pgtwist.app.service}: endpoints, plugins, listening and reload.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pgtwist.app.bootstrap import loadPlugins
from pgtwist.app.service import buildService
from pgtwist.config.authquery import DEFAULT_AUTH_QUERY, AuthQuerySettings
from pgtwist.config.model import Configuration, MainSettings, ServerSettings, UserEntry
from pgtwist.interfaces import IAuthMethod, IPipeline
from pgtwist.net.endpoints import listenEndpoints

SERVERS = (ServerSettings("primary", "127.0.0.1", 5432, True),)


class ListenEndpointTests(SynchronousTestCase):
    """
    pgagroal's C{host}/C{port}/C{unix_socket_dir} become strports endpoints.
    """

    def test_allInterfaces(self) -> None:
        """
        C{host = *} listens on every IPv4 and IPv6 address.
        """
        self.assertEqual(
            listenEndpoints(MainSettings(host="*", port=2345))[0],
            "tcp6:2345:interface=\\:\\::backlog=128",
        )

    def test_localhostAndSocket(self) -> None:
        """
        C{localhost} is loopback; the unix socket is C{.s.PGSQL.<port>}.
        """
        self.assertEqual(
            listenEndpoints(MainSettings(host="localhost", port=6432, unixSocketDir="/tmp/")),
            [
                "tcp:6432:interface=127.0.0.1:backlog=128",
                "unix:/tmp/.s.PGSQL.6432:mode=777:lockfile=1",
            ],
        )

    def test_extraListen(self) -> None:
        """
        C{listen} adds endpoints; an IPv6 host is escaped for strports.
        """
        self.assertEqual(
            listenEndpoints(
                MainSettings(host="::1", port=1, listen=("tcp:2:interface=127.0.0.2",))
            ),
            ["tcp6:1:interface=\\:\\:1:backlog=128", "tcp:2:interface=127.0.0.2"],
        )


class PluginTests(SynchronousTestCase):
    """
    The built-in plugins are found and provide their interfaces.
    """

    def test_builtins(self) -> None:
        """
        Every plugin verifies against its interface; names are the expected ones.
        """
        methods, pipelines = loadPlugins()
        self.assertEqual(
            sorted(methods), ["cert", "md5", "password", "reject", "scram-sha-256", "trust"]
        )
        self.assertIn("session", pipelines)
        for method in methods.values():
            verifyObject(IAuthMethod, method)
        for pipeline in pipelines.values():
            verifyObject(IPipeline, pipeline)


class PoolerServiceTests(SynchronousTestCase):
    """
    The root service.
    """

    def makeService(self, reload: object = None) -> object:
        """
        A service over a MemoryReactor.
        """
        config = Configuration(main=MainSettings(host="127.0.0.1", port=0), servers=SERVERS)
        return buildService(config, MemoryReactorClock(), reloadConfiguration=reload)  # type: ignore[arg-type]

    def test_startListens(self) -> None:
        """
        Starting listens on the configured endpoint.
        """
        reactor = MemoryReactorClock()
        config = Configuration(main=MainSettings(host="127.0.0.1", port=0), servers=SERVERS)
        service = buildService(config, reactor)
        service.startService()
        self.assertEqual(len(reactor.tcpServers), 1)
        self.assertEqual(reactor.tcpServers[0][3], "127.0.0.1")
        self.successResultOf(service.whenListening())
        self.successResultOf(service.stopService())

    def test_reloadKeepsOldOnError(self) -> None:
        """
        A failing reload keeps the running configuration.
        """

        def broken() -> Configuration:
            raise ValueError("pgtwist.conf:3: nope")

        service = self.makeService(broken)
        old = service.config  # type: ignore[attr-defined]
        self.assertEqual(service.reload(), (False, []))  # type: ignore[attr-defined]
        self.assertIs(service.config, old)  # type: ignore[attr-defined]

    def test_reloadApplies(self) -> None:
        """
        A valid reload reaches the pools and the frontend factory.
        """
        new = Configuration(main=MainSettings(maxConnections=7, port=9999), servers=SERVERS)
        service = self.makeService(lambda: new)
        self.assertEqual(service.reload(), (True, ["host", "port"]))  # type: ignore[attr-defined]
        self.assertIs(service.pools.config, service.config)  # type: ignore[attr-defined]
        self.assertIs(service.factory.config, service.config)  # type: ignore[attr-defined]
        self.assertEqual(service.config.main.maxConnections, 7)  # type: ignore[attr-defined]

    def test_restartKeysReportedUntilRestart(self) -> None:
        """
        A key only a restart applies keeps its running value in the
        configuration every reader sees, and every reload reports it while
        the file's value differs (not only the first); once the file
        agrees with what runs again, nothing is pending.
        """
        running = Configuration(main=MainSettings(host="127.0.0.1", port=0), servers=SERVERS)
        changed = Configuration(
            main=MainSettings(host="127.0.0.1", port=7000, logLevel="debug"), servers=SERVERS
        )
        files = [changed, changed, running]
        service: Any = self.makeService(lambda: files.pop(0))
        for _ in range(2):
            self.assertEqual(service.reload(), (True, ["port", "log_level"]))
            self.assertEqual(service.config.main.port, 0)
            self.assertEqual(service.config.main.logLevel, "info")
            self.assertEqual(
                service.management.restartPending, {"port": 7000, "log_level": "debug"}
            )
        self.assertEqual(service.reload(), (True, []))
        self.assertEqual(service.management.restartPending, {})

    def test_authQueryWired(self) -> None:
        """
        The frontend factory looks users up through the service's auth_query
        connections; a reload retires them (they were made for the old
        settings: an idle one closes at once), and stopping closes them.
        """
        reactor = MemoryReactorClock()
        config = Configuration(
            main=MainSettings(
                host="127.0.0.1", port=0, authQuery=DEFAULT_AUTH_QUERY, authQueryCacheTtl=60.0
            ),
            servers=SERVERS,
            superuser=UserEntry("postgres", "secret"),
        )
        service = buildService(config, reactor, reloadConfiguration=lambda: config)
        lookup = service.factory.userLookup
        assert lookup is not None
        settings = AuthQuerySettings(DEFAULT_AUTH_QUERY, "postgres", "db")
        lookup.lookup(config, settings, "alice").addErrback(lambda _: None)
        self.assertEqual(len(service.authQueries), 1)
        self.assertEqual(service.reload(), (True, []))
        self.assertEqual(len(service.authQueries), 0)
        lookup.lookup(config, settings, "bob").addErrback(lambda _: None)
        service.startService()
        self.successResultOf(service.stopService())
        self.assertEqual(len(service.authQueries), 0)

    def test_refusedCredentialForgetsCachedVerifier(self) -> None:
        """
        When PostgreSQL refuses a pass-through login (the pool set calls
        C{credentialRefused}), auth_query's cached answers for that user are
        dropped, so that the next login asks PostgreSQL again.
        """
        reactor = MemoryReactorClock()
        config = Configuration(
            main=MainSettings(host="127.0.0.1", port=0),
            servers=SERVERS,
        )
        service = buildService(config, reactor, reloadConfiguration=lambda: config)
        forgotten: list[str] = []
        lookup = service.factory.userLookup
        assert lookup is not None
        lookup.forget = forgotten.append  # type: ignore[method-assign]
        hook = service.pools.credentialRefused
        assert hook is not None
        hook(("db", "alice"))
        self.assertEqual(forgotten, ["alice"])


class ManagementTests(SynchronousTestCase):
    """
    The management API over a service that is not listening.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        config = Configuration(
            main=MainSettings(host="127.0.0.1", port=0),
            servers=SERVERS + (ServerSettings("standby", "127.0.0.2", 5432),),
        )
        self.service = buildService(config, self.reactor)
        self.management = self.service.management

    def test_disableEnable(self) -> None:
        """
        Disabling one database or all, and enabling back.
        """
        self.management.disable("db")
        self.assertFalse(self.management.isEnabled("db"))
        self.assertTrue(self.management.isEnabled("other"))
        self.management.disable("*")
        self.management.enable("other")
        self.assertFalse(self.management.isEnabled("db"))
        self.assertTrue(self.management.isEnabled("other"))
        self.management.enable("*")
        self.assertTrue(self.management.isEnabled("db"))

    def test_switchTo(self) -> None:
        """
        switch-to makes another server the primary and marks the old one failed.
        """
        self.assertTrue(self.management.switchTo("standby"))
        status = self.management.status()
        self.assertEqual(
            [(s["name"], s["state"]) for s in status["servers"]],
            [("primary", "failed"), ("standby", "primary")],
        )
        self.assertFalse(self.management.switchTo("nonexistent"))
        self.assertTrue(self.management.clearServer("primary"))
        self.assertEqual(self.management.status()["servers"][0]["state"], "standby")

    def test_gracefulShutdownAndCancel(self) -> None:
        """
        A graceful shutdown stops listening and exits once no client is left;
        cancelling it listens again.
        """
        stopped: list[bool] = []
        self.patch(self.reactor, "stop", lambda: stopped.append(True))
        client = object()
        self.service.factory.clients.add(client)  # type: ignore[arg-type]
        self.service.startService()
        self.assertEqual(len(self.reactor.tcpServers), 1)
        self.management.shutdown("gracefully")
        self.assertEqual(self.management.status()["status"], "gracefully")
        self.management.shutdown("cancel")
        self.assertEqual(len(self.reactor.tcpServers), 2)
        self.management.shutdown("gracefully")
        self.reactor.advance(0.1)
        self.assertEqual(stopped, [])
        self.service.factory.clients.discard(client)  # type: ignore[arg-type]
        self.reactor.advance(0.1)
        self.assertEqual(stopped, [True])

    def test_badModes(self) -> None:
        """
        Unknown flush and shutdown modes are refused.
        """
        self.assertRaises(ValueError, self.management.flush, "some")
        self.assertRaises(ValueError, self.management.shutdown, "later")

    def test_status(self) -> None:
        """
        Status carries pgagroal-cli's figures.
        """
        status = self.management.status()
        self.assertEqual(status["status"], "running")
        self.assertEqual(status["max_connections"], 100)
        self.assertEqual(status["total_connections"], 0)
