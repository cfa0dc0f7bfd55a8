"""
Differential tests for L{pgtwist.pipelines.transaction}: random client
conversations are played against a small model of PostgreSQL's
extended-query protocol twice, once directly and once through the pipeline
with transactions landing on random backends, and the client must see
exactly the same messages both times. Seeded conversations, and a
Hypothesis state machine that shrinks a failing one to its smallest.
"""

from __future__ import annotations

import random
import re
import struct
from typing import Any

from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.interfaces import IBackendLink
from pgtwist.testing import FakeBackendPool
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    Bind,
    BindComplete,
    Close,
    CloseComplete,
    CommandComplete,
    DataRow,
    Describe,
    ErrorResponse,
    Execute,
    FieldDescription,
    Message,
    NoData,
    Parse,
    ParseComplete,
    Query,
    ReadyForQuery,
    RowDescription,
    Sync,
)
from tests.unit._hypothesis import examples
from tests.unit._pipelinescript import ReportingBackend, TransactionScript, readable, wire

_DO = re.compile(r"DO (E?)'(.*)'", re.DOTALL)
_RAISE = re.compile(r"ERRCODE = '(\w+)', MESSAGE = (E?)'(.*)'; END", re.DOTALL)


def _unquote(escaped: str, text: str) -> str:
    """
    The value of an SQL literal's text (C{E} prefix: with backslashes doubled).
    """
    text = text.replace("''", "'")
    return text.replace("\\\\", "\\") if escaped else text


class ModelPostgres:
    """
    PostgreSQL's extended-query protocol as far as the pipeline cares:
    statements, portals, skipping to Sync after an error, transaction blocks.
    Queries starting with C{FAIL} do not parse; a parameter C{x} is not an
    integer; C{DO} blocks raise what they say.
    """

    def __init__(self) -> None:
        self.statements: dict[str, tuple[str, tuple[int, ...]]] = {}
        self.portals: dict[str, tuple[str, bytes]] = {}
        self.status = b"I"
        self.skipping = False
        self.framer = MessageFramer()

    def feed(self, data: bytes) -> bytes:
        """
        Process client bytes; return the responses.
        """
        out: list[Message | bytes] = []
        for frame in self.framer.feed(data):
            if self.skipping and frame.type != constants.SYNC:
                continue
            message = codec.decodeFrontend(frame.type, frame.body)
            try:
                out.extend(self._handle(message))
            except _Failed as e:
                out.append(e.error)
                if isinstance(message, Query):
                    if self.status == b"T":
                        self.status = b"E"
                    out.append(ReadyForQuery(self.status))
                    self._endImplicit()
                else:
                    self.skipping = True
                    if self.status == b"T":
                        self.status = b"E"
        return wire(out)

    def _endImplicit(self) -> None:
        """
        The implicit transaction ended: its portals go.
        """
        if self.status == b"I":
            self.portals.clear()

    def _aborted(self) -> None:
        """
        Refuse to run anything in a failed transaction.
        """
        if self.status == b"E":
            raise _Failed(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            )

    def _handle(self, message: Message) -> list[Message | bytes]:  # noqa: C901
        """
        Process one message; raise L{_Failed} for an error.
        """
        if isinstance(message, Sync):
            self.skipping = False
            self._endImplicit()
            return [ReadyForQuery(self.status)]
        if isinstance(message, Query):
            self.portals.pop("", None)
            return self._query(message.sql)
        if isinstance(message, Parse):
            if not message.name:
                self.statements.pop("", None)
            if message.query.startswith("FAIL"):
                raise _Failed("42601", 'syntax error at or near "FAIL"')
            self._aborted()
            if message.name in self.statements:
                raise _Failed("42P05", f'prepared statement "{message.name}" already exists')
            self.statements[message.name] = (message.query, message.parameterTypes)
            return [ParseComplete()]
        if isinstance(message, Bind):
            statement = self._statement(message.statement)
            self._aborted()
            if b"x" in message.parameters:
                raise _Failed("22P02", 'invalid input syntax for type integer: "x"')
            value = message.parameters[0] if message.parameters else b""
            assert value is not None
            self.portals[message.portal] = (statement[0], value)
            return [BindComplete()]
        if isinstance(message, Describe):
            if message.kind == b"S":
                query, types = self._statement(message.name)
                self._aborted()
                description = codec.frame(b"t", struct.pack(f"!h{len(types)}I", len(types), *types))
                return [description, self._shape(query)]
            query = self._portal(message.name)[0]
            self._aborted()
            return [self._shape(query)]
        if isinstance(message, Execute):
            query, value = self._portal(message.portal)
            self._aborted()
            block = _DO.fullmatch(query)
            match = _RAISE.search(_unquote(*block.groups())) if block is not None else None
            if match is not None:
                raise _Failed(match.group(1), _unquote(match.group(2), match.group(3)))
            return [DataRow((query.encode(), value)), CommandComplete("SELECT 1")]
        if isinstance(message, Close):
            if message.kind == b"S":
                self.statements.pop(message.name, None)
            else:
                self.portals.pop(message.name, None)
            return [CloseComplete()]
        return []

    def _shape(self, query: str) -> Message:
        """
        The RowDescription (or NoData) of C{query}: its text names the column.
        """
        if query.startswith("DO"):
            return NoData()
        return RowDescription((FieldDescription(query),))

    def _statement(self, name: str) -> tuple[str, tuple[int, ...]]:
        """
        Look a prepared statement up, as PostgreSQL words a miss.
        """
        if name not in self.statements:
            if name:
                raise _Failed("26000", f'prepared statement "{name}" does not exist')
            raise _Failed("26000", "unnamed prepared statement does not exist")
        return self.statements[name]

    def _portal(self, name: str) -> tuple[str, bytes]:
        """
        Look a portal up, as PostgreSQL words a miss.
        """
        if name not in self.portals:
            raise _Failed("34000", f'portal "{name}" does not exist')
        return self.portals[name]

    def _query(self, sql: str) -> list[Message | bytes]:
        """
        Run a simple query.
        """
        if sql == "FAILQ":
            raise _Failed("42601", 'syntax error at or near "FAILQ"')
        if sql not in ("ROLLBACK", "COMMIT"):
            self._aborted()
        if sql == "BEGIN":
            self.status = b"T"
        elif sql in ("COMMIT", "ROLLBACK"):
            self.status = b"I"
        elif sql == "DEALLOCATE ALL":
            # The unnamed statement is not a prepared statement of the SQL
            # kind: it survives.
            for name in [name for name in self.statements if name]:
                del self.statements[name]
        tag = "ROLLBACK" if sql == "COMMIT" and self.status == b"E" else sql.split()[0]
        self._endImplicit()
        return [CommandComplete(tag), ReadyForQuery(self.status)]


class _Failed(Exception):
    """
    The model raises an ERROR.
    """

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.error: ErrorResponse = errors.error(sqlstate, message)


class ModelBackend(ReportingBackend):
    """
    A fake backend with a L{ModelPostgres} behind it.
    """

    def __init__(self, processId: int) -> None:
        super().__init__(processId)
        self.model = ModelPostgres()
        self.consumed = 0

    def simpleQuery(self, sql: str) -> Deferred[ErrorResponse | None]:
        """
        pgtwist's own queries (login settings) succeed.
        """
        self.queries.append(sql)
        return succeed(None)


class RandomPool(FakeBackendPool):
    """
    Hands out a random backend of a fixed set for each acquire.
    """

    def __init__(self, backends: list[ModelBackend], rng: random.Random) -> None:
        super().__init__()
        self.choices = backends
        self.rng = rng

    def acquire(self, key: Any, parameters: Any) -> Deferred[IBackendLink]:
        """
        Pick one, at random.
        """
        self.backend = self.rng.choice(self.choices)
        return super().acquire(key, parameters)


NAMES = ["", "", "a", "b"]
#: Each name has queries of its own: two names never share a server-side
#: statement (see L{_batch}).
QUERIES = {"": ["Q1", "Q2"], "a": ["A1", "A2"], "b": ["B1", "B2"]}


def _batch(rng: random.Random, status: bytes, touched: set[str]) -> list[Message]:
    """
    One random request: a simple query, or extended messages and a Sync.

    Known differences from PostgreSQL are left out:
     - a batch does not bind or describe statements that earlier batches of
       the same write bound or described (C{touched}, updated here): if an
       error there makes PostgreSQL skip a Parse pgtwist injected, pgtwist
       believes the backend has the statement until PostgreSQL says
       otherwise (26000, naming the server-side statement) in the later
       batch. Names that earlier batches parse or close are fine: pgtwist
       holds the later batch until it knows;
     - in a failed transaction (C{status} C{E}) there is no Parse (pgtwist
       answers one for a statement the backend has with ParseComplete where
       PostgreSQL says 25P02) and no use of a missing unnamed statement
       (PostgreSQL says 26000, pgtwist's DO block gets 25P02).
    """
    if rng.random() < 0.25:
        choices = ["SELECT 1", "BEGIN", "COMMIT", "ROLLBACK", "FAILQ", "DEALLOCATE ALL"]
        weights = [4, 2, 2, 1, 1, 0.3 if not touched else 0]
        sql = rng.choices(choices, weights)[0]
        if sql == "DEALLOCATE ALL":
            touched.update(NAMES)
        return [Query(sql)]
    names = [name for name in NAMES if name not in touched]
    used = names if status != b"E" else [name for name in names if name]
    messages: list[Message] = []
    for _ in range(rng.randint(1, 5)):
        kind = rng.choice("PPBBBDDECCX")
        if kind in "PC" and not names or kind in "BD" and not used:
            continue
        if kind == "P" and status != b"E":
            name = rng.choice(names)
            query = rng.choice(QUERIES[name])
            if not name and rng.random() < 0.15:
                query = "FAIL"
            types = rng.choice([(), (23,)])
            messages.append(Parse(name, query, types))
        elif kind == "B":
            value = b"x" if rng.random() < 0.1 else rng.choice([b"1", b"2"])
            messages.append(Bind("", rng.choice(used + ["zz"]), (), (value,), ()))
            messages.append(Execute(""))
        elif kind == "D":
            kind = rng.choice("SSP")
            messages.append(Describe(kind.encode(), rng.choice(used) if kind == "S" else ""))
        elif kind == "E":
            messages.append(Execute(""))
        elif kind == "C":
            messages.append(Close(b"S", rng.choice(names)))
        elif kind == "X":
            messages.append(Close(b"P", ""))
    messages.append(Sync())
    for message in messages:
        if isinstance(message, Describe) and message.kind == b"S":
            touched.add(message.name)
        elif isinstance(message, Bind):
            touched.add(message.statement)
    return messages


def _chop(rng: random.Random, data: bytes) -> list[bytes]:
    """
    Cut C{data} at a few random places.
    """
    cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1))) if len(data) > 1 else []
    pieces = []
    start = 0
    for cut in [*cuts, len(data)]:
        if rng.random() < 0.5 or cut == len(data):
            pieces.append(data[start:cut])
            start = cut
    return pieces


class Conversation:
    """
    One client's conversation, played against a reference L{ModelPostgres}
    and through the pipeline to three L{ModelBackend}s at once.

    @ivar history: Every batch the client sent so far.
    """

    def __init__(self, case: SynchronousTestCase, rng: random.Random, maxPrepared: int) -> None:
        self.case = case
        self.rng = rng
        self.maxPrepared = maxPrepared
        self.reference = ModelPostgres()
        self.backends = [ModelBackend(2000 + n) for n in range(3)]
        self.script = TransactionScript(case, maxPrepared=maxPrepared, login=False)
        pool = self.pool = RandomPool(self.backends, rng)
        self.script.pool = pool
        self.script.session.pool = pool
        self.script.session.begin()
        self.expected = b""
        self.history: list[list[Message]] = []

    def step(self, label: str, rng: random.Random | None = None) -> list[list[Message]]:
        """
        Send one random request (with pipelined ones after it, sometimes),
        cut at random places, let the backends answer in random pieces, and
        assert that the client saw what PostgreSQL would have sent.

        @param label: What names the conversation in a failure's message.
        @param rng: The step's own random choices (the pool's too); by
            default, the conversation's.
        @return: The batches sent.
        """
        if rng is None:
            rng = self.rng
        self.pool.rng = rng
        touched: set[str] = set()
        batches = [_batch(rng, self.reference.status, touched)]
        # pgtwist's own bookkeeping (evictions) is speculative across a
        # pipeline too: pipelines only without evictions.
        pipelining = self.maxPrepared in (0, 200) and self.reference.status == b"I"
        while pipelining and rng.random() < 0.4 and batches[0] != [Query("BEGIN")]:
            batch = _batch(rng, b"I", touched)
            if batch == [Query("BEGIN")]:
                break
            batches.append(batch)
        self.send(label, batches, rng)
        return batches

    def send(self, label: str, batches: list[list[Message]], rng: random.Random) -> None:
        """
        Send C{batches} pipelined, cut at random places, let the backends
        answer in random pieces, and assert that the client saw what
        PostgreSQL would have sent.
        """
        script = self.script
        data = b"".join(wire(batch) for batch in batches)
        self.history.extend(batches)
        self.expected += self.reference.feed(data)
        for piece in _chop(rng, data):
            script.session.frontendDataReceived(piece)
            _pump(self.backends, script, rng)
        _pump(self.backends, script, rng)
        actual = bytes(script.frontend.written)
        if actual != self.expected:
            self.case.assertEqual(
                readable(actual, codec.decodeBackend),
                readable(self.expected, codec.decodeBackend),
                f"{label}, max_prepared_statements {self.maxPrepared}, after {self.history}",
            )

    def end(self, label: str) -> None:
        """
        The client's connection never failed.
        """
        self.case.assertFalse(self.script.frontend.failed, label)


def converse(case: SynchronousTestCase, seed: int, rounds: int = 25) -> None:
    """
    Play one random conversation both ways and compare what the client saw.
    """
    rng = random.Random(seed)
    conversation = Conversation(case, rng, rng.choice([0, 1, 2, 200]))
    for _ in range(rounds):
        conversation.step(f"seed {seed}")
    conversation.end(f"seed {seed}")


def _pump(backends: list[ModelBackend], script: TransactionScript, rng: random.Random) -> None:
    """
    Let each backend answer what it was sent, in random pieces, until all is
    quiet.
    """
    busy = True
    while busy:
        busy = False
        for backend in backends:
            if len(backend.written) > backend.consumed:
                data = bytes(backend.written[backend.consumed :])
                backend.consumed = len(backend.written)
                reply = backend.model.feed(data)
                if reply:
                    assert backend.session is script.session, "reply from a detached backend"
                    for piece in _chop(rng, reply):
                        script.session.backendDataReceived(piece)
                busy = True


class ModelTests(SynchronousTestCase):
    """
    Through the transaction pipeline, with transactions landing on any of
    three backends, a client sees what PostgreSQL itself would have sent.
    """

    def test_randomConversations(self) -> None:
        """
        Many seeded random conversations of statements, portals, errors,
        transaction blocks and pipelining.
        """
        for seed in range(400):
            converse(self, seed)

    def test_skippedCloseAfterDeallocateAll(self) -> None:
        """
        A Close that PostgreSQL skips (an error earlier in its batch) does
        not bring back the statement a C{DEALLOCATE ALL} pipelined after it
        dropped: a new Parse of that name succeeds, as on PostgreSQL.
        """
        failing = [Parse("a", "SELECT 1"), Execute(""), Close(b"S", "a"), Close(b"P", ""), Sync()]
        again = [Parse("a", "SELECT 1"), Parse("", "FAIL"), Sync()]
        for maxPrepared in (0, 1, 2, 200):
            for seed in range(20):
                rng = random.Random(seed)
                conversation = Conversation(self, rng, maxPrepared)
                label = f"seed {seed}"
                conversation.send(label, [failing, [Query("DEALLOCATE ALL")]], rng)
                conversation.send(label, [again], rng)
                conversation.end(label)


class ConversationMachine(RuleBasedStateMachine):
    """
    The differential test as a state machine: each step is one request of
    L{Conversation.step}, its random choices drawn from Hypothesis, so a
    conversation where the client sees something PostgreSQL would not have
    sent shrinks to the fewest, simplest requests that still show it (the
    failure's message lists them, and Hypothesis prints its reproduction
    blob).
    """

    def __init__(self) -> None:
        super().__init__()
        self.case = SynchronousTestCase()
        self.conversation: Conversation | None = None

    @initialize(maxPrepared=st.sampled_from([200, 0, 1, 2]))
    def connect(self, maxPrepared: int) -> None:
        """
        A client logs in; a pool hands it any of three backends per
        transaction.
        """
        self.conversation = Conversation(self.case, random.Random(0), maxPrepared)

    @rule(rng=st.randoms(use_true_random=False))
    def request(self, rng: random.Random) -> None:
        """
        The client sends one request (or a pipeline of several), and the
        pool picks backends, as C{rng} says: each step's choices are its
        own, so that shrinking can drop a step whole.
        """
        assert self.conversation is not None
        for batch in self.conversation.step("shrunk conversation", rng):
            note(f"client sends {batch}")

    def teardown(self) -> None:
        """
        The client's connection never failed.
        """
        if self.conversation is not None:
            self.conversation.end("shrunk conversation")


class ConversationMachineTests(ConversationMachine.TestCase):  # type: ignore[misc,valid-type]
    """
    Random conversations through the transaction pipeline, shrunk when one
    goes wrong.
    """

    # Each step draws many random choices: the smallest conversation is a
    # long input, and that is fine.
    settings = settings(
        max_examples=examples(60),
        stateful_step_count=25,
        suppress_health_check=[HealthCheck.large_base_example, HealthCheck.too_slow],
    )
