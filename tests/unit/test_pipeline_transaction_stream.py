"""
Tests for L{pgtwist.pipelines.transaction}: messages longer than a chunk,
or than what pgtwist holds, go on in pieces; lengths out of PostgreSQL's
bounds are refused before anything is buffered, by every pipeline.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.interfaces import IPipeline, IPipelineSession
from pgtwist.pipelines.performance import PerformancePipeline
from pgtwist.pipelines.session import SessionPipeline
from pgtwist.testing import FakeBackendPool, FakeFrontendLink
from pgtwist.wire import codec, constants
from pgtwist.wire.codec import HEADER
from pgtwist.wire.messages import (
    CommandComplete,
    DataRow,
    Execute,
    Parse,
    Query,
    Sync,
)
from tests.unit._pipelinescript import (
    ROW,
    TransactionScript,
    bind,
    copyData,
    copyDone,
    copyInResponse,
    fromClient,
    fromServer,
    makeBackend,
    ready,
    stateAnswer,
    stateQuery,
)


def pieces(data: bytes, size: int) -> list[bytes]:
    """
    C{data} cut into chunks of C{size} bytes.
    """
    return [data[i : i + size] for i in range(0, len(data), size)]


class StreamingTests(SynchronousTestCase):
    """
    What pgtwist only forwards it forwards as it arrives.
    """

    def setUp(self) -> None:
        self.script = TransactionScript(self)
        self.session = self.script.session
        self.backend = self.script.backends[0]

    def test_bigRowInPieces(self) -> None:
        """
        A DataRow longer than a chunk reaches the client piece by piece,
        each chunk as it arrives, and nothing of it is held.
        """
        self.script.play([fromClient([Query("SELECT big")], toServer=[Query("SELECT big")])])
        row = codec.encode(DataRow((b"x" * (1 << 20),)))
        self.session.backendDataReceived(codec.encode(ROW))
        for chunk in pieces(row, 65536):
            before = len(self.script.frontend.written)
            self.session.backendDataReceived(chunk)
            self.assertEqual(len(self.script.frontend.written) - before, len(chunk))
            self.assertEqual(self.session._fromServer.heldBytes, 0)
        self.session.backendDataReceived(
            codec.encode(CommandComplete("SELECT 1")) + codec.encode(ready())
        )
        self.assertEqual(
            self.script.newClientOutput(),
            codec.encode(ROW) + row + codec.encode(CommandComplete("SELECT 1")) + b"Z\0\0\0\5I",
        )
        self.assertIsNone(self.session.backend)

    def test_copyInPieces(self) -> None:
        """
        A CopyData from the client longer than a chunk reaches PostgreSQL
        piece by piece.
        """
        sql = "COPY t FROM STDIN"
        self.script.play(
            [
                fromClient([Query(sql)], toServer=[Query(sql)]),
                fromServer([copyInResponse()], toClient=[copyInResponse()]),
            ]
        )
        data = copyData(b"y" * (1 << 20))
        self.script.newBackendOutput()
        for chunk in pieces(data, 65536):
            before = len(self.backend.written)
            self.session.frontendDataReceived(chunk)
            self.assertEqual(len(self.backend.written) - before, len(chunk))
            self.assertEqual(self.session._fromClient.heldBytes, 0)
        self.assertEqual(self.script.newBackendOutput(), {1001: data})
        self.script.play(
            [
                fromClient([copyDone()], toServer=[copyDone()]),
                fromServer(
                    [CommandComplete("COPY 1"), ready()],
                    toClient=[CommandComplete("COPY 1"), ready()],
                ),
            ]
        )
        self.assertIsNone(self.session.backend)

    def test_bindTooLongToHold(self) -> None:
        """
        A Bind longer than pgtwist holds is renamed from its start and the
        rest relayed as it comes; no more than the limit is ever held.
        """
        self.session._fromClient.maxHeldLength = 1000
        value = bytes(range(256)) * 40
        sent = [Parse("", "SELECT $1"), bind("", value), Execute(""), Sync()]
        self.script.play(
            [
                fromClient(
                    sent,
                    toServer=[
                        Parse("PGTWIST_1", "SELECT $1"),
                        bind("PGTWIST_1", value),
                        Execute(""),
                        Sync(),
                    ],
                )
            ],
            chop=lambda data: pieces(data, 97),
        )
        self.assertLessEqual(self.session._fromClient.heldBytes, 1005)

    def test_queryTooLongToHold(self) -> None:
        """
        A Query longer than pgtwist holds is relayed unexamined, in pieces;
        as it may change the session, the session's state is read after it.
        """
        self.session._fromClient.maxHeldLength = 1000
        query = Query("SELECT '" + "z" * 5000 + "'")
        self.script.play(
            [fromClient([query], toServer=[query])], chop=lambda data: pieces(data, 300)
        )
        answer = [CommandComplete("SELECT 1"), ready()]
        self.script.play(
            [
                fromServer(answer, toClient=answer[:1], toServer=[stateQuery()]),
                fromServer(stateAnswer(), toClient=[ready()]),
            ]
        )
        self.assertIsNone(self.session.backend)

    def test_parseTooLongToHold(self) -> None:
        """
        A Parse longer than pgtwist holds cannot be renamed: the client gets
        a protocol violation before more than the limit is buffered.
        """
        self.session._fromClient.maxHeldLength = 1000
        for chunk in pieces(codec.encode(Parse("", "SELECT '" + "z" * 5000 + "'")), 300):
            self.session.frontendDataReceived(chunk)
            if self.script.frontend.failed:
                break
        error = self.script.frontend.failedWith
        assert error is not None
        self.assertEqual(error.code, constants.SQLSTATE_PROTOCOL_VIOLATION)
        self.assertLessEqual(self.session._fromClient.heldBytes, 1005)

    def test_lengthCap(self) -> None:
        """
        A Query claiming 2^31 - 1 bytes is refused at its header with
        PostgreSQL's 08P01 "invalid message length"; nothing is forwarded
        or held.
        """
        self.session.frontendDataReceived(HEADER.pack(b"Q", 2**31 - 1) + b"SELECT")
        error = self.script.frontend.failedWith
        assert error is not None
        self.assertEqual(
            (error.severity, error.code, error.message),
            ("FATAL", "08P01", "invalid message length"),
        )
        self.assertEqual(self.session._fromClient.heldBytes, 0)
        self.assertEqual(self.script.newBackendOutput(), {})

    def test_backendLengthCap(self) -> None:
        """
        A backend message claiming more than 1 GiB - 1 blames the server.
        """
        self.script.play([fromClient([Query("SELECT 1")], toServer=[Query("SELECT 1")])])
        self.session.backendDataReceived(HEADER.pack(b"D", 0x40000000) + b"\0\1")
        error = self.script.frontend.failedWith
        assert error is not None
        self.assertEqual(error.code, constants.SQLSTATE_CONNECTION_FAILURE)
        self.assertEqual([backend for backend, _ in self.script.pool.discarded], [self.backend])


class SessionLengthCapTests(SynchronousTestCase):
    """
    The session and performance pipelines refuse the same lengths.
    """

    def session(self, pipeline: IPipeline) -> tuple[IPipelineSession, FakeFrontendLink]:
        """
        A logged-in session of C{pipeline} over the fakes.
        """
        frontend = FakeFrontendLink()
        pool = FakeBackendPool()
        pool.backend = makeBackend(1001)
        session = pipeline.newSession(frontend, pool, Clock())
        session.begin()
        return session, frontend

    def test_clientLengthCap(self) -> None:
        """
        A client message claiming 2^31 - 1 bytes gets PostgreSQL's FATAL
        08P01 "invalid message length", before anything is relayed.
        """
        for pipeline in (SessionPipeline(), PerformancePipeline()):
            session, frontend = self.session(pipeline)
            session.frontendDataReceived(HEADER.pack(b"Q", 2**31 - 1) + b"SELECT")
            error = frontend.failedWith
            assert error is not None
            self.assertEqual(
                (error.severity, error.code, error.message),
                ("FATAL", "08P01", "invalid message length"),
            )

    def test_serverLengthCap(self) -> None:
        """
        A server message claiming more than 1 GiB - 1 blames the server.
        """
        for pipeline in (SessionPipeline(), PerformancePipeline()):
            session, frontend = self.session(pipeline)
            session.frontendDataReceived(codec.encode(Query("SELECT 1")))
            session.backendDataReceived(HEADER.pack(b"D", 0x40000000) + b"\0\1")
            error = frontend.failedWith
            assert error is not None
            self.assertEqual(error.code, constants.SQLSTATE_CONNECTION_FAILURE)
