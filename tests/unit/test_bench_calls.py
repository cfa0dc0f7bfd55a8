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


class CompareTests(SynchronousTestCase):
    """
    L{calls.compare}: what an auth_query login calls beyond a vault login.
    """

    def test_differences(self) -> None:
        """
        Per pipeline, the ratio of all calls per login and the functions
        whose counts differ, the largest difference first (equal counts
        are not listed); a pipeline
        measured for one source only is left out.
        """
        shared = ("pgtwist", "/x/pgtwist/net/frontend.py", 1, "dataReceived")
        lookup = ("pgtwist", "/x/pgtwist/net/authquery.py", 2, "find")
        secret = ("pgtwist", "/x/pgtwist/auth/_scram.py", 3, "serverSecret")
        results = [
            calls.Measure("transaction", "login-vault", {shared: 5.0, secret: 1.0}),
            calls.Measure("transaction", "login-authquery", {shared: 5.0, lookup: 3.0}),
            calls.Measure("session", "login-vault", {shared: 5.0}),
        ]
        text = calls.compare(results, top=5)
        self.assertEqual(
            text.splitlines(),
            [
                "",
                "transaction: auth_query / vault = 1.333; the 5 largest differences per login",
                "    +3.00  pgtwist  find (net/authquery.py:2)",
                "    -1.00  pgtwist  serverSecret (auth/_scram.py:3)",
            ],
        )
