# -*- test-case-name: tests.unit.test_pipeline_performance -*-
"""
The C{performance} pipeline: session semantics with the least work per byte
(pgagroal's C{performance} pipeline).

After login, client bytes are only scanned for message headers (to spot
Terminate and count requests, so a backend is never reused with a request
in flight) and backend bytes only for ReadyForQuery and a FATAL error.
ParameterStatus is not decoded: C{DISCARD ALL} on return makes PostgreSQL
report every changed value again while pgtwist owns the backend. Like
pgagroal's, it refuses configurations that need session features (TLS,
failover, C{disconnect_client}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.plugin import IPlugin
from zope.interface import implementer

from pgtwist.config.limits import sessionFeatures
from pgtwist.config.model import Configuration
from pgtwist.interfaces import IBackendPool, IFrontendLink, IPipeline, IPipelineSession
from pgtwist.pipelines.session import SessionPipelineSession
from pgtwist.wire import constants
from pgtwist.wire.walker import MessageWalker

_BACKEND_COLLECT = frozenset({constants.READY_FOR_QUERY, constants.ERROR_RESPONSE})


class PerformancePipelineSession(SessionPipelineSession):
    """
    A session-mode relay that does not decode ParameterStatus.
    """

    def __init__(self, frontend: IFrontendLink, pool: IBackendPool, clock: IReactorTime) -> None:
        super().__init__(frontend, pool, clock)
        self._backendScanner = MessageWalker(self._backendMessage, collect=_BACKEND_COLLECT)


@implementer(IPlugin, IPipeline)
class PerformancePipeline:
    """
    The C{performance} pipeline.
    """

    name = "performance"
    description = (
        "Session semantics with the least per-byte work; no TLS, failover or disconnect_client."
    )

    def checkConfiguration(self, config: Configuration) -> list[str]:
        """
        pgagroal's rule: no TLS, failover or C{disconnect_client}.
        """
        return [f"the performance pipeline does not support {f}" for f in sessionFeatures(config)]

    def newSession(
        self, frontend: IFrontendLink, pool: IBackendPool, clock: IReactorTime
    ) -> IPipelineSession:
        """
        See L{IPipeline.newSession}.
        """
        return PerformancePipelineSession(frontend, pool, clock)

    def resumeSession(
        self, frontend: IFrontendLink, pool: IBackendPool, clock: IReactorTime, state: Any
    ) -> IPipelineSession:
        """
        As L{pgtwist.pipelines.session.SessionPipeline.resumeSession}.
        """
        if state != {}:
            raise ValueError("bad session state")
        return self.newSession(frontend, pool, clock)
