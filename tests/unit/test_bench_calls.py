"""
Tests for L{benchmarks.calls}: the arithmetic of calls per transaction.
"""

from __future__ import annotations

import collections
import os
import sys

from twisted.trial.unittest import SynchronousTestCase

from benchmarks import calls


class CategoryTests(SynchronousTestCase):
    """
    L{calls.category} tells pgtwist's code from Twisted's.
    """

    def test_kinds(self) -> None:
        """
        A file under a C{pgtwist} package is pgtwist's, one under a
        C{twisted} package Twisted's, anything else other.
        """
        self.assertEqual(
            calls.category(os.path.join("", "src", "pgtwist", "net", "a.py")), "pgtwist"
        )
        self.assertEqual(
            calls.category(os.path.join("", "lib", "twisted", "internet", "tcp.py")), "twisted"
        )
        self.assertEqual(calls.category("/usr/lib/python3/weakref.py"), "other")


class DifferenceTests(SynchronousTestCase):
    """
    L{calls.difference} and L{calls.Measure}: per-transaction calls from two
    runs of different lengths.
    """

    def test_perTransaction(self) -> None:
        """
        What the longer run called more, divided by its extra transactions;
        functions called equally often (login, start-up) drop out.
        """
        a = ("pgtwist", "f.py", 1, "f")
        b = ("twisted", "g.py", 2, "g")
        login = ("pgtwist", "h.py", 3, "login")
        small = collections.Counter({a: 100 + 7, b: 50, login: 9})
        large = collections.Counter({a: 200 + 7, b: 100, login: 9})
        measure = calls.Measure("transaction", "simple", calls.difference(small, large, 50))
        self.assertEqual(measure.byFunction, {a: 2.0, b: 1.0})
        self.assertEqual(measure.total("pgtwist"), 2.0)
        self.assertEqual(measure.total(), 3.0)
        self.assertIn("transaction  simple", calls.report([measure], top=1))

    def test_counter(self) -> None:
        """
        L{calls.CallCounter} counts Python calls, not C calls or returns.
        """
        counter = calls.CallCounter()

        def f() -> None:
            len("x")

        sys.setprofile(counter)
        try:
            f()
        finally:
            sys.setprofile(None)
        names = [key[3] for key in counter.counts]
        self.assertIn("f", names)
        self.assertNotIn("len", names)
