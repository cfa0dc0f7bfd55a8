# -*- test-case-name: tests.contract.test_pipeline_contract -*-
"""
What every built-in pipeline session does the same way: tell the client
when its backend dies, drop both sides on a protocol violation, and say
whether it waits for a backend.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from pgtwist.interfaces import (
    SESSION_IDLE,
    SESSION_RUNNING,
    IBackendLink,
    IBackendPool,
    IFrontendLink,
)
from pgtwist.wire import constants, errors
from pgtwist.wire.errors import ProtocolViolation


class PipelineSessionBase:
    """
    Shared endings of a pipeline session.

    @cvar lostDetail: The DETAIL of the error a client gets when its backend
        terminates.
    @ivar _fatalSeen: Whether a FATAL from PostgreSQL was already relayed
        (then the client is just closed).
    @ivar _acquiring: The pending L{IBackendPool.acquire}, while there is one.
    """

    lostDetail = "The PostgreSQL backend of this session terminated."

    frontend: IFrontendLink
    pool: IBackendPool
    backend: IBackendLink | None
    _done: bool
    _fatalSeen: bool
    _acquiring: Deferred[IBackendLink] | None

    def waitingForBackend(self) -> bool:
        """
        See L{IPipelineSession.waitingForBackend}.
        """
        return self._acquiring is not None

    def busy(self) -> bool:
        raise NotImplementedError()

    def timeoutState(self) -> tuple[int, float, float]:
        """
        See L{IPipelineSession.timeoutState}: running while L{busy}, with
        no times known (a pipeline that knows more says more).
        """
        return (SESSION_RUNNING if self.busy() else SESSION_IDLE), 0.0, 0.0

    def _serverMidMessage(self) -> bool:
        """
        Whether what the client received of its backend's output stops
        inside a message (part of a long DataRow relayed, the rest never
        to come).
        """
        return False

    def backendLost(self, reason: Failure) -> None:
        """
        The backend died under the client: tell it, as PostgreSQL's own
        FATAL would have if one was not relayed already.

        When the client has received only part of a message, it is closed
        without a word, as a direct connection to a PostgreSQL that died
        there would be: an ErrorResponse now would be read as the rest of
        that message, and the client would lose its place in the stream.
        """
        self.backend = None
        self._done = True
        self.frontend.setCancelTarget(None)
        if self._fatalSeen or self._serverMidMessage():
            self.frontend.fail(None)
            return
        self.frontend.fail(
            errors.fatal(
                constants.SQLSTATE_CONNECTION_FAILURE,
                "server closed the connection unexpectedly",
                detail=self.lostDetail,
            )
        )

    def _serverViolation(self, error: ProtocolViolation) -> None:
        """
        PostgreSQL sent something pgtwist cannot read: drop the backend and
        tell the client the connection to the server failed (08006), not
        that the client broke the protocol.
        """
        self._protocolViolation(
            ProtocolViolation(
                f"server sent a malformed message: {error.message}",
                constants.SQLSTATE_CONNECTION_FAILURE,
            )
        )

    def _protocolViolation(self, error: ProtocolViolation) -> None:
        backend, self.backend = self.backend, None
        self._done = True
        if backend is not None:
            backend.detach()
            self.pool.discard(backend, error.message)
        self.frontend.fail(error.toErrorResponse())
