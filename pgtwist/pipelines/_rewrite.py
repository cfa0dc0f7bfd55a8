# -*- test-case-name: tests.unit.test_pipeline_transaction_statements,tests.unit.test_pipeline_transaction_errors -*-
"""
The transaction pipeline's rewriting of extended-protocol messages: a
client's Parse, Bind, Describe and Close renamed to the server-side names
every client shares (L{pgtwist.pipelines._statements}), a Parse injected
where the backend lacks a statement, and the answers pgtwist owes queued
in the expected-responses list. Mixed into
L{pgtwist.pipelines.transaction.TransactionPipelineSession}, as
L{pgtwist.pipelines._responses.ResponseRelay} is for the other direction.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from pgtwist.interfaces import (
    IBackendLink,
    IFrontendLink,
    IPoolStats,
)
from pgtwist.pipelines._expect import (
    _BIND,
    _CLOSE,
    _CLOSE_COMPLETE,
    _DESCRIBE_PORTAL,
    _DESCRIBE_STATEMENT,
    _DUPLICATE_STATEMENT,
    _EXECUTE,
    _FAKE,
    _NO_UNNAMED,
    _PARSE,
    _PARSE_COMPLETE,
    _QUERY,
    _RAISE_PORTAL,
    _SYNC,
    _UNDEFINED_STATEMENT,
    _canReset,
    _Expect,
    _frame,
)
from pgtwist.pipelines._notify import SharedPids, Subscription
from pgtwist.pipelines._settings import (
    LISTEN,
    NOTIFY,
    RESETS,
    SETTINGS,
    ClientSettings,
    sessionFlags,
)
from pgtwist.pipelines._statements import (
    STALE,
    StatementKey,
    StatementRegistry,
    remember,
    splitName,
)
from pgtwist.pipelines.serverstate import ServerSession
from pgtwist.wire import codec, constants
from pgtwist.wire.codec import INT32
from pgtwist.wire.messages import (
    Bind,
    Close,
    Execute,
    Parse,
)
from pgtwist.wire.sql import quoteLiteral


class StatementRewriter:
    """
    Mixed into L{pgtwist.pipelines.transaction.TransactionPipelineSession}:
    what happens to each extended-protocol message on its way to the
    backend.
    """

    if TYPE_CHECKING:
        frontend: IFrontendLink
        backend: IBackendLink | None
        registry: StatementRegistry
        settings: ClientSettings
        statements: dict[str, StatementKey]
        stats: IPoolStats
        serverState: ServerSession
        maxPrepared: int
        processId: int
        _lent: dict[int, int] | SharedPids
        subscription: Subscription
        _expected: deque[_Expect]
        _lastBind: tuple[bytes, str, StatementKey, str, bytes] | None

        def _fake(self, data: bytes) -> None: ...
        def _queueChange(self, entry: _Expect) -> None: ...
        def _resetStatements(self) -> None: ...
        def _sessionQuery(self, flags: int, sql: bytes) -> None: ...
        def _addCustoms(self, sql: bytes) -> None: ...
        def _listenSeen(self, sql: bytes) -> str | None: ...

    def _extended(
        self, type: bytes, body: bytes, out: list[bytes], tail: int | None = None
    ) -> None:
        """
        Rewrite one Parse, Bind, Describe or Close; C{tail}: how many more
        bytes of a Bind follow C{body}, relayed as they come.
        """
        backend = self.backend
        assert backend is not None
        expected = self._expected
        if type == constants.PARSE:
            self.stats.clientParseCount += 1
            parse: Any = codec.decodeFrontend(type, body)
            if parse.name and parse.name in self.statements:
                message = f'prepared statement "{parse.name}" already exists'
                self._raise(out, _DUPLICATE_STATEMENT, message)
                return
            flags = sessionFlags(parse.query.encode())
            if flags & SETTINGS:
                self._addCustoms(parse.query.encode())
            key = StatementKey(parse.query, parse.parameterTypes, self.settings.searchPath, flags)
            server = self.registry.nameFor(key)
            previous = self.statements.get(parse.name)
            self.statements[parse.name] = key
            if self.serverState.prepared.get(server) is True:
                self.serverState.prepared.move_to_end(server)
                if expected:
                    self._queueChange(
                        _Expect(_FAKE, client=parse.name, data=_PARSE_COMPLETE, previous=previous)
                    )
                else:
                    self.frontend.write(_PARSE_COMPLETE)
            else:
                self._prepare(out, server, key, True, parse.name, previous)
        elif type == constants.BIND:
            self.stats.bindCount += 1
            portalEnd = body.index(b"\x00") + 1
            last = self._lastBind
            if last is not None and tail is None:
                # A Bind of the same statement as last time (a driver's
                # unnamed statement, every transaction): renamed as then,
                # without decoding its name again, while the statement, its
                # server-side name and its being prepared here still hold.
                statementEnd = portalEnd + len(last[0])
                key = last[2]
                if body[portalEnd:statementEnd] == last[0] and self.statements.get(last[1]) is key:
                    server = last[3]
                    prepared = self.serverState.prepared
                    if prepared.get(server) is True and self.registry.nameFor(key) == server:
                        prepared.move_to_end(server)
                        renamed = body[:portalEnd] + last[4] + body[statementEnd:]
                        out.append(type + INT32.pack(len(renamed) + 4) + renamed)
                        expected.append(_Expect(_BIND, name=server, key=key))
                        return
            name, statementEnd = splitName(body, portalEnd)
            found = self._useStatement(out, type, body, name, _BIND, tail)
            if found is None:
                return
            server, key = found
            if key.flags & LISTEN:
                refused = self._listenSeen(key.query.encode())
                if refused is not None:
                    # Instead of the Bind: PostgreSQL skips to the Sync.
                    self._raise(out, "54000", refused)
                    return
            encoded = codec.encodeString(server)
            renamed = body[:portalEnd] + encoded + body[statementEnd:]
            out.append(codec.frame(type, renamed) if tail is None else _frame(type, renamed, tail))
            expected.append(_Expect(_BIND, name=server, key=key))
            flags = key.flags
            if not flags:
                self._lastBind = (body[portalEnd:statementEnd], name, key, server, encoded)
            if flags:
                if flags & NOTIFY:
                    # The pid of its notifications is the client's.
                    self._lent[backend.processId] = self.processId
                # The statement may change the session: checked when the
                # transaction ends (see TransactionPipelineSession._sessionQuery).
                self._sessionQuery(flags & ~LISTEN, b"")
                if flags & RESETS and self.subscription.channels:
                    # DISCARD ALL runs UNLISTEN * too.
                    self._listenSeen(key.query.encode())
                if flags & RESETS and _canReset(key.query.encode(), backend.transactionStatus):
                    self._resetStatements()
        elif type == constants.DESCRIBE:
            kind = body[:1]
            if kind != b"S":
                out.append(codec.frame(type, body))
                expected.append(_Expect(_DESCRIBE_PORTAL))
                return
            name, _ = splitName(body, 1)
            described = self.statements.get(name)
            if described is not None:
                server = self.registry.nameFor(described)
                prepared = self.serverState.prepared
                if prepared.get(server) is True and not self._parsedInBatch(server):
                    # The client asks what PostgreSQL makes of its text: a
                    # copy prepared before may describe parameter types
                    # dropped since (PostgreSQL checks only the result), so
                    # it is prepared again (a Describe comes once per
                    # statement a client prepares, never per execution).
                    prepared[server] = STALE
            found = self._useStatement(out, type, body, name, _DESCRIBE_STATEMENT)
            if found is None:
                return
            server, key = found
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

    def _parsedInBatch(self, server: str) -> bool:
        """
        Whether C{server} was parsed on the backend since the last Sync.
        """
        for entry in reversed(self._expected):
            kind = entry.kind
            if kind == _SYNC or kind == _QUERY:
                return False
            if kind == _PARSE and entry.name == server:
                return True
        return False

    def _useStatement(
        self,
        out: list[bytes],
        type: bytes,
        body: bytes,
        name: str,
        kind: int,
        tail: int | None = None,
    ) -> tuple[str, StatementKey] | None:
        """
        The server-side name and key of the client statement a Bind or
        Describe names, prepared on this backend. When the client has no such
        statement, the message goes on as sent (PostgreSQL answers 26000
        with the client's own name), or for the unnamed statement, the error
        is raised here (the backend's unnamed statement is pgtwist's); then
        C{None}.
        """
        key = self.statements.get(name)
        if key is None:
            if not name:
                self._raise(out, _UNDEFINED_STATEMENT, _NO_UNNAMED)
            else:
                out.append(_frame(type, body, tail))
                self._expected.append(_Expect(kind))
            return None
        server = self.registry.nameFor(key)
        self._ensurePrepared(out, server, key)
        return server, key

    def _ensurePrepared(self, out: list[bytes], server: str, key: StatementKey) -> None:
        backend = self.backend
        assert backend is not None
        state = self.serverState.prepared.get(server)
        if state is True:
            self.serverState.prepared.move_to_end(server)
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
        if self.serverState.prepared.get(server) is STALE:
            # PostgreSQL still holds it: close it before preparing it again.
            del self.serverState.prepared[server]
            out.append(codec.encode(Close(b"S", server)))
            self._expected.append(_Expect(_CLOSE, forward=False, name=server, key=key))
        self.stats.serverParseCount += 1
        out.append(codec.encode(Parse(server, key.query, key.parameterTypes)))
        self._queueChange(
            _Expect(_PARSE, forward=forward, name=server, client=client, key=key, previous=previous)
        )
        for evicted in remember(self.serverState.prepared, server, self.maxPrepared):
            out.append(codec.encode(Close(b"S", evicted)))
            self._expected.append(_Expect(_CLOSE, forward=False, name=evicted))

    def _raise(self, out: list[bytes], sqlstate: str, message: str) -> None:
        """
        Make PostgreSQL itself raise an error at this point of the batch, so
        that it skips to the next Sync and fails an open transaction exactly
        as it would have for the client's own message.
        """
        # Quoted twice (the message inside the block, the block inside DO):
        # a message naming a client's statement holds whatever it chose.
        raise_ = f"RAISE EXCEPTION USING ERRCODE = {quoteLiteral(sqlstate)}, "
        block = f"DO {quoteLiteral(f'BEGIN {raise_}MESSAGE = {quoteLiteral(message)}; END')}"
        # A portal of pgtwist's own: the client's unnamed one stays as it was.
        out.append(codec.encode(Parse("", block)))
        out.append(codec.encode(Bind(_RAISE_PORTAL, "")))
        out.append(codec.encode(Execute(_RAISE_PORTAL)))
        self._expected.append(_Expect(_PARSE, forward=False))
        self._expected.append(_Expect(_BIND, forward=False))
        self._expected.append(_Expect(_EXECUTE))

    # -- giving the backend back --------------------------------------------------------
