"""
Tests for L{pgtwist.wire.framing}, fed one byte at a time and in one chunk.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.wire import codec, constants
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.framing import Frame, MessageFramer, StartupFramer
from pgtwist.wire.messages import (
    CommandComplete,
    DataRow,
    Query,
    ReadyForQuery,
    SSLRequest,
    StartupMessage,
)


def byteByByte(framer: StartupFramer | MessageFramer, data: bytes) -> list[Frame]:
    """
    Feed C{data} one byte at a time, collecting frames.
    """
    frames: list[Frame] = []
    for i in range(len(data)):
        frames.extend(framer.feed(data[i : i + 1]))
    return frames


class MessageFramerTests(SynchronousTestCase):
    """
    Typed-message framing.
    """

    stream = codec.encodeAll(
        [
            DataRow((b"1", None)),
            DataRow((b"x" * 300,)),
            CommandComplete("SELECT 2"),
            ReadyForQuery(),
        ]
    )

    def test_oneChunk(self) -> None:
        """
        Several messages in one chunk come out in order, bodies intact.
        """
        frames = MessageFramer().feed(self.stream)
        self.assertEqual([f.type for f in frames], [b"D", b"D", b"C", b"Z"])
        self.assertEqual(codec.decodeBackend(*frames[2]), CommandComplete("SELECT 2"))

    def test_byteAtATime(self) -> None:
        """
        The same frames come out when the stream arrives byte by byte.
        """
        self.assertEqual(
            byteByByte(MessageFramer(), self.stream), MessageFramer().feed(self.stream)
        )

    def test_partialKept(self) -> None:
        """
        An incomplete message stays buffered and is reported as pending.
        """
        framer = MessageFramer()
        self.assertEqual(framer.feed(self.stream[:-1]), MessageFramer().feed(self.stream)[:-1])
        self.assertEqual(framer.pending, len(self.stream[-6:-1]))
        self.assertEqual(framer.feed(self.stream[-1:]), [Frame(b"Z", b"I")])

    def test_lengthLimitExceeded(self) -> None:
        """
        A message longer than C{maxMessageLength} is refused before its body arrives.
        """
        framer = MessageFramer(maxMessageLength=100)
        with self.assertRaises(ProtocolViolation):
            framer.feed(b"Q" + codec.INT32.pack(101))

    def test_lengthBelowFour(self) -> None:
        """
        A length that does not cover itself is invalid.
        """
        self.assertRaises(ProtocolViolation, MessageFramer().feed, b"Q" + codec.INT32.pack(3))


class MessageFramerFeedOneTests(SynchronousTestCase):
    """
    L{MessageFramer.feedOne}, the one-message-at-a-time framing of the
    authentication phase.
    """

    def test_oneAtATime(self) -> None:
        """
        Each call returns the first complete message and keeps the rest.
        """
        framer = MessageFramer()
        stream = MessageFramerTests.stream
        self.assertEqual(framer.feedOne(stream), Frame(b"D", MessageFramer().feed(stream)[0].body))
        self.assertEqual(framer.feedOne(b"").type, b"D")  # type: ignore[union-attr]
        self.assertEqual(framer.feedOne(b"").type, b"C")  # type: ignore[union-attr]
        self.assertEqual(framer.feedOne(b""), Frame(b"Z", b"I"))
        self.assertIsNone(framer.feedOne(b""))
        self.assertEqual(framer.pending, 0)

    def test_byteAtATime(self) -> None:
        """
        Fed byte by byte, a message comes out with its last byte.
        """
        data = codec.encode(Query("SELECT 1"))
        framer = MessageFramer()
        for i in range(len(data) - 1):
            self.assertIsNone(framer.feedOne(data[i : i + 1]))
        self.assertEqual(framer.feedOne(data[-1:]), Frame(b"Q", b"SELECT 1\x00"))

    def test_refusedAtTheHeader(self) -> None:
        """
        A length word over C{maxMessageLength} is refused as soon as its
        fifth header byte arrives, with PostgreSQL's C{pq_getmessage}
        message, and nothing stays buffered.
        """
        framer = MessageFramer(constants.MAX_AUTH_TOKEN_LENGTH)
        header = b"p" + codec.INT32.pack(0x3FFFFFFF)
        for i in range(4):
            self.assertIsNone(framer.feedOne(header[i : i + 1]))
        with self.assertRaises(ProtocolViolation) as caught:
            framer.feedOne(header[4:] + b"x" * 1000)
        self.assertEqual(caught.exception.message, "invalid message length")
        self.assertEqual(framer.pending, 0)

    def test_limitInclusive(self) -> None:
        """
        A message of exactly C{maxMessageLength} bytes (length word
        included, as PostgreSQL counts) is accepted; one byte more is not.
        """
        limit = constants.MAX_AUTH_TOKEN_LENGTH
        body = b"x" * (limit - 4)
        framer = MessageFramer(limit)
        self.assertEqual(framer.feedOne(b"p" + codec.INT32.pack(limit) + body), Frame(b"p", body))
        self.assertRaises(ProtocolViolation, framer.feedOne, b"p" + codec.INT32.pack(limit + 1))

    def test_lengthBelowFour(self) -> None:
        """
        A length that does not cover itself is invalid.
        """
        self.assertRaises(ProtocolViolation, MessageFramer().feedOne, b"p" + codec.INT32.pack(3))


class StartupFramerTests(SynchronousTestCase):
    """
    Untyped startup-packet framing.
    """

    def test_byteAtATime(self) -> None:
        """
        An SSLRequest then a StartupMessage, byte by byte.
        """
        data = codec.encode(SSLRequest()) + codec.encode(StartupMessage({"user": "u"}))
        frames = byteByByte(StartupFramer(), data)
        self.assertEqual(len(frames), 2)
        self.assertEqual(codec.decodeStartupPacket(frames[1].body), StartupMessage({"user": "u"}))

    def test_stopsAfterStartupMessage(self) -> None:
        """
        Typed messages pipelined after the StartupMessage are left for the
        message framer, not misread as startup packets.
        """
        framer = StartupFramer()
        query = codec.encode(Query("SELECT 1"))
        frames = framer.feed(codec.encode(StartupMessage({"user": "u"})) + query)
        self.assertEqual(len(frames), 1)
        self.assertEqual(framer.takeRemainder(), query)

    def test_oversizedPacket(self) -> None:
        """
        A startup packet over 10000 bytes is refused, as PostgreSQL refuses it.
        """
        with self.assertRaises(ProtocolViolation) as caught:
            StartupFramer().feed(codec.INT32.pack(constants.MAX_STARTUP_PACKET_LENGTH + 1))
        self.assertEqual(caught.exception.message, "invalid length of startup packet")

    def test_longestPacket(self) -> None:
        """
        A startup packet of exactly 10000 bytes, PostgreSQL's
        C{MAX_STARTUP_PACKET_LENGTH}, is still accepted.
        """
        self.assertEqual(constants.MAX_STARTUP_PACKET_LENGTH, 10000)
        body = codec.INT32.pack(constants.PROTOCOL_3_0) + b"u" * (10000 - 8)
        frames = StartupFramer().feed(codec.INT32.pack(10000) + body)
        self.assertEqual(frames, [Frame(b"", body)])

    def test_tooShort(self) -> None:
        """
        A startup packet too short to hold a protocol code is refused.
        """
        self.assertRaises(ProtocolViolation, StartupFramer().feed, codec.INT32.pack(4))
