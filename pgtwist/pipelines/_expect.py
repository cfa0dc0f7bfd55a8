# -*- test-case-name: tests.unit.test_pipeline_transaction -*-
"""
The expected-responses queue of the transaction pipeline: what each request
waits for, the replies pgtwist synthesizes, and the entry kept per request.
"""

from __future__ import annotations

from pgtwist.pipelines._statements import PREFIX, StatementKey
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.codec import HEADER
from pgtwist.wire.messages import CloseComplete, NoticeResponse, ParseComplete, ReadyForQuery

# What a request waits for.
_PARSE = 1  # ParseComplete
_BIND = 2  # BindComplete
_DESCRIBE_STATEMENT = 3  # ParameterDescription, then RowDescription or NoData
_DESCRIBE_PORTAL = 4  # RowDescription or NoData
_EXECUTE = 5  # rows..., then CommandComplete, EmptyQueryResponse or PortalSuspended
_CLOSE = 6  # CloseComplete
_SYNC = 7  # ReadyForQuery
_QUERY = 8  # anything, until ReadyForQuery (simple query, FunctionCall)
_FAKE = 9  # nothing: pgtwist sends C{data} itself when this entry comes up

_PARSE_COMPLETE = codec.encode(ParseComplete())
_READY_IDLE = codec.encode(ReadyForQuery(constants.TRANSACTION_IDLE))
_CLOSE_COMPLETE = codec.encode(CloseComplete())

_EXTENDED = frozenset({_PARSE, _BIND, _DESCRIBE_STATEMENT, _DESCRIBE_PORTAL, _EXECUTE, _CLOSE})
_ENDS = {
    _PARSE: constants.PARSE_COMPLETE,
    _BIND: constants.BIND_COMPLETE,
    _CLOSE: constants.CLOSE_COMPLETE,
}
_DESCRIBE_ENDS = frozenset({constants.ROW_DESCRIPTION, constants.NO_DATA})
_EXECUTE_ENDS = frozenset(
    {constants.COMMAND_COMPLETE, constants.EMPTY_QUERY_RESPONSE, constants.PORTAL_SUSPENDED}
)
_PASSTHROUGH = frozenset(
    {constants.COPY_DATA, constants.COPY_DONE, constants.COPY_FAIL, constants.FLUSH}
)
#: Client messages whose header says all pgtwist needs: relayed in pieces
#: when they run past a chunk.
_STREAMED = _PASSTHROUGH | {constants.SYNC, constants.EXECUTE, constants.FUNCTION_CALL}
#: Client messages whose statement names pgtwist rewrites.
_EXTENDED_REQUESTS = frozenset(
    {constants.PARSE, constants.BIND, constants.DESCRIBE, constants.CLOSE}
)
#: Client messages pgtwist may answer between transactions without a backend.
_LOCAL = frozenset(
    {constants.PARSE, constants.CLOSE, constants.SYNC, constants.FLUSH, constants.TERMINATE}
)
_CACHED_PLAN = "cached plan must not change result type"
#: How PostgreSQL words (XX000) a statement that names a type dropped since
#: it was prepared (a recreated type has another OID).
_LOST_TYPE = "cache lookup failed for type "
_UNDEFINED_STATEMENT = "26000"  # invalid_sql_statement_name
_DUPLICATE_STATEMENT = "42P05"  # duplicate_prepared_statement
# The backend's own unnamed statement is pgtwist's (see _raise): a client
# without one must get PostgreSQL's error, never pgtwist's statement.
_NO_UNNAMED = "unnamed prepared statement does not exist"
_RAISE_PORTAL = PREFIX + "RAISE"


class _Expect:
    """
    One entry of the expected-responses queue.

    @ivar forward: Whether the responses go to the client (C{False}: pgtwist
        asked, pgtwist swallows).
    @ivar name: The server-side statement concerned, if any.
    @ivar client: The client statement name a Parse or Close entry
        registered or removed (to undo it if PostgreSQL skips the message).
    @ivar key: The statement key of a Parse (to mark it verified), the one
        removed by a client Close (to restore), or for pgtwist's Close of a
        stale statement, that statement's (skipped, the statement is still
        there, still stale).
    @ivar data: For C{_FAKE}: the bytes to send.
    @ivar copyEnds: For Query, Execute and Sync: how many CopyDone/CopyFail
        the client had sent before this message (PostgreSQL ignores a Sync
        sent between a COPY FROM STDIN and its end).
    @ivar previous: For a client Parse: the statement the client name stood
        for before (the unnamed statement survives a skipped Parse).
    @ivar rows: C{None}, but for a L{_StateExpect}.
    """

    __slots__ = ("kind", "forward", "name", "client", "key", "data", "copyEnds", "previous")

    #: A class attribute, not a slot: no cost for the entries of requests.
    rows: list[tuple[str | None, ...] | None] | None = None

    def __init__(
        self,
        kind: int,
        forward: bool = True,
        name: str | None = None,
        client: str | None = None,
        key: StatementKey | None = None,
        data: bytes = b"",
        copyEnds: int = 0,
        previous: StatementKey | None = None,
    ) -> None:
        self.kind = kind
        self.forward = forward
        self.name = name
        self.client = client
        self.key = key
        self.data = data
        self.copyEnds = copyEnds
        self.previous = previous

    def __repr__(self) -> str:
        return f"<_Expect {self.kind} forward={self.forward} name={self.name}>"


class _StateExpect(_Expect):
    """
    The entry of pgtwist's state query (L{pgtwist.pipelines._settings.stateQuery}),
    a C{_QUERY} whose answer pgtwist reads.

    @ivar rows: The rows read so far, C{None} for an error (the state is not
        known). C{data} holds the client's ReadyForQuery, held back until
        the state is known (or nothing).
    """

    __slots__ = ("rows",)

    def __init__(self, ready: bytes) -> None:
        super().__init__(_QUERY, forward=False, data=ready)
        self.rows = []


def _frame(type: bytes, body: bytes, tail: int | None = None) -> bytes:
    """
    A message of C{type} with C{body}; with C{tail}, only the start of one
    whose last C{tail} bytes follow separately.
    """
    if tail is None:
        return codec.frame(type, body)
    return HEADER.pack(type, 4 + len(body) + tail) + body


def _pinned(kinds: list[str]) -> bytes:
    """
    The WARNING a client gets when its session starts holding (more)
    session-only objects, C{kinds}, that keep its backend.
    """
    notice = NoticeResponse(
        errors.errorResponse(
            constants.SEVERITY_WARNING,
            "01000",
            f"pgtwist: this connection keeps its PostgreSQL backend while its session holds "
            f"{', '.join(kinds)}",
            detail="In transaction pooling these exist only on this backend: until they are "
            "gone (dropped, deallocated, closed, unlocked), this client's transactions run "
            "there and no other client gets it.",
            hint="Drop them when done (DISCARD ALL drops them all), or use a session pool for "
            "this client (pipeline = session).",
        ).fields
    )
    return codec.encode(notice)


def _unread() -> bytes:
    """
    The WARNING a client gets when pgtwist could not read its session's
    state after a transaction that may have changed it.
    """
    notice = NoticeResponse(
        errors.errorResponse(
            constants.SEVERITY_WARNING,
            "01000",
            "pgtwist: could not read this session's state after the transaction",
            detail="Settings the transaction changed do not follow this client to other "
            "PostgreSQL connections, and this connection is reset (DISCARD ALL) before it "
            "serves anyone else.",
        ).fields
    )
    return codec.encode(notice)


def _canReset(sql: bytes, status: bytes) -> bool:
    """
    Whether C{DEALLOCATE ALL} or C{DISCARD ALL} will succeed: nothing runs
    in a failed transaction, and C{DISCARD ALL} not inside a transaction
    block at all.
    """
    if status == constants.TRANSACTION_FAILED:
        return False
    return status == constants.TRANSACTION_IDLE or sql.lstrip()[:7].upper() != b"DISCARD"
