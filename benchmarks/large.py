# -*- test-case-name: tests.unit.test_bench -*-
"""
The large-message step (issue 10): pgtwist relays a message of any length
in the pieces it arrives in, so time grows linearly with the size and
memory does not grow at all.

For each pipeline, pgtwist is started alone and one client, after the same
work at 1 MiB to warm it up, runs C{SELECT repeat('x', N)}, C{COPY (SELECT
repeat('x', N)) TO STDOUT} and C{COPY ... FROM STDIN} of one N-byte row (one
CopyData each way), N = 16 and 64 MiB, timing each: the fastest of a few
runs, since on a shared machine noise only ever adds time. pgtwist's peak
RSS (C{VmHWM}) before and after gives its growth. The same operations
straight to PostgreSQL are the baseline. The verdicts, per pipeline:
the growth stays under 8 MiB, each operation at 64 MiB takes at most
4.5 times as long as at 16 MiB, and each operation and size takes at most
1.1 times as long as straight to PostgreSQL (issue 15: a relay of any
size costs what the bytes cost); and each operation and size takes the
transaction pipeline at most 1.2 times the session pipeline's time.

The client reads replies with L{pgtwist.wire.walker.MessageWalker}, so it
holds no 64 MiB message either.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from benchmarks.client import LoginError, _close, _error, login
from benchmarks.results import Check, formatNumber
from pgtwist.wire import codec, constants
from pgtwist.wire.codec import HEADER
from pgtwist.wire.messages import Query
from pgtwist.wire.walker import MessageWalker

MIB = 1 << 20
#: The sizes measured, and the one the warm-up runs at.
SIZES = (16 * MIB, 64 * MIB)
WARM_UP_SIZE = MIB
#: The operations, in the order they run.
SELECT = "select"
COPY_OUT = "copy-out"
COPY_IN = "copy-in"
OPERATIONS = (SELECT, COPY_OUT, COPY_IN)
#: The pipelines measured (the transaction verdict compares with session).
PIPELINES = ("session", "transaction", "performance")
#: The label of the reference runs straight to PostgreSQL.
DIRECT = "direct"
#: The table C{COPY FROM STDIN} fills (created by the step, dropped after).
TABLE = "pgtwist_bench_large"

#: The targets: peak RSS growth below this many MiB, ...
RSS_LIMIT_MIB = 8.0
#: ... the 64 MiB time at most this many times the 16 MiB time, ...
SCALING_LIMIT = 4.5
#: ... each operation and size at most this many times direct's, ...
DIRECT_LIMIT = 1.1
#: ... and the transaction pipeline's time at most this many times session's.
TRANSACTION_LIMIT = 1.2

#: How long one operation may take.
OPERATION_TIMEOUT = 300.0
#: The piece CopyData is written in.
_PIECE = b"z" * MIB


def repeatsFor(quick: bool, rounds: int) -> int:
    """
    How many times each operation runs: twice with C{--quick}, else once
    per round and at least three times.
    """
    return 2 if quick else max(3, rounds)


def peakKiB(pid: int) -> int:
    """
    The peak resident memory of process C{pid} in KiB (0 when unreadable).
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            return parseVmHwmKiB(f.read()) or 0
    except OSError:
        return 0


def parseVmHwmKiB(status: str) -> int | None:
    """
    C{VmHWM} (peak resident memory) from a C{/proc/PID/status} text, in
    KiB; C{None} when absent.
    """
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) if match else None


@dataclass
class LargeResult:
    """
    One pipeline's measurements.

    @ivar pipeline: The pipeline, or C{direct} for PostgreSQL itself.
    @ivar seconds: The fastest run's seconds by C{(operation, size)}.
    @ivar peakBeforeKiB: C{VmHWM} after the warm-up.
    @ivar peakAfterKiB: C{VmHWM} after the measured operations.
    @ivar error: Why the step failed for this pipeline, if it did.
    """

    pipeline: str
    seconds: dict[tuple[str, int], float] = field(default_factory=dict)
    peakBeforeKiB: int = 0
    peakAfterKiB: int = 0
    error: str | None = None

    @property
    def growthMiB(self) -> float | None:
        """
        Peak RSS growth over the measured operations, in MiB.
        """
        if self.error is not None:
            return None
        return (self.peakAfterKiB - self.peakBeforeKiB) / 1024


class _Replies:
    """
    Reads one request's replies off a connection without holding their
    bodies: counts the bytes of rows and CopyData, notes CopyInResponse,
    the first error and ReadyForQuery.
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.payload = 0
        self.copyIn = False
        self.ready = False
        self.failure: LoginError | None = None
        self.walker = MessageWalker(
            self._message,
            watch=frozenset({constants.COPY_IN_RESPONSE}),
            collect=frozenset({constants.READY_FOR_QUERY, constants.ERROR_RESPONSE}),
        )

    def _message(self, type: bytes, body: bytes | None, end: int) -> None:
        if type == constants.READY_FOR_QUERY:
            self.ready = True
        elif type == constants.COPY_IN_RESPONSE:
            self.copyIn = True
        elif self.failure is None and body is not None:
            self.failure = _error(body)

    async def until(self, done: Callable[[], bool]) -> None:
        """
        Read until C{done()}; count the bytes of everything read.

        @raise LoginError: The server closed, or sent an error before
            ReadyForQuery.
        """
        while not done():
            data = await self.reader.read(1 << 18)
            if not data:
                raise LoginError("the server closed the connection")
            self.payload += len(data)
            self.walker.feed(data)
            if self.failure is not None and self.ready:
                raise self.failure


async def _run(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, operation: str, size: int
) -> int:
    """
    Run one operation of C{size} bytes; return the bytes read back.
    """
    if operation == COPY_IN:
        await _simple(reader, writer, f"TRUNCATE {TABLE}")
        writer.write(codec.encode(Query(f"COPY {TABLE} (v) FROM STDIN")))
        replies = _Replies(reader)
        await replies.until(lambda: replies.copyIn or replies.ready)
        if not replies.copyIn:
            raise replies.failure or LoginError("COPY FROM STDIN did not start")
        writer.write(HEADER.pack(constants.COPY_DATA, 4 + size + 1))
        whole, rest = divmod(size, len(_PIECE))
        for _ in range(whole):
            writer.write(_PIECE)
            await writer.drain()
        writer.write(_PIECE[:rest] + b"\n" + codec.frame(constants.COPY_DONE, b""))
        await replies.until(lambda: replies.ready)
        return size
    if operation == SELECT:
        sql = f"SELECT repeat('x', {size})"
    else:
        sql = f"COPY (SELECT repeat('y', {size})) TO STDOUT"
    writer.write(codec.encode(Query(sql)))
    replies = _Replies(reader)
    await replies.until(lambda: replies.ready)
    if replies.payload < size:
        raise LoginError(f"{operation} {size}: only {replies.payload} bytes came back")
    return replies.payload


async def _simple(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sql: str) -> None:
    """
    Run C{sql}; wait for ReadyForQuery.
    """
    writer.write(codec.encode(Query(sql)))
    replies = _Replies(reader)
    await replies.until(lambda: replies.ready)


async def measurePipeline(
    pipeline: str,
    address: tuple[str, int, str, str, str],
    peak: Callable[[], int],
    repeats: int = 2,
) -> LargeResult:
    """
    Warm the pooler up at 1 MiB, read its peak RSS, run every operation at
    every size C{repeats} times (keeping the fastest), and read its peak RSS
    again.

    @param address: Host, port, user, password and database of the pooler.
    @param peak: Reads the pooler's C{VmHWM} in KiB.
    """
    result = LargeResult(pipeline)
    reader, writer = await login(*address)
    try:
        await _simple(reader, writer, f"CREATE TABLE IF NOT EXISTS {TABLE} (v text)")
        for operation in OPERATIONS:
            await asyncio.wait_for(_run(reader, writer, operation, WARM_UP_SIZE), OPERATION_TIMEOUT)
        result.peakBeforeKiB = peak()
        times: dict[tuple[str, int], list[float]] = {}
        for _ in range(repeats):
            for size in SIZES:
                for operation in OPERATIONS:
                    started = time.monotonic()
                    await asyncio.wait_for(_run(reader, writer, operation, size), OPERATION_TIMEOUT)
                    times.setdefault((operation, size), []).append(time.monotonic() - started)
        result.peakAfterKiB = peak()
        for key, values in times.items():
            result.seconds[key] = min(values)
        await _simple(reader, writer, f"DROP TABLE {TABLE}")
    finally:
        await _close(writer)
    return result


def _mib(size: int) -> str:
    return f"{size // MIB} MiB"


def checkLarge(results: Sequence[LargeResult]) -> list[Check]:
    """
    The step's verdicts: per pipeline, RSS growth under 8 MiB, each
    operation's 64 MiB time at most 4.5 times its 16 MiB time, and each
    operation and size at most 1.1 times direct's time (when the direct
    run is there); per operation and size, transaction at most 1.2 times
    session.
    """
    checks: list[Check] = []
    byPipeline = {r.pipeline: r for r in results}
    small, big = SIZES
    for result in results:
        if result.pipeline == DIRECT:
            continue
        growth = result.growthMiB
        checks.append(
            Check(
                f"large messages, {result.pipeline}: peak RSS growth MiB (< {RSS_LIMIT_MIB:g})",
                growth,
                RSS_LIMIT_MIB,
                None if growth is None else growth < RSS_LIMIT_MIB,
            )
        )
        for operation in OPERATIONS:
            first = result.seconds.get((operation, small))
            second = result.seconds.get((operation, big))
            ratio = second / first if first and second is not None else None
            checks.append(
                _atMost(
                    f"large messages, {result.pipeline} {operation}: "
                    f"{_mib(big)} time / {_mib(small)} time",
                    ratio,
                    SCALING_LIMIT,
                )
            )
        direct = byPipeline.get(DIRECT)
        if direct is None:
            continue
        for size in SIZES:
            for operation in OPERATIONS:
                base = direct.seconds.get((operation, size))
                mine = result.seconds.get((operation, size))
                checks.append(
                    _atMost(
                        f"large messages, {result.pipeline} {operation} {_mib(size)}: "
                        "time / direct time",
                        mine / base if base and mine is not None else None,
                        DIRECT_LIMIT,
                    )
                )
    session, transaction = byPipeline.get("session"), byPipeline.get("transaction")
    if session is not None and transaction is not None:
        for size in SIZES:
            for operation in OPERATIONS:
                base = session.seconds.get((operation, size))
                other = transaction.seconds.get((operation, size))
                ratio = other / base if base and other is not None else None
                checks.append(
                    _atMost(
                        f"large messages, {operation} {_mib(size)}: transaction / session time",
                        ratio,
                        TRANSACTION_LIMIT,
                    )
                )
    return checks


def _atMost(name: str, value: float | None, limit: float) -> Check:
    """
    Judge C{value} against an upper C{limit}.
    """
    return Check(name, value, limit, None if value is None else value <= limit)


def renderLarge(results: Sequence[LargeResult]) -> str:
    """
    One line per target: seconds per operation at each size with their
    ratio, and pgtwist's peak RSS.
    """
    lines = []
    small, big = SIZES
    for result in results:
        name = DIRECT if result.pipeline == DIRECT else f"pgtwist/{result.pipeline}"
        if result.error is not None:
            lines.append(f"Large messages, {name}: failed: {result.error}")
            continue
        parts = []
        for operation in OPERATIONS:
            first = result.seconds.get((operation, small))
            second = result.seconds.get((operation, big))
            ratio = second / first if first and second is not None else None
            parts.append(
                f"{operation} {formatNumber(first)}s/{formatNumber(second)}s "
                f"(x{formatNumber(ratio)})"
            )
        line = f"Large messages, {name}, {_mib(small)}/{_mib(big)}: " + ", ".join(parts)
        if result.pipeline != DIRECT:
            line += f"; peak RSS {result.peakBeforeKiB} -> {result.peakAfterKiB} KiB"
        lines.append(line + ".")
    return "\n".join(lines)
