# -*- test-case-name: tests.unit.test_pipeline_transaction_errors,tests.unit.test_pipeline_transaction_stale -*-
"""
The PostgreSQL-to-client half of the transaction pipeline: relaying
responses in spans, swallowing what pgtwist caused, synthesizing what it
owes, and keeping its record of statements right when PostgreSQL skips
messages after an error.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

from pgtwist.interfaces import IBackendLink, IFrontendLink, IPoolStats
from pgtwist.pipelines._expect import (
    _BIND,
    _CACHED_PLAN,
    _CLOSE,
    _CLOSE_COMPLETE,
    _DESCRIBE_ENDS,
    _DESCRIBE_PORTAL,
    _DESCRIBE_STATEMENT,
    _DUPLICATE_STATEMENT,
    _ENDS,
    _EXECUTE,
    _EXECUTE_ENDS,
    _EXTENDED,
    _FAKE,
    _LOST_TYPE,
    _PARSE,
    _PARSE_COMPLETE,
    _QUERY,
    _SYNC,
    _UNDEFINED_STATEMENT,
    _Expect,
)
from pgtwist.pipelines._settings import RESETS, ClientSettings
from pgtwist.pipelines._statements import STALE, StatementKey, StatementRegistry
from pgtwist.pipelines.serverstate import ServerSession
from pgtwist.wire import codec, constants
from pgtwist.wire.codec import HEADER
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.messages import Close, ErrorResponse
from pgtwist.wire.walker import MessageWalker, invalidLength

#: Messages relayed without accounting while the client's own request is
#: answered (see L{ResponseRelay.backendDataReceived}).
_RELAYED = frozenset({constants.DATA_ROW, constants.ROW_DESCRIPTION, constants.COMMAND_COMPLETE})
#: (entry kind, response type): the response that ends an entry and needs
#: no more than popping it (see L{ResponseRelay._response}).
_PLAIN_ENDS = frozenset(
    {(_BIND, constants.BIND_COMPLETE), (_CLOSE, constants.CLOSE_COMPLETE)}
    | {(_EXECUTE, type) for type in _EXECUTE_ENDS}
    | {(kind, type) for kind in (_DESCRIBE_STATEMENT, _DESCRIBE_PORTAL) for type in _DESCRIBE_ENDS}
)
#: The client messages a batch retried after a stale statement
#: (L{ResponseRelay._retryStale}) may hold from the failed one to its Sync.
_RETRIED = frozenset(
    {constants.BIND, constants.DESCRIBE, constants.EXECUTE, constants.CLOSE, constants.FLUSH}
)
#: Responses relayed in pieces when they run past a chunk: the header says
#: all pgtwist needs, and none ends what a request waits for.
_STREAMED = frozenset(
    {
        constants.DATA_ROW,
        constants.COPY_DATA,
        constants.NOTICE_RESPONSE,
        constants.NOTIFICATION_RESPONSE,
    }
)


class ResponseRelay:
    """
    Mixed into L{pgtwist.pipelines.transaction.TransactionPipelineSession}:
    everything that happens when the attached backend sends bytes.
    """

    log = Logger()

    if TYPE_CHECKING:
        frontend: IFrontendLink
        backend: IBackendLink | None
        registry: StatementRegistry
        settings: ClientSettings
        statements: dict[str, StatementKey]
        _expected: deque[_Expect]
        _fromServer: MessageWalker
        _fatalSeen: bool
        _discarding: bool
        _unsynced: bool
        _copyIn: Any
        _copyEnds: int
        _waiting: Any
        _queued: list[bytes]
        _fromClient: MessageWalker
        _fresh: bool
        _retryEntry: _Expect | None
        _retryFrom: bytes
        _retryAt: int
        stats: IPoolStats
        serverState: ServerSession
        clock: IReactorTime
        _queryStart: float
        _queriesOut: int

        _sessionCheck: int
        _listenWatch: bool
        _notes: list[bytes]
        _listenFailed: bool

        def _settled(self, entry: _Expect) -> None: ...
        def _checkAtReady(self, ready: bytes) -> bool: ...
        def _sessionRead(self, entry: _Expect) -> None: ...
        def _listenTag(self, tag: bytes) -> None: ...
        def _listenReady(self, status: bytes) -> None: ...
        def _listenError(self) -> None: ...
        def _resumeIfSettled(self) -> None: ...
        def _releasable(self) -> bool: ...
        def _release(self) -> None: ...
        def _protocolViolation(self, error: ProtocolViolation) -> None: ...
        def _serverViolation(self, error: ProtocolViolation) -> None: ...
        def _scanFrontend(self, data: bytes, offset: int, out: list[bytes]) -> int: ...

    def backendDataReceived(self, data: bytes) -> None:
        """
        Relay responses, swallowing those pgtwist caused and inserting those
        it owes, then give the backend back at the end of a transaction.
        """
        self.stats.bytesSent += len(data)
        expected = self._expected
        out: list[bytes] = []
        while expected and expected[0].kind == _FAKE:
            # Replies owed from before this backend answered (see
            # TransactionPipelineSession._cbAcquired): they lead this write.
            fake = expected.popleft()
            if fake.client is not None:
                self._settled(fake)
            out.append(fake.data)
        walker = self._fromServer
        try:
            if walker.atBoundary:
                # MessageWalker.walk's first step, without its call.
                stop = self._scanBackend(data, 0, out)
                if stop < len(data):
                    walker.tail(data, stop)
            else:
                walker.walk(data, self._scanBackend, out)
        except ProtocolViolation as e:
            # A length out of bounds, a ParameterStatus or ErrorResponse that
            # does not decode.
            self._serverViolation(e)
            return
        if out:
            self.frontend.write(b"".join(out))
        if self._waiting and self.backend is not None:
            self._resumeIfSettled()
        backend = self.backend
        if (
            backend is not None
            and not expected
            and not self._unsynced
            and walker.atBoundary
            and self._fromClient.atBoundary
            and backend.transactionStatus == constants.TRANSACTION_IDLE
        ):
            # _releasable, without its call: once per transaction.
            self._release()

    def _scanBackend(self, data: bytes, offset: int, out: list[bytes]) -> int:
        """
        Relay the responses of C{data} from C{offset} in spans (a
        L{MessageWalker.walk} scan). Rows, CopyData and notices that run
        past C{data} are passed on in pieces; other messages are held whole.
        """
        expected = self._expected
        size = len(data)
        spanStart = offset
        limit = self._fromServer.maxMessageLength
        # LISTEN pending: command tags are read (see _listenTag).
        watch = self._listenWatch
        while size - offset >= 5:
            type, length = HEADER.unpack_from(data, offset)
            if length < 4 or length > limit:
                raise invalidLength()
            end = offset + 1 + length
            if end > size and (type not in _STREAMED or expected and expected[0].rows is not None):
                # Held until whole (the state query's rows are read).
                break
            if type in _RELAYED and expected:
                # The bulk of every answer: relayed as it is, nothing to
                # account for (rows of anything; a simple query's row
                # description and command tag).
                head = expected[0]
                if head.forward and (
                    type == constants.DATA_ROW or head.kind == _QUERY and not watch
                ):
                    if end > size:
                        self._fromServer.passing(end - size)
                        offset = size
                        break
                    offset = end
                    continue
            if expected and not watch and expected[0].forward:
                # The end of a request (ReadyForQuery) or of an extended
                # message, relayed: _response's common cases without its
                # call (whole: neither is ever streamed).
                kind = expected[0].kind
                if type == constants.READY_FOR_QUERY:
                    plain = (
                        (kind == _SYNC or kind == _QUERY)
                        and not self._sessionCheck
                        and not self._notes
                    )
                    if plain:
                        self.backend.transactionStatus = data[offset + 5 : end]  # type: ignore[union-attr]
                        # The query's end, timed as in _response.
                        now = self.clock.seconds()
                        self.stats.addQuery(now - self._queryStart)
                        self._queryStart = now
                        if self._queriesOut:
                            self._queriesOut -= 1
                else:
                    plain = (kind, type) in _PLAIN_ENDS
                if plain:
                    expected.popleft()
                    keep = popped = True
                else:
                    keep, popped = self._response(type, data, offset, end)
            else:
                keep, popped = self._response(type, data, offset, end)
            if not keep:
                if spanStart < offset:
                    out.append(data[spanStart:offset])
                spanStart = end if end < size else size
            if end > size:
                # A streamed message never ends an entry: the rest follows.
                self._fromServer.passing(end - size, keep)
                offset = size
                break
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
        return offset

    def _response(self, type: bytes, data: bytes, offset: int, end: int) -> tuple[bool, bool]:
        """
        Account for one backend message; return (forward it, an entry ended).
        """
        backend = self.backend
        assert backend is not None
        expected = self._expected
        head = expected[0] if expected else None
        if type == constants.NOTICE_RESPONSE:
            return head is None or head.forward, False
        if type == constants.NOTIFICATION_RESPONSE:
            # The client's backend listens only until it goes back; the
            # listener backend hears the client's notifications.
            return False, False
        if type == constants.PARAMETER_STATUS:
            status: Any = codec.decodeBackend(type, data[offset + 5 : end])
            backend.parameters[status.name] = status.value
            if head is not None and not head.forward and head.kind == _QUERY:
                return False, False
            self.settings.update(status.name, status.value)
            self.serverState.fingerprint = self.settings.fingerprint
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
            if self._listenWatch and head.forward:
                self._listenReady(backend.transactionStatus)
            if kind == _SYNC or kind == _QUERY:
                expected.popleft()
                if head.forward:
                    # The query's end: its time since it was sent (or since
                    # the one pipelined before it was answered).
                    now = self.clock.seconds()
                    self.stats.addQuery(now - self._queryStart)
                    self._queryStart = now
                    if self._queriesOut:
                        self._queriesOut -= 1
                    if self._sessionCheck and not expected and self._checkAtReady(data[offset:end]):
                        # Held back until the session's state is read.
                        return False, True
                    if (
                        self._notes
                        and not expected
                        and backend.transactionStatus == constants.TRANSACTION_IDLE
                    ):
                        # Notifications held during the transaction go just
                        # before its ReadyForQuery, where PostgreSQL sends them.
                        notes, self._notes = self._notes, []
                        expected.appendleft(_Expect(_FAKE, data=b"".join(notes) + data[offset:end]))
                        return False, True
                elif head.rows is not None:
                    self._sessionRead(head)
                return head.forward, True
            self.log.warn("ReadyForQuery while waiting for {kind}", kind=kind)
            return True, False
        if kind == _QUERY:
            if type == constants.COMMAND_COMPLETE and self._listenWatch and head.forward:
                self._listenTag(data[offset + 5 : end - 1])
            if type == constants.DATA_ROW and head.rows is not None:
                values: Any = codec.decodeBackend(type, data[offset + 5 : end])
                head.rows.append(
                    tuple(codec.decodeText(v) if v is not None else None for v in values.values)
                )
            return head.forward, False
        if kind == _EXECUTE:
            if type in _EXECUTE_ENDS:
                if type == constants.COMMAND_COMPLETE and self._listenWatch:
                    self._listenTag(data[offset + 5 : end - 1])
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
                    self.registry.verify(self.frontend.key, head.key)
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
        if self._listenWatch:
            # What LISTEN/UNLISTEN the transaction ran is undone.
            self._listenError()
        if error.severity in (constants.SEVERITY_FATAL, constants.SEVERITY_PANIC):
            self._fatalSeen = True
            return True, False
        if head is None:
            return True, False
        if head.kind == _QUERY:
            if head.rows is not None:
                head.rows.append(None)
                self.log.warn(
                    "Reading the session state of a client failed: {sqlstate} {message}",
                    sqlstate=error.code,
                    message=error.message,
                )
            elif not head.forward:
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
        if _isStale(error, head):
            # A type or table it uses was dropped (and recreated) since it
            # was prepared: every backend that has it has it stale. The key
            # gets a new server-side name, prepared afresh wherever it is
            # used next; this backend closes the old one when it next needs
            # it (at once, to retry), the others as it ages out of theirs.
            assert head.name is not None and head.key is not None
            self.serverState.prepared[head.name] = STALE
            self.registry.forget(head.key, head.name)
            if head is self._retryEntry and self._retryStale(head, error):
                return False, True
        elif error.code == _UNDEFINED_STATEMENT and head.name and head.kind != _PARSE:
            # Gone behind pgtwist's back (SQL DEALLOCATE, DISCARD ALL through
            # the extended protocol), or its Parse in an earlier pipelined
            # batch was skipped: the next use prepares it again.
            self.serverState.prepared.pop(head.name, None)
        elif error.code == _DUPLICATE_STATEMENT and head.name and head.kind == _PARSE:
            # There after all (a Close in an earlier pipelined batch was
            # skipped): the next use closes it and prepares it again.
            self.serverState.prepared[head.name] = STALE
        if not expected:
            self._discarding = True
        return True, True

    def _retryStale(self, head: _Expect, error: ErrorResponse) -> bool:
        """
        The first Bind of a batch (C{head}) failed because its statement,
        which pgtwist prepared before on this backend, is stale: if nothing
        of the batch has run (the backend was outside a transaction block,
        and only Parse, Describe and Close of statements came before it,
        whose answers stand) and nothing after its Sync was sent, send the
        batch again from that Bind, as the client sent it: its statement is
        closed and prepared again first. PostgreSQL's error and the
        ReadyForQuery of the failed batch are swallowed.

        After "cached plan must not change result type" the Bind is retried
        only when the batch describes its portal before executing it: a
        client that reads rows with the description it got when it
        prepared the statement (asyncpg) must get PostgreSQL's error, and
        prepare again itself, as on its own connection.

        @return: Whether the batch is being retried.
        """
        self._retryEntry = None
        backend = self.backend
        assert backend is not None and head.name is not None and head.key is not None
        expected = self._expected
        if (
            backend.transactionStatus != constants.TRANSACTION_IDLE
            # (Its Bind dropped the client's statements: not one to resend.)
            or head.key.flags & RESETS
            or len(expected) != 1
            or expected[0].kind != _SYNC
            or not expected[0].forward
            or self._unsynced
            or self._copyIn
            or self._waiting
            or not self._fromClient.atBoundary
        ):
            return False
        described = error.code == constants.SQLSTATE_FEATURE_NOT_SUPPORTED
        batch = _batchFrom(self._retryFrom, self._retryAt, described)
        if batch is None:
            return False
        region, binds = batch
        self.log.info(
            "Statement {statement} was stale on backend {backendPid} ({sqlstate} {message}): "
            "prepared again, and the batch sent again",
            statement=head.name,
            backendPid=backend.processId,
            sqlstate=error.code,
            message=error.message,
        )
        # The failed batch's ReadyForQuery is pgtwist's now; the client gets
        # the retried one's.
        expected[0].forward = False
        self._retryFrom = b""
        out: list[bytes] = []
        if self.serverState.prepared.pop(head.name, None) is not None:
            out.append(codec.encode(Close(b"S", head.name)))
            expected.append(_Expect(_CLOSE, forward=False, name=head.name, key=head.key))
        # Counted when they first came.
        self.stats.bindCount -= binds
        # Retried once: the statement prepared now is not a candidate again.
        self._fresh = False
        stop = self._scanFrontend(region, 0, out)
        if stop < len(region):
            # Waits for something (see TransactionPipelineSession._clearFor).
            self._queued.insert(0, region[stop:])
        backend.write(b"".join(out))
        return True

    def _undo(self, entry: _Expect, failed: bool = False) -> None:
        """
        PostgreSQL skipped the message behind C{entry} (or, C{failed}, it
        failed): forget what sending it changed.
        """
        backend = self.backend
        assert backend is not None
        if entry.kind == _PARSE and entry.name:
            self.serverState.prepared.pop(entry.name, None)
            if entry.client is not None:
                # A failed Parse drops the unnamed statement; a skipped one
                # leaves the client's statement as it was.
                self._restore(entry.client, None if failed else entry.previous)
        elif entry.kind == _CLOSE and not entry.forward and entry.name:
            self.serverState.prepared[entry.name] = STALE if entry.key is not None else True
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


def _isStale(error: ErrorResponse, head: _Expect) -> bool:
    """
    Whether C{error}, the answer to C{head}, says that the statement of a
    Bind or Describe is stale: it uses a type or table dropped (and maybe
    recreated) since it was prepared. (PostgreSQL raises both at Bind or
    Describe, never at Execute: Bind revalidates the statement and looks
    up its parameter types, Describe its result.)
    """
    if head.key is None or not head.name:
        return False
    if head.kind != _BIND and head.kind != _DESCRIBE_STATEMENT:
        return False
    if error.code == constants.SQLSTATE_FEATURE_NOT_SUPPORTED:
        return error.message == _CACHED_PLAN
    return error.code == constants.SQLSTATE_INTERNAL_ERROR and error.message.startswith(_LOST_TYPE)


def _batchFrom(data: bytes, offset: int, described: bool) -> tuple[bytes, int] | None:
    """
    The client's messages from the Bind at C{offset} of C{data} up to and
    including the next Sync, and how many are Binds, if they are all there,
    and all Bind, Describe, Execute, Close or Flush: what a retry sends
    again (L{ResponseRelay._retryStale}). When the portal must be
    C{described}, C{None} too if an Execute comes before a Describe of it.
    """
    size = len(data)
    start = offset
    portal = None
    binds = 0
    while size - offset >= 5:
        type, length = HEADER.unpack_from(data, offset)
        end = offset + 1 + length
        if end > size:
            return None
        if type == constants.SYNC:
            return data[start:end], binds
        if type not in _RETRIED:
            return None
        if type == constants.BIND:
            binds += 1
        if described:
            if portal is None:
                portal = data[offset + 5 : data.index(b"\x00", offset + 5) + 1]
            elif type == constants.DESCRIBE and data[offset + 5 : end] == b"P" + portal:
                described = False
            elif type == constants.EXECUTE:
                return None
        offset = end
    return None
