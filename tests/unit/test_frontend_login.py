"""
Tests for how L{pgtwist.net.frontend.FrontendProtocol} finishes a login: one
write when the pipeline logs the client in at once, AuthenticationOk first
and the client paused while it waits, and AuthenticationOk before a FATAL
that comes after authentication.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail

from pgtwist.interfaces import IBackendLink
from pgtwist.net.backend import BackendError
from pgtwist.net.frontend import FrontendState
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    AuthenticationRequest,
    BackendKeyData,
    ErrorResponse,
    PasswordMessage,
    ReadyForQuery,
)
from tests.unit.test_frontend import FrontendTestCase, makeConfiguration


class LoginWriteTests(FrontendTestCase):
    """
    The writes and pauses of the end of a login (session pipeline over a
    fake pool).
    """

    def setUp(self) -> None:
        super().setUp()
        self.pauses = 0
        self.setUp2()

    def setUp2(self) -> None:
        """
        Record the writes and pauses of the current connection, and start
        its login.
        """
        self.writes: list[bytes] = []
        write, pause = self.transport.write, self.transport.pauseProducing

        def recordWrite(data: bytes) -> None:
            self.writes.append(data)
            write(data)

        def recordPause() -> None:
            self.pauses += 1
            pause()

        self.patch(self.transport, "write", recordWrite)
        self.patch(self.transport, "pauseProducing", recordPause)
        self.startup()
        self.replies()
        self.writes.clear()

    def sendPassword(self) -> None:
        """
        Authenticate as alice.
        """
        self.protocol.dataReceived(codec.encode(PasswordMessage(b"wonderland\x00")))

    def test_immediateLoginOneWrite(self) -> None:
        """
        When the pipeline completes the login at once, AuthenticationOk, the
        parameters, the key and ReadyForQuery leave in one write, and the
        client reads on.
        """
        self.sendPassword()
        self.assertEqual(len(self.writes), 1)
        messages = [codec.decodeBackend(t, b) for t, b in MessageFramer().feed(self.writes[0])]
        self.assertEqual(messages[0], AuthenticationRequest(constants.AUTH_OK))
        self.assertIsInstance(messages[-2], BackendKeyData)
        self.assertEqual(messages[-1], ReadyForQuery(b"I"))
        self.assertEqual(self.transport.producerState, "producing")

    def test_cachedLoginNeverPauses(self) -> None:
        """
        A transaction-pooling client whose login the pipeline answers from
        its login cache is never paused (no epoll_ctl calls for it).
        """
        self.factory.config = makeConfiguration(self.method, pipeline="transaction")
        self.sendPassword()
        self.assertIs(self.protocol.state, FrontendState.READY)
        first = self.pauses
        self.protocol = self.connect()
        self.setUp2()
        self.sendPassword()
        self.assertIs(self.protocol.state, FrontendState.READY)
        self.assertEqual(self.pauses, first)
        self.assertEqual(len(self.writes), 1)

    def test_waitingLogin(self) -> None:
        """
        While the pipeline waits for a backend, the client already has
        AuthenticationOk and is not read; the rest follows when it is done.
        """
        self.pool.immediate = False
        self.sendPassword()
        self.assertEqual(self.writes, [codec.encode(AuthenticationRequest(constants.AUTH_OK))])
        self.assertEqual(self.transport.producerState, "paused")
        self.assertIs(self.protocol.state, FrontendState.LOGGING_IN)
        backend: Any = self.pool.backend
        pending: Deferred[IBackendLink] = self.pool.pending[0]
        pending.callback(backend)
        self.assertIs(self.protocol.state, FrontendState.READY)
        self.assertEqual(self.transport.producerState, "producing")
        last = [codec.decodeBackend(t, b) for t, b in MessageFramer().feed(self.writes[-1])]
        self.assertEqual(last[-1], ReadyForQuery(b"I"))

    def test_failureAfterAuthentication(self) -> None:
        """
        A login refused at once after authentication (here the pool's
        error) gets AuthenticationOk, then the FATAL, as from PostgreSQL.
        """
        refusal = errors.fatal("3D000", 'database "db" does not exist')
        self.patch(self.pool, "acquire", lambda key, parameters: fail(BackendError(refusal)))
        self.sendPassword()
        replies = self.replies()
        self.assertEqual(replies[0], AuthenticationRequest(constants.AUTH_OK))
        error = replies[1]
        assert isinstance(error, ErrorResponse)
        self.assertEqual((error.severity, error.code), ("FATAL", "3D000"))
        self.assertEqual(len(replies), 2)
        self.assertTrue(self.transport.disconnecting)
