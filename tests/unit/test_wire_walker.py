"""
Tests for L{pgtwist.wire.walker.MessageWalker}: fed byte by byte, split at
every offset, with messages far longer than anything it may hold.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.wire import codec, constants
from pgtwist.wire.codec import HEADER
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.messages import (
    CommandComplete,
    DataRow,
    ParameterStatus,
    Query,
    ReadyForQuery,
    Terminate,
)
from pgtwist.wire.walker import MessageWalker, invalidLength

STREAM = codec.encodeAll(
    [
        DataRow((b"a" * 50,)),
        ParameterStatus("TimeZone", "UTC"),
        CommandComplete("SELECT 1"),
        Terminate(),
        ReadyForQuery(b"T"),
    ]
)

#: What L{STREAM} reports: C{C} and C{X} watched, C{S} and C{Z} collected.
REPORTED = [
    (b"S", b"TimeZone\x00UTC\x00"),
    (b"C", None),
    (b"X", None),
    (b"Z", b"T"),
]


def pieces(data: bytes, size: int) -> list[bytes]:
    """
    C{data} cut into chunks of C{size} bytes.
    """
    return [data[i : i + size] for i in range(0, len(data), size)]


class Relay:
    """
    A L{MessageWalker.walk} scan that forwards every message, holds those of
    the C{hold} types whole and records what it saw.

    @ivar seen: C{(type, body)} per message, the body only for held types.
    @ivar stopAt: A type to stop before (once, when it is whole), as a relay
        that must wait does.
    """

    def __init__(self, walker: MessageWalker, hold: frozenset[bytes] = frozenset()) -> None:
        self.walker = walker
        self.hold = hold
        self.seen: list[tuple[bytes, bytes | None]] = []
        self.stopAt: bytes | None = None

    def scan(self, data: bytes, offset: int, out: list[bytes]) -> int:
        """
        See L{MessageWalker.walk}.
        """
        size = len(data)
        start = offset
        while size - offset >= 5:
            type, length = HEADER.unpack_from(data, offset)
            if length < 4 or length > self.walker.maxMessageLength:
                raise invalidLength()
            end = offset + 1 + length
            if end > size:
                if type in self.hold:
                    break
                self.seen.append((type, None))
                self.walker.passing(end - size)
                offset = size
                break
            if type == self.stopAt:
                self.stopAt = None
                break
            self.seen.append((type, data[offset + 5 : end] if type in self.hold else None))
            offset = end
        if start < offset:
            out.append(data[start:offset])
        return offset

    def walk(self, chunks: list[bytes]) -> bytes:
        """
        Walk C{chunks}; return everything forwarded.
        """
        out: list[bytes] = []
        for chunk in chunks:
            self.walker.walk(chunk, self.scan, out)
        return b"".join(out)


class FeedTests(SynchronousTestCase):
    """
    L{MessageWalker.feed} reports watched and collected messages across
    arbitrary chunking.
    """

    def feed(self, chunks: list[bytes]) -> list[tuple[bytes, bytes | None]]:
        """
        Feed C{chunks}; return what was reported.
        """
        seen: list[tuple[bytes, bytes | None]] = []
        walker = MessageWalker(
            lambda t, b, e: seen.append((t, b)),
            watch=frozenset({b"C", b"X"}),
            collect=frozenset({b"Z", b"S"}),
        )
        for chunk in chunks:
            walker.feed(chunk)
        self.assertTrue(walker.atBoundary)
        return seen

    def test_oneChunk(self) -> None:
        """
        Watched types are reported without body, collected ones with it.
        """
        self.assertEqual(self.feed([STREAM]), REPORTED)

    def test_everySplit(self) -> None:
        """
        Splitting the stream at any offset reports the same.
        """
        for i in range(len(STREAM) + 1):
            self.assertEqual(self.feed([STREAM[:i], STREAM[i:]]), REPORTED, i)

    def test_byteAtATime(self) -> None:
        """
        A stream fed one byte at a time reports the same.
        """
        self.assertEqual(self.feed(pieces(STREAM, 1)), REPORTED)

    def test_endOffsets(self) -> None:
        """
        End offsets are relative to the chunk that completed the message,
        also for a message whose header was cut.
        """
        ends: list[int] = []
        walker = MessageWalker(lambda t, b, e: ends.append(e), watch=frozenset({b"X"}))
        x = codec.encode(Terminate())
        walker.feed(x[:2])
        walker.feed(x[2:] + x)
        self.assertEqual(ends, [3, 8])

    def test_hugeMessagePassesUnheld(self) -> None:
        """
        A message neither watched nor collected is never held, however long:
        only the count of its bytes still to come is kept.
        """
        seen: list[bytes] = []
        walker = MessageWalker(lambda t, b, e: seen.append(t), watch=frozenset({b"Z"}))
        row = codec.encode(DataRow((b"x" * (1 << 20),)))
        for chunk in pieces(row, 8192):
            walker.feed(chunk)
            self.assertEqual(walker.heldBytes, 0)
        self.assertTrue(walker.atBoundary)
        walker.feed(codec.encode(ReadyForQuery()))
        self.assertEqual(seen, [b"Z"])

    def test_lengthCap(self) -> None:
        """
        A length above PostgreSQL's 1 GiB - 1 is refused at its header with
        08P01 and PostgreSQL's words, before any payload is kept.
        """
        walker = MessageWalker(lambda t, b, e: None, collect=frozenset({b"Q"}))
        header = HEADER.pack(b"Q", constants.DEFAULT_MAX_MESSAGE_LENGTH + 1)
        error = self.assertRaises(ProtocolViolation, walker.feed, header + b"x" * 100)
        self.assertEqual(error.sqlstate, constants.SQLSTATE_PROTOCOL_VIOLATION)
        self.assertEqual(error.message, "invalid message length")
        self.assertEqual(walker.heldBytes, 0)

    def test_lengthCapCutHeader(self) -> None:
        """
        The cap holds for a header cut by the end of a chunk.
        """
        walker = MessageWalker(lambda t, b, e: None)
        header = HEADER.pack(b"Q", 2**31 - 1)
        walker.feed(header[:3])
        self.assertRaises(ProtocolViolation, walker.feed, header[3:] + b"x")

    def test_lengthBelowFour(self) -> None:
        """
        A length below 4 is a protocol violation.
        """
        walker = MessageWalker(lambda t, b, e: None)
        self.assertRaises(ProtocolViolation, walker.feed, b"Z\x00\x00\x00\x02")

    def test_heldCap(self) -> None:
        """
        A collected message longer than C{maxHeldLength} is refused at its
        header, before its body is held.
        """
        walker = MessageWalker(lambda t, b, e: None, collect=frozenset({b"E"}), maxHeldLength=64)
        message = codec.frame(b"E", b"x" * 65)
        self.assertRaises(ProtocolViolation, walker.feed, message[:20])
        self.assertEqual(walker.heldBytes, 0)
        walker = MessageWalker(lambda t, b, e: None, collect=frozenset({b"E"}), maxHeldLength=64)
        walker.feed(message[:3])
        self.assertRaises(ProtocolViolation, walker.feed, message[3:20])

    def test_heldAtCap(self) -> None:
        """
        A collected message exactly C{maxHeldLength} long is reported.
        """
        seen: list[bytes | None] = []
        walker = MessageWalker(
            lambda t, b, e: seen.append(b), collect=frozenset({b"E"}), maxHeldLength=64
        )
        for chunk in pieces(codec.frame(b"E", b"x" * 64), 7):
            walker.feed(chunk)
        self.assertEqual(seen, [b"x" * 64])


class WalkTests(SynchronousTestCase):
    """
    L{MessageWalker.walk} hands whole messages, and the start of those that
    run past a chunk, to the caller's scan.
    """

    hold = frozenset({b"S", b"Z", b"Q"})

    def relay(self, chunks: list[bytes]) -> tuple[bytes, list[tuple[bytes, bytes | None]]]:
        """
        Walk C{chunks} through a fresh L{Relay}; return what it forwarded
        and saw.
        """
        relay = Relay(MessageWalker(), self.hold)
        forwarded = relay.walk(chunks)
        self.assertTrue(relay.walker.atBoundary)
        return forwarded, relay.seen

    def test_everySplit(self) -> None:
        """
        Split at any offset, everything is forwarded in order and the held
        types are seen with their bodies.
        """
        expected = self.relay([STREAM])
        self.assertEqual(expected[0], STREAM)
        self.assertEqual(expected[1][1], (b"S", b"TimeZone\x00UTC\x00"))
        for i in range(len(STREAM) + 1):
            forwarded, seen = self.relay([STREAM[:i], STREAM[i:]])
            self.assertEqual(forwarded, STREAM, i)
            self.assertEqual([s for s in seen if s[1] is not None], [expected[1][1], (b"Z", b"T")])

    def test_byteAtATime(self) -> None:
        """
        Byte by byte, everything is forwarded in order and held types are
        seen whole.
        """
        forwarded, seen = self.relay(pieces(STREAM, 1))
        self.assertEqual(forwarded, STREAM)
        self.assertIn((b"Z", b"T"), seen)
        self.assertIn((b"S", b"TimeZone\x00UTC\x00"), seen)

    def test_hugeMessageInPieces(self) -> None:
        """
        A 16 MiB CopyData goes on in the pieces it arrives in, the very
        chunks (no copy), while the walker holds nothing; what follows it is
        seen as usual.
        """
        message = codec.frame(constants.COPY_DATA, b"x" * (16 << 20))
        chunks = pieces(message, 65536)
        walker = MessageWalker()
        relay = Relay(walker, self.hold)
        total = 0
        for chunk in chunks:
            out = []
            walker.walk(chunk, relay.scan, out)
            self.assertEqual(walker.heldBytes, 0)
            self.assertEqual(len(out), 1)
            if chunk is not chunks[0]:
                self.assertIs(out[0], chunk)
            total += len(out[0])
        self.assertEqual(total, len(message))
        self.assertTrue(walker.atBoundary)
        self.assertEqual(relay.walk([codec.encode(ReadyForQuery())]), codec.encode(ReadyForQuery()))
        self.assertEqual(relay.seen, [(b"d", None), (b"Z", b"I")])

    def test_dropping(self) -> None:
        """
        A message the scan passes on with C{forward=False} is dropped in
        every piece.
        """
        walker = MessageWalker()

        def scan(data: bytes, offset: int, out: list[bytes]) -> int:
            type, length = HEADER.unpack_from(data, offset)
            end = offset + 1 + length
            if end > len(data):
                walker.passing(end - len(data), forward=False)
                return len(data)
            out.append(data[offset:end])
            return scan(data, end, out) if end < len(data) else end

        message = codec.frame(constants.COPY_DATA, b"x" * 1000)
        out: list[bytes] = []
        for chunk in pieces(message, 100):
            walker.walk(chunk, scan, out)
        self.assertEqual(out, [])
        self.assertTrue(walker.atBoundary)

    def test_lengthCap(self) -> None:
        """
        A cut header with a length above 1 GiB - 1 is refused before any
        payload is kept; so is one the scan sees whole.
        """
        header = HEADER.pack(b"d", constants.DEFAULT_MAX_MESSAGE_LENGTH + 1)
        relay = Relay(MessageWalker())
        self.assertRaises(ProtocolViolation, relay.walk, [header[:4], header[4:] + b"xx"])
        self.assertEqual(relay.walker.heldBytes, 0)
        self.assertRaises(ProtocolViolation, Relay(MessageWalker()).walk, [header + b"xx"])

    def test_heldCap(self) -> None:
        """
        A held type longer than C{maxHeldLength} is shown once that much of
        its body is in; a scan that will not pass it on gets
        L{ProtocolViolation}, and no more than the cap was held.
        """
        walker = MessageWalker(maxHeldLength=100)
        relay = Relay(walker, self.hold)
        message = codec.encode(Query("x" * 1000))
        chunks = pieces(message, 10)
        with self.assertRaises(ProtocolViolation):
            for chunk in chunks:
                relay.walk([chunk])
                self.assertLessEqual(walker.heldBytes, 105)

    def test_heldCapPassedOn(self) -> None:
        """
        A scan that passes on a held type once the cap is reached relays it
        whole, from its start then in pieces.
        """
        walker = MessageWalker(maxHeldLength=100)
        starts: list[int] = []

        def scan(data: bytes, offset: int, out: list[bytes]) -> int:
            type, length = HEADER.unpack_from(data, offset)
            end = offset + 1 + length
            if end > len(data):
                if len(data) - offset - 5 < 100:
                    return offset
                starts.append(len(data) - offset)
                walker.passing(end - len(data))
            out.append(data[offset:end])
            return min(end, len(data))

        message = codec.encode(Query("x" * 1000))
        out: list[bytes] = []
        for chunk in pieces(message, 7):
            walker.walk(chunk, scan, out)
            self.assertLessEqual(walker.heldBytes, 105)
        self.assertEqual(b"".join(out), message)
        self.assertEqual(starts, [105])

    def test_stopKeepsMessage(self) -> None:
        """
        A scan that stops at a whole message ends the walk there; a message
        the walker held is kept and shown again by the next walk.
        """
        walker = MessageWalker()
        relay = Relay(walker, self.hold)
        z = codec.encode(ReadyForQuery())
        relay.stopAt = b"Z"
        out: list[bytes] = []
        self.assertEqual(walker.walk(STREAM, relay.scan, out), len(STREAM) - len(z))
        self.assertFalse(walker.ready)
        relay.stopAt = b"Z"
        walker.walk(z[:3], relay.scan, out)
        self.assertEqual(walker.walk(z[3:] + z, relay.scan, out), 3)
        self.assertTrue(walker.ready)
        self.assertEqual(walker.walk(b"", relay.scan, out), 0)
        self.assertTrue(walker.atBoundary)
        self.assertEqual(b"".join(out), STREAM[: -len(z)] + z)

    def test_boundaryWhileScanningHeld(self) -> None:
        """
        While the scan reads a whole message the walker held, the walker is
        at a boundary: a callback of that message may hand the stream over.
        """
        walker = MessageWalker()
        relay = Relay(walker, self.hold)
        seen: list[bool] = []

        def scan(data: bytes, offset: int, out: list[bytes]) -> int:
            seen.append(walker.atBoundary)
            return relay.scan(data, offset, out)

        z = codec.encode(ReadyForQuery())
        out: list[bytes] = []
        walker.walk(z[:3], scan, out)
        walker.walk(z[3:], scan, out)
        # The cut chunk, the bare header (held), then the whole message.
        self.assertEqual(seen, [True, False, True])
        self.assertEqual(relay.seen, [(b"Z", b"I")])
