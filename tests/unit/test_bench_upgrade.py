"""
Tests for L{benchmarks.upgrade}: reading the listening socket's inode and
who holds it from C{/proc}, and the table.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from benchmarks.upgrade import (
    SpikeResult,
    UpgradeResult,
    formatResults,
    formatSpike,
    holds,
    listeningInode,
    readPgbenchLogs,
)

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1920 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1
   1: 0100007F:1920 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4343 1
"""


class ProcTests(SynchronousTestCase):
    """
    The step finds the hand-over's end in C{/proc}.
    """

    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        (self.root / "net").mkdir(parents=True)
        (self.root / "net" / "tcp").write_text(TCP)

    def test_listeningInode(self) -> None:
        """
        The inode of the socket in state C{0A} (LISTEN) on the port.
        """
        self.assertEqual(listeningInode(6432, str(self.root)), "4242")
        self.assertIsNone(listeningInode(6433, str(self.root)))

    def test_holds(self) -> None:
        """
        A process holds a socket while one of its descriptors links to it.
        """
        fd = self.root / "7" / "fd"
        fd.mkdir(parents=True)
        os.symlink("socket:[4242]", fd / "9")
        self.assertTrue(holds(7, "4242", str(self.root)))
        self.assertFalse(holds(7, "4343", str(self.root)))
        self.assertFalse(holds(8, "4242", str(self.root)))


class FormatTests(SynchronousTestCase):
    """
    One row per number of idle clients.
    """

    def test_row(self) -> None:
        """
        Hand-over time, the probe's medians and worst, failures, the
        clients' hand-over time and the clients lost.
        """
        table = formatResults([UpgradeResult(1000, 1.5, [0.002, 0.004], [0.003, 0.5], 0, 2.25, 0)])
        row = table.splitlines()[1].split()
        self.assertEqual(row, ["1,000", "1.50s", "3.0ms", "251.5ms", "500.0ms", "0", "2.25s", "0"])


class SpikeTests(SynchronousTestCase):
    """
    pgbench's per-transaction logs, read and summed up by window.
    """

    def test_readLogs(self) -> None:
        """
        Each line gives the transaction's end (epoch seconds and
        microseconds) and its latency (microseconds).
        """
        directory = self.mktemp()
        os.mkdir(directory)
        (Path(directory) / "pgbench_log.1").write_text(
            "0 1 1500 0 1700000000 250000\n1 7 20000 0 1700000001 0\n"
        )
        (Path(directory) / "pgbench_log.1.1").write_text("2 1 3000 0 1700000002 500000\n")
        self.assertEqual(
            sorted(readPgbenchLogs(directory)),
            [(1700000000.25, 0.0015), (1700000001.0, 0.02), (1700000002.5, 0.003)],
        )

    def test_format(self) -> None:
        """
        Median, 99th percentile, worst and count of each window, and the
        failures.
        """
        table = formatSpike(SpikeResult([0.001, 0.003], [0.002, 0.004, 0.5], 0)).splitlines()
        self.assertEqual(table[1].split(), ["before", "2.0ms", "3.0ms", "3.0ms", "2"])
        self.assertEqual(table[2].split(), ["during", "4.0ms", "500.0ms", "500.0ms", "3"])
        self.assertEqual(table[3], "pgbench failed transactions: 0")
