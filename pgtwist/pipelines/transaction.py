# -*- test-case-name: tests.unit.test_pipeline_transaction -*-
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
   requests).

Bytes are relayed in spans: a chunk of backend messages is written with one
write, minus what is swallowed; DataRows are never looked at beyond their
header.
"""

from __future__ import annotations

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


class _Expect:
    """
    One entry of the expected-responses queue.

    @ivar forward: Whether the responses go to the client (C{False}: pgtwist
        asked, pgtwist swallows).
    @ivar name: The server-side statement concerned, if any.
    @ivar client: The client statement name a Parse or Close entry
        registered or removed (to undo it if PostgreSQL skips the message).
    @ivar key: The statement key of a Parse (to mark it verified), or the one
        removed by a client Close (to restore).
    @ivar data: For C{_FAKE}: the bytes to send.
    """

    __slots__ = ("kind", "forward", "name", "client", "key", "data")

    def __init__(
        self,
        kind: int,
        forward: bool = True,
        name: str | None = None,
        client: str | None = None,
        key: StatementKey | None = None,
        data: bytes = b"",
    ) -> None:
        self.kind = kind
        self.forward = forward
        self.name = name
        self.client = client
        self.key = key
        self.data = data

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
        if not self._done:
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
                    pass
                elif type == constants.QUERY:
                    body = data[offset + 5 : end]
                    feature = sessionFeature(body)
                    if feature is not None:
                        self._fake(_warning(feature))
                    if resetsStatements(body):
                        self.statements.clear()
                        backend.prepared.clear()
                    expected.append(_Expect(_QUERY))
                elif type == constants.SYNC:
                    expected.append(_Expect(_SYNC))
                    self._unsynced = False
                    self._discarding = False
                elif type == constants.EXECUTE:
                    self._unsynced = True
                    if not self._discarding:
                        expected.append(_Expect(_EXECUTE))
                elif type in (
                    constants.PARSE,
                    constants.BIND,
                    constants.DESCRIBE,
                    constants.CLOSE,
                ):
                    self._unsynced = True
                    if not self._discarding:
                        if spanStart < offset:
                            out.append(data[spanStart:offset])
                        spanStart = end
                        self._extended(type, data[offset + 5 : end], out)
                elif type == constants.FUNCTION_CALL:
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

    def _extended(self, type: bytes, body: bytes, out: list[bytes]) -> None:
        backend = self.backend
        assert backend is not None
        expected = self._expected
        if type == constants.PARSE:
            parse: Any = codec.decodeFrontend(type, body)
            if parse.name and parse.name in self.statements:
                self._raise(out, "42P05", f'prepared statement "{parse.name}" already exists')
                return
            key = StatementKey(parse.query, parse.parameterTypes, self.settings.searchPath)
            server = self.registry.nameFor(key)
            self.statements[parse.name] = key
            if backend.prepared.get(server) is True:
                backend.prepared.move_to_end(server)
                if expected:
                    expected.append(_Expect(_FAKE, client=parse.name, data=_PARSE_COMPLETE))
                else:
                    self.frontend.write(_PARSE_COMPLETE)
            else:
                self._prepare(out, server, key, forward=True, client=parse.name)
        elif type == constants.BIND:
            portalEnd = body.index(b"\x00") + 1
            name, _ = splitName(body, portalEnd)
            key = self.statements.get(name)  # type: ignore[assignment]
            if key is None:
                out.append(codec.frame(type, body))
                expected.append(_Expect(_BIND))
                return
            server = self.registry.nameFor(key)
            self._ensurePrepared(out, server, key)
            out.append(codec.frame(type, renameBind(body, server)))
            expected.append(_Expect(_BIND, name=server))
        elif type == constants.DESCRIBE:
            kind = body[:1]
            if kind != b"S":
                out.append(codec.frame(type, body))
                expected.append(_Expect(_DESCRIBE_PORTAL))
                return
            name, _ = splitName(body, 1)
            key = self.statements.get(name)  # type: ignore[assignment]
            if key is None:
                out.append(codec.frame(type, body))
                expected.append(_Expect(_DESCRIBE_STATEMENT))
                return
            server = self.registry.nameFor(key)
            self._ensurePrepared(out, server, key)
            out.append(codec.frame(type, b"S" + codec.encodeString(server)))
            expected.append(_Expect(_DESCRIBE_STATEMENT, name=server))
        else:  # Close
            kind = body[:1]
            if kind != b"S":
                out.append(codec.frame(type, body))
                expected.append(_Expect(_CLOSE))
                return
            name, _ = splitName(body, 1)
            removed = self.statements.pop(name, None)
            if expected:
                expected.append(_Expect(_FAKE, client=name, key=removed, data=_CLOSE_COMPLETE))
            else:
                self.frontend.write(_CLOSE_COMPLETE)

    def _ensurePrepared(self, out: list[bytes], server: str, key: StatementKey) -> None:
        backend = self.backend
        assert backend is not None
        state = backend.prepared.get(server)
        if state is True:
            backend.prepared.move_to_end(server)
            return
        if state is STALE:
            del backend.prepared[server]
            out.append(codec.encode(Close(b"S", server)))
            self._expected.append(_Expect(_CLOSE, forward=False))
        self._prepare(out, server, key, forward=False)

    def _prepare(
        self,
        out: list[bytes],
        server: str,
        key: StatementKey,
        forward: bool,
        client: str | None = None,
    ) -> None:
        backend = self.backend
        assert backend is not None
        out.append(codec.encode(Parse(server, key.query, key.parameterTypes)))
        self._expected.append(_Expect(_PARSE, forward=forward, name=server, client=client, key=key))
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
        out.append(codec.encode(Parse("", block)))
        out.append(codec.encode(Bind("", "")))
        out.append(codec.encode(Execute("")))
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
                    out.append(expected.popleft().data)
            offset = end
        if spanStart < offset:
            out.append(data[spanStart:offset])
        if offset < size:
            self._carry = data[offset:]
        if out:
            self.frontend.write(b"".join(out))
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
            if kind == _PARSE and head.key is not None:
                self.registry.verified.add(head.key)
            return head.forward, True
        self.log.warn(
            "Backend {backendPid} sent {type!r} while pgtwist expected {kind}",
            backendPid=backend.processId,
            type=type,
            kind=kind,
        )
        return True, False

    def _error(self, error: ErrorResponse, head: _Expect | None) -> tuple[bool, bool]:
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
        self._undo(head)
        if error.code == constants.SQLSTATE_FEATURE_NOT_SUPPORTED and head.name:
            if error.message == _CACHED_PLAN:
                # The next use closes and prepares it again, with the new shape.
                backend.prepared[head.name] = STALE
        while expected and expected[0].kind != _SYNC:
            self._undo(expected.popleft())
        if not expected:
            self._discarding = True
        return True, True

    def _undo(self, entry: _Expect) -> None:
        """
        PostgreSQL skipped the message behind C{entry}: forget what sending it
        changed.
        """
        backend = self.backend
        assert backend is not None
        if entry.kind == _PARSE and entry.name:
            backend.prepared.pop(entry.name, None)
            if entry.client is not None:
                self.statements.pop(entry.client, None)
        elif entry.kind == _CLOSE and not entry.forward and entry.name:
            backend.prepared[entry.name] = True
        elif entry.kind == _FAKE:
            if entry.data == _PARSE_COMPLETE and entry.client is not None and entry.key is None:
                self.statements.pop(entry.client, None)
            elif entry.data == _CLOSE_COMPLETE and entry.client is not None and entry.key:
                self.statements[entry.client] = entry.key

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
