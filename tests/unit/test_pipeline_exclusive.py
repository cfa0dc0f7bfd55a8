"""
Tests for how the pipelines hold a statement that needs a database free of
other sessions (C{DROP DATABASE}...) until the pool has closed its idle
backends to it, against the fakes of L{pgtwist.testing}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.pipelines.performance import PerformancePipeline
from pgtwist.pipelines.session import SessionPipeline
from pgtwist.testing import FakeBackendPool, FakeFrontendLink
from pgtwist.wire import codec
from pgtwist.wire.messages import (
    Bind,
    CommandComplete,
    Execute,
    Parse,
    Query,
    ReadyForQuery,
    Sync,
)
from tests.unit._pipelinescript import TransactionScript

DROP = "DROP DATABASE scratch"


class SessionExclusiveTests(SynchronousTestCase):
    """
    The session pipeline (and the performance one, which relays as it does).
    """

    pipeline = SessionPipeline

    def setUp(self) -> None:
        self.frontend = FakeFrontendLink()
        self.pool = FakeBackendPool()
        self.pool.closeAtOnce = False
        self.session = self.pipeline().newSession(self.frontend, self.pool, Clock())
        self.session.begin()
        self.backend = self.pool.backend

    def test_heldUntilIdleClosed(self) -> None:
        """
        C{DROP DATABASE} waits, and the client is not read, until the pool
        has closed its idle backends to that database; then it is relayed
        once, with what the client sent meanwhile after it.
        """
        drop = codec.encode(Query(DROP))
        later = codec.encode(Query("SELECT 1"))
        self.session.frontendDataReceived(drop)
        self.session.frontendDataReceived(later)
        self.assertEqual(self.pool.closedIdle, ["scratch"])
        self.assertEqual(bytes(self.backend.written), b"")
        self.assertFalse(self.frontend.reading)
        self.pool.closing[0].callback(None)
        self.assertEqual(bytes(self.backend.written), drop + later)
        self.assertTrue(self.frontend.reading)
        self.assertEqual(self.pool.closedIdle, ["scratch"])
        self.session.backendDataReceived(
            codec.encodeAll([CommandComplete("DROP DATABASE"), ReadyForQuery()])
        )
        self.session.frontendDataReceived(drop)
        self.assertEqual(self.pool.closedIdle, ["scratch", "scratch"])

    def test_extended(self) -> None:
        """
        The statement of a Parse is recognized too.
        """
        batch = codec.encodeAll(
            [Parse("", 'drop database "Scratch"'), Bind("", ""), Execute(""), Sync()]
        )
        self.session.frontendDataReceived(batch)
        self.assertEqual(self.pool.closedIdle, ["Scratch"])
        self.assertEqual(bytes(self.backend.written), b"")
        self.pool.closing[0].callback(None)
        self.assertEqual(bytes(self.backend.written), batch)

    def test_nothingToClose(self) -> None:
        """
        When the pool has nothing to close, the statement goes on at once.
        """
        self.pool.closeAtOnce = True
        drop = codec.encode(Query("CREATE DATABASE copy TEMPLATE scratch"))
        self.session.frontendDataReceived(drop)
        self.assertEqual(self.pool.closedIdle, ["scratch"])
        self.assertEqual(bytes(self.backend.written), drop)

    def test_otherQueries(self) -> None:
        """
        Queries that only mention a database close nothing.
        """
        query = codec.encode(Query("SELECT datname FROM pg_database"))
        self.session.frontendDataReceived(query)
        self.assertEqual(self.pool.closedIdle, [])
        self.assertEqual(bytes(self.backend.written), query)

    def test_clientLeavesWhileHeld(self) -> None:
        """
        A client gone while its statement waits: nothing is relayed, and
        its backend goes back as it was (nothing ran on it).
        """
        self.session.frontendDataReceived(codec.encode(Query(DROP)))
        self.session.frontendLost(Failure(ConnectionError()))
        self.pool.closing[0].callback(None)
        self.assertEqual(bytes(self.backend.written), b"")
        self.assertEqual(self.pool.released, [self.backend])
        self.assertEqual(self.pool.abandoned, [])


class PerformanceExclusiveTests(SessionExclusiveTests):
    """
    The performance pipeline.
    """

    pipeline = PerformancePipeline  # type: ignore[assignment]


class TransactionExclusiveTests(SynchronousTestCase):
    """
    The transaction pipeline.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)
        self.pool = self.script.pool
        self.pool.closeAtOnce = False
        self.session = self.script.session
        self.backend = self.pool.backend
        self.before = len(self.backend.written)

    def sent(self) -> bytes:
        """
        What the backend was sent since the login.
        """
        return bytes(self.backend.written[self.before :])

    def test_heldUntilIdleClosed(self) -> None:
        """
        C{DROP DATABASE} waits until the pool has closed its idle backends
        to that database, then is relayed once; the client is not read
        meanwhile.
        """
        drop = codec.encode(Query(DROP))
        self.session.frontendDataReceived(drop)
        self.assertEqual(self.pool.closedIdle, ["scratch"])
        self.assertNotIn(drop, self.sent())
        self.assertFalse(self.script.frontend.reading)
        self.pool.closing[0].callback(None)
        self.assertEqual(self.sent().count(drop), 1)
        self.assertTrue(self.script.frontend.reading)
        self.assertEqual(self.pool.closedIdle, ["scratch"])

    def test_extended(self) -> None:
        """
        A Parse of such a statement waits the same way, and the batch goes
        on after it.
        """
        parse = Parse("", "ALTER DATABASE scratch RENAME TO kept")
        self.session.frontendDataReceived(
            codec.encodeAll([parse, Bind("", ""), Execute(""), Sync()])
        )
        self.assertEqual(self.pool.closedIdle, ["scratch"])
        self.assertNotIn(b"RENAME", self.sent())
        self.pool.closing[0].callback(None)
        self.assertEqual(self.sent().count(b"ALTER DATABASE scratch RENAME TO kept"), 1)
        self.assertIn(codec.encode(Sync()), self.sent())

    def test_otherQueries(self) -> None:
        """
        Queries that only mention a database close nothing.
        """
        self.session.frontendDataReceived(codec.encode(Query("SELECT 'database'")))
        self.assertEqual(self.pool.closedIdle, [])
        self.assertIn(b"SELECT 'database'", self.sent())
