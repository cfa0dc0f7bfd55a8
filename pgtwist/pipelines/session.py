# -*- test-case-name: tests.unit.test_pipeline_session -*-
"""
Session pooling: a client keeps one backend from login to disconnect; the
backend is reset with C{DISCARD ALL} and reused by the next client of the
same (database, user).

Bytes are relayed chunk by chunk. Two scanners read only message headers:
the client side counts requests (Query, Sync, FunctionCall) and spots
Terminate; the backend side reads ReadyForQuery's status and ParameterStatus.
That is all the policy needs: whether the backend can be reused safely.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from zope.interface import implementer

from pgtwist.config.model import Configuration
from pgtwist.interfaces import (
    SESSION_IDLE,
    SESSION_IDLE_IN_TRANSACTION,
    SESSION_RUNNING,
    IBackendLink,
    IBackendPool,
    IFrontendLink,
    IPipeline,
    IPipelineSession,
)
from pgtwist.pipelines._base import PipelineSessionBase
from pgtwist.pipelines._databases import HINT, STARTS, exclusiveDatabase
from pgtwist.wire import codec, constants
from pgtwist.wire.codec import HEADER
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.walker import MessageWalker

#: Client messages that each get exactly one ReadyForQuery.
_REQUESTS = frozenset({constants.QUERY, constants.SYNC, constants.FUNCTION_CALL})
#: Extended-protocol messages that leave work pending until the next Sync.
_UNSYNCED = frozenset(
    {
        constants.PARSE,
        constants.BIND,
        constants.DESCRIBE,
        constants.EXECUTE,
        constants.CLOSE,
        constants.FLUSH,
    }
)
_FRONTEND_WATCH = _REQUESTS | _UNSYNCED | {constants.TERMINATE}
_BACKEND_COLLECT = frozenset(
    {constants.READY_FOR_QUERY, constants.PARAMETER_STATUS, constants.ERROR_RESPONSE}
)


@implementer(IPipelineSession)
class SessionPipelineSession(PipelineSessionBase):
    """
    Session-mode policy for one client.
    """

    log = Logger()

    def __init__(self, frontend: IFrontendLink, pool: IBackendPool, clock: IReactorTime) -> None:
        self.frontend = frontend
        self.pool = pool
        self.clock = clock
        self.backend: IBackendLink | None = None
        self._pending = b""
        self._outstanding = 0
        self._unsynced = False
        self._terminateAt: int | None = None
        #: The client sent Terminate behind requests still running: close
        #: once they are answered (see L{frontendDataReceived}).
        self._closeWhenAnswered = False
        self._fatalSeen = False
        self._done = False
        self._acquiring: Deferred[IBackendLink] | None = None
        self.stats = pool.statsFor(frontend.key)
        self._queryStart = 0.0
        self._xactStart: float | None = None
        #: When the last request ended (for idle_transaction_timeout).
        self._readyAt = 0.0
        self._frontendScanner = MessageWalker(self._frontendMessage, watch=_FRONTEND_WATCH)
        #: Client chunks held while idle backends of a database close (see
        #: L{_holdExclusive}), and whether the statement first held is cleared.
        self._held: list[bytes] | None = None
        self._cleared = False
        self._backendScanner = MessageWalker(self._backendMessage, collect=_BACKEND_COLLECT)

    # -- login --------------------------------------------------------------------

    def begin(self) -> None:
        """
        Acquire this client's backend; its pid becomes the client's.
        """
        self.frontend.pauseReading()
        d = self.pool.acquire(self.frontend.key, self.frontend.startupParameters)
        self._acquiring = d
        d.addCallbacks(self._cbAcquired, self._ebAcquired)

    def _cbAcquired(self, backend: IBackendLink) -> None:
        self._acquiring = None
        if self._done:
            self.pool.release(backend)
            return
        self.backend = backend
        backend.attach(self, self.frontend)
        self.frontend.setCancelTarget(backend)
        self.frontend.completeLogin(backend.parameters, backend.processId)

    def _ebAcquired(self, reason: Failure) -> None:
        self._acquiring = None
        if self._done:
            return
        self._done = True
        self.frontend.failFromPool(reason)

    # -- hand-over to a new process (pgtwist.app.handover) -------------------------

    def exportState(self) -> dict[str, Any] | None:
        """
        Whether this client and its backend can go to a new pgtwist now:
        between requests, nothing half relayed either way (a transaction
        may be open: the backend goes too). Its state is its backend's
        (C{{}} here); C{None} when it cannot go.
        """
        if (
            self.backend is None
            or self._done
            or self._acquiring is not None
            or self._held is not None
            or self._pending
            or not self._clean()
        ):
            return None
        return {}

    def resume(self, backend: IBackendLink) -> None:
        """
        Serve the client with C{backend}, both handed over by another
        pgtwist process: as after L{begin}, without a login.
        """
        self.backend = backend
        # A transaction left open is timed from now (idle_transaction_timeout).
        now = self._readyAt = self.clock.seconds()
        if backend.transactionStatus != constants.TRANSACTION_IDLE:
            self._xactStart = now
        backend.attach(self, self.frontend)
        self.frontend.setCancelTarget(backend)

    # -- relay ----------------------------------------------------------------------

    def _frontendMessage(self, type: bytes, body: bytes | None, end: int) -> None:
        if type in _REQUESTS:
            if not self._outstanding:
                self._queryStart = self.clock.seconds()
                if self._xactStart is None:
                    self._xactStart = self._queryStart
            self._outstanding += 1
            if type == constants.SYNC:
                self._unsynced = False
        elif type == constants.TERMINATE:
            self._terminateAt = end - 5
        else:
            self._unsynced = True

    def frontendDataReceived(self, data: bytes) -> None:
        """
        Relay client bytes, keeping Terminate for ourselves.
        """
        backend = self.backend
        if backend is None:
            return
        if self._held is not None:
            self._held.append(data)
            return
        first = data[:1]
        if (
            (first == constants.QUERY and data[5:6] in STARTS)
            or (first == constants.PARSE and (data[5:6] != b"\x00" or data[6:7] in STARTS))
        ) and (
            HINT.search(data) is not None
            and self._frontendScanner.atBoundary
            and self._holdExclusive(data)
        ):
            return
        self.stats.bytesReceived += len(data)
        try:
            self._frontendScanner.feed(data)
        except ProtocolViolation as e:
            self._protocolViolation(e)
            return
        if self._terminateAt is not None:
            if self._terminateAt > 0:
                backend.write(data[: self._terminateAt])
            elif self._terminateAt < 0:
                self._unsynced = True  # part of Terminate already went to the backend
            if self._outstanding and not self._unsynced:
                # PostgreSQL answers what came before Terminate, then
                # closes: so do we, once the last ReadyForQuery is relayed.
                self._closeWhenAnswered = True
                # Anything the client sends after Terminate is ignored, as
                # PostgreSQL does: held, never relayed.
                self._held = []
                self.frontend.pauseReading()
                return
            self._finish()
            # PostgreSQL closes the connection on Terminate; so do we.
            self.frontend.fail(None)
            return
        backend.write(data)

    def _holdExclusive(self, data: bytes) -> bool:
        """
        Whether C{data} starts with a statement that needs a database free
        of other sessions (C{DROP DATABASE}...): then it is held, with what
        follows, until the pool has closed its idle backends to that
        database (L{IBackendPool.closeIdleBackends}). Only a statement at
        the start of a chunk is looked at, as clients send these (they
        run alone, never in a transaction block).
        """
        if self._cleared:
            self._cleared = False
            return False
        type, length = HEADER.unpack_from(data)
        end = length + 1
        if length < 4 or end > len(data):
            return False
        body = data[5:end]
        if type == constants.PARSE:
            body = body[body.find(b"\x00") + 1 :]
        database = exclusiveDatabase(body[: body.find(b"\x00")])
        if database is None:
            return False
        d = self.pool.closeIdleBackends(database)
        if d.called:
            return False
        self._held = [data]
        self.frontend.pauseReading()
        d.addBoth(self._cbExclusive)
        return True

    def _cbExclusive(self, result: object) -> None:
        """
        The idle backends are closed: relay what was held.
        """
        held, self._held = self._held or [], None
        if self._done:
            return
        self._cleared = True
        self.frontend.resumeReading()
        for data in held:
            self.frontendDataReceived(data)

    def _backendMessage(self, type: bytes, body: bytes | None, end: int) -> None:
        assert body is not None
        backend = self.backend
        assert backend is not None
        if type == constants.READY_FOR_QUERY:
            backend.transactionStatus = body
            if self._outstanding:
                self._outstanding -= 1
                if not self._outstanding:
                    now = self._readyAt = self.clock.seconds()
                    self.stats.addQuery(now - self._queryStart)
                    if body == constants.TRANSACTION_IDLE and self._xactStart is not None:
                        self.stats.addTransaction(now - self._xactStart)
                        self._xactStart = None
        elif type == constants.PARAMETER_STATUS:
            message: Any = codec.decodeBackend(type, body)
            backend.parameters[message.name] = message.value
        else:
            error: Any = codec.decodeBackend(type, body)
            if error.severity in (constants.SEVERITY_FATAL, constants.SEVERITY_PANIC):
                self._fatalSeen = True

    def backendDataReceived(self, data: bytes) -> None:
        """
        Relay backend bytes, noting transaction status and parameter changes.
        """
        self.stats.bytesSent += len(data)
        try:
            self._backendScanner.feed(data)
        except ProtocolViolation as e:
            self._serverViolation(e)
            return
        self.frontend.write(data)
        if self._closeWhenAnswered and not self._outstanding:
            self._finish()
            self.frontend.fail(None)

    def busy(self) -> bool:
        """
        See L{IPipelineSession.busy}: whether a request of the client is
        running on its backend.
        """
        return self._outstanding > 0 or self._unsynced

    def timeoutState(self) -> tuple[int, float, float]:
        """
        See L{IPipelineSession.timeoutState}: the relay knows when each
        request and transaction began, and when the last request ended.
        """
        start = self._xactStart or 0.0
        if self._outstanding > 0 or self._unsynced:
            return SESSION_RUNNING, start, self._queryStart
        backend = self.backend
        if backend is None or backend.transactionStatus == constants.TRANSACTION_IDLE:
            return SESSION_IDLE, 0.0, 0.0
        return SESSION_IDLE_IN_TRANSACTION, start, self._readyAt

    def _serverMidMessage(self) -> bool:
        """
        See L{PipelineSessionBase._serverMidMessage}: every chunk is relayed
        whole, so the client has what the scanner has walked.
        """
        return not self._backendScanner.atBoundary

    # -- endings --------------------------------------------------------------------

    def _clean(self) -> bool:
        return (
            self._outstanding == 0
            and not self._unsynced
            and self._frontendScanner.atBoundary
            and self._backendScanner.atBoundary
        )

    def _finish(self, lost: bool = False) -> None:
        """
        The client is done: give the backend back (the pool resets or closes
        it); a client C{lost} with a request running leaves it to be
        cancelled and closed (L{IBackendPool.abandon}), while one that said
        Terminate lets what it sent before run to its end, as PostgreSQL does.
        """
        if self._done:
            return
        self._done = True
        if self._acquiring is not None:
            self._acquiring.cancel()
        backend, self.backend = self.backend, None
        if backend is not None:
            backend.detach()
            backend.clean = self._clean()
            self.frontend.setCancelTarget(None)
            if lost and (self._outstanding or self._unsynced):
                self.pool.abandon(backend)
            else:
                self.pool.release(backend)

    def frontendLost(self, reason: Failure) -> None:
        """
        See L{IPipelineSession.frontendLost}: the session's last call, after
        which its walkers no longer call it back, so that reference counting
        frees it with its client. A client that said Terminate behind its
        requests is not cancelled (PostgreSQL runs them).
        """
        self._finish(lost=not self._closeWhenAnswered)
        self._frontendScanner.release()
        self._backendScanner.release()


@implementer(IPlugin, IPipeline)
class SessionPipeline:
    """
    The C{session} pipeline: one backend per client connection.
    """

    name = "session"
    description = "One backend per client for the whole connection; DISCARD ALL on return."

    def checkConfiguration(self, config: Configuration) -> list[str]:
        """
        Session pooling works with every configuration.
        """
        return []

    def resumeSession(
        self, frontend: IFrontendLink, pool: IBackendPool, clock: IReactorTime, state: Any
    ) -> IPipelineSession:
        """
        A session for a client another pgtwist process served until now;
        its backend comes next (L{SessionPipelineSession.resume}).

        @raise ValueError: C{state} is not one L{exportState} gives.
        """
        if state != {}:
            raise ValueError("bad session state")
        return self.newSession(frontend, pool, clock)

    def newSession(
        self, frontend: IFrontendLink, pool: IBackendPool, clock: IReactorTime
    ) -> IPipelineSession:
        """
        See L{IPipeline.newSession}.
        """
        return SessionPipelineSession(frontend, pool, clock)
