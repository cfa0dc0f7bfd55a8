"""
Tests for L{benchmarks.soak}'s pure parts: the fault schedule, the state
check every transaction starts with, the error rules and the record.
"""

from __future__ import annotations

import asyncpg
import psycopg
from twisted.trial.unittest import SynchronousTestCase

from benchmarks import soak
from benchmarks.client import LoginError


def stateRow(
    xid: str | None = None,
    startedAt: float = 100.0,
    applicationName: str = "soak-c_g1",
    sentinel: str | None = "c_g1",
    prepared: str | None = None,
    temporary: str | None = None,
) -> tuple[object, ...]:
    """
    An answer to L{soak.CHECK_SQL}, fine for client C{c_g1} in session
    pooling unless told otherwise.
    """
    return (4242, xid, startedAt, applicationName, sentinel, prepared, temporary)


class ScheduleTests(SynchronousTestCase):
    """
    Tests for L{soak.faultSchedule}.
    """

    def test_seeded(self) -> None:
        """
        The same seed gives the same schedule; another seed another order.
        """
        self.assertEqual(soak.faultSchedule(7, 10, 100, 4), soak.faultSchedule(7, 10, 100, 4))
        self.assertNotEqual(soak.faultSchedule(7, 10, 100, 4), soak.faultSchedule(8, 10, 100, 4))

    def test_everyKindEachCycle(self) -> None:
        """
        Each cycle of L{soak.FAULTS} holds every kind once, all within the
        bounds given, in time order.
        """
        schedule = soak.faultSchedule(3, 10, 1000, 4)
        cycle = len(soak.FAULTS)
        self.assertEqual(sorted(k for _, k in schedule[:cycle]), sorted(soak.FAULTS))
        self.assertEqual(sorted(k for _, k in schedule[cycle : 2 * cycle]), sorted(soak.FAULTS))
        times = [at for at, _ in schedule]
        self.assertEqual(times, sorted(times))
        self.assertEqual(times[0], 10)
        self.assertLess(times[-1], 1000)

    def test_oneMinuteHasEveryKind(self) -> None:
        """
        The one-minute run of the test suite injects every kind of fault.
        """
        schedule = soak.faultSchedule(20261203, 8.0, 52.0, 4.0)
        self.assertEqual({kind for _, kind in schedule}, set(soak.FAULTS))


class WithFailoverTests(SynchronousTestCase):
    """
    Tests for L{soak.withFailover}.
    """

    def test_onceInTheMiddle(self) -> None:
        """
        One failover comes halfway through the schedule, between two faults,
        the schedule otherwise unchanged and still in time order.
        """
        schedule = soak.faultSchedule(20261203, 8.0, 52.0, 4.0)
        withIt = soak.withFailover(schedule)
        self.assertEqual([kind for _, kind in withIt].count(soak.FAILOVER), 1)
        self.assertEqual([entry for entry in withIt if entry[1] != soak.FAILOVER], schedule)
        times = [at for at, _ in withIt]
        self.assertEqual(times, sorted(times))
        at = times[[kind for _, kind in withIt].index(soak.FAILOVER)]
        self.assertTrue(20 < at < 40, at)

    def test_empty(self) -> None:
        """
        A run too short for faults has no failover either.
        """
        self.assertEqual(soak.withFailover([]), [])


class CheckStateTests(SynchronousTestCase):
    """
    Tests for L{soak.checkState}.
    """

    def test_clean(self) -> None:
        """
        A backend outside any transaction showing the client's own state
        is fine, also with its own prepared statement and temporary table.
        """
        self.assertIsNone(soak.checkState(stateRow(), "c_g1", "session", 100.2))
        row = stateRow(prepared="soak_c_g1", temporary="soak_tmp_c_g1")
        self.assertIsNone(soak.checkState(row, "c_g1", "performance", 100.2))

    def test_insideTransaction(self) -> None:
        """
        An assigned transaction id, or a transaction begun before the
        client's BEGIN, is a backend handed out inside a transaction.
        """
        problem = soak.checkState(stateRow(xid="771"), "c_g1", "session", 100.0)
        self.assertIn("inside a transaction", problem or "")
        problem = soak.checkState(stateRow(startedAt=90.0), "c_g1", "session", 100.0)
        self.assertIn("inside a transaction", problem or "")

    def test_anotherClientsState(self) -> None:
        """
        Another client's application_name, sentinel, prepared statement or
        temporary table is reported.
        """
        for row in (
            stateRow(applicationName="soak-d_g1"),
            stateRow(sentinel="d_g1"),
            stateRow(prepared="soak_c_g1,soak_d_g1"),
            stateRow(temporary="soak_tmp_d_g1"),
        ):
            self.assertIsNotNone(soak.checkState(row, "c_g1", "session", 100.0), row)

    def test_transactionPooling(self) -> None:
        """
        In transaction pooling the sentinel is set per transaction: at the
        start it must be unset (or reset), never anybody's value.
        """
        for sentinel in (None, ""):
            row = stateRow(sentinel=sentinel)
            self.assertIsNone(soak.checkState(row, "c_g1", "transaction", 100.0))
        row = stateRow(sentinel="c_g1")
        self.assertIsNotNone(soak.checkState(row, "c_g1", "transaction", 100.0))


class ErrorRuleTests(SynchronousTestCase):
    """
    Tests for L{soak.sqlstateOf}, L{soak.allowedError} and
    L{soak.Recorder.error}.
    """

    def test_sqlstates(self) -> None:
        """
        A driver error's SQLSTATE is used; a broken connection without one
        is C{conn-lost}; anything else is named by its type.
        """
        self.assertEqual(soak.sqlstateOf(psycopg.errors.AdminShutdown("x")), "57P01")
        self.assertEqual(soak.sqlstateOf(psycopg.OperationalError("gone")), "conn-lost")
        self.assertEqual(soak.sqlstateOf(LoginError("57P03 the database is starting")), "57P03")
        self.assertEqual(soak.sqlstateOf(ConnectionResetError()), "conn-lost")
        self.assertEqual(
            soak.sqlstateOf(psycopg.OperationalError("connection pool exhausted: ...")), "53300"
        )
        self.assertEqual(soak.sqlstateOf(KeyError("x")), "KeyError")
        busy = asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is")
        self.assertEqual(soak.sqlstateOf(busy), "conn-lost")

    def test_allowed(self) -> None:
        """
        Connection exceptions, shutdowns and serialization failures are
        allowed; protocol violations, internal errors and syntax errors
        are not.
        """
        for state in ("08006", "08000", "57P01", "57P03", "40001", "conn-lost", "53300"):
            self.assertTrue(soak.allowedError(state), state)
        for state in ("XX000", "42601", "25P02", "08P01", "KeyError"):
            self.assertFalse(soak.allowedError(state), state)

    def recorder(self) -> tuple[soak.Recorder, list[float]]:
        """
        A recorder on a fake clock at 0, and the list its clock reads.
        """
        now = [0.0]
        recorder = soak.Recorder(1, clock=lambda: now[0], sleep=lambda s: None, started=0.0)
        return recorder, now

    def test_commitsRememberTheirServer(self) -> None:
        """
        Committed rows are kept with the server they were committed on,
        for the ledger check after a failover; without one, only the rows.
        """
        recorder, _ = self.recorder()
        recorder.commit("db", [("c", 1), ("c", 2)], 5432)
        recorder.commit("db", [("c", 3)])
        self.assertEqual(recorder.committed["db"], {("c", 1), ("c", 2), ("c", 3)})
        self.assertEqual(recorder.committedOn, {("db", "c", 1): 5432, ("db", "c", 2): 5432})

    def test_errorAroundFault(self) -> None:
        """
        An allowed error in an operation overlapping a fault, or during
        one still going on, is counted and is no breach.
        """
        recorder, now = self.recorder()
        now[0] = 10.0
        with recorder.fault("net-reset"):
            now[0] = 12.0
            recorder.error("c", None, "08006", "reset", 11.0)
            now[0] = 13.0
        now[0] = 13.0 + soak.AFTER_FAULT - 0.1
        recorder.error("c", None, "57P01", "late", now[0] - 0.1)
        self.assertEqual(recorder.errors, {"08006": 1, "57P01": 1})
        self.assertEqual(recorder.breaches, [])

    def test_errorAwayFromFaults(self) -> None:
        """
        An error far from every fault, or with an undocumented SQLSTATE,
        is a breach naming the client and backend.
        """
        recorder, now = self.recorder()
        with recorder.fault("terminate"):
            now[0] = 1.0
        now[0] = 30.0
        recorder.error("c", 77, "08006", "reset", 29.0)
        recorder.error("d", None, "XX000", "internal", 29.5)
        self.assertEqual([b.client for b in recorder.breaches], ["c", "d"])
        self.assertIn("away from any fault", recorder.breaches[0].what)
        self.assertIn("undocumented", recorder.breaches[1].what)
        self.assertIn("backend=77", recorder.breaches[0].describe(5))
        self.assertIn("seed=5", recorder.breaches[0].describe(5))

    def test_hung(self) -> None:
        """
        An operation older than L{soak.HUNG_AFTER} is hung, once.
        """
        recorder, now = self.recorder()
        recorder.begin("c", "transaction")
        now[0] = soak.HUNG_AFTER - 1
        recorder.watch()
        self.assertEqual(recorder.hung, set())
        now[0] = soak.HUNG_AFTER + 1
        recorder.watch()
        recorder.watch()
        self.assertEqual(len(recorder.hung), 1)
        self.assertEqual(len(recorder.breaches), 1)
        recorder.end("c")
        self.assertEqual(recorder.inFlight, {})
