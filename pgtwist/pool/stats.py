# -*- test-case-name: tests.unit.test_pipeline_session,tests.unit.test_metrics,tests.unit.test_admin_console -*-
"""
Statistics per pool, cheap enough for the hot path: plain integer counters
and fixed-bucket histograms updated in place, read at scrape time by the
admin console (PgBouncer's SHOW STATS) and the Prometheus collector.

Times are kept in microseconds, as PgBouncer reports them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from zope.interface import implementer

from pgtwist.interfaces import IPoolStats

#: Histogram bucket upper bounds, seconds: 100 µs to 60 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class Histogram:
    """
    Counts of observations per bucket (not cumulative), their sum and count;
    C{observe} is one bisect and three additions.
    """

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """
        Record one observation (seconds).
        """
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """
        Prometheus buckets: (upper bound, observations at or below it), ending
        with C{+Inf}.
        """
        result = []
        total = 0
        for bound, count in zip(self.bounds, self.counts):
            total += count
            result.append((repr(bound), total))
        result.append(("+Inf", self.count))
        return result

    def reset(self) -> None:
        """
        Forget every observation.
        """
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0


#: PgBouncer's SHOW STATS_TOTALS counters, in its column order, as the
#: attribute names of L{PoolStats}.
COUNTERS = (
    "serverAssignmentCount",
    "xactCount",
    "queryCount",
    "bytesReceived",
    "bytesSent",
    "xactTime",
    "queryTime",
    "waitTime",
    "clientParseCount",
    "serverParseCount",
    "bindCount",
    "clientLoginCount",
)


@implementer(IPoolStats)
class PoolStats:
    """
    Counters and histograms of one (database, user) pool.
    """

    __slots__ = (
        *COUNTERS,
        "waitHistogram",
        "xactHistogram",
        "queryHistogram",
        "connectionErrors",
        "authSuccess",
        "authFailure",
        "connectionsOpened",
        "connectionsClosed",
        "timeouts",
    )

    serverAssignmentCount: int
    xactCount: int
    queryCount: int
    bytesReceived: int
    bytesSent: int
    xactTime: int
    queryTime: int
    waitTime: int
    clientParseCount: int
    serverParseCount: int
    bindCount: int
    clientLoginCount: int

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """
        Zero everything (C{pgtwist-cli clear prometheus}).
        """
        for name in COUNTERS:
            setattr(self, name, 0)
        self.waitHistogram = Histogram()
        self.xactHistogram = Histogram()
        self.queryHistogram = Histogram()
        self.connectionErrors = 0
        self.authSuccess = 0
        self.authFailure = 0
        self.connectionsOpened = 0
        self.connectionsClosed = 0
        self.timeouts = 0

    def totals(self) -> list[int]:
        """
        The counters in PgBouncer's column order.
        """
        return [int(getattr(self, name)) for name in COUNTERS]

    def addWait(self, seconds: float) -> None:
        """
        A client got a backend after waiting C{seconds}.
        """
        self.serverAssignmentCount += 1
        self.waitTime += int(seconds * 1e6)
        self.waitHistogram.observe(seconds)

    def addQuery(self, seconds: float) -> None:
        """
        A request (Query, or an extended batch up to Sync) took C{seconds}.
        """
        self.queryCount += 1
        self.queryTime += int(seconds * 1e6)
        # Histogram.observe, inlined: this runs once per request.
        histogram = self.queryHistogram
        histogram.counts[bisect_left(histogram.bounds, seconds)] += 1
        histogram.sum += seconds
        histogram.count += 1

    def addTransaction(self, seconds: float) -> None:
        """
        A transaction (or an autocommit statement) took C{seconds}.
        """
        self.xactCount += 1
        self.xactTime += int(seconds * 1e6)
        # Histogram.observe, inlined: this runs once per transaction.
        histogram = self.xactHistogram
        histogram.counts[bisect_left(histogram.bounds, seconds)] += 1
        histogram.sum += seconds
        histogram.count += 1


class Averages:
    """
    PgBouncer's per-second averages over the last C{stats_period}: the
    difference of two snapshots of the totals.
    """

    def __init__(self) -> None:
        self.previous: dict[str, list[int]] = {}
        self.previousTime: float | None = None
        self.averages: dict[str, list[int]] = {}

    def update(self, now: float, totals: dict[str, list[int]]) -> None:
        """
        Take a snapshot; averages become (new - old) / elapsed seconds, except
        times, which are averaged per transaction / query / assignment.
        """
        if self.previousTime is not None and now > self.previousTime:
            elapsed = now - self.previousTime
            averages = {}
            for name, values in totals.items():
                old = self.previous.get(name, [0] * len(values))
                delta = [new - before for new, before in zip(values, old)]
                d = dict(zip(COUNTERS, delta))
                averages[name] = [
                    int(d["serverAssignmentCount"] / elapsed),
                    int(d["xactCount"] / elapsed),
                    int(d["queryCount"] / elapsed),
                    int(d["bytesReceived"] / elapsed),
                    int(d["bytesSent"] / elapsed),
                    int(d["xactTime"] / d["xactCount"]) if d["xactCount"] else 0,
                    int(d["queryTime"] / d["queryCount"]) if d["queryCount"] else 0,
                    int(d["waitTime"] / d["serverAssignmentCount"])
                    if d["serverAssignmentCount"]
                    else 0,
                    int(d["clientParseCount"] / elapsed),
                    int(d["serverParseCount"] / elapsed),
                    int(d["bindCount"] / elapsed),
                    int(d["clientLoginCount"] / elapsed),
                ]
            self.averages = averages
        self.previous = {name: list(values) for name, values in totals.items()}
        self.previousTime = now
