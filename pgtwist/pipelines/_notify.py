# -*- test-case-name: tests.unit.test_pipeline_notify -*-
"""
C{LISTEN}/C{NOTIFY} in transaction pooling.

A transaction-pooling client has no backend of its own between
transactions, so no backend can hear its notifications. pgtwist keeps, per
pool key (database, user), one I{listener backend} (L{ListenerGroup}) that
listens on the union of the channels its clients listen to, and hands each
C{NotificationResponse} it hears to every client listening on that channel.

What a client sees is PostgreSQL's behaviour:

 - C{LISTEN}, C{UNLISTEN} and C{UNLISTEN *} take effect when the client's
   transaction commits, and not at all if it rolls back
   (L{Subscription}); the statement itself still runs on the client's
   backend, which answers it as PostgreSQL does, and is made to
   C{UNLISTEN *} before it goes back to the pool;
 - before a client's C{LISTEN} reaches its backend, the listener backend
   already listens on that channel, so nothing committed after the
   client's commit can be missed;
 - notifications reach an idle client at once and a busy one between its
   transactions, never inside a result, in the order the listener backend
   got them (PostgreSQL's order);
 - the pid of each notification is the notifying client's pid as that
   client knows it (its BackendKeyData) when the notifier is a client of
   this process: the client whose statement naming C{NOTIFY} or
   C{pg_notify} last ran on that backend (L{NotifyHub.lent}); otherwise
   PostgreSQL's real pid (a notification sent by a trigger carries the pid
   of the last client whose own text notified on that backend, if any);
 - a client that disconnects stops its listens;
 - when the listener backend dies, every client listening then is
   disconnected with the error PostgreSQL gives a client whose connection
   was lost (08006): notifications sent meanwhile are lost, and a driver
   only knows to listen again after it reconnects. The next C{LISTEN}
   opens a new listener backend, which listens again on every channel
   still wanted.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import weakref
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from pgtwist.interfaces import IBackendLink, IBackendPool
from pgtwist.wire import codec, constants
from pgtwist.wire.codec import INT32
from pgtwist.wire.sql import quoteIdentifier

#: Default of C{max_listen_channels}: channels one client may listen on.
MAX_CHANNELS = 1000
#: Default of C{max_pending_notifications}: notifications held for one
#: client that is busy or not reading before it is disconnected.
MAX_PENDING = 10000
#: PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes.
_NAME_BYTES = 63

#: One operation: C{("LISTEN", name)}, C{("UNLISTEN", name)} or
#: C{("UNLISTEN", None)} for C{UNLISTEN *}.
Operation = tuple[str, "str | None"]

_STATEMENT = re.compile(
    r"""
    ^(?:\s|/\*.*?\*/|--[^\n]*)*
    (?:
        (?P<discard>discard\s+all\s*$)
      | (?P<verb>un)?listen\s+
        (?:
            (?P<all>\*)
          | "(?P<quoted>(?:[^"]|"")+)"
          | (?P<plain>[^\s;"*]+)
        )
    )
    """,
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)


#: Savepoint statements, read while a transaction's C{LISTEN}/C{UNLISTEN}
#: are pending: C{ROLLBACK TO SAVEPOINT} undoes those run after the
#: savepoint, C{RELEASE SAVEPOINT} keeps them.
_SAVEPOINT = re.compile(
    r"""
    ^(?:\s|/\*.*?\*/|--[^\n]*)*
    (?:
        (?P<savepoint>savepoint)
      | (?P<release>release)(?:\s+savepoint)?
      | (?P<rollback>rollback)(?:\s+(?:work|transaction))?\s+to(?:\s+savepoint)?
    )
    \s+(?:"(?P<quoted>(?:[^"]|"")+)"|(?P<plain>[^\s;"]+))\s*$
    """,
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)

#: The command tag of each operation's statement.
_TAGS = {
    "LISTEN": b"LISTEN",
    "UNLISTEN": b"UNLISTEN",
    "SAVEPOINT": b"SAVEPOINT",
    "RELEASE": b"RELEASE",
    "ROLLBACK TO": b"ROLLBACK",
}


def _truncate(name: str) -> str:
    data = name.encode("utf-8", "surrogateescape")
    if len(data) <= _NAME_BYTES:
        return name
    return data[:_NAME_BYTES].decode("utf-8", "ignore")


def operations(sql: bytes) -> list[Operation]:
    """
    The C{LISTEN}/C{UNLISTEN} operations of a query's text, in order:
    channel names as PostgreSQL folds them (lowercase unless quoted,
    truncated to 63 bytes); C{DISCARD ALL} is an C{UNLISTEN *}. Savepoint
    statements are C{("SAVEPOINT", name)}, C{("RELEASE", name)} and
    C{("ROLLBACK TO", name)}, names folded alike.
    """
    result: list[Operation] = []
    text = sql.rstrip(b"\x00").decode("utf-8", "surrogateescape")
    for statement in text.split(";"):
        match = _STATEMENT.match(statement)
        if match is None:
            match = _SAVEPOINT.match(statement)
            if match is not None:
                verb = (
                    "SAVEPOINT"
                    if match.group("savepoint")
                    else "RELEASE"
                    if match.group("release")
                    else "ROLLBACK TO"
                )
                quoted = match.group("quoted")
                name = quoted.replace('""', '"') if quoted is not None else match.group("plain")
                result.append((verb, _truncate(name if quoted is not None else name.lower())))
            continue
        if match.group("discard"):
            # DISCARD ALL includes UNLISTEN *.
            result.append(("UNLISTEN", None))
            continue
        verb = "UNLISTEN" if match.group("verb") else "LISTEN"
        if match.group("all"):
            if verb == "UNLISTEN":
                result.append((verb, None))
            continue
        quoted = match.group("quoted")
        name = quoted.replace('""', '"') if quoted is not None else match.group("plain").lower()
        result.append((verb, _truncate(name)))
    return result


def listenedChannels(ops: list[Operation]) -> list[str]:
    """
    The channels C{ops} start listening on.
    """
    return [name for verb, name in ops if verb == "LISTEN" and name is not None]


class ChannelLimit(Exception):
    """
    A client asked to listen on more channels than C{max_listen_channels}.
    """


def savepoints(ops: list[Operation]) -> list[Operation]:
    """
    The savepoint statements of C{ops}.
    """
    return [op for op in ops if op[0] not in _CHANNEL_VERBS]


_CHANNEL_VERBS = frozenset(["LISTEN", "UNLISTEN"])


class Subscription:
    """
    One client's channels: those its committed transactions listen on, and
    the operations of its open transaction, run as their statements complete
    (L{executed}), applied at commit (L{commit}) or dropped at rollback
    (L{rollback}). A C{ROLLBACK TO SAVEPOINT} drops those run after the
    savepoint, as PostgreSQL's subtransactions do (C{AtSubAbort_Notify}).

    @ivar channels: The committed channels.
    @ivar pending: Operations sent to the backend and not run yet, in order:
        C{LISTEN}/C{UNLISTEN} and savepoint statements (L{operations}).
    @ivar applied: C{LISTEN}/C{UNLISTEN} operations the open transaction
        ran, not rolled back to a savepoint.
    @ivar savepoints: The open transaction's savepoints that were set while
        operations were tracked: C{(name, len(applied) then)}, innermost
        last. A savepoint set before them precedes every operation.
    """

    def __init__(self, maxChannels: int = MAX_CHANNELS) -> None:
        self.channels: set[str] = set()
        self.pending: list[Operation] = []
        self.applied: list[Operation] = []
        self.savepoints: list[tuple[str | None, int]] = []
        self.maxChannels = maxChannels

    def executed(self, tag: bytes) -> bool:
        """
        A statement completed with the command tag C{tag}: whether it is the
        first pending operation, which then runs.
        """
        pending = self.pending
        if not pending:
            return False
        verb, name = pending[0]
        if tag != _TAGS[verb] and not (tag == b"DISCARD ALL" and name is None):
            return False
        del pending[0]
        if verb in _CHANNEL_VERBS:
            self.applied.append((verb, name))
            return True
        stack = self.savepoints
        if verb == "SAVEPOINT":
            stack.append((name, len(self.applied)))
            return True
        found = -1
        for index in range(len(stack) - 1, -1, -1):
            if stack[index][0] == name:
                found = index
                break
        if verb == "RELEASE":
            # The savepoint and every one set after it (all of them when it
            # was set before the tracked ones).
            del stack[max(found, 0) :]
        elif found < 0:
            # Set before any operation of the transaction ran.
            del self.applied[:]
            del stack[:]
        else:
            del self.applied[stack[found][1] :]
            del stack[found + 1 :]
        return True

    def record(self, ops: list[Operation]) -> None:
        """
        The open transaction ran C{ops}.
        """
        self.pending.extend(ops)

    def preview(self, ops: list[Operation] = []) -> set[str]:  # noqa: B006
        """
        The channels after a commit of what is pending, then C{ops}.
        """
        channels = set(self.channels)
        for verb, name in (*self.applied, *self.pending, *ops):
            if verb not in _CHANNEL_VERBS:
                continue
            if name is None:
                channels.clear()
            elif verb == "LISTEN":
                channels.add(name)
            else:
                channels.discard(name)
        return channels

    def check(self, ops: list[Operation]) -> None:
        """
        Raise L{ChannelLimit} when committing what is pending, then C{ops},
        would listen on more than C{maxChannels} channels.
        """
        if len(self.preview(ops)) > self.maxChannels:
            raise ChannelLimit(self.maxChannels)

    def commit(self) -> tuple[set[str], set[str]]:
        """
        The transaction committed: apply what it ran; return the channels
        added and removed.
        """
        ops = self.applied
        self.applied = []
        del self.savepoints[:]
        before = self.channels
        after = set(before)
        for verb, name in ops:
            if name is None:
                after.clear()
            elif verb == "LISTEN":
                after.add(name)
            else:
                after.discard(name)
        self.channels = after
        return after - before, before - after

    def rollback(self) -> None:
        """
        The transaction rolled back: what it ran is undone.
        """
        self.applied = []
        del self.savepoints[:]


class NotificationTarget(Protocol):
    """
    A client a L{ListenerGroup} delivers to.
    """

    subscription: Subscription

    def notify(self, message: bytes) -> None:
        """
        Deliver one whole C{NotificationResponse} message.
        """

    def listenerLost(self) -> None:
        """
        The listener backend died while this client listened.
        """


def notification(processId: int, channel: bytes, payload: bytes) -> bytes:
    """
    A C{NotificationResponse} message (channel and payload NUL-terminated).
    """
    return codec.frame(constants.NOTIFICATION_RESPONSE, INT32.pack(processId) + channel + payload)


class ListenerGroup:
    """
    The listener backend of one pool key and the clients it serves.

    @ivar backend: The listener backend, once lent by the pool.
    @ivar wanted: Channel -> how many clients need it (committed, or about
        to be: see L{reserve}).
    @ivar listening: Channels the listener backend confirmed listening on.
    @ivar clients: Channel -> clients whose committed channels include it.
    """

    log = Logger()

    def __init__(self, hub: NotifyHub, key: tuple[str, str]) -> None:
        self.hub = hub
        self.key = key
        self.backend: IBackendLink | None = None
        self._acquiring: Deferred[IBackendLink] | None = None
        self.wanted: dict[str, int] = {}
        self.listening: set[str] = set()
        self._requested: set[str] = set()
        self.clients: dict[str, list[NotificationTarget]] = {}
        self._reserved: dict[int, set[str]] = {}
        self._waiters: dict[str, list[Deferred[None]]] = {}
        self.delivered = 0
        self.lost = 0
        #: The pool's lostCallback of the listener backend, put back when
        #: it is released.
        self._previousLost: Any = None

    # -- what clients need ------------------------------------------------------

    def _want(self, name: str) -> None:
        count = self.wanted.get(name, 0)
        self.wanted[name] = count + 1
        if not count:
            self._sync()

    def _unwant(self, name: str) -> None:
        count = self.wanted.get(name, 0) - 1
        if count > 0:
            self.wanted[name] = count
            return
        self.wanted.pop(name, None)
        self._sync()

    def reserve(self, target: NotificationTarget, channels: list[str]) -> Deferred[None]:
        """
        A client is about to run C{LISTEN} on C{channels}: have the listener
        backend listen on them first. Fires once it does (at once if it
        already does); the channels stay wanted until L{unreserve}.
        """
        reserved = self._reserved.setdefault(id(target), set())
        missing = []
        for name in channels:
            if name not in reserved and name not in target.subscription.channels:
                reserved.add(name)
                self._want(name)
            if name not in self.listening:
                missing.append(name)
        if not missing:
            return succeed(None)
        d: Deferred[None] = Deferred()
        # Fires when the last missing channel is listened on.
        self._waiters.setdefault(missing[-1], []).append(d)
        return d

    def unreserve(self, target: NotificationTarget) -> None:
        """
        The client's transaction ended: what it reserved is needed only if
        committed.
        """
        reserved = self._reserved.pop(id(target), None)
        for name in reserved or ():
            if name not in target.subscription.channels:
                self._unwant(name)
            # Else now counted through the committed channels (see changed).

    def changed(self, target: NotificationTarget, added: set[str], removed: set[str]) -> None:
        """
        A client's committed channels changed (L{Subscription.commit}).
        """
        reserved = self._reserved.get(id(target))
        for name in added:
            self.clients.setdefault(name, []).append(target)
            if reserved is not None and name in reserved:
                # The reservation becomes the subscription's count.
                reserved.discard(name)
            else:
                self._want(name)
        for name in removed:
            targets = self.clients.get(name)
            if targets is not None and target in targets:
                targets.remove(target)
                if not targets:
                    del self.clients[name]
            self._unwant(name)

    def drop(self, target: NotificationTarget) -> None:
        """
        A client is gone: its listens stop.
        """
        self.unreserve(target)
        channels, target.subscription.channels = target.subscription.channels, set()
        self.changed(target, set(), channels)

    # -- the listener backend -----------------------------------------------------

    def _sync(self) -> None:
        """
        Make the listener backend listen on exactly the wanted channels.
        """
        backend = self.backend
        if backend is None:
            if self.wanted and self._acquiring is None:
                self._acquire()
            return
        if not self.wanted:
            self._release()
            return
        wanted = self.wanted
        add = [name for name in wanted if name not in self._requested]
        remove = [name for name in self._requested if name not in wanted]
        if not add and not remove:
            return
        statements = [f"LISTEN {quoteIdentifier(name)}" for name in add]
        statements += [f"UNLISTEN {quoteIdentifier(name)}" for name in remove]
        self._requested.update(add)
        self._requested.difference_update(remove)
        backend.simpleQuery("; ".join(statements)).addCallbacks(
            self._cbListened, self._ebListened, callbackArgs=(backend, add, remove)
        )

    def _cbListened(
        self, error: object, backend: IBackendLink, add: list[str], remove: list[str]
    ) -> None:
        if backend is not self.backend:
            return
        if error is not None:
            self.log.warn(
                "The listener backend of {poolKey} refused LISTEN: {error}",
                poolKey=self.key,
                error=getattr(error, "message", error),
            )
            self._lose(backend)
            return
        self.listening.difference_update(remove)
        self.listening.update(add)
        for name in add:
            for d in self._waiters.pop(name, ()):
                d.callback(None)

    def _ebListened(self, reason: Failure) -> None:
        # The connection was lost: _backendLost handles it.
        pass

    def _acquire(self) -> None:
        pool = self.hub.pool
        if pool is None or self._acquiring is not None or self.backend is not None:
            return
        d = self._acquiring = pool.acquire(self.key, None)
        d.addCallbacks(self._cbAcquired, self._ebAcquired)

    def _cbAcquired(self, backend: IBackendLink) -> None:
        self._acquiring = None
        if not self.wanted:
            assert self.hub.pool is not None
            self.hub.pool.release(backend, reset=False)
            return
        self.backend = backend
        pooled: Any = backend
        previous = self._previousLost = getattr(pooled, "lostCallback", None)
        pooled.notificationCallback = self._notification

        def lost(connection: Any, reason: Failure) -> None:
            if previous is not None:
                previous(connection, reason)
            self._backendLost(backend)

        pooled.lostCallback = lost
        self.log.info(
            "Listener backend {backendPid} of {poolKey} listens for {count} channel(s)",
            backendPid=backend.processId,
            poolKey=self.key,
            count=len(self.wanted),
        )
        self._sync()

    def _ebAcquired(self, reason: Failure) -> None:
        self._acquiring = None
        self.log.warn(
            "No listener backend for {poolKey}: {reason}",
            poolKey=self.key,
            reason=reason.getErrorMessage(),
        )
        self._fail()

    def _release(self) -> None:
        backend, self.backend = self.backend, None
        self.listening.clear()
        self._requested.clear()
        if backend is None:
            return
        pooled: Any = backend
        pooled.notificationCallback = None
        pooled.lostCallback = self._previousLost
        if self.hub.pool is not None:
            # DISCARD ALL: every LISTEN goes.
            self.hub.pool.release(backend, reset=True)

    def _lose(self, backend: IBackendLink) -> None:
        assert self.hub.pool is not None
        self.hub.pool.discard(backend, "listener backend failed")

    def _backendLost(self, backend: IBackendLink) -> None:
        if backend is not self.backend:
            return
        self.backend = None
        self.listening.clear()
        self._requested.clear()
        self.lost += 1
        self.hub.listenerLosses += 1
        self.log.warn(
            "Listener backend {backendPid} of {poolKey} was lost; its listening clients "
            "are disconnected, and a new one listens on the channels still wanted",
            backendPid=backend.processId,
            poolKey=self.key,
        )
        self._fail()
        if self.wanted:
            self._acquire()

    def _fail(self) -> None:
        """
        Notifications may have been lost: every committed listener is told
        as a client whose connection was lost; waiting reservations fail.
        """
        targets: dict[int, NotificationTarget] = {}
        for listeners in self.clients.values():
            for target in listeners:
                targets[id(target)] = target
        for target in targets.values():
            target.listenerLost()
        waiters, self._waiters = self._waiters, {}
        for ds in waiters.values():
            for d in ds:
                d.errback(Failure(ConnectionError("the listener backend was lost")))

    def _notification(self, body: bytes) -> None:
        """
        The listener backend heard one notification (the body of its
        NotificationResponse): hand it to every client listening.
        """
        (pid,) = INT32.unpack_from(body)
        end = body.index(b"\x00", 4) + 1
        channel = body[4:end]
        targets = self.clients.get(codec.decodeText(channel[:-1]))
        if not targets:
            return
        message = notification(self.hub.lent.get(pid, pid), channel, body[end:])
        self.delivered += len(targets)
        self.hub.delivered += len(targets)
        for target in tuple(targets):
            target.notify(message)

    def listenerCount(self) -> int:
        """
        How many distinct clients listen on at least one channel.
        """
        return len({id(t) for targets in self.clients.values() for t in targets})


#: Every live hub, for SHOW LISTENERS and the metrics.
_hubs: weakref.WeakSet[NotifyHub] = weakref.WeakSet()


def listenerGroups() -> list[ListenerGroup]:
    """
    Every listener group of the process, by pool key (SHOW LISTENERS, the
    metrics).
    """
    groups = [group for hub in list(_hubs) for group in hub.groups.values()]
    return sorted(groups, key=lambda group: group.key)


class SharedPids:
    """
    L{NotifyHub.lent} shared by the worker processes of C{workers = N}: a
    file every worker maps, one Int32 per possible backend pid (Linux's
    largest C{pid_max}), 0 for none. The worker whose listener backend hears
    a notification then knows the pid the notifier was given even when
    another worker served it. Sparse: only the pages of pids written take
    room.
    """

    #: Linux's largest C{pid_max} (2**22).
    PIDS = 1 << 22

    def __init__(self, path: str) -> None:
        size = 4 * self.PIDS
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)

    def __setitem__(self, pid: int, clientPid: int) -> None:
        if 0 < pid < self.PIDS:
            _PID.pack_into(self._map, 4 * pid, clientPid)

    def get(self, pid: int, default: int) -> int:
        """
        The pid known to the client whose C{NOTIFY} last ran on backend
        C{pid}, or C{default}.
        """
        if 0 < pid < self.PIDS:
            found: int = _PID.unpack_from(self._map, 4 * pid)[0]
            if found:
                return found
        return default

    def __len__(self) -> int:
        # Nothing to trim: one slot per pid.
        return 0

    def clear(self) -> None:
        """
        Nothing to forget (see L{__len__}).
        """


_PID = struct.Struct("!i")

#: Set by a worker of C{workers = N} before it serves clients
#: (L{sharePids}): every L{NotifyHub} uses it as its L{lent}.
_sharedPids: SharedPids | None = None


def sharePids(path: str) -> None:
    """
    Make the L{NotifyHub}s of this process share L{NotifyHub.lent} with the
    other processes that map C{path} (the workers of C{workers = N}).
    """
    global _sharedPids
    _sharedPids = SharedPids(path)
    # The pipelines' hubs may exist already (plugins are made at import).
    for hub in list(_hubs):
        hub.lent = _sharedPids


class NotifyHub:
    """
    The listener groups of one transaction pipeline, by pool key.

    @ivar lent: Real backend pid -> the pid known to the client whose
        C{NOTIFY} or C{pg_notify} last ran there.
    """

    #: L{lent} is cleared past this many backends (pids of long-gone
    #: backends otherwise pile up; a miss only reports the real pid).
    MAX_LENT = 10000

    def __init__(self) -> None:
        self.pool: IBackendPool | None = None
        self.groups: dict[tuple[str, str], ListenerGroup] = {}
        self.lent: dict[int, int] | SharedPids = _sharedPids if _sharedPids is not None else {}
        self.delivered = 0
        self.listenerLosses = 0
        _hubs.add(self)

    def group(self, key: tuple[str, str], pool: IBackendPool) -> ListenerGroup:
        """
        The listener group of C{key}, created on first use.
        """
        if self.pool is None:
            self.pool = pool
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = ListenerGroup(self, key)
        return group

    def trim(self) -> None:
        """
        Forget the backends lent so far once there are too many (sessions
        add to L{lent} inline, without a call, at each transaction).
        """
        if len(self.lent) > self.MAX_LENT:
            self.lent.clear()


__all__ = [
    "MAX_CHANNELS",
    "MAX_PENDING",
    "ChannelLimit",
    "ListenerGroup",
    "NotificationTarget",
    "NotifyHub",
    "Subscription",
    "listenerGroups",
    "listenedChannels",
    "notification",
    "operations",
]
