"""
Tests for L{pgtwist.testing.fakes}: every fake provides, completely, the
interfaces it declares (so that code tested against a fake runs against
the real thing), and behaves as docs/plugins.rst describes.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementedBy
from zope.interface.verify import verifyObject

from pgtwist.config.model import ServerSettings
from pgtwist.interfaces import (
    IBackendLink,
    IBackendPool,
    IFrontendLink,
    IPooledConnection,
    IPoolStats,
)
from pgtwist.net.backend import BackendProtocol
from pgtwist.pool.stats import PoolStats
from pgtwist.testing import (
    FakeBackendLink,
    FakeBackendPool,
    FakeFrontendLink,
    FakePooledConnection,
)
from pgtwist.wire import errors


class VerifyObjectTests(SynchronousTestCase):
    """
    C{verifyObject} passes for every interface each fake (and the real
    object it stands for) declares.
    """

    def assertProvidesAll(self, obj: object) -> None:
        """
        C{obj} provides every interface its class declares, and at least one.
        """
        declared = list(implementedBy(type(obj)))
        self.assertNotEqual(declared, [])
        for interface in declared:
            self.assertTrue(verifyObject(interface, obj))

    def test_fakeFrontendLink(self) -> None:
        """
        L{FakeFrontendLink} is an L{IFrontendLink}.
        """
        link = FakeFrontendLink()
        self.assertTrue(IFrontendLink.providedBy(link))
        self.assertProvidesAll(link)

    def test_fakeBackendLink(self) -> None:
        """
        L{FakeBackendLink} is an L{IBackendLink}.
        """
        link = FakeBackendLink()
        self.assertTrue(IBackendLink.providedBy(link))
        self.assertProvidesAll(link)

    def test_fakeBackendPool(self) -> None:
        """
        L{FakeBackendPool} is an L{IBackendPool}, and its statistics an
        L{IPoolStats}.
        """
        pool = FakeBackendPool()
        self.assertTrue(IBackendPool.providedBy(pool))
        self.assertProvidesAll(pool)
        verifyObject(IPoolStats, pool.statsFor(("db", "user")))

    def test_fakePooledConnection(self) -> None:
        """
        L{FakePooledConnection} is an L{IPooledConnection} (so an
        L{IBackendLink} too).
        """
        backend = FakePooledConnection()
        self.assertTrue(IPooledConnection.providedBy(backend))
        self.assertProvidesAll(backend)
        verifyObject(IBackendLink, backend)

    def test_realBackend(self) -> None:
        """
        L{BackendProtocol}, which L{FakePooledConnection} stands for, provides
        the same interface.
        """
        server = ServerSettings("primary", "127.0.0.1", 5432, True)
        backend = BackendProtocol(("db", "user"), server, None, [], Clock())
        self.assertTrue(verifyObject(IPooledConnection, backend))

    def test_poolStats(self) -> None:
        """
        L{PoolStats} is the L{IPoolStats} pipelines add to.
        """
        self.assertProvidesAll(PoolStats())


class FakeBackendPoolTests(SynchronousTestCase):
    """
    L{FakeBackendPool}'s statistics and login method.
    """

    def test_oneStatsForAllKeys(self) -> None:
        """
        C{statsFor} answers the one C{stats} object whatever the key.
        """
        pool = FakeBackendPool()
        self.assertIs(pool.statsFor(("a", "b")), pool.stats)
        self.assertIs(pool.statsFor(("c", "d")), pool.stats)

    def test_authRequestCode(self) -> None:
        """
        C{authRequestCode} answers C{authCode}, C{None} until set.
        """
        pool = FakeBackendPool()
        self.assertIsNone(pool.authRequestCode(("db", "user")))
        pool.authCode = 10
        self.assertEqual(pool.authRequestCode(("db", "user")), 10)


class FakePooledConnectionTests(SynchronousTestCase):
    """
    L{FakePooledConnection} lets the test answer queries and lose the
    connection.
    """

    def test_queriesAnsweredByTest(self) -> None:
        """
        Each query waits for the test to fire it.
        """
        backend = FakePooledConnection()
        d = backend.simpleQuery("SELECT 1")
        self.assertNoResult(d)
        self.assertEqual(backend.queries[0][0], "SELECT 1")
        error = errors.error("42601", "syntax error")
        backend.queries[0][1].callback(error)
        self.assertIs(self.successResultOf(d), error)

    def test_resetSession(self) -> None:
        """
        A reset runs C{DISCARD ALL} and is counted.
        """
        backend = FakePooledConnection()
        backend.resetSession()
        self.assertEqual(backend.queries[0][0], "DISCARD ALL")
        self.assertEqual(backend.sessionResets, 1)

    def test_close(self) -> None:
        """
        L{FakePooledConnection.close} records the close.
        """
        backend = FakePooledConnection()
        backend.close()
        self.assertTrue(backend.closed)
        self.assertTrue(backend.closing)

    def test_lose(self) -> None:
        """
        Losing the connection fails the queries waiting and tells
        C{lostCallback}, as the real backend does.
        """
        backend = FakePooledConnection()
        lost: list[tuple[IPooledConnection, Failure]] = []
        backend.lostCallback = lambda b, reason: lost.append((b, reason))
        d = backend.simpleQuery("SELECT 1")
        backend.lose()
        self.failureResultOf(d, ConnectionError)
        self.assertFalse(backend.connected)
        self.assertEqual([b for b, _ in lost], [backend])
