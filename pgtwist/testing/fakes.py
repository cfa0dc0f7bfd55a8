# -*- test-case-name: tests.unit.test_fakes -*-
"""
Public fakes for testing pipelines and plugins without sockets or PostgreSQL.

L{FakeFrontendLink} records what a pipeline sends to its client,
L{FakeBackendLink} what it sends to PostgreSQL, and L{FakeBackendPool} hands
out fake backends and records releases and discards.
L{FakePooledConnection} is a backend as the pool sees it, for testing pools
without PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from pgtwist.config.model import PoolKey, ServerSettings
from pgtwist.config.verifiers import BackendCredential
from pgtwist.interfaces import (
    IBackendLink,
    IBackendPool,
    IFrontendLink,
    IPipelineSession,
    IPooledConnection,
)
from pgtwist.pool.stats import PoolStats
from pgtwist.wire import constants
from pgtwist.wire.messages import ErrorResponse


@implementer(IFrontendLink)
class FakeFrontendLink:
    """
    A client connection that records everything.

    @ivar written: Bytes sent to the client.
    @ivar failedWith: The error passed to L{fail} (C{None} if not failed).
    @ivar loginParameters: What L{completeLogin} was given.
    """

    def __init__(
        self, key: PoolKey = ("db", "user"), startupParameters: Mapping[str, str] | None = None
    ) -> None:
        self.key = key
        self.configuration: Any = None
        self.startupParameters = dict(startupParameters or {"user": key[1], "database": key[0]})
        self.written = bytearray()
        self.failed = False
        self.failedWith: ErrorResponse | None = None
        self.failedFromPool: Failure | None = None
        self.loginParameters: Mapping[str, str] | None = None
        self.loginProcessId: int | None = None
        self.reading = True
        self.cancelTarget: IBackendLink | None = None
        #: No transport: a backend attached to this link links no backpressure.
        self.transport: Any = None

    def completeLogin(self, parameters: Mapping[str, str], processId: int) -> None:
        """
        Record the login; like the real link, resume reading.
        """
        self.reading = True
        self.loginParameters = dict(parameters)
        self.loginProcessId = processId

    def write(self, data: bytes) -> None:
        """
        Record bytes for the client.
        """
        self.written += data

    def pauseReading(self) -> None:
        """
        Record that reading is paused.
        """
        self.reading = False

    def resumeReading(self) -> None:
        """
        Record that reading resumed.
        """
        self.reading = True

    def fail(self, error: ErrorResponse | None) -> None:
        """
        Record the failure.
        """
        self.failed = True
        self.failedWith = error

    def failFromPool(self, reason: Failure) -> None:
        """
        Record the pool failure.
        """
        self.failed = True
        self.failedFromPool = reason

    def setCancelTarget(self, backend: IBackendLink | None) -> None:
        """
        Record where cancels would go.
        """
        self.cancelTarget = backend


class _RecordingLink:
    """
    The state and the recording of bytes and sessions that both fake
    backends share.
    """

    def __init__(self, processId: int, secretKey: int, server: ServerSettings | None) -> None:
        self.processId = processId
        self.secretKey = secretKey
        self.server = server or ServerSettings("primary", "127.0.0.1", 5432, True)
        self.parameters: dict[str, str] = {"client_encoding": "UTF8", "server_version": "15.0"}
        self.transactionStatus = constants.TRANSACTION_IDLE
        self.clean = True
        self.sessionResets = 0
        self.written = bytearray()
        self.session: IPipelineSession | None = None

    def attach(self, session: IPipelineSession, frontend: IFrontendLink) -> None:
        """
        Record the attached session.
        """
        self.session = session

    def detach(self) -> None:
        """
        Forget the session.
        """
        self.session = None

    def write(self, data: bytes) -> None:
        """
        Record bytes for PostgreSQL.
        """
        self.written += data


@implementer(IBackendLink)
class FakeBackendLink(_RecordingLink):
    """
    A PostgreSQL connection that records what it is sent.
    """

    def __init__(self, processId: int = 4242, secretKey: int = 99) -> None:
        super().__init__(processId, secretKey, None)
        self.queries: list[str] = []
        self.queryError: ErrorResponse | None = None

    def simpleQuery(self, sql: str) -> Deferred[ErrorResponse | None]:
        """
        Record a query pgtwist runs itself; it succeeds at once unless
        C{queryError} is set.
        """
        self.queries.append(sql)
        return succeed(self.queryError)


@implementer(IBackendPool)
class FakeBackendPool:
    """
    Hands out L{FakeBackendLink}s (or a pending Deferred when C{immediate} is
    false) and records returns.
    """

    def __init__(self, immediate: bool = True) -> None:
        self.immediate = immediate
        self.acquired: list[tuple[PoolKey, Mapping[str, str] | None]] = []
        self.releasedWithoutReset: list[IBackendLink] = []
        self.pending: list[Deferred[IBackendLink]] = []
        self.released: list[IBackendLink] = []
        self.discarded: list[tuple[IBackendLink, str]] = []
        self.abandoned: list[IBackendLink] = []
        #: The databases of L{closeIdleBackends} calls, and whether it answers at once.
        self.closedIdle: list[str] = []
        self.closeAtOnce = True
        self.closing: list[Deferred[None]] = []
        self.cancelled: list[Deferred[IBackendLink]] = []
        self.backend = FakeBackendLink()
        self.stats = PoolStats()
        #: What L{authRequestCode} answers.
        self.authCode: int | None = None
        #: The keys of L{countAuthFailure} calls.
        self.authFailures: list[PoolKey] = []
        #: The L{rememberCredential} calls.
        self.credentials: list[tuple[PoolKey, BackendCredential]] = []

    def acquire(self, key: PoolKey, parameters: Mapping[str, str] | None) -> Deferred[IBackendLink]:
        """
        Record the request; answer at once or later.
        """
        self.acquired.append((key, parameters))
        if self.immediate:
            return succeed(self.backend)
        d: Deferred[IBackendLink] = Deferred(self.cancelled.append)
        self.pending.append(d)
        return d

    def acquireIdle(self, key: PoolKey) -> IBackendLink | None:
        """
        Record the request and lend the backend when answering at once.
        """
        if not self.immediate:
            return None
        self.acquired.append((key, None))
        return self.backend

    def statsFor(self, key: PoolKey) -> PoolStats:
        """
        The statistics (one set, C{stats}, for all keys).
        """
        return self.stats

    def authRequestCode(self, key: PoolKey) -> int | None:
        """
        C{authCode}, for every key.
        """
        return self.authCode

    def countAuthFailure(self, key: PoolKey) -> None:
        """
        Record the key and count it in C{stats}.
        """
        self.authFailures.append(key)
        self.stats.authFailure += 1

    def rememberCredential(self, key: PoolKey, credential: BackendCredential) -> None:
        """
        Record the key and the credential.
        """
        self.credentials.append((key, credential))

    def release(self, backend: IBackendLink, reset: bool = True) -> None:
        """
        Record a release.
        """
        self.released.append(backend)
        if not reset:
            self.releasedWithoutReset.append(backend)

    def discard(self, backend: IBackendLink, reason: str) -> None:
        """
        Record a discard.
        """
        self.discarded.append((backend, reason))

    def abandon(self, backend: IBackendLink) -> None:
        """
        Record a backend given up with its client's request running.
        """
        self.abandoned.append(backend)

    def closeIdleBackends(self, database: str) -> Deferred[None]:
        """
        Record the database; answer at once when C{closeAtOnce}, else with
        a Deferred kept in C{closing} for the test to fire.
        """
        self.closedIdle.append(database)
        if self.closeAtOnce:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self.closing.append(d)
        return d


@implementer(IPooledConnection)
class FakePooledConnection(_RecordingLink):
    """
    A backend as the pool sees it: the test answers its queries (each
    L{simpleQuery} returns a Deferred kept in C{queries}) and loses its
    connection with L{lose}.

    @ivar queries: (SQL, Deferred) for each query run, oldest first.
    @ivar closed: Whether L{close} was called.
    """

    def __init__(
        self,
        key: PoolKey = ("db", "user"),
        processId: int = 4242,
        server: ServerSettings | None = None,
    ) -> None:
        super().__init__(processId, 99, server)
        self.key = key
        self.connected = True
        self.closing = False
        self.closed = False
        self.authRequestCode: int | None = None
        self.transport: Any = None
        self.lostCallback: Callable[[IPooledConnection, Failure], None] | None = None
        self.queries: list[tuple[str, Deferred[ErrorResponse | None]]] = []

    def __repr__(self) -> str:
        return f"<FakePooledConnection pid={self.processId} {self.key}>"

    def simpleQuery(self, sql: str) -> Deferred[ErrorResponse | None]:
        """
        Record the query; the test fires its Deferred.
        """
        d: Deferred[ErrorResponse | None] = Deferred()
        self.queries.append((sql, d))
        return d

    def resetSession(self) -> Deferred[ErrorResponse | None]:
        """
        Count the reset and run C{DISCARD ALL} as L{simpleQuery}.
        """
        self.sessionResets += 1
        return self.simpleQuery("DISCARD ALL")

    def close(self) -> None:
        """
        Record the close.
        """
        self.closed = True
        self.closing = True

    def lose(self, reason: Failure | None = None) -> None:
        """
        The connection is lost, as the real one reports it: fail the
        queries still waiting, then tell C{lostCallback}.
        """
        reason = reason or Failure(ConnectionError("connection lost"))
        self.connected = False
        self.closing = True
        for _, d in self.queries:
            if not d.called:
                d.errback(reason)
        if self.lostCallback is not None:
            self.lostCallback(self, reason)
