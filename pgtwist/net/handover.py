# -*- test-case-name: tests.unit.test_handover -*-
"""
The hand-over message format: what a running pgtwist and the pgtwist that
upgrades it say to each other over the hand-over unix socket, sans-IO.

Every message is a frame::

    magic    4 bytes   b"PGTH"
    version  uint16    the format version (L{FORMAT_VERSION})
    length   uint32    the body's length, at most L{MAX_BODY}
    body     JSON      an object whose "type" names the message

Descriptors travel beside a frame as C{SCM_RIGHTS}; a frame that carries
some says how many in its body, and the receiver checks the count, so a
descriptor is never taken for another nor silently dropped. Both sides
check the magic, the version, the length, the type and every field before
acting: anything they do not understand is refused, and a refused hand-over
leaves everything with the old process (docs/admin.rst, "Upgrading without
dropping a client").

The conversation::

    new → old   hello      the new process's pid and version, the format
                           versions it reads
    old → new   listeners  one record per listening socket, with their
                           descriptors, and where the old process takes
                           cancels for the clients it keeps
    new → old   taken      the new process listens on them all now
      or        refuse     it cannot (the old one goes on as before)

Version 2 goes on over the same socket: the old process hands over its
clients one by one as each is idle between transactions, and the new one
answers each::

    old → new   client     one client's state (L{ClientRecord}) with its
                           descriptor, and in session and performance
                           pooling its backend's (L{BackendRecord}) with
                           the backend's descriptor after it
    old → new   backend    an idle pooled backend (L{IdleBackend}) with
                           its descriptor
    new → old   adopted    the new process serves it now: the old one
                           closes its copy without a word to the client
      or        kept       it cannot (the reason is logged): the old one
                           goes on serving it

A hello is always framed as version 1, the version every pgtwist reads;
the old process answers in the highest version both read, and that frame's
version is the conversation's from then on. Version 1 ends at C{taken}
(clients then stay with the old process until they leave).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Union

from pgtwist._compat import SLOTS

#: The highest version of the format this pgtwist writes and reads.
FORMAT_VERSION = 2
#: The version a hello is framed in (every pgtwist reads it).
HELLO_VERSION = 1
#: Every version this pgtwist reads (a hello names the reader's).
READABLE_VERSIONS = frozenset({1, FORMAT_VERSION})
MAGIC = b"PGTH"
HEADER = struct.Struct("!4sHI")
#: The largest body either side accepts: a listeners message with every
#: listener pgtwist can have fits in a few kilobytes; a client message
#: carries its prepared statements' texts (a client whose state is longer
#: stays with the old process).
MAX_BODY = 8 * 1024 * 1024
#: The most descriptors one message may carry.
MAX_DESCRIPTORS = 64


class HandoverError(Exception):
    """
    A message broke the format: the hand-over stops and the old process
    keeps what it has.
    """


@dataclass(frozen=True, **SLOTS)
class Hello:
    """
    The new process introduces itself.

    @ivar pid: Its process id (logged by the old process).
    @ivar version: Its pgtwist version, for the logs.
    @ivar readable: The format versions it reads.
    """

    pid: int
    version: str
    readable: tuple[int, ...]


@dataclass(frozen=True, **SLOTS)
class ListenerRecord:
    """
    One listening socket of the old process.

    @ivar description: Its endpoint description (C{tcp:6432:interface=...},
        C{unix:/tmp/.s.PGSQL.6432:...}), which the new process matches
        against its own configuration.
    @ivar family: The socket's address family (C{socket.AF_INET}...).
    @ivar role: C{"listen"} for a client listener, C{"management"} for the
        management port.
    """

    description: str
    family: int
    role: str


@dataclass(frozen=True, **SLOTS)
class Listeners:
    """
    The old process's listening sockets; their descriptors come with it, in
    the same order.

    @ivar cancel: Where the old process takes CancelRequests for the
        clients it keeps (a unix socket path), or C{""}.
    """

    listeners: tuple[ListenerRecord, ...]
    cancel: str = ""


@dataclass(frozen=True, **SLOTS)
class Taken:
    """
    The new process adopted C{count} listeners and will accept on them.
    """

    count: int


@dataclass(frozen=True, **SLOTS)
class Refuse:
    """
    The sender will not go on; C{reason} says why (it is logged).
    """

    reason: str


@dataclass(frozen=True, **SLOTS)
class BackendRecord:
    """
    A PostgreSQL connection handed over with the client it serves (session
    and performance pooling), with its descriptor after the client's.

    @ivar family: Its socket's address family.
    @ivar server: The name of the server section it is connected to; the
        new process takes it only if its configuration has that server at
        the same address.
    @ivar host: That server's host, as configured.
    @ivar port: That server's port.
    @ivar processId: The backend's pid (its BackendKeyData).
    @ivar secretKey: The backend's cancel secret.
    @ivar parameters: The ParameterStatus values it reported last.
    @ivar transactionStatus: Its last ReadyForQuery's status (C{I}, C{T}
        or C{E}).
    @ivar prepared: The statements pgtwist itself prepared on it (its
        auth_query), name -> SQL.
    """

    family: int
    server: str
    host: str
    port: int
    processId: int
    secretKey: int
    parameters: dict[str, str]
    transactionStatus: str
    prepared: dict[str, str]


@dataclass(frozen=True, **SLOTS)
class ClientRecord:
    """
    A client connection idle between transactions, handed over with its
    descriptor (version 2).

    @ivar id: The old process's id for it, which the answer names.
    @ivar family: Its socket's address family.
    @ivar database: The pool key's database (after aliases).
    @ivar user: The pool key's user.
    @ivar requestedDatabase: The database as the client named it.
    @ivar startupParameters: Its StartupMessage's parameters.
    @ivar processId: The pid of the BackendKeyData it was given.
    @ivar secretKey: The secret of that key: the new process answers the
        client's CancelRequests by it.
    @ivar pipeline: The pipeline serving it; the new process takes it only
        if its configuration gives the pool the same one.
    @ivar session: The pipeline's own state (an object the pipeline checks
        when it takes it, L{pgtwist.pipelines.transaction}).
    @ivar backend: The backend that goes with the client (session and
        performance pooling), or C{None}.
    """

    id: int
    family: int
    database: str
    user: str
    requestedDatabase: str
    startupParameters: tuple[tuple[str, str], ...]
    processId: int
    secretKey: int
    pipeline: str
    session: dict[str, Any]
    backend: BackendRecord | None = None


@dataclass(frozen=True, **SLOTS)
class IdleBackend:
    """
    A pooled backend no client holds, handed over with its descriptor
    (version 2), so that the new process need not log in again.

    @ivar id: The old process's id for it, which the answer names.
    @ivar database: Its pool key's database.
    @ivar user: Its pool key's user.
    @ivar backend: The connection's state.
    """

    id: int
    database: str
    user: str
    backend: BackendRecord


@dataclass(frozen=True, **SLOTS)
class Adopted:
    """
    The new process serves client C{id} now.
    """

    id: int


@dataclass(frozen=True, **SLOTS)
class Kept:
    """
    The new process cannot take client C{id}; the old one keeps it.
    """

    id: int
    reason: str


HandoverMessage = Union[Hello, Listeners, Taken, Refuse, ClientRecord, IdleBackend, Adopted, Kept]

_ROLES = ("listen", "management")


def _encodeBackend(b: BackendRecord) -> dict[str, Any]:
    return {
        "family": b.family,
        "server": b.server,
        "host": b.host,
        "port": b.port,
        "processId": b.processId,
        "secretKey": b.secretKey,
        "parameters": b.parameters,
        "transactionStatus": b.transactionStatus,
        "prepared": b.prepared,
    }


def encode(message: HandoverMessage, version: int | None = None) -> bytes:
    """
    One frame for C{message}.

    @param version: The version written in the header: by default
        L{HELLO_VERSION} for a hello, L{FORMAT_VERSION} for the others; the
        conversation's version once it is agreed.
    """
    if version is None:
        version = HELLO_VERSION if isinstance(message, Hello) else FORMAT_VERSION
    body: dict[str, Any]
    if isinstance(message, Hello):
        body = {
            "type": "hello",
            "pid": message.pid,
            "version": message.version,
            "readable": list(message.readable),
        }
    elif isinstance(message, Listeners):
        body = {
            "type": "listeners",
            "listeners": [
                {"description": r.description, "family": r.family, "role": r.role}
                for r in message.listeners
            ],
            "cancel": message.cancel,
        }
    elif isinstance(message, Taken):
        body = {"type": "taken", "count": message.count}
    elif isinstance(message, ClientRecord):
        body = {
            "type": "client",
            "id": message.id,
            "family": message.family,
            "database": message.database,
            "user": message.user,
            "requestedDatabase": message.requestedDatabase,
            "startupParameters": [list(pair) for pair in message.startupParameters],
            "processId": message.processId,
            "secretKey": message.secretKey,
            "pipeline": message.pipeline,
            "session": message.session,
        }
        if message.backend is not None:
            body["backend"] = _encodeBackend(message.backend)
    elif isinstance(message, IdleBackend):
        body = {
            "type": "backend",
            "id": message.id,
            "database": message.database,
            "user": message.user,
            "backend": _encodeBackend(message.backend),
        }
    elif isinstance(message, Adopted):
        body = {"type": "adopted", "id": message.id}
    elif isinstance(message, Kept):
        body = {"type": "kept", "id": message.id, "reason": message.reason}
    else:
        body = {"type": "refuse", "reason": message.reason}
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_BODY:
        raise HandoverError(f"a {body['type']} message of {len(data)} bytes is too long")
    return HEADER.pack(MAGIC, version, len(data)) + data


def descriptorCount(message: HandoverMessage) -> int:
    """
    How many descriptors travel with C{message}.
    """
    if isinstance(message, Listeners):
        return len(message.listeners)
    if isinstance(message, ClientRecord):
        return 1 if message.backend is None else 2
    return 1 if isinstance(message, IdleBackend) else 0


def _strings(body: dict[str, Any], name: str) -> dict[str, str]:
    value = _field(body, name, dict)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise HandoverError(f"{body.get('type')} message: bad {name!r}")
    return dict(value)


def _decodeBackend(item: Any) -> BackendRecord | None:
    if item is None:
        return None
    if not isinstance(item, dict):
        raise HandoverError("client message: bad 'backend'")
    item = {**item, "type": "client"}
    status = _field(item, "transactionStatus", str)
    if status not in ("I", "T", "E"):
        raise HandoverError("client message: bad 'transactionStatus'")
    return BackendRecord(
        _field(item, "family", int),
        _field(item, "server", str),
        _field(item, "host", str),
        _field(item, "port", int),
        _field(item, "processId", int),
        _field(item, "secretKey", int),
        _strings(item, "parameters"),
        status,
        _strings(item, "prepared"),
    )


def _field(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise HandoverError(f"{body.get('type')} message: bad or missing {name!r}")
    return value


#: The messages a version 1 frame cannot carry.
_SINCE_2 = frozenset({"client", "backend", "adopted", "kept"})


def _decodeBody(body: dict[str, Any], version: int = FORMAT_VERSION) -> HandoverMessage:
    kind = body.get("type")
    if version < 2 and kind in _SINCE_2:
        raise HandoverError(f"a {kind} message in a version {version} frame")
    if kind == "hello":
        readable = _field(body, "readable", list)
        if not readable or not all(isinstance(v, int) and v > 0 for v in readable):
            raise HandoverError("hello message: bad 'readable'")
        return Hello(
            _field(body, "pid", int), _field(body, "version", str), tuple(sorted(readable))
        )
    if kind == "listeners":
        records = []
        items = _field(body, "listeners", list)
        if len(items) > MAX_DESCRIPTORS:
            raise HandoverError(f"listeners message: {len(items)} listeners is too many")
        for item in items:
            if not isinstance(item, dict):
                raise HandoverError("listeners message: a listener is not an object")
            role = _field(item | {"type": "listeners"}, "role", str)
            if role not in _ROLES:
                raise HandoverError(f"listeners message: unknown role {role!r}")
            records.append(
                ListenerRecord(
                    _field(item | {"type": "listeners"}, "description", str),
                    _field(item | {"type": "listeners"}, "family", int),
                    role,
                )
            )
        cancel = body.get("cancel", "")
        if not isinstance(cancel, str):
            raise HandoverError("listeners message: bad 'cancel'")
        return Listeners(tuple(records), cancel)
    if kind == "taken":
        count = _field(body, "count", int)
        if count < 0:
            raise HandoverError("taken message: negative count")
        return Taken(count)
    if kind == "refuse":
        return Refuse(_field(body, "reason", str)[:1000])
    if kind == "client":
        pairs = _field(body, "startupParameters", list)
        if not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)
            for pair in pairs
        ):
            raise HandoverError("client message: bad 'startupParameters'")
        return ClientRecord(
            _field(body, "id", int),
            _field(body, "family", int),
            _field(body, "database", str),
            _field(body, "user", str),
            _field(body, "requestedDatabase", str),
            tuple((name, value) for name, value in pairs),
            _field(body, "processId", int),
            _field(body, "secretKey", int),
            _field(body, "pipeline", str),
            _field(body, "session", dict),
            _decodeBackend(body.get("backend")),
        )
    if kind == "backend":
        backend = _decodeBackend(_field(body, "backend", dict))
        assert backend is not None
        return IdleBackend(
            _field(body, "id", int),
            _field(body, "database", str),
            _field(body, "user", str),
            backend,
        )
    if kind == "adopted":
        return Adopted(_field(body, "id", int))
    if kind == "kept":
        return Kept(_field(body, "id", int), _field(body, "reason", str)[:1000])
    raise HandoverError(f"unknown message type {kind!r}")


class Decoder:
    """
    Frames to messages: feed it bytes as they arrive.
    """

    def __init__(self) -> None:
        self._buffer = b""
        #: The version of the last frame read (0 before any).
        self.version = 0

    def feed(self, data: bytes) -> list[HandoverMessage]:
        """
        The messages C{data} completes.

        @raise HandoverError: The bytes break the format (wrong magic, a
            version this pgtwist does not read, a body too long or not the
            JSON of a known message); nothing after them is read.
        """
        self._buffer += data
        messages = []
        while len(self._buffer) >= HEADER.size:
            magic, version, length = HEADER.unpack_from(self._buffer)
            if magic != MAGIC:
                raise HandoverError("not a pgtwist hand-over message")
            if version not in READABLE_VERSIONS:
                raise HandoverError(
                    f"hand-over format version {version} is not one this pgtwist reads "
                    f"({', '.join(map(str, sorted(READABLE_VERSIONS)))})"
                )
            if length > MAX_BODY:
                raise HandoverError(f"a hand-over message of {length} bytes is too long")
            if len(self._buffer) < HEADER.size + length:
                break
            raw = self._buffer[HEADER.size : HEADER.size + length]
            self._buffer = self._buffer[HEADER.size + length :]
            self.version = version
            try:
                body = json.loads(raw.decode("utf-8"))
            except ValueError as e:
                raise HandoverError(f"a hand-over message is not JSON: {e}") from None
            if not isinstance(body, dict):
                raise HandoverError("a hand-over message is not a JSON object")
            messages.append(_decodeBody(body, version))
        return messages

    @property
    def pending(self) -> int:
        """
        How many bytes wait for the rest of their frame.
        """
        return len(self._buffer)
