"""
Tests for L{benchmarks.notify}: the NOTIFY fan-out step's reading and table.
"""

from __future__ import annotations

import asyncio
import time

from twisted.trial.unittest import SynchronousTestCase

from benchmarks import notify
from pgtwist.wire import codec, constants
from pgtwist.wire.codec import INT32


class NotifyStepTests(SynchronousTestCase):
    """
    The listeners' reading and the table.
    """

    def test_latencyFromPayload(self) -> None:
        """
        A listener reads the send time from each payload, also across cuts.
        """

        async def run() -> list[float]:
            reader = asyncio.StreamReader()
            sent = f"{time.perf_counter():.9f}".encode()
            message = codec.frame(
                constants.NOTIFICATION_RESPONSE,
                INT32.pack(1) + b"bench_fanout\x00" + sent + b"\x00",
            )
            reader.feed_data(message[:7])
            reader.feed_data(message[7:] + message)
            reader.feed_eof()
            latencies: list[float] = []
            await notify._listen(reader, bytearray(), latencies, asyncio.Event())
            return latencies

        latencies = asyncio.run(run())
        self.assertEqual(len(latencies), 2)
        self.assertTrue(all(0 <= x < 5 for x in latencies))

    def test_table(self) -> None:
        """
        The table has a row per target, rates per second, and says why
        PgBouncer has none.
        """
        text = notify.formatResults(
            [
                notify.NotifyResult(notify.DIRECT, 100, 10000, 2.0, 0.5, 1.5),
                notify.NotifyResult(notify.TRANSACTION, error="boom"),
            ]
        )
        self.assertIn("direct", text)
        self.assertIn("5000", text)
        self.assertIn("failed: boom", text)
        self.assertIn("PgBouncer", text)
