"""
Tests for L{pgtwist.admin.management}: the management API called directly,
over a real service on a C{MemoryReactorClock} with scripted backends (time
moves only when a test advances it).
"""

from __future__ import annotations

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from pgtwist.admin.management import POLL_INTERVAL, Pooler
from pgtwist.config.errors import ConfigError
from pgtwist.pool.servers import ServerState
from pgtwist.pool.state import BackendState
from tests.unit._console import ConsoleTestCase, makeConfiguration


class ManagementConfigureTests(ConsoleTestCase):
    """
    L{Management.configure}: one main-section key at runtime.
    """

    def test_applied(self) -> None:
        """
        A valid value reaches the service, its pools and its clients' factory
        at once, and is logged.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.service.management.configure("Idle_Timeout", "2m")
        config = self.service.config
        self.assertEqual(config.main.idleTimeout, 120.0)
        self.assertIs(self.service.pools.config, config)
        self.assertIs(self.service.factory.config, config)
        self.assertEqual([(e["key"], e["value"]) for e in events], [("idle_timeout", "2m")])

    def test_refused(self) -> None:
        """
        An unknown key, a key only a restart changes and a bad value raise
        L{ConfigError} naming the key; nothing changes.
        """
        running = self.service.config
        for key, value in (("nothing", "1"), ("port", "7000"), ("max_connections", "0")):
            error = self.assertRaises(ConfigError, self.service.management.configure, key, value)
            self.assertEqual(error.key, key)
        self.assertIs(self.service.config, running)
        self.assertIs(self.service.pools.config, running)

    def test_pooler(self) -> None:
        """
        The service is the L{Pooler} the API drives.
        """
        pooler: Pooler = self.service
        self.assertIs(pooler.management.service, pooler)


class ManagementReloadTests(ConsoleTestCase):
    """
    L{Management.reload}.
    """

    def test_applied(self) -> None:
        """
        A valid configuration is applied; the changed restart-only keys are
        named.
        """
        running = self.service.config
        self.nextConfiguration = makeConfiguration(maxConnections=3, port=7000, logFormat="json")
        self.assertEqual(self.service.management.reload(), (True, ["port", "log_format"]))
        self.assertIs(self.service.pools.config, self.service.config)
        self.assertEqual(self.service.config.main.maxConnections, 3)
        self.assertEqual(self.service.config.main.port, running.main.port)

    def test_invalidWhole(self) -> None:
        """
        A configuration whose files each read fine but whose whole is
        refused (performance pipeline with failover) is logged and not
        applied.
        """
        running = self.service.config
        self.nextConfiguration = makeConfiguration(pipeline="performance", failover=True)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.assertEqual(self.service.management.reload(), (False, []))
        self.assertIs(self.service.config, running)
        self.assertIs(self.service.factory.config, running)
        self.assertEqual(
            [e["error"] for e in events if "error" in e],
            ["pgtwist.conf: the performance pipeline does not support failover"],
        )


class ManagementPauseTests(ConsoleTestCase):
    """
    L{Management.pause}, L{Management.paused} and L{Management.resume}.
    """

    def test_pauseWaitsForBackendsInUse(self) -> None:
        """
        PAUSE fires once the backend in use is given back (checked every
        C{POLL_INTERVAL}), and closes it.
        """
        backend = self.activeBackend()
        management = self.service.management
        done = management.pause(None)
        self.assertEqual(management.paused(), (True, frozenset()))
        self.reactor.advance(POLL_INTERVAL * 10)
        self.assertNoResult(done)
        self.service.pools.release(backend, reset=False)
        self.reactor.advance(POLL_INTERVAL)
        self.successResultOf(done)
        self.assertTrue(backend.closed)
        management.resume(None)
        self.assertEqual(management.paused(), (False, frozenset()))

    def test_pauseOneDatabase(self) -> None:
        """
        Pausing one database lists it and fires at once when nothing is in use.
        """
        management = self.service.management
        self.successResultOf(management.pause("db"))
        self.assertEqual(management.paused(), (False, frozenset({"db"})))
        management.resume("db")
        self.assertEqual(management.paused(), (False, frozenset()))

    def test_cancelStopsWaiting(self) -> None:
        """
        Cancelling the wait leaves the pause in place and stops polling.
        """
        self.activeBackend()
        done = self.service.management.pause(None)
        done.cancel()
        self.assertTrue(done.called)
        self.assertEqual(self.service.management.paused()[0], True)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class ManagementQueryTests(ConsoleTestCase):
    """
    The read-only queries the console, the metrics and the manhole answer
    from: the pool set's own records and live views, never copies.
    """

    def test_pools(self) -> None:
        """
        L{Management.allPools} is a live view of every pool in the order the
        pool set made them; L{Management.sortedPools} orders them by
        (database, user). Both hand out the pool set's own records.
        """
        management = self.service.management
        everyPool = management.allPools()
        self.assertEqual(len(everyPool), 0)
        self.activeBackend(("zdb", "bob"))
        self.activeBackend(("db", "alice"))
        self.assertEqual([p.key for p in everyPool], [("zdb", "bob"), ("db", "alice")])
        self.assertEqual(
            [p.key for p in management.sortedPools()], [("db", "alice"), ("zdb", "bob")]
        )
        pool = self.service.pools.pool(("db", "alice"))
        self.assertIn(pool, everyPool)
        self.assertIs(management.sortedPools()[0], pool)
        self.assertEqual(pool.count(BackendState.ACTIVE), 1)

    def test_totalBackends(self) -> None:
        """
        L{Management.totalBackends} counts the backends open or opening in
        every pool.
        """
        management = self.service.management
        self.assertEqual(management.totalBackends(), 0)
        self.activeBackend(("db", "alice"))
        self.service.pools.acquire(("db", "bob"), None)
        self.assertEqual(management.totalBackends(), 2)

    def test_isPaused(self) -> None:
        """
        L{Management.isPaused} says whether a database, or everything
        (C{None}), is paused.
        """
        management = self.service.management
        self.successResultOf(management.pause("db"))
        self.assertTrue(management.isPaused("db"))
        self.assertFalse(management.isPaused("other"))
        self.assertFalse(management.isPaused(None))
        self.successResultOf(management.pause(None))
        self.assertTrue(management.isPaused("other"))
        self.assertTrue(management.isPaused(None))

    def test_clients(self) -> None:
        """
        L{Management.clients} is a live view of the pool clients, without
        the console sessions; L{Management.consoles} is the console sessions.
        """
        management = self.service.management
        clients = management.clients()
        client = self.client()
        self.assertEqual(set(clients), {client})
        self.assertNotIn(client, management.consoles())
        self.assertIs(management.consoles(), self.service.factory.consoles)

    def test_pipelineName(self) -> None:
        """
        L{Management.pipelineName} names the pipeline a new client of a pool
        gets, as configured.
        """
        management = self.service.management
        management.configure("pipeline", "transaction")
        self.assertEqual(management.pipelineName(("db", "alice")), "transaction")
        management.configure("pipeline", "session")
        self.assertEqual(management.pipelineName(("", "")), "session")

    def test_servers(self) -> None:
        """
        L{Management.currentServer} is the primary; L{Management.serverStates}
        lists every server with its state, in the configuration's order.
        """
        management = self.service.management
        primary, standby = self.service.config.servers
        self.assertIs(management.currentServer(), primary)
        self.assertEqual(
            management.serverStates(),
            [(primary, ServerState.PRIMARY), (standby, ServerState.STANDBY)],
        )
        management.switchTo("standby")
        self.assertIs(management.currentServer(), standby)
        self.assertEqual(
            management.serverStates(),
            [(primary, ServerState.FAILED), (standby, ServerState.PRIMARY)],
        )

    def test_nextId(self) -> None:
        """
        L{Management.nextId} draws from the clients' id sequence: a client
        opened after it gets a larger id.
        """
        management = self.service.management
        first = management.nextId()
        second = management.nextId()
        self.assertGreater(second, first)
        self.assertGreater(self.client().id, second)
