"""
Tests for the relay floor of C{make bench} (issue 15): the empty relay
itself (L{benchmarks.floor}), its place in the schedule, the C{CPU ÷floor}
column, the verdicts against it, and how the report shows them.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from benchmarks import floor, plan, results, run, servers
from benchmarks.plan import (
    FLOOR,
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

F = Target(FLOOR)
FP = Target(FLOOR, runtime=PYPY)
TS = Target(PGTWIST, SESSION)
TT = Target(PGTWIST, TRANSACTION)
PT = Target(PGTWIST, TRANSACTION, runtime=PYPY)
BT = Target(PGBOUNCER, TRANSACTION)


class _SocketTransport(StringTransport):
    """
    A L{StringTransport} with the socket options and the producer calls a
    TCP transport has, recording them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.options: list[tuple[str, bool]] = []
        self.paused = 0
        self.resumed = 0

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.options.append(("nodelay", enabled))

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.options.append(("keepalive", enabled))

    def pauseProducing(self) -> None:
        self.paused += 1

    def resumeProducing(self) -> None:
        self.resumed += 1


class FloorRelayTests(SynchronousTestCase):
    """
    Tests for L{floor}: one PostgreSQL connection per client, bytes copied
    both ways unchanged, closes passed on.
    """

    def connect(self) -> tuple[MemoryReactor, floor.ClientHalf, _SocketTransport]:
        """
        A client accepted by a L{floor.FloorFactory} for port 5432.
        """
        reactor = MemoryReactor()
        client = floor.FloorFactory(reactor, 5432).buildProtocol(None)
        transport = _SocketTransport()
        client.makeConnection(transport)
        return reactor, client, transport

    def pair(self) -> tuple[Any, _SocketTransport, Any, _SocketTransport]:
        """
        A client and its connected PostgreSQL side, with their transports.
        """
        reactor, client, clientTransport = self.connect()
        factory = reactor.tcpClients[0][2]
        server = factory.buildProtocol(None)
        serverTransport = _SocketTransport()
        server.makeConnection(serverTransport)
        return client, clientTransport, server, serverTransport

    def test_connectsPerClient(self) -> None:
        """
        An accepted client is paused (nothing read before PostgreSQL's
        side is there), gets C{TCP_NODELAY} and keepalive as pgtwist's
        clients do, and causes one connection to the target.
        """
        reactor, client, transport = self.connect()
        self.assertEqual(transport.paused, 1)
        self.assertEqual(transport.options, [("nodelay", True), ("keepalive", True)])
        self.assertEqual([c[:2] for c in reactor.tcpClients], [("127.0.0.1", 5432)])

    def test_relaysBothWays(self) -> None:
        """
        Once PostgreSQL's side connects, the client is resumed and bytes go
        through unchanged both ways; each transport is the other's
        streaming producer.
        """
        client, clientTransport, server, serverTransport = self.pair()
        self.assertEqual(clientTransport.resumed, 1)
        self.assertEqual(serverTransport.options, [("nodelay", True)])
        self.assertIs(clientTransport.producer, serverTransport)
        self.assertIs(serverTransport.producer, clientTransport)
        self.assertTrue(clientTransport.streaming)
        client.dataReceived(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
        server.dataReceived(b"N")
        self.assertEqual(serverTransport.value(), b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
        self.assertEqual(clientTransport.value(), b"N")

    def test_clientCloses(self) -> None:
        """
        A client that disconnects closes its PostgreSQL side, and the
        other way round.
        """
        client, clientTransport, server, serverTransport = self.pair()
        client.connectionLost(None)
        self.assertTrue(serverTransport.disconnecting)
        client, clientTransport, server, serverTransport = self.pair()
        server.connectionLost(None)
        self.assertTrue(clientTransport.disconnecting)

    def test_clientGoneBeforeServer(self) -> None:
        """
        A client that left before PostgreSQL's side connected gets that
        side closed at once, unpaired.
        """
        reactor, client, clientTransport = self.connect()
        client.connectionLost(None)
        server = reactor.tcpClients[0][2].buildProtocol(None)
        serverTransport = _SocketTransport()
        server.makeConnection(serverTransport)
        self.assertTrue(serverTransport.disconnecting)
        self.assertIsNone(server.peer)
        self.assertEqual(clientTransport.resumed, 0)

    def test_serverRefused(self) -> None:
        """
        When PostgreSQL refuses, the client is closed.
        """
        reactor, client, transport = self.connect()
        reactor.tcpClients[0][2].clientConnectionFailed(None, None)
        self.assertTrue(transport.disconnecting)

    def test_arguments(self) -> None:
        """
        C{--listen} and C{--target} are required ports.
        """
        options = floor.parseArguments(["--listen", "20001", "--target", "5432"])
        self.assertEqual((options.listen, options.target, options.host), (20001, 5432, "127.0.0.1"))
        self.assertRaises(SystemExit, floor.parseArguments, ["--listen", "20001"])

    def test_snapshotHasTheFloor(self) -> None:
        """
        What the harness copies for the floor is what the floor imports
        from C{benchmarks/}: the package and the module, nothing else.
        """
        here = os.path.dirname(os.path.abspath(floor.__file__))
        self.assertEqual(servers.FLOOR_FILES, ("__init__.py", "floor.py"))
        for name in servers.FLOOR_FILES:
            self.assertTrue(os.path.exists(os.path.join(here, name)))


class FloorPlanTests(SynchronousTestCase):
    """
    Where the floor runs: once per C{-S} workload and round, on each runtime.
    """

    def test_names(self) -> None:
        """
        The floor has no pipeline: C{floor}, C{floor-pypy}.
        """
        self.assertEqual(F.name, "floor")
        self.assertEqual(FP.name, "floor-pypy")
        self.assertEqual(Target(plan.DIRECT).name, "direct")

    def test_workloads(self) -> None:
        """
        Every plain C{-S} workload has the floor (C{-C} and one client
        too); TPC-B and the TLS and auth_query variants do not.
        """
        found = {w.name for w in plan.defaultWorkloads() if w.floor}
        self.assertEqual(
            found,
            {
                "S-simple-c10",
                "S-simple-c100",
                "S-ext-c10",
                "S-ext-c100",
                "S-prep-c10",
                "S-prep-c100",
                "S-simple-c10-C",
                "S-simple-c1",
            },
        )

    def test_targets(self) -> None:
        """
        The floor runs after direct, on PyPy too with C{pypy}; not for a
        workload without C{-S}.
        """
        workload = Workload("w", ("-S",), 10, plan.SELECT, pipelines=(SESSION,))
        targets = plan.targetsFor(workload, 1, pypy=True)
        self.assertEqual(targets[:3], [Target(plan.DIRECT), F, FP])
        self.assertEqual(plan.targetsFor(workload, 1)[:2], [Target(plan.DIRECT), F])
        tpcb = Workload("t", (), 10, plan.TPCB)
        self.assertNotIn(F, plan.targetsFor(tpcb, 1, pypy=True))

    def test_queryMode(self) -> None:
        """
        The C{-M} value, or C{None} without one.
        """
        modes = {w.name: plan.queryMode(w) for w in plan.defaultWorkloads()}
        self.assertEqual(modes["S-ext-c100"], "extended")
        self.assertEqual(modes["S-simple-c10-C"], "simple")
        self.assertIsNone(modes["tpcb-c10"])


class FloorRatioTests(SynchronousTestCase):
    """
    The C{CPU ÷floor} column: per round, pgtwist's CPU per transaction over
    the floor's on the same runtime, median.
    """

    def test_floorFor(self) -> None:
        """
        PyPy rows against the PyPy floor; CPython and uvloop rows against
        CPython's.
        """
        self.assertEqual(results.floorFor(TT), F)
        self.assertEqual(results.floorFor(PT), FP)
        self.assertEqual(results.floorFor(Target(PGTWIST, SESSION, runtime=UVLOOP)), F)
        self.assertEqual(results.floorFor(Target(PGTWIST, SESSION, 2)), F)

    def test_summarize(self) -> None:
        """
        Each pgtwist row's ratio uses only rounds in which its floor ran;
        other rows have none.
        """
        records = [
            record(0, "s", F, 100, cpuMicros=10.0),
            record(0, "s", FP, 100, cpuMicros=4.0),
            record(0, "s", TT, 100, cpuMicros=20.0),
            record(0, "s", PT, 100, cpuMicros=6.0),
            record(1, "s", F, 100, cpuMicros=8.0),
            record(1, "s", FP, 100, error="refused"),
            record(1, "s", TT, 100, cpuMicros=12.0),
            record(1, "s", PT, 100, cpuMicros=8.0),
            record(2, "s", TT, 100, cpuMicros=99.0),
        ]
        workload = Workload("s", ("-S",), 10, plan.SELECT, pipelines=(TRANSACTION,))
        targets = {"s": plan.targetsFor(workload, 1, pypy=True)}
        rows = {row.target: row for row in results.summarize(records, [workload], targets)}
        self.assertEqual(rows["pgtwist/transaction"].cpuVsFloor, (2.0 + 1.5) / 2)
        self.assertEqual(rows["pgtwist-pypy/transaction"].cpuVsFloor, 1.5)
        self.assertIsNone(rows["floor"].cpuVsFloor)
        self.assertIsNone(rows["floor-pypy"].cpuVsFloor)
        self.assertEqual(rows["floor"].cpuMicros, 9.0)
        self.assertEqual(rows["floor-pypy"].failures, 1)


def _row(
    workload: str,
    target: Target,
    vsPgbouncer: float | None = None,
    cpuVsFloor: float | None = None,
) -> results.Row:
    """
    A pgtwist row with the two ratios the floor verdicts read.
    """
    row = results.Row(workload, target.name, target.pooler, target.pipeline, 3, 1.0, 1.0, 10.0)
    row.vsPgbouncer = vsPgbouncer
    row.cpuVsFloor = cpuVsFloor
    return row


class FloorTargetTests(SynchronousTestCase):
    """
    Tests for L{results.checkFloorTargets}: issue 15's targets.
    """

    workloads = [
        Workload("S-simple-c10", ("-S", "-M", "simple"), 10, plan.SELECT),
        Workload("S-ext-c10", ("-S", "-M", "extended"), 10, plan.SELECT),
        Workload("S-prep-c10", ("-S", "-M", "prepared"), 10, plan.SELECT),
        Workload("tpcb-c10", (), 10, plan.TPCB),
        Workload("S-simple-c10-C", ("-S", "-M", "simple", "-C"), 10, plan.CONNECT),
    ]

    def verdicts(self, rows: list[results.Row]) -> list[tuple[str, float, bool | None]]:
        """
        Name, limit and verdict of each check, in order.
        """
        return [(c.name, c.limit, c.ok) for c in results.checkFloorTargets(rows, self.workloads)]

    def test_cpuAgainstFloor(self) -> None:
        """
        CPU ÷floor at most 1.5 in transaction pooling and 1.2 in session
        pooling, on select-only rows of either runtime; not on TPC-B or
        C{-C}, nor for multi-worker rows.
        """
        rows = [
            _row("S-simple-c10", TS, cpuVsFloor=1.2),
            _row("S-simple-c10", TT, cpuVsFloor=1.51),
            _row("S-ext-c10", PT, cpuVsFloor=1.5),
            _row("S-prep-c10", Target(PGTWIST, SESSION, runtime=PYPY), cpuVsFloor=1.3),
            _row("tpcb-c10", TT, cpuVsFloor=5.0),
            _row("S-simple-c10-C", TT, cpuVsFloor=50.0),
            _row("S-simple-c10", Target(PGTWIST, TRANSACTION, 2), cpuVsFloor=9.0),
        ]
        self.assertEqual(
            self.verdicts(rows),
            [
                ("CPU/txn pgtwist/floor S-simple-c10 session", 1.2, True),
                ("CPU/txn pgtwist/floor S-simple-c10 transaction", 1.5, False),
                ("CPU/txn pgtwist-pypy/floor S-ext-c10 transaction", 1.5, True),
                ("CPU/txn pgtwist-pypy/floor S-prep-c10 session", 1.2, False),
            ],
        )

    def test_pypyThroughput(self) -> None:
        """
        On PyPy, TPS at least 0.95 of PgBouncer's on every select-only
        workload in both pipelines.
        """
        rows = [
            _row("S-simple-c10", Target(PGTWIST, SESSION, runtime=PYPY), vsPgbouncer=0.95),
            _row("S-ext-c10", PT, vsPgbouncer=0.94),
            _row("S-simple-c10-C", PT, vsPgbouncer=0.5),
        ]
        self.assertEqual(
            self.verdicts(rows),
            [
                ("TPS pgtwist-pypy/PgBouncer S-simple-c10 session", 0.95, True),
                ("TPS pgtwist-pypy/PgBouncer S-ext-c10 transaction", 0.95, False),
            ],
        )

    def test_cpythonThroughput(self) -> None:
        """
        On CPython, in transaction pooling, TPS at least 0.75 of
        PgBouncer's with the simple protocol and 0.70 with the extended
        one; session pooling and prepared statements have no such target.
        """
        rows = [
            _row("S-simple-c10", TT, vsPgbouncer=0.74),
            _row("S-ext-c10", TT, vsPgbouncer=0.70),
            _row("S-prep-c10", TT, vsPgbouncer=0.1),
            _row("S-simple-c10", TS, vsPgbouncer=0.1),
        ]
        self.assertEqual(
            self.verdicts(rows),
            [
                ("TPS pgtwist/PgBouncer S-simple-c10 transaction", 0.75, False),
                ("TPS pgtwist/PgBouncer S-ext-c10 transaction", 0.70, True),
            ],
        )

    def test_unmeasured(self) -> None:
        """
        A row without the ratio (its floor or PgBouncer failed) has no
        verdict.
        """
        self.assertEqual(self.verdicts([_row("S-simple-c10", TT), _row("S-ext-c10", PT)]), [])


class FloorReportTests(SynchronousTestCase):
    """
    The report shows the floor rows, the column and the floor verdicts.
    """

    def test_report(self) -> None:
        """
        The floor verdicts come after the others, under their own heading,
        and in the JSON under C{floorTargets}.
        """
        bench = run.Bench(run.parseArguments(["--no-pypy", "--workers", "1"]))
        workload = Workload("S-simple-c10", ("-S", "-M", "simple"), 10, plan.SELECT)
        bench.records = [
            record(0, workload.name, Target(plan.DIRECT), 200, 0.5),
            record(0, workload.name, F, 150, 0.6, 10.0),
            record(0, workload.name, Target(PGBOUNCER, SESSION), 140, 0.6, 9.0),
            record(0, workload.name, TS, 120, 0.7, 11.0),
            record(0, workload.name, BT, 140, 0.6, 9.0),
            record(0, workload.name, TT, 100, 0.8, 20.0),
        ]
        meta = dict.fromkeys(
            ["date", "nproc", "cpu", "postgresql", "pgbouncer", "python", "twisted", "pgtwist"], "?"
        )
        text, document = run.report(bench, [workload], meta)
        lines = text.splitlines()
        self.assertTrue(any(line.split()[:2] == ["S-simple-c10", "floor"] for line in lines))
        self.assertIn("pgtwist/transaction", text)
        heading = lines.index("Against the relay floor (issue 15):")
        self.assertEqual(
            lines[heading + 1 : heading + 4],
            [
                "PASS  CPU/txn pgtwist/floor S-simple-c10 session: 1.10 (target ≤ 1.2)",
                "FAIL  CPU/txn pgtwist/floor S-simple-c10 transaction: 2.00 (target ≤ 1.5)",
                "FAIL  TPS pgtwist/PgBouncer S-simple-c10 transaction: 0.71 (target ≥ 0.75)",
            ],
        )
        self.assertEqual(len(document["floorTargets"]), 3)
        self.assertEqual(document["floorTargets"][2]["limit"], 0.75)
        self.assertFalse(document["floorTargets"][2]["ok"])
