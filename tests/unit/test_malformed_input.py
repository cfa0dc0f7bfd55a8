"""
Garbage never breaks pgtwist: random byte streams (bad lengths, unknown
message types, truncated bodies, messages out of place, split at random
points) from a client, fed to the login phase and to each pipeline's relay,
or from PostgreSQL, fed to each relay, raise nothing. What pgtwist writes to
a client that sent garbage is still a well-formed stream of backend
messages, and a connection closed for cause ends with an ErrorResponse that
blames the right side.
"""

from __future__ import annotations

import random
import struct
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.pipelines.performance import PerformancePipeline
from pgtwist.pipelines.session import SessionPipeline
from pgtwist.testing import FakeBackendPool, FakeFrontendLink
from pgtwist.wire import codec, constants
from pgtwist.wire.framing import MessageFramer
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
    Message,
    NoData,
    Parse,
    ParseComplete,
    Query,
    ReadyForQuery,
    StartupMessage,
    Sync,
)
from tests.unit._pipelinescript import TransactionScript, makeBackend
from tests.unit.test_frontend import FrontendTestCase

#: Conversations per test: enough to reach the odd corners, fast enough
#: for every run of the suite (about a second together).
CONVERSATIONS = 400

#: Message type bytes a client might send, valid or not.
_FRONTEND_TYPES = b"PBEDCSQHFXdcfpz\x00"


def _message(rng: random.Random) -> bytes:
    """
    One client message: valid, or a random type with a random body and,
    sometimes, a length that lies.
    """
    if rng.random() < 0.5:
        statement = rng.choice(["", "s1", "s2"])
        valid: Message = rng.choice(
            [
                Parse(statement, rng.choice(["SELECT 1", "SELECT $1", "DISCARD ALL"])),
                Bind("", statement),
                Execute(""),
                Sync(),
                Flush(),
                Describe(rng.choice([b"S", b"P"]), statement),
                Close(rng.choice([b"S", b"P"]), statement),
                Query(rng.choice(["SELECT 1", "BEGIN", "COMMIT", "DISCARD ALL", "SET x = 1"])),
            ]
        )
        return codec.encode(valid)
    type = bytes([rng.choice(_FRONTEND_TYPES)])
    body = bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
    length = len(body) + 4
    if rng.random() < 0.2:
        length = rng.choice([-1, 0, 3, 2**31 - 1, length + rng.randrange(-3, 4)])
    return type + struct.pack("!i", length) + body


def _reply(rng: random.Random) -> bytes:
    """
    One well-formed backend message, wanted or not.
    """
    message: Message = rng.choice(
        [
            ParseComplete(),
            BindComplete(),
            CloseComplete(),
            NoData(),
            CommandComplete("SELECT 1"),
            ReadyForQuery(rng.choice([b"I", b"T", b"E"])),
        ]
    )
    return codec.encode(message)


def _feed(rng: random.Random, data: bytes, receive: Any) -> None:
    """
    Hand C{data} to C{receive} in random pieces.
    """
    position = 0
    while position < len(data):
        size = rng.randrange(1, len(data) - position + 1)
        receive(data[position : position + size])
        position += size


def _assertWellFormed(case: SynchronousTestCase, data: bytes) -> list[Message]:
    """
    C{data} is a whole number of decodable backend messages; return them.
    """
    framer = MessageFramer()
    messages = [codec.decodeBackend(type, body) for type, body in framer.feed(data)]
    case.assertEqual(framer.takeRemainder(), b"", "a partial message was written")
    return messages


class PipelineGarbageTests(SynchronousTestCase):
    """
    Random client streams through each pipeline's relay, with well-formed
    backend replies in between.
    """

    def _session(self, kind: str) -> tuple[Any, FakeFrontendLink]:
        if kind == "transaction":
            script = TransactionScript(self)
            return script.session, script.frontend
        frontend = FakeFrontendLink()
        pool = FakeBackendPool()
        pool.backend = makeBackend(1001)
        pipeline = SessionPipeline() if kind == "session" else PerformancePipeline()
        session = pipeline.newSession(frontend, pool, Clock())
        session.begin()
        return session, frontend

    def test_randomStreams(self) -> None:
        """
        No exception escapes; the client reads well-formed messages only,
        and a pipeline that gives up on the client says why first.
        """
        for seed in range(CONVERSATIONS):
            rng = random.Random(seed)
            kind = rng.choice(["transaction", "session", "performance"])
            session, frontend = self._session(kind)
            for _ in range(rng.randrange(1, 12)):
                if frontend.failed:
                    break
                if rng.random() < 0.6:
                    data = b"".join(_message(rng) for _ in range(rng.randrange(1, 4)))
                    _feed(rng, data, session.frontendDataReceived)
                elif session.backend is not None:
                    data = b"".join(_reply(rng) for _ in range(rng.randrange(1, 4)))
                    session.backendDataReceived(data)
            _assertWellFormed(self, bytes(frontend.written))
            error = getattr(frontend, "failedWith", None)
            if error is not None:
                self.assertIsInstance(error, ErrorResponse, (seed, kind))


class ServerGarbageTests(PipelineGarbageTests):
    """
    Well-formed client requests answered by random server bytes: unknown
    types, lying lengths, bodies that do not decode.
    """

    def _serverBytes(self, rng: random.Random) -> bytes:
        if rng.random() < 0.4:
            return _reply(rng)
        type = bytes([rng.choice(b"123nsCDTIEZNASKtGHWdcvR\x00")])
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(20)))
        length = len(body) + 4 if rng.random() < 0.8 else rng.choice([-1, 0, 3, 2**31 - 1])
        return type + struct.pack("!i", length) + body

    def test_randomStreams(self) -> None:
        """
        No exception escapes, and when the server's bytes end the session
        the client is told the connection to the server failed (08006).
        What reaches the client is not checked here: a relay forwards the
        messages it has no reason to decode (rows, descriptions) as they
        come, garbage included.
        """
        for seed in range(CONVERSATIONS):
            rng = random.Random(seed)
            kind = rng.choice(["transaction", "session", "performance"])
            session, frontend = self._session(kind)
            for _ in range(rng.randrange(1, 10)):
                if rng.random() < 0.5 or session.backend is None:
                    valid = [m for m in (_message(rng) for _ in range(4)) if m[:1] in b"PBEDCSQH"]
                    _feed(rng, b"".join(valid[:2]), session.frontendDataReceived)
                    blame = "08P01"
                else:
                    _feed(rng, self._serverBytes(rng), session.backendDataReceived)
                    blame = "08006"
                if frontend.failed:
                    error = getattr(frontend, "failedWith", None)
                    if error is not None:
                        self.assertEqual(error.code, blame, (seed, kind))
                    break


class LoginGarbageTests(FrontendTestCase):
    """
    Random startup packets and authentication messages against the real
    frontend protocol, for each password method.
    """

    def _stream(self, rng: random.Random) -> bytes:
        chunks = []
        draw = rng.random()
        if draw < 0.3:
            parameters = {
                "user": rng.choice(["alice", "", "bob", "x" * 70]),
                "database": rng.choice(["db", "", "pgbouncer"]),
            }
            if rng.random() < 0.3:
                name = rng.choice(["options", "application_name", "replication", "bogus"])
                parameters[name] = rng.choice(["", "-c x=1", "on", "true", "\x01"])
            chunks.append(codec.encode(StartupMessage(parameters)))
        elif draw < 0.5:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(30)))
            length = rng.choice([len(body) + 8, 8, 0, -5, 10000, 2**31 - 1])
            code = rng.choice([196608, 80877103, 80877102, 80877104, 1234])
            chunks.append(struct.pack("!ii", length, code) + body)
        else:
            chunks.append(codec.encode(StartupMessage({"user": "alice", "database": "db"})))
        for _ in range(rng.randrange(4)):
            type = bytes([rng.choice(b"pXQSd\x00")])
            body = rng.choice(
                [
                    bytes(rng.randrange(256) for _ in range(rng.randrange(40))),
                    b"wonderland\x00",
                    b"SCRAM-SHA-256\x00" + struct.pack("!i", 10) + b"n,,n=,r=ab",
                    b"c=biws,r=xx,p=abc",
                ]
            )
            length = rng.choice([len(body) + 4] * 4 + [0, 3, 100000])
            chunks.append(type + struct.pack("!i", length) + body)
        return b"".join(chunks)

    def test_randomLogins(self) -> None:
        """
        No exception escapes, everything written is well-formed (after the
        one-byte answer to an SSLRequest or GSSENCRequest), and an error
        that ends the connection is FATAL.
        """
        methods = ["password", "md5", "scram-sha-256", "trust"]
        for seed in range(CONVERSATIONS):
            rng = random.Random(seed)
            self.method = methods[seed % len(methods)]
            self.setUp()
            data = self._stream(rng)

            def receive(piece: bytes) -> None:
                if not self.transport.disconnecting:
                    self.protocol.dataReceived(piece)

            _feed(rng, data, receive)
            self.clock.advance(100)
            written = self.transport.value()
            if written[:1] == b"N":
                written = written[1:]
            messages = _assertWellFormed(self, written)
            if messages and self.transport.disconnecting:
                last = messages[-1]
                if isinstance(last, ErrorResponse):
                    self.assertEqual(last.severity, constants.SEVERITY_FATAL, seed)
