# -*- test-case-name: tests.unit.test_pipeline_notify -*-
"""
The transaction pipeline's side of C{LISTEN}/C{NOTIFY}
(L{pgtwist.pipelines._notify}): the client's C{LISTEN}/C{UNLISTEN}
statements recorded, applied when its transaction commits, and the
notifications its listener group hands it delivered between its
transactions. Mixed into
L{pgtwist.pipelines.transaction.TransactionPipelineSession}.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.python.failure import Failure

from pgtwist.interfaces import IBackendLink, IBackendPool, IFrontendLink
from pgtwist.pipelines._expect import _Expect
from pgtwist.pipelines._notify import (
    ChannelLimit,
    ListenerGroup,
    NotifyHub,
    Subscription,
    listenedChannels,
    operations,
    savepoints,
)
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.sql import quoteLiteral

#: Seconds between tries to deliver to a client whose connection buffer is
#: full.
RETRY_DELAY = 0.05


def refusalQuery(message: str) -> bytes:
    """
    A Query that makes PostgreSQL raise C{54000} with C{message} in place
    of a client's query: the client gets the error, and its transaction
    fails, as for any error of its own.
    """
    raise_ = "RAISE EXCEPTION USING ERRCODE = '54000', "
    block = f"DO {quoteLiteral(f'BEGIN {raise_}MESSAGE = {quoteLiteral(message)}; END')}"
    return codec.frame(constants.QUERY, codec.encodeString(block))


class ListenTracker:
    """
    Mixed into L{pgtwist.pipelines.transaction.TransactionPipelineSession}.

    @ivar subscription: The client's channels (L{Subscription}).
    @ivar _listenWatch: The open transaction ran C{LISTEN}/C{UNLISTEN}:
        its end is watched (command tags, errors, ReadyForQuery).
    @ivar _notes: Notifications held until the client is between
        transactions and reading.
    """

    if TYPE_CHECKING:
        frontend: IFrontendLink
        pool: IBackendPool
        backend: IBackendLink | None
        clock: Any
        processId: int
        notifyHub: NotifyHub
        maxPending: int
        _expected: deque[_Expect]
        _done: bool
        _waiting: bool
        _acquiring: Any
        _owed: bytes
        _objects: dict[str, int]

        def _resumeIfSettled(self) -> None: ...
        def _releasable(self) -> bool: ...
        def _finish(self, lost: bool = False) -> None: ...

    subscription: Subscription
    _listenWatch: bool
    _listenFailed: bool
    _listenPassed: bytes | None
    _listenGroup: ListenerGroup | None
    _unlistenBackend: bool
    _notes: list[bytes]
    _notesTimer: Any

    def _initListen(self, maxChannels: int) -> None:
        self.subscription = Subscription(maxChannels)
        self._listenWatch = False
        self._listenFailed = False
        self._listenPassed = None
        self._listenGroup = None
        self._unlistenBackend = False
        self._notes = []
        self._notesTimer = None

    def _group(self) -> ListenerGroup:
        group = self._listenGroup
        if group is None:
            group = self._listenGroup = self.notifyHub.group(self.frontend.key, self.pool)
        return group

    # -- statements -------------------------------------------------------------

    def _listenGate(self, sql: bytes) -> bool:
        """
        Whether the client's statement C{sql} must wait: it runs C{LISTEN}
        on channels the listener backend does not listen on yet, so it waits
        until it does (the client's messages from this one on wait, as
        behind an earlier batch): a notification committed after the
        client's C{LISTEN} commits then cannot be missed.
        """
        if self._listenPassed == sql:
            self._listenPassed = None
            return False
        channels = listenedChannels(operations(sql))
        if not channels:
            return False
        d = self._group().reserve(self, channels)
        # The reservation ends with the transaction (_listenReady), even if
        # the statement is never executed (a Parse alone).
        self._listenWatch = True
        if d.called:
            return False
        self._waiting = True
        self.frontend.pauseReading()
        d.addCallbacks(self._cbListenGate, self._ebListenGate, callbackArgs=(sql,))
        return True

    def _cbListenGate(self, result: object, sql: bytes) -> None:
        self._listenPassed = sql
        if not self._done:
            self._resumeIfSettled()

    def _ebListenGate(self, reason: Failure) -> None:
        if self._done:
            return
        self._finish(lost=True)
        self.frontend.fail(
            errors.fatal(
                constants.SQLSTATE_CONNECTION_FAILURE,
                "could not listen for notifications",
                detail=f"No listener backend: {reason.getErrorMessage()}.",
            )
        )

    def _listenSeen(self, sql: bytes) -> str | None:
        """
        The client's transaction runs C{sql}, which has C{LISTEN} or
        C{UNLISTEN} statements: record them, applied when the transaction
        commits. The error message when they would exceed
        C{max_listen_channels} (then nothing is recorded).
        """
        ops = operations(sql)
        if not ops:
            return None
        subscription = self.subscription
        try:
            subscription.check(ops)
        except ChannelLimit:
            return (
                f"too many channels listened on (max_listen_channels is {subscription.maxChannels})"
            )
        subscription.record(ops)
        self._listenWatch = True
        # The client's backend listens too until it is given back.
        self._unlistenBackend = True
        channels = listenedChannels(ops)
        if channels:
            # Already reserved when the statement waited (_listenGate).
            self._group().reserve(self, channels)
        return None

    def _savepointSeen(self, sql: bytes) -> None:
        """
        The client's transaction, which ran C{LISTEN} or C{UNLISTEN}, runs
        C{sql}, a simple Query without them: record its savepoint
        statements, which may undo them (L{Subscription.executed}).
        """
        ops = savepoints(operations(sql))
        if ops:
            self.subscription.record(ops)

    # -- the transaction's end -----------------------------------------------------

    def _listenTag(self, tag: bytes) -> None:
        """
        A CommandComplete while C{LISTEN}/C{UNLISTEN} are pending: the
        statement ran, or its transaction ended (C{COMMIT AND CHAIN} and
        C{ROLLBACK AND CHAIN} too).
        """
        subscription = self.subscription
        if subscription.executed(tag):
            return
        if tag == b"COMMIT":
            self._listenCommit()
        elif tag == b"ROLLBACK":
            # Not a ROLLBACK TO SAVEPOINT (executed above): the whole
            # transaction.
            subscription.rollback()

    def _listenError(self) -> None:
        """
        An ErrorResponse while C{LISTEN}/C{UNLISTEN} are pending: the
        statements sent after the failed one do not run, up to a C{ROLLBACK
        TO SAVEPOINT}, the only one an aborted transaction runs. (Those of a
        new transaction pipelined behind it are not tracked.)
        """
        self._listenFailed = True
        pending = self.subscription.pending
        for index, (verb, _) in enumerate(pending):
            if verb == "ROLLBACK TO":
                del pending[:index]
                return
        del pending[:]

    def _listenReady(self, status: bytes) -> None:
        """
        A ReadyForQuery while C{LISTEN}/C{UNLISTEN} are pending: outside a
        transaction, they committed unless an error or a ROLLBACK ended it.
        """
        if status != constants.TRANSACTION_IDLE:
            if status == constants.TRANSACTION_FAILED:
                self._listenFailed = True
            return
        subscription = self.subscription
        if self._listenFailed:
            subscription.rollback()
            self._listenFailed = False
        else:
            self._listenCommit()
        if subscription.pending and len(self._expected) > 1:
            # Pipelined requests that run them are still to be answered.
            return
        subscription.pending = []
        self._listenWatch = False
        if self._listenGroup is not None:
            self._listenGroup.unreserve(self)

    def _listenCommit(self) -> None:
        added, removed = self.subscription.commit()
        if added or removed:
            self._group().changed(self, added, removed)

    def _dropListens(self) -> None:
        """
        The client is gone: its listens stop.
        """
        group = self._listenGroup
        if group is not None:
            group.drop(self)
        self.subscription.pending = []
        self.subscription.rollback()
        self._notes = []
        timer, self._notesTimer = self._notesTimer, None
        if timer is not None and timer.active():
            timer.cancel()
        self.notifyHub.trim()

    # -- delivery --------------------------------------------------------------

    def _between(self) -> bool:
        """
        Whether the client is between transactions: a notification written
        now lands between two of its results.
        """
        if self.backend is None:
            return self._acquiring is None and not self._owed
        return bool(self._objects) and self._releasable()

    def _stalled(self) -> bool:
        """
        Whether the client's connection buffer is full (it does not read).
        """
        transport = getattr(self.frontend, "transport", None)
        if transport is None:
            return False
        producer = getattr(transport, "producer", None)
        if producer is not None:
            # The throttle pgtwist registers (pgtwist.net.throttle), or over
            # TLS the membrane Twisted puts around it: paused when the
            # connection's write buffer is full.
            return bool(getattr(producer, "paused", getattr(producer, "_producerPaused", False)))
        # No producer registered: the buffer itself, against Twisted's limit.
        buffered = len(getattr(transport, "dataBuffer", b"")) + getattr(
            transport, "_tempDataLen", 0
        )
        return buffered > getattr(transport, "bufferSize", 65536)

    def notify(self, message: bytes) -> None:
        """
        See L{pgtwist.pipelines._notify.NotificationTarget.notify}.
        """
        if self._done:
            return
        notes = self._notes
        if not notes and self._between() and not self._stalled():
            self.frontend.write(message)
            return
        notes.append(message)
        if len(notes) > self.maxPending:
            self._tooSlow()
        elif self._notesTimer is None and self.backend is None:
            self._notesTimer = self.clock.callLater(RETRY_DELAY, self._retryNotes)

    def _retryNotes(self) -> None:
        self._notesTimer = None
        self._flushNotes()
        if self._notes and not self._done and self.backend is None:
            self._notesTimer = self.clock.callLater(RETRY_DELAY, self._retryNotes)

    def _flushNotes(self) -> None:
        """
        Deliver the notifications held, if the client can take them now.
        """
        if self._done or not self._between() or self._stalled():
            return
        notes, self._notes = self._notes, []
        self.frontend.write(b"".join(notes))

    def _tooSlow(self) -> None:
        self._finish(lost=True)
        self.frontend.fail(
            errors.fatal(
                constants.SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
                "too many notifications not read by this client",
                detail=f"More than max_pending_notifications ({self.maxPending}) were waiting.",
            )
        )

    def listenerLost(self) -> None:
        """
        See L{pgtwist.pipelines._notify.NotificationTarget.listenerLost}:
        notifications may have been lost, which PostgreSQL only ever tells a
        client by losing its connection.
        """
        if self._done:
            return
        self._finish(lost=True)
        self.frontend.fail(
            errors.fatal(
                constants.SQLSTATE_CONNECTION_FAILURE,
                "server closed the connection unexpectedly",
                detail="The PostgreSQL backend listening for this session's notifications "
                "terminated; notifications may have been lost.",
            )
        )
