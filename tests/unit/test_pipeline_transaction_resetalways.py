"""
Tests for C{server_reset_query_always} in L{pgtwist.pipelines.transaction}:
every backend a client's transaction ran on goes back to be reset, and the
client's prepared statements follow it across the resets.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.pipelines.serverstate import serverSession
from pgtwist.wire.messages import (
    BindComplete,
    Execute,
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
    fromClient,
    fromServer,
    one,
    ready,
    selected,
)


class ResetAlwaysTests(SynchronousTestCase):
    """
    With C{server_reset_query_always = on} the transaction pipeline asks the
    pool to reset (C{DISCARD ALL}) every backend it gives back after a
    client's transaction.
    """

    def select(self, script: TransactionScript) -> None:
        """
        The client runs C{SELECT 1} in a transaction of its own.
        """
        script.play(
            [
                fromClient([Query("SELECT 1")], toServer=[Query("SELECT 1")]),
                fromServer([*one(), ready()], toClient=[*one(), ready()]),
            ]
        )

    def test_offByDefault(self) -> None:
        """
        By default a backend whose session the client did not change goes
        back without a reset.
        """
        script = TransactionScript(self)
        self.select(script)
        self.assertEqual(script.pool.released[-1], script.backends[0])
        self.assertEqual(script.pool.releasedWithoutReset[-1:], [script.backends[0]])
        self.assertEqual(len(script.pool.releasedWithoutReset), len(script.pool.released))

    def test_everyTransaction(self) -> None:
        """
        With the key on, each transaction's backend goes back to be reset.
        """
        script = TransactionScript(self, resetAlways=True)
        kept = len(script.pool.releasedWithoutReset)
        for _ in range(2):
            self.select(script)
            self.assertIsNone(script.session.backend)
            self.assertEqual(script.pool.released[-1], script.backends[0])
        self.assertEqual(len(script.pool.releasedWithoutReset), kept)

    def test_clientLeaves(self) -> None:
        """
        A client that leaves while holding a backend gives it back to be
        reset too.
        """
        script = TransactionScript(self, resetAlways=True)
        kept = len(script.pool.releasedWithoutReset)
        script.play([fromClient([Query("BEGIN")], toServer=[Query("BEGIN")])])
        script.session.frontendLost(Failure(ConnectionDone()))
        self.assertEqual(script.pool.released[-1], script.backends[0])
        self.assertEqual(len(script.pool.releasedWithoutReset), kept)

    def test_preparedStatementsAcrossResets(self) -> None:
        """
        A statement the client prepared once is prepared again on the
        backend after the reset the pool ran, out of the client's sight,
        and its Bind works in every later transaction.
        """
        script = TransactionScript(self, resetAlways=True)
        backend = script.backends[0]
        script.play(
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
        for value in (b"2", b"3"):
            # What the pool's reset (DISCARD ALL) of a backend given back
            # with reset=True leaves: its session count moved on.
            self.assertEqual(script.pool.released[-1], backend)
            self.assertNotIn(backend, script.pool.releasedWithoutReset[1:])
            backend.sessionResets += 1
            script.play(
                [
                    fromClient(
                        [bind("s1", value), Execute(""), Sync()],
                        toServer=[
                            Parse("PGTWIST_1", Q1, (23,)),
                            bind("PGTWIST_1", value),
                            Execute(""),
                            Sync(),
                        ],
                    ),
                    fromServer(
                        [ParseComplete(), BindComplete(), *selected(value), ReadyForQuery(b"I")],
                        toClient=[BindComplete(), *selected(value), ReadyForQuery(b"I")],
                    ),
                ]
            )
            self.assertEqual(list(serverSession(backend).prepared), ["PGTWIST_1"])
