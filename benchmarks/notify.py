# -*- test-case-name: tests.unit.test_bench_notify -*-
"""
The NOTIFY fan-out step (issue 14): one notifier, 100 listeners on one
channel, pgtwist's transaction pooling against direct PostgreSQL
(PgBouncer's transaction pooling cannot carry LISTEN at all).

Every listener logs in and runs C{LISTEN}; the notifier then runs
C{NOTIFY bench_fanout, '<time sent>'} in autocommit, one after the other,
for the step's duration. Each listener reads its notifications as they
come; the step reports the notifications sent per second, those delivered
per second (all listeners together) and the delivery latency (send to
receipt, median and 99th percentile), from the payloads.

Run alone with C{python -m benchmarks.notify} (it starts its own
PostgreSQL and pgtwist), or with C{make bench} given C{--notify}.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.client import LoginError, _close, login
from pgtwist.wire import codec, constants
from pgtwist.wire.codec import HEADER
from pgtwist.wire.messages import Query

#: The listeners, the channel, and how many backends pgtwist may open.
LISTENERS = 100
CHANNEL = "bench_fanout"
POOL_SIZE = 4
#: The targets, in the order they run.
DIRECT = "direct"
TRANSACTION = "pgtwist-transaction"
TARGETS = (DIRECT, TRANSACTION)

Address = tuple[str, int, str, str, str]


@dataclass
class NotifyResult:
    """
    One target's fan-out figures (C{error} when it could not run).
    """

    target: str
    sent: int = 0
    delivered: int = 0
    seconds: float = 0.0
    p50ms: float = 0.0
    p99ms: float = 0.0
    error: str | None = None

    def sentPerSecond(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def deliveredPerSecond(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0


async def _untilReady(reader: asyncio.StreamReader, buffer: bytearray) -> None:
    """
    Read until a ReadyForQuery; fail on an ErrorResponse.
    """
    while True:
        while len(buffer) >= 5:
            type, length = HEADER.unpack_from(buffer)
            if len(buffer) < 1 + length:
                break
            body = bytes(buffer[5 : 1 + length])
            del buffer[: 1 + length]
            if type == constants.ERROR_RESPONSE:
                raise LoginError(repr(codec.decodeBackend(type, body)))
            if type == constants.READY_FOR_QUERY:
                return
        data = await reader.read(65536)
        if not data:
            raise LoginError("connection closed")
        buffer += data


async def _listen(
    reader: asyncio.StreamReader, buffer: bytearray, latencies: list[float], stop: asyncio.Event
) -> None:
    """
    Read notifications until C{stop}, noting each one's latency.
    """
    while not stop.is_set():
        while len(buffer) >= 5:
            type, length = HEADER.unpack_from(buffer)
            if len(buffer) < 1 + length:
                break
            if type == constants.NOTIFICATION_RESPONSE:
                body = bytes(buffer[9 : 1 + length])
                payload = body[body.index(b"\x00") + 1 : -1]
                latencies.append(time.perf_counter() - float(payload))
            del buffer[: 1 + length]
        try:
            data = await asyncio.wait_for(reader.read(65536), 0.2)
        except asyncio.TimeoutError:
            continue
        if not data:
            return
        buffer += data


async def measure(
    target: str, address: Address, listeners: int = LISTENERS, duration: float = 2.0
) -> NotifyResult:
    """
    Run the fan-out against C{address} (host, port, user, password,
    database).
    """
    connections = [await login(*address) for _ in range(listeners)]
    notifier = await login(*address)
    buffers = [bytearray() for _ in connections]
    latencies: list[float] = []
    stop = asyncio.Event()
    try:
        for (reader, writer), buffer in zip(connections, buffers):
            writer.write(codec.encode(Query(f"LISTEN {CHANNEL}")))
            await _untilReady(reader, buffer)
        tasks = [
            asyncio.ensure_future(_listen(reader, buffer, latencies, stop))
            for (reader, _), buffer in zip(connections, buffers)
        ]
        reader, writer = notifier
        sent = 0
        started = time.perf_counter()
        deadline = started + duration
        notifierBuffer = bytearray()
        while time.perf_counter() < deadline:
            writer.write(codec.encode(Query(f"NOTIFY {CHANNEL}, '{time.perf_counter():.9f}'")))
            await _untilReady(reader, notifierBuffer)
            sent += 1
        expected = sent * listeners
        # Wait for the last notifications (at most 5 s).
        drain = time.perf_counter() + 5
        while len(latencies) < expected and time.perf_counter() < drain:
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - started
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        for _, writer in [*connections, notifier]:
            await _close(writer)
    ordered = sorted(latencies)

    def percentile(p: float) -> float:
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return NotifyResult(target, sent, len(latencies), seconds, percentile(0.5), percentile(0.99))


def step(bench: Any, target: str, duration: float) -> NotifyResult:
    """
    The fan-out against one target of a L{benchmarks.run.Bench} whose
    cluster runs: straight to PostgreSQL, or through a pgtwist it starts
    (transaction pooling, L{POOL_SIZE} backends) and stops.
    """
    from benchmarks import plan, servers

    creds = bench.credentials
    if target == DIRECT:
        address = (servers.LOOPBACK, bench.cluster.port, creds.user, creds.password, creds.database)
        try:
            return asyncio.run(measure(target, address, duration=duration))
        except (LoginError, OSError, asyncio.TimeoutError) as e:
            return NotifyResult(target, error=repr(e))
    server = bench.startServer(plan.Target(plan.PGTWIST, plan.TRANSACTION), POOL_SIZE)
    address = (servers.LOOPBACK, server.port, creds.user, creds.password, creds.database)
    try:
        return asyncio.run(measure(target, address, duration=duration))
    except (LoginError, OSError, asyncio.TimeoutError) as e:
        return NotifyResult(target, error=f"{e!r}\n{server.logTail(10)}")
    finally:
        bench.stopServer(server)


def formatResults(results: Sequence[NotifyResult]) -> str:
    """
    The step's table.
    """
    lines = [
        f"NOTIFY fan-out: 1 notifier, {LISTENERS} listeners on one channel",
        f"{'target':<22}{'sent/s':>10}{'delivered/s':>14}{'p50 ms':>10}{'p99 ms':>10}",
    ]
    for result in results:
        if result.error is not None:
            lines.append(f"{result.target:<22}failed: {result.error}")
            continue
        lines.append(
            f"{result.target:<22}{result.sentPerSecond():>10.0f}"
            f"{result.deliveredPerSecond():>14.0f}{result.p50ms:>10.2f}{result.p99ms:>10.2f}"
        )
    lines.append("PgBouncer (transaction pooling): cannot carry LISTEN.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Start PostgreSQL, run the step against each target, print the table.
    """
    from benchmarks import run

    options = run.parseArguments(["--quick", *(sys.argv[1:] if argv is None else argv)])
    bench = run.Bench(options)
    try:
        bench.setUp()
        results = [step(bench, target, float(options.duration)) for target in TARGETS]
    finally:
        bench.close()
    print(formatResults(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
