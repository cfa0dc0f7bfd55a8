# -*- test-case-name: tests.unit.test_pipeline_transaction_state -*-
"""
The session state a transaction-pooling client changed itself: a query
that may change it (L{pgtwist.pipelines._settings.sessionFlags}) marks the
transaction; once the transaction has ended, one query reads the backend's
real state, which becomes the client's, and session-only objects found
there keep the backend with the client (I{pinned}). Mixed into
L{pgtwist.pipelines.transaction.TransactionPipelineSession}.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from pgtwist.interfaces import IBackendLink, IFrontendLink
from pgtwist.pipelines._expect import _FAKE, _Expect, _pinned, _StateExpect, _unread
from pgtwist.pipelines._settings import (
    MAX_CUSTOM,
    OBJECTS,
    SETTINGS,
    ClientSettings,
    customNames,
    readState,
    stateQuery,
)
from pgtwist.pipelines.serverstate import ServerSession
from pgtwist.wire import codec, constants
from pgtwist.wire.walker import MessageWalker


class SessionStateTracker:
    """
    Mixed into L{pgtwist.pipelines.transaction.TransactionPipelineSession}:
    reading the session state a client may have changed, and pinning.

    @ivar pinned: What keeps the client on its backend, for SHOW CLIENTS
        (C{""} when nothing does).
    """

    if TYPE_CHECKING:
        frontend: IFrontendLink
        backend: IBackendLink | None
        settings: ClientSettings
        serverState: ServerSession
        _expected: deque[_Expect]
        _fromClient: MessageWalker
        _unsynced: bool

    # Set by TransactionPipelineSession.__init__ (instance attributes: the
    # hot path reads _sessionCheck and _objects once per transaction).

    #: L{sessionFlags} bits of what ran since the backend's session state
    #: was last read: non-zero, the state is read when the transaction ends.
    _sessionCheck: int
    #: Session-only objects the client's session holds, by kind: while there
    #: are any, the client keeps its backend.
    _objects: dict[str, int]
    pinned: str
    #: The backend's state could not be read: it is reset when released.
    _resetOnRelease: bool
    #: Custom settings (C{my.secret}) the client named, read by name.
    _customs: set[str] | None

    def _sessionQuery(self, flags: int, sql: bytes) -> None:
        """
        The client sent a query that may change its session (L{sessionFlags}
        C{flags}): read the session's state once the transaction has ended.
        """
        self._sessionCheck |= flags & (SETTINGS | OBJECTS)
        if sql and flags & SETTINGS:
            self._addCustoms(sql)

    def _addCustoms(self, sql: bytes) -> None:
        """
        Remember the custom settings C{sql} names, for the state query.
        """
        names = customNames(sql)
        if names:
            if self._customs is None:
                self._customs = set()
            if len(self._customs) < MAX_CUSTOM:
                self._customs.update(names)

    def _checkAtReady(self, ready: bytes) -> bool:
        """
        The client's transaction ended (ReadyForQuery C{ready}) after
        something that may have changed its session: unless more of the
        client's requests are already on their way, read the session's state
        now, holding C{ready} back so that any WARNING comes before it.
        """
        backend = self.backend
        assert backend is not None
        if (
            self._unsynced
            or backend.transactionStatus != constants.TRANSACTION_IDLE
            or not self._fromClient.atBoundary
        ):
            # Later: the state is read at a ReadyForQuery outside any
            # transaction, before the backend goes back.
            return False
        self._checkSession(ready)
        return True

    def _checkSession(self, ready: bytes) -> None:
        """
        Send the state query (L{stateQuery}); its answer is read by
        L{_sessionRead}, which then owes the client C{ready}.
        """
        backend = self.backend
        assert backend is not None
        self._sessionCheck = 0
        backend.write(
            codec.frame(constants.QUERY, codec.encodeString(stateQuery(self._customs or ())))
        )
        self._expected.append(_StateExpect(ready))

    def _sessionRead(self, entry: _Expect) -> None:
        """
        The state query answered: the backend's session settings become the
        client's, and any session-only objects keep the backend with the
        client (a WARNING when they grew).
        """
        rows = entry.rows
        state = self.serverState
        state.dirty = True
        warning = b""
        if rows is None or None in rows:
            # Not known (an error, a statement_timeout too short to read
            # it): the client keeps what it had, and the backend is reset
            # before anyone gets it.
            self._resetOnRelease = True
            state.fingerprint = None
            warning = _unread()
            if self._objects:
                # Still pinned: try again when the next transaction ends.
                self._sessionCheck |= OBJECTS
        else:
            settings, identity, objects = readState(
                [row for row in rows if row is not None], self.frontend.key[1]
            )
            self.settings.adopt(settings, identity)
            state.fingerprint = self.settings.fingerprint
            grown = [kind for kind, count in objects.items() if count > self._objects.get(kind, 0)]
            self._objects = objects
            self.pinned = ", ".join(objects)
            if objects:
                # Checked again when the client's next transaction ends.
                self._sessionCheck |= OBJECTS
            if grown:
                warning = _pinned(grown)
        if warning or entry.data:
            self._expected.appendleft(_Expect(_FAKE, data=warning + entry.data))
