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
        self.nextConfiguration = makeConfiguration(maxConnections=3, port=7000, logFormat="json")
        self.assertEqual(self.service.management.reload(), (True, ["port", "log_format"]))
        self.assertIs(self.service.pools.config, self.nextConfiguration)

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
