"""
Tests for L{pgtwist.pipelines.transaction} when a statement pgtwist prepared
went stale (a type or table it uses was dropped and recreated): when the
batch is prepared again and retried, and when the client gets PostgreSQL's
error. Fake backends, no sockets.
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
    ErrorResponse,
    Execute,
    Flush,
    Parse,
    ParseComplete,
    Query,
    ReadyForQuery,
    Sync,
)
from tests.unit._pipelinescript import (
    ROW,
    TransactionScript,
    bind,
    byteByByte,
    failure,
    fromClient,
    fromServer,
    makeBackend,
    parameterDescription,
    selected,
)

QUERY = "SELECT $1::mood"
KEY = StatementKey(QUERY, (), "")
#: What PostgreSQL answers for a statement naming a type dropped since.
LOST_TYPE = failure("XX000", "cache lookup failed for type 16385")
#: What it answers for one whose result type changed.
CACHED_PLAN = failure("0A000", "cached plan must not change result type")
#: A retry's CloseComplete and ParseComplete, swallowed.
PREPARED_AGAIN = [CloseComplete(), ParseComplete()]


def execution(statement: str) -> list[Bind | Describe | Execute | Sync]:
    """
    How psycopg and libpq run a prepared statement: Bind, Describe of the
    portal, Execute, Sync.
    """
    return [bind(statement), Describe(b"P", ""), Execute(""), Sync()]


def answer(status: bytes = b"I") -> list[BindComplete | ErrorResponse | ReadyForQuery]:
    """
    PostgreSQL's answer to L{execution}, as the client gets it.
    """
    return [BindComplete(), ROW, *selected(), ReadyForQuery(status)]  # type: ignore[list-item]


class StaleRetryTests(SynchronousTestCase):
    """
    A statement prepared before on the backend that PostgreSQL finds stale at
    the first Bind or Describe of a batch, outside a transaction block, is
    closed, prepared again from the client's text and the batch sent again:
    the client sees only the answer of the retry.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)
        self.a = self.script.backends[0]
        self.script.play(
            [
                fromClient(
                    [Parse("s1", QUERY), Sync()],
                    toServer=[Parse("PGTWIST_1", QUERY), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ReadyForQuery(b"I")],
                ),
            ]
        )

    def failedOnce(self, error: ErrorResponse) -> None:
        """
        Run L{execution} of C{s1}, which fails with C{error}, then is retried
        under the new name and succeeds.
        """
        self.script.play(
            [
                fromClient(execution("s1"), toServer=execution("PGTWIST_1")),
                fromServer(
                    [error, ReadyForQuery(b"I")],
                    toServer=[
                        Close(b"S", "PGTWIST_1"),
                        Parse("PGTWIST_2", QUERY),
                        *execution("PGTWIST_2"),
                    ],
                ),
                fromServer([*PREPARED_AGAIN, *answer()], toClient=answer()),
            ]
        )

    def test_lostType(self) -> None:
        """
        XX000 "cache lookup failed for type" at Bind: retried.
        """
        self.failedOnce(LOST_TYPE)

    def test_resultTypeChanged(self) -> None:
        """
        0A000 "cached plan must not change result type" at Bind: retried.
        """
        self.failedOnce(CACHED_PLAN)

    def test_answersInPieces(self) -> None:
        """
        PostgreSQL's answers may come in any pieces.
        """
        self.script.play([fromClient(execution("s1"), toServer=execution("PGTWIST_1"))])
        self.script.play(
            [
                fromServer(
                    [CACHED_PLAN, ReadyForQuery(b"I")],
                    toServer=[
                        Close(b"S", "PGTWIST_1"),
                        Parse("PGTWIST_2", QUERY),
                        *execution("PGTWIST_2"),
                    ],
                ),
                fromServer([*PREPARED_AGAIN, *answer()], toClient=answer()),
            ],
            byteByByte,
        )

    def test_batchInPieces(self) -> None:
        """
        A batch that came in pieces (the Bind held whole apart from the rest)
        is not sent again: the client gets PostgreSQL's error, and the
        statement is forgotten.
        """
        self.script.play(
            [
                fromClient(execution("s1"), toServer=execution("PGTWIST_1")),
            ],
            byteByByte,
        )
        self.script.play(
            [
                fromServer(
                    [LOST_TYPE, ReadyForQuery(b"I")], toClient=[LOST_TYPE, ReadyForQuery(b"I")]
                ),
            ]
        )
        self.assertEqual(self.script.registry.nameFor(KEY), "PGTWIST_2")

    def test_forgotten(self) -> None:
        """
        After the retry the key has its new server-side name, prepared on
        this backend; the old one is closed there.
        """
        self.failedOnce(LOST_TYPE)
        self.assertEqual(self.script.registry.nameFor(KEY), "PGTWIST_2")
        self.assertEqual(list(serverSession(self.a).prepared.items()), [("PGTWIST_2", True)])

    def test_otherBackendPreparesAgain(self) -> None:
        """
        Another backend that has the old statement (stale there too) is not
        asked to use it: the next Bind there prepares the new name.
        """
        b = makeBackend(1002)
        self.script.useBackend(b)
        self.script.play(
            [
                fromClient(
                    execution("s1"),
                    toServer=[Parse("PGTWIST_1", QUERY), *execution("PGTWIST_1")],
                ),
                fromServer([ParseComplete(), *answer()], toClient=answer()),
            ]
        )
        self.script.useBackend(self.a)
        self.failedOnce(LOST_TYPE)
        self.script.useBackend(b)
        self.script.play(
            [
                fromClient(
                    execution("s1"),
                    toServer=[Parse("PGTWIST_2", QUERY), *execution("PGTWIST_2")],
                ),
                fromServer([ParseComplete(), *answer()], toClient=answer()),
            ]
        )

    def test_retriedOnce(self) -> None:
        """
        When the retry fails the same way, the client gets that error.
        """
        self.script.play(
            [
                fromClient(execution("s1"), toServer=execution("PGTWIST_1")),
                fromServer(
                    [LOST_TYPE, ReadyForQuery(b"I")],
                    toServer=[
                        Close(b"S", "PGTWIST_1"),
                        Parse("PGTWIST_2", QUERY),
                        *execution("PGTWIST_2"),
                    ],
                ),
                fromServer(
                    [*PREPARED_AGAIN, LOST_TYPE, ReadyForQuery(b"I")],
                    toClient=[LOST_TYPE, ReadyForQuery(b"I")],
                ),
            ]
        )
        self.assertIs(serverSession(self.a).prepared["PGTWIST_2"], STALE)

    def test_unnamedStatement(self) -> None:
        """
        libpq's PQexecParams (an unnamed Parse, Bind, Describe, Execute):
        the Parse of a statement the backend has is answered by pgtwist; the
        Bind that fails is retried, and the client's ParseComplete stands.
        """
        self.script.play(
            [
                fromClient(
                    [Parse("", QUERY), *execution("")],
                    toServer=execution("PGTWIST_1"),
                ),
                fromServer(
                    [LOST_TYPE, ReadyForQuery(b"I")],
                    toClient=[ParseComplete()],
                    toServer=[
                        Close(b"S", "PGTWIST_1"),
                        Parse("PGTWIST_2", QUERY),
                        *execution("PGTWIST_2"),
                    ],
                ),
                fromServer([*PREPARED_AGAIN, *answer()], toClient=answer()),
            ]
        )

    def test_afterStatementsPrepared(self) -> None:
        """
        A Bind after the Parse and Describe of another statement in the same
        batch is retried from the Bind: their answers stand (a prepared
        statement outlives the failed implicit transaction), and the client
        gets them once.
        """
        self.script.play(
            [
                fromClient(
                    [Parse("s2", "SELECT 2"), Describe(b"S", "s2"), *execution("s1")],
                    toServer=[
                        Parse("PGTWIST_2", "SELECT 2"),
                        Describe(b"S", "PGTWIST_2"),
                        *execution("PGTWIST_1"),
                    ],
                ),
                fromServer(
                    [
                        ParseComplete(),
                        parameterDescription(),
                        ROW,
                        LOST_TYPE,
                        ReadyForQuery(b"I"),
                    ],
                    toClient=[ParseComplete(), parameterDescription(), ROW],
                    toServer=[
                        Close(b"S", "PGTWIST_1"),
                        Parse("PGTWIST_3", QUERY),
                        *execution("PGTWIST_3"),
                    ],
                ),
                fromServer([*PREPARED_AGAIN, *answer()], toClient=answer()),
            ]
        )

    def test_afterQuery(self) -> None:
        """
        A batch after a simple query (a COMMIT) in the same write is retried
        too: the query's ReadyForQuery says the backend is idle.
        """
        self.script.play(
            [
                fromClient(
                    [Query("COMMIT"), *execution("s1")],
                    toServer=[Query("COMMIT"), *execution("PGTWIST_1")],
                ),
                fromServer(
                    [CommandComplete("COMMIT"), ReadyForQuery(b"I"), LOST_TYPE, ready()],
                    toClient=[CommandComplete("COMMIT"), ReadyForQuery(b"I")],
                    toServer=[
                        Close(b"S", "PGTWIST_1"),
                        Parse("PGTWIST_2", QUERY),
                        *execution("PGTWIST_2"),
                    ],
                ),
                fromServer([*PREPARED_AGAIN, *answer()], toClient=answer()),
            ]
        )


def ready() -> ReadyForQuery:
    """
    ReadyForQuery outside a transaction block.
    """
    return ReadyForQuery(b"I")


class DescribeTests(SynchronousTestCase):
    """
    A Describe of a statement prepared on the backend in an earlier batch
    prepares it again first: PostgreSQL checks a statement's result at
    Describe, not its parameter types, so an old copy would describe a
    parameter of a type dropped since (an OID that no longer exists, which
    asyncpg then fails to look up).
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)
        self.script.play(
            [
                fromClient(
                    [Parse("s1", QUERY), Sync()],
                    toServer=[Parse("PGTWIST_1", QUERY), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_preparedAgain(self) -> None:
        """
        asyncpg prepares with Parse, Describe of the statement, Sync: the
        Parse of a statement the backend has is answered by pgtwist, and
        the statement is closed and parsed again before the Describe; the
        client gets the new description.
        """
        self.script.play(
            [
                fromClient(
                    [Parse("s2", QUERY), Describe(b"S", "s2"), Sync()],
                    toServer=[
                        Close(b"S", "PGTWIST_1"),
                        Parse("PGTWIST_1", QUERY),
                        Describe(b"S", "PGTWIST_1"),
                        Sync(),
                    ],
                ),
                fromServer(
                    [*PREPARED_AGAIN, parameterDescription(16390), ROW, ReadyForQuery(b"I")],
                    toClient=[
                        ParseComplete(),
                        parameterDescription(16390),
                        ROW,
                        ReadyForQuery(b"I"),
                    ],
                ),
            ]
        )

    def test_parsedInBatch(self) -> None:
        """
        A statement parsed in the same batch is described as it is.
        """
        self.script.play(
            [
                fromClient(
                    [Parse("s2", "SELECT 2"), Describe(b"S", "s2"), Sync()],
                    toServer=[Parse("PGTWIST_2", "SELECT 2"), Describe(b"S", "PGTWIST_2"), Sync()],
                ),
                fromServer(
                    [ParseComplete(), parameterDescription(), ROW, ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), parameterDescription(), ROW, ReadyForQuery(b"I")],
                ),
            ]
        )

    def test_thenBind(self) -> None:
        """
        The Bind that follows a Describe in the same batch uses the copy
        just prepared.
        """
        self.script.play(
            [
                fromClient(
                    [Describe(b"S", "s1"), bind("s1"), Execute(""), Sync()],
                    toServer=[
                        Close(b"S", "PGTWIST_1"),
                        Parse("PGTWIST_1", QUERY),
                        Describe(b"S", "PGTWIST_1"),
                        bind("PGTWIST_1"),
                        Execute(""),
                        Sync(),
                    ],
                ),
            ]
        )


class StaleErrorTests(SynchronousTestCase):
    """
    When something of the batch may have run, or the client may read rows
    with a description it holds, the client gets PostgreSQL's error as it
    would on its own connection; the statement is still forgotten, so that
    its next use prepares it again.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)
        self.a = self.script.backends[0]
        self.script.play(
            [
                fromClient(
                    [Parse("s0", "SELECT 1"), Parse("s1", QUERY), Sync()],
                    toServer=[Parse("PGTWIST_1", "SELECT 1"), Parse("PGTWIST_2", QUERY), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ParseComplete(), ReadyForQuery(b"I")],
                ),
            ]
        )

    def relayed(
        self,
        sent: list[Bind | Describe | Execute | Sync | Flush | Query],
        error: ErrorResponse = LOST_TYPE,
    ) -> None:
        """
        C{sent}, whose Bind of C{s1} fails with C{error}, gets the error as
        PostgreSQL sent it; the next use of C{s1} prepares it again.
        """
        renamed = [
            bind({"s0": "PGTWIST_1", "s1": "PGTWIST_2"}[m.statement]) if isinstance(m, Bind) else m
            for m in sent
        ]
        self.script.play(
            [
                fromClient(sent, toServer=renamed),
                fromServer([error, ReadyForQuery(b"I")], toClient=[error, ready()]),
            ]
        )
        self.assertIs(serverSession(self.a).prepared["PGTWIST_2"], STALE)
        self.script.play(
            [
                fromClient(
                    execution("s1"),
                    toServer=[Parse("PGTWIST_3", QUERY), *execution("PGTWIST_3")],
                ),
                fromServer([ParseComplete(), *answer()], toClient=answer()),
            ]
        )

    def test_rowsWithoutDescription(self) -> None:
        """
        asyncpg runs a prepared statement with Bind, Execute, Sync and reads
        the rows with the description it got when it prepared it: after
        "cached plan must not change result type" a retry would give it
        rows of another shape, so it gets the error (and prepares the
        statement again itself, as on its own connection).
        """
        self.relayed([bind("s1"), Execute(""), Sync()], CACHED_PLAN)

    def test_lostTypeWithoutDescription(self) -> None:
        """
        After "cache lookup failed for type" (a parameter's type is gone)
        a Bind, Execute, Sync is retried: the result's shape did not change
        (PostgreSQL would have said so first).
        """
        self.script.play(
            [
                fromClient(
                    [bind("s1"), Execute(""), Sync()],
                    toServer=[bind("PGTWIST_2"), Execute(""), Sync()],
                ),
                fromServer(
                    [LOST_TYPE, ReadyForQuery(b"I")],
                    toServer=[
                        Close(b"S", "PGTWIST_2"),
                        Parse("PGTWIST_3", QUERY),
                        bind("PGTWIST_3"),
                        Execute(""),
                        Sync(),
                    ],
                ),
                fromServer(
                    [*PREPARED_AGAIN, BindComplete(), *selected(), ready()],
                    toClient=[BindComplete(), *selected(), ready()],
                ),
            ]
        )

    def test_notFirst(self) -> None:
        """
        A Bind after another Bind and Execute in the same batch is not
        retried: the first ran, and its rows went to the client.
        """
        self.script.play(
            [
                fromClient(
                    [bind("s0"), Execute(""), *execution("s1")],
                    toServer=[bind("PGTWIST_1"), Execute(""), *execution("PGTWIST_2")],
                ),
                fromServer(
                    [BindComplete(), *selected(), LOST_TYPE, ReadyForQuery(b"I")],
                    toClient=[BindComplete(), *selected(), LOST_TYPE, ready()],
                ),
            ]
        )

    def test_inTransactionBlock(self) -> None:
        """
        Inside a transaction block the error has aborted the transaction: no
        retry, the client gets the error, and after its ROLLBACK the next
        use prepares the statement again.
        """
        self.script.play(
            [
                fromClient([Query("BEGIN")], toServer=[Query("BEGIN")]),
                fromServer(
                    [CommandComplete("BEGIN"), ReadyForQuery(b"T")],
                    toClient=[CommandComplete("BEGIN"), ReadyForQuery(b"T")],
                ),
                fromClient(execution("s1"), toServer=execution("PGTWIST_2")),
                fromServer(
                    [CACHED_PLAN, ReadyForQuery(b"E")],
                    toClient=[CACHED_PLAN, ReadyForQuery(b"E")],
                ),
                fromClient([Query("ROLLBACK")], toServer=[Query("ROLLBACK")]),
                fromServer(
                    [CommandComplete("ROLLBACK"), ReadyForQuery(b"I")],
                    toClient=[CommandComplete("ROLLBACK"), ReadyForQuery(b"I")],
                ),
                fromClient(
                    execution("s1"),
                    toServer=[Parse("PGTWIST_3", QUERY), *execution("PGTWIST_3")],
                ),
                fromServer([ParseComplete(), *answer()], toClient=answer()),
            ]
        )

    def test_pipelined(self) -> None:
        """
        When the client's next batch was sent behind it, the failed batch is
        not sent again (it would run after the next one).
        """
        self.script.play(
            [
                fromClient(
                    [*execution("s1"), bind("s0"), Execute(""), Sync()],
                    toServer=[*execution("PGTWIST_2"), bind("PGTWIST_1"), Execute(""), Sync()],
                ),
                fromServer(
                    [LOST_TYPE, ReadyForQuery(b"I"), BindComplete(), *selected(), ready()],
                    toClient=[LOST_TYPE, ready(), BindComplete(), *selected(), ready()],
                ),
            ]
        )

    def test_syncNotSent(self) -> None:
        """
        A batch whose Sync has not come yet (a Flush, to read the answer
        first) is not retried.
        """
        self.script.play(
            [
                fromClient(
                    [bind("s1"), Describe(b"P", ""), Flush()],
                    toServer=[bind("PGTWIST_2"), Describe(b"P", ""), Flush()],
                ),
                fromServer([LOST_TYPE], toClient=[LOST_TYPE]),
            ]
        )

    def test_resetsStatements(self) -> None:
        """
        A statement whose Bind drops the client's statements (C{DEALLOCATE
        ALL}) is never sent again.
        """
        self.script.play(
            [
                fromClient(
                    [Parse("s9", "DEALLOCATE ALL"), Sync()],
                    toServer=[Parse("PGTWIST_3", "DEALLOCATE ALL"), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ReadyForQuery(b"I")],
                ),
                fromClient(execution("s9"), toServer=execution("PGTWIST_3")),
                fromServer([LOST_TYPE, ReadyForQuery(b"I")], toClient=[LOST_TYPE, ready()]),
            ]
        )

    def test_otherError(self) -> None:
        """
        Any other error at Bind (a bad parameter) is the client's, as sent,
        and the statement stays prepared.
        """
        bad = failure("22P02", 'invalid input value for enum mood: "1"')
        self.script.play(
            [
                fromClient(execution("s1"), toServer=execution("PGTWIST_2")),
                fromServer([bad, ReadyForQuery(b"I")], toClient=[bad, ready()]),
            ]
        )
        self.assertIs(serverSession(self.a).prepared["PGTWIST_2"], True)
        self.assertEqual(self.script.registry.nameFor(KEY), "PGTWIST_2")

    def test_lostRelation(self) -> None:
        """
        Only a lost I{type} marks a statement stale: other internal errors
        are relayed and change nothing.
        """
        lost = failure("XX000", "cache lookup failed for relation 16390")
        self.script.play(
            [
                fromClient(execution("s1"), toServer=execution("PGTWIST_2")),
                fromServer([lost, ReadyForQuery(b"I")], toClient=[lost, ready()]),
            ]
        )
        self.assertIs(serverSession(self.a).prepared["PGTWIST_2"], True)
