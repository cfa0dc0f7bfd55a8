# -*- test-case-name: tests.unit.test_pipeline_serverstate -*-
"""
What the transaction pipeline remembers of each backend's session between
the clients it lends it to: the statements it prepared there and the
settings it applied. Kept here, by the pipeline that owns it, not on the
backend: one lookup per borrow (L{serverSession}), none per message.
"""

from __future__ import annotations

from collections import OrderedDict
from weakref import WeakKeyDictionary, ref

from pgtwist.interfaces import IBackendLink


class ServerSession:
    """
    The transaction pipeline's view of one backend's session.

    @ivar prepared: Server-side prepared statements (name -> C{True}, or
        L{pgtwist.pipelines._statements.STALE}), least recently used first.
    @ivar applied: Settings PostgreSQL does not report (no ParameterStatus)
        that the pipeline applied with SET, by lowercase name.
    @ivar fingerprint: Identifies the client settings last synced onto the
        backend, so a client with the same settings needs no SET.
    @ivar resets: The backend's C{sessionResets} this view is valid for.
    @ivar dirty: A client may have changed the session beyond what
        C{applied} and the reported parameters say (C{SET ROLE}, any
        C{SET}, custom settings): the next client with other settings gets
        everything reset first (L{pgtwist.pipelines._settings.matchStatements}).
    """

    __slots__ = ("prepared", "applied", "fingerprint", "resets", "dirty")

    def __init__(self, resets: int) -> None:
        self.prepared: OrderedDict[str, object] = OrderedDict()
        self.applied: dict[str, str] = {}
        self.fingerprint: object = None
        self.resets = resets
        self.dirty = False

    def forget(self) -> None:
        """
        The backend's session was reset: nothing prepared, nothing applied.
        """
        self.prepared.clear()
        self.applied.clear()
        self.fingerprint = None
        self.dirty = False


#: Every backend the pipeline has used and that is still alive.
_sessions: WeakKeyDictionary[IBackendLink, ServerSession] = WeakKeyDictionary()
#: Its dictionary, keyed by weak references (equal when their referents
#: are): read directly, a lookup is no Python call (L{serverSession}).
_byReference: dict[ref[IBackendLink], ServerSession] = _sessions.data  # type: ignore[attr-defined]


def serverSession(backend: IBackendLink) -> ServerSession:
    """
    The pipeline's view of C{backend}'s session; a fresh one the first time,
    and again after the pool reset the session (C{DISCARD ALL}).
    """
    session = _byReference.get(ref(backend))
    resets = backend.sessionResets
    if session is None:
        session = _sessions[backend] = ServerSession(resets)
    elif session.resets != resets:
        session.forget()
        session.resets = resets
    return session


def preparedCount(backend: IBackendLink) -> int:
    """
    How many statements the transaction pipeline has prepared on C{backend}
    (SHOW SERVERS' C{prepared_statements}).
    """
    session = _sessions.get(backend)
    if session is None or session.resets != backend.sessionResets:
        return 0
    return len(session.prepared)
