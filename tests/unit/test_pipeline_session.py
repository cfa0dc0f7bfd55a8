"""
Tests for L{pgtwist.pipelines.session}: pure frame-in/frame-out, against the
fakes of L{pgtwist.testing}.
"""

from __future__ import annotations

import gc
import sys
import weakref

from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.pipelines.performance import PerformancePipeline
from pgtwist.pipelines.session import SessionPipeline, SessionPipelineSession
from pgtwist.testing import FakeBackendPool, FakeFrontendLink
from pgtwist.wire import codec, errors
from pgtwist.wire.messages import (
    Bind,
    CommandComplete,
    ErrorResponse,
    Execute,
    ParameterStatus,
    Parse,
    Query,
    ReadyForQuery,
    Sync,
    Terminate,
)


class SessionPipelineTests(SynchronousTestCase):
    """
    The session pipeline relays bytes and decides whether a backend is reusable.
    """

    def setUp(self) -> None:
        self.frontend = FakeFrontendLink()
        self.pool = FakeBackendPool()
        self.session = SessionPipeline().newSession(self.frontend, self.pool, Clock())
        self.session.begin()
        self.backend = self.pool.backend

    def test_loginUsesBackendPid(self) -> None:
        """
        The client's key carries its backend's real pid, and cancels route there.
        """
        self.assertEqual(self.frontend.loginProcessId, self.backend.processId)
        self.assertIs(self.frontend.cancelTarget, self.backend)
        self.assertEqual(self.pool.acquired[0][0], ("db", "user"))

    def test_relayBothWays(self) -> None:
        """
        Bytes go through untouched in both directions.
        """
        query = codec.encode(Query("SELECT 1"))
        self.session.frontendDataReceived(query)
        self.assertEqual(bytes(self.backend.written), query)
        reply = codec.encodeAll([CommandComplete("SELECT 1"), ReadyForQuery()])
        self.session.backendDataReceived(reply)
        self.assertEqual(bytes(self.frontend.written), reply)

    def test_terminateNotForwarded(self) -> None:
        """
        Terminate ends the session, the backend goes back clean and the
        client connection is closed without an error, as PostgreSQL does.
        """
        query = codec.encode(Query("SELECT 1"))
        self.session.frontendDataReceived(query)
        self.session.backendDataReceived(codec.encode(ReadyForQuery()))
        self.session.frontendDataReceived(codec.encode(Terminate()))
        self.assertEqual(bytes(self.backend.written), query)
        self.assertEqual(self.pool.released, [self.backend])
        self.assertTrue(self.backend.clean)
        self.assertTrue(self.frontend.failed)
        self.assertIsNone(self.frontend.failedWith)

    def test_queryAndTerminate(self) -> None:
        """
        A query and Terminate in one write: the query is relayed and its
        answer too, as PostgreSQL answers before it closes; then the
        backend goes back clean and the client is closed without an error.
        What the client sends after Terminate is not relayed.
        """
        query = codec.encode(Query("SELECT 1"))
        self.session.frontendDataReceived(query + codec.encode(Terminate()))
        self.assertEqual(bytes(self.backend.written), query)
        self.assertFalse(self.frontend.failed)
        self.assertFalse(self.frontend.reading)
        self.session.frontendDataReceived(codec.encode(Query("SELECT 2")))
        reply = codec.encodeAll([CommandComplete("SELECT 1"), ReadyForQuery()])
        self.session.backendDataReceived(reply[:3])
        self.assertFalse(self.frontend.failed)
        self.session.backendDataReceived(reply[3:])
        self.assertEqual(bytes(self.frontend.written), reply)
        self.assertEqual(bytes(self.backend.written), query)
        self.assertEqual(self.pool.released, [self.backend])
        self.assertTrue(self.backend.clean)
        self.assertTrue(self.frontend.failed)
        self.assertIsNone(self.frontend.failedWith)

    def test_disconnectMidQuery(self) -> None:
        """
        A client gone before its ReadyForQuery leaves an unclean backend,
        which the pool cancels and closes rather than reuses.
        """
        self.session.frontendDataReceived(codec.encode(Query("SELECT pg_sleep(10)")))
        self.session.frontendLost(Failure(ConnectionError()))
        self.assertEqual(self.pool.abandoned, [self.backend])
        self.assertEqual(self.pool.released, [])
        self.assertFalse(self.backend.clean)

    def test_disconnectWithUnsyncedExtended(self) -> None:
        """
        Parse/Bind/Execute without Sync leave the backend unclean.
        """
        self.session.frontendDataReceived(
            codec.encodeAll([Parse("", "SELECT 1"), Bind("", ""), Execute("")])
        )
        self.session.frontendLost(Failure(ConnectionError()))
        self.assertFalse(self.backend.clean)
        self.assertEqual(self.pool.abandoned, [self.backend])

    def test_pipelinedSyncs(self) -> None:
        """
        Each Sync needs its ReadyForQuery before the backend is clean.
        """
        self.session.frontendDataReceived(
            codec.encodeAll([Parse("", "SELECT 1"), Sync(), Bind("", ""), Execute(""), Sync()])
        )
        self.session.backendDataReceived(codec.encode(ReadyForQuery()))
        self.session.frontendLost(Failure(ConnectionError()))
        self.assertFalse(self.backend.clean)

    def test_transactionStatusTracked(self) -> None:
        """
        ReadyForQuery's status and ParameterStatus values reach the backend link.
        """
        self.session.frontendDataReceived(codec.encode(Query("BEGIN; SET TimeZone = 'UTC'")))
        self.session.backendDataReceived(
            codec.encodeAll([ParameterStatus("TimeZone", "UTC"), ReadyForQuery(b"T")])
        )
        self.assertEqual(self.backend.transactionStatus, b"T")
        self.assertEqual(self.backend.parameters["TimeZone"], "UTC")

    def test_backendUndecodable(self) -> None:
        """
        A ParameterStatus that does not decode is the server's fault: the
        backend is discarded and the client gets 08006, not 08P01.
        """
        self.session.backendDataReceived(codec.frame(b"S", b"TimeZone"))
        self.assertTrue(self.frontend.failed)
        assert self.frontend.failedWith is not None
        self.assertEqual(
            (self.frontend.failedWith.code, self.frontend.failedWith.message),
            ("08006", "server sent a malformed message: invalid string in message"),
        )

    def test_backendLostTellsClient(self) -> None:
        """
        A backend that dies gets the client a FATAL ErrorResponse.
        """
        self.session.backendLost(Failure(ConnectionError()))
        self.assertTrue(self.frontend.failed)
        assert self.frontend.failedWith is not None
        self.assertEqual(self.frontend.failedWith.severity, "FATAL")
        self.assertEqual(self.frontend.failedWith.code, "08006")

    def test_backendLostMidMessage(self) -> None:
        """
        A backend that dies after part of a long DataRow was relayed closes
        the client without an ErrorResponse, which the client would read as
        the rest of the row.
        """
        row = codec.frame(b"D", b"\x00\x01\x00\x00\x10\x00" + b"x" * 4096)
        self.session.frontendDataReceived(codec.encode(Query("SELECT repeat('x', 4096)")))
        self.session.backendDataReceived(row[:100])
        self.session.backendLost(Failure(ConnectionError()))
        self.assertTrue(self.frontend.failed)
        self.assertIsNone(self.frontend.failedWith)

    def test_backendLostBetweenMessages(self) -> None:
        """
        A backend that dies after whole messages still gets the client the
        FATAL ErrorResponse.
        """
        row = codec.frame(b"D", b"\x00\x01\x00\x00\x00\x01x")
        self.session.frontendDataReceived(codec.encode(Query("SELECT 'x'")))
        self.session.backendDataReceived(row)
        self.session.backendLost(Failure(ConnectionError()))
        assert self.frontend.failedWith is not None
        self.assertEqual(self.frontend.failedWith.code, "08006")

    def test_backendFatalRelayedOnce(self) -> None:
        """
        When PostgreSQL's own FATAL was relayed, the client is just closed.
        """
        self.session.backendDataReceived(
            codec.encode(
                errors.fatal("57P01", "terminating connection due to administrator command")
            )
        )
        self.session.backendLost(Failure(ConnectionError()))
        self.assertTrue(self.frontend.failed)
        self.assertIsNone(self.frontend.failedWith)

    def test_protocolViolationDiscards(self) -> None:
        """
        A malformed client stream fails the client and discards the backend.
        """
        self.session.frontendDataReceived(b"Q\x00\x00\x00\x01")
        self.assertTrue(self.frontend.failed)
        self.assertEqual(len(self.pool.discarded), 1)

    def test_acquireFailure(self) -> None:
        """
        A pool failure refuses the login.
        """
        frontend = FakeFrontendLink()
        pool = FakeBackendPool(immediate=False)
        session = SessionPipelineSession(frontend, pool, Clock())
        session.begin()
        self.assertFalse(frontend.reading)
        pool.pending[0].errback(RuntimeError("no"))
        self.assertIsNotNone(frontend.failedFromPool)

    def test_clientGoneWhileWaiting(self) -> None:
        """
        A client that leaves while waiting cancels its acquire.
        """
        frontend = FakeFrontendLink()
        pool = FakeBackendPool(immediate=False)
        session = SessionPipelineSession(frontend, pool, Clock())
        session.begin()
        session.frontendLost(Failure(ConnectionError()))
        self.assertEqual(pool.cancelled, pool.pending)
        self.assertFalse(frontend.failed)

    def test_freedWithItsClient(self) -> None:
        """
        Once its client is gone, a session (session and performance
        pipelines) is freed by reference counting (on CPython): its walkers,
        which call it back, no longer hold it in a cycle for the cyclic
        collector.
        """
        for pipeline in (SessionPipeline(), PerformancePipeline()):
            frontend = FakeFrontendLink()
            pool = FakeBackendPool()
            session = pipeline.newSession(frontend, pool, Clock())
            session.begin()
            session.frontendDataReceived(codec.encode(Query("SELECT 1")))
            session.backendDataReceived(codec.encode(ReadyForQuery()))
            session.frontendLost(Failure(ConnectionError()))
            gone = weakref.ref(session)
            gc.disable()
            try:
                del session, frontend, pool
                if sys.implementation.name != "cpython":
                    # No reference counting (PyPy): only its collector frees
                    # anything, and must free the session.
                    gc.collect()
                self.assertIsNone(gone(), pipeline.name)
            finally:
                gc.enable()

    def test_errorResponseType(self) -> None:
        """
        The fatal error built for a lost backend is an ErrorResponse.
        """
        self.session.backendLost(Failure(ConnectionError()))
        self.assertIsInstance(self.frontend.failedWith, ErrorResponse)


class SessionStatisticsTests(SynchronousTestCase):
    """
    The session pipeline feeds the pool's statistics.
    """

    def test_queriesTransactionsBytes(self) -> None:
        """
        A query answered by ReadyForQuery 'I' counts as a query and a
        transaction, with its duration; bytes are counted both ways.
        """
        clock = Clock()
        frontend = FakeFrontendLink()
        pool = FakeBackendPool()
        session = SessionPipeline().newSession(frontend, pool, clock)
        session.begin()
        query = codec.encode(Query("BEGIN"))
        session.frontendDataReceived(query)
        clock.advance(0.002)
        session.backendDataReceived(codec.encode(ReadyForQuery(b"T")))
        commit = codec.encode(Query("COMMIT"))
        session.frontendDataReceived(commit)
        clock.advance(0.001)
        reply = codec.encodeAll([CommandComplete("COMMIT"), ReadyForQuery(b"I")])
        session.backendDataReceived(reply)
        stats = pool.stats
        self.assertEqual((stats.queryCount, stats.xactCount), (2, 1))
        self.assertEqual(stats.xactTime, 3000)
        self.assertEqual(stats.queryTime, 3000)
        self.assertEqual(stats.bytesReceived, len(query) + len(commit))
        self.assertEqual(stats.bytesSent, 6 + len(reply))
        self.assertEqual(stats.xactHistogram.count, 1)
