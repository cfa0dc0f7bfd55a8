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
   pgtwist with ParseComplete; one that a type or table dropped and
   recreated made stale is prepared again, and the request retried when
   nothing of it has run (L{pgtwist.pipelines._responses});
 - B{session settings} the client made (startup parameters, anything
   PostgreSQL reports with ParameterStatus) are re-applied with SET on a
   backend whose values differ (L{pgtwist.pipelines._settings});
 - B{session state} the client changed itself (C{SET}, C{SET ROLE},
   C{set_config}, C{DISCARD}...): a transaction whose text may do so is
   followed, once it has ended, by one query that reads the backend's real
   state; the client's next backend is reset and given that state. A
   client whose session holds temporary tables, SQL prepared statements,
   C{WITH HOLD} cursors or session advisory locks keeps its backend
   (I{pinned}, with a WARNING) until they are gone;
 - B{LISTEN}: one listener backend per pool key listens for every client,
   and notifications are delivered between the client's transactions
   (L{pgtwist.pipelines._notify});
 - every response pgtwist caused is swallowed, and every response it owes is
   synthesized, at exactly the position the client expects: an I{expected}
   queue holds one entry per request, in order (PgBouncer's outstanding
   requests). After an error PostgreSQL skips to the Sync; pgtwist drops
   what it owed for the skipped messages and undoes, newest first, what
   they changed. A pipelined batch that names a statement an earlier,
   still unanswered batch parsed or closed waits for that answer.

Bytes are relayed in spans: a chunk of backend messages is written with one
write, minus what is swallowed; DataRows are never looked at beyond their
header. Both directions are walked by L{pgtwist.wire.walker.MessageWalker}:
rows, CopyData and other messages whose header says enough go on in the
pieces they arrive in, and only the messages pgtwist rewrites or decodes
are held whole (a Bind too long to hold is renamed from its start and
streamed).
"""

from __future__ import annotations

import secrets
from collections import deque
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
from pgtwist.pipelines._expect import (
    _BIND,
    _CLOSE_COMPLETE,
    _DESCRIBE_PORTAL,
    _EXECUTE,
    _EXTENDED_REQUESTS,
    _FAKE,
    _LOCAL,
    _PARSE,
    _PARSE_COMPLETE,
    _PASSTHROUGH,
    _QUERY,
    _READY_IDLE,
    _STREAMED,
    _SYNC,
    _canReset,
    _Expect,
)
from pgtwist.pipelines._listen import ListenTracker, refusalQuery
from pgtwist.pipelines._notify import MAX_CHANNELS, MAX_PENDING, NotifyHub
from pgtwist.pipelines._responses import ResponseRelay
from pgtwist.pipelines._rewrite import StatementRewriter
from pgtwist.pipelines._sessionstate import SessionStateTracker
from pgtwist.pipelines._settings import (
    _WORDS,
    LISTEN,
    NOTIFY,
    OBJECTS,
    RESETS,
    SETTINGS,
    ClientSettings,
    LoginCache,
    matchStatements,
    sessionFlags,
    splitStartupSettings,
    syncStatements,
)
from pgtwist.pipelines._statements import (
    StatementKey,
    StatementRegistry,
    splitName,
)
from pgtwist.pipelines.serverstate import ServerSession, serverSession
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.codec import HEADER
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.messages import (
    ErrorResponse,
)
from pgtwist.wire.sql import setConfig
from pgtwist.wire.startupsettings import effectiveParameters
from pgtwist.wire.walker import MessageWalker, invalidLength, tooLong

#: The output list of a walk whose scan writes nothing.
_UNUSED: list[bytes] = []
#: Sent to a backend a client ran LISTEN on, before it goes back.
_UNLISTEN_ALL = codec.frame(constants.QUERY, codec.encodeString("UNLISTEN *"))


def _parsedText(body: bytes) -> bytes:
    """
    The query text of a Parse message's C{body}.
    """
    start = body.find(b"\x00") + 1
    return body[start : body.find(b"\x00", start)]


@implementer(IPipelineSession)
class TransactionPipelineSession(
    StatementRewriter, ResponseRelay, SessionStateTracker, ListenTracker, PipelineSessionBase
):
    """
    Transaction-mode policy for one client.
    """

    log = Logger()
    lostDetail = "The PostgreSQL backend running this transaction terminated."

    def __init__(
        self,
        frontend: IFrontendLink,
        pool: IBackendPool,
        clock: IReactorTime,
        registry: StatementRegistry,
        maxPrepared: int,
        logins: LoginCache | None = None,
        notifyHub: NotifyHub | None = None,
        maxChannels: int = MAX_CHANNELS,
        maxPending: int = MAX_PENDING,
        resetAlways: bool = False,
    ) -> None:
        """
        @param resetAlways: C{server_reset_query_always}: every backend a
            client's transaction ran on is reset when given back, not only
            one whose session state the client changed.
        """
        self.frontend = frontend
        self.pool = pool
        self.clock = clock
        self.registry = registry
        self.stats = pool.statsFor(frontend.key)
        self._xactStart = 0.0
        #: When the oldest request still waiting for its ReadyForQuery was
        #: sent (or, pipelined, when the one before it was answered), and
        #: how many are waiting: a query's time is taken at its start and
        #: at its ReadyForQuery only (SHOW STATS' query time).
        self._queryStart = 0.0
        self._queriesOut = 0
        self.maxPrepared = maxPrepared
        self.logins = logins if logins is not None else LoginCache()
        self.backend: IBackendLink | None = None
        #: What is known of C{backend}'s session (see L{serverSession}).
        self.serverState = ServerSession(0)
        self.settings = ClientSettings({}, {})
        self.statements: dict[str, StatementKey] = {}
        self._expected: deque[_Expect] = deque()
        #: The client's and the server's messages, walked chunk by chunk.
        self._fromClient = MessageWalker()
        self._fromServer = MessageWalker()
        #: Client chunks not walked yet: they wait for a backend, or behind
        #: a message that waits for an earlier batch's answer (a list, not a
        #: deque: it is short, and an idle client's empty deque costs 760
        #: bytes).
        self._queued: list[bytes] = []
        self._pumping = False
        self._wantBackend = False
        self._terminate = False
        #: A Terminate waits for the answers to what came before it.
        self._closeWhenAnswered = False
        #: What goes to the next backend before the client's messages.
        self._preamble: list[bytes] = []
        self._unsynced = False
        #: The last Parse answered without a backend that changes nothing
        #: but the statement (no session word, no hint): its body, name and
        #: key, so that the same Parse again (a driver's unnamed statement
        #: every transaction) is not decoded again (L{_scanLocal}).
        self._localParse: tuple[bytes, str, StatementKey] | None = None
        #: The last Bind of a statement without session flags: its
        #: statement name as sent, as text, the key, the server-side name
        #: and that name encoded (see L{StatementRewriter._extended}).
        self._lastBind: tuple[bytes, str, StatementKey, str, bytes] | None = None
        self._discarding = False
        self._copyIn = False
        self._copyEnds = 0
        # Syncs relayed so far, and for each client statement name the batch
        # (Sync count) of each change to it PostgreSQL has not confirmed yet.
        self._syncs = 0
        self._unsettled: dict[str, deque[int]] = {}
        # Whether no Bind, Describe of a portal or Execute was walked since
        # the last Sync (or Query); the first Bind after it, and where the
        # client sent it: a statement gone stale there is prepared again
        # and the batch retried from it (see ResponseRelay._retryStale).
        self._fresh = True
        self._retryEntry: _Expect | None = None
        self._retryFrom = b""
        self._retryAt = 0
        self._waiting = False
        #: Replies owed from before the backend came (see L{_answerLocally}).
        self._owed = b""
        self._pausedForBackend = False
        self._fatalSeen = False
        self._done = False
        self._loggedIn = False
        self._acquiring: Deferred[IBackendLink] | None = None
        # Session state the client changed itself (SessionStateTracker).
        self._sessionCheck = 0
        self._objects: dict[str, int] = {}
        self.pinned = ""
        self._resetOnRelease = False
        self._resetAlways = resetAlways
        self._customs: set[str] | None = None
        #: The statement whose database the pool just cleared (see L{_clearFor}).
        self._cleared: bytes | None = None
        #: The pid the client got in its BackendKeyData.
        self.processId = secrets.randbits(31) or 1
        self.notifyHub = notifyHub if notifyHub is not None else NotifyHub()
        #: Backend pid -> client pid, for the pid of notifications.
        self._lent = self.notifyHub.lent
        self.maxPending = maxPending
        self._initListen(maxChannels)

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
        self._loginKey = (self.frontend.key, tuple(self._startup))
        known = self.logins.get(self._loginKey, self.clock.seconds())
        if known is not None:
            self.settings = known
            self._loggedIn = True
            self.frontend.completeLogin(self.settings.reported, self.processId)
            return
        self.frontend.pauseReading()
        d = self._acquiring = self.pool.acquire(self.frontend.key, None)
        d.addCallbacks(self._cbLoginBackend, self._ebAcquired)

    def _cbLoginBackend(self, backend: IBackendLink) -> None:
        self._acquiring = None
        if self._done:
            self.pool.release(backend, reset=False)
            return
        reset = ["RESET ALL"]
        if serverSession(backend).dirty:
            # A client may have left its role behind (RESET ALL keeps it).
            reset.append("RESET SESSION AUTHORIZATION; RESET ROLE")
        statements = reset + [setConfig(name, value) for name, value in self._startup]
        backend.simpleQuery("; ".join(statements)).addCallbacks(
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
                self.frontend.fail(errors.asFatal(error))
            return
        unreported = splitStartupSettings(self._startup, backend.parameters)
        self.settings = self.logins.put(
            self._loginKey, self.clock.seconds(), backend.parameters, unreported
        )
        state = serverSession(backend)
        state.applied.clear()
        state.applied.update(unreported)
        state.fingerprint = self.settings.fingerprint
        state.dirty = False
        self.pool.release(backend, reset=False)
        if self._done:
            return
        self._loggedIn = True
        self.frontend.completeLogin(self.settings.reported, self.processId)

    def _ebLoginSettings(self, reason: Failure, backend: IBackendLink) -> None:
        self.pool.discard(backend, reason.getErrorMessage())
        if not self._done:
            self._done = True
            self.frontend.failFromPool(reason)

    # -- hand-over to a new process (pgtwist.app.handover) -------------------------

    def exportState(self) -> dict[str, Any] | None:
        """
        What a new pgtwist needs to go on serving this client, when it is
        idle between transactions and holds nothing only this process has
        (no backend, nothing read and not answered, no LISTEN, nothing
        pinned); else C{None}. The caller stops reading the client first,
        so that it stays so.
        """
        if (
            self.backend is not None
            or self._done
            or not self._loggedIn
            or self._acquiring is not None
            or self._queued
            or self._expected
            or self._unsynced
            or self._waiting
            or self._owed
            or self._preamble
            or self._notes
            or self._objects
            or self._sessionCheck
            or self._resetOnRelease
            or self._unlistenBackend
            or self.subscription.channels
            or self.subscription.pending
            or not self._fromClient.atBoundary
        ):
            return None
        settings = self.settings
        return {
            "processId": self.processId,
            "reported": settings.reported,
            "unreported": settings.unreported,
            "session": settings.session,
            "identity": None if settings.identity is None else list(settings.identity),
            "customs": None if self._customs is None else sorted(self._customs),
            "statements": [
                [name, key.query, list(key.parameterTypes), key.searchPath]
                for name, key in self.statements.items()
            ],
        }

    def importState(self, state: dict[str, Any]) -> None:
        """
        Go on from what L{exportState} gave in another process: the client
        was logged in there, so no backend is borrowed for its login; its
        prepared statements are prepared again on whichever backend a
        transaction of it lands on, as after a backend changed.

        @raise ValueError: C{state} is not such a state.
        """

        def strings(value: Any) -> dict[str, str]:
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ValueError("not a map of strings")
            return dict(value)

        try:
            processId = state["processId"]
            if not isinstance(processId, int) or isinstance(processId, bool):
                raise ValueError("bad processId")
            settings = ClientSettings(strings(state["reported"]), strings(state["unreported"]))
            if state["session"] is not None:
                settings.session = strings(state["session"])
            identity = state["identity"]
            if identity is not None:
                if not (len(identity) == 2 and all(isinstance(v, str) for v in identity)):
                    raise ValueError("bad identity")
                settings.identity = (identity[0], identity[1])
            settings.refresh()
            customs = state["customs"]
            if customs is not None and not all(isinstance(v, str) for v in customs):
                raise ValueError("bad customs")
            statements = {}
            for name, query, types, searchPath in state["statements"]:
                if not (
                    isinstance(name, str)
                    and isinstance(query, str)
                    and isinstance(searchPath, str)
                    and all(isinstance(t, int) and not isinstance(t, bool) for t in types)
                ):
                    raise ValueError("bad statement")
                # The flags are found again: this version's reading of the text.
                flags = sessionFlags(query.encode())
                statements[name] = StatementKey(query, tuple(types), searchPath, flags)
        except (KeyError, TypeError) as e:
            raise ValueError(f"bad transaction state: {e!r}") from None
        self._startup = effectiveParameters(self.frontend.startupParameters)
        self._loginKey = (self.frontend.key, tuple(self._startup))
        self.processId = processId
        self.settings = settings
        self._customs = None if customs is None else set(customs)
        self.statements = statements
        self._loggedIn = True

    # -- acquiring per transaction ------------------------------------------------

    def _waitForBackend(self) -> None:
        """
        Ask the pool for a backend once L{IBackendPool.acquireIdle} had none
        at hand (the callers try it first, inline).
        """
        d = self.pool.acquire(self.frontend.key, None)
        if d.called:
            d.addCallbacks(self._cbAcquired, self._ebAcquired)
            return
        # The client goes on being read while it waits: most send nothing
        # more until answered, and pausing costs two epoll_ctl calls per
        # wait, which with more clients than backends is every transaction.
        # What it does send stops its reading (frontendDataReceived).
        self._acquiring = d
        d.addCallbacks(self._cbAcquired, self._ebAcquired)

    def _cbAcquired(self, backend: IBackendLink) -> None:
        self._acquiring = None
        if self._done:
            self.pool.release(backend, reset=False)
            return
        self.backend = backend
        state = self.serverState = serverSession(backend)
        backend.attach(self, self.frontend)
        self.frontend.setCancelTarget(backend)
        self._xactStart = self.clock.seconds()
        self._queriesOut = 0
        if self._owed:
            # Replies pgtwist gave before this backend came: they go out in
            # the same write as the backend's first answer.
            self._expected.append(_Expect(_FAKE, data=self._owed))
            self._owed = b""
        out: list[bytes] = []
        if state.fingerprint != self.settings.fingerprint:
            settings = self.settings
            if state.dirty or settings.session is not None:
                # Another client changed this session, or this client did:
                # reset everything, then apply the client's state, each
                # query alone so that a failure undoes no reset.
                for sql in matchStatements(settings, self.frontend.key[1]):
                    out.append(codec.frame(constants.QUERY, codec.encodeString(sql)))
                    self._expected.append(_Expect(_QUERY, forward=False))
                state.applied.clear()
                state.applied.update(settings.unreported)
                state.dirty = settings.session is not None
            else:
                statements, applied = syncStatements(settings, backend.parameters, state.applied)
                if statements:
                    query = codec.encodeString("; ".join(statements))
                    out.append(codec.frame(constants.QUERY, query))
                    self._expected.append(_Expect(_QUERY, forward=False))
                state.applied.clear()
                state.applied.update(applied)
            state.fingerprint = settings.fingerprint
        self._preamble = out
        if self._pumping:
            # The first chunk walked takes the preamble along.
            return
        self._pump()
        if self._preamble and self.backend is backend:
            preamble, self._preamble = self._preamble, []
            backend.write(b"".join(preamble))
        if self._pausedForBackend and not self._done and not self._waiting:
            self._pausedForBackend = False
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
        self.stats.bytesReceived += len(data)
        if self._done:
            return
        if self._queued or self._acquiring is not None or self._waiting:
            # Behind what already waits.
            self._queued.append(data)
            if self._acquiring is not None and not self._pausedForBackend and self._loggedIn:
                # More data while waiting for a backend: hold at most this
                # one read's worth until the backend comes.
                self.frontend.pauseReading()
                self._pausedForBackend = True
            return
        if self.backend is not None:
            self._walkToBackend(data)
            return
        if self._fromClient.atBoundary and len(data) >= 5:
            type, length = HEADER.unpack_from(data)
            if type not in _LOCAL and 4 <= length < len(data):
                # The common start of a transaction: its first message is
                # whole and needs a backend (a Query, a Bind...), so borrow
                # one before walking. Pumping, so that the settings preamble
                # goes out in the same write as the request (_cbAcquired).
                self._pumping = True
                try:
                    backend = self.pool.acquireIdle(self.frontend.key)
                    if backend is not None:
                        self._cbAcquired(backend)
                    else:
                        self._waitForBackend()
                finally:
                    self._pumping = False
                if self.backend is not None:
                    self._walkToBackend(data)
                    return
        self._pump(data)

    def _pump(self, data: bytes | None = None) -> None:
        """
        Walk C{data}, then what the client sent and is not walked yet, with
        or without a backend, until it is all walked or the client must
        wait (for a backend, or for an earlier batch's answer).
        """
        self._pumping = True
        queued = self._queued
        walker = self._fromClient
        try:
            while not self._done:
                if self._acquiring is not None or self._waiting:
                    if data is not None:
                        queued.insert(0, data)
                    return
                if data is None:
                    if queued:
                        data = queued.pop(0)
                    elif walker.ready:
                        data = b""
                    else:
                        return
                if self.backend is not None:
                    self._walkToBackend(data)
                    if not queued:
                        # Relaying keeps no message the walker holds whole:
                        # only a stop (for a backend, or to wait) does.
                        return
                    data = None
                    continue
                self._wantBackend = False
                size = len(data)
                try:
                    if walker.atBoundary:
                        # MessageWalker.walk's first step, without its call.
                        stop = self._scanLocal(data, 0, _UNUSED)
                        if stop < size:
                            stop = walker.tail(data, stop)
                    else:
                        stop = walker.walk(data, self._scanLocal, _UNUSED)
                except (ProtocolViolation, ValueError) as e:
                    self._violation(e)
                    return
                # What follows the first message needing a backend waits for one.
                data = data[stop:] if stop < size else None
                if self._wantBackend and not self._done:
                    backend = self.pool.acquireIdle(self.frontend.key)
                    if backend is not None:
                        self._cbAcquired(backend)
                    else:
                        self._waitForBackend()
        finally:
            self._pumping = False

    def _violation(self, error: Exception) -> None:
        violation = error if isinstance(error, ProtocolViolation) else ProtocolViolation(str(error))
        self._protocolViolation(violation)

    def _scanLocal(self, data: bytes, offset: int, out: list[bytes]) -> int:
        """
        Between transactions, answer what needs no backend: Parse of a
        statement PostgreSQL already accepted, Close of a statement, Flush,
        Sync, Terminate. This is what keeps a client that prepares a
        statement (libpq's PQprepare blocks) from waiting for a backend while
        others hold them all. Returns where the first message needing a
        backend starts (a L{MessageWalker.walk} scan).
        """
        size = len(data)
        limit = self._fromClient.maxMessageLength
        replies: list[bytes] = []
        while size - offset >= 5:
            type, length = HEADER.unpack_from(data, offset)
            if length < 4 or length > limit:
                raise invalidLength()
            end = offset + 1 + length
            if end > size:
                # Held until whole; one too long to hold is relayed in
                # pieces, and needs a backend now.
                if length - 4 > self._fromClient.maxHeldLength:
                    if type == constants.PARSE:
                        raise tooLong(type, self._fromClient.maxHeldLength)
                    self._wantBackend = True
                break
            if type not in _LOCAL:
                self._wantBackend = True
                break
            if type == constants.TERMINATE:
                self._finish()
                self.frontend.fail(None)
                return size
            if type == constants.PARSE:
                body = data[offset + 5 : end]
                last = self._localParse
                if (
                    last is not None
                    and last[0] == body
                    and last[2].searchPath == self.settings.searchPath
                ):
                    # The same Parse as last time: what decoding it found
                    # then holds (the checks on the session stay).
                    name, key = last[1], last[2]
                    if not self.registry.isVerified(self.frontend.key, key) or (
                        name and name in self.statements
                    ):
                        self._wantBackend = True
                        break
                    self.statements[name] = key
                    self._unsynced = True
                    replies.append(_PARSE_COMPLETE)
                    offset = end
                    continue
                parse: Any = codec.decodeFrontend(type, body)
                key = StatementKey(parse.query, parse.parameterTypes, self.settings.searchPath)
                if not self.registry.isVerified(self.frontend.key, key) or (
                    parse.name and parse.name in self.statements
                ):
                    self._wantBackend = True
                    break
                query = parse.query.encode()
                if HINT.search(query) is not None and exclusiveDatabase(query) is not None:
                    # Goes to a backend, which waits for the pool (_clearFor).
                    self._wantBackend = True
                    break
                flags = sessionFlags(query)
                if flags:
                    # Its Binds will tell the session to be read.
                    key = StatementKey(key.query, key.parameterTypes, key.searchPath, flags)
                    if flags & LISTEN:
                        # Waits for the listener backend (_listenGate).
                        self._wantBackend = True
                        break
                    if flags & SETTINGS:
                        self._addCustoms(query)
                else:
                    self._localParse = (body, parse.name, key)
                self.statements[parse.name] = key
                self._unsynced = True
                replies.append(_PARSE_COMPLETE)
            elif type == constants.CLOSE:
                if data[offset + 5 : offset + 6] != b"S":
                    self._wantBackend = True
                    break
                name, _ = splitName(data, offset + 6)
                self.statements.pop(name, None)
                self._unsynced = True
                replies.append(_CLOSE_COMPLETE)
            else:  # Sync or Flush
                if type == constants.SYNC:
                    self._unsynced = False
                    replies.append(_READY_IDLE)
                # PostgreSQL sends its output at Sync and Flush: so do we.
                self.frontend.write(self._owed + b"".join(replies))
                self._owed = b""
                replies = []
            offset = end
        # Anything else answered goes out with the next Sync or Flush, or in
        # the same write as the first answer of the backend the rest needs.
        if replies:
            self._owed += b"".join(replies)
        return offset

    def _walkToBackend(self, data: bytes) -> None:
        """
        Relay one chunk of client messages to the attached backend.
        """
        backend = self.backend
        assert backend is not None
        out, self._preamble = self._preamble, []
        self._terminate = False
        walker = self._fromClient
        size = len(data)
        try:
            if walker.atBoundary:
                # MessageWalker.walk's first step, without its call.
                stop = self._scanFrontend(data, 0, out)
                if stop < size:
                    stop = walker.tail(data, stop)
            else:
                stop = walker.walk(data, self._scanFrontend, out)
        except (ProtocolViolation, ValueError) as e:
            self._violation(e)
            return
        if stop < size and not self._terminate:
            self._queued.insert(0, data[stop:])
        if out:
            backend.write(b"".join(out))
        if self._terminate:
            if (
                self._expected
                and not self._unsynced
                and data[stop : stop + 1] == constants.TERMINATE
            ):
                # PostgreSQL answers what came before Terminate, then
                # closes: the Terminate waits for those answers, as behind
                # an earlier batch (see _resumeIfSettled).
                self._queued.insert(0, data[stop:])
                self._waiting = self._closeWhenAnswered = True
                self.frontend.pauseReading()
                return
            self._finish()
            # PostgreSQL closes the connection on Terminate; so do we.
            self.frontend.fail(None)
        elif not self._expected and self._releasable():
            # (An answer is expected after nearly every chunk: no call then.)
            self._release()

    def _scanFrontend(self, data: bytes, offset: int, out: list[bytes]) -> int:
        """
        Relay the client messages of C{data} from C{offset} (a
        L{MessageWalker.walk} scan): spans of them as they are, extended
        protocol messages rewritten. A message that runs past C{data} is
        passed on in pieces when its header says all pgtwist needs (CopyData,
        Execute...), or its start names the statement (a Bind too long to
        hold); the others are held whole.
        """
        backend = self.backend
        assert backend is not None
        walker = self._fromClient
        expected = self._expected
        size = len(data)
        spanStart = offset
        limit = walker.maxMessageLength
        while size - offset >= 5:
            type, length = HEADER.unpack_from(data, offset)
            if length < 4 or length > limit:
                raise invalidLength()
            end = offset + 1 + length
            if end > size and type not in _STREAMED:
                if length - 4 <= walker.maxHeldLength:
                    break
                if type == constants.BIND:
                    if not self._streamBind(data, offset, spanStart, length, out):
                        break
                    return size
                if type != constants.QUERY:
                    raise tooLong(type, walker.maxHeldLength)
            if type in _PASSTHROUGH:
                if type == constants.COPY_DONE or type == constants.COPY_FAIL:
                    self._copyEnds += 1
                    self._copyIn = False
            elif type == constants.QUERY:
                # After an error in an extended batch PostgreSQL skips
                # a Query too, up to the Sync.
                if not self._discarding:
                    if end <= size:
                        body = data[offset + 5 : end]
                        if (
                            body[:1] in STARTS
                            and HINT.search(body) is not None
                            and self._clearFor(body[:-1])
                        ):
                            break
                        # sessionFlags' first test, without its call.
                        flags = sessionFlags(body) if _WORDS.search(body.lower()) is not None else 0
                        if flags:
                            if flags & NOTIFY:
                                # The pid of its notifications is the client's.
                                self._lent[backend.processId] = self.processId
                            if flags & LISTEN:
                                if self._listenGate(body):
                                    break
                                refused = self._listenSeen(body)
                                if refused is not None:
                                    # Answered by PostgreSQL as an error of
                                    # the client's own query.
                                    if spanStart < offset:
                                        out.append(data[spanStart:offset])
                                    spanStart = end
                                    out.append(refusalQuery(refused))
                            self._sessionQuery(flags, body)
                            if flags & RESETS and self.subscription.channels:
                                # DISCARD ALL runs UNLISTEN * too.
                                self._listenSeen(body)
                            if flags & RESETS and _canReset(body, backend.transactionStatus):
                                self._resetStatements()
                        if self._listenWatch and not flags & LISTEN:
                            # ROLLBACK TO SAVEPOINT undoes them.
                            self._savepointSeen(body)
                    else:
                        # Too long to look at: it may change anything.
                        self._sessionCheck |= SETTINGS | OBJECTS
                    expected.append(_Expect(_QUERY, copyEnds=self._copyEnds))
                    if not self._queriesOut:
                        self._queryStart = self.clock.seconds()
                    self._queriesOut += 1
                    self._fresh = True
            elif type == constants.SYNC:
                # During COPY FROM STDIN PostgreSQL ignores Sync.
                if not self._copyIn:
                    expected.append(_Expect(_SYNC, copyEnds=self._copyEnds))
                    if not self._queriesOut:
                        self._queryStart = self.clock.seconds()
                    self._queriesOut += 1
                    self._syncs += 1
                    self._unsynced = False
                    self._discarding = False
                    self._fresh = True
            elif type == constants.EXECUTE:
                self._unsynced = True
                if not self._discarding:
                    expected.append(_Expect(_EXECUTE, copyEnds=self._copyEnds))
                    self._fresh = False
            elif type == constants.DESCRIBE and data[offset + 5 : offset + 6] == b"P":
                # A portal's Describe goes on as sent (no statement name to
                # rewrite, nothing to wait for): in the span, without a call.
                if not self._discarding:
                    expected.append(_Expect(_DESCRIBE_PORTAL))
                    self._fresh = False
                self._unsynced = True
            elif type in _EXTENDED_REQUESTS:
                if not self._discarding:
                    if type == constants.PARSE and (
                        HINT.search(data, offset + 5, end) is not None
                        and self._clearFor(_parsedText(data[offset + 5 : end]))
                        or (
                            data.find(b"ISTEN", offset + 5, end) >= 0
                            or data.find(b"isten", offset + 5, end) >= 0
                        )
                        and self._listenGate(_parsedText(data[offset + 5 : end]))
                    ):
                        break
                    if self._unsettled and self._mustWait(type, data[offset + 5 : end]):
                        self._waiting = True
                        self.frontend.pauseReading()
                        break
                    if spanStart < offset:
                        out.append(data[spanStart:offset])
                    spanStart = end
                    self._extended(type, data[offset + 5 : end], out)
                    if self._fresh and (
                        type == constants.BIND
                        or type == constants.DESCRIBE
                        and data[offset + 5 : offset + 6] == b"P"
                    ):
                        # The first Bind or Describe of a portal since the
                        # last Sync: if a Bind of a client's statement, what
                        # a retry sends again should it be stale.
                        self._fresh = False
                        entry = expected[-1]
                        if entry.kind == _BIND and entry.key is not None:
                            self._retryEntry = entry
                            self._retryFrom = data
                            self._retryAt = offset
                self._unsynced = True
            elif type == constants.FUNCTION_CALL:
                if not self._discarding:
                    # Any function, set_config included, by its OID.
                    self._sessionCheck |= SETTINGS | OBJECTS
                    expected.append(_Expect(_QUERY))
                    if not self._queriesOut:
                        self._queryStart = self.clock.seconds()
                    self._queriesOut += 1
                    self._fresh = True
            elif type == constants.TERMINATE:
                self._terminate = True
                break
            else:
                raise ProtocolViolation(f"invalid frontend message type {type[0]}")
            if end > size:
                # The rest of this message follows in later chunks.
                walker.passing(end - size)
                offset = size
                break
            offset = end
        if spanStart < offset:
            out.append(data[spanStart:offset])
        return offset

    def _streamBind(
        self, data: bytes, offset: int, spanStart: int, length: int, out: list[bytes]
    ) -> bool:
        """
        Relay a Bind too long to hold: its start, with the statement renamed,
        then the rest in pieces as it comes. C{False} while its start does
        not hold both names yet.
        """
        portalEnd = data.find(b"\x00", offset + 5) + 1
        statementEnd = data.find(b"\x00", portalEnd) + 1 if portalEnd else 0
        if not statementEnd:
            return False
        head = data[offset + 5 : statementEnd]
        if not self._discarding and self._unsettled and self._mustWait(constants.BIND, head):
            # Named by an earlier batch still unanswered: it waits, held
            # (reading stops, so no more of it comes meanwhile).
            self._waiting = True
            self.frontend.pauseReading()
            return False
        if spanStart < offset:
            out.append(data[spanStart:offset])
        forward = True
        self._fresh = False
        if self._discarding:
            out.append(data[offset:statementEnd])
        else:
            name, _ = splitName(head, portalEnd - offset - 5)
            forward = bool(name) or "" in self.statements
            self._extended(constants.BIND, head, out, length - 4 - len(head))
        self._unsynced = True
        if forward:
            out.append(data[statementEnd:])
        self._fromClient.passing(offset + 1 + length - len(data), forward)
        return True

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
        self.serverState.prepared.clear()
        for entry in self._expected:
            # A named statement's Parse or Close still unanswered: should
            # PostgreSQL skip it (an error earlier in its batch), undoing it
            # must not bring back what this reset, sent after it, drops.
            if entry.client and (entry.kind == _PARSE or entry.kind == _FAKE):
                entry.previous = None
                if entry.kind == _FAKE and entry.data == _CLOSE_COMPLETE:
                    entry.key = None

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
        Relay what waited behind an earlier batch once that batch settled
        (walking it again stops again while it must still wait).
        """
        self._waiting = False
        if not self._pumping:
            self._pump()
        if not self._waiting and not self._done:
            self.frontend.resumeReading()

    def _clearFor(self, sql: bytes) -> bool:
        """
        Whether the statement C{sql} must wait: it needs a database free of
        other sessions (C{DROP DATABASE}...), so the pool first closes its
        idle backends to that database (L{IBackendPool.closeIdleBackends});
        the client's messages from this one on wait, as behind an earlier
        batch (L{_resumeIfSettled}), and the statement is relayed once they
        are gone.
        """
        if self._cleared == sql:
            self._cleared = None
            return False
        database = exclusiveDatabase(sql)
        if database is None:
            return False
        d = self.pool.closeIdleBackends(database)
        if d.called:
            return False
        self._waiting = True
        self.frontend.pauseReading()
        d.addBoth(self._cbCleared, sql)
        return True

    def _cbCleared(self, result: object, sql: bytes) -> None:
        self._cleared = sql
        self._resumeIfSettled()

    def _releasable(self) -> bool:
        backend = self.backend
        return (
            backend is not None
            and not self._expected
            and not self._unsynced
            and self._fromServer.atBoundary
            and self._fromClient.atBoundary
            and backend.transactionStatus == constants.TRANSACTION_IDLE
        )

    def _release(self) -> None:
        if self._objects:
            # Pinned: the session holds what only this backend has; its
            # next transaction's start is unknown (see timeoutState).
            self._xactStart = 0.0
            if self._notes:
                self._flushNotes()
            return
        if self._sessionCheck:
            # Not read at the ReadyForQuery (see _checkAtReady): read now.
            self._checkSession(b"")
            return
        backend = self.backend
        assert backend is not None
        if self._unlistenBackend:
            # LISTEN ran on it: the listener backend listens for the client.
            self._unlistenBackend = False
            backend.write(_UNLISTEN_ALL)
            self._expected.append(_Expect(_QUERY, forward=False))
            return
        self.backend = None
        backend.detach()
        self.frontend.setCancelTarget(None)
        self.stats.addTransaction(self.clock.seconds() - self._xactStart)
        self._retryFrom = b""
        reset, self._resetOnRelease = self._resetOnRelease or self._resetAlways, False
        self.pool.release(backend, reset=reset)
        if self._notes:
            self._flushNotes()
        if self._queued and not self._pumping and not self._done:
            self._pump()

    def _finish(self, lost: bool = False) -> None:
        """
        The client is done: give its backend back, or, when the client was
        C{lost} with a request running, have it cancelled and closed
        (L{IBackendPool.abandon}).
        """
        if self._done:
            return
        self._done = True
        self._dropListens()
        if self._acquiring is not None:
            self._acquiring.cancel()
        backend, self.backend = self.backend, None
        if backend is not None:
            backend.detach()
            backend.clean = (
                not self._expected
                and not self._unsynced
                and self._fromServer.atBoundary
                and not self._fromClient.passingOn
            )
            self.frontend.setCancelTarget(None)
            if lost and (self._expected or self._unsynced):
                self.pool.abandon(backend)
                return
            # Session-only objects, or what may be some, go with the client:
            # the pool resets the session (DISCARD ALL) before reuse.
            reset = bool(
                self._resetOnRelease
                or self._resetAlways
                or self._objects
                or self._sessionCheck & OBJECTS
                or self._unlistenBackend
            )
            if self._sessionCheck and not reset:
                # Settings not read: the next client resets everything.
                state = self.serverState
                state.dirty = True
                state.fingerprint = None
            self.pool.release(backend, reset=reset)

    def frontendLost(self, reason: Failure) -> None:
        """
        See L{IPipelineSession.frontendLost}: a backend left inside a
        transaction is closed, never handed to someone else, and one
        running a request of the client's is cancelled first, unless the
        client said Terminate behind it (PostgreSQL runs it).
        """
        self._finish(lost=not self._closeWhenAnswered)

    def timeoutState(self) -> tuple[int, float, float]:
        """
        See L{IPipelineSession.timeoutState}: a transaction begins when a
        backend is lent; the relay keeps no time per request (the janitor
        takes the client's last message for a request's start, and what it
        saw for an idle transaction's).
        """
        backend = self.backend
        if backend is None:
            return SESSION_IDLE, 0.0, 0.0
        if (
            self._expected
            or self._unsynced
            or not self._fromServer.atBoundary
            or not self._fromClient.atBoundary
        ):
            return SESSION_RUNNING, self._xactStart, 0.0
        if backend.transactionStatus == constants.TRANSACTION_IDLE:
            # Pinned between transactions.
            return SESSION_IDLE, 0.0, 0.0
        return SESSION_IDLE_IN_TRANSACTION, self._xactStart, 0.0

    def busy(self) -> bool:
        """
        See L{IPipelineSession.busy}: a backend is lent only while a request
        or a transaction of the client runs on it, or while it is pinned;
        pinned between transactions, the client is idle, as a session-pool
        client is.
        """
        if self.backend is None:
            return False
        return not (self._objects and self._releasable())

    def _serverMidMessage(self) -> bool:
        """
        See L{PipelineSessionBase._serverMidMessage}: part of a message was
        forwarded and the rest is to come (a message held whole, or being
        dropped, has reached the client not at all).
        """
        return self._fromServer.passingOn and self._fromServer.forwarding


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
        self.logins = LoginCache()
        self.notifyHub = NotifyHub()

    def checkConfiguration(self, config: Configuration) -> list[str]:
        """
        Transaction pooling works with every configuration.
        """
        return []

    def resumeSession(
        self, frontend: IFrontendLink, pool: IBackendPool, clock: IReactorTime, state: Any
    ) -> TransactionPipelineSession:
        """
        A session for a client another pgtwist process served until now
        (L{TransactionPipelineSession.importState}).

        @raise ValueError: C{state} is not one L{exportState} gives.
        """
        session = self.newSession(frontend, pool, clock)
        assert isinstance(session, TransactionPipelineSession)
        if not isinstance(state, dict):
            raise ValueError("bad transaction state")
        session.importState(state)
        return session

    def newSession(
        self, frontend: IFrontendLink, pool: IBackendPool, clock: IReactorTime
    ) -> IPipelineSession:
        """
        See L{IPipeline.newSession}.
        """
        config = frontend.configuration
        if config is None:
            return TransactionPipelineSession(
                frontend, pool, clock, self.registry, 200, self.logins, self.notifyHub
            )
        main = config.main
        return TransactionPipelineSession(
            frontend,
            pool,
            clock,
            self.registry,
            main.maxPreparedStatements,
            self.logins,
            self.notifyHub,
            main.maxListenChannels,
            main.maxPendingNotifications,
            main.serverResetQueryAlways,
        )
