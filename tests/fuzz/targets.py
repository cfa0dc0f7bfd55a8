"""
The fuzz targets: each takes one input of bytes and raises when pgtwist
misbehaves on it (an exception escaping, a property broken). They run under
atheris (L{tests.fuzz.run}, C{make fuzz}) and, for every input ever found
to fail, under the unit tests
(C{tests/unit/test_fuzz_regressions.py} replays C{tests/fuzz_regressions/}).
They import nothing of atheris.

 - C{startup}: a client's bytes, from the first one, into the real
   L{pgtwist.net.frontend.FrontendProtocol} on a C{StringTransport}:
   startup packet, SSLRequest, GSSENCRequest, CancelRequest, then
   password, MD5 or SCRAM messages, cut into pieces as the input says.
   Nothing may escape C{dataReceived} or be logged as a failure; what
   pgtwist writes is a whole number of well-formed backend messages (after
   the one-byte answers to any number of SSLRequests and GSSENCRequests,
   L{pgtwist.net.startup.StartupNegotiation}); a connection it
   closes after an error ends with a FATAL.
 - C{codec}: the same bytes through the codec's framer and the relay's
   message walker (cut into pieces): they must agree on the messages and
   on refusing a length; each message decodes (as frontend and as backend)
   or is refused with L{ProtocolViolation} only, and what decodes encodes
   back to the same message; the startup framer and decoder likewise.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from pgtwist.app.bootstrap import loadPlugins
from pgtwist.config.model import Configuration, HbaRule, MainSettings, ServerSettings, UserEntry
from pgtwist.net.cancel import CancelRegistry
from pgtwist.net.frontend import FrontendFactory
from pgtwist.testing import FakeBackendPool
from pgtwist.wire import codec, constants
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.framing import MessageFramer, StartupFramer
from pgtwist.wire.messages import ErrorResponse, Message
from pgtwist.wire.walker import MessageWalker

#: The HBA method of the C{startup} target, by the input's first byte.
METHODS = ["password", "md5", "scram-sha-256", "trust"]

#: Every message type: the C{codec} target's walker reports all of them.
ALL_TYPES = frozenset(bytes([n]) for n in range(256))

#: The longest message the C{codec} target's framer and walker accept:
#: small, so that lengths around it are reachable.
MAX_LENGTH = 4096


class Defect(AssertionError):
    """
    pgtwist misbehaved on a fuzz input.
    """


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise Defect(message)


def pieces(data: bytes, selector: int) -> list[bytes]:
    """
    Cut C{data} as C{selector} says: whole (0), or in pieces of
    C{selector % 17} bytes (1 to 16).
    """
    size = selector % 17
    if not size:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)]


class _Failures:
    """
    Collect failures logged while an input runs (an exception a Deferred
    swallowed, a C{log.failure}).
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if "log_failure" in event:
            self.events.append(event)

    def __enter__(self) -> _Failures:
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self)
        if self.events and exc[0] is None:
            failure = self.events[0]["log_failure"]
            raise Defect(f"a failure was logged: {failure.getTraceback()}")


@cache
def _plugins() -> tuple[Any, Any]:
    return loadPlugins()


class _Pool(FakeBackendPool):
    """
    A fake pool that also answers the HBA method C{all} question.
    """

    def authRequestCode(self, key: object) -> int | None:
        """
        PostgreSQL asked for MD5.
        """
        return constants.AUTH_MD5_PASSWORD


def _configuration(method: str) -> Configuration:
    return Configuration(
        main=MainSettings(),
        servers=(ServerSettings("primary", "127.0.0.1", 5432, True),),
        hba=(HbaRule("host", "all", "all", None, method, "hba.conf", 1),),
        users={"alice": UserEntry("alice", "wonderland")},
    )


def _wellFormed(data: bytes) -> list[Message] | None:
    """
    The backend messages C{data} is, or C{None} when it is not a whole
    number of decodable ones.
    """
    framer = MessageFramer()
    try:
        messages = [codec.decodeBackend(type, body) for type, body in framer.feed(data)]
    except ProtocolViolation:
        return None
    return messages if not framer.pending else None


def startup(data: bytes) -> None:
    """
    The C{startup} target: see the module's docstring.
    """
    if len(data) < 2:
        return
    method = METHODS[data[0] % len(METHODS)]
    methods, pipelines = _plugins()
    clock = Clock()
    factory = FrontendFactory(
        _configuration(method),
        _Pool(),
        clock,
        methods,
        pipelines,
        CancelRegistry(None, randomInt=lambda: 777),
    )
    address = IPv4Address("TCP", "127.0.0.1", 50000)
    protocol = factory.buildProtocol(address)  # type: ignore[arg-type]
    transport = StringTransport(peerAddress=address)  # type: ignore[arg-type]
    with _Failures():
        protocol.makeConnection(transport)
        for piece in pieces(data[2:], data[1]):
            if transport.disconnecting:
                break
            protocol.dataReceived(piece)
        clock.advance(100)
        if not transport.disconnecting:
            transport.loseConnection()
            protocol.connectionLost(None)  # type: ignore[arg-type]
    written = transport.value()
    # The answers to SSLRequest and GSSENCRequest are one byte each, and
    # pgtwist answers any number of them (StartupNegotiation; PostgreSQL
    # refuses a second one of a kind with "unsupported frontend protocol").
    messages = None
    skip = 0
    while messages is None and skip <= len(written):
        messages = _wellFormed(written[skip:])
        if written[skip : skip + 1] != b"N":
            break
        skip += 1
    _check(messages is not None, f"pgtwist wrote a malformed stream: {written!r}")
    assert messages is not None
    errorsSent = [m for m in messages if isinstance(m, ErrorResponse)]
    if errorsSent and messages[-1] is errorsSent[-1]:
        last = errorsSent[-1]
        _check(
            last.severity == constants.SEVERITY_FATAL,
            f"the last error before closing is not FATAL: {last}",
        )


def _walk(chunks: list[bytes]) -> tuple[list[tuple[bytes, bytes | None]], bool, bool]:
    """
    The messages a reporting walker finds in C{chunks}, whether it refused a
    length, and whether it ended at a boundary.
    """
    found: list[tuple[bytes, bytes | None]] = []
    walker = MessageWalker(
        lambda type, body, end: found.append((type, body)),
        collect=ALL_TYPES,
        maxMessageLength=MAX_LENGTH,
    )
    try:
        for chunk in chunks:
            walker.feed(chunk)
    except ProtocolViolation as e:
        _check(e.message == "invalid message length", f"walker refused with {e.message!r}")
        return found, True, True
    return found, False, walker.atBoundary


def _roundTrip(decode: Callable[[bytes, bytes], Message], type: bytes, body: bytes) -> None:
    """
    Decode one message; refusal must be L{ProtocolViolation}, and what
    decodes encodes back to the same message.
    """
    try:
        message = decode(type, body)
    except ProtocolViolation:
        return
    again = codec.encode(message)
    frames = MessageFramer().feed(again)
    _check(len(frames) == 1, f"{message} encodes to {again!r}")
    _check(decode(frames[0].type, frames[0].body) == message, f"{message} does not round-trip")


def codecTarget(data: bytes) -> None:
    """
    The C{codec} target: see the module's docstring.
    """
    if not data:
        return
    stream = data[1:]
    framer = MessageFramer(maxMessageLength=MAX_LENGTH)
    framed: list[tuple[bytes, bytes | None]] = []
    refused = False
    try:
        for frame in framer.feed(stream):
            framed.append((frame.type, frame.body))
    except ProtocolViolation as e:
        _check(e.message.startswith("invalid message length"), f"framer said {e.message!r}")
        refused = True
    found, walkerRefused, boundary = _walk(pieces(stream, data[0]))
    if refused:
        # The framer takes what comes before the bad header in one call:
        # frames it found before raising are lost with the exception.
        _check(walkerRefused, "the framer refused a length the walker took")
    else:
        _check(not walkerRefused, "the walker refused a length the framer took")
        _check(found == framed, f"walker {found} != framer {framed}")
        _check(boundary == (not framer.pending), "the walker and framer disagree on the end")
    for type, body in found:
        assert body is not None
        _roundTrip(codec.decodeFrontend, type, body)
        _roundTrip(codec.decodeBackend, type, body)
    startupFramer = StartupFramer()
    try:
        packets = startupFramer.feed(stream)
    except ProtocolViolation:
        return
    for packet in packets:
        try:
            message = codec.decodeStartupPacket(packet.body)
        except ProtocolViolation:
            continue
        again = codec.encode(message)
        _check(codec.decodeStartupPacket(again[4:]) == message, f"{message} does not round-trip")


#: The targets, by name.
TARGETS: dict[str, Callable[[bytes], None]] = {"startup": startup, "codec": codecTarget}
