"""
Tests for L{pgtwist.pipelines.transaction} when prepared statements meet
errors: skipped messages after an error, eviction, statements made stale by
DDL, and statements dropped behind pgtwist's back.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.pipelines._statements import STALE, StatementKey
from pgtwist.pipelines.serverstate import serverSession
from pgtwist.wire.messages import (
    Bind,
    BindComplete,
    Close,
    CloseComplete,
    CommandComplete,
    Describe,
    Execute,
    Flush,
    Parse,
    ParseComplete,
    Query,
    ReadyForQuery,
    Sync,
)
from tests.unit._pipelinescript import (
    Q1,
    TransactionScript,
    bind,
    failure,
    fromClient,
    fromServer,
    makeBackend,
    raising,
    selected,
)


class BatchErrorTests(SynchronousTestCase):
    """
    After an error PostgreSQL skips every message up to Sync; pgtwist drops
    the responses it owed for them and forgets what they would have changed.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)
        self.a = self.script.backends[0]
        self.script.play(
            [
                fromClient(
                    [Parse("s1", Q1, (23,)), Sync()],
                    toServer=[Parse("PGTWIST_1", Q1, (23,)), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_errorAtBind(self) -> None:
        """
        Bind fails: the error and ReadyForQuery are relayed, the
        ParseComplete and CloseComplete pgtwist owed after it are not, the
        skipped Parse is forgotten and the skipped Close undone.
        """
        script = self.script
        invalid = failure("22P02", 'invalid input syntax for type integer: "x"')
        script.play(
            [
                fromClient(
                    [Parse("s2", "SELECT $1::int + 1", (23,)), bind("s2", b"x"), Execute("")]
                    + [Parse("s3", Q1, (23,)), Close(b"S", "s1"), Sync()],
                    toServer=[Parse("PGTWIST_2", "SELECT $1::int + 1", (23,))]
                    + [bind("PGTWIST_2", b"x"), Execute(""), Sync()],
                ),
                fromServer(
                    [ParseComplete(), invalid, ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), invalid, ReadyForQuery(b"I")],
                ),
            ]
        )
        self.assertEqual(sorted(script.session.statements), ["s1", "s2"])
        self.assertEqual(sorted(serverSession(self.a).prepared), ["PGTWIST_1", "PGTWIST_2"])
        self.assertIsNone(script.session.backend)
        self.assertEqual(script.pool.releasedWithoutReset[-1], self.a)

    def test_skippedInjectedParseForgotten(self) -> None:
        """
        A Parse pgtwist injected after the failing message never ran: the
        backend is not believed to hold the statement, and the next use
        prepares it again.
        """
        script = self.script
        b = makeBackend(1002)
        script.useBackend(b)
        missing = failure("26000", 'prepared statement "nope" does not exist')
        script.play(
            [
                fromClient(
                    [bind("nope"), Execute(""), bind("s1"), Execute(""), Sync()],
                    toServer=[bind("nope"), Execute(""), Parse("PGTWIST_1", Q1, (23,))]
                    + [bind("PGTWIST_1"), Execute(""), Sync()],
                ),
                fromServer([missing, ReadyForQuery(b"I")], toClient=[missing, ReadyForQuery(b"I")]),
            ]
        )
        self.assertEqual(serverSession(b).prepared, {})
        script.play(
            [
                fromClient(
                    [bind("s1"), Execute(""), Sync()],
                    toServer=[
                        Parse("PGTWIST_1", Q1, (23,)),
                        bind("PGTWIST_1"),
                        Execute(""),
                        Sync(),
                    ],
                ),
            ]
        )

    def test_skippedClientParseForgotten(self) -> None:
        """
        A client Parse skipped after an error registers nothing: a later
        Bind of that name is PostgreSQL's error again.
        """
        script = self.script
        missing = failure("26000", 'prepared statement "nope" does not exist')
        script.play(
            [
                fromClient(
                    [bind("nope"), Execute(""), Parse("s4", "SELECT 4"), Sync()],
                    toServer=[bind("nope"), Execute(""), Parse("PGTWIST_2", "SELECT 4"), Sync()],
                ),
                fromServer([missing, ReadyForQuery(b"I")], toClient=[missing, ReadyForQuery(b"I")]),
            ]
        )
        self.assertNotIn("s4", script.session.statements)
        self.assertNotIn("PGTWIST_2", serverSession(self.a).prepared)
        self.assertNotIn(StatementKey("SELECT 4", (), ""), script.registry.verified)

    def test_errorAtParse(self) -> None:
        """
        A Parse PostgreSQL rejects leaves no statement behind.
        """
        script = self.script
        syntax = failure("42601", 'syntax error at or near "SELEC"')
        script.play(
            [
                fromClient(
                    [Parse("s5", "SELEC 1"), bind("s5"), Execute(""), Sync()],
                    toServer=[
                        Parse("PGTWIST_2", "SELEC 1"),
                        bind("PGTWIST_2"),
                        Execute(""),
                        Sync(),
                    ],
                ),
                fromServer([syntax, ReadyForQuery(b"I")], toClient=[syntax, ReadyForQuery(b"I")]),
            ]
        )
        self.assertNotIn("s5", script.session.statements)
        self.assertEqual(list(serverSession(self.a).prepared), ["PGTWIST_1"])
        self.assertNotIn(StatementKey("SELEC 1", (), ""), script.registry.verified)

    def test_messagesAfterErrorUntilSync(self) -> None:
        """
        Messages the client sends after the error arrived and before its
        Sync are relayed untouched (PostgreSQL skips them) and owe nothing.
        """
        script = self.script
        syntax = failure("42601", 'syntax error at or near "SELEC"')
        script.play(
            [
                fromClient(
                    [Parse("s6", "SELEC 1"), Flush()],
                    toServer=[Parse("PGTWIST_2", "SELEC 1"), Flush()],
                ),
                fromServer([syntax], toClient=[syntax]),
                fromClient(
                    [Parse("s7", Q1, (23,)), bind("s1"), Execute(""), Query("SELECT 1"), Sync()],
                    toServer=[Parse("s7", Q1, (23,)), bind("s1"), Execute(""), Query("SELECT 1")]
                    + [Sync()],
                ),
                fromServer([ReadyForQuery(b"I")], toClient=[ReadyForQuery(b"I")]),
            ]
        )
        self.assertIsNone(script.session.backend)
        self.assertNotIn("s7", script.session.statements)

    def test_errorAfterSyncedPart(self) -> None:
        """
        With two Syncs pipelined, an error in the second batch does not
        touch what the first owed.
        """
        script = self.script
        invalid = failure("22P02", 'invalid input syntax for type integer: "x"')
        script.play(
            [
                fromClient(
                    [bind("s1"), Execute(""), Sync(), bind("s1", b"x"), Execute(""), Sync()],
                    toServer=[bind("PGTWIST_1"), Execute(""), Sync()]
                    + [bind("PGTWIST_1", b"x"), Execute(""), Sync()],
                ),
                fromServer(
                    [BindComplete(), *selected(), ReadyForQuery(b"I"), invalid]
                    + [ReadyForQuery(b"I")],
                    toClient=[BindComplete(), *selected(), ReadyForQuery(b"I"), invalid]
                    + [ReadyForQuery(b"I")],
                ),
            ]
        )
        self.assertIsNone(script.session.backend)

    def test_errorInsideTransactionKeepsBackend(self) -> None:
        """
        An error inside BEGIN leaves the transaction failed (E): the backend
        stays with the client until ROLLBACK.
        """
        script = self.script
        invalid = failure("22P02", 'invalid input syntax for type integer: "x"')
        script.play(
            [
                fromClient([Query("BEGIN")], toServer=[Query("BEGIN")]),
                fromServer(
                    [CommandComplete("BEGIN"), ReadyForQuery(b"T")],
                    toClient=[CommandComplete("BEGIN"), ReadyForQuery(b"T")],
                ),
                fromClient(
                    [bind("s1", b"x"), Execute(""), Sync()],
                    toServer=[bind("PGTWIST_1", b"x"), Execute(""), Sync()],
                ),
                fromServer([invalid, ReadyForQuery(b"E")], toClient=[invalid, ReadyForQuery(b"E")]),
            ]
        )
        self.assertIs(script.session.backend, self.a)
        script.play(
            [
                fromClient([Query("ROLLBACK")], toServer=[Query("ROLLBACK")]),
                fromServer(
                    [CommandComplete("ROLLBACK"), ReadyForQuery(b"I")],
                    toClient=[CommandComplete("ROLLBACK"), ReadyForQuery(b"I")],
                ),
            ]
        )
        self.assertIsNone(script.session.backend)


class EvictionTests(SynchronousTestCase):
    """
    Each backend keeps at most C{max_prepared_statements} statements,
    closing the least recently used.
    """

    def test_leastRecentlyUsedClosed(self) -> None:
        """
        With a limit of 2, a third statement makes pgtwist close the least
        recently used one and swallow its CloseComplete.
        """
        script = TransactionScript(self, maxPrepared=2)
        backend = script.backends[0]
        script.play(
            [
                fromClient(
                    [Parse("a", "SELECT 1"), Parse("b", "SELECT 2"), Sync()],
                    toServer=[Parse("PGTWIST_1", "SELECT 1"), Parse("PGTWIST_2", "SELECT 2")]
                    + [Sync()],
                ),
                fromServer(
                    [ParseComplete(), ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ParseComplete(), ReadyForQuery(b"I")],
                ),
                fromClient(
                    [Bind("", "a"), Execute(""), Sync()],
                    toServer=[Bind("", "PGTWIST_1"), Execute(""), Sync()],
                ),
                fromServer(
                    [BindComplete(), *selected(), ReadyForQuery(b"I")],
                    toClient=[BindComplete(), *selected(), ReadyForQuery(b"I")],
                ),
                fromClient(
                    [Parse("c", "SELECT 3"), Sync()],
                    toServer=[Parse("PGTWIST_3", "SELECT 3"), Close(b"S", "PGTWIST_2"), Sync()],
                ),
                fromServer(
                    [ParseComplete(), CloseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ReadyForQuery(b"I")],
                ),
            ]
        )
        self.assertEqual(list(serverSession(backend).prepared), ["PGTWIST_1", "PGTWIST_3"])
        self.assertEqual(sorted(script.session.statements), ["a", "b", "c"])
        script.play(
            [
                fromClient(
                    [Bind("", "b"), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_2", "SELECT 2"), Close(b"S", "PGTWIST_1")]
                    + [Bind("", "PGTWIST_2"), Execute(""), Sync()],
                ),
                fromServer(
                    [ParseComplete(), CloseComplete(), BindComplete(), *selected(b"2")]
                    + [ReadyForQuery(b"I")],
                    toClient=[BindComplete(), *selected(b"2"), ReadyForQuery(b"I")],
                ),
            ]
        )
        self.assertEqual(list(serverSession(backend).prepared), ["PGTWIST_3", "PGTWIST_2"])

    def test_skippedEvictionRestored(self) -> None:
        """
        A Close pgtwist sent to evict a statement but that PostgreSQL
        skipped after an error leaves the statement where it was.
        """
        script = TransactionScript(self, maxPrepared=1)
        backend = script.backends[0]
        missing = failure("26000", 'prepared statement "nope" does not exist')
        script.play(
            [
                fromClient(
                    [Parse("a", "SELECT 1"), Sync()],
                    toServer=[Parse("PGTWIST_1", "SELECT 1"), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ReadyForQuery(b"I")],
                ),
                fromClient(
                    [Bind("", "nope"), Execute(""), Parse("b", "SELECT 2"), Sync()],
                    toServer=[Bind("", "nope"), Execute(""), Parse("PGTWIST_2", "SELECT 2")]
                    + [Close(b"S", "PGTWIST_1"), Sync()],
                ),
                fromServer([missing, ReadyForQuery(b"I")], toClient=[missing, ReadyForQuery(b"I")]),
            ]
        )
        self.assertEqual(list(serverSession(backend).prepared.items()), [("PGTWIST_1", True)])


class StaleStatementTests(SynchronousTestCase):
    """
    After DDL PostgreSQL refuses a prepared statement whose result shape
    changed (0A000, "cached plan must not change result type") on every
    backend that has it: pgtwist gives the statement a new server-side name,
    prepared afresh wherever it is used next, so the client's retry works
    whichever backend it lands on.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)
        self.a = self.script.backends[0]
        self.b = makeBackend(1002)
        stale = failure("0A000", "cached plan must not change result type")
        self.script.play(
            [
                fromClient(
                    [Parse("s1", "SELECT * FROM t"), Sync()],
                    toServer=[Parse("PGTWIST_1", "SELECT * FROM t"), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ReadyForQuery(b"I")],
                ),
            ]
        )
        self.script.useBackend(self.b)
        self.script.play(
            [
                fromClient(
                    [Bind("", "s1"), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_1", "SELECT * FROM t")]
                    + [Bind("", "PGTWIST_1"), Execute(""), Sync()],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), *selected(), ReadyForQuery(b"I")],
                    toClient=[BindComplete(), *selected(), ReadyForQuery(b"I")],
                ),
            ]
        )
        self.script.useBackend(self.a)
        self.script.play(
            [
                fromClient(
                    [Bind("", "s1"), Execute(""), Sync()],
                    toServer=[Bind("", "PGTWIST_1"), Execute(""), Sync()],
                ),
                fromServer([stale, ReadyForQuery(b"I")], toClient=[stale, ReadyForQuery(b"I")]),
            ]
        )

    def test_renamed(self) -> None:
        """
        The old statement is marked stale on that backend, and the key has
        a new server-side name.
        """
        self.assertIs(serverSession(self.a).prepared["PGTWIST_1"], STALE)
        key = StatementKey("SELECT * FROM t", (), "")
        self.assertEqual(self.script.registry.nameFor(key), "PGTWIST_2")

    def test_bindPreparesAgain(self) -> None:
        """
        The next Bind on that backend prepares the new name first; pgtwist's
        ParseComplete is swallowed.
        """
        self.script.play(
            [
                fromClient(
                    [Bind("", "s1"), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_2", "SELECT * FROM t")]
                    + [Bind("", "PGTWIST_2"), Execute(""), Sync()],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), *selected(), ReadyForQuery(b"I")],
                    toClient=[BindComplete(), *selected(), ReadyForQuery(b"I")],
                ),
            ]
        )
        self.assertIs(serverSession(self.a).prepared["PGTWIST_2"], True)

    def test_retryOnAnotherBackend(self) -> None:
        """
        A retry on another backend, which has the old statement too (and
        would refuse it the same way), uses the new name there.
        """
        self.script.useBackend(self.b)
        self.script.play(
            [
                fromClient(
                    [Bind("", "s1"), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_2", "SELECT * FROM t")]
                    + [Bind("", "PGTWIST_2"), Execute(""), Sync()],
                ),
            ]
        )

    def test_clientParsePreparesAgain(self) -> None:
        """
        A driver that reacts to the error by preparing the statement again
        (asyncpg, psycopg) gets it prepared afresh, under the new name.
        """
        self.script.play(
            [
                fromClient([Query("BEGIN")], toServer=[Query("BEGIN")]),
                fromServer(
                    [CommandComplete("BEGIN"), ReadyForQuery(b"T")],
                    toClient=[CommandComplete("BEGIN"), ReadyForQuery(b"T")],
                ),
                fromClient(
                    [Parse("s2", "SELECT * FROM t"), Bind("", "s2"), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_2", "SELECT * FROM t")]
                    + [Bind("", "PGTWIST_2"), Execute(""), Sync()],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), *selected(), ReadyForQuery(b"T")],
                    toClient=[ParseComplete(), BindComplete(), *selected(), ReadyForQuery(b"T")],
                ),
            ]
        )

    def test_staleClosedWhenEvicted(self) -> None:
        """
        The old statement takes a place in the backend's cache until it is
        evicted like any other, with a Close.
        """
        script = TransactionScript(self, maxPrepared=1)
        backend = script.backends[0]
        stale = failure("0A000", "cached plan must not change result type")
        script.play(
            [
                fromClient(
                    [Parse("s1", "SELECT * FROM t"), Bind("", "s1"), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_1", "SELECT * FROM t"), Bind("", "PGTWIST_1")]
                    + [Execute(""), Sync()],
                ),
                fromServer(
                    [ParseComplete(), stale, ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), stale, ReadyForQuery(b"I")],
                ),
                fromClient(
                    [Bind("", "s1"), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_2", "SELECT * FROM t"), Close(b"S", "PGTWIST_1")]
                    + [Bind("", "PGTWIST_2"), Execute(""), Sync()],
                ),
            ]
        )
        self.assertEqual(list(serverSession(backend).prepared), ["PGTWIST_2"])


class VanishedStatementTests(SynchronousTestCase):
    """
    A statement dropped behind pgtwist's back (SQL C{DEALLOCATE},
    C{DISCARD ALL} through the extended protocol) is prepared again at its
    next use instead of failing forever on that backend.
    """

    def test_preparedAgainAfterError(self) -> None:
        """
        PostgreSQL's 26000 for a server-side name makes pgtwist forget it;
        the next Bind injects a Parse.
        """
        script = TransactionScript(self)
        backend = script.backends[0]
        gone = failure("26000", 'prepared statement "PGTWIST_1" does not exist')
        script.play(
            [
                fromClient(
                    [Parse("s1", Q1, (23,)), Sync()],
                    toServer=[Parse("PGTWIST_1", Q1, (23,)), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ReadyForQuery(b"I")],
                ),
                fromClient(
                    [bind("s1"), Execute(""), Sync()],
                    toServer=[bind("PGTWIST_1"), Execute(""), Sync()],
                ),
                fromServer([gone, ReadyForQuery(b"I")], toClient=[gone, ReadyForQuery(b"I")]),
            ]
        )
        self.assertNotIn("PGTWIST_1", serverSession(backend).prepared)
        script.play(
            [
                fromClient(
                    [Describe(b"S", "s1"), Sync()],
                    toServer=[Parse("PGTWIST_1", Q1, (23,)), Describe(b"S", "PGTWIST_1"), Sync()],
                ),
            ]
        )

    def test_presentAfterAllPreparedAgain(self) -> None:
        """
        PostgreSQL's 42P05 for a Parse pgtwist sent means the statement is
        there after all: the next use closes it and prepares it again.
        """
        script = TransactionScript(self)
        backend = script.backends[0]
        there = failure("42P05", 'prepared statement "PGTWIST_1" already exists')
        script.play(
            [
                fromClient(
                    [Parse("s1", Q1, (23,)), Sync()],
                    toServer=[Parse("PGTWIST_1", Q1, (23,)), Sync()],
                ),
                fromServer([there, ReadyForQuery(b"I")], toClient=[there, ReadyForQuery(b"I")]),
            ]
        )
        self.assertIs(serverSession(backend).prepared["PGTWIST_1"], STALE)
        script.play(
            [
                fromClient(
                    [Parse("s1", Q1, (23,)), Sync()],
                    toServer=[Close(b"S", "PGTWIST_1"), Parse("PGTWIST_1", Q1, (23,)), Sync()],
                ),
                fromServer(
                    [CloseComplete(), ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ReadyForQuery(b"I")],
                ),
            ]
        )
        self.assertIs(serverSession(backend).prepared["PGTWIST_1"], True)

    def test_skippedReprepareStaysStale(self) -> None:
        """
        When the Close and Parse of a statement marked stale are skipped
        after an earlier error, the backend still holds it: the next use
        closes it again rather than making PostgreSQL say "already exists".
        """
        script = TransactionScript(self)
        backend = script.backends[0]
        there = failure("42P05", 'prepared statement "PGTWIST_1" already exists')
        missing = failure("26000", 'prepared statement "nope" does not exist')
        reprepare = [Close(b"S", "PGTWIST_1"), Parse("PGTWIST_1", Q1, (23,))]
        script.play(
            [
                fromClient(
                    [Parse("s1", Q1, (23,)), Sync()],
                    toServer=[Parse("PGTWIST_1", Q1, (23,)), Sync()],
                ),
                fromServer([there, ReadyForQuery(b"I")], toClient=[there, ReadyForQuery(b"I")]),
                fromClient(
                    [bind("nope"), Execute(""), Parse("s1", Q1, (23,)), Sync()],
                    toServer=[bind("nope"), Execute(""), *reprepare, Sync()],
                ),
                fromServer([missing, ReadyForQuery(b"I")], toClient=[missing, ReadyForQuery(b"I")]),
            ]
        )
        self.assertIs(serverSession(backend).prepared["PGTWIST_1"], STALE)
        script.play(
            [
                fromClient(
                    [Parse("s1", Q1, (23,)), Sync()],
                    toServer=[*reprepare, Sync()],
                ),
            ]
        )


class ResetTests(SynchronousTestCase):
    """
    C{DEALLOCATE ALL} and C{DISCARD ALL} forget the client's statements only
    when PostgreSQL will run them.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)
        self.script.play(
            [
                fromClient(
                    [Parse("s1", Q1), Sync()],
                    toServer=[Parse("PGTWIST_1", Q1), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ReadyForQuery(b"I")],
                ),
                fromClient([Query("BEGIN")], toServer=[Query("BEGIN")]),
                fromServer(
                    [CommandComplete("BEGIN"), ReadyForQuery(b"T")],
                    toClient=[CommandComplete("BEGIN"), ReadyForQuery(b"T")],
                ),
            ]
        )

    def test_discardAllInTransactionBlock(self) -> None:
        """
        C{DISCARD ALL} cannot run inside a transaction block: the
        statements stay.
        """
        refused = failure("25001", "DISCARD ALL cannot run inside a transaction block")
        self.script.play(
            [
                fromClient([Query("DISCARD ALL")], toServer=[Query("DISCARD ALL")]),
                fromServer([refused, ReadyForQuery(b"E")], toClient=[refused, ReadyForQuery(b"E")]),
            ]
        )
        self.assertIn("s1", self.script.session.statements)
        self.assertIn("PGTWIST_1", serverSession(self.script.backends[0]).prepared)

    def test_deallocateAllInTransactionBlock(self) -> None:
        """
        C{DEALLOCATE ALL} runs inside a transaction block.
        """
        self.script.play(
            [fromClient([Query("DEALLOCATE ALL")], toServer=[Query("DEALLOCATE ALL")])]
        )
        self.assertEqual(self.script.session.statements, {})

    def test_nothingInFailedTransaction(self) -> None:
        """
        In a failed transaction PostgreSQL runs nothing: the statements stay.
        """
        aborted = failure(
            "25P02",
            "current transaction is aborted, commands ignored until end of transaction block",
        )
        self.script.play(
            [
                fromClient([Query("SELECT 1/0")], toServer=[Query("SELECT 1/0")]),
                fromServer(
                    [failure("22012", "division by zero"), ReadyForQuery(b"E")],
                    toClient=[failure("22012", "division by zero"), ReadyForQuery(b"E")],
                ),
                fromClient([Query("DEALLOCATE ALL")], toServer=[Query("DEALLOCATE ALL")]),
                fromServer([aborted, ReadyForQuery(b"E")], toClient=[aborted, ReadyForQuery(b"E")]),
            ]
        )
        self.assertIn("s1", self.script.session.statements)


class PipelinedBatchTests(SynchronousTestCase):
    """
    A batch that names a statement an earlier batch of the same pipeline
    parses or closes waits until PostgreSQL has said whether that earlier
    change ran: after an error there, it did not.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)
        self.script.play(
            [
                fromClient(
                    [Parse("s1", Q1, (23,)), Sync()],
                    toServer=[Parse("PGTWIST_1", Q1, (23,)), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ReadyForQuery(b"I")],
                ),
                fromClient([Query("BEGIN")], toServer=[Query("BEGIN")]),
                fromServer(
                    [CommandComplete("BEGIN"), ReadyForQuery(b"T")],
                    toClient=[CommandComplete("BEGIN"), ReadyForQuery(b"T")],
                ),
            ]
        )

    def test_skippedParseThenBind(self) -> None:
        """
        A statement whose Parse was skipped does not exist for a Bind in the
        next batch: the Bind goes out once the error is known, under the
        client's name, and PostgreSQL says so.
        """
        script = self.script
        zero = failure("22012", "division by zero")
        missing = failure("26000", 'prepared statement "late" does not exist')
        script.play(
            [
                fromClient(
                    [Parse("", "SELECT 1/0"), bind(""), Execute(""), Parse("late", Q1, (23,))]
                    + [Sync(), bind("late"), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_2", "SELECT 1/0"), bind("PGTWIST_2"), Execute("")]
                    + [Sync()],
                ),
            ]
        )
        self.assertFalse(script.frontend.reading)
        script.play(
            [
                fromServer(
                    [ParseComplete(), BindComplete(), zero, ReadyForQuery(b"E")],
                    toClient=[ParseComplete(), BindComplete(), zero, ReadyForQuery(b"E")],
                    toServer=[bind("late"), Execute(""), Sync()],
                ),
                fromServer([missing, ReadyForQuery(b"E")], toClient=[missing, ReadyForQuery(b"E")]),
            ]
        )
        self.assertTrue(script.frontend.reading)
        self.assertNotIn("late", script.session.statements)

    def test_parsedThenBound(self) -> None:
        """
        When the earlier Parse ran, the waiting Bind uses it.
        """
        script = self.script
        script.play(
            [
                fromClient(
                    [Parse("s2", "SELECT 2"), Sync(), bind("s2"), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_2", "SELECT 2"), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ReadyForQuery(b"T")],
                    toClient=[ParseComplete(), ReadyForQuery(b"T")],
                    toServer=[bind("PGTWIST_2"), Execute(""), Sync()],
                ),
            ]
        )

    def test_skippedCloseThenParse(self) -> None:
        """
        A Close skipped after an error leaves the statement: a Parse of the
        same name in the next batch is a duplicate, as on PostgreSQL.
        """
        script = self.script
        missing = failure("26000", 'prepared statement "nope" does not exist')
        script.play(
            [
                fromClient(
                    [bind("nope"), Execute(""), Close(b"S", "s1"), Sync()]
                    + [Parse("s1", "SELECT 2"), Sync()],
                    toServer=[bind("nope"), Execute(""), Sync()],
                ),
                fromServer(
                    [missing, ReadyForQuery(b"E")],
                    toClient=[missing, ReadyForQuery(b"E")],
                    toServer=[*raising("42P05", 'prepared statement "s1" already exists'), Sync()],
                ),
            ]
        )
        self.assertEqual(script.session.statements["s1"], StatementKey(Q1, (23,), ""))

    def test_unrelatedBatchNotHeld(self) -> None:
        """
        Batches that do not touch the changed names go out at once.
        """
        script = self.script
        script.play(
            [
                fromClient(
                    [Parse("s2", "SELECT 2"), Sync(), bind("s1"), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_2", "SELECT 2"), Sync()]
                    + [bind("PGTWIST_1"), Execute(""), Sync()],
                ),
            ]
        )
        self.assertTrue(script.frontend.reading)
