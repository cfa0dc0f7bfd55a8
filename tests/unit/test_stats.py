"""
Tests for L{pgtwist.pool.stats}: histograms, per-pool counters and
PgBouncer's per-second averages.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.pool.stats import COUNTERS, Averages, Histogram, PoolStats


class HistogramTests(SynchronousTestCase):
    """
    Fixed-bucket histograms.
    """

    def test_observe(self) -> None:
        """
        An observation lands in the first bucket whose bound is not below
        it; Prometheus buckets are cumulative and end with C{+Inf}.
        """
        histogram = Histogram((0.1, 1.0))
        for value in (0.05, 0.1, 0.5, 7.0):
            histogram.observe(value)
        self.assertEqual(histogram.counts, [2, 1, 1])
        self.assertEqual(histogram.cumulative(), [("0.1", 2), ("1.0", 3), ("+Inf", 4)])
        self.assertEqual(histogram.count, 4)
        self.assertAlmostEqual(histogram.sum, 7.65)

    def test_reset(self) -> None:
        """
        A reset forgets every observation.
        """
        histogram = Histogram((0.1,))
        histogram.observe(0.5)
        histogram.reset()
        self.assertEqual((histogram.counts, histogram.count, histogram.sum), ([0, 0], 0, 0.0))


class PoolStatsTests(SynchronousTestCase):
    """
    One pool's counters.
    """

    def test_add(self) -> None:
        """
        Waits, queries and transactions count once each and add their time
        in microseconds.
        """
        stats = PoolStats()
        stats.addWait(0.5)
        stats.addQuery(0.002)
        stats.addTransaction(0.003)
        self.assertEqual(
            (stats.serverAssignmentCount, stats.waitTime, stats.waitHistogram.count),
            (1, 500000, 1),
        )
        self.assertEqual((stats.queryCount, stats.queryTime), (1, 2000))
        self.assertEqual((stats.xactCount, stats.xactTime), (1, 3000))

    def test_totalsInPgBouncerOrder(self) -> None:
        """
        C{totals} lists the counters in C{COUNTERS} order.
        """
        stats = PoolStats()
        stats.bytesSent = 7
        stats.bindCount = 3
        totals = stats.totals()
        self.assertEqual(len(totals), len(COUNTERS))
        self.assertEqual(totals[COUNTERS.index("bytesSent")], 7)
        self.assertEqual(totals[COUNTERS.index("bindCount")], 3)

    def test_reset(self) -> None:
        """
        A reset zeroes the counters and histograms.
        """
        stats = PoolStats()
        stats.addQuery(1.0)
        stats.authFailure = 2
        stats.reset()
        self.assertEqual(stats.totals(), [0] * len(COUNTERS))
        self.assertEqual((stats.authFailure, stats.queryHistogram.count), (0, 0))


class AveragesTests(SynchronousTestCase):
    """
    Per-second rates over the last period, and average times per event.
    """

    def test_firstSnapshotHasNoAverages(self) -> None:
        """
        One snapshot gives nothing to compare with.
        """
        averages = Averages()
        averages.update(100.0, {"db": [0] * len(COUNTERS)})
        self.assertEqual(averages.averages, {})

    def test_rates(self) -> None:
        """
        Counts become rates per second over the elapsed time; query time
        becomes the average per query.
        """
        averages = Averages()
        averages.update(100.0, {"db": [0] * len(COUNTERS)})
        stats = PoolStats()
        for _ in range(30):
            stats.addQuery(0.001)
        stats.bytesSent = 600
        averages.update(160.0, {"db": stats.totals()})
        row = averages.averages["db"]
        self.assertEqual(row[2], 0)  # 30 queries in 60 s, rounded down
        self.assertEqual(row[4], 10)  # bytes sent per second
        self.assertEqual(row[6], 1000)  # microseconds per query

    def test_sameInstant(self) -> None:
        """
        A second snapshot at the same time keeps the previous averages.
        """
        averages = Averages()
        averages.update(100.0, {"db": [0] * len(COUNTERS)})
        averages.update(100.0, {"db": [1] * len(COUNTERS)})
        self.assertEqual(averages.averages, {})
