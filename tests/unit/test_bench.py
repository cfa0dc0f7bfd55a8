"""
Tests for the C{make bench} harness (L{benchmarks}): the schedule, pgbench
and C{/proc} parsing, per-round ratios, target checks, the table, and the
configuration text the poolers get. Nothing here runs a benchmark, a
program or a socket.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import ssl

from twisted.trial.unittest import SynchronousTestCase

from benchmarks import client, large, memory, plan, results, run, servers
from benchmarks.plan import (
    DIRECT,
    FLOOR,
    PGBOUNCER,
    PGTWIST,
    SESSION,
    TRANSACTION,
    Target,
    Workload,
)
from benchmarks.results import RunRecord
from pgtwist.config.loader import loadConfiguration
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import CommandComplete, DataRow, Query, ReadyForQuery, SSLRequest
from tests.unit._tempdir import temporaryDirectory

SELECT_REPORT = """\
pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 1
query mode: simple
number of clients: 10
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 29054
number of failed transactions: 0 (0.000%)
latency average = 0.663 ms
initial connection time = 79.131 ms
tps = 15092.187323 (without initial connection time)
"""

CONNECT_REPORT = """\
pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
number of transactions actually processed: 158
number of failed transactions: 2 (1.250%)
latency average = 128.708 ms
average connection time = 25.250 ms
tps = 77.695416 (including reconnection times)
"""


def record(
    round: int,
    workload: str,
    target: Target,
    tps: float | None,
    latencyMs: float | None = None,
    cpuMicros: float | None = None,
    error: str | None = None,
) -> RunRecord:
    """
    A L{RunRecord} for C{target}, as the harness would have made it.
    """
    return RunRecord(
        round,
        workload,
        target.name,
        target.pooler,
        target.pipeline,
        target.workers,
        tps=tps,
        latencyMs=latencyMs,
        cpuMicros=cpuMicros,
        error=error,
    )


D = Target(DIRECT)
F = Target(FLOOR)
BS = Target(PGBOUNCER, SESSION)
TS = Target(PGTWIST, SESSION)
BT = Target(PGBOUNCER, TRANSACTION)
TT = Target(PGTWIST, TRANSACTION)


class PlanTests(SynchronousTestCase):
    """
    Tests for L{benchmarks.plan}.
    """

    def test_defaultWorkloads(self) -> None:
        """
        The issue's matrix: three query modes at 10 and 100 clients,
        TPC-B at 10, C{-C} at 10 and one client for latency.
        """
        workloads = {w.name: w for w in plan.defaultWorkloads()}
        self.assertEqual(
            sorted(workloads),
            sorted(
                [
                    "S-simple-c10",
                    "S-simple-c100",
                    "S-ext-c10",
                    "S-ext-c100",
                    "S-prep-c10",
                    "S-prep-c100",
                    "tpcb-c10",
                    "S-simple-c10-C",
                    "S-simple-c1",
                    "S-simple-c10-tls",
                    "S-simple-c100-tls",
                    "S-simple-c10-C-tls",
                    "S-simple-c10-C-authquery",
                ]
            ),
        )
        self.assertEqual(workloads["S-prep-c100"].options, ("-S", "-M", "prepared"))
        self.assertEqual(workloads["S-simple-c10-C"].kind, plan.CONNECT)
        self.assertIn("-C", workloads["S-simple-c10-C"].options)
        self.assertEqual(workloads["S-simple-c1"].clients, 1)
        self.assertEqual(workloads["tpcb-c10"].options, ())
        self.assertEqual(sorted(w.name for w in workloads.values() if w.tls), sorted(
            ["S-simple-c10-tls", "S-simple-c100-tls", "S-simple-c10-C-tls"]
        ))  # fmt: skip

    def test_tlsWorkloadsFollowTheirPlainOnes(self) -> None:
        """
        Each TLS workload varies its plain workload in nothing but TLS (and
        has no multi-worker runs), and comes right after it, so that the
        two run close together in every round.
        """
        names = [w.name for w in plan.defaultWorkloads()]
        workloads = {w.name: w for w in plan.defaultWorkloads()}
        for name in ("S-simple-c10", "S-simple-c100", "S-simple-c10-C"):
            plain, tls = workloads[name], workloads[name + "-tls"]
            self.assertEqual(names.index(tls.name), names.index(plain.name) + 1)
            self.assertEqual(
                (tls.options, tls.clients, tls.kind, tls.pipelines, tls.pgbouncerPipelines),
                (plain.options, plain.clients, plain.kind, plain.pipelines,
                 plain.pgbouncerPipelines),
            )  # fmt: skip
            self.assertFalse(plain.tls)
            self.assertTrue(tls.tls)
            self.assertEqual(tls.workersPipelines, ())
            self.assertEqual(plan.plainName(tls), name)
            self.assertIsNone(plan.plainName(plain))

    def test_authQueryWorkload(self) -> None:
        """
        The auth_query variant of C{-C} comes right after its TLS variant,
        differs from the plain C{-C} only in C{authQuery}, has no
        multi-worker runs, and runs against the two poolers only.
        """
        names = [w.name for w in plan.defaultWorkloads()]
        workloads = {w.name: w for w in plan.defaultWorkloads()}
        plain = workloads["S-simple-c10-C"]
        variant = workloads["S-simple-c10-C-authquery"]
        self.assertEqual(names.index(variant.name), names.index("S-simple-c10-C-tls") + 1)
        self.assertEqual(
            variant,
            Workload(
                "S-simple-c10-C-authquery", plain.options, plain.clients, plain.kind,
                plain.pipelines, plain.pgbouncerPipelines, (), False, True,
            ),
        )  # fmt: skip
        self.assertEqual(plan.plainName(variant), "S-simple-c10-C")
        self.assertTrue(variant.variant)
        self.assertFalse(plain.variant)
        self.assertEqual(plan.targetsFor(variant, 2), [BS, TS, BT, TT])

    def test_withTLS(self) -> None:
        """
        L{plan.withTLS} names the variant C{<name>-tls} and drops the
        multi-worker runs.
        """
        workload = Workload("w", ("-S",), 100, plan.SELECT, workersPipelines=(SESSION,))
        self.assertEqual(
            plan.withTLS(workload),
            Workload("w-tls", ("-S",), 100, plan.SELECT, tls=True),
        )

    def test_tlsTargetsLeaveOutDirect(self) -> None:
        """
        A TLS workload runs against the two poolers only: PostgreSQL is
        measured in plaintext, by the plain workload.
        """
        workload = plan.withTLS(Workload("w", ("-S",), 10, plan.SELECT))
        self.assertEqual(plan.targetsFor(workload, 2), [BS, TS, BT, TT])
        pypy = plan.targetsFor(workload, 1, pypy=True)
        self.assertNotIn(D, pypy)
        self.assertIn(Target(PGTWIST, SESSION, runtime=plan.PYPY), pypy)

    def test_targetsOrder(self) -> None:
        """
        Direct first, then the relay floor (a C{-S} workload), then per
        pipeline PgBouncer and pgtwist.
        """
        workload = Workload("w", ("-S",), 10, plan.SELECT)
        self.assertEqual(plan.targetsFor(workload, 1), [D, F, BS, TS, BT, TT])

    def test_preparedWithoutPgbouncerTransaction(self) -> None:
        """
        PgBouncer 1.18 cannot serve prepared statements in transaction
        mode: that workload runs pgtwist alone there.
        """
        prepared = {w.name: w for w in plan.defaultWorkloads()}["S-prep-c10"]
        self.assertEqual(plan.targetsFor(prepared, 1), [D, F, BS, TS, TT])

    def test_workersTargets(self) -> None:
        """
        With C{workers > 1}, workloads that ask for it get a pgtwist target
        with that many workers after the single-worker one.
        """
        workload = Workload("w", (), 100, plan.SELECT, workersPipelines=(TRANSACTION,))
        targets = plan.targetsFor(workload, 2)
        self.assertEqual(targets, [D, BS, TS, BT, TT, Target(PGTWIST, TRANSACTION, 2)])
        self.assertEqual(targets[-1].name, "pgtwist-w2/transaction")
        self.assertEqual(plan.targetsFor(workload, 1), [D, BS, TS, BT, TT])

    def test_targetNames(self) -> None:
        """
        Names are C{pooler/pipeline}, or C{direct}.
        """
        self.assertEqual(D.name, "direct")
        self.assertEqual(BT.name, "pgbouncer/transaction")

    def test_scheduleInterleavesAndRotates(self) -> None:
        """
        Each round runs every workload's targets back to back; the order of
        targets rotates by one per round.
        """
        first = Workload("a", (), 10, plan.SELECT, pipelines=(SESSION,))
        second = Workload("b", (), 10, plan.SELECT, pipelines=(SESSION,))
        steps = plan.schedule([first, second], 2, 1)
        self.assertEqual(
            [(s.round, s.workload.name, s.target.name) for s in steps],
            [
                (0, "a", "direct"),
                (0, "a", "pgbouncer/session"),
                (0, "a", "pgtwist/session"),
                (0, "b", "direct"),
                (0, "b", "pgbouncer/session"),
                (0, "b", "pgtwist/session"),
                (1, "a", "pgbouncer/session"),
                (1, "a", "pgtwist/session"),
                (1, "a", "direct"),
                (1, "b", "pgbouncer/session"),
                (1, "b", "pgtwist/session"),
                (1, "b", "direct"),
            ],
        )

    def test_rotatedEmpty(self) -> None:
        """
        Rotating nothing gives nothing.
        """
        self.assertEqual(plan.rotated([], 3), [])

    def test_poolSize(self) -> None:
        """
        Transaction pools are 20; session pools grow to the client count,
        since each session client holds its backend.
        """
        many = Workload("w", (), 100, plan.SELECT)
        few = Workload("w", (), 10, plan.SELECT)
        self.assertEqual(plan.poolSize(many, TT), 20)
        self.assertEqual(plan.poolSize(many, BS), 100)
        self.assertEqual(plan.poolSize(few, TS), 20)

    def test_poolSizeWorkers(self) -> None:
        """
        Multi-worker pgtwist gets N session pools, since each worker may
        receive every client; transaction workers share the 20.
        """
        many = Workload("w", (), 100, plan.SELECT)
        self.assertEqual(plan.poolSize(many, Target(PGTWIST, SESSION, 2)), 200)
        self.assertEqual(plan.poolSize(many, Target(PGTWIST, TRANSACTION, 2)), 20)

    def test_threads(self) -> None:
        """
        One pgbench thread per core, never more than clients.
        """
        self.assertEqual(plan.threadsFor(1), 1)
        self.assertEqual(plan.threadsFor(10), 2)
        self.assertEqual(plan.threadsFor(100, cores=4), 4)

    def test_pgbenchArguments(self) -> None:
        """
        The workload's options, then C{-n}, clients, threads, duration and
        the connection.
        """
        workload = Workload("w", ("-S", "-M", "prepared"), 100, plan.SELECT)
        self.assertEqual(
            plan.pgbenchArguments(workload, 5, "127.0.0.1", 20001, "bench", "db"),
            "-S -M prepared -n -c 100 -j 2 -T 5 -h 127.0.0.1 -p 20001 -U bench db".split(),
        )


class ParsingTests(SynchronousTestCase):
    """
    Tests for reading pgbench's report and C{/proc}.
    """

    def test_selectReport(self) -> None:
        """
        TPS, latency, transactions and the initial connection time.
        """
        parsed = results.parsePgbench(SELECT_REPORT)
        self.assertEqual(parsed, results.PgbenchResult(15092.187323, 0.663, 29054, 0, 79.131))

    def test_connectReport(self) -> None:
        """
        With C{-C}, TPS includes reconnections and the connection time is
        the average per connection; failures are counted.
        """
        parsed = results.parsePgbench(CONNECT_REPORT)
        self.assertEqual(parsed, results.PgbenchResult(77.695416, 128.708, 158, 2, 25.25))

    def test_abortedReport(self) -> None:
        """
        A run that never reported raises L{ValueError}.
        """
        self.assertRaises(ValueError, results.parsePgbench, "pgbench: error: connection refused\n")

    def test_cpuTicks(self) -> None:
        """
        utime, stime, cutime and cstime are summed; a command name with
        spaces and parentheses does not shift the fields.
        """
        fields = ["S", "1"] + ["0"] * 9 + ["100", "20", "3", "4"] + ["0"] * 30
        stat = "4242 (twistd (x) y) " + " ".join(fields)
        self.assertEqual(results.parseCpuTicks(stat), 127)

    def test_vmRss(self) -> None:
        """
        C{VmRSS} in KiB, or C{None} when the process has none.
        """
        self.assertEqual(results.parseVmRssKiB("Name:\tx\nVmRSS:\t   56916 kB\n"), 56916)
        self.assertIsNone(results.parseVmRssKiB("Name:\tkthreadd\n"))

    def test_microsPerTransaction(self) -> None:
        """
        Ticks over transactions, in microseconds; C{None} without any.
        """
        self.assertEqual(results.microsPerTransaction(50, 100, 25_000), 20.0)
        self.assertIsNone(results.microsPerTransaction(50, 100, 0))


class RatioTests(SynchronousTestCase):
    """
    Tests for medians and per-round ratios.
    """

    def test_median(self) -> None:
        """
        The median ignores C{None}; nothing gives C{None}.
        """
        self.assertEqual(results.median([3.0, None, 1.0, 2.0]), 2.0)
        self.assertIsNone(results.median([None]))

    def test_roundRatios(self) -> None:
        """
        Ratios pair results of the same round; rounds missing either side,
        or failed, are left out.
        """
        records = [
            record(0, "w", TS, 50.0),
            record(0, "w", BS, 100.0),
            record(1, "w", TS, 90.0),
            record(1, "w", BS, 60.0, error="boom"),
            record(2, "w", TS, 30.0),
            record(2, "w", BS, 40.0),
            record(3, "w", BS, 40.0),
            record(2, "other", BS, 1.0),
        ]
        self.assertEqual(results.roundRatios(records, "w", TS.name, BS.name, "tps"), [0.5, 0.75])

    def test_medianOfRatiosNotRatioOfMedians(self) -> None:
        """
        The reported ratio is the median of per-round ratios, which differs
        from the ratio of the medians when rounds drift.
        """
        records = [
            record(0, "w", D, 100.0),
            record(0, "w", TS, 90.0, cpuMicros=20.0),
            record(0, "w", BS, 100.0, cpuMicros=10.0),
            record(1, "w", D, 200.0),
            record(1, "w", TS, 180.0, cpuMicros=30.0),
            record(1, "w", BS, 120.0, cpuMicros=10.0),
            record(2, "w", D, 50.0),
            record(2, "w", TS, 50.0, cpuMicros=25.0),
            record(2, "w", BS, 50.0, cpuMicros=10.0),
        ]
        workload = Workload("w", (), 10, plan.SELECT, pipelines=(SESSION,))
        rows = results.summarize(records, [workload], {"w": [D, BS, TS]})
        direct, bouncer, twist = rows
        self.assertEqual((direct.tps, direct.vsDirect, direct.vsPgbouncer), (100.0, None, None))
        self.assertEqual(bouncer.vsDirect, 1.0)
        self.assertIsNone(bouncer.vsPgbouncer)
        self.assertEqual(twist.tps, 90.0)
        self.assertEqual(twist.vsPgbouncer, 1.0)  # ratios 0.9, 1.5, 1.0
        self.assertEqual(twist.vsDirect, 0.9)  # ratios 0.9, 0.9, 1.0
        self.assertEqual(twist.cpuMicros, 25.0)
        self.assertEqual(twist.cpuVsPgbouncer, 2.5)
        self.assertEqual(twist.rounds, 3)

    def test_summaryCountsFailures(self) -> None:
        """
        Failed runs are counted and kept out of the medians.
        """
        records = [record(0, "w", D, 10.0), record(1, "w", D, None, error="refused")]
        workload = Workload("w", (), 10, plan.SELECT)
        (row,) = results.summarize(records, [workload], {"w": [D]})
        self.assertEqual((row.rounds, row.failures, row.tps), (1, 1, 10.0))

    def test_addedLatency(self) -> None:
        """
        Per round, the pooler's latency minus direct's; the median of those.
        """
        records = [
            record(0, "c1", D, 1.0, latencyMs=0.10),
            record(0, "c1", BS, 1.0, latencyMs=0.15),
            record(1, "c1", D, 1.0, latencyMs=0.20),
            record(1, "c1", BS, 1.0, latencyMs=0.26),
            record(2, "c1", BS, 1.0, latencyMs=9.0),
        ]
        added = results.addedLatency(records, "c1", BS.name)
        assert added is not None
        self.assertAlmostEqual(added, 0.055)

    def test_latencyTable(self) -> None:
        """
        One line per pipeline of each latency workload, with pgtwist's
        added latency over PgBouncer's.
        """
        records = [
            record(0, "c1", D, 1.0, latencyMs=0.10),
            record(0, "c1", BS, 1.0, latencyMs=0.14),
            record(0, "c1", TS, 1.0, latencyMs=0.16),
        ]
        workloads = [
            Workload("c1", (), 1, plan.LATENCY, pipelines=(SESSION,)),
            Workload("other", (), 10, plan.SELECT),
        ]
        (line,) = results.latencyTable(records, workloads)
        self.assertEqual(line.pipeline, SESSION)
        assert line.ratio is not None
        self.assertAlmostEqual(line.ratio, 1.5)

    def test_latencyRatioUndefined(self) -> None:
        """
        Without a positive PgBouncer latency there is no ratio.
        """
        self.assertIsNone(results.Latencies(SESSION, 0.0, 0.1).ratio)
        self.assertIsNone(results.Latencies(SESSION, None, 0.1).ratio)


class TargetTests(SynchronousTestCase):
    """
    Tests for L{results.checkTargets} and L{results.renderChecks}.
    """

    def rows(self) -> list[results.Row]:
        """
        A select row that passes, a C{-C} row that fails, a TPC-B row (no
        TPS target) and a multi-worker row (never judged).
        """
        return [
            results.Row("s", TS.name, PGTWIST, SESSION, 3, 1, 1, 12.0, 1.05, 0.8, 1.2),
            results.Row("c", TT.name, PGTWIST, TRANSACTION, 3, 1, 1, 90.0, 0.9, 9.0, 1.6),
            results.Row("t", TT.name, PGTWIST, TRANSACTION, 3, 1, 1, 70.0, 0.5, 0.4, 1.0),
            results.Row("s", "pgtwist-w2/session", PGTWIST, SESSION, 3, 1, 1, 9, 0.1, 0.1, 9),
            results.Row("s", BS.name, PGBOUNCER, SESSION, 3, 1, 1, 10.0, None, 0.8, None),
        ]

    def test_checks(self) -> None:
        """
        TPS on select and C{-C} rows, CPU on every pgtwist row PgBouncer
        also ran, added latency per pipeline, and memory.
        """
        workloads = [
            Workload("s", (), 10, plan.SELECT),
            Workload("c", (), 10, plan.CONNECT),
            Workload("t", (), 10, plan.TPCB),
        ]
        latencies = [results.Latencies(SESSION, 0.04, 0.05), results.Latencies(TRANSACTION, 0, 1)]
        checks = results.checkTargets(self.rows(), workloads, latencies, {"pgtwist": 12.5})
        self.assertEqual(
            [(c.name, c.ok) for c in checks],
            [
                ("TPS pgtwist/PgBouncer s session", True),
                ("TPS pgtwist/PgBouncer c transaction", False),
                ("CPU/txn pgtwist/PgBouncer s session", True),
                ("CPU/txn pgtwist/PgBouncer c transaction", False),
                ("CPU/txn pgtwist/PgBouncer t transaction", True),
                ("1-client added latency pgtwist/PgBouncer session", True),
                ("1-client added latency pgtwist/PgBouncer transaction", None),
                ("memory KiB per idle client connection", False),
            ],
        )

    def test_tlsShares(self) -> None:
        """
        For each single-worker pgtwist row of a TLS workload: its C{÷PgB},
        the plain workload's, and the second over the first; C{None} where
        either is missing, and nothing when the plain workload did not run.
        """
        workloads = [
            Workload("s", (), 10, plan.SELECT),
            plan.withTLS(Workload("s", (), 10, plan.SELECT)),
            plan.withTLS(Workload("c", (), 10, plan.CONNECT)),
        ]
        rows = [
            results.Row("s", TS.name, PGTWIST, SESSION, 3, 1, 1, 50.0, 0.80, 0.5, 2.0),
            results.Row("s", TT.name, PGTWIST, TRANSACTION, 3, 1, 1, 50.0, 0.60, 0.5, 2.0),
            results.Row("s-tls", BS.name, PGBOUNCER, SESSION, 3, 1, 1, 40.0, None, None, None),
            results.Row("s-tls", TS.name, PGTWIST, SESSION, 3, 1, 1, 90.0, 0.72, None, 2.2),
            results.Row("s-tls", TT.name, PGTWIST, TRANSACTION, 3, 1, 1, 90.0, 0.48, None, 2.5),
            results.Row("s-tls", "pgtwist-w2/session", PGTWIST, SESSION, 3, 1, 1, 9, 0.9, None, 9),
            results.Row("c-tls", TS.name, PGTWIST, SESSION, 3, 1, 1, 900.0, 0.7, None, 3.0),
        ]
        shares = results.tlsShares(rows, workloads)
        self.assertEqual(
            [(x.workload, x.target, x.plain, x.tls) for x in shares],
            [("s-tls", TS.name, 0.80, 0.72), ("s-tls", TT.name, 0.60, 0.48)],
        )
        self.assertAlmostEqual(shares[0].share or 0, 0.9)
        self.assertAlmostEqual(shares[1].share or 0, 0.8)
        self.assertIsNone(results.TlsShare("s-tls", TS.name, SESSION, None, 0.5).share)
        self.assertIsNone(results.TlsShare("s-tls", TS.name, SESSION, 0.5, None).share)
        checks = results.checkTargets(rows, workloads, [], {})
        self.assertEqual(
            [(c.name, c.ok) for c in checks if c.name.startswith("TLS")],
            [
                ("TLS ÷PgB over plain ÷PgB pgtwist s-tls session", True),
                ("TLS ÷PgB over plain ÷PgB pgtwist s-tls transaction", False),
            ],
        )
        text = results.renderTlsShares(shares)
        self.assertEqual(
            text.splitlines()[3].split(), ["s-tls", "pgtwist/session", "0.80", "0.72", "0.90"]
        )

    def test_authQueryCosts(self) -> None:
        """
        For each single-worker pgtwist row of an auth_query workload: CPU
        per transaction with the vault (the plain workload's row) and with
        auth_query, and their ratio, checked against 1.2.
        """
        workloads = [
            Workload("c", (), 10, plan.CONNECT),
            plan.withAuthQuery(Workload("c", (), 10, plan.CONNECT)),
        ]
        rows = [
            results.Row("c", TS.name, PGTWIST, SESSION, 3, 1, 1, 1000.0, 0.8, 1.5, 4.0),
            results.Row("c", TT.name, PGTWIST, TRANSACTION, 3, 1, 1, 1000.0, 0.8, 1.5, 4.0),
            results.Row("c-authquery", BS.name, PGBOUNCER, SESSION, 3, 1, 1, 300.0),
            results.Row("c-authquery", TS.name, PGTWIST, SESSION, 3, 1, 1, 1100.0, 0.7),
            results.Row("c-authquery", TT.name, PGTWIST, TRANSACTION, 3, 1, 1, 1300.0, 0.7),
        ]
        costs = results.authQueryCosts(rows, workloads)
        self.assertEqual(
            [(x.target, x.vault, x.authQuery) for x in costs],
            [(TS.name, 1000.0, 1100.0), (TT.name, 1000.0, 1300.0)],
        )
        self.assertAlmostEqual(costs[0].ratio or 0, 1.1)
        self.assertIsNone(results.AuthQueryCost("c", TS.name, SESSION, None, 1.0).ratio)
        checks = results.checkTargets(rows, workloads, [], {})
        self.assertEqual(
            [(c.name, c.ok) for c in checks if c.name.startswith("login")],
            [
                ("login CPU auth_query/vault pgtwist c-authquery session", True),
                ("login CPU auth_query/vault pgtwist c-authquery transaction", False),
            ],
        )
        text = results.renderAuthQueryCosts(costs)
        self.assertEqual(
            text.splitlines()[3].split(),
            ["c-authquery", "pgtwist/session", "1000", "1100", "1.10"],
        )

    def test_renderChecks(self) -> None:
        """
        One verdict line per target and a count.
        """
        checks = [
            results.Check("TPS x", 1.05, 1.0, True, atLeast=True),
            results.Check("CPU y", 2.0, 1.5, False),
            results.Check("memory", None, 10.0, None),
        ]
        self.assertEqual(
            results.renderChecks(checks).splitlines(),
            [
                "PASS  TPS x: 1.05 (target ≥ 1)",
                "FAIL  CPU y: 2.00 (target ≤ 1.5)",
                "n/a   memory: - (target ≤ 10)",
                "1 of 3 targets met, 1 missed.",
            ],
        )


class TableTests(SynchronousTestCase):
    """
    Tests for the table rendering.
    """

    def test_formatNumber(self) -> None:
        """
        Decimals below 1000, none above, C{-} for nothing.
        """
        self.assertEqual(results.formatNumber(0.5), "0.50")
        self.assertEqual(results.formatNumber(55476.4, 3), "55476")
        self.assertEqual(results.formatNumber(None, width=3), "  -")

    def test_render(self) -> None:
        """
        A reStructuredText simple table: text columns left, numbers right.
        """
        table = results.Table(["name", "kind", "n"], textColumns=2)
        table.rows.append(["a", "long kind", "1"])
        table.rows.append(["bb", "k", "100"])
        self.assertEqual(
            table.render(),
            "====  =========  ===\n"
            "name  kind         n\n"
            "====  =========  ===\n"
            "a     long kind    1\n"
            "bb    k          100\n"
            "====  =========  ===",
        )

    def test_renderRows(self) -> None:
        """
        The main table has a line per row, with C{n!k} when k runs failed.
        """
        row = results.Row("S-x", TS.name, PGTWIST, SESSION, 2, 1234.5, 0.8, 19.44, 0.9, 0.5, 1.9)
        row.failures = 1
        row.cpuVsFloor = 1.456
        lines = results.renderRows([row]).splitlines()
        self.assertEqual(len(lines), 5)
        self.assertTrue(lines[1].endswith("CPU ÷PgB  CPU ÷floor"), lines[1])
        self.assertEqual(
            lines[3].split(), ["S-x", "pgtwist/session", "2!1", "1234", "0.800", "0.90", "0.50",
                               "19.4", "1.90", "1.46"]
        )  # fmt: skip

    def test_renderLatencies(self) -> None:
        """
        The latency table shows added milliseconds and the ratio.
        """
        text = results.renderLatencies([results.Latencies(SESSION, 0.04, 0.05)])
        self.assertEqual(text.splitlines()[3].split(), ["session", "0.0400", "0.0500", "1.25"])


class ServerConfigurationTests(SynchronousTestCase):
    """
    Tests for the configuration text of the poolers and the C{/proc} walk.
    """

    def test_pgbouncerIni(self) -> None:
        """
        PgBouncer listens on loopback TCP only, with SCRAM from an auth_file
        in its directory, the pool mode and size asked for, and no TLS.
        """
        ini = servers.pgbouncerIni("/d", 20001, 5432, "bench", "transaction", 20)
        lines = ini.splitlines()
        self.assertEqual(
            lines[:2], ["[databases]", "bench = host=127.0.0.1 port=5432 dbname=bench"]
        )
        for line in (
            "listen_addr = 127.0.0.1",
            "listen_port = 20001",
            "unix_socket_dir = ",
            "auth_type = scram-sha-256",
            "auth_file = /d/userlist.txt",
            "pool_mode = transaction",
            "default_pool_size = 20",
            "max_client_conn = 1000",
            "server_tls_sslmode = disable",
            "log_connections = 0",
        ):
            self.assertIn(line, lines)

    def test_pgbouncerIniAuthQuery(self) -> None:
        """
        With C{authUser}, PgBouncer looks clients up with the same query as
        pgtwist's default, run as that role.
        """
        lines = servers.pgbouncerIni(
            "/d", 20001, 5432, "bench", "session", 20, authUser="bench_auth"
        ).splitlines()
        self.assertIn("auth_user = bench_auth", lines)
        self.assertIn(f"auth_query = {servers.AUTH_QUERY}", lines)
        self.assertIn("pg_catalog.pg_authid", servers.AUTH_QUERY)
        plain = servers.pgbouncerIni("/d", 20001, 5432, "bench", "session", 20)
        self.assertNotIn("auth_user", plain)

    def test_pgtwistConfAuthQuery(self) -> None:
        """
        With C{authUser}, pgtwist.conf sets PgBouncer's C{auth_user} key.
        """
        conf = servers.pgtwistConf(20001, 5432, "session", 20, authUser="bench_auth")
        self.assertIn("auth_user = bench_auth", conf.splitlines())
        self.assertNotIn("auth_user", servers.pgtwistConf(20001, 5432, "session", 20))

    def test_pgbouncerIniTLS(self) -> None:
        """
        With C{tls}, PgBouncer demands TLS from clients with the certificate
        and key in its directory, and still speaks plaintext to PostgreSQL.
        """
        lines = servers.pgbouncerIni("/d", 20001, 5432, "bench", "session", 20, tls=True)
        for line in (
            "client_tls_sslmode = require",
            "client_tls_cert_file = /d/server.crt",
            "client_tls_key_file = /d/server.key",
            "server_tls_sslmode = disable",
        ):
            self.assertIn(line, lines.splitlines())
        plain = servers.pgbouncerIni("/d", 20001, 5432, "bench", "session", 20)
        self.assertIn("client_tls_sslmode = disable", plain.splitlines())
        self.assertNotIn("client_tls_key_file", plain)

    def test_pgtwistConfTLSLoads(self) -> None:
        """
        With a TLS directory, the generated pgtwist.conf loads with pgtwist's
        own loader and demands TLS from clients with the certificate and key
        written there (mode 0600), as PgBouncer's C{client_tls_sslmode =
        require} does; the server hop stays plaintext.
        """
        from pgtwist.testing.certs import CertificateAuthority

        directory = temporaryDirectory(self)
        certificate = CertificateAuthority().issue("localhost", ["127.0.0.1"])
        servers._writeCertificate(str(directory), certificate)
        key = directory / servers.TLS_KEY_FILE
        self.assertEqual(key.stat().st_mode & 0o777, 0o600)
        self.assertEqual(key.read_bytes(), certificate.privateKeyPEM)
        conf = directory / "pgtwist.conf"
        hba = directory / "pgtwist_hba.conf"
        conf.write_text(servers.pgtwistConf(20002, 5433, "session", 20, 1, str(directory)))
        hba.write_text(servers.pgtwistHba())
        warnings: list[str] = []
        config = loadConfiguration(str(conf), hbaPath=str(hba), warn=warnings.append)
        self.assertEqual(warnings, [])
        main = config.main
        self.assertEqual(
            (main.tls, main.clientTlsSslmode, main.tlsCertFile, main.tlsKeyFile, main.pipeline),
            (True, "require", str(directory / "server.crt"), str(key), "session"),
        )
        self.assertEqual([s.sslmode for s in config.servers], ["disable"])

    def test_authFile(self) -> None:
        """
        Names and secrets are double-quoted, inner quotes doubled.
        """
        self.assertEqual(
            servers.pgbouncerAuthFile('be"nch', "SCRAM-SHA-256$4096:s$a:b"),
            '"be""nch" "SCRAM-SHA-256$4096:s$a:b"\n',
        )

    def test_pgtwistConfLoads(self) -> None:
        """
        The generated pgtwist.conf and pgtwist_hba.conf load with pgtwist's
        own loader, with the settings asked for.
        """
        directory = temporaryDirectory(self)
        conf = directory / "pgtwist.conf"
        hba = directory / "pgtwist_hba.conf"
        conf.write_text(servers.pgtwistConf(20002, 5433, "transaction", 20, workers=2))
        hba.write_text(servers.pgtwistHba())
        warnings: list[str] = []
        config = loadConfiguration(str(conf), hbaPath=str(hba), warn=warnings.append)
        self.assertEqual(warnings, [])
        main = config.main
        self.assertEqual(
            (main.host, main.port, main.pipeline, main.maxConnections, main.workers),
            ("127.0.0.1", 20002, "transaction", 20, 2),
        )
        self.assertEqual(main.logLevel, "warn")
        self.assertEqual([(s.host, s.port) for s in config.servers], [("127.0.0.1", 5433)])
        self.assertEqual([rule.method for rule in config.hba], ["scram-sha-256"])
        self.assertEqual((main.tls, main.clientTlsSslmode), (False, None))
        self.assertEqual([s.sslmode for s in config.servers], ["disable"])

    def test_pickLowPort(self) -> None:
        """
        Ports come from below the ephemeral range, skipping taken and busy
        ones.
        """
        offered = iter([20005, 20006, 20007])
        port = servers.pickLowPort(
            taken=[20005], isFree=lambda p: p != 20006, choice=lambda ports: next(offered)
        )
        self.assertEqual(port, 20007)
        self.assertLess(max(servers.LOW_PORTS), 32768)

    def test_pickLowPortGivesUp(self) -> None:
        """
        With no free port, L{servers.ServerError}.
        """
        self.assertRaises(
            servers.ServerError, servers.pickLowPort, isFree=lambda p: False, choice=min
        )

    def test_childPids(self) -> None:
        """
        Descendants are found through the parent pid of each C{stat}.
        """
        root = temporaryDirectory(self)
        for pid, parent in ((10, 1), (11, 10), (12, 11), (13, 1), (14, 10)):
            (root / str(pid)).mkdir()
            (root / str(pid) / "stat").write_text(f"{pid} (a b) S {parent} 0 0\n")
        (root / "self").mkdir()
        (root / "15").mkdir()  # vanished before its stat was read
        self.assertEqual(sorted(servers.childPids(10, procRoot=str(root))), [11, 12, 14])

    def test_snapshotCheckout(self) -> None:
        """
        The snapshot holds the pgtwist package, the twistd dropins and the
        relay floor, without bytecode or plugin caches.
        """
        checkout = temporaryDirectory(self)
        (checkout / "pgtwist" / "wire" / "__pycache__").mkdir(parents=True)
        (checkout / "pgtwist" / "__init__.py").write_text("version = 1\n")
        (checkout / "pgtwist" / "wire" / "codec.py").write_text("")
        (checkout / "pgtwist" / "wire" / "__pycache__" / "codec.pyc").write_text("")
        (checkout / "twisted" / "plugins").mkdir(parents=True)
        (checkout / "twisted" / "plugins" / "pgtwist_plugin.py").write_text("")
        (checkout / "twisted" / "plugins" / "dropin.cache").write_text("")
        (checkout / "README.rst").write_text("")
        (checkout / "benchmarks").mkdir()
        for name in ("__init__.py", "floor.py", "run.py"):
            (checkout / "benchmarks" / name).write_text("")
        snapshot = servers.snapshotCheckout(str(checkout))
        self.addCleanup(shutil.rmtree, snapshot, True)
        found = sorted(
            os.path.relpath(os.path.join(path, name), snapshot)
            for path, _, names in os.walk(snapshot)
            for name in names
        )
        self.assertEqual(
            found,
            [
                "benchmarks/__init__.py",
                "benchmarks/floor.py",
                "pgtwist/__init__.py",
                "pgtwist/wire/codec.py",
                "twisted/plugins/pgtwist_plugin.py",
            ],
        )
        (checkout / "pgtwist" / "__init__.py").write_text("version = 2\n")
        with open(os.path.join(snapshot, "pgtwist", "__init__.py")) as f:
            self.assertEqual(f.read(), "version = 1\n")

    def test_pgtwistCommand(self) -> None:
        """
        The console script next to the interpreter when it exists, else the
        script's entry point run by that interpreter.
        """
        directory = temporaryDirectory(self)
        python = str(directory / "python")
        self.assertEqual(
            servers.pgtwistCommand(python),
            [python, "-c", "from pgtwist.app.script import main; main()"],
        )
        script = directory / "pgtwist"
        script.write_text("#!/bin/sh\n")
        os.chmod(script, 0o755)
        self.assertEqual(servers.pgtwistCommand(python), [str(script)])


class FakeLimits:
    """
    C{getrlimit}/C{setrlimit} stand-ins that record what was set.
    """

    def __init__(self, soft: int, hard: int, canRaiseHard: bool) -> None:
        """
        @param canRaiseHard: Whether raising the hard limit is allowed (root).
        """
        self.limits = (soft, hard)
        self.canRaiseHard = canRaiseHard
        self.calls: list[tuple[int, int]] = []

    def get(self, which: int) -> tuple[int, int]:
        """
        The current limits.
        """
        return self.limits

    def set(self, which: int, value: tuple[int, int]) -> None:
        """
        Record C{value}; refuse to raise the hard limit unless allowed.
        """
        if value[1] > self.limits[1] and not self.canRaiseHard:
            raise ValueError("not permitted")
        self.calls.append(value)
        self.limits = value


class FileLimitTests(SynchronousTestCase):
    """
    Tests for L{memory.raiseFileLimit} and L{memory.kibPerConnection}.
    """

    def test_enough(self) -> None:
        """
        Nothing changes when the soft limit already suffices.
        """
        limits = FakeLimits(20000, 20000, canRaiseHard=False)
        self.assertEqual(memory.raiseFileLimit(11000, limits.get, limits.set), 20000)
        self.assertEqual(limits.calls, [])

    def test_raiseSoft(self) -> None:
        """
        The soft limit goes up to what is needed under the hard limit.
        """
        limits = FakeLimits(1024, 20000, canRaiseHard=False)
        self.assertEqual(memory.raiseFileLimit(11000, limits.get, limits.set), 11000)
        self.assertEqual(limits.calls, [(11000, 20000)])

    def test_raiseHard(self) -> None:
        """
        Above the hard limit, both are raised when allowed (root)...
        """
        limits = FakeLimits(1024, 4096, canRaiseHard=True)
        self.assertEqual(memory.raiseFileLimit(11000, limits.get, limits.set), 11000)
        self.assertEqual(limits.calls, [(11000, 11000)])

    def test_hardLimitCaps(self) -> None:
        """
        ... else the soft limit goes as far as the hard one.
        """
        limits = FakeLimits(1024, 4096, canRaiseHard=False)
        self.assertEqual(memory.raiseFileLimit(11000, limits.get, limits.set), 4096)
        self.assertEqual(limits.calls, [(4096, 4096)])

    def test_unlimited(self) -> None:
        """
        An infinite hard limit allows any soft limit.
        """
        infinity = resource.RLIM_INFINITY
        limits = FakeLimits(1024, infinity, canRaiseHard=False)
        self.assertEqual(memory.raiseFileLimit(11000, limits.get, limits.set), 11000)
        self.assertEqual(limits.calls, [(11000, infinity)])

    def test_kibPerConnection(self) -> None:
        """
        RSS growth over the connection count; C{None} for no connections.
        """
        self.assertEqual(memory.kibPerConnection(50_000, 130_000, 10_000), 8.0)
        self.assertIsNone(memory.kibPerConnection(1, 2, 0))


class CommandLineTests(SynchronousTestCase):
    """
    Tests for L{run.parseArguments} and the report helpers.
    """

    def test_fullDefaults(self) -> None:
        """
        A full run: 3 rounds of 5 s at scale 10, 10,000 idle connections,
        and a workers = 2 run.
        """
        options = run.parseArguments([])
        self.assertEqual(
            (options.rounds, options.duration, options.scale, options.connections),
            (3, 5, 10, 10_000),
        )
        self.assertEqual(options.workers, 2)
        self.assertIsNone(options.json)

    def test_quickDefaults(self) -> None:
        """
        C{--quick} shortens what was not given explicitly.
        """
        options = run.parseArguments(["--quick", "--rounds", "2", "--json", "out.json"])
        self.assertEqual(
            (options.rounds, options.duration, options.scale, options.connections),
            (2, 2, 1, 2_000),
        )
        self.assertEqual(options.json, "out.json")

    def test_rejectsZero(self) -> None:
        """
        Rounds, durations and worker counts below 1 are usage errors.
        """
        self.assertRaises(SystemExit, run.parseArguments, ["--rounds", "0"])
        self.assertRaises(SystemExit, run.parseArguments, ["--workers", "0"])

    def test_selectWorkloads(self) -> None:
        """
        C{--only REGEX} keeps the workloads whose name it matches.
        """
        names = [w.name for w in run.selectWorkloads(["prep", "^S-simple-c1$"])]
        self.assertEqual(names, ["S-prep-c10", "S-prep-c100", "S-simple-c1"])
        self.assertEqual(len(run.selectWorkloads([])), 13)
        tls = [w.name for w in run.selectWorkloads(["-tls$"])]
        self.assertEqual(tls, ["S-simple-c10-tls", "S-simple-c100-tls", "S-simple-c10-C-tls"])

    def test_workersNote(self) -> None:
        """
        The report says whether pgtwist ran more than one process for the
        C{workers} rows.
        """
        single = record(0, "w", Target(PGTWIST, SESSION, 2), 10.0)
        note = run.workersNote([single], 2)
        assert note is not None
        self.assertIn("single process", note)
        single.processes = 3
        self.assertEqual(
            run.workersNote([single], 2),
            "workers = 2: pgtwist ran 3 processes (supervisor and workers).",
        )
        self.assertIsNone(run.workersNote([single], 1))
        self.assertEqual(run.workersNote([], 2), "workers = 2: no successful run.")

    def test_describeRecord(self) -> None:
        """
        A progress line per run, with the error when it failed.
        """
        good = record(0, "w", TS, 1234.4, latencyMs=0.81, cpuMicros=19.44)
        good.seconds = 5.3
        self.assertEqual(
            run.describeRecord(3, 9, good),
            "[3/9 r1] w pgtwist/session: 1234 tps, 0.810 ms, 19.4 µs/txn (5.3s)",
        )
        bad = record(1, "w", D, None, error="refused")
        self.assertEqual(run.describeRecord(4, 9, bad), "[4/9 r2] w direct: FAILED (0.0s): refused")

    def test_loadAverage(self) -> None:
        """
        The load average prints as three numbers, or C{?} when unknown.
        """
        self.assertEqual(run._load((1.0, 0.5, 0.25)), "1.00/0.50/0.25")
        self.assertEqual(run._load(None), "?")


class FakeWriter:
    """
    What L{large._run} uses of an C{asyncio.StreamWriter}: each Query, and
    each CopyDone, gets the next of C{replies} fed to C{reader}, as a
    server would answer it.
    """

    def __init__(self, reader: asyncio.StreamReader, replies: list[bytes]) -> None:
        self.reader = reader
        self.replies = replies
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        """
        Keep C{data}; answer a Query or CopyDone.
        """
        self.written += data
        if data[:1] == constants.QUERY or data.endswith(codec.frame(constants.COPY_DONE, b"")):
            self.reader.feed_data(self.replies.pop(0))

    async def drain(self) -> None:
        """
        Nothing to wait for.
        """


class FakeTLSWriter:
    """
    What L{client.startTLS} uses of an C{asyncio.StreamWriter}: it keeps
    what was written and the context C{start_tls} was called with.
    """

    def __init__(self) -> None:
        self.written = bytearray()
        self.contexts: list[object] = []

    def write(self, data: bytes) -> None:
        """
        Keep C{data}.
        """
        self.written += data

    async def start_tls(self, context: object) -> None:
        """
        Keep C{context}.
        """
        self.contexts.append(context)


class ClientTLSTests(SynchronousTestCase):
    """
    Tests for the warm-up client's TLS, L{client.startTLS}.
    """

    def startTLS(self, answer: bytes) -> FakeTLSWriter:
        """
        Run L{client.startTLS} against a server that answers C{answer}.
        """
        writer = FakeTLSWriter()

        async def run() -> None:
            """
            Start TLS on streams made inside the loop.
            """
            reader = asyncio.StreamReader()
            reader.feed_data(answer)
            await client.startTLS(reader, writer)  # type: ignore[arg-type]

        asyncio.run(run())
        return writer

    def test_upgrades(self) -> None:
        """
        An SSLRequest, and on C{S} the upgrade with a context that encrypts
        without checking the certificate (libpq's C{sslmode=require}).
        """
        writer = self.startTLS(b"S")
        self.assertEqual(bytes(writer.written), codec.encode(SSLRequest()))
        [context] = writer.contexts
        assert isinstance(context, ssl.SSLContext)
        self.assertEqual((context.check_hostname, context.verify_mode), (False, ssl.CERT_NONE))

    def test_refused(self) -> None:
        """
        A server that answers C{N} fails the login.
        """
        error = self.assertRaises(client.LoginError, self.startTLS, b"N")
        self.assertIn("b'N'", str(error))


def largeResult(
    pipeline: str, small: float, big: float, growthKiB: int = 0, error: str | None = None
) -> large.LargeResult:
    """
    A L{large.LargeResult} whose every operation took C{small} seconds at
    16 MiB and C{big} at 64 MiB.
    """
    seconds = {}
    for operation in large.OPERATIONS:
        seconds[operation, large.SIZES[0]] = small
        seconds[operation, large.SIZES[1]] = big
    return large.LargeResult(pipeline, seconds, 70_000, 70_000 + growthKiB, error)


class LargeMessageTests(SynchronousTestCase):
    """
    Tests for L{large}: the verdicts of the large-message step.
    """

    def test_parseVmHwm(self) -> None:
        """
        C{VmHWM} is read from C{/proc/PID/status}, in KiB.
        """
        status = "Name:\tpgtwist\nVmPeak:\t  300000 kB\nVmHWM:\t   71804 kB\nVmRSS:\t 1 kB\n"
        self.assertEqual(large.parseVmHwmKiB(status), 71804)
        self.assertIsNone(large.parseVmHwmKiB("Name:\tzombie\n"))

    def test_peakOfMissingProcess(self) -> None:
        """
        A process that is gone reads as 0.
        """
        self.assertEqual(large.peakKiB(2**22 + 12345), 0)

    def test_repeats(self) -> None:
        """
        Twice with C{--quick}, else at least three times.
        """
        self.assertEqual(large.repeatsFor(True, 1), 2)
        self.assertEqual(large.repeatsFor(False, 3), 3)
        self.assertEqual(large.repeatsFor(False, 5), 5)
        self.assertEqual(large.repeatsFor(False, 1), 3)

    def test_growth(self) -> None:
        """
        The growth is in MiB, and unknown when the step failed.
        """
        self.assertEqual(largeResult("session", 1, 4, growthKiB=2048).growthMiB, 2.0)
        self.assertIsNone(largeResult("session", 1, 4, error="boom").growthMiB)

    def test_checks(self) -> None:
        """
        Per pipeline: RSS growth under 8 MiB, 64 MiB time at most 4.5
        times the 16 MiB time and each operation and size against direct
        (L{test_checksAgainstDirect}); per operation and size, transaction
        at most 1.2 times session. Direct itself is not judged.
        """
        checks = large.checkLarge(
            [
                largeResult(large.DIRECT, 1.0, 9.0),
                largeResult("session", 1.0, 4.0, growthKiB=100),
                largeResult("transaction", 1.1, 5.0, growthKiB=8 * 1024),
                largeResult("performance", 1.0, 4.5),
            ]
        )
        verdicts = {check.name: check.ok for check in checks}
        self.assertEqual(len(checks), 3 * (1 + 3 + 2 * 3) + 2 * 3)
        self.assertTrue(verdicts["large messages, session: peak RSS growth MiB (< 8)"])
        self.assertFalse(verdicts["large messages, transaction: peak RSS growth MiB (< 8)"])
        self.assertTrue(verdicts["large messages, performance select: 64 MiB time / 16 MiB time"])
        self.assertFalse(verdicts["large messages, transaction copy-in: 64 MiB time / 16 MiB time"])
        self.assertTrue(verdicts["large messages, select 16 MiB: transaction / session time"])
        self.assertFalse(verdicts["large messages, copy-out 64 MiB: transaction / session time"])
        self.assertFalse(any(name.startswith("large messages, direct") for name in verdicts))

    def test_checksAgainstDirect(self) -> None:
        """
        Each pipeline's time for every operation and size is at most 1.1
        times direct's; without a direct run there is no such check.
        """
        checks = large.checkLarge(
            [
                largeResult(large.DIRECT, 1.0, 4.0),
                largeResult("session", 1.1, 4.0),
                largeResult("transaction", 1.0, 4.5),
            ]
        )
        verdicts = {c.name: (c.ok, c.value) for c in checks if c.name.endswith("direct time")}
        self.assertEqual(len(verdicts), 2 * 2 * 3)
        self.assertEqual(
            verdicts["large messages, session select 16 MiB: time / direct time"], (True, 1.1)
        )
        self.assertEqual(
            verdicts["large messages, transaction copy-in 64 MiB: time / direct time"],
            (False, 1.125),
        )
        self.assertEqual(
            verdicts["large messages, transaction copy-out 16 MiB: time / direct time"],
            (True, 1.0),
        )
        alone = large.checkLarge([largeResult("session", 1.0, 4.0)])
        self.assertFalse(any(c.name.endswith("direct time") for c in alone))

    def test_checksAgainstMissingDirect(self) -> None:
        """
        An operation direct has no time for is C{n/a}.
        """
        direct = large.LargeResult(large.DIRECT, error="refused")
        checks = large.checkLarge([direct, largeResult("session", 1.0, 4.0)])
        against = [c for c in checks if c.name.endswith("direct time")]
        self.assertEqual(len(against), 6)
        self.assertEqual({c.ok for c in against}, {None})

    def test_checksUnmeasured(self) -> None:
        """
        A failed pipeline's checks are C{n/a}; without both session and
        transaction, no comparison is made.
        """
        checks = large.checkLarge([largeResult("transaction", 1, 4, error="boom")])
        self.assertEqual(len(checks), 1 + 3)
        self.assertEqual(checks[0].ok, None)
        broken = large.LargeResult("session")
        self.assertEqual({c.ok for c in large.checkLarge([broken])[1:]}, {None})

    def test_render(self) -> None:
        """
        One line per target with each operation's times and ratio, and
        pgtwist's peak RSS; a failure says why.
        """
        text = large.renderLarge(
            [
                largeResult(large.DIRECT, 0.5, 2.0),
                largeResult("session", 0.25, 1.0, growthKiB=4),
                largeResult("transaction", 0, 0, error="refused"),
            ]
        )
        lines = text.splitlines()
        self.assertEqual(
            lines[0],
            "Large messages, direct, 16 MiB/64 MiB: select 0.50s/2.00s (x4.00), "
            "copy-out 0.50s/2.00s (x4.00), copy-in 0.50s/2.00s (x4.00).",
        )
        self.assertTrue(lines[1].endswith("; peak RSS 70000 -> 70004 KiB."), lines[1])
        self.assertEqual(lines[2], "Large messages, pgtwist/transaction: failed: refused")

    def test_copyInOverFakeStreams(self) -> None:
        """
        C{copy-in} truncates the table, waits for CopyInResponse, sends one
        CopyData of the size asked in pieces and CopyDone, and returns at
        ReadyForQuery; an error before it is raised.
        """
        replies = [
            codec.encodeAll([CommandComplete("TRUNCATE TABLE"), ReadyForQuery()]),
            codec.frame(constants.COPY_IN_RESPONSE, b"\x00\x00\x01\x00\x00"),
            codec.encodeAll([CommandComplete("COPY 1"), ReadyForQuery()]),
        ]
        size = 3 * large.MIB + 5
        sent, returned = asyncio.run(self.operation(replies, large.COPY_IN, size))
        self.assertEqual(returned, size)
        frames = MessageFramer().feed(sent)
        self.assertEqual([f.type for f in frames], [b"Q", b"Q", b"d", b"c"])
        self.assertEqual(frames[2].body, b"z" * size + b"\n")
        failed = [codec.encodeAll([errors.error("42P01", "no such table"), ReadyForQuery()])]
        with self.assertRaises(client.LoginError):
            asyncio.run(self.operation(failed, large.SELECT, 10))

    def test_selectOverFakeStreams(self) -> None:
        """
        C{select} returns the bytes that came back, a whole DataRow of them.
        """
        replies = [codec.encodeAll([DataRow((b"x" * 1000,)), ReadyForQuery()])]
        sent, returned = asyncio.run(self.operation(replies, large.SELECT, 1000))
        self.assertGreater(returned, 1000)
        self.assertEqual(sent, codec.encode(Query("SELECT repeat('x', 1000)")))

    async def operation(self, replies: list[bytes], operation: str, size: int) -> tuple[bytes, int]:
        """
        Run L{large._run} against a server that answers with C{replies};
        return what it sent and what it returned.
        """
        reader = asyncio.StreamReader()
        writer = FakeWriter(reader, replies)
        returned = await large._run(reader, writer, operation, size)  # type: ignore[arg-type]
        return bytes(writer.written), returned

    def test_skipLarge(self) -> None:
        """
        C{--skip-large} leaves the step out; it runs by default.
        """
        self.assertFalse(run.parseArguments([]).skip_large)
        self.assertTrue(run.parseArguments(["--quick", "--skip-large"]).skip_large)
