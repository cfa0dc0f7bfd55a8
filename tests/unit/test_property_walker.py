"""
Properties of L{pgtwist.wire.walker.MessageWalker} against the codec: any
cut of a valid byte stream into chunks yields the messages that
L{pgtwist.wire.codec} encoded, whichever way the walker is driven, and a
length out of PostgreSQL's bounds is refused wherever it falls, with what
came before it reported and nothing after.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.wire import codec, constants
from pgtwist.wire.codec import HEADER
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    BindComplete,
    CommandComplete,
    DataRow,
    Message,
    NoData,
    ParameterStatus,
    ReadyForQuery,
)
from pgtwist.wire.walker import MessageWalker
from tests.unit.test_wire_walker import Relay

#: The longest message the walkers of these tests accept: small, so that
#: lengths just past it are cheap to try.
MAX_LENGTH = 300

_text = st.text(st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=12)
_value = st.one_of(st.none(), st.binary(max_size=40))

#: Backend messages the codec encodes and decodes.
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(DataRow, st.lists(_value, max_size=4).map(tuple)),
    st.builds(CommandComplete, _text),
    st.builds(ParameterStatus, _text, _text),
    st.builds(ReadyForQuery, st.sampled_from([b"I", b"T", b"E"])),
    st.just(BindComplete()),
    st.just(NoData()),
)

#: Which types a walker reports with their body, and which without.
COLLECT = frozenset({b"Z", b"S"})
WATCH = frozenset({b"C", b"2"})


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """
    C{data} cut at C{points} (any order, repeats allowed: empty chunks too).
    """
    chunks = []
    start = 0
    for point in sorted(points):
        chunks.append(data[start:point])
        start = point
    chunks.append(data[start:])
    return chunks


def chunked(data: st.DataObject, stream: bytes) -> list[bytes]:
    """
    Draw a cut of C{stream}.
    """
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts")
    return cut(stream, points)


def expectedReports(items: list[Message]) -> list[tuple[bytes, bytes | None]]:
    """
    What a walker watching L{WATCH} and collecting L{COLLECT} reports for
    C{items}, from the codec's framing.
    """
    reports: list[tuple[bytes, bytes | None]] = []
    for frame in MessageFramer().feed(codec.encodeAll(items)):
        if frame.type in COLLECT:
            reports.append((frame.type, frame.body))
        elif frame.type in WATCH:
            reports.append((frame.type, None))
    return reports


def feedAll(
    chunks: list[bytes], reports: list[tuple[bytes, bytes | None]], maxHeld: int
) -> MessageWalker:
    """
    Feed C{chunks} to a new reporting walker, appending to C{reports}.
    """
    walker = MessageWalker(
        lambda type, body, end: reports.append((type, body)),
        watch=WATCH,
        collect=COLLECT,
        maxMessageLength=MAX_LENGTH,
        maxHeldLength=maxHeld,
    )
    for chunk in chunks:
        walker.feed(chunk)
    return walker


class CappedRelay(Relay):
    """
    A L{Relay} that, as L{MessageWalker.walk} requires, passes on a held
    type once L{MessageWalker.maxHeldLength} bytes of its body are in and it
    is still not whole (seen with no body).
    """

    def scan(self, data: bytes, offset: int, out: list[bytes]) -> int:
        """
        See L{MessageWalker.walk}.
        """
        size = len(data)
        start = offset
        while size - offset >= 5:
            type, length = HEADER.unpack_from(data, offset)
            end = offset + 1 + length
            if end > size:
                if type in self.hold and size - offset - 5 < self.walker.maxHeldLength:
                    break
                self.seen.append((type, None))
                self.walker.passing(end - size)
                offset = size
                break
            self.seen.append((type, data[offset + 5 : end] if type in self.hold else None))
            offset = end
        if start < offset:
            out.append(data[start:offset])
        return offset


def badHeader(data: st.DataObject) -> bytes:
    """
    Draw the header of a message whose length PostgreSQL refuses: under 4
    (negative too) or over L{MAX_LENGTH}.
    """
    length = data.draw(
        st.one_of(st.integers(-(2**31), 3), st.integers(MAX_LENGTH + 1, 2**31 - 1)),
        label="bad length",
    )
    type = data.draw(st.sampled_from([b"D", b"Z", b"C", b"d"]), label="bad type")
    return HEADER.pack(type, length)


class WalkerPropertyTests(SynchronousTestCase):
    """
    The walker agrees with the codec on every cut of every stream.
    """

    @given(st.lists(messages, max_size=8), st.data())
    def test_feedAnyCut(self, items: list[Message], data: st.DataObject) -> None:
        """
        L{MessageWalker.feed} reports, for any cut of a stream, the watched
        and collected messages the codec's framer finds in it whole; the
        collected bodies decode to the messages that were encoded; the walk
        ends at a boundary.
        """
        stream = codec.encodeAll(items)
        reports: list[tuple[bytes, bytes | None]] = []
        walker = feedAll(chunked(data, stream), reports, constants.DEFAULT_MAX_HELD_LENGTH)
        self.assertEqual(reports, expectedReports(items))
        self.assertTrue(walker.atBoundary)
        self.assertEqual(walker.heldBytes, 0)
        collected = [m for m in items if codec.encode(m)[:1] in COLLECT]
        self.assertEqual(
            [codec.decodeBackend(type, body or b"") for type, body in reports if type in COLLECT],
            collected,
        )

    @given(st.lists(messages, max_size=8), st.data(), st.sampled_from([0, 8, 64, 1 << 20]))
    def test_walkAnyCut(self, items: list[Message], data: st.DataObject, maxHeld: int) -> None:
        """
        L{MessageWalker.walk}, driven by a relay that holds C{Z} and C{S}
        whole (up to C{maxHeld} bytes of body, passing longer ones on),
        forwards exactly the stream, whatever its cut, and sees every
        message once, in order, with the held ones' bodies as encoded.
        """
        stream = codec.encodeAll(items)
        walker = MessageWalker(maxMessageLength=MAX_LENGTH, maxHeldLength=maxHeld)
        relay = CappedRelay(walker, hold=COLLECT)
        self.assertEqual(relay.walk(chunked(data, stream)), stream)
        self.assertTrue(walker.atBoundary)
        frames = MessageFramer().feed(stream)
        self.assertEqual([type for type, _ in relay.seen], [frame.type for frame in frames])
        for (type, body), frame in zip(relay.seen, frames):
            if type in COLLECT and len(frame.body) <= maxHeld:
                self.assertEqual(body, frame.body)
            elif body is not None:
                self.assertIn(type, COLLECT)
                self.assertEqual(body, frame.body)

    @given(st.lists(messages, max_size=5), st.binary(max_size=20), st.data())
    def test_feedBadLength(self, items: list[Message], tail: bytes, data: st.DataObject) -> None:
        """
        A length out of bounds after valid messages makes
        L{MessageWalker.feed} raise L{ProtocolViolation} (08P01, "invalid
        message length", as PostgreSQL words it) whatever the cut, once its
        header is whole, after reporting the messages before it and
        nothing of what follows; the codec's own framer refuses it too.
        """
        stream = codec.encodeAll(items) + badHeader(data) + tail
        reports: list[tuple[bytes, bytes | None]] = []
        with self.assertRaises(ProtocolViolation) as raised:
            feedAll(chunked(data, stream), reports, constants.DEFAULT_MAX_HELD_LENGTH)
        self.assertEqual(raised.exception.message, "invalid message length")
        self.assertEqual(raised.exception.sqlstate, constants.SQLSTATE_PROTOCOL_VIOLATION)
        self.assertEqual(reports, expectedReports(items))
        with self.assertRaises(ProtocolViolation) as framed:
            MessageFramer(maxMessageLength=MAX_LENGTH).feed(stream)
        self.assertTrue(framed.exception.message.startswith("invalid message length"))

    @given(st.lists(messages, max_size=5), st.binary(max_size=20), st.data())
    def test_walkBadLength(self, items: list[Message], tail: bytes, data: st.DataObject) -> None:
        """
        L{MessageWalker.walk} refuses a length out of bounds the same way,
        having forwarded no byte of the bad message (the relay forwards a
        chunk's messages when its scan returns: some of the valid ones may
        be lost with the connection, never a byte past them).
        """
        prefix = codec.encodeAll(items)
        stream = prefix + badHeader(data) + tail
        walker = MessageWalker(maxMessageLength=MAX_LENGTH)
        relay = Relay(walker, hold=COLLECT)
        out: list[bytes] = []
        with self.assertRaises(ProtocolViolation) as raised:
            for chunk in chunked(data, stream):
                walker.walk(chunk, relay.scan, out)
        self.assertEqual(raised.exception.message, "invalid message length")
        self.assertTrue(prefix.startswith(b"".join(out)))
