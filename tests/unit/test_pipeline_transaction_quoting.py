"""
The transaction pipeline's own SQL quotes what a client chose: the error it
makes PostgreSQL raise for a duplicate statement name holds that name.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.wire.messages import Bind, Execute, Parse, ParseComplete, ReadyForQuery, Sync
from tests.unit._pipelinescript import TransactionScript, fromClient, fromServer

Q1 = "SELECT $1::int"

#: A statement name that would end a literal or a C{$pgtwist$} body quoted
#: by hand.
HOSTILE = "a\\'$pgtwist$"


class RaiseQuotingTests(SynchronousTestCase):
    """
    The C{DO} block that raises a duplicate statement's error.
    """

    def test_hostileName(self) -> None:
        """
        The message is quoted inside the block and the block inside C{DO},
        backslashes and quotes doubled each time, so no name can end either
        early whatever C{standard_conforming_strings} is.
        """
        script = TransactionScript(self)
        script.play(
            [
                fromClient(
                    [Parse(HOSTILE, Q1, (23,)), Sync()],
                    toServer=[Parse("PGTWIST_1", Q1, (23,)), Sync()],
                ),
                fromServer(
                    [ParseComplete(), ReadyForQuery(b"I")],
                    toClient=[ParseComplete(), ReadyForQuery(b"I")],
                ),
            ]
        )
        block = (
            "DO E'BEGIN RAISE EXCEPTION USING ERRCODE = ''42P05'', MESSAGE = "
            "E''prepared statement \"a\\\\\\\\''''$pgtwist$\" already exists''; END'"
        )
        script.play(
            [
                fromClient(
                    [Parse(HOSTILE, Q1, (23,)), Sync()],
                    toServer=[
                        Parse("", block),
                        Bind("PGTWIST_RAISE", ""),
                        Execute("PGTWIST_RAISE"),
                        Sync(),
                    ],
                ),
            ]
        )
