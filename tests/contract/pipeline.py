"""
The contract every L{pgtwist.interfaces.IPipeline} plugin must meet, as a
mixin (txacme's store-contract pattern). A third-party pipeline gets the same
checks by subclassing L{PipelineContractMixin} with its own C{makePipeline}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from pgtwist.config.model import Configuration, MainSettings, ServerSettings
from pgtwist.interfaces import IPipeline, IPipelineSession
from pgtwist.testing import FakeBackendPool, FakeFrontendLink
from pgtwist.wire import codec
from pgtwist.wire.messages import (
    Bind,
    CommandComplete,
    Execute,
    Parse,
    Query,
    ReadyForQuery,
    Terminate,
)


class PipelineContractMixin:
    """
    Mix into a C{SynchronousTestCase} and define L{makePipeline}.
    """

    def makePipeline(self) -> IPipeline:
        """
        The pipeline under test.
        """
        raise NotImplementedError()

    def openSession(self) -> tuple[IPipelineSession, FakeFrontendLink, FakeBackendPool]:
        """
        A begun session over the fakes, with one query answered.
        """
        frontend = FakeFrontendLink()
        pool = FakeBackendPool()
        session = self.makePipeline().newSession(frontend, pool, Clock())
        session.begin()
        session.frontendDataReceived(codec.encode(Query("SELECT 1")))
        session.backendDataReceived(
            codec.encodeAll([CommandComplete("SELECT 1"), ReadyForQuery(b"I")])
        )
        return session, frontend, pool

    def test_providesInterfaces(self) -> None:
        """
        The plugin and its sessions provide their interfaces.
        """
        pipeline = self.makePipeline()
        verifyObject(IPipeline, pipeline)
        session, _, _ = self.openSession()
        verifyObject(IPipelineSession, session)
        self.assertIsInstance(pipeline.name, str)  # type: ignore[attr-defined]
        self.assertIsInstance(pipeline.description, str)  # type: ignore[attr-defined]

    def test_acceptsDefaultConfiguration(self) -> None:
        """
        A default configuration raises no problem.
        """
        config = Configuration(
            main=MainSettings(), servers=(ServerSettings("primary", "localhost", 5432),)
        )
        self.assertEqual(self.makePipeline().checkConfiguration(config), [])  # type: ignore[attr-defined]

    def test_loginCompleted(self) -> None:
        """
        A begun session completes the client's login (or fails it).
        """
        _, frontend, _ = self.openSession()
        self.assertIsNotNone(frontend.loginParameters)  # type: ignore[attr-defined]

    def test_releasesOnDisconnect(self) -> None:
        """
        A client that leaves between transactions gives its backend back clean.
        """
        session, _, pool = self.openSession()
        session.frontendLost(Failure(ConnectionError()))
        self.assertIs(pool.released[-1], pool.backend)  # type: ignore[attr-defined]
        self.assertTrue(pool.backend.clean)  # type: ignore[attr-defined]

    def test_releasesOnTerminate(self) -> None:
        """
        Terminate gives the backend back and is not forwarded.
        """
        session, _, pool = self.openSession()
        written = bytes(pool.backend.written)
        session.frontendDataReceived(codec.encode(Terminate()))
        self.assertEqual(bytes(pool.backend.written), written)
        self.assertIs(pool.released[-1], pool.backend)  # type: ignore[attr-defined]

    def test_neverReleasesCleanInsideTransaction(self) -> None:
        """
        A backend left inside a transaction is never returned as reusable.
        """
        session, _, pool = self.openSession()
        session.frontendDataReceived(codec.encode(Query("BEGIN")))
        session.backendDataReceived(
            codec.encodeAll([CommandComplete("BEGIN"), ReadyForQuery(b"T")])
        )
        session.frontendLost(Failure(ConnectionError()))
        backend = pool.backend
        reusable = backend.clean and backend.transactionStatus == b"I"
        self.assertFalse(reusable and backend in pool.released)  # type: ignore[attr-defined]

    def test_abandonsOnDisconnectMidRequest(self) -> None:
        """
        A client lost while its query runs leaves the backend to be
        cancelled and closed, never given back for reuse.
        """
        session, _, pool = self.openSession()
        session.frontendDataReceived(codec.encode(Query("SELECT pg_sleep(60)")))
        released = len(pool.released)
        session.frontendLost(Failure(ConnectionError()))
        self.assertEqual(pool.abandoned, [pool.backend])
        self.assertEqual(len(pool.released), released)

    def test_abandonsOnDisconnectMidBatch(self) -> None:
        """
        So does a client lost after an extended-protocol Execute, before
        its Sync: PostgreSQL runs the Execute as it arrives.
        """
        session, _, pool = self.openSession()
        session.frontendDataReceived(
            codec.encodeAll([Parse("", "SELECT pg_sleep(60)"), Bind("", ""), Execute("")])
        )
        session.frontendLost(Failure(ConnectionError()))
        self.assertEqual(pool.abandoned, [pool.backend])

    def test_noCancelForIdleBackend(self) -> None:
        """
        A client lost with no request running (between queries of a
        transaction) has nothing cancelled.
        """
        session, _, pool = self.openSession()
        session.frontendDataReceived(codec.encode(Query("BEGIN")))
        session.backendDataReceived(
            codec.encodeAll([CommandComplete("BEGIN"), ReadyForQuery(b"T")])
        )
        session.frontendLost(Failure(ConnectionError()))
        self.assertEqual(pool.abandoned, [])

    def test_terminateLetsRequestRun(self) -> None:
        """
        A Terminate right behind a query is a goodbye, not a loss: the query
        is not cancelled (PostgreSQL runs it, then reads the Terminate).
        """
        session, _, pool = self.openSession()
        session.frontendDataReceived(
            codec.encodeAll([Query("INSERT INTO t VALUES (1)"), Terminate()])
        )
        session.frontendLost(Failure(ConnectionError()))
        self.assertEqual(pool.abandoned, [])

    def test_backendLossReported(self) -> None:
        """
        A backend that dies under a running query is reported to the client.
        """
        session, frontend, _ = self.openSession()
        session.frontendDataReceived(codec.encode(Query("SELECT pg_sleep(1)")))
        session.backendLost(Failure(ConnectionError()))
        self.assertTrue(frontend.failed)  # type: ignore[attr-defined]

    def test_busyWhileRequestRuns(self) -> None:
        """
        A session is busy from a client's Query to its ReadyForQuery, and
        not between requests (the janitor disconnects only idle clients).
        """
        session, _, _ = self.openSession()
        self.assertFalse(session.busy())
        session.frontendDataReceived(codec.encode(Query("SELECT 2")))
        self.assertTrue(session.busy())
        session.backendDataReceived(
            codec.encodeAll([CommandComplete("SELECT 1"), ReadyForQuery(b"I")])
        )
        self.assertFalse(session.busy())

    def test_waitingForBackend(self) -> None:
        """
        A session waits for a backend while the pool has not answered its
        C{acquire}, and no longer once it has.
        """
        frontend = FakeFrontendLink()
        pool = FakeBackendPool(immediate=False)
        session = self.makePipeline().newSession(frontend, pool, Clock())
        self.assertFalse(session.waitingForBackend())
        session.begin()
        if not pool.pending:
            # A pipeline that logs in without a backend waits for one at
            # the first request.
            session.frontendDataReceived(codec.encode(Query("SELECT 1")))
        self.assertTrue(session.waitingForBackend())
        pool.pending[0].callback(pool.backend)
        self.assertFalse(session.waitingForBackend())
