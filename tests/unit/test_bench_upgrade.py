"""
Tests for L{benchmarks.upgrade}: reading the listening socket's inode and
who holds it from C{/proc}, and the table.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from benchmarks.upgrade import UpgradeResult, formatResults, holds, listeningInode

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
