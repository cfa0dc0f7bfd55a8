"""
Tests for L{pgtwist.pipelines.performance}: a session relay that decodes as
little as it can, and the configurations it refuses.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.app import bootstrap
from pgtwist.config.errors import ConfigError
from pgtwist.config.model import Configuration, DatabaseLimit, MainSettings, ServerSettings
from pgtwist.pipelines.performance import (
    PerformancePipeline,
    PerformancePipelineSession,
    sessionFeatures,
)
from pgtwist.pipelines.session import SessionPipeline
from pgtwist.testing import FakeBackendPool, FakeFrontendLink
from pgtwist.wire import codec, errors
from pgtwist.wire.messages import (
    CommandComplete,
    ParameterStatus,
    Query,
    ReadyForQuery,
    Terminate,
)


def configuration(**main: object) -> Configuration:
    """
    A configuration with these main settings and one server.
    """
    return Configuration(
        main=MainSettings(**main),  # type: ignore[arg-type]
        servers=(ServerSettings("primary", "localhost", 5432),),
    )


class PerformanceRelayTests(SynchronousTestCase):
    """
    The performance pipeline relays bytes like the session pipeline, with
    less decoding.
    """

    def setUp(self) -> None:
        self.frontend = FakeFrontendLink()
        self.pool = FakeBackendPool()
        self.session = PerformancePipeline().newSession(self.frontend, self.pool, Clock())
        self.session.begin()
        self.backend = self.pool.backend

    def test_sessionType(self) -> None:
        """
        The plugin makes performance sessions and logs the client in with
        its own backend's pid.
        """
        self.assertIsInstance(self.session, PerformancePipelineSession)
        self.assertEqual(self.frontend.loginProcessId, self.backend.processId)
        self.assertEqual(self.pool.acquired[0][1], self.frontend.startupParameters)

    def test_relaysBothWays(self) -> None:
        """
        Bytes go through untouched both ways.
        """
        query = codec.encode(Query("SELECT 1"))
        self.session.frontendDataReceived(query)
        self.assertEqual(bytes(self.backend.written), query)
        reply = codec.encodeAll([CommandComplete("SELECT 1"), ReadyForQuery(b"T")])
        self.session.backendDataReceived(reply)
        self.assertEqual(bytes(self.frontend.written), reply)
        self.assertEqual(self.backend.transactionStatus, b"T")

    def test_parameterStatusNotDecoded(self) -> None:
        """
        ParameterStatus is relayed without being decoded: the backend's
        parameters are not updated, and even a body the codec would refuse
        goes through.
        """
        before = dict(self.backend.parameters)
        reply = codec.encode(ParameterStatus("TimeZone", "Mars")) + codec.frame(b"S", b"junk")
        self.session.backendDataReceived(reply)
        self.assertEqual(self.backend.parameters, before)
        self.assertEqual(bytes(self.frontend.written), reply)
        self.assertFalse(self.frontend.failed)

    def test_sessionPipelineDecodes(self) -> None:
        """
        For contrast, the session pipeline decodes ParameterStatus.
        """
        frontend = FakeFrontendLink()
        pool = FakeBackendPool()
        session = SessionPipeline().newSession(frontend, pool, Clock())
        session.begin()
        session.backendDataReceived(codec.encode(ParameterStatus("TimeZone", "Mars")))
        self.assertEqual(pool.backend.parameters["TimeZone"], "Mars")

    def test_fatalNoticed(self) -> None:
        """
        A FATAL from PostgreSQL is still noticed: losing the backend then
        just closes the client.
        """
        self.session.backendDataReceived(
            codec.encode(errors.fatal("57P01", "terminating connection"))
        )
        self.session.backendLost(Failure(ConnectionError()))
        self.assertTrue(self.frontend.failed)
        self.assertIsNone(self.frontend.failedWith)

    def test_terminateResets(self) -> None:
        """
        Terminate is not forwarded and the backend goes back to be reset
        (C{DISCARD ALL}), clean.
        """
        query = codec.encode(Query("SELECT 1"))
        self.session.frontendDataReceived(query)
        self.session.backendDataReceived(
            codec.encodeAll([CommandComplete("SELECT 1"), ReadyForQuery(b"I")])
        )
        self.session.frontendDataReceived(codec.encode(Terminate()))
        self.assertEqual(bytes(self.backend.written), query)
        self.assertEqual(self.pool.released, [self.backend])
        self.assertEqual(self.pool.releasedWithoutReset, [])
        self.assertTrue(self.backend.clean)

    def test_disconnectInQuery(self) -> None:
        """
        A client gone with a query in flight leaves the backend unclean.
        """
        self.session.frontendDataReceived(codec.encode(Query("SELECT pg_sleep(1)")))
        self.session.frontendLost(Failure(ConnectionError()))
        self.assertFalse(self.backend.clean)


class PerformanceConfigurationTests(SynchronousTestCase):
    """
    Like pgagroal's, the performance pipeline refuses session features.
    """

    def test_default(self) -> None:
        """
        A default configuration is fine.
        """
        self.assertEqual(PerformancePipeline().checkConfiguration(configuration()), [])
        self.assertEqual(sessionFeatures(configuration()), [])

    def test_refused(self) -> None:
        """
        TLS, failover and C{disconnect_client} are each refused, by name.
        """
        pipeline = PerformancePipeline()
        self.assertEqual(
            pipeline.checkConfiguration(configuration(tls=True)),
            ["the performance pipeline does not support tls"],
        )
        self.assertEqual(
            pipeline.checkConfiguration(configuration(failover=True)),
            ["the performance pipeline does not support failover"],
        )
        self.assertEqual(
            pipeline.checkConfiguration(configuration(disconnectClient=30.0)),
            ["the performance pipeline does not support disconnect_client"],
        )

    def test_databasesFileColumn(self) -> None:
        """
        A C{performance} PIPELINE column in the databases file meets the
        same check as the main C{pipeline} key: with failover or
        C{disconnect_client} (client TLS goes the same way, once its files
        are there), the installed plugins refuse the configuration, naming
        the file and line.
        """
        line = DatabaseLimit("app", "alice", 10, pipeline="performance", path="etc/db.conf", line=3)
        for main, feature in (
            ({"failover": True}, "failover"),
            ({"disconnectClient": 30.0}, "disconnect_client"),
        ):
            config = replace(configuration(pipeline="session", **main), limits=(line,))
            error = self.assertRaises(ConfigError, bootstrap.validate, config)
            self.assertEqual(
                str(error), f"etc/db.conf:3: the performance pipeline does not support {feature}"
            )
        self.assertEqual(
            sessionFeatures(replace(configuration(pipeline="session"), limits=(line,))), []
        )

    def test_allReported(self) -> None:
        """
        Every problem is reported, not just the first.
        """
        self.assertEqual(
            sessionFeatures(configuration(tls=True, failover=True, disconnectClient=1.0)),
            ["tls", "failover", "disconnect_client"],
        )
