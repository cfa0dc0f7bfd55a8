# -*- test-case-name: tests.unit.test_pipeline_transaction,tests.unit.test_pipeline_transaction_state,tests.unit.test_pipeline_transaction_statements,tests.unit.test_pipeline_transaction_errors,tests.unit.test_pipeline_transaction_model -*-
"""
Transaction pooling: a client holds a backend only while a transaction (or
an extended-protocol batch up to its Sync) is open; between transactions
the backend serves others.

What makes that transparent to the client:

 - B{prepared statements}, named and unnamed, are renamed to server-side
   names shared by every client (L{pgtwist.pipelines._statements}); a backend
   that lacks one gets a Parse injected before the Bind or Describe that needs
   it, and a Parse for a statement the backend already has is answered by
   pgtwist with ParseComplete;
 - B{session settings} the client made (startup parameters, anything
   PostgreSQL reports with ParameterStatus) are re-applied with SET on a
   backend whose values differ (L{pgtwist.pipelines._settings});
 - every response pgtwist caused is swallowed, and every response it owes is
   synthesized, at exactly the position the client expects: an I{expected}
   queue holds one entry per request, in order (PgBouncer's outstanding
   requests). After an error PostgreSQL skips to the Sync; pgtwist drops
   what it owed for the skipped messages and undoes, newest first, what
   they changed. A pipelined batch that names a statement an earlier,
   still unanswered batch parsed or closed waits for that answer.

Bytes are relayed in spans: a chunk of backend messages is written with one
write, minus what is swallowed; DataRows are never looked at beyond their
header.
"""

from __future__ import annotations

import itertools
import random
import struct
from collections import deque
from typing import Any

from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from zope.interface import implementer

from pgtwist.backend import effectiveParameters, quoteIdentifier, quoteLiteral
from pgtwist.config.model import Configuration
from pgtwist.interfaces import (
    IBackendLink,
    IBackendPool,
    IFrontendLink,
    IPipeline,
    IPipelineSession,
)
from pgtwist.pipelines._settings import (
    ClientSettings,
    resetsStatements,
    sessionFeature,
    splitStartupSettings,
    syncStatements,
)
from pgtwist.pipelines._statements import (
    PREFIX,
    STALE,
    StatementKey,
    StatementRegistry,
    remember,
    renameBind,
    splitName,
)
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.messages import (
    Bind,
    Close,
    CloseComplete,
    ErrorResponse,
    Execute,
    NoticeResponse,
    Parse,
    ParseComplete,
    ReadyForQuery,
)

_HEADER = struct.Struct("!ci")
_LENGTH = struct.Struct("!i")

# What a request waits for.
_PARSE = 1  # ParseComplete
_BIND = 2  # BindComplete
_DESCRIBE_STATEMENT = 3  # ParameterDescription, then RowDescription or NoData
_DESCRIBE_PORTAL = 4  # RowDescription or NoData
_EXECUTE = 5  # rows..., then CommandComplete, EmptyQueryResponse or PortalSuspended
_CLOSE = 6  # CloseComplete
_SYNC = 7  # ReadyForQuery
_QUERY = 8  # anything, until ReadyForQuery (simple query, FunctionCall)
_FAKE = 9  # nothing: pgtwist sends C{data} itself when this entry comes up

_PARSE_COMPLETE = codec.encode(ParseComplete())
_READY_IDLE = codec.encode(ReadyForQuery(constants.TRANSACTION_IDLE))
_CLOSE_COMPLETE = codec.encode(CloseComplete())

_EXTENDED = frozenset({_PARSE, _BIND, _DESCRIBE_STATEMENT, _DESCRIBE_PORTAL, _EXECUTE, _CLOSE})
_ENDS = {
    _PARSE: constants.PARSE_COMPLETE,
    _BIND: constants.BIND_COMPLETE,
    _CLOSE: constants.CLOSE_COMPLETE,
}
_DESCRIBE_ENDS = frozenset({constants.ROW_DESCRIPTION, constants.NO_DATA})
_EXECUTE_ENDS = frozenset(
    {constants.COMMAND_COMPLETE, constants.EMPTY_QUERY_RESPONSE, constants.PORTAL_SUSPENDED}
)
_PASSTHROUGH = frozenset(
    {constants.COPY_DATA, constants.COPY_DONE, constants.COPY_FAIL, constants.FLUSH}
)
_CACHED_PLAN = "cached plan must not change result type"
_UNDEFINED_STATEMENT = "26000"  # invalid_sql_statement_name
_DUPLICATE_STATEMENT = "42P05"  # duplicate_prepared_statement
# The backend's own unnamed statement is pgtwist's (see _raise): a client
# without one must get PostgreSQL's error, never pgtwist's statement.
_NO_UNNAMED = "unnamed prepared statement does not exist"
_RAISE_PORTAL = PREFIX + "RAISE"


class _Expect:
    """
    One entry of the expected-responses queue.

    @ivar forward: Whether the responses go to the client (C{False}: pgtwist
        asked, pgtwist swallows).
    @ivar name: The server-side statement concerned, if any.
    @ivar client: The client statement name a Parse or Close entry
        registered or removed (to undo it if PostgreSQL skips the message).
    @ivar key: The statement key of a Parse (to mark it verified), the one
        removed by a client Close (to restore), or for pgtwist's Close of a
        stale statement, that statement's (skipped, the statement is still
        there, still stale).
    @ivar data: For C{_FAKE}: the bytes to send.
    @ivar copyEnds: For Query, Execute and Sync: how many CopyDone/CopyFail
        the client had sent before this message (PostgreSQL ignores a Sync
        sent between a COPY FROM STDIN and its end).
    @ivar previous: For a client Parse: the statement the client name stood
        for before (the unnamed statement survives a skipped Parse).
    """

    __slots__ = ("kind", "forward", "name", "client", "key", "data", "copyEnds", "previous")

    def __init__(
        self,
        kind: int,
        forward: bool = True,
        name: str | None = None,
        client: str | None = None,
        key: StatementKey | None = None,
        data: bytes = b"",
        copyEnds: int = 0,
        previous: StatementKey | None = None,
    ) -> None:
        self.kind = kind
        self.forward = forward
        self.name = name
        self.client = client
        self.key = key
        self.data = data
        self.copyEnds = copyEnds
        self.previous = previous

    def __repr__(self) -> str:
        return f"<_Expect {self.kind} forward={self.forward} name={self.name}>"


def _warning(feature: str) -> bytes:
    notice = NoticeResponse(
        errors.errorResponse(
            constants.SEVERITY_WARNING,
            "01000",
            f"pgtwist: {feature} do not survive the transaction in transaction pooling",
            detail="The next transaction of this client may run on another PostgreSQL "
            "connection, and this one may serve another client.",
            hint="Use a session pool for this client (pipeline = session).",
        ).fields
    )
    return codec.encode(notice)


def _canReset(sql: bytes, status: bytes) -> bool:
    """
    Whether C{DEALLOCATE ALL} or C{DISCARD ALL} will succeed: nothing runs
    in a failed transaction, and C{DISCARD ALL} not inside a transaction
    block at all.
    """
    if status == constants.TRANSACTION_FAILED:
        return False
    return status == constants.TRANSACTION_IDLE or sql.lstrip()[:7].upper() != b"DISCARD"


@implementer(IPipelineSession)
class TransactionPipelineSession:
    """
    Transaction-mode policy for one client.
    """

    log = Logger()

    def __init__(
        self,
        frontend: IFrontendLink,
        pool: IBackendPool,
        clock: Any,
        registry: StatementRegistry,
        maxPrepared: int,
    ) -> None:
        self.frontend = frontend
        self.pool = pool
        self.clock = clock
        self.registry = registry
        self.maxPrepared = maxPrepared
        self.backend: IBackendLink | None = None
        self.settings = ClientSettings({}, {})
        self.statements: dict[str, StatementKey] = {}
        self._expected: deque[_Expect] = deque()
        self._held = b""
        self._carry = b""
        self._unsynced = False
        self._discarding = False
        self._copyIn = False
        self._copyEnds = 0
        # Syncs relayed so far, and for each client statement name the batch
        # (Sync count) of each change to it PostgreSQL has not confirmed yet.
        self._syncs = 0
        self._unsettled: dict[str, deque[int]] = {}
        self._waiting = False
        self._fatalSeen = False
        self._done = False
        self._loggedIn = False
        self._acquiring: Any = None

    # -- login ------------------------------------------------------------------

    def begin(self) -> None:
        """
        Borrow a backend once to apply the client's startup settings and learn
        the ParameterStatus values to report; give it back at once.
        """
        try:
            self._startup = effectiveParameters(self.frontend.startupParameters)
        except ValueError as e:
            self._done = True
            self.frontend.fail(errors.fatal(constants.SQLSTATE_PROTOCOL_VIOLATION, str(e)))
            return
        self.frontend.pauseReading()
        d = self._acquiring = self.pool.acquire(self.frontend.key, None)
        d.addCallbacks(self._cbLoginBackend, self._ebAcquired)

    def _cbLoginBackend(self, backend: IBackendLink) -> None:
        self._acquiring = None
        if self._done:
            self.pool.release(backend, reset=False)
            return
        statements = ["RESET ALL"] + [
            f"SET {quoteIdentifier(name)} = {quoteLiteral(value)}" for name, value in self._startup
        ]
        query: Any = backend
        query.simpleQuery("; ".join(statements)).addCallbacks(
            self._cbLoginSettings,
            self._ebLoginSettings,
            callbackArgs=(backend,),
            errbackArgs=(backend,),
        )

    def _cbLoginSettings(self, error: ErrorResponse | None, backend: IBackendLink) -> None:
        if error is not None:
            self.pool.release(backend, reset=False)
            if not self._done:
                self._done = True
                self.frontend.fail(
                    ErrorResponse(
                        tuple(
                            (code, constants.SEVERITY_FATAL if code in (b"S", b"V") else value)
                            for code, value in error.fields
                        )
                    )
                )
            return
        unreported = splitStartupSettings(self._startup, backend.parameters)
        self.settings = ClientSettings(backend.parameters, unreported)
        backend.applied.clear()
        backend.applied.update(unreported)
        backend.settingsFingerprint = self.settings.fingerprint
        self.pool.release(backend, reset=False)
        if self._done:
            return
        self._loggedIn = True
        self.frontend.completeLogin(self.settings.reported, random.getrandbits(31) or 1)

    def _ebLoginSettings(self, reason: Failure, backend: IBackendLink) -> None:
        self.pool.discard(backend, reason.getErrorMessage())
        if not self._done:
            self._done = True
            self.frontend.failFromPool(reason)

    # -- acquiring per transaction ------------------------------------------------

    def _acquire(self) -> None:
        self.frontend.pauseReading()
        d = self._acquiring = self.pool.acquire(self.frontend.key, None)
        d.addCallbacks(self._cbAcquired, self._ebAcquired)

    def _cbAcquired(self, backend: IBackendLink) -> None:
        self._acquiring = None
        if self._done:
            self.pool.release(backend, reset=False)
            return
        self.backend = backend
        backend.attach(self, self.frontend)
        self.frontend.setCancelTarget(backend)
        out: list[bytes] = []
        if backend.settingsFingerprint != self.settings.fingerprint:
            statements, applied = syncStatements(self.settings, backend.parameters, backend.applied)
            if statements:
                out.append(codec.frame(constants.QUERY, codec.encodeString("; ".join(statements))))
                self._expected.append(_Expect(_QUERY, forward=False))
            backend.applied.clear()
            backend.applied.update(applied)
            backend.settingsFingerprint = self.settings.fingerprint
        held, self._held = self._held, b""
        self._relayFrontend(held, out)
        if not self._done and not self._waiting:
            self.frontend.resumeReading()

    def _ebAcquired(self, reason: Failure) -> None:
        self._acquiring = None
        if self._done:
            return
        self._done = True
        self.frontend.failFromPool(reason)

    # -- client to PostgreSQL --------------------------------------------------------

    def frontendDataReceived(self, data: bytes) -> None:
        """
        Relay client messages, rewriting statement names; borrow a backend
        first when none is attached.
        """
        if self._held:
            data = self._held + data
            self._held = b""
        if self.backend is None:
            if self._done or self._acquiring is not None:
                self._held = data
                return
            try:
                offset = self._answerLocally(data)
            except (ProtocolViolation, ValueError) as e:
                violation = e if isinstance(e, ProtocolViolation) else ProtocolViolation(str(e))
                self._protocolViolation(violation)
                return
            self._held = data[offset:]
            if self._held and not self._done and self._needsBackend(self._held):
                self._acquire()
            return
        if self._waiting:
            self._held = data
            return
        self._relayFrontend(data, [])

    def _needsBackend(self, held: bytes) -> bool:
        """
        Whether C{held} starts with a complete message only a backend can answer.
        """
        if len(held) < 5:
            return False
        length: int = _LENGTH.unpack_from(held, 1)[0]
        return len(held) >= 1 + length

    def _answerLocally(self, data: bytes) -> int:
        """
        Between transactions, answer what needs no backend: Parse of a
        statement PostgreSQL already accepted, Close of a statement, Flush,
        Sync, Terminate. This is what keeps a client that prepares a
        statement (libpq's PQprepare blocks) from waiting for a backend while
        others hold them all. Returns where the first message needing a
        backend starts.
        """
        size = len(data)
        offset = 0
        replies: list[bytes] = []
        while size - offset >= 5:
            type, length = _HEADER.unpack_from(data, offset)
            if length < 4:
                raise ProtocolViolation(f"invalid message length {length}")
            end = offset + 1 + length
            if end > size:
                break
            if type == constants.TERMINATE:
                if replies:
                    self.frontend.write(b"".join(replies))
                self._finish()
                self.frontend.fail(None)
                return size
            if type == constants.PARSE:
                parse: Any = codec.decodeFrontend(type, data[offset + 5 : end])
                key = StatementKey(parse.query, parse.parameterTypes, self.settings.searchPath)
                if key not in self.registry.verified or (
                    parse.name and parse.name in self.statements
                ):
                    break
                self.statements[parse.name] = key
                self._unsynced = True
                feature = sessionFeature(parse.query.encode())
                if feature is not None:
                    replies.append(_warning(feature))
                replies.append(_PARSE_COMPLETE)
            elif type == constants.CLOSE and data[offset + 5 : offset + 6] == b"S":
                name, _ = splitName(data, offset + 6)
                self.statements.pop(name, None)
                self._unsynced = True
                replies.append(_CLOSE_COMPLETE)
            elif type == constants.SYNC:
                self._unsynced = False
                replies.append(_READY_IDLE)
            elif type != constants.FLUSH:
                break
            offset = end
        if replies:
            self.frontend.write(b"".join(replies))
        return offset

    def _relayFrontend(self, data: bytes, out: list[bytes]) -> None:
        backend = self.backend
        assert backend is not None
        expected = self._expected
        size = len(data)
        offset = spanStart = 0
        terminate = False
        try:
            while size - offset >= 5:
                type, length = _HEADER.unpack_from(data, offset)
                if length < 4:
                    raise ProtocolViolation(f"invalid message length {length}")
                end = offset + 1 + length
                if end > size:
                    break
                if type in _PASSTHROUGH:
                    if type == constants.COPY_DONE or type == constants.COPY_FAIL:
                        self._copyEnds += 1
                        self._copyIn = False
                elif type == constants.QUERY:
                    # After an error in an extended batch PostgreSQL skips
                    # a Query too, up to the Sync.
                    if not self._discarding:
                        body = data[offset + 5 : end]
                        feature = sessionFeature(body)
                        if feature is not None:
                            self._fake(_warning(feature))
                        if resetsStatements(body) and _canReset(body, backend.transactionStatus):
                            self._resetStatements()
                        expected.append(_Expect(_QUERY, copyEnds=self._copyEnds))
                elif type == constants.SYNC:
                    # During COPY FROM STDIN PostgreSQL ignores Sync.
                    if not self._copyIn:
                        expected.append(_Expect(_SYNC, copyEnds=self._copyEnds))
                        self._syncs += 1
                        self._unsynced = False
                        self._discarding = False
                elif type == constants.EXECUTE:
                    self._unsynced = True
                    if not self._discarding:
                        expected.append(_Expect(_EXECUTE, copyEnds=self._copyEnds))
                elif type in (
                    constants.PARSE,
                    constants.BIND,
                    constants.DESCRIBE,
                    constants.CLOSE,
                ):
                    if not self._discarding:
                        if self._unsettled and self._mustWait(type, data[offset + 5 : end]):
                            self._waiting = True
                            self.frontend.pauseReading()
                            break
                        if spanStart < offset:
                            out.append(data[spanStart:offset])
                        spanStart = end
                        self._extended(type, data[offset + 5 : end], out)
                    self._unsynced = True
                elif type == constants.FUNCTION_CALL:
                    if not self._discarding:
                        expected.append(_Expect(_QUERY))
                elif type == constants.TERMINATE:
                    terminate = True
                    break
                else:
                    raise ProtocolViolation(f"invalid frontend message type {type[0]}")
                offset = end
        except (ProtocolViolation, ValueError) as e:
            violation = e if isinstance(e, ProtocolViolation) else ProtocolViolation(str(e))
            self._protocolViolation(violation)
            return
        if spanStart < offset:
            out.append(data[spanStart:offset])
        if offset < size and not terminate:
            self._held = data[offset:]
        if out:
            backend.write(b"".join(out))
        if terminate:
            self._finish()
            # PostgreSQL closes the connection on Terminate; so do we.
            self.frontend.fail(None)
        elif self._releasable():
            self._release()

    def _fake(self, data: bytes) -> None:
        """
        Owe the client C{data} at the current position of the response stream.
        """
        if self._expected:
            self._expected.append(_Expect(_FAKE, data=data))
        else:
            self.frontend.write(data)

    def _resetStatements(self) -> None:
        """
        C{DEALLOCATE ALL} or C{DISCARD ALL}: PostgreSQL drops every named
        statement of the backend (pgtwist's included); of the client's, only
        the unnamed one survives.
        """
        backend = self.backend
        assert backend is not None
        unnamed = self.statements.get("")
        self.statements.clear()
        if unnamed is not None:
            self.statements[""] = unnamed
        backend.prepared.clear()

    def _queueChange(self, entry: _Expect) -> None:
        """
        Expect the response to a message that changes the client statement
        C{entry.client} (if any) unless PostgreSQL skips it.
        """
        self._expected.append(entry)
        if entry.client is not None:
            self._unsettled.setdefault(entry.client, deque()).append(self._syncs)

    def _settled(self, entry: _Expect) -> None:
        """
        PostgreSQL ran or skipped the message behind C{entry}.
        """
        if entry.client is not None and (entry.kind == _PARSE or entry.kind == _FAKE):
            batches = self._unsettled.get(entry.client)
            if batches:
                batches.popleft()
                if not batches:
                    del self._unsettled[entry.client]

    def _mustWait(self, type: bytes, body: bytes) -> bool:
        """
        Whether the statement a Parse, Bind, Describe or Close names was
        changed by an earlier batch whose outcome is not known yet: an error
        there makes PostgreSQL skip the change, so the name may mean
        something else (or nothing); the message waits for the answer.
        """
        try:
            if type == constants.BIND:
                name, _ = splitName(body, body.index(b"\x00") + 1)
            elif type == constants.PARSE:
                name, _ = splitName(body)
            elif body[:1] == b"S":
                name, _ = splitName(body, 1)
            else:
                return False
        except ValueError:
            return False
        batches = self._unsettled.get(name)
        return batches is not None and batches[0] < self._syncs

    def _resumeIfSettled(self) -> None:
        """
        Relay what waited behind an earlier batch once that batch settled.
        """
        held = self._held
        if len(held) >= 5:
            type, length = _HEADER.unpack_from(held, 0)
            if self._mustWait(type, held[5 : 1 + length]):
                return
        self._waiting = False
        self._held = b""
        self.frontend.resumeReading()
        self._relayFrontend(held, [])

    def _extended(self, type: bytes, body: bytes, out: list[bytes]) -> None:
        backend = self.backend
        assert backend is not None
        expected = self._expected
        if type == constants.PARSE:
            parse: Any = codec.decodeFrontend(type, body)
            if parse.name and parse.name in self.statements:
                message = f'prepared statement "{parse.name}" already exists'
                self._raise(out, _DUPLICATE_STATEMENT, message)
                return
            feature = sessionFeature(parse.query.encode())
            if feature is not None:
                self._fake(_warning(feature))
            key = StatementKey(parse.query, parse.parameterTypes, self.settings.searchPath)
            server = self.registry.nameFor(key)
            previous = self.statements.get(parse.name)
            self.statements[parse.name] = key
            if backend.prepared.get(server) is True:
                backend.prepared.move_to_end(server)
                if expected:
                    self._queueChange(
                        _Expect(_FAKE, client=parse.name, data=_PARSE_COMPLETE, previous=previous)
                    )
                else:
                    self.frontend.write(_PARSE_COMPLETE)
            else:
                self._prepare(out, server, key, True, parse.name, previous)
        elif type == constants.BIND:
            portalEnd = body.index(b"\x00") + 1
            name, _ = splitName(body, portalEnd)
            key = self.statements.get(name)  # type: ignore[assignment]
            if key is None:
                if not name:
                    self._raise(out, _UNDEFINED_STATEMENT, _NO_UNNAMED)
                    return
                out.append(codec.frame(type, body))
                expected.append(_Expect(_BIND))
                return
            server = self.registry.nameFor(key)
            self._ensurePrepared(out, server, key)
            out.append(codec.frame(type, renameBind(body, server)))
            expected.append(_Expect(_BIND, name=server, key=key))
            if resetsStatements(key.query.encode()) and _canReset(
                key.query.encode(), backend.transactionStatus
            ):
                self._resetStatements()
        elif type == constants.DESCRIBE:
            kind = body[:1]
            if kind != b"S":
                out.append(codec.frame(type, body))
                expected.append(_Expect(_DESCRIBE_PORTAL))
                return
            name, _ = splitName(body, 1)
            key = self.statements.get(name)  # type: ignore[assignment]
            if key is None:
                if not name:
                    self._raise(out, _UNDEFINED_STATEMENT, _NO_UNNAMED)
                    return
                out.append(codec.frame(type, body))
                expected.append(_Expect(_DESCRIBE_STATEMENT))
                return
            server = self.registry.nameFor(key)
            self._ensurePrepared(out, server, key)
            out.append(codec.frame(type, b"S" + codec.encodeString(server)))
            expected.append(_Expect(_DESCRIBE_STATEMENT, name=server, key=key))
        else:  # Close
            kind = body[:1]
            if kind != b"S":
                out.append(codec.frame(type, body))
                expected.append(_Expect(_CLOSE))
                return
            name, _ = splitName(body, 1)
            removed = self.statements.pop(name, None)
            if expected:
                self._queueChange(_Expect(_FAKE, client=name, key=removed, data=_CLOSE_COMPLETE))
            else:
                self.frontend.write(_CLOSE_COMPLETE)

    def _ensurePrepared(self, out: list[bytes], server: str, key: StatementKey) -> None:
        backend = self.backend
        assert backend is not None
        state = backend.prepared.get(server)
        if state is True:
            backend.prepared.move_to_end(server)
            return
        self._prepare(out, server, key, forward=False)

    def _prepare(
        self,
        out: list[bytes],
        server: str,
        key: StatementKey,
        forward: bool,
        client: str | None = None,
        previous: StatementKey | None = None,
    ) -> None:
        backend = self.backend
        assert backend is not None
        if backend.prepared.get(server) is STALE:
            # PostgreSQL still holds it: close it before preparing it again.
            del backend.prepared[server]
            out.append(codec.encode(Close(b"S", server)))
            self._expected.append(_Expect(_CLOSE, forward=False, name=server, key=key))
        out.append(codec.encode(Parse(server, key.query, key.parameterTypes)))
        self._queueChange(
            _Expect(_PARSE, forward=forward, name=server, client=client, key=key, previous=previous)
        )
        for evicted in remember(backend.prepared, server, self.maxPrepared):
            out.append(codec.encode(Close(b"S", evicted)))
            self._expected.append(_Expect(_CLOSE, forward=False, name=evicted))

    def _raise(self, out: list[bytes], sqlstate: str, message: str) -> None:
        """
        Make PostgreSQL itself raise an error at this point of the batch, so
        that it skips to the next Sync and fails an open transaction exactly
        as it would have for the client's own message.
        """
        text = message.replace("'", "''")
        block = (
            "DO $pgtwist$BEGIN RAISE EXCEPTION USING ERRCODE = '"
            + sqlstate
            + "', MESSAGE = '"
            + text
            + "'; END$pgtwist$"
        )
        # A portal of pgtwist's own: the client's unnamed one stays as it was.
        out.append(codec.encode(Parse("", block)))
        out.append(codec.encode(Bind(_RAISE_PORTAL, "")))
        out.append(codec.encode(Execute(_RAISE_PORTAL)))
        self._expected.append(_Expect(_PARSE, forward=False))
        self._expected.append(_Expect(_BIND, forward=False))
        self._expected.append(_Expect(_EXECUTE))

    # -- PostgreSQL to client ----------------------------------------------------------

    def backendDataReceived(self, data: bytes) -> None:
        """
        Relay responses, swallowing those pgtwist caused and inserting those
        it owes, then give the backend back at the end of a transaction.
        """
        if self._carry:
            data = self._carry + data
            self._carry = b""
        expected = self._expected
        out: list[bytes] = []
        size = len(data)
        offset = spanStart = 0
        while size - offset >= 5:
            type, length = _HEADER.unpack_from(data, offset)
            if length < 4:
                self._protocolViolation(
                    ProtocolViolation(
                        f"server sent an invalid message length {length}",
                        constants.SQLSTATE_CONNECTION_FAILURE,
                    )
                )
                return
            end = offset + 1 + length
            if end > size:
                break
            if type == constants.DATA_ROW and expected and expected[0].forward:
                offset = end
                continue
            keep, popped = self._response(type, data, offset, end)
            if not keep:
                if spanStart < offset:
                    out.append(data[spanStart:offset])
                spanStart = end
            if popped and expected and expected[0].kind == _FAKE:
                if spanStart < end:
                    out.append(data[spanStart:end])
                spanStart = end
                while expected and expected[0].kind == _FAKE:
                    fake = expected.popleft()
                    self._settled(fake)
                    out.append(fake.data)
            offset = end
        if spanStart < offset:
            out.append(data[spanStart:offset])
        if offset < size:
            self._carry = data[offset:]
        if out:
            self.frontend.write(b"".join(out))
        if self._waiting and self.backend is not None:
            self._resumeIfSettled()
        if self._releasable():
            self._release()

    def _response(self, type: bytes, data: bytes, offset: int, end: int) -> tuple[bool, bool]:
        """
        Account for one backend message; return (forward it, an entry ended).
        """
        backend = self.backend
        assert backend is not None
        expected = self._expected
        head = expected[0] if expected else None
        if type == constants.NOTICE_RESPONSE or type == constants.NOTIFICATION_RESPONSE:
            return head is None or head.forward, False
        if type == constants.PARAMETER_STATUS:
            status: Any = codec.decodeBackend(type, data[offset + 5 : end])
            backend.parameters[status.name] = status.value
            if head is not None and not head.forward and head.kind == _QUERY:
                return False, False
            self.settings.update(status.name, status.value)
            backend.settingsFingerprint = self.settings.fingerprint
            return True, False
        if type == constants.ERROR_RESPONSE:
            return self._error(codec.decodeBackend(type, data[offset + 5 : end]), head)  # type: ignore[arg-type]
        if head is None:
            self.log.warn(
                "Unexpected message {type!r} from backend {backendPid}",
                type=type,
                backendPid=backend.processId,
            )
            return True, False
        kind = head.kind
        if type == constants.COPY_IN_RESPONSE and (kind == _QUERY or kind == _EXECUTE):
            self._startCopyIn(head)
        if type == constants.READY_FOR_QUERY:
            backend.transactionStatus = data[offset + 5 : end]
            if kind == _SYNC or kind == _QUERY:
                expected.popleft()
                return head.forward, True
            self.log.warn("ReadyForQuery while waiting for {kind}", kind=kind)
            return True, False
        if kind == _QUERY:
            return head.forward, False
        if kind == _EXECUTE:
            if type in _EXECUTE_ENDS:
                expected.popleft()
                return head.forward, True
            return head.forward, False
        if kind == _DESCRIBE_STATEMENT or kind == _DESCRIBE_PORTAL:
            if type in _DESCRIBE_ENDS:
                expected.popleft()
                return head.forward, True
            return head.forward, False
        if _ENDS.get(kind) == type:
            expected.popleft()
            if kind == _PARSE:
                self._settled(head)
                if head.key is not None:
                    self.registry.verified.add(head.key)
            return head.forward, True
        self.log.warn(
            "Backend {backendPid} sent {type!r} while pgtwist expected {kind}",
            backendPid=backend.processId,
            type=type,
            kind=kind,
        )
        return True, False

    def _startCopyIn(self, head: _Expect) -> None:
        """
        PostgreSQL entered COPY FROM STDIN for C{head}: until the client's
        CopyDone or CopyFail it ignores Sync (libpq and pg8000 send one after
        Execute, and another after CopyDone), so no ReadyForQuery comes for
        the Syncs sent in between.
        """
        if self._copyEnds == head.copyEnds:
            self._copyIn = True
        expected = self._expected
        ignored = []
        for entry in itertools.islice(expected, 1, None):
            if entry.kind == _SYNC and entry.copyEnds == head.copyEnds:
                ignored.append(entry)
            elif entry.kind != _FAKE:
                break
        for entry in ignored:
            expected.remove(entry)
        if ignored and not any(entry.kind == _SYNC for entry in expected):
            self._unsynced = True

    def _error(self, error: ErrorResponse, head: _Expect | None) -> tuple[bool, bool]:
        # An error ends COPY FROM STDIN, if one was running.
        self._copyIn = False
        if error.severity in (constants.SEVERITY_FATAL, constants.SEVERITY_PANIC):
            self._fatalSeen = True
            return True, False
        if head is None:
            return True, False
        if head.kind == _QUERY:
            if not head.forward:
                self.log.warn(
                    "Re-applying the settings of a client failed: {sqlstate} {message}",
                    sqlstate=error.code,
                    message=error.message,
                )
            return head.forward, False
        if head.kind not in _EXTENDED and head.kind != _FAKE:
            return True, False
        # PostgreSQL now skips every message up to the next Sync: so must we.
        backend = self.backend
        assert backend is not None
        expected = self._expected
        expected.popleft()
        skipped = []
        while expected and expected[0].kind != _SYNC:
            skipped.append(expected.popleft())
        # Undo in reverse, so that each change is undone onto the state it
        # was made on.
        for entry in reversed(skipped):
            self._undo(entry)
            self._settled(entry)
        self._undo(head, failed=True)
        self._settled(head)
        if error.code == constants.SQLSTATE_FEATURE_NOT_SUPPORTED and head.name:
            if error.message == _CACHED_PLAN:
                # Every backend that has it has the old shape: the key gets a
                # new server-side name, prepared afresh wherever it is used
                # next; this backend closes the old one when it next needs it.
                backend.prepared[head.name] = STALE
                if head.key is not None:
                    self.registry.forget(head.key, head.name)
        elif error.code == _UNDEFINED_STATEMENT and head.name and head.kind != _PARSE:
            # Gone behind pgtwist's back (SQL DEALLOCATE, DISCARD ALL through
            # the extended protocol), or its Parse in an earlier pipelined
            # batch was skipped: the next use prepares it again.
            backend.prepared.pop(head.name, None)
        elif error.code == _DUPLICATE_STATEMENT and head.name and head.kind == _PARSE:
            # There after all (a Close in an earlier pipelined batch was
            # skipped): the next use closes it and prepares it again.
            backend.prepared[head.name] = STALE
        if not expected:
            self._discarding = True
        return True, True

    def _undo(self, entry: _Expect, failed: bool = False) -> None:
        """
        PostgreSQL skipped the message behind C{entry} (or, C{failed}, it
        failed): forget what sending it changed.
        """
        backend = self.backend
        assert backend is not None
        if entry.kind == _PARSE and entry.name:
            backend.prepared.pop(entry.name, None)
            if entry.client is not None:
                # A failed Parse drops the unnamed statement; a skipped one
                # leaves the client's statement as it was.
                self._restore(entry.client, None if failed else entry.previous)
        elif entry.kind == _CLOSE and not entry.forward and entry.name:
            backend.prepared[entry.name] = STALE if entry.key is not None else True
        elif entry.kind == _FAKE:
            if entry.data == _PARSE_COMPLETE and entry.client is not None:
                self._restore(entry.client, entry.previous)
            elif entry.data == _CLOSE_COMPLETE and entry.client is not None and entry.key:
                self.statements[entry.client] = entry.key

    def _restore(self, client: str, key: StatementKey | None) -> None:
        """
        Make the client's statement C{client} C{key} again (C{None}: none).
        """
        if key is None:
            self.statements.pop(client, None)
        else:
            self.statements[client] = key

    # -- giving the backend back --------------------------------------------------------

    def _releasable(self) -> bool:
        backend = self.backend
        return (
            backend is not None
            and not self._expected
            and not self._unsynced
            and not self._carry
            and backend.transactionStatus == constants.TRANSACTION_IDLE
        )

    def _release(self) -> None:
        backend, self.backend = self.backend, None
        assert backend is not None
        backend.detach()
        self.frontend.setCancelTarget(None)
        self.pool.release(backend, reset=False)
        if self._held and not self._done:
            held, self._held = self._held, b""
            self.frontendDataReceived(held)

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._acquiring is not None:
            self._acquiring.cancel()
        backend, self.backend = self.backend, None
        if backend is not None:
            backend.detach()
            backend.clean = not self._expected and not self._unsynced and not self._carry
            self.frontend.setCancelTarget(None)
            self.pool.release(backend, reset=False)

    def frontendLost(self, reason: Failure) -> None:
        """
        See L{IPipelineSession.frontendLost}: a backend left inside a
        transaction is closed, never handed to someone else.
        """
        self._finish()

    def backendLost(self, reason: Failure) -> None:
        """
        See L{IPipelineSession.backendLost}.
        """
        self.backend = None
        self._done = True
        self.frontend.setCancelTarget(None)
        if self._fatalSeen:
            self.frontend.fail(None)
            return
        self.frontend.fail(
            errors.fatal(
                constants.SQLSTATE_CONNECTION_FAILURE,
                "server closed the connection unexpectedly",
                detail="The PostgreSQL backend running this transaction terminated.",
            )
        )

    def _protocolViolation(self, error: ProtocolViolation) -> None:
        backend, self.backend = self.backend, None
        self._done = True
        if backend is not None:
            backend.detach()
            self.pool.discard(backend, error.message)
        self.frontend.fail(error.toErrorResponse())


@implementer(IPlugin, IPipeline)
class TransactionPipeline:
    """
    The C{transaction} pipeline: a backend per transaction, with transparent
    prepared statements and session settings.
    """

    name = "transaction"
    description = (
        "A backend per transaction; prepared statements and session settings follow the client."
    )

    def __init__(self) -> None:
        self.registry = StatementRegistry()

    def checkConfiguration(self, config: Configuration) -> list[str]:
        """
        Transaction pooling works with every configuration.
        """
        return []

    def newSession(
        self, frontend: IFrontendLink, pool: IBackendPool, clock: Any
    ) -> IPipelineSession:
        """
        See L{IPipeline.newSession}.
        """
        config: Any = getattr(frontend, "configuration", None)
        limit = config.main.maxPreparedStatements if config is not None else 200
        return TransactionPipelineSession(frontend, pool, clock, self.registry, limit)
