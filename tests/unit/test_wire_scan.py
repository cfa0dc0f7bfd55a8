"""
Tests for L{pgtwist.wire.scan.MessageScanner}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.wire import codec
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.messages import CommandComplete, DataRow, ParameterStatus, ReadyForQuery
from pgtwist.wire.scan import MessageScanner

STREAM = codec.encodeAll(
    [
        DataRow((b"a" * 50,)),
        ParameterStatus("TimeZone", "UTC"),
        CommandComplete("SELECT 1"),
        ReadyForQuery(b"T"),
    ]
)


class MessageScannerTests(SynchronousTestCase):
    """
    Boundaries are tracked across arbitrary chunking.
    """

    def scan(self, chunks: list[bytes]) -> list[tuple[bytes, bytes | None]]:
        """
        Feed C{chunks}; return what was reported.
        """
        seen: list[tuple[bytes, bytes | None]] = []
        scanner = MessageScanner(
            lambda t, b, e: seen.append((t, b)),
            watch=frozenset({b"C"}),
            collect=frozenset({b"Z", b"S"}),
        )
        for chunk in chunks:
            scanner.feed(chunk)
        self.assertTrue(scanner.atBoundary)
        return seen

    def test_oneChunk(self) -> None:
        """
        Watched types are reported without body, collected ones with it.
        """
        expected = [
            (b"S", b"TimeZone\x00UTC\x00"),
            (b"C", None),
            (b"Z", b"T"),
        ]
        self.assertEqual(self.scan([STREAM]), expected)

    def test_everySplit(self) -> None:
        """
        Splitting the stream anywhere, or byte by byte, reports the same.
        """
        expected = self.scan([STREAM])
        for i in range(len(STREAM)):
            self.assertEqual(self.scan([STREAM[:i], STREAM[i:]]), expected, i)
        self.assertEqual(self.scan([bytes([b]) for b in STREAM]), expected)

    def test_endOffsets(self) -> None:
        """
        Reported end offsets are relative to the chunk that completed the message.
        """
        ends: list[int] = []
        scanner = MessageScanner(lambda t, b, e: ends.append(e), watch=frozenset({b"Z"}))
        z = codec.encode(ReadyForQuery())
        scanner.feed(z[:2])
        scanner.feed(z[2:] + z)
        self.assertEqual(ends, [4, 10])

    def test_notAtBoundary(self) -> None:
        """
        A partial message leaves the scanner off a boundary.
        """
        scanner = MessageScanner(lambda t, b, e: None)
        scanner.feed(STREAM[:-1])
        self.assertFalse(scanner.atBoundary)

    def test_badLength(self) -> None:
        """
        A length below 4 is a protocol violation.
        """
        scanner = MessageScanner(lambda t, b, e: None)
        self.assertRaises(ProtocolViolation, scanner.feed, b"Z\x00\x00\x00\x02")
