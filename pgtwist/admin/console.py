# -*- test-case-name: tests.unit.test_admin_control,tests.unit.test_admin_console -*-
"""
PgBouncer's admin console: the virtual database C{pgbouncer} (or
C{pgtwist}) on every listener, and all the C{management} port serves.

A L{ConsoleSession} stands where a pipeline session would: the frontend
hands it the client's bytes after login, and it answers simple-protocol
queries with result sets (see L{pgtwist.admin.commands}) without ever
touching a backend.
"""

from __future__ import annotations

import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pgtwist import __version__
from pgtwist.admin import commands, show
from pgtwist.admin.results import ConsoleCommandError, Reply, encodeReply
from pgtwist.interfaces import SESSION_IDLE, IBackendLink, IFrontendLink, IPipelineSession
from pgtwist.pool.stats import Averages, PoolStats
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.framing import Frame, MessageFramer
from pgtwist.wire.messages import EmptyQueryResponse, ReadyForQuery

if TYPE_CHECKING:
    from pgtwist.admin.management import Pooler

#: Extended-protocol messages: refused once per batch, until Sync.
_EXTENDED = frozenset(
    {
        constants.PARSE,
        constants.BIND,
        constants.DESCRIBE,
        constants.EXECUTE,
        constants.CLOSE,
        constants.FLUSH,
    }
)

EXTENDED_PROTOCOL_ERROR = "the pgtwist admin console supports only the simple query protocol"

_READY = codec.encode(ReadyForQuery(constants.TRANSACTION_IDLE))


class Console:
    """
    The console of one running pooler: what its sessions share.

    @ivar averages: SHOW STATS_AVERAGES' snapshots, refreshed every
        C{stats_period} by L{refreshAverages}.
    @ivar adminStats: Statistics of the console's own database.
    """

    log = Logger()

    def __init__(self, service: Pooler, clock: Any) -> None:
        self.service = service
        self.clock = clock
        self.averages = Averages()
        self.adminStats = PoolStats()
        self._serverIds: weakref.WeakKeyDictionary[IBackendLink, int] = weakref.WeakKeyDictionary()

    def newSession(self, frontend: IFrontendLink, role: str) -> ConsoleSession:
        """
        A console session for a client that logged in as C{role}.
        """
        return ConsoleSession(self, frontend, role)

    def refreshAverages(self) -> None:
        """
        Take a snapshot of the totals (every C{stats_period}).
        """
        self.averages.update(self.clock.seconds(), show.databaseTotals(self))

    def clearStatistics(self) -> None:
        """
        Zero every pool's statistics, the console's and the averages.
        """
        for pool in self.service.management.allPools():
            pool.stats.reset()
        self.adminStats.reset()
        self.averages = Averages()
        self.refreshAverages()

    def serverId(self, backend: IBackendLink) -> int:
        """
        A stable small id for a backend, from the clients' sequence.
        """
        found = self._serverIds.get(backend)
        if found is None:
            found = self._serverIds[backend] = self.service.management.nextId()
        return found

    def loginParameters(self, frontend: IFrontendLink) -> dict[str, str]:
        """
        The ParameterStatus a console session starts with: PgBouncer's
        welcome, with the real server's version when a backend reported it.
        """
        version = f"15.0 (pgtwist {__version__})"
        reported = (
            entry.backend.parameters["server_version"]
            for pool in self.service.management.allPools()
            for entries in pool.backends.values()
            for entry in entries
            if "server_version" in entry.backend.parameters
        )
        version = next(reported, version)
        return {
            "server_version": version,
            "client_encoding": "UTF8",
            "server_encoding": "UTF8",
            "DateStyle": "ISO",
            "TimeZone": "GMT",
            "standard_conforming_strings": "on",
            "integer_datetimes": "on",
            "is_superuser": "on",
            "application_name": frontend.startupParameters.get("application_name", ""),
        }


@implementer(IPipelineSession)
class ConsoleSession:
    """
    One admin console client: simple queries in, result sets out.

    @ivar role: C{"admin"} (every command) or C{"stats"} (SHOW only).
    """

    log = Logger()

    def __init__(self, console: Console, frontend: IFrontendLink, role: str) -> None:
        self.console = console
        self.frontend = frontend
        self.role = role
        self._framer = MessageFramer()
        self._queue: deque[Frame] = deque()
        #: Statements of the current Query still to run, and how to quote them.
        self._statements: deque[str] = deque()
        self._display: str | None = None
        self._waiting: Deferred[Reply] | None = None
        self._skipUntilSync = False
        self._closed = False

    # -- IPipelineSession -------------------------------------------------------

    def begin(self) -> None:
        """
        Finish the login: no backend is involved.
        """
        self.console.adminStats.clientLoginCount += 1
        processId = int(getattr(self.frontend, "id", 0))
        self.frontend.completeLogin(self.console.loginParameters(self.frontend), processId)

    def frontendDataReceived(self, data: bytes) -> None:
        """
        Frame the client's messages and run them in order.
        """
        if self._closed:
            return
        try:
            self._queue.extend(self._framer.feed(data))
        except ProtocolViolation as e:
            self._close(e.toErrorResponse())
            return
        self._drain()

    def backendDataReceived(self, data: bytes) -> None:
        """
        Never called: the console has no backend.
        """

    def busy(self) -> bool:
        """
        See L{IPipelineSession.busy}: a console session runs nothing on a
        backend.
        """
        return False

    def timeoutState(self) -> tuple[int, float, float]:
        """
        See L{IPipelineSession.timeoutState}: always idle.
        """
        return SESSION_IDLE, 0.0, 0.0

    def waitingForBackend(self) -> bool:
        """
        See L{IPipelineSession.waitingForBackend}: never.
        """
        return False

    def frontendLost(self, reason: Failure) -> None:
        """
        Stop waiting for a PAUSE (the pause itself stays).
        """
        self._closed = True
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.cancel()

    def backendLost(self, reason: Failure) -> None:
        """
        Never called: the console has no backend.
        """

    # -- messages -----------------------------------------------------------------

    def _drain(self) -> None:
        while not self._closed and self._waiting is None:
            if self._statements:
                self._runNext()
                continue
            if not self._queue:
                return
            self._message(self._queue.popleft())

    def _message(self, frame: Frame) -> None:
        type, body = frame
        if type == constants.SYNC:
            self._skipUntilSync = False
            self.frontend.write(_READY)
        elif self._skipUntilSync:
            return
        elif type == constants.QUERY:
            self._query(body)
        elif type == constants.TERMINATE:
            self._close(None)
        elif type in _EXTENDED:
            self._skipUntilSync = True
            self.frontend.write(
                codec.encode(
                    errors.error(constants.SQLSTATE_FEATURE_NOT_SUPPORTED, EXTENDED_PROTOCOL_ERROR)
                )
            )
        else:
            message = f"unsupported message type for the admin console: {type.decode('latin-1')!r}"
            self.frontend.write(
                codec.encode(errors.error(constants.SQLSTATE_PROTOCOL_VIOLATION, message)) + _READY
            )

    def _query(self, body: bytes) -> None:
        try:
            sql = codec.decodeFrontend(constants.QUERY, body).sql  # type: ignore[attr-defined]
        except ProtocolViolation as e:
            self._close(e.toErrorResponse())
            return
        statements = commands.splitStatements(sql)
        if not statements:
            self.frontend.write(codec.encode(EmptyQueryResponse()) + _READY)
            return
        self.log.debug("Console query from {user!r}: {sql}", user=self.frontend.key[1], sql=sql)
        self._display = sql if len(statements) == 1 else None
        self._statements.extend(statements)

    def _runNext(self) -> None:
        statement = self._statements.popleft()
        try:
            result = commands.execute(self.console, self.role, statement, self._display)
        except ConsoleCommandError as e:
            self._failed(e)
            return
        except Exception:
            self.log.failure("Console command {statement!r} failed", statement=statement)
            self._failed(ConsoleCommandError("internal error", constants.SQLSTATE_INTERNAL_ERROR))
            return
        if isinstance(result, Deferred):
            # Keep reading (a client that leaves is noticed and stops the
            # wait); what it sends meanwhile waits in the queue.
            self._waiting = result
            result.addCallbacks(self._cbReply, self._ebReply)
            return
        self._reply(result)

    def _cbReply(self, reply: Reply) -> None:
        if self._waiting is None:
            return
        self._waiting = None
        self._reply(reply)
        self._drain()

    def _ebReply(self, reason: Failure) -> None:
        if self._waiting is None:
            return
        self._waiting = None
        if isinstance(reason.value, ConsoleCommandError):
            self._failed(reason.value)
        else:
            self.log.failure("Console command failed", reason)
            self._failed(ConsoleCommandError("internal error", constants.SQLSTATE_INTERNAL_ERROR))
        self._drain()

    def _reply(self, reply: Reply) -> None:
        data = encodeReply(reply)
        if not self._statements:
            data += _READY
        self.frontend.write(data)

    def _failed(self, error: ConsoleCommandError) -> None:
        """
        An error ends the Query: later statements of it are skipped.
        """
        self.log.info(
            "Console command refused for {user!r}: {message}",
            user=self.frontend.key[1],
            message=error.message,
        )
        self._statements.clear()
        self.frontend.write(codec.encode(error.toErrorResponse()) + _READY)

    def _close(self, error: Any) -> None:
        self._closed = True
        self._statements.clear()
        self._queue.clear()
        self.frontend.fail(error)
