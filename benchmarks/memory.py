# -*- test-case-name: tests.unit.test_bench -*-
"""
The memory step: how much resident memory pgtwist needs per idle client
connection (the issue's target: 10 KiB).

L{benchmarks.client} opens many connections to pgtwist and completes the
login on each (SCRAM-SHA-256 with cached keys), then leaves them idle. pgtwist's RSS (C{VmRSS}, summed over its processes)
before and after, divided by the number of connections, is the cost.

pgtwist runs the transaction pipeline for this step: an idle client then
holds no backend, only its own state.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.client import LoginError, openConnections

#: File descriptors the harness keeps besides the client connections.
SPARE_DESCRIPTORS = 1024
#: Connections opened and closed before the baseline is read, so that
#: first-use allocations are not charged to the idle connections.
WARM_UP_CONNECTIONS = 100
#: Seconds to let the pooler settle before each RSS reading.
SETTLE_SECONDS = 1.0


def raiseFileLimit(
    needed: int,
    getrlimit: Callable[[int], tuple[int, int]] = resource.getrlimit,
    setrlimit: Callable[[int, tuple[int, int]], None] = resource.setrlimit,
) -> int:
    """
    Raise C{RLIMIT_NOFILE} to at least C{needed} when the hard limit allows,
    or when we may raise the hard limit (as root); else as far as the hard
    limit goes. Child processes (pgtwist) inherit the new limit.

    @return: The soft limit now in force.
    """
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    if hard == resource.RLIM_INFINITY or hard >= needed:
        setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return needed
    try:
        setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
        return needed
    except (OSError, ValueError):
        setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard


@dataclass(frozen=True)
class MemoryResult:
    """
    The memory step's outcome, as written to the JSON file.

    @ivar kibPerConnection: RSS growth per connection, or C{None} on error.
    """

    connections: int
    rssBeforeKiB: int
    rssAfterKiB: int
    loginSeconds: float
    kibPerConnection: float | None
    error: str | None = None


def kibPerConnection(before: int, after: int, connections: int) -> float | None:
    """
    RSS growth per connection in KiB (C{None} without connections).
    """
    if connections <= 0:
        return None
    return (after - before) / connections


async def measureIdleConnections(
    count: int,
    host: str,
    port: int,
    user: str,
    password: str,
    database: str,
    rss: Callable[[], int],
    alive: Callable[[], bool],
) -> MemoryResult:
    """
    Warm the pooler up, read its RSS, open C{count} idle connections, read
    its RSS again, and close them.

    @param rss: Reads the pooler's resident memory in KiB.
    @param alive: Whether the pooler is still running.
    @raise LoginError: A login failed, or the pooler died.
    """
    address = (host, port, user, password, database)
    warm = await openConnections(min(WARM_UP_CONNECTIONS, count), *address)
    await warm.close()
    await asyncio.sleep(SETTLE_SECONDS)
    before = rss()
    held = await openConnections(count, *address)
    try:
        await asyncio.sleep(SETTLE_SECONDS)
        if not alive():
            raise LoginError("the pooler exited while holding the connections")
        after = rss()
    finally:
        await held.close()
    perConnection = kibPerConnection(before, after, count)
    return MemoryResult(count, before, after, held.seconds, perConnection)
