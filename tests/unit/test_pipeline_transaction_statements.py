"""
Tests for the prepared-statement rewriting of
L{pgtwist.pipelines.transaction}, as message-in/message-out tables: what the
client sends, exactly what reaches PostgreSQL, what PostgreSQL answers and
exactly what the client gets.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.pipelines._statements import StatementKey
from pgtwist.pipelines.serverstate import serverSession
from pgtwist.wire.messages import (
    Bind,
    BindComplete,
    Close,
    CloseComplete,
    CommandComplete,
    Describe,
    Execute,
    NoData,
    Parse,
    ParseComplete,
    Query,
    ReadyForQuery,
    Sync,
)
from tests.unit._pipelinescript import (
    Q1,
    ROW,
    TransactionScript,
    bind,
    failure,
    fromClient,
    fromServer,
    makeBackend,
    parameterDescription,
    raising,
    selected,
    stateAnswer,
    stateQuery,
)


class NamedStatementTests(SynchronousTestCase):
    """
    Named statements are renamed to shared server-side names and follow the
    client from backend to backend.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)
        self.a = self.script.backends[0]
        self.script.play(
            [
                fromClient(
                    [Parse("s1", Q1, (23,)), bind("s1"), Execute(""), Sync()],
                    toServer=[
                        Parse("PGTWIST_1", Q1, (23,)),
                        bind("PGTWIST_1"),
                        Execute(""),
                        Sync(),
                    ],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), *selected(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), BindComplete(), *selected(), ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_firstTransaction(self) -> None:
        """
        The statement is prepared under its server-side name, the backend
        goes back without a reset once PostgreSQL is idle, and the key is
        now known to be valid.
        """
        self.assertEqual(self.script.pool.releasedWithoutReset, [self.a, self.a])
        self.assertIsNone(self.script.session.backend)
        self.assertEqual(list(serverSession(self.a).prepared.items()), [("PGTWIST_1", True)])
        self.assertIn(StatementKey(Q1, (23,), ""), self.script.registry.verified)

    def test_bindOnAnotherBackendInjectsParse(self) -> None:
        """
        A Bind on a backend that lacks the statement is preceded by a Parse
        pgtwist sends itself; its ParseComplete never reaches the client.
        """
        b = makeBackend(1002)
        self.script.useBackend(b)
        self.script.play(
            [
                fromClient(
                    [bind("s1", b"2"), Execute(""), Sync()],
                    toServer=[
                        Parse("PGTWIST_1", Q1, (23,)),
                        bind("PGTWIST_1", b"2"),
                        Execute(""),
                        Sync(),
                    ],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), *selected(b"2"), ReadyForQuery(b"I")],
                    toClient=[BindComplete(), *selected(b"2"), ReadyForQuery(b"I")],
                ),
            ]
        )
        self.assertEqual(list(serverSession(b).prepared), ["PGTWIST_1"])
        self.assertEqual(self.script.pool.releasedWithoutReset[-1], b)

    def test_resetBackendPreparesAgain(self) -> None:
        """
        Once the pool has reset the backend's session (C{DISCARD ALL}, for
        a client of another pipeline), the statement is prepared on it
        again at its next use.
        """
        self.a.sessionResets += 1
        self.script.play(
            [
                fromClient(
                    [bind("s1", b"2"), Execute(""), Sync()],
                    toServer=[
                        Parse("PGTWIST_1", Q1, (23,)),
                        bind("PGTWIST_1", b"2"),
                        Execute(""),
                        Sync(),
                    ],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), *selected(b"2"), ReadyForQuery(b"I")],
                    toClient=[BindComplete(), *selected(b"2"), ReadyForQuery(b"I")],
                ),
            ]
        )
        self.assertEqual(list(serverSession(self.a).prepared), ["PGTWIST_1"])

    def test_parseOfPreparedStatementAnsweredLocally(self) -> None:
        """
        A Parse of a statement the backend already has is not forwarded; the
        client gets its ParseComplete first, before BindComplete, in the same
        write.
        """
        self.script.play(
            [
                fromClient(
                    [Parse("s2", Q1, (23,)), bind("s2"), Execute(""), Sync()],
                    toServer=[bind("PGTWIST_1"), Execute(""), Sync()],
                    toClient=[],
                ),
                fromServer(
                    [BindComplete(), *selected(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), BindComplete(), *selected(), ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_synthesizedParseCompleteQueuedInPosition(self) -> None:
        """
        A Parse answered by pgtwist behind responses still owed is answered
        exactly after them.
        """
        self.script.play(
            [
                fromClient(
                    [bind("s1"), Execute(""), Parse("s2", Q1, (23,)), bind("s2", b"2"), Execute("")]
                    + [Sync()],
                    toServer=[bind("PGTWIST_1"), Execute(""), bind("PGTWIST_1", b"2"), Execute("")]
                    + [Sync()],
                ),
                fromServer(
                    [BindComplete(), *selected(), BindComplete(), *selected(b"2")]
                    + [ReadyForQuery(b"I")],
                    toClient=[BindComplete(), *selected(), ParseComplete(), BindComplete()]
                    + [*selected(b"2"), ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_describeStatement(self) -> None:
        """
        Describe of a statement is renamed; ParameterDescription and
        RowDescription are relayed. The statement, prepared in an earlier
        batch, is prepared again first (closed, parsed), so that the
        description is of the client's text as PostgreSQL reads it now;
        pgtwist's CloseComplete and ParseComplete are swallowed.
        """
        self.script.play(
            [
                fromClient(
                    [Describe(b"S", "s1"), Sync()],
                    toServer=[
                        Close(b"S", "PGTWIST_1"),
                        Parse("PGTWIST_1", Q1, (23,)),
                        Describe(b"S", "PGTWIST_1"),
                        Sync(),
                    ],
                ),
                fromServer(
                    [
                        CloseComplete(),
                        ParseComplete(),
                        parameterDescription(23),
                        ROW,
                        ReadyForQuery(b"I"),
                    ],
                    toClient=[parameterDescription(23), ROW, ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_describeOnAnotherBackendInjectsParse(self) -> None:
        """
        Describe needs the statement too: a backend without it gets a Parse
        first, and NoData is relayed.
        """
        self.script.useBackend(makeBackend(1002))
        self.script.play(
            [
                fromClient(
                    [Describe(b"S", "s1"), Sync()],
                    toServer=[Parse("PGTWIST_1", Q1, (23,)), Describe(b"S", "PGTWIST_1"), Sync()],
                ),
                fromServer(
                    [ParseComplete(), parameterDescription(23), NoData(), ReadyForQuery(b"I")],
                    toClient=[parameterDescription(23), NoData(), ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_closeStatementLocal(self) -> None:
        """
        Close of a statement is answered by pgtwist: the server-side
        statement is shared and stays; the client's name is gone.
        """
        self.script.play(
            [
                fromClient([Query("BEGIN")], toServer=[Query("BEGIN")]),
                fromServer(
                    [CommandComplete("BEGIN"), ReadyForQuery(b"T")],
                    toClient=[CommandComplete("BEGIN"), ReadyForQuery(b"T")],
                ),
                fromClient(
                    [Close(b"S", "s1"), Sync()],
                    toServer=[Sync()],
                    toClient=[CloseComplete()],
                ),
                fromServer([ReadyForQuery(b"T")], toClient=[ReadyForQuery(b"T")]),
                fromClient(
                    [bind("s1"), Execute(""), Sync()],
                    toServer=[Bind("", "s1", (), (b"1",), ()), Execute(""), Sync()],
                ),
            ]
        )
        self.assertNotIn("s1", self.script.session.statements)
        self.assertIn("PGTWIST_1", serverSession(self.a).prepared)

    def test_closeStatementQueuedInPosition(self) -> None:
        """
        A Close behind owed responses gets its CloseComplete after them.
        """
        self.script.play(
            [
                fromClient(
                    [bind("s1"), Execute(""), Close(b"S", "s1"), Sync()],
                    toServer=[bind("PGTWIST_1"), Execute(""), Sync()],
                ),
                fromServer(
                    [BindComplete(), *selected(), ReadyForQuery(b"I")],
                    toClient=[BindComplete(), *selected(), CloseComplete(), ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_closePortalForwarded(self) -> None:
        """
        Close of a portal is the backend's business.
        """
        self.script.play(
            [
                fromClient(
                    [bind("s1", portal="c1"), Close(b"P", "c1"), Sync()],
                    toServer=[bind("PGTWIST_1", portal="c1"), Close(b"P", "c1"), Sync()],
                ),
                fromServer(
                    [BindComplete(), CloseComplete(), ReadyForQuery(b"I")],
                    toClient=[BindComplete(), CloseComplete(), ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_describePortalForwarded(self) -> None:
        """
        Describe of a portal is forwarded as is.
        """
        self.script.play(
            [
                fromClient(
                    [bind("s1", portal="c1"), Describe(b"P", "c1"), Sync()],
                    toServer=[bind("PGTWIST_1", portal="c1"), Describe(b"P", "c1"), Sync()],
                ),
                fromServer(
                    [BindComplete(), ROW, ReadyForQuery(b"I")],
                    toClient=[BindComplete(), ROW, ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_unknownStatementForwardedAsIs(self) -> None:
        """
        A Bind of a name the client never prepared goes to PostgreSQL as
        sent, which reports the error.
        """
        missing = failure("26000", 'prepared statement "nope" does not exist')
        self.script.play(
            [
                fromClient(
                    [bind("nope"), Execute(""), Sync()],
                    toServer=[bind("nope"), Execute(""), Sync()],
                ),
                fromServer([missing, ReadyForQuery(b"I")], toClient=[missing, ReadyForQuery(b"I")]),
            ]
        )
        self.assertIsNone(self.script.session.backend)

    def test_duplicateParseRaisedByPostgreSQL(self) -> None:
        """
        A Parse of a name the client already has makes PostgreSQL raise
        42P05 through a DO block at that point of the batch: pgtwist's own
        ParseComplete and BindComplete are swallowed, the error and the
        ReadyForQuery reach the client, and what follows up to Sync is
        skipped.
        """
        script = self.script
        raised = failure("42P05", 'prepared statement "s1" already exists')
        script.play(
            [
                fromClient(
                    [Parse("s1", "SELECT 2"), bind("s1"), Execute(""), Sync()],
                    toServer=[*raising("42P05", 'prepared statement "s1" already exists')]
                    + [bind("PGTWIST_1"), Execute(""), Sync()],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), raised, ReadyForQuery(b"I")],
                    toClient=[raised, ReadyForQuery(b"I")],
                ),
            ]
        )
        self.assertEqual(script.session.statements["s1"], StatementKey(Q1, (23,), ""))
        self.assertIsNone(script.session.backend)

    def test_deallocateAllForgetsStatements(self) -> None:
        """
        C{DEALLOCATE ALL} drops the client's statements and, on PostgreSQL,
        every statement of that backend.
        """
        for sql, checked in (
            ("DEALLOCATE ALL", False),
            ("discard all;", True),
            ("DEALLOCATE PREPARE ALL", True),
        ):
            script = TransactionScript(self)
            script.play(
                [
                    fromClient(
                        [Parse("s1", Q1), Sync()],
                        toServer=[Parse("PGTWIST_1", Q1), Sync()],
                    ),
                    fromServer(
                        [ParseComplete(), ReadyForQuery(b"I")],
                        toClient=[ParseComplete(), ReadyForQuery(b"I")],
                    ),
                    fromClient([Query(sql)], toServer=[Query(sql)]),
                ]
            )
            self.assertEqual(script.session.statements, {})
            self.assertEqual(serverSession(script.backends[0]).prepared, {})
            answer = [CommandComplete("DEALLOCATE ALL"), ReadyForQuery(b"I")]
            if checked:
                # DISCARD resets settings; "PREPARE" may prepare: the
                # session's state is read before the backend goes back.
                script.play(
                    [
                        fromServer(answer, toClient=answer[:1], toServer=[stateQuery()]),
                        fromServer(stateAnswer(), toClient=answer[1:]),
                    ]
                )
            else:
                script.play([fromServer(answer, toClient=answer)])
            script.play(
                [
                    fromClient(
                        [bind("s1"), Execute(""), Sync()],
                        toServer=[bind("s1"), Execute(""), Sync()],
                    ),
                ]
            )


class ExtendedResetTests(SynchronousTestCase):
    """
    C{DEALLOCATE ALL} sent with the extended protocol (psycopg in pipeline
    mode, pg8000) drops the client's named statements too; the unnamed one
    survives it, as on PostgreSQL.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)
        self.backend = self.script.backends[0]
        self.script.play(
            [
                fromClient(
                    [Parse("s1", Q1, (23,)), Parse("", "SELECT 2"), Sync()],
                    toServer=[Parse("PGTWIST_1", Q1, (23,)), Parse("PGTWIST_2", "SELECT 2")]
                    + [Sync()],
                ),
                fromServer(
                    [ParseComplete(), ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ParseComplete(), ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_extended(self) -> None:
        """
        Once its Bind is sent, the name can be prepared again in the same
        batch, for another query.
        """
        self.script.play(
            [
                fromClient(
                    [Parse("", "DEALLOCATE ALL"), bind(""), Execute(""), Parse("s1", "SELECT 42")]
                    + [bind("s1"), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_3", "DEALLOCATE ALL"), bind("PGTWIST_3"), Execute("")]
                    + [Parse("PGTWIST_4", "SELECT 42"), bind("PGTWIST_4"), Execute(""), Sync()],
                ),
            ]
        )
        self.assertEqual(
            self.script.session.statements,
            {"": StatementKey("DEALLOCATE ALL", (), ""), "s1": StatementKey("SELECT 42", (), "")},
        )
        self.assertEqual(list(serverSession(self.backend).prepared), ["PGTWIST_4"])

    def test_unnamedSurvives(self) -> None:
        """
        After a simple C{DEALLOCATE ALL} the unnamed statement still works;
        PostgreSQL dropped pgtwist's copy, so it is prepared again.
        """
        self.script.play(
            [
                fromClient([Query("DEALLOCATE ALL")], toServer=[Query("DEALLOCATE ALL")]),
                fromServer(
                    [CommandComplete("DEALLOCATE ALL"), ReadyForQuery(b"I")],
                    toClient=[CommandComplete("DEALLOCATE ALL"), ReadyForQuery(b"I")],
                ),
                fromClient(
                    [bind(""), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_2", "SELECT 2"), bind("PGTWIST_2"), Execute("")]
                    + [Sync()],
                ),
            ]
        )
        self.assertEqual(list(self.script.session.statements), [""])


class UnnamedStatementTests(SynchronousTestCase):
    """
    The unnamed statement is renamed like a named one, so it too survives a
    change of backend.
    """

    def test_unnamedRenamed(self) -> None:
        """
        Parse(""), Describe S "" and Bind to "" all use the server-side name.
        """
        script = TransactionScript(self)
        script.play(
            [
                fromClient(
                    [Parse("", "SELECT 2"), Describe(b"S", ""), bind(""), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_1", "SELECT 2"), Describe(b"S", "PGTWIST_1")]
                    + [bind("PGTWIST_1"), Execute(""), Sync()],
                ),
                fromServer(
                    [ParseComplete(), parameterDescription(), ROW, BindComplete()]
                    + [*selected(b"2"), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), parameterDescription(), ROW, BindComplete()]
                    + [*selected(b"2"), ReadyForQuery(b"I")],
                ),
            ]
        )
        self.assertEqual(script.session.statements[""], StatementKey("SELECT 2", (), ""))

    def test_unnamedOnAnotherBackend(self) -> None:
        """
        pg8000 prepares the unnamed statement, then describes it and binds it
        in later transactions; each may land on a different backend.
        """
        script = TransactionScript(self)
        script.play(
            [
                fromClient(
                    [Parse("", "SELECT 2"), Sync()],
                    toServer=[Parse("PGTWIST_1", "SELECT 2"), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ReadyForQuery(b"I")],
                ),
            ]
        )
        script.useBackend(makeBackend(1002))
        script.play(
            [
                fromClient(
                    [Describe(b"S", ""), Sync()],
                    toServer=[Parse("PGTWIST_1", "SELECT 2"), Describe(b"S", "PGTWIST_1"), Sync()],
                ),
                fromServer(
                    [ParseComplete(), parameterDescription(), ROW, ReadyForQuery(b"I")],
                    toClient=[parameterDescription(), ROW, ReadyForQuery(b"I")],
                ),
            ]
        )
        script.useBackend(makeBackend(1003))
        script.play(
            [
                fromClient(
                    [bind(""), Execute(""), Sync()],
                    toServer=[
                        Parse("PGTWIST_1", "SELECT 2"),
                        bind("PGTWIST_1"),
                        Execute(""),
                        Sync(),
                    ],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), *selected(b"2"), ReadyForQuery(b"I")],
                    toClient=[BindComplete(), *selected(b"2"), ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_unnamedReplaced(self) -> None:
        """
        A new Parse("") replaces the client's unnamed statement without a
        duplicate error.
        """
        script = TransactionScript(self)
        script.play(
            [
                fromClient(
                    [Parse("", "SELECT 2"), Parse("", "SELECT 3"), bind(""), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_1", "SELECT 2"), Parse("PGTWIST_2", "SELECT 3")]
                    + [bind("PGTWIST_2"), Execute(""), Sync()],
                ),
            ]
        )
        self.assertEqual(script.session.statements[""], StatementKey("SELECT 3", (), ""))

    def test_missingUnnamedRaisedByPostgreSQL(self) -> None:
        """
        Bind or Describe of an unnamed statement the client does not have is
        PostgreSQL's error, raised at that point, never a use of the
        backend's own unnamed statement (which is pgtwist's).
        """
        script = TransactionScript(self)
        missing = failure("26000", "unnamed prepared statement does not exist")
        for message in (bind(""), Describe(b"S", "")):
            script.play(
                [
                    fromClient(
                        [message, Sync()],
                        toServer=[
                            *raising("26000", "unnamed prepared statement does not exist"),
                            Sync(),
                        ],
                    ),
                    fromServer(
                        [ParseComplete(), BindComplete(), missing, ReadyForQuery(b"I")],
                        toClient=[missing, ReadyForQuery(b"I")],
                    ),
                ]
            )

    def test_skippedParseKeepsUnnamed(self) -> None:
        """
        A Parse("") PostgreSQL skips after an error leaves the client's
        unnamed statement as it was.
        """
        script = TransactionScript(self)
        missing = failure("26000", 'prepared statement "nope" does not exist')
        script.play(
            [
                fromClient(
                    [Parse("", "SELECT 2"), Sync()],
                    toServer=[Parse("PGTWIST_1", "SELECT 2"), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ReadyForQuery(b"I")],
                ),
                fromClient(
                    [bind("nope"), Execute(""), Parse("", "SELECT 3"), Sync()],
                    toServer=[bind("nope"), Execute(""), Parse("PGTWIST_2", "SELECT 3"), Sync()],
                ),
                fromServer([missing, ReadyForQuery(b"I")], toClient=[missing, ReadyForQuery(b"I")]),
            ]
        )
        self.assertEqual(script.session.statements[""], StatementKey("SELECT 2", (), ""))

    def test_failedParseDropsUnnamed(self) -> None:
        """
        A Parse("") that fails itself drops the unnamed statement, as
        PostgreSQL does before parsing.
        """
        script = TransactionScript(self)
        syntax = failure("42601", 'syntax error at or near "SELEC"')
        script.play(
            [
                fromClient(
                    [Parse("", "SELECT 2"), Sync()],
                    toServer=[Parse("PGTWIST_1", "SELECT 2"), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ReadyForQuery(b"I")],
                ),
                fromClient(
                    [Parse("", "SELEC"), Sync()],
                    toServer=[Parse("PGTWIST_2", "SELEC"), Sync()],
                ),
                fromServer([syntax, ReadyForQuery(b"I")], toClient=[syntax, ReadyForQuery(b"I")]),
            ]
        )
        self.assertNotIn("", script.session.statements)

    def test_skippedCloseOfSkippedParse(self) -> None:
        """
        Parse("") then Close of it, both skipped: undone in reverse, the
        client is left with no unnamed statement, as before.
        """
        script = TransactionScript(self)
        missing = failure("26000", 'prepared statement "nope" does not exist')
        script.play(
            [
                fromClient(
                    [bind("nope"), Execute(""), Parse("", "SELECT 2"), Close(b"S", "")] + [Sync()],
                    toServer=[bind("nope"), Execute(""), Parse("PGTWIST_1", "SELECT 2"), Sync()],
                ),
                fromServer([missing, ReadyForQuery(b"I")], toClient=[missing, ReadyForQuery(b"I")]),
            ]
        )
        self.assertEqual(script.session.statements, {})


class RepeatedStatementTests(SynchronousTestCase):
    """
    A driver that parses the same unnamed statement every transaction
    (pgbench -M extended, most drivers' unprepared queries): what pgtwist
    found decoding it the first time is reused, and a changed statement,
    search_path or backend is never confused with it.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)
        self.a = self.script.backends[0]
        self.transaction(Q1, "PGTWIST_1", parsed=True)

    def transaction(self, query: str, server: str, parsed: bool, value: bytes = b"1") -> None:
        """
        Play one transaction of C{query} as the unnamed statement, with a
        Describe of its portal; C{parsed}: PostgreSQL is sent a Parse of
        C{server} (else the client's Parse is answered by pgtwist).
        """
        request = [
            Parse("", query, (23,)),
            bind("", value),
            Describe(b"P", ""),
            Execute(""),
            Sync(),
        ]
        toServer = [bind(server, value), Describe(b"P", ""), Execute(""), Sync()]
        fromPostgres = [BindComplete(), ROW, *selected(value), ReadyForQuery(b"I")]
        if parsed:
            toServer.insert(0, Parse(server, query, (23,)))
            fromPostgres.insert(0, ParseComplete())
        self.script.play(
            [
                fromClient(request, toServer=toServer),
                fromServer(
                    fromPostgres,
                    toClient=[ParseComplete(), BindComplete(), ROW, *selected(value)]
                    + [ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_sameStatementAgain(self) -> None:
        """
        The same Parse again is answered by pgtwist and its Bind renamed as
        before, transaction after transaction.
        """
        self.transaction(Q1, "PGTWIST_1", parsed=False, value=b"2")
        self.transaction(Q1, "PGTWIST_1", parsed=False, value=b"3")
        self.assertEqual(list(serverSession(self.a).prepared), ["PGTWIST_1"])

    def test_otherStatementBetween(self) -> None:
        """
        Another statement in between gets its own server-side name; the
        first one, parsed again, is bound under its own name again.
        """
        self.transaction("SELECT $1::int + 1", "PGTWIST_2", parsed=True)
        self.transaction(Q1, "PGTWIST_1", parsed=False)
        self.transaction("SELECT $1::int + 1", "PGTWIST_2", parsed=False)

    def test_otherBackend(self) -> None:
        """
        On a backend that never prepared it, the statement is prepared
        before the Bind that was renamed without a look before.
        """
        self.transaction(Q1, "PGTWIST_1", parsed=False)
        self.script.useBackend(makeBackend(1002))
        self.transaction(Q1, "PGTWIST_1", parsed=True)

    def test_forgottenName(self) -> None:
        """
        A statement the registry gave a new name (its result type changed)
        is prepared under the new name, not bound under the old one.
        """
        self.script.registry.forget(StatementKey(Q1, (23,), ""), "PGTWIST_1")
        self.transaction(Q1, "PGTWIST_2", parsed=True)
