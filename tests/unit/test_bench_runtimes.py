"""
Tests for the pgtwist-pypy and pgtwist-uvloop rows of C{make bench}:
pgtwist run by PyPy, or on Twisted's asyncio reactor on uvloop, beside the
default one, in the schedule, the options, the latency table and the target
verdicts.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from benchmarks import plan, results, run
from benchmarks.plan import (
    DIRECT,
    PGBOUNCER,
    PGTWIST,
    PYPY,
    SESSION,
    TRANSACTION,
    UVLOOP,
    Target,
    Workload,
)
from tests.unit.test_bench import record

PYPY_SESSION = Target(PGTWIST, SESSION, runtime=PYPY)
PYPY_TRANSACTION = Target(PGTWIST, TRANSACTION, runtime=PYPY)


class PypyPlanTests(SynchronousTestCase):
    """
    Where the PyPy targets go in a round.
    """

    def test_names(self) -> None:
        """
        A PyPy target is named C{pgtwist-pypy/<pipeline>}; with workers the
        count comes last.
        """
        self.assertEqual(PYPY_SESSION.name, "pgtwist-pypy/session")
        self.assertEqual(Target(PGTWIST, TRANSACTION, 2, PYPY).name, "pgtwist-pypy-w2/transaction")
        self.assertEqual(Target(PGTWIST, TRANSACTION).name, "pgtwist/transaction")

    def test_targetsWithPypy(self) -> None:
        """
        With C{pypy}, each pipeline gets a PyPy target right after pgtwist's.
        """
        workload = Workload("w", ("-S",), 10, plan.SELECT)
        self.assertEqual(
            [t.name for t in plan.targetsFor(workload, 1, pypy=True)],
            [
                "direct",
                "floor",
                "floor-pypy",
                "pgbouncer/session",
                "pgtwist/session",
                "pgtwist-pypy/session",
                "pgbouncer/transaction",
                "pgtwist/transaction",
                "pgtwist-pypy/transaction",
            ],
        )
        self.assertNotIn(PYPY_SESSION, plan.targetsFor(workload, 1))

    def test_targetsWithUvloop(self) -> None:
        """
        With C{uvloop}, each pipeline gets a C{pgtwist-uvloop} target after
        the other pgtwist ones.
        """
        workload = Workload("w", ("-S",), 10, plan.SELECT, pipelines=(SESSION,))
        self.assertEqual(
            [t.name for t in plan.targetsFor(workload, 1, pypy=True, uvloop=True)],
            ["direct", "floor", "floor-pypy", "pgbouncer/session", "pgtwist/session",
             "pgtwist-pypy/session", "pgtwist-uvloop/session"],
        )  # fmt: skip
        self.assertEqual(Target(PGTWIST, SESSION, runtime=UVLOOP).name, "pgtwist-uvloop/session")
        steps = plan.schedule([workload], 1, 1, uvloop=True)
        self.assertIn(Target(PGTWIST, SESSION, runtime=UVLOOP), [s.target for s in steps])

    def test_schedule(self) -> None:
        """
        The schedule runs the PyPy targets in every round.
        """
        workload = Workload("w", (), 10, plan.SELECT, pipelines=(SESSION,))
        steps = plan.schedule([workload], 2, 1, pypy=True)
        self.assertEqual([s.target for s in steps].count(PYPY_SESSION), 2)
        self.assertEqual(len(steps), 8)


class PypyOptionsTests(SynchronousTestCase):
    """
    How the command line picks the PyPy interpreter.
    """

    def test_noPypy(self) -> None:
        """
        C{--no-pypy} leaves the PyPy rows out, whatever else is given.
        """
        options = run.parseArguments(["--pypy", "/usr/bin/pypy3", "--no-pypy"])
        self.assertIsNone(options.pypy)

    def test_relativePypy(self) -> None:
        """
        A relative path to the interpreter is made absolute (the poolers
        start in directories of their own); a bare command name is kept.
        """
        options = run.parseArguments(["--pypy", ".venv-pypy/bin/python"])
        self.assertEqual(options.pypy, os.path.join(os.getcwd(), ".venv-pypy", "bin", "python"))
        self.assertEqual(run.parseArguments(["--pypy", "pypy3"]).pypy, "pypy3")

    def test_explicitPypy(self) -> None:
        """
        C{--pypy} names the interpreter; the JIT warm-up defaults to 3 s, 1 s
        with C{--quick}.
        """
        options = run.parseArguments(["--pypy", "/usr/bin/pypy3"])
        self.assertEqual(options.pypy, "/usr/bin/pypy3")
        self.assertEqual(options.jit_warmup, 3)
        self.assertEqual(run.parseArguments(["--quick"]).jit_warmup, 1)
        self.assertEqual(run.parseArguments(["--jit-warmup", "7"]).jit_warmup, 7)

    def test_uvloopOptIn(self) -> None:
        """
        The uvloop rows run only when asked for.
        """
        self.assertFalse(run.parseArguments([]).uvloop)
        self.assertTrue(run.parseArguments(["--uvloop"]).uvloop)

    def test_defaultPypy(self) -> None:
        """
        Without C{--pypy}, the interpreter C{make pypy} prepares is used
        when it exists, except with C{--quick} (which must stay short).
        """
        options = run.parseArguments([])
        expected = run.PYPY if os.access(run.PYPY, os.X_OK) else None
        self.assertEqual(options.pypy, expected)
        self.assertIsNone(run.parseArguments(["--quick"]).pypy)
        quick = run.parseArguments(["--quick", "--pypy", "/usr/bin/pypy3"])
        self.assertEqual(quick.pypy, "/usr/bin/pypy3")


class PypyResultsTests(SynchronousTestCase):
    """
    The PyPy rows in the latency table and the verdicts.
    """

    def test_latencyPerPgtwist(self) -> None:
        """
        The 1-client table has a line for pgtwist and one for pgtwist-pypy
        per pipeline, both against PgBouncer's added latency.
        """
        records = [
            record(0, "c1", Target(DIRECT), 1.0, latencyMs=0.10),
            record(0, "c1", Target(PGBOUNCER, SESSION), 1.0, latencyMs=0.14),
            record(0, "c1", Target(PGTWIST, SESSION), 1.0, latencyMs=0.18),
            record(0, "c1", PYPY_SESSION, 1.0, latencyMs=0.16),
        ]
        workloads = [Workload("c1", (), 1, plan.LATENCY, pipelines=(SESSION,))]
        main, pypy = results.latencyTable(records, workloads)
        self.assertEqual((main.label, pypy.label), ("pgtwist", "pgtwist-pypy"))
        assert main.ratio is not None and pypy.ratio is not None
        self.assertAlmostEqual(main.ratio, 2.0)
        self.assertAlmostEqual(pypy.ratio, 1.5)
        text = results.renderLatencies([main, pypy])
        self.assertIn("session (pgtwist-pypy)", text)

    def test_checksNameTheRuntime(self) -> None:
        """
        The verdicts for PyPy rows say C{pgtwist-pypy}.
        """
        row = results.Row(
            "s", PYPY_TRANSACTION.name, PGTWIST, TRANSACTION, 1, 10.0, 1.0, 5.0,
            vsPgbouncer=1.1, vsDirect=0.9, cpuVsPgbouncer=1.2,
        )  # fmt: skip
        latency = results.Latencies(TRANSACTION, 0.04, 0.05, "pgtwist-pypy")
        checks = results.checkTargets(
            [row],
            [Workload("s", (), 10, plan.SELECT)],
            [latency],
            {"pgtwist": None, "pgtwist-pypy": 12.0},
        )
        self.assertEqual(
            [(c.name, c.ok) for c in checks],
            [
                ("TPS pgtwist-pypy/PgBouncer s transaction", True),
                ("CPU/txn pgtwist-pypy/PgBouncer s transaction", True),
                ("1-client added latency pgtwist-pypy/PgBouncer transaction", True),
                ("memory KiB per idle client connection", None),
                ("memory KiB per idle client connection (pgtwist-pypy)", False),
            ],
        )


class PypyMemoryTests(SynchronousTestCase):
    """
    The memory step measures PyPy too when the PyPy rows are in the run, and
    the report and the verdicts name the runtime.
    """

    def test_runtimes(self) -> None:
        """
        CPython always; PyPy with C{--pypy}, not with C{--no-pypy}.
        """
        options = run.parseArguments(["--pypy", "/usr/bin/pypy3"])
        self.assertEqual(run.memoryRuntimes(options), [plan.CPYTHON, PYPY])
        options = run.parseArguments(["--pypy", "/usr/bin/pypy3", "--no-pypy"])
        self.assertEqual(run.memoryRuntimes(options), [plan.CPYTHON])

    def test_report(self) -> None:
        """
        One memory line per runtime (or why it failed), a verdict for each,
        and each result in the JSON under its label.
        """
        bench = run.Bench(run.parseArguments(["--no-pypy"]))
        bench.memory = {
            "pgtwist": run.memory.MemoryResult(10_000, 50_000, 110_000, 6.0, 6.0),
            "pgtwist-pypy": run.memory.MemoryResult(10_000, 0, 0, 0.0, None, "login failed"),
        }
        meta = dict.fromkeys(
            ["date", "nproc", "cpu", "postgresql", "pgbouncer", "python", "twisted", "pgtwist"], "?"
        )
        text, document = run.report(bench, [], meta)
        self.assertIn(
            "Memory: 10000 idle connections on pgtwist: RSS 50000 -> 110000 KiB, 6.00 KiB each",
            text,
        )
        self.assertIn("Memory step on pgtwist-pypy failed: login failed", text)
        self.assertIn("PASS  memory KiB per idle client connection: 6.00", text)
        self.assertIn("n/a   memory KiB per idle client connection (pgtwist-pypy)", text)
        self.assertEqual(sorted(document["memory"]), ["pgtwist", "pgtwist-pypy"])
        self.assertEqual(document["memory"]["pgtwist"]["kibPerConnection"], 6.0)
