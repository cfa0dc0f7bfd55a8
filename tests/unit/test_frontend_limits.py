"""
Tests for the limits L{pgtwist.net.frontend.FrontendProtocol} puts on a
client before it has logged in: PostgreSQL's length limits on the
authentication messages, for pool clients and the admin console.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address

from pgtwist.config.model import Configuration, UserEntry
from pgtwist.net.frontend import FrontendState
from pgtwist.wire import codec, constants
from pgtwist.wire.messages import AuthenticationRequest, PasswordMessage, Query
from tests.unit.test_frontend import FrontendTestCase, makeConfiguration

#: The longest authentication message PostgreSQL reads (length word included).
LIMIT = constants.MAX_AUTH_TOKEN_LENGTH


def saslInitialResponse(length: int) -> bytes:
    """
    An encoded SCRAM-SHA-256 SASLInitialResponse whose length word is
    C{length}, the client nonce padded to fill it.
    """
    header = b"n,,n=,r="
    overhead = 4 + len(b"SCRAM-SHA-256\x00") + 4 + len(header)
    payload = header + b"a" * (length - overhead)
    data = codec.encode(codec.encodeSASLInitialResponse("SCRAM-SHA-256", payload))
    assert codec.INT32.unpack_from(data, 1)[0] == length
    return data


class PasswordLengthTests(FrontendTestCase):
    """
    A password message over PostgreSQL's C{PG_MAX_AUTH_TOKEN_LENGTH}.
    """

    def test_hugeLengthRefusedAtTheHeader(self) -> None:
        """
        A password message announcing 0x3FFFFFFF bytes, sent byte by byte,
        is refused with FATAL 08P01 as soon as its header is complete, and
        nothing of it stays buffered.
        """
        self.startup()
        self.replies()
        header = b"p" + codec.INT32.pack(0x3FFFFFFF)
        for i in range(4):
            self.protocol.dataReceived(header[i : i + 1])
            self.assertEqual(self.transport.value(), b"")
            self.assertFalse(self.transport.disconnecting)
        self.protocol.dataReceived(header[4:])
        self.assertFatal("08P01", "invalid message length")
        assert self.protocol._framer is not None
        self.assertEqual(self.protocol._framer.pending, 0)
        self.assertIs(self.protocol.state, FrontendState.CLOSED)
        # What the client streams after the refusal is not kept.
        self.protocol.dataReceived(b"x" * 100000)
        self.assertEqual(self.protocol._framer.pending, 0)
        self.assertEqual(self.transport.value(), b"")

    def test_oneOverTheLimitRefused(self) -> None:
        """
        A password message of 65,536 bytes is refused.
        """
        self.startup()
        self.replies()
        self.protocol.dataReceived(b"p" + codec.INT32.pack(LIMIT + 1))
        self.assertFatal("08P01", "invalid message length")

    def test_atTheLimitChecked(self) -> None:
        """
        A password message of exactly 65,535 bytes is read and checked like
        any other password (here, a wrong one).
        """
        self.startup()
        self.replies()
        message = codec.encode(PasswordMessage(b"x" * (LIMIT - 5) + b"\x00"))
        self.assertEqual(codec.INT32.unpack_from(message, 1)[0], LIMIT)
        self.protocol.dataReceived(message)
        self.assertFatal("28P01", 'password authentication failed for user "alice"')

    def test_largeQueryPipelinedAfterPassword(self) -> None:
        """
        The limit is for authentication messages only: a query longer than
        it, pipelined right behind the password, reaches the backend.
        """
        self.startup()
        self.replies()
        query = codec.encode(Query("SELECT '" + "x" * (2 * LIMIT) + "'"))
        data = codec.encode(PasswordMessage(b"wonderland\x00")) + query
        for i in range(0, len(data), 1000):
            self.protocol.dataReceived(data[i : i + 1000])
        self.assertIs(self.protocol.state, FrontendState.READY)
        self.assertEqual(bytes(self.pool.backend.written), query)


class SASLLengthTests(FrontendTestCase):
    """
    SASL messages (SCRAM-SHA-256) under the same limit.
    """

    method = "scram-sha-256"

    def test_atTheLimitAccepted(self) -> None:
        """
        A SASLInitialResponse of exactly 65,535 bytes, sent byte by byte, is
        still accepted: the server-first message comes back.
        """
        self.startup()
        reply = self.replies()[0]
        assert isinstance(reply, AuthenticationRequest)
        self.assertEqual(reply.code, constants.AUTH_SASL)
        data = saslInitialResponse(LIMIT)
        for i in range(len(data)):
            self.protocol.dataReceived(data[i : i + 1])
        replies = self.replies()
        self.assertEqual(len(replies), 1, replies)
        reply = replies[0]
        assert isinstance(reply, AuthenticationRequest)
        self.assertEqual(reply.code, constants.AUTH_SASL_CONTINUE)
        self.assertFalse(self.transport.disconnecting)

    def test_overTheLimitRefused(self) -> None:
        """
        A SASLInitialResponse of 65,536 bytes is refused with 08P01.
        """
        self.startup()
        self.replies()
        self.protocol.dataReceived(saslInitialResponse(LIMIT + 1))
        self.assertFatal("08P01", "invalid message length")

    def test_hugeSASLResponseRefused(self) -> None:
        """
        A huge SASLResponse after the server-first message is refused at
        its header, byte by byte, with nothing buffered.
        """
        self.startup()
        self.replies()
        self.protocol.dataReceived(saslInitialResponse(100))
        self.replies()
        header = b"p" + codec.INT32.pack(0x3FFFFFFF)
        for byte in header:
            self.protocol.dataReceived(bytes([byte]))
        self.assertFatal("08P01", "invalid message length")
        assert self.protocol._framer is not None
        self.assertEqual(self.protocol._framer.pending, 0)


class ConsoleLengthTests(FrontendTestCase):
    """
    The admin console's login has the same limit.
    """

    def setUp(self) -> None:
        super().setUp()
        base = makeConfiguration()
        self.factory.config = Configuration(
            main=base.main,
            servers=base.servers,
            hba=base.hba,
            users=base.users,
            admins={"root": UserEntry("root", "rootpw")},
        )
        self.protocol = self.connect(IPv4Address("TCP", "127.0.0.1", 50001))

    def test_hugeLengthRefused(self) -> None:
        """
        A console login answering the SCRAM challenge with a 0x3FFFFFFF
        length is refused at the header with 08P01.
        """
        self.startup(user="root", database="pgbouncer")
        reply = self.replies()[0]
        assert isinstance(reply, AuthenticationRequest)
        self.assertEqual(reply.code, constants.AUTH_SASL)
        for byte in b"p" + codec.INT32.pack(0x3FFFFFFF):
            self.protocol.dataReceived(bytes([byte]))
        self.assertFatal("08P01", "invalid message length")
        assert self.protocol._framer is not None
        self.assertEqual(self.protocol._framer.pending, 0)

    def test_atTheLimitAccepted(self) -> None:
        """
        A 65,535-byte SASLInitialResponse to the console is accepted.
        """
        self.startup(user="root", database="pgbouncer")
        self.replies()
        self.protocol.dataReceived(saslInitialResponse(LIMIT))
        reply = self.replies()[0]
        assert isinstance(reply, AuthenticationRequest)
        self.assertEqual(reply.code, constants.AUTH_SASL_CONTINUE)
