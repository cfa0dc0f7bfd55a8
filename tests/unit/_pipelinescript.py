"""
A table-driven harness for the transaction pipeline: each step says what
arrives (from the client or from PostgreSQL) and exactly what pgtwist writes
to the backend and to the client in response, compared message by message.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.model import Configuration, MainSettings, PoolKey
from pgtwist.pipelines._settings import OBJECT_KINDS
from pgtwist.pipelines._settings import stateQuery as _stateQuery
from pgtwist.pipelines._statements import StatementRegistry
from pgtwist.pipelines.transaction import TransactionPipeline, TransactionPipelineSession
from pgtwist.testing import FakeBackendLink, FakeBackendPool, FakeFrontendLink
from pgtwist.wire import codec, errors
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.framing import Frame, MessageFramer
from pgtwist.wire.messages import (
    Bind,
    CommandComplete,
    DataRow,
    ErrorResponse,
    Execute,
    FieldDescription,
    Message,
    Parse,
    Query,
    ReadyForQuery,
    RowDescription,
)
from pgtwist.wire.sql import quoteLiteral

#: Messages as the test writes them: wire objects, or raw frames for the
#: types L{pgtwist.wire.messages} does not model (COPY, ParameterDescription).
# Union, not |: evaluated at import, and PyPy runs Python 3.9.
Wire = Sequence[Union[Message, bytes]]
#: How a step's bytes are cut into C{dataReceived} calls.
Chopper = Callable[[bytes], list[bytes]]

CLIENT = "client"
SERVER = "server"

#: A statement with one integer parameter.
Q1 = "SELECT $1::int"
#: The RowDescription of a one-integer-column result.
ROW = RowDescription((FieldDescription("int4", typeOid=23, typeSize=4),))
#: The parameters a fresh PostgreSQL 15 backend reports (a subset).
DEFAULTS = {
    "application_name": "",
    "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY",
    "TimeZone": "UTC",
    "server_version": "15.0",
    "standard_conforming_strings": "on",
}
#: Startup parameters with reported and unreported settings, some in C{options}.
STARTUP = {
    "user": "user",
    "database": "db",
    "application_name": "app",
    "TimeZone": "Europe/Paris",
    "options": "-c search_path=s1 --statement-timeout=5s",
}


def bind(statement: str, value: bytes = b"1", portal: str = "") -> Bind:
    """
    A Bind of one text parameter.
    """
    return Bind(portal, statement, (), (value,), ())


def selected(value: bytes = b"1") -> list[DataRow | CommandComplete]:
    """
    The rows and completion of a one-row SELECT through the extended
    protocol.
    """
    return [DataRow((value,)), CommandComplete("SELECT 1")]


def one(value: bytes = b"1") -> list[RowDescription | DataRow | CommandComplete]:
    """
    The result of a one-row SELECT through a simple query.
    """
    return [ROW, DataRow((value,)), CommandComplete("SELECT 1")]


def ready(status: bytes = b"I") -> ReadyForQuery:
    """
    ReadyForQuery with C{status}.
    """
    return ReadyForQuery(status)


def stateQuery(*customs: str) -> Query:
    """
    The query that reads a session's state after a transaction that may have
    changed it.
    """
    return Query(_stateQuery(customs))


def stateAnswer(
    settings: Mapping[str, str] | None = None,
    identity: tuple[str, str] = ("user", "user"),
    objects: Mapping[str, int] | None = None,
) -> list[Message]:
    """
    PostgreSQL's answer to L{stateQuery}: session C{settings}, the session
    and current user, and how many of each session-only object there are.
    """
    rows = [DataRow((b"s", n.encode(), v.encode())) for n, v in (settings or {}).items()]
    rows.append(DataRow((b"u", identity[0].encode(), identity[1].encode())))
    for kind, _ in OBJECT_KINDS:
        rows.append(DataRow((b"o", kind.encode(), str((objects or {}).get(kind, 0)).encode())))
    return [*rows, CommandComplete(f"SELECT {len(rows)}"), ready()]


def raising(sqlstate: str, message: str) -> list[Message]:
    """
    What pgtwist sends to make PostgreSQL raise an error at that point of a
    batch: an unnamed C{DO} block, bound to pgtwist's own portal.
    """
    inner = f"BEGIN RAISE EXCEPTION USING ERRCODE = '{sqlstate}', MESSAGE = {quoteLiteral(message)}; END"
    block = f"DO {quoteLiteral(inner)}"
    return [Parse("", block), Bind("PGTWIST_RAISE", ""), Execute("PGTWIST_RAISE")]


def failure(sqlstate: str, message: str) -> ErrorResponse:
    """
    An ERROR-level ErrorResponse.
    """
    return errors.error(sqlstate, message)


def wire(items: Iterable[Message | bytes]) -> bytes:
    """
    The bytes of C{items}, in order.
    """
    return b"".join(item if isinstance(item, bytes) else codec.encode(item) for item in items)


def parameterDescription(*oids: int) -> bytes:
    """
    A ParameterDescription (C{t}) frame.
    """
    return codec.frame(b"t", struct.pack(f"!h{len(oids)}I", len(oids), *oids))


def copyInResponse() -> bytes:
    """
    A CopyInResponse (C{G}) frame: text format, one column.
    """
    return codec.frame(b"G", b"\x00\x00\x01\x00\x00")


def copyOutResponse() -> bytes:
    """
    A CopyOutResponse (C{H}) frame: text format, one column.
    """
    return codec.frame(b"H", b"\x00\x00\x01\x00\x00")


def copyData(data: bytes) -> bytes:
    """
    A CopyData (C{d}) frame, either direction.
    """
    return codec.frame(b"d", data)


def copyDone() -> bytes:
    """
    A CopyDone (C{c}) frame, either direction.
    """
    return codec.frame(b"c", b"")


def copyFail(message: str) -> bytes:
    """
    A CopyFail (C{f}) frame from the client.
    """
    return codec.frame(b"f", codec.encodeString(message))


def readable(data: bytes, decode: Callable[[bytes, bytes], Message]) -> list[Message | Frame]:
    """
    C{data} as a list of decoded messages; frames the codec does not model
    stay L{Frame}s, and a trailing partial message becomes C{Frame(b"?", rest)}.
    """
    framer = MessageFramer()
    result: list[Message | Frame] = []
    for frame in framer.feed(data):
        try:
            result.append(decode(frame.type, frame.body))
        except ProtocolViolation:
            result.append(frame)
    if framer.pending:
        result.append(Frame(b"?", framer.takeRemainder()))
    return result


def whole(data: bytes) -> list[bytes]:
    """
    Deliver a step's bytes in one call.
    """
    return [data]


def byteByByte(data: bytes) -> list[bytes]:
    """
    Deliver a step's bytes one byte per call.
    """
    return [data[i : i + 1] for i in range(len(data))]


def splitAt(position: int) -> Chopper:
    """
    Deliver a step's bytes in two calls, cut at C{position} (one call when
    the step is shorter).
    """

    def chop(data: bytes) -> list[bytes]:
        """
        Cut C{data} in two at C{position}.
        """
        if 0 < position < len(data):
            return [data[:position], data[position:]]
        return [data]

    return chop


@dataclass(frozen=True)
class Step:
    """
    One row of a script.

    @ivar side: L{CLIENT} or L{SERVER}: who sends C{sent}.
    @ivar sent: The messages that arrive.
    @ivar toServer: Everything pgtwist then writes to the backend.
    @ivar toClient: Everything pgtwist then writes to the client.
    """

    side: str
    sent: Wire
    toServer: Wire = ()
    toClient: Wire = ()


def fromClient(sent: Wire, toServer: Wire = (), toClient: Wire = ()) -> Step:
    """
    A step where the client sends C{sent}.
    """
    return Step(CLIENT, sent, toServer, toClient)


def fromServer(sent: Wire, toClient: Wire = (), toServer: Wire = ()) -> Step:
    """
    A step where PostgreSQL sends C{sent}.
    """
    return Step(SERVER, sent, toServer, toClient)


_SET = re.compile(r"^SELECT pg_catalog\.set_config\('([^']+)', E?'(.*)', false\)$")


class ReportingBackend(FakeBackendLink):
    """
    A fake backend whose L{simpleQuery} acts like PostgreSQL for
    C{set_config} of a reported parameter: the new value shows in
    C{parameters}.
    """

    def simpleQuery(self, sql: str) -> Deferred[ErrorResponse | None]:
        """
        Record C{sql}; apply its C{set_config}s to reported parameters.
        """
        self.queries.append(sql)
        if self.queryError is None:
            for statement in sql.split("; "):
                match = _SET.match(statement)
                if match is not None and match.group(1) in self.parameters:
                    self.parameters[match.group(1)] = match.group(2)
        return succeed(self.queryError)


def makeBackend(processId: int, parameters: Mapping[str, str] | None = None) -> ReportingBackend:
    """
    A backend with C{processId} and, if given, exactly these reported
    parameters.
    """
    backend = ReportingBackend(processId)
    if parameters is not None:
        backend.parameters = dict(parameters)
    return backend


class TransactionScript:
    """
    A logged-in transaction-mode client over the fakes, and a player for
    step tables.

    @ivar backends: Every backend handed out so far, in order.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        maxPrepared: int = 200,
        startup: Mapping[str, str] | None = None,
        backend: FakeBackendLink | None = None,
        pipeline: TransactionPipeline | None = None,
        login: bool = True,
        key: PoolKey = ("db", "user"),
        resetAlways: bool = False,
    ) -> None:
        self.case = case
        self.frontend = FakeFrontendLink(key, startupParameters=startup)
        self.frontend.configuration = Configuration(
            main=MainSettings(maxPreparedStatements=maxPrepared, serverResetQueryAlways=resetAlways)
        )
        self.pool = FakeBackendPool()
        self.pool.backend = backend if backend is not None else makeBackend(1001)
        self.pipeline = pipeline if pipeline is not None else TransactionPipeline()
        session = self.pipeline.newSession(self.frontend, self.pool, Clock())
        assert isinstance(session, TransactionPipelineSession)
        self.session = session
        self.backends: list[FakeBackendLink] = [self.pool.backend]
        self._written: dict[int, int] = {}
        if login:
            self.session.begin()
        self._clientWritten = len(self.frontend.written)
        self._noteWritten()

    @property
    def registry(self) -> StatementRegistry:
        """
        The statement registry of the pipeline.
        """
        return self.pipeline.registry

    def _noteWritten(self) -> None:
        """
        Remember how much each backend was sent so far.
        """
        for backend in self.backends:
            self._written[id(backend)] = len(backend.written)

    def useBackend(self, backend: FakeBackendLink) -> None:
        """
        The pool hands out C{backend} from now on.
        """
        self.pool.backend = backend
        if backend not in self.backends:
            self.backends.append(backend)
            self._written[id(backend)] = len(backend.written)

    def newBackendOutput(self) -> dict[int, bytes]:
        """
        What each backend was sent since the last call, by process id; only
        backends that were sent something.
        """
        output = {}
        for backend in self.backends:
            start = self._written[id(backend)]
            if len(backend.written) > start:
                output[backend.processId] = bytes(backend.written[start:])
        self._noteWritten()
        return output

    def newClientOutput(self) -> bytes:
        """
        What the client was sent since the last call.
        """
        data = bytes(self.frontend.written[self._clientWritten :])
        self._clientWritten = len(self.frontend.written)
        return data

    def play(self, steps: Sequence[Step], chop: Chopper = whole) -> None:
        """
        Run C{steps} in order; after each, assert that the backend in use
        (the pool's current one) was sent exactly C{toServer}, no other
        backend was sent anything, and the client was sent exactly
        C{toClient}.
        """
        for number, step in enumerate(steps):
            data = wire(step.sent)
            if step.side == CLIENT:
                for piece in chop(data):
                    self.session.frontendDataReceived(piece)
            else:
                backend = self.session.backend
                self.case.assertIsNotNone(backend, f"step {number}: no backend attached")
                for piece in chop(data):
                    self.session.backendDataReceived(piece)
            output = self.newBackendOutput()
            expected = {self.pool.backend.processId: wire(step.toServer)} if step.toServer else {}
            self.case.assertEqual(
                {pid: readable(data, codec.decodeFrontend) for pid, data in output.items()},
                {pid: readable(data, codec.decodeFrontend) for pid, data in expected.items()},
                f"step {number} ({step.side}): to the backend",
            )
            self.case.assertEqual(
                readable(self.newClientOutput(), codec.decodeBackend),
                readable(wire(step.toClient), codec.decodeBackend),
                f"step {number} ({step.side}): to the client",
            )
