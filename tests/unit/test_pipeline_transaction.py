"""
Tests for L{pgtwist.pipelines.transaction}: login, borrowing a backend per
transaction, COPY and endings, as message-in/message-out tables over the
fakes of L{pgtwist.testing} (the harness is L{tests.unit._pipelinescript}).
Session settings, warnings, local answers and split input are in
L{tests.unit.test_pipeline_transaction_state}; prepared statements in
L{tests.unit.test_pipeline_transaction_statements} and
L{tests.unit.test_pipeline_transaction_errors}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.net.backend import BackendGone
from pgtwist.pipelines._statements import StatementRegistry
from pgtwist.pipelines.serverstate import serverSession
from pgtwist.pipelines.transaction import TransactionPipelineSession
from pgtwist.pool.stats import Histogram
from pgtwist.testing import FakeBackendPool, FakeFrontendLink
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.messages import (
    Bind,
    BindComplete,
    CommandComplete,
    DataRow,
    ErrorResponse,
    Execute,
    Flush,
    NoticeResponse,
    Parse,
    ParseComplete,
    Query,
    Sync,
    Terminate,
)
from tests.unit._pipelinescript import (
    DEFAULTS,
    STARTUP,
    ReportingBackend,
    TransactionScript,
    copyData,
    copyDone,
    copyFail,
    copyInResponse,
    copyOutResponse,
    fromClient,
    fromServer,
    makeBackend,
    one,
    ready,
    stateAnswer,
    stateQuery,
    wire,
)


class LoginTests(SynchronousTestCase):
    """
    Login borrows a backend once to apply the startup settings and learn
    what to report, then gives it back.
    """

    def test_startupSettingsApplied(self) -> None:
        """
        The login backend runs C{RESET ALL} then a C{SET} per startup
        setting, C{options} included; the client is told the resulting
        parameters.
        """
        backend = makeBackend(1001, DEFAULTS)
        script = TransactionScript(self, startup=STARTUP, backend=backend)
        self.assertEqual(script.pool.acquired, [(("db", "user"), None)])
        self.assertEqual(
            backend.queries,
            [
                "RESET ALL; "
                "SELECT pg_catalog.set_config('application_name', 'app', false); "
                "SELECT pg_catalog.set_config('TimeZone', 'Europe/Paris', false); "
                "SELECT pg_catalog.set_config('search_path', 's1', false); "
                "SELECT pg_catalog.set_config('statement_timeout', '5s', false)"
            ],
        )
        expected = dict(DEFAULTS, application_name="app", TimeZone="Europe/Paris")
        self.assertEqual(script.frontend.loginParameters, expected)
        self.assertIsInstance(script.frontend.loginProcessId, int)
        self.assertGreater(script.frontend.loginProcessId, 0)
        self.assertEqual(
            serverSession(backend).applied, {"search_path": "s1", "statement_timeout": "5s"}
        )
        self.assertEqual(serverSession(backend).fingerprint, script.session.settings.fingerprint)
        self.assertEqual(script.session.settings.searchPath, "s1")

    def test_backendReleasedAfterLogin(self) -> None:
        """
        The login backend goes back without a reset, nothing was relayed,
        and the client is not attached to it.
        """
        script = TransactionScript(self)
        self.assertEqual(script.pool.releasedWithoutReset, [script.backends[0]])
        self.assertIsNone(script.session.backend)
        self.assertEqual(bytes(script.backends[0].written), b"")
        self.assertFalse(script.frontend.failed)

    def test_settingErrorIsFatal(self) -> None:
        """
        A startup setting PostgreSQL refuses fails the login with
        PostgreSQL's own fields, at FATAL severity as PostgreSQL would have.
        """
        backend = makeBackend(1001, DEFAULTS)
        backend.queryError = ErrorResponse(
            (
                (b"S", "ERROR"),
                (b"V", "ERROR"),
                (b"C", "22023"),
                (b"M", 'invalid value for parameter "TimeZone": "Mars"'),
                (b"R", "parse_and_validate_value"),
            )
        )
        script = TransactionScript(self, startup={"TimeZone": "Mars"}, backend=backend)
        self.assertEqual(
            script.frontend.failedWith,
            ErrorResponse(
                (
                    (b"S", "FATAL"),
                    (b"V", "FATAL"),
                    (b"C", "22023"),
                    (b"M", 'invalid value for parameter "TimeZone": "Mars"'),
                    (b"R", "parse_and_validate_value"),
                )
            ),
        )
        self.assertIsNone(script.frontend.loginParameters)
        self.assertEqual(script.pool.releasedWithoutReset, [backend])

    def test_invalidOptions(self) -> None:
        """
        A switch in C{options} pgtwist cannot apply fails the login without
        borrowing a backend.
        """
        script = TransactionScript(self, startup={"options": "-x"})
        assert script.frontend.failedWith is not None
        self.assertEqual(script.frontend.failedWith.code, constants.SQLSTATE_PROTOCOL_VIOLATION)
        self.assertEqual(script.frontend.failedWith.severity, "FATAL")
        self.assertEqual(script.pool.acquired, [])

    def test_backendGoneDuringLogin(self) -> None:
        """
        A backend that dies while applying the settings is discarded and
        the login fails with the pool's reason.
        """

        class DyingBackend(ReportingBackend):
            """
            A backend lost while running pgtwist's own query.
            """

            def simpleQuery(self, sql: str) -> Deferred[ErrorResponse | None]:
                """
                Fail as a lost connection does.
                """
                return fail(BackendGone("connection lost"))

        backend = DyingBackend(1001)
        script = TransactionScript(self, backend=backend)
        self.assertEqual(script.pool.discarded, [(backend, "connection lost")])
        self.assertIsNotNone(script.frontend.failedFromPool)

    def test_acquireFailure(self) -> None:
        """
        No backend for the login: the pool's failure is the client's.
        """
        frontend = FakeFrontendLink()
        pool = FakeBackendPool(immediate=False)
        session = TransactionPipelineSession(frontend, pool, Clock(), StatementRegistry(), 10)
        session.begin()
        self.assertFalse(frontend.reading)
        pool.pending[0].errback(RuntimeError("no"))
        self.assertIsNotNone(frontend.failedFromPool)

    def test_clientGoneDuringLoginAcquire(self) -> None:
        """
        A client that leaves while its login waits for a backend cancels
        the wait; a backend that arrives anyway goes straight back.
        """
        frontend = FakeFrontendLink()
        pool = FakeBackendPool(immediate=False)
        session = TransactionPipelineSession(frontend, pool, Clock(), StatementRegistry(), 10)
        session.begin()
        session.frontendLost(Failure(ConnectionError()))
        self.assertEqual(pool.cancelled, pool.pending)
        self.assertFalse(frontend.failed)


class RelayTests(SynchronousTestCase):
    """
    A backend is attached at a transaction's first message and given back
    when ReadyForQuery says the backend is idle.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)
        self.a = self.script.backends[0]
        self.pool = self.script.pool

    def test_simpleQuery(self) -> None:
        """
        A query outside a transaction borrows a backend until its
        ReadyForQuery C{I}; cancels go to that backend meanwhile.
        """
        self.script.play([fromClient([Query("SELECT 1")], toServer=[Query("SELECT 1")])])
        self.assertIs(self.script.session.backend, self.a)
        self.assertIs(self.script.frontend.cancelTarget, self.a)
        self.assertEqual(self.pool.acquired[-1], (("db", "user"), None))
        self.script.play([fromServer([*one(), ready()], toClient=[*one(), ready()])])
        self.assertIsNone(self.script.session.backend)
        self.assertIsNone(self.script.frontend.cancelTarget)
        self.assertEqual(self.pool.releasedWithoutReset, [self.a, self.a])
        self.assertTrue(self.script.frontend.reading)

    def test_transactionKeepsBackend(self) -> None:
        """
        Between BEGIN and COMMIT the backend stays, whether the transaction
        is open (C{T}) or failed (C{E}).
        """
        failed = errors.error("22012", "division by zero")
        self.script.play(
            [
                fromClient([Query("BEGIN")], toServer=[Query("BEGIN")]),
                fromServer(
                    [CommandComplete("BEGIN"), ready(b"T")],
                    toClient=[CommandComplete("BEGIN"), ready(b"T")],
                ),
                fromClient([Query("SELECT 1")], toServer=[Query("SELECT 1")]),
                fromServer([*one(), ready(b"T")], toClient=[*one(), ready(b"T")]),
                fromClient([Query("SELECT 1/0")], toServer=[Query("SELECT 1/0")]),
                fromServer([failed, ready(b"E")], toClient=[failed, ready(b"E")]),
            ]
        )
        self.assertIs(self.script.session.backend, self.a)
        self.assertEqual(self.pool.releasedWithoutReset, [self.a])
        self.script.play(
            [
                fromClient([Query("COMMIT")], toServer=[Query("COMMIT")]),
                fromServer(
                    [CommandComplete("ROLLBACK"), ready()],
                    toClient=[CommandComplete("ROLLBACK"), ready()],
                ),
            ]
        )
        self.assertIsNone(self.script.session.backend)
        self.assertEqual(self.pool.releasedWithoutReset, [self.a, self.a])

    def test_pipelinedQueries(self) -> None:
        """
        Several queries in one chunk keep the backend until the last
        ReadyForQuery.
        """
        queries = [Query("SELECT 1"), Query("SELECT 2"), Query("SELECT 3")]
        self.script.play(
            [
                fromClient(queries, toServer=queries),
                fromServer([*one(), ready(), *one(b"2")], toClient=[*one(), ready(), *one(b"2")]),
                fromServer([ready(), *one(b"3")], toClient=[ready(), *one(b"3")]),
            ]
        )
        self.assertIs(self.script.session.backend, self.a)
        self.script.play([fromServer([ready()], toClient=[ready()])])
        self.assertIsNone(self.script.session.backend)

    def test_queryTime(self) -> None:
        """
        Each query's time, from when it went to the server to its
        ReadyForQuery, reaches SHOW STATS' totals and the query-time
        histogram, for simple queries, pipelined ones (each from the
        previous answer) and an extended batch up to its Sync.
        """
        clock = self.script.session.clock
        assert isinstance(clock, Clock)
        stats = self.pool.stats
        self.script.play([fromClient([Query("SELECT 1")], toServer=[Query("SELECT 1")])])
        clock.advance(0.25)
        self.script.play([fromServer([*one(), ready()], toClient=[*one(), ready()])])
        self.assertEqual((stats.queryCount, stats.queryTime), (1, 250000))
        clock.advance(5)  # the client's own time between queries does not count
        queries = [Query("SELECT 1"), Query("SELECT 2")]
        self.script.play([fromClient(queries, toServer=queries)])
        clock.advance(0.5)
        self.script.play([fromServer([*one(), ready()], toClient=[*one(), ready()])])
        clock.advance(0.125)
        self.script.play([fromServer([*one(b"2"), ready()], toClient=[*one(b"2"), ready()])])
        self.assertEqual((stats.queryCount, stats.queryTime), (3, 875000))
        batch = [Parse("", "SELECT 1"), Bind("", ""), Execute(""), Sync()]
        self.script.play(
            [
                fromClient(
                    batch,
                    toServer=[Parse("PGTWIST_1", "SELECT 1"), Bind("", "PGTWIST_1")]
                    + [Execute(""), Sync()],
                )
            ]
        )
        clock.advance(2)
        answer = [ParseComplete(), BindComplete(), DataRow((b"1",)), CommandComplete("SELECT 1")]
        self.script.play([fromServer([*answer, ready()], toClient=[*answer, ready()])])
        self.assertEqual((stats.queryCount, stats.queryTime), (4, 2875000))
        expected = Histogram()
        for seconds in (0.25, 0.5, 0.125, 2.0):
            expected.observe(seconds)
        histogram = stats.queryHistogram
        self.assertEqual((histogram.count, histogram.sum), (4, 2.875))
        self.assertEqual(histogram.counts, expected.counts)

    def test_multiStatementQuery(self) -> None:
        """
        A query with several statements gets one ReadyForQuery, after which
        the backend goes back.
        """
        self.script.play(
            [
                fromClient([Query("SELECT 1; SELECT 2")], toServer=[Query("SELECT 1; SELECT 2")]),
                fromServer([*one(), *one(b"2")], toClient=[*one(), *one(b"2")]),
            ]
        )
        self.assertIs(self.script.session.backend, self.a)
        self.script.play([fromServer([ready()], toClient=[ready()])])
        self.assertIsNone(self.script.session.backend)

    def test_flushWithoutSync(self) -> None:
        """
        Flush makes PostgreSQL answer without ending the batch: the backend
        stays until the Sync's ReadyForQuery.
        """
        self.script.play(
            [
                fromClient(
                    [Parse("", "SELECT 1"), Bind("", ""), Execute(""), Flush()],
                    toServer=[Parse("PGTWIST_1", "SELECT 1"), Bind("", "PGTWIST_1")]
                    + [Execute(""), Flush()],
                ),
                fromServer(
                    [
                        ParseComplete(),
                        BindComplete(),
                        DataRow((b"1",)),
                        CommandComplete("SELECT 1"),
                    ],
                    toClient=[ParseComplete(), BindComplete(), DataRow((b"1",))]
                    + [CommandComplete("SELECT 1")],
                ),
            ]
        )
        self.assertIs(self.script.session.backend, self.a)
        self.script.play(
            [
                fromClient([Sync()], toServer=[Sync()]),
                fromServer([ready()], toClient=[ready()]),
            ]
        )
        self.assertIsNone(self.script.session.backend)

    def test_functionCall(self) -> None:
        """
        A FunctionCall is relayed and answered like a query.
        """
        call = codec.frame(b"F", b"\x00\x00\x04\xd2\x00\x00\x00\x00\x00\x00")
        result = codec.frame(b"V", b"\x00\x00\x00\x01x")
        self.script.play(
            [
                fromClient([call], toServer=[call]),
                # Any function may change the session (set_config by its
                # OID): its state is read before the backend goes back.
                fromServer([result, ready()], toClient=[result], toServer=[stateQuery()]),
                fromServer(stateAnswer(), toClient=[ready()]),
            ]
        )
        self.assertIsNone(self.script.session.backend)

    def test_pendingAcquireHoldsData(self) -> None:
        """
        While the pool looks for a backend, the client is still read (no
        epoll_ctl calls for a client that sends nothing more) until it sends
        more, which is kept and pauses its reading; all of it goes to the
        backend that comes, and reading resumes.
        """
        self.pool.immediate = False
        b = makeBackend(1002)
        self.script.useBackend(b)
        self.script.play([fromClient([Query("SELECT 1")])])
        self.assertTrue(self.script.frontend.reading)
        self.script.play([fromClient([Query("SELECT 2")])])
        self.assertFalse(self.script.frontend.reading)
        self.pool.pending[0].callback(b)
        self.assertEqual(bytes(b.written), wire([Query("SELECT 1"), Query("SELECT 2")]))
        self.assertTrue(self.script.frontend.reading)
        self.assertIs(self.script.session.backend, b)

    def test_acquireFailure(self) -> None:
        """
        No backend for a transaction: the pool's failure is reported.
        """
        self.pool.immediate = False
        self.script.play([fromClient([Query("SELECT 1")])])
        self.pool.pending[0].errback(RuntimeError("pool timeout"))
        self.assertIsNotNone(self.script.frontend.failedFromPool)

    def test_portalSuspended(self) -> None:
        """
        Execute with a row limit ends at PortalSuspended; the next Execute
        of the portal and the Sync are relayed and answered in order.
        """
        suspended = codec.frame(b"s", b"")
        self.script.play(
            [
                fromClient(
                    [Parse("", "SELECT 1"), Bind("c", ""), Execute("c", 1), Flush()],
                    toServer=[Parse("PGTWIST_1", "SELECT 1"), Bind("c", "PGTWIST_1")]
                    + [Execute("c", 1), Flush()],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), DataRow((b"1",)), suspended],
                    toClient=[ParseComplete(), BindComplete(), DataRow((b"1",)), suspended],
                ),
                fromClient([Execute("c", 1), Sync()], toServer=[Execute("c", 1), Sync()]),
                fromServer(
                    [CommandComplete("SELECT 0"), ready()],
                    toClient=[CommandComplete("SELECT 0"), ready()],
                ),
            ]
        )
        self.assertIsNone(self.script.session.backend)

    def test_emptyQuery(self) -> None:
        """
        An empty query gets EmptyQueryResponse and ReadyForQuery.
        """
        empty = codec.frame(b"I", b"")
        self.script.play(
            [
                fromClient([Query("")], toServer=[Query("")]),
                fromServer([empty, ready()], toClient=[empty, ready()]),
            ]
        )
        self.assertIsNone(self.script.session.backend)

    def test_unexpectedMessageRelayed(self) -> None:
        """
        A message PostgreSQL sends when nothing is owed (an asynchronous
        notice) still reaches the client.
        """
        notice = NoticeResponse(errors.errorResponse("NOTICE", "00000", "hello").fields)
        self.script.play(
            [
                fromClient([Query("BEGIN")], toServer=[Query("BEGIN")]),
                fromServer(
                    [CommandComplete("BEGIN"), ready(b"T")],
                    toClient=[CommandComplete("BEGIN"), ready(b"T")],
                ),
                fromServer([notice], toClient=[notice]),
            ]
        )


class CopyTests(SynchronousTestCase):
    """
    COPY data is relayed both ways; PostgreSQL ignores Sync during COPY FROM
    STDIN, so must pgtwist.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)

    def test_copyFromStdin(self) -> None:
        """
        COPY FROM STDIN through a simple query: CopyInResponse, the client's
        CopyData and CopyDone, then CommandComplete and ReadyForQuery.
        """
        sql = "COPY t FROM STDIN"
        self.script.play(
            [
                fromClient([Query(sql)], toServer=[Query(sql)]),
                fromServer([copyInResponse()], toClient=[copyInResponse()]),
                fromClient(
                    [copyData(b"1\n"), copyData(b"2\n"), copyDone()],
                    toServer=[copyData(b"1\n"), copyData(b"2\n"), copyDone()],
                ),
                fromServer(
                    [CommandComplete("COPY 2"), ready()],
                    toClient=[CommandComplete("COPY 2"), ready()],
                ),
            ]
        )
        self.assertIsNone(self.script.session.backend)

    def test_copyFail(self) -> None:
        """
        CopyFail ends the COPY with PostgreSQL's error.
        """
        sql = "COPY t FROM STDIN"
        failed = errors.error("57014", "COPY from stdin failed: no")
        self.script.play(
            [
                fromClient([Query(sql)], toServer=[Query(sql)]),
                fromServer([copyInResponse()], toClient=[copyInResponse()]),
                fromClient(
                    [copyData(b"1\n"), copyFail("no")],
                    toServer=[copyData(b"1\n"), copyFail("no")],
                ),
                fromServer([failed, ready()], toClient=[failed, ready()]),
            ]
        )
        self.assertIsNone(self.script.session.backend)

    def test_copyToStdout(self) -> None:
        """
        COPY TO STDOUT: CopyOutResponse, CopyData, CopyDone, CommandComplete.
        """
        sql = "COPY t TO STDOUT"
        out = [copyOutResponse(), copyData(b"1\n"), copyData(b"2\n"), copyDone()]
        self.script.play(
            [
                fromClient([Query(sql)], toServer=[Query(sql)]),
                fromServer(
                    [*out, CommandComplete("COPY 2"), ready()],
                    toClient=[*out, CommandComplete("COPY 2"), ready()],
                ),
            ]
        )
        self.assertIsNone(self.script.session.backend)

    def test_copyFromStdinExtended(self) -> None:
        """
        pg8000 and libpq send COPY FROM STDIN with Execute and Sync, then the
        data, CopyDone and another Sync: PostgreSQL ignores the first Sync
        and answers one ReadyForQuery, after which the backend goes back.
        """
        sql = "COPY t FROM STDIN"
        script = self.script
        script.play(
            [
                fromClient(
                    [Parse("", sql), Bind("", ""), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_1", sql), Bind("", "PGTWIST_1"), Execute(""), Sync()],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), copyInResponse()],
                    toClient=[ParseComplete(), BindComplete(), copyInResponse()],
                ),
                fromClient(
                    [copyData(b"1\n"), copyDone(), Sync()],
                    toServer=[copyData(b"1\n"), copyDone(), Sync()],
                ),
                fromServer(
                    [CommandComplete("COPY 1"), ready()],
                    toClient=[CommandComplete("COPY 1"), ready()],
                ),
            ]
        )
        self.assertIsNone(script.session.backend)
        self.assertEqual(script.pool.releasedWithoutReset[-1], script.backends[0])

    def test_copyFromStdinExtendedNoFirstSync(self) -> None:
        """
        A client that waits for CopyInResponse before sending any Sync gets
        the backend back after its one Sync.
        """
        sql = "COPY t FROM STDIN"
        self.script.play(
            [
                fromClient(
                    [Parse("", sql), Bind("", ""), Execute(""), Flush()],
                    toServer=[Parse("PGTWIST_1", sql), Bind("", "PGTWIST_1"), Execute(""), Flush()],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), copyInResponse()],
                    toClient=[ParseComplete(), BindComplete(), copyInResponse()],
                ),
                fromClient(
                    [copyData(b"1\n"), Sync(), copyDone(), Sync()],
                    toServer=[copyData(b"1\n"), Sync(), copyDone(), Sync()],
                ),
                fromServer(
                    [CommandComplete("COPY 1"), ready()],
                    toClient=[CommandComplete("COPY 1"), ready()],
                ),
            ]
        )
        self.assertIsNone(self.script.session.backend)

    def test_copyFromStdinExtendedPipelined(self) -> None:
        """
        A client that sends the data without waiting for CopyInResponse:
        only the Sync before CopyDone is ignored.
        """
        sql = "COPY t FROM STDIN"
        self.script.play(
            [
                fromClient(
                    [Parse("", sql), Bind("", ""), Execute(""), Sync()]
                    + [copyData(b"1\n"), copyDone(), Sync()],
                    toServer=[Parse("PGTWIST_1", sql), Bind("", "PGTWIST_1"), Execute(""), Sync()]
                    + [copyData(b"1\n"), copyDone(), Sync()],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), copyInResponse(), CommandComplete("COPY 1")],
                    toClient=[ParseComplete(), BindComplete(), copyInResponse()]
                    + [CommandComplete("COPY 1")],
                ),
            ]
        )
        self.assertIsNotNone(self.script.session.backend)
        self.script.play([fromServer([ready()], toClient=[ready()])])
        self.assertIsNone(self.script.session.backend)

    def test_copyToStdoutExtended(self) -> None:
        """
        COPY TO STDOUT through Execute: the copy messages belong to the
        Execute, which CommandComplete ends.
        """
        sql = "COPY t TO STDOUT"
        out = [copyOutResponse(), copyData(b"1\n"), copyDone(), CommandComplete("COPY 1")]
        self.script.play(
            [
                fromClient(
                    [Parse("", sql), Bind("", ""), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_1", sql), Bind("", "PGTWIST_1"), Execute(""), Sync()],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), *out, ready()],
                    toClient=[ParseComplete(), BindComplete(), *out, ready()],
                ),
            ]
        )
        self.assertIsNone(self.script.session.backend)

    def test_copyFromStdinExtendedError(self) -> None:
        """
        A row PostgreSQL rejects ends the COPY; the client's CopyDone and
        Sync that follow get the one ReadyForQuery.
        """
        sql = "COPY t FROM STDIN"
        invalid = errors.error("22P02", 'invalid input syntax for type integer: "x"')
        self.script.play(
            [
                fromClient(
                    [Parse("", sql), Bind("", ""), Execute(""), Sync()],
                    toServer=[Parse("PGTWIST_1", sql), Bind("", "PGTWIST_1"), Execute(""), Sync()],
                ),
                fromServer(
                    [ParseComplete(), BindComplete(), copyInResponse()],
                    toClient=[ParseComplete(), BindComplete(), copyInResponse()],
                ),
                fromClient([copyData(b"x\n")], toServer=[copyData(b"x\n")]),
                fromServer([invalid], toClient=[invalid]),
                fromClient([copyDone(), Sync()], toServer=[copyDone(), Sync()]),
                fromServer([ready()], toClient=[ready()]),
            ]
        )
        self.assertIsNone(self.script.session.backend)


class EndingTests(SynchronousTestCase):
    """
    Whatever ends the client or the backend, a backend inside a transaction
    is never handed to someone else.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)
        self.a = self.script.backends[0]
        self.pool = self.script.pool

    def begin(self) -> None:
        """
        Open a transaction.
        """
        self.script.play(
            [
                fromClient([Query("BEGIN")], toServer=[Query("BEGIN")]),
                fromServer(
                    [CommandComplete("BEGIN"), ready(b"T")],
                    toClient=[CommandComplete("BEGIN"), ready(b"T")],
                ),
            ]
        )

    def test_terminateBetweenTransactions(self) -> None:
        """
        Terminate with no backend attached borrows none and closes the
        client without an error.
        """
        self.script.play([fromClient([Terminate()])])
        self.assertEqual(len(self.pool.acquired), 1)
        self.assertTrue(self.script.frontend.failed)
        self.assertIsNone(self.script.frontend.failedWith)

    def test_terminateInTransaction(self) -> None:
        """
        Terminate inside a transaction is not forwarded; the query sent in
        the same write before it is answered first, as PostgreSQL does;
        then the backend goes back with its status C{T} (the pool closes
        it) and the client is closed.
        """
        self.begin()
        self.script.play(
            [fromClient([Query("SELECT 1"), Terminate()], toServer=[Query("SELECT 1")])]
        )
        self.assertFalse(self.script.frontend.failed)
        self.assertFalse(self.script.frontend.reading)
        self.script.play(
            [
                fromServer(
                    [CommandComplete("SELECT 1"), ready(b"T")],
                    toClient=[CommandComplete("SELECT 1"), ready(b"T")],
                )
            ]
        )
        self.assertIs(self.pool.released[-1], self.a)
        self.assertEqual(self.a.transactionStatus, b"T")
        self.assertIsNone(self.a.session)
        self.assertTrue(self.script.frontend.failed)
        self.assertIsNone(self.script.frontend.failedWith)

    def test_queryAndTerminateBetweenTransactions(self) -> None:
        """
        A query and Terminate in one write, with no backend attached: the
        query borrows one and is answered, then the client is closed
        without an error and the backend goes back clean.
        """
        self.script.play(
            [
                fromClient([Query("SELECT 1"), Terminate()], toServer=[Query("SELECT 1")]),
                fromServer(
                    [CommandComplete("SELECT 1"), ready()],
                    toClient=[CommandComplete("SELECT 1"), ready()],
                ),
            ]
        )
        self.assertIs(self.pool.released[-1], self.a)
        self.assertTrue(self.a.clean)
        self.assertTrue(self.script.frontend.failed)
        self.assertIsNone(self.script.frontend.failedWith)

    def test_disconnectInTransaction(self) -> None:
        """
        A client gone inside BEGIN leaves the backend with status C{T}.
        """
        self.begin()
        self.script.session.frontendLost(Failure(ConnectionError()))
        self.assertIs(self.pool.released[-1], self.a)
        self.assertEqual(self.a.transactionStatus, b"T")

    def test_disconnectMidQuery(self) -> None:
        """
        A client gone with a query in flight leaves the backend unclean.
        """
        self.script.play(
            [fromClient([Query("SELECT pg_sleep(10)")], toServer=[Query("SELECT pg_sleep(10)")])]
        )
        self.script.session.frontendLost(Failure(ConnectionError()))
        self.assertIs(self.pool.released[-1], self.a)
        self.assertFalse(self.a.clean)

    def test_disconnectMidBatch(self) -> None:
        """
        Extended messages without their Sync leave the backend unclean even
        when every response arrived.
        """
        self.script.play(
            [
                fromClient(
                    [Parse("", "SELECT 1"), Flush()],
                    toServer=[Parse("PGTWIST_1", "SELECT 1"), Flush()],
                ),
                fromServer([ParseComplete()], toClient=[ParseComplete()]),
            ]
        )
        self.script.session.frontendLost(Failure(ConnectionError()))
        self.assertFalse(self.a.clean)

    def test_disconnectWhileAcquiring(self) -> None:
        """
        A client gone while waiting for a backend cancels the wait.
        """
        self.pool.immediate = False
        self.script.play([fromClient([Query("SELECT 1")])])
        self.script.session.frontendLost(Failure(ConnectionError()))
        self.assertEqual(self.pool.cancelled, self.pool.pending)
        self.assertFalse(self.script.frontend.failed)

    def test_disconnectBetweenTransactions(self) -> None:
        """
        A client gone between transactions has nothing to give back.
        """
        self.script.session.frontendLost(Failure(ConnectionError()))
        self.assertEqual(self.pool.released, [self.a])

    def test_backendLost(self) -> None:
        """
        A backend that dies mid-transaction gets the client PostgreSQL's
        FATAL for a lost connection.
        """
        self.begin()
        self.script.session.backendLost(Failure(ConnectionError()))
        failedWith = self.script.frontend.failedWith
        assert failedWith is not None
        self.assertEqual((failedWith.severity, failedWith.code), ("FATAL", "08006"))
        self.assertIsNone(self.script.frontend.cancelTarget)

    def test_backendLostMidMessage(self) -> None:
        """
        A backend that dies after part of a long DataRow reached the client
        closes the client without an ErrorResponse, which the client would
        read as the rest of the row.
        """
        self.begin()
        row = codec.frame(b"D", b"\x00\x01\x00\x00\x10\x00" + b"x" * 4096)
        self.script.session.frontendDataReceived(codec.encode(Query("SELECT 1")))
        self.script.session.backendDataReceived(row[:100])
        self.assertEqual(bytes(self.script.frontend.written)[-100:], row[:100])
        self.script.session.backendLost(Failure(ConnectionError()))
        self.assertTrue(self.script.frontend.failed)
        self.assertIsNone(self.script.frontend.failedWith)

    def test_backendFatalRelayed(self) -> None:
        """
        When PostgreSQL's own FATAL reached the client, losing the backend
        just closes the client.
        """
        shutdown = errors.fatal("57P01", "terminating connection due to administrator command")
        self.begin()
        self.script.play([fromServer([shutdown], toClient=[shutdown])])
        self.script.session.backendLost(Failure(ConnectionError()))
        self.assertTrue(self.script.frontend.failed)
        self.assertIsNone(self.script.frontend.failedWith)

    def test_clientProtocolViolation(self) -> None:
        """
        A malformed client message fails the client and discards the
        backend in use.
        """
        self.begin()
        self.script.session.frontendDataReceived(b"Q\x00\x00\x00\x01")
        self.assertEqual([backend for backend, _ in self.pool.discarded], [self.a])
        assert self.script.frontend.failedWith is not None
        self.assertEqual(self.script.frontend.failedWith.code, "08P01")

    def test_clientProtocolViolationWithoutBackend(self) -> None:
        """
        A malformed message between transactions fails the client.
        """
        self.script.session.frontendDataReceived(b"P\x00\x00\x00\x02")
        self.assertTrue(self.script.frontend.failed)
        self.assertEqual(self.pool.discarded, [])

    def test_unknownClientMessage(self) -> None:
        """
        A message type the protocol does not have fails the client.
        """
        self.begin()
        self.script.session.frontendDataReceived(codec.frame(b"z", b""))
        self.assertTrue(self.script.frontend.failed)
        self.assertEqual(len(self.pool.discarded), 1)

    def test_backendUndecodable(self) -> None:
        """
        A ParameterStatus that does not decode (no string terminator) is
        the server's fault: the backend is discarded and the client told
        the connection to the server failed (08006), not that it broke the
        protocol itself.
        """
        self.begin()
        self.script.session.frontendDataReceived(codec.encode(Query("SET TimeZone = 'UTC'")))
        self.script.session.backendDataReceived(codec.frame(b"S", b"TimeZone"))
        self.assertEqual([backend for backend, _ in self.pool.discarded], [self.a])
        error = self.script.frontend.failedWith
        assert error is not None
        self.assertEqual((error.severity, error.code), ("FATAL", "08006"))
        self.assertEqual(
            error.message, "server sent a malformed message: invalid string in message"
        )

    def test_backendInvalidLength(self) -> None:
        """
        A backend message with a length below 4 cannot be framed: the
        backend is discarded and the client failed, instead of looping.
        """
        self.begin()
        self.script.session.backendDataReceived(b"Z\xff\xff\xff\xfbI")
        self.assertEqual([backend for backend, _ in self.pool.discarded], [self.a])
        assert self.script.frontend.failedWith is not None
        self.assertEqual(self.script.frontend.failedWith.code, "08006")
