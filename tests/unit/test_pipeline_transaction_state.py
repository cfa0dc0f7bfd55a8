"""
Tests for L{pgtwist.pipelines.transaction}: session settings carried from
backend to backend, warnings for session-only features, what pgtwist answers
without a backend, and the same scenario fed in every possible cut.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.pipelines._expect import _pinned, _unread
from pgtwist.pipelines._settings import customNames, matchStatements
from pgtwist.pipelines._statements import StatementKey
from pgtwist.pipelines.serverstate import serverSession
from pgtwist.wire import codec, errors
from pgtwist.wire.messages import (
    Bind,
    BindComplete,
    Close,
    CloseComplete,
    CommandComplete,
    DataRow,
    Execute,
    Flush,
    NoticeResponse,
    ParameterStatus,
    Parse,
    ParseComplete,
    Query,
    Sync,
)
from tests.unit._pipelinescript import (
    DEFAULTS,
    STARTUP,
    Chopper,
    Step,
    TransactionScript,
    byteByByte,
    copyData,
    copyDone,
    copyInResponse,
    fromClient,
    fromServer,
    makeBackend,
    one,
    raising,
    ready,
    selected,
    splitAt,
    stateAnswer,
    stateQuery,
    whole,
)

SYNC = Query(
    "SELECT pg_catalog.set_config('application_name', 'app', false); SELECT pg_catalog.set_config('TimeZone', 'Europe/Paris', false); "
    "SELECT pg_catalog.set_config('search_path', 's1', false); SELECT pg_catalog.set_config('statement_timeout', '5s', false)"
)


class SettingsTests(SynchronousTestCase):
    """
    A backend whose settings differ from the client's gets C{SET}s first;
    their responses are pgtwist's.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self, startup=STARTUP, backend=makeBackend(1001, DEFAULTS))
        self.a = self.script.backends[0]
        self.b = makeBackend(1002, DEFAULTS)
        self.script.useBackend(self.b)

    def test_setInjected(self) -> None:
        """
        Reported parameters that differ, and unreported startup settings
        never applied there, are set before the client's query; the
        ParameterStatus, CommandComplete and ReadyForQuery they cause are
        swallowed.
        """
        self.script.play(
            [
                fromClient([Query("SELECT now()")], toServer=[SYNC, Query("SELECT now()")]),
                fromServer(
                    [ParameterStatus("application_name", "app")]
                    + [ParameterStatus("TimeZone", "Europe/Paris"), CommandComplete("SET")]
                    + [ready(), *one(), ready()],
                    toClient=[*one(), ready()],
                ),
            ]
        )
        self.assertEqual(self.b.parameters["TimeZone"], "Europe/Paris")
        self.assertEqual(
            serverSession(self.b).applied, {"search_path": "s1", "statement_timeout": "5s"}
        )
        self.assertEqual(
            serverSession(self.b).fingerprint, self.script.session.settings.fingerprint
        )
        self.assertIsNone(self.script.session.backend)

    def test_unreportedReset(self) -> None:
        """
        An unreported setting another client applied to the backend is
        reset.
        """
        script = TransactionScript(self, backend=makeBackend(1001, DEFAULTS))
        serverSession(self.b).applied = {"work_mem": "1GB"}
        script.useBackend(self.b)
        script.play(
            [
                fromClient(
                    [Query("SELECT 1")],
                    toServer=[Query('RESET "work_mem"'), Query("SELECT 1")],
                ),
                fromServer(
                    [CommandComplete("RESET"), ready(), *one(), ready()],
                    toClient=[*one(), ready()],
                ),
            ]
        )
        self.assertEqual(serverSession(self.b).applied, {})

    def test_sameFingerprintNoSet(self) -> None:
        """
        A backend last synced for equal settings gets no C{SET}.
        """
        self.script.play(
            [
                fromClient([Query("SELECT 1")], toServer=[SYNC, Query("SELECT 1")]),
                fromServer(
                    [ParameterStatus("application_name", "app")]
                    + [ParameterStatus("TimeZone", "Europe/Paris"), CommandComplete("SET")]
                    + [ready(), *one(), ready()],
                    toClient=[*one(), ready()],
                ),
            ]
        )
        twin = TransactionScript(self, startup=STARTUP, backend=self.a)
        twin.useBackend(self.b)
        twin.play(
            [
                fromClient([Query("SELECT 2")], toServer=[Query("SELECT 2")]),
                fromServer([*one(b"2"), ready()], toClient=[*one(b"2"), ready()]),
            ]
        )

    def test_clientParameterStatus(self) -> None:
        """
        A ParameterStatus caused by the client's own query is relayed and
        becomes the client's setting; after the transaction the session's
        state is read (its ReadyForQuery held back meanwhile), and the next
        backend is reset and given that state.
        """
        script = self.script
        script.useBackend(self.a)
        script.play(
            [
                fromClient(
                    [Query("SET DateStyle = German")], toServer=[Query("SET DateStyle = German")]
                ),
                fromServer(
                    [CommandComplete("SET"), ParameterStatus("DateStyle", "German, DMY"), ready()],
                    toClient=[CommandComplete("SET"), ParameterStatus("DateStyle", "German, DMY")],
                    toServer=[stateQuery()],
                ),
                fromServer(stateAnswer({"DateStyle": "German, DMY"}), toClient=[ready()]),
            ]
        )
        settings = script.session.settings
        self.assertEqual(settings.reported["DateStyle"], "German, DMY")
        self.assertEqual(settings.session, {"datestyle": "German, DMY"})
        self.assertEqual(self.a.parameters["DateStyle"], "German, DMY")
        self.assertEqual(serverSession(self.a).fingerprint, settings.fingerprint)
        self.assertIsNone(script.session.backend)
        other = makeBackend(1003, dict(self.a.parameters, DateStyle="ISO, MDY"))
        script.useBackend(other)
        script.play(
            [
                fromClient(
                    [Query("SELECT now()")],
                    toServer=[Query(sql) for sql in matchStatements(settings, "user")]
                    + [Query("SELECT now()")],
                ),
            ]
        )
        self.assertIn(
            "pg_catalog.set_config('datestyle', 'German, DMY', false)",
            matchStatements(settings, "user")[1],
        )

    def test_failedSyncSwallowed(self) -> None:
        """
        A C{SET} PostgreSQL refuses on that backend is logged and its error
        swallowed; the client's own query still runs and is answered.
        """
        refused = errors.error("22023", 'invalid value for parameter "TimeZone"')
        self.script.play(
            [
                fromClient([Query("SELECT 1")], toServer=[SYNC, Query("SELECT 1")]),
                fromServer([refused, ready(), *one(), ready()], toClient=[*one(), ready()]),
            ]
        )
        self.assertIsNone(self.script.session.backend)


class SessionStateTests(SynchronousTestCase):
    """
    What a client does to its session itself follows it, and never reaches
    the next client of its backend.
    """

    def changeRole(self, script: TransactionScript, sql: str) -> None:
        """
        Play C{sql} on C{script}'s backend, after which PostgreSQL shows
        role C{other} and C{my.secret}.
        """
        script.play(
            [
                fromClient([Query(sql)], toServer=[Query(sql)]),
                fromServer(
                    [CommandComplete("SET"), ready()],
                    toClient=[CommandComplete("SET")],
                    toServer=[stateQuery(*customNames(sql.encode()))],
                ),
                fromServer(
                    stateAnswer({"my.secret": "A"}, identity=("user", "other")),
                    toClient=[ready()],
                ),
            ]
        )

    def test_nextClientReset(self) -> None:
        """
        Another client of the pool that gets the backend next has it reset
        first (the role too), and given its own settings.
        """
        first = TransactionScript(self)
        backend = first.backends[0]
        self.changeRole(first, "SET ROLE other; select set_config('my.secret', 'A', false)")
        self.assertEqual(first.session.settings.identity, ("user", "other"))
        self.assertTrue(serverSession(backend).dirty)
        second = TransactionScript(self, backend=backend, pipeline=first.pipeline)
        queries = matchStatements(second.session.settings, "user")
        self.assertEqual(queries[0], "RESET ALL; RESET SESSION AUTHORIZATION; RESET ROLE")
        self.assertNotIn("other", " ".join(queries))
        second.play(
            [
                fromClient(
                    [Query("SELECT 1")],
                    toServer=[*(Query(sql) for sql in queries), Query("SELECT 1")],
                ),
                fromServer(
                    [CommandComplete("RESET"), ready()] * len(queries) + [*one(), ready()],
                    toClient=[*one(), ready()],
                ),
            ]
        )
        self.assertFalse(serverSession(backend).dirty)

    def test_followsClient(self) -> None:
        """
        The client's next transaction on another backend gets its role and
        settings there; back on a backend it left as it is, nothing is sent.
        """
        script = TransactionScript(self)
        first = script.backends[0]
        self.changeRole(script, "SET ROLE other")
        other = makeBackend(1002)
        script.useBackend(other)
        queries = matchStatements(script.session.settings, "user")
        self.assertEqual(queries[-1], 'SET ROLE "other"')
        self.assertIn("pg_catalog.set_config('my.secret', 'A', false)", queries[1])
        script.play(
            [
                fromClient(
                    [Query("SELECT 1")], toServer=[*(Query(q) for q in queries), Query("SELECT 1")]
                )
            ]
        )
        script.play(
            [
                fromServer(
                    [CommandComplete("SET"), ready()] * len(queries) + [*one(), ready()],
                    toClient=[*one(), ready()],
                )
            ]
        )
        script.useBackend(first)
        script.play([fromClient([Query("SELECT 1")], toServer=[Query("SELECT 1")])])

    def test_extendedAnsweredLocally(self) -> None:
        """
        A statement that may change the session is known by its text once:
        a later Parse pgtwist answers itself still makes its Bind's
        transaction end with a state read.
        """
        script = TransactionScript(self)
        sql = "SELECT set_config('my.secret', $1, false)"
        batch = [Parse("", sql), Bind("", ""), Execute(""), Sync()]
        answer = [ParseComplete(), BindComplete(), *selected(), ready()]
        script.play(
            [
                fromClient(
                    batch,
                    toServer=[Parse("PGTWIST_1", sql), Bind("", "PGTWIST_1"), Execute(""), Sync()],
                ),
                fromServer(answer, toClient=answer[:-1], toServer=[stateQuery("my.secret")]),
                fromServer(stateAnswer({"my.secret": "1"}), toClient=[ready()]),
            ]
        )
        self.assertIsNone(script.session.backend)
        script.play(
            [
                fromClient([Parse("", sql), Sync()], toClient=[ParseComplete(), ready()]),
                fromClient(
                    [Bind("", ""), Execute(""), Sync()],
                    toServer=[Bind("", "PGTWIST_1"), Execute(""), Sync()],
                ),
                fromServer(answer[1:], toClient=answer[1:-1], toServer=[stateQuery("my.secret")]),
                fromServer(stateAnswer({"my.secret": "2"}), toClient=[ready()]),
            ]
        )
        self.assertEqual(script.session.settings.session, {"my.secret": "2"})

    def test_stateInPieces(self) -> None:
        """
        The state query's answer is read whatever pieces it comes in.
        """
        script = TransactionScript(self)
        script.play(
            [
                fromClient([Query("SET ROLE other")], toServer=[Query("SET ROLE other")]),
                fromServer(
                    [CommandComplete("SET"), ready()],
                    toClient=[CommandComplete("SET")],
                    toServer=[stateQuery()],
                ),
            ]
        )
        script.play(
            [
                fromServer(
                    stateAnswer({"search_path": "evil"}, identity=("user", "other")),
                    toClient=[ready()],
                )
            ],
            chop=byteByByte,
        )
        self.assertEqual(script.session.settings.session, {"search_path": "evil"})
        self.assertEqual(script.session.settings.identity, ("user", "other"))
        self.assertIsNone(script.session.backend)

    def test_rolledBack(self) -> None:
        """
        A C{SET} in a transaction block is read only when the block has
        ended: after a rollback, PostgreSQL shows nothing of it.
        """
        script = TransactionScript(self)
        script.play(
            [
                fromClient(
                    [Query("BEGIN; SET ROLE other")], toServer=[Query("BEGIN; SET ROLE other")]
                ),
                fromServer(
                    [CommandComplete("SET"), ready(b"T")],
                    toClient=[CommandComplete("SET"), ready(b"T")],
                ),
                fromClient([Query("ROLLBACK")], toServer=[Query("ROLLBACK")]),
                fromServer(
                    [CommandComplete("ROLLBACK"), ready()],
                    toClient=[CommandComplete("ROLLBACK")],
                    toServer=[stateQuery()],
                ),
                fromServer(stateAnswer(), toClient=[ready()]),
            ]
        )
        self.assertIsNone(script.session.settings.identity)
        self.assertIsNone(script.session.backend)

    def test_readFailed(self) -> None:
        """
        When the state cannot be read, the client keeps what it had and the
        backend is reset by the pool before anyone gets it.
        """
        script = TransactionScript(self)
        before = script.session.settings.fingerprint
        kept = len(script.pool.releasedWithoutReset)
        script.play(
            [
                fromClient([Query("SET x.y = 1")], toServer=[Query("SET x.y = 1")]),
                fromServer(
                    [CommandComplete("SET"), ready()],
                    toClient=[CommandComplete("SET")],
                    toServer=[stateQuery("x.y")],
                ),
                fromServer(
                    [
                        errors.error("57014", "canceling statement due to statement timeout"),
                        ready(),
                    ],
                    toClient=[_unread(), ready()],
                ),
            ]
        )
        self.assertEqual(script.session.settings.fingerprint, before)
        self.assertIsNone(script.session.backend)
        self.assertEqual(len(script.pool.releasedWithoutReset), kept)


class WarningTests(SynchronousTestCase):
    """
    Session features that do not survive a transaction get a WARNING notice
    ahead of their results.
    """

    def test_listenRelayed(self) -> None:
        """
        LISTEN runs on the client's backend, which answers it as PostgreSQL
        does, with no warning; before the backend goes back it is made to
        UNLISTEN * (the listener backend listens for the client), and that
        answer is swallowed.
        """
        script = TransactionScript(self)
        script.play(
            [
                fromClient([Query("LISTEN chan")], toServer=[Query("LISTEN chan")]),
                fromServer(
                    [CommandComplete("LISTEN"), ready()],
                    toClient=[CommandComplete("LISTEN"), ready()],
                    toServer=[Query("UNLISTEN *")],
                ),
                fromServer([CommandComplete("UNLISTEN"), ready()]),
            ]
        )
        self.assertIsNone(script.session.backend)
        self.assertEqual(script.session.subscription.channels, {"chan"})

    def test_pinned(self) -> None:
        """
        A query that may create session-only objects is followed by a read
        of the session's state; objects found keep the backend with the
        client (pinned), and the client gets a WARNING naming them before
        its ReadyForQuery.
        """
        cases = [
            ("PREPARE p AS SELECT 1", "SQL prepared statements"),
            ("CREATE TEMP TABLE t (a int)", "temporary tables"),
            ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "WITH HOLD cursors"),
            ("SELECT pg_advisory_lock(1)", "session advisory locks"),
        ]
        for sql, kind in cases:
            script = TransactionScript(self)
            script.play(
                [
                    fromClient([Query(sql)], toServer=[Query(sql)]),
                    fromServer(
                        [CommandComplete("OK"), ready()],
                        toClient=[CommandComplete("OK")],
                        toServer=[stateQuery()],
                    ),
                    fromServer(stateAnswer(objects={kind: 1}), toClient=[_pinned([kind]), ready()]),
                ]
            )
            self.assertIs(script.session.backend, script.backends[0])
            self.assertEqual(script.session.pinned, kind)
            # Idle between transactions (disconnect_client may close it).
            self.assertFalse(script.session.busy())
            # Pinned: the next transaction runs there, and its end checks
            # again; once the objects are gone the backend goes back.
            script.play(
                [
                    fromClient([Query("SELECT 1")], toServer=[Query("SELECT 1")]),
                    fromServer([*one(), ready()], toClient=one(), toServer=[stateQuery()]),
                    fromServer(stateAnswer(objects={kind: 1}), toClient=[ready()]),
                ]
            )
            self.assertIs(script.session.backend, script.backends[0])
            kept = len(script.pool.releasedWithoutReset)
            script.play(
                [
                    fromClient([Query("DISCARD ALL")], toServer=[Query("DISCARD ALL")]),
                    fromServer(
                        [CommandComplete("DISCARD ALL"), ready()],
                        toClient=[CommandComplete("DISCARD ALL")],
                        toServer=[stateQuery()],
                    ),
                    fromServer(stateAnswer(), toClient=[ready()]),
                ]
            )
            self.assertIsNone(script.session.backend)
            self.assertEqual(script.session.pinned, "")
            self.assertEqual(script.pool.releasedWithoutReset[kept:], [script.backends[0]])

    def test_pinnedWarningFields(self) -> None:
        """
        The pinning notice is a WARNING (01000), not a NOTICE, naming what
        keeps the backend.
        """
        notice = codec.decodeBackend(b"N", _pinned(["temporary tables"])[5:])
        assert isinstance(notice, NoticeResponse)
        fields = dict(notice.fields)
        self.assertEqual(
            (fields[b"S"], fields[b"V"], fields[b"C"]), ("WARNING", "WARNING", "01000")
        )
        self.assertIn("temporary tables", fields[b"M"])

    def test_pinnedClientLeaves(self) -> None:
        """
        A pinned client that disconnects gives its backend back to be reset
        (DISCARD ALL) before anyone else gets it.
        """
        script = TransactionScript(self)
        sql = "CREATE TEMP TABLE t (a int)"
        script.play(
            [
                fromClient([Query(sql)], toServer=[Query(sql)]),
                fromServer(
                    [CommandComplete("OK"), ready()],
                    toClient=[CommandComplete("OK")],
                    toServer=[stateQuery()],
                ),
                fromServer(
                    stateAnswer(objects={"temporary tables": 2}),
                    toClient=[_pinned(["temporary tables"]), ready()],
                ),
            ]
        )
        kept = len(script.pool.releasedWithoutReset)
        script.session.frontendLost(Failure(ConnectionDone()))
        self.assertEqual(script.pool.released[-1], script.backends[0])
        self.assertEqual(len(script.pool.releasedWithoutReset), kept)

    def test_listenExtended(self) -> None:
        """
        LISTEN through the extended protocol, parsed by PostgreSQL or
        answered by pgtwist, gets no warning either.
        """
        script = TransactionScript(self)
        script.play(
            [
                fromClient(
                    [Parse("", "LISTEN chan"), Bind("", ""), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_1", "LISTEN chan"), Bind("", "PGTWIST_1")]
                    + [Execute(""), Sync()],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), CommandComplete("LISTEN"), ready()],
                    toClient=[ParseComplete(), BindComplete(), CommandComplete("LISTEN"), ready()],
                    toServer=[Query("UNLISTEN *")],
                ),
                fromServer([CommandComplete("UNLISTEN"), ready()]),
            ]
        )
        self.assertEqual(script.session.subscription.channels, {"chan"})

    def test_warnedExtendedInPosition(self) -> None:
        """
        Behind responses still owed, the warning comes right before the
        warned statement's ParseComplete.
        """
        script = TransactionScript(self)
        lock = "SELECT pg_advisory_lock(1)"
        script.play(
            [
                fromClient(
                    [Query("SELECT 1"), Parse("", lock), Bind("", ""), Execute(""), Sync()],
                    toServer=[Query("SELECT 1"), Parse("PGTWIST_1", lock), Bind("", "PGTWIST_1")]
                    + [Execute(""), Sync()],
                ),
                fromServer(
                    [*one(), ready(), ParseComplete(), BindComplete(), *selected(), ready()],
                    toClient=[*one(), ready(), ParseComplete(), BindComplete(), *selected()],
                    toServer=[stateQuery()],
                ),
                fromServer(
                    stateAnswer(objects={"session advisory locks": 1}),
                    toClient=[_pinned(["session advisory locks"]), ready()],
                ),
            ]
        )

    def test_notWarned(self) -> None:
        """
        Transaction-scoped locks and look-alike text are not warned about.
        """
        for sql in (
            "SELECT pg_advisory_xact_lock(1)",
            "SELECT 'listen'",
            "CREATE TABLE temperatures (a int)",
            "DECLARE c CURSOR FOR SELECT 1",
        ):
            script = TransactionScript(self)
            script.play([fromClient([Query(sql)], toServer=[Query(sql)])])


class LocalAnswerTests(SynchronousTestCase):
    """
    Between transactions pgtwist answers Parse of a statement PostgreSQL
    already accepted, Close, Flush and Sync without borrowing a backend.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)
        self.a = self.script.backends[0]
        self.prepareOnBackend(self.script)
        self.acquired = len(self.script.pool.acquired)

    def prepareOnBackend(self, script: TransactionScript) -> None:
        """
        The client of C{script} prepares C{s1} (C{SELECT 1}) on a backend,
        and PostgreSQL accepts it.
        """
        script.play(
            [
                fromClient(
                    [Parse("s1", "SELECT 1"), Sync()],
                    toServer=[Parse("PGTWIST_1", "SELECT 1"), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ready()],
                    toClient=[ParseComplete(), ready()],
                ),
            ]
        )

    def test_verifiedParse(self) -> None:
        """
        Parse of a known-good statement and Sync are answered at once.
        """
        self.script.play(
            [fromClient([Parse("s2", "SELECT 1"), Sync()], toClient=[ParseComplete(), ready()])]
        )
        self.assertEqual(len(self.script.pool.acquired), self.acquired)
        self.assertIn("s2", self.script.session.statements)

    def test_verifiedInAnotherPool(self) -> None:
        """
        A statement PostgreSQL accepted in another pool (database, user)
        needs a backend of this one: another database may lack its table, and
        C{"$user"} in the search_path names another schema for another user.
        """
        for key in [("otherdb", "user"), ("db", "otheruser")]:
            self.prepareOnBackend(TransactionScript(self, pipeline=self.script.pipeline, key=key))
            self.assertTrue(self.script.registry.isVerified(key, StatementKey("SELECT 1", (), "")))

    def test_closeFlushSync(self) -> None:
        """
        Close of a statement, Flush and Sync need no backend either.
        """

        self.script.play(
            [
                fromClient([Parse("s2", "SELECT 1"), Flush()], toClient=[ParseComplete()]),
                fromClient([Close(b"S", "s1"), Sync()], toClient=[CloseComplete(), ready()]),
            ]
        )
        self.assertEqual(len(self.script.pool.acquired), self.acquired)
        self.assertEqual(list(self.script.session.statements), ["s2"])

    def test_unverifiedParseAcquires(self) -> None:
        """
        A statement PostgreSQL never accepted needs a backend.
        """
        self.script.play(
            [
                fromClient(
                    [Parse("s2", "SELECT 2"), Sync()],
                    toServer=[Parse("PGTWIST_2", "SELECT 2"), Sync()],
                ),
            ]
        )
        self.assertEqual(len(self.script.pool.acquired), self.acquired + 1)

    def test_answeredThenAcquired(self) -> None:
        """
        What follows the locally answered messages goes to a backend; the
        answers go out in one write with the backend's first answer, before
        it.
        """
        self.script.play(
            [
                fromClient(
                    [Parse("s2", "SELECT 1"), Bind("", "s2"), Execute(""), Sync()],
                    toServer=[Bind("", "PGTWIST_1"), Execute(""), Sync()],
                    toClient=[],
                ),
                fromServer(
                    [BindComplete(), DataRow((b"1",)), CommandComplete("SELECT 1"), ready()],
                    toClient=[
                        ParseComplete(),
                        BindComplete(),
                        DataRow((b"1",)),
                        CommandComplete("SELECT 1"),
                        ready(),
                    ],
                ),
            ]
        )

    def test_owedRepliesSettleStatements(self) -> None:
        """
        Replies owed from before the backend came lead its first answer,
        ahead of what the rest of the batch synthesizes, and the next batch
        naming a statement parsed in it is forwarded at once, not held.
        """
        self.script.play(
            [
                fromClient(
                    [Parse("s2", "SELECT 1"), Bind("", "s2"), Execute("")]
                    + [Parse("s3", "SELECT 1"), Bind("", "s3"), Execute(""), Sync()],
                    toServer=[Bind("", "PGTWIST_1"), Execute("")]
                    + [Bind("", "PGTWIST_1"), Execute(""), Sync()],
                    toClient=[],
                ),
                fromServer(
                    [BindComplete(), DataRow((b"1",)), CommandComplete("SELECT 1")]
                    + [BindComplete(), DataRow((b"1",)), CommandComplete("SELECT 1"), ready()],
                    toClient=[ParseComplete(), BindComplete(), DataRow((b"1",))]
                    + [CommandComplete("SELECT 1"), ParseComplete(), BindComplete()]
                    + [DataRow((b"1",)), CommandComplete("SELECT 1"), ready()],
                ),
                fromClient(
                    [Bind("", "s3"), Execute(""), Sync()],
                    toServer=[Bind("", "PGTWIST_1"), Execute(""), Sync()],
                ),
            ]
        )

    def test_duplicateNameNeedsBackend(self) -> None:
        """
        A Parse of a name the client already has is PostgreSQL's error to
        raise, so it goes to a backend.
        """
        self.script.play(
            [
                fromClient(
                    [Parse("s1", "SELECT 1"), Sync()],
                    toServer=[*raising("42P05", 'prepared statement "s1" already exists'), Sync()],
                )
            ]
        )
        self.assertEqual(len(self.script.pool.acquired), self.acquired + 1)
        self.assertIs(self.script.session.backend, self.a)

    def test_partialMessageWaits(self) -> None:
        """
        Half a message borrows nothing until the rest arrives.
        """
        data = codec.encode(Query("SELECT 1"))
        self.script.session.frontendDataReceived(data[:7])
        self.assertEqual(len(self.script.pool.acquired), self.acquired)
        self.script.session.frontendDataReceived(data[7:])
        self.assertEqual(len(self.script.pool.acquired), self.acquired + 1)
        self.assertEqual(self.script.newBackendOutput(), {1001: data})


def _splitScenario(case: SynchronousTestCase, chop: Chopper) -> TransactionScript:
    """
    Play a scenario touching every part of the pipeline with each step's
    bytes cut by C{chop}.
    """
    q = "SELECT $1::int"
    missing = errors.error("26000", 'prepared statement "nope" does not exist')
    script = TransactionScript(
        case, startup={"TimeZone": "Europe/Paris"}, backend=makeBackend(1001, DEFAULTS)
    )
    script.useBackend(makeBackend(1002, DEFAULTS))
    steps: list[Step] = [
        fromClient(
            [Parse("s1", q, (23,)), Bind("", "s1", (), (b"7",), ()), Execute(""), Sync()],
            toServer=[
                Query("SELECT pg_catalog.set_config('TimeZone', 'Europe/Paris', false)"),
                Parse("PGTWIST_1", q, (23,)),
            ]
            + [Bind("", "PGTWIST_1", (), (b"7",), ()), Execute(""), Sync()],
        ),
        fromServer(
            [ParameterStatus("TimeZone", "Europe/Paris"), CommandComplete("SET"), ready()]
            + [ParseComplete(), BindComplete(), DataRow((b"7",)), CommandComplete("SELECT 1")]
            + [ready()],
            toClient=[ParseComplete(), BindComplete(), DataRow((b"7",))]
            + [CommandComplete("SELECT 1"), ready()],
        ),
        fromClient([Query("COPY t FROM STDIN")], toServer=[Query("COPY t FROM STDIN")]),
        fromServer([copyInResponse()], toClient=[copyInResponse()]),
        fromClient(
            [copyData(b"1\n"), copyData(b"2\n"), copyDone()],
            toServer=[copyData(b"1\n"), copyData(b"2\n"), copyDone()],
        ),
        fromServer(
            [CommandComplete("COPY 2"), ready()], toClient=[CommandComplete("COPY 2"), ready()]
        ),
        fromClient(
            [Parse("s2", q, (23,)), Bind("", "s2", (), (b"8",), ()), Execute(""), Sync()],
            toServer=[Bind("", "PGTWIST_1", (), (b"8",), ()), Execute(""), Sync()],
        ),
        fromServer(
            [BindComplete(), DataRow((b"8",)), CommandComplete("SELECT 1"), ready()],
            toClient=[ParseComplete(), BindComplete(), DataRow((b"8",))]
            + [CommandComplete("SELECT 1"), ready()],
        ),
        fromClient([Query("LISTEN chan")], toServer=[Query("LISTEN chan")]),
        fromServer(
            [CommandComplete("LISTEN"), ready()],
            toClient=[CommandComplete("LISTEN"), ready()],
            toServer=[Query("UNLISTEN *")],
        ),
        fromServer([CommandComplete("UNLISTEN"), ready()]),
        fromClient(
            [Bind("", "nope"), Execute(""), Parse("s3", q, (23,)), Sync()],
            toServer=[Bind("", "nope"), Execute(""), Sync()],
        ),
        fromServer([missing, ready()], toClient=[missing, ready()]),
    ]
    script.play(steps, chop)
    case.assertIsNone(script.session.backend)
    case.assertEqual(sorted(script.session.statements), ["s1", "s2"])
    return script


class SplitTests(SynchronousTestCase):
    """
    TCP may cut messages anywhere: the same scenario gives the same output
    whatever the cuts.
    """

    def test_whole(self) -> None:
        """
        Each step in one chunk.
        """
        _splitScenario(self, whole)

    def test_byteByByte(self) -> None:
        """
        One byte per C{dataReceived}, both sides.
        """
        _splitScenario(self, byteByByte)

    def test_everyPosition(self) -> None:
        """
        Each step cut in two at every position.
        """
        for position in range(1, 120):
            _splitScenario(self, splitAt(position))
