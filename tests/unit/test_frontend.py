"""
Tests for L{pgtwist.net.frontend.FrontendProtocol} with C{StringTransport} and a
C{Clock}: startup, refusals with PostgreSQL's wording, authentication,
hand-over to the pipeline.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.app.bootstrap import loadPlugins
from pgtwist.auth._scram import SCRAM_SHA_256, ScramClient
from pgtwist.config.model import (
    Configuration,
    HbaRule,
    MainSettings,
    ServerSettings,
    UserEntry,
)
from pgtwist.net.cancel import CancelRegistry
from pgtwist.net.frontend import FrontendFactory, FrontendProtocol, FrontendState
from pgtwist.testing import FakeBackendPool
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    AuthenticationRequest,
    BackendKeyData,
    CancelRequest,
    CommandComplete,
    ErrorResponse,
    GSSENCRequest,
    Message,
    NegotiateProtocolVersion,
    ParameterStatus,
    PasswordMessage,
    Query,
    ReadyForQuery,
    SSLRequest,
    StartupMessage,
    Terminate,
)


def makeConfiguration(method: str = "password", **main: object) -> Configuration:
    """
    A configuration with one HBA rule for every client and a vault user.
    """
    return Configuration(
        main=MainSettings(**main),  # type: ignore[arg-type]
        servers=(ServerSettings("primary", "127.0.0.1", 5432, True),),
        hba=(HbaRule("host", "all", "all", None, method, "hba.conf", 1),),
        users={"alice": UserEntry("alice", "wonderland")},
    )


class FakePoolWithCodes(FakeBackendPool):
    """
    A fake pool that also answers the HBA method C{all} question.
    """

    code: int | None = constants.AUTH_MD5_PASSWORD

    def authRequestCode(self, key: object) -> int | None:
        """
        What PostgreSQL asked for.
        """
        return self.code


class FrontendTestCase(SynchronousTestCase):
    """
    Shared set-up: a factory with the built-in plugins and a fake pool.
    """

    method = "password"

    def setUp(self) -> None:
        self.clock = Clock()
        self.pool = FakePoolWithCodes()
        methods, pipelines = loadPlugins()
        self.cancels = CancelRegistry(None, randomInt=lambda: 777)
        self.factory = FrontendFactory(
            makeConfiguration(self.method), self.pool, self.clock, methods, pipelines, self.cancels
        )
        self.protocol = self.connect()

    def connect(self, address: object = None) -> FrontendProtocol:
        """
        A new client connection on a fresh StringTransport.
        """
        addr = address or IPv4Address("TCP", "127.0.0.1", 50000)
        protocol = self.factory.buildProtocol(addr)  # type: ignore[arg-type]
        self.transport = StringTransport(peerAddress=addr)  # type: ignore[arg-type]
        protocol.makeConnection(self.transport)
        return protocol

    def replies(self) -> list[Message]:
        """
        Decode and clear what pgtwist sent the client.
        """
        data = self.transport.value()
        self.transport.clear()
        return [codec.decodeBackend(t, b) for t, b in MessageFramer().feed(data)]

    def startup(self, **parameters: str) -> None:
        """
        Send a StartupMessage for alice unless told otherwise.
        """
        params = {"user": "alice", "database": "db"}
        params.update(parameters)
        self.protocol.dataReceived(codec.encode(StartupMessage(params)))

    def assertFatal(self, sqlstate: str, message: str) -> None:
        """
        The client got exactly one FATAL ErrorResponse and is being disconnected.
        """
        replies = self.replies()
        self.assertEqual(len(replies), 1, replies)
        error = replies[0]
        assert isinstance(error, ErrorResponse)
        self.assertEqual((error.severity, error.code, error.message), ("FATAL", sqlstate, message))
        self.assertTrue(self.transport.disconnecting)


class StartupTests(FrontendTestCase):
    """
    The untyped startup phase.
    """

    def test_sslRequestRefused(self) -> None:
        """
        An SSLRequest is answered with C{N} and the connection stays open.
        """
        self.protocol.dataReceived(codec.encode(SSLRequest()))
        self.assertEqual(self.transport.value(), b"N")
        self.assertFalse(self.transport.disconnecting)

    def test_gssencRequestRefused(self) -> None:
        """
        A GSSENCRequest is answered with C{N}.
        """
        self.protocol.dataReceived(codec.encode(GSSENCRequest()))
        self.assertEqual(self.transport.value(), b"N")

    def test_bytesAfterSSLRequest(self) -> None:
        """
        Bytes pipelined after an SSLRequest are refused (a MITM injection).
        """
        self.protocol.dataReceived(codec.encode(SSLRequest()) + b"junk")
        self.assertFatal("08P01", "received unencrypted data after SSL request")

    def test_sslThenStartupByteByByte(self) -> None:
        """
        SSLRequest then StartupMessage, one byte at a time, reach authentication.
        """
        for data in (codec.encode(SSLRequest()),):
            for i in range(len(data)):
                self.protocol.dataReceived(data[i : i + 1])
        self.transport.clear()
        data = codec.encode(StartupMessage({"user": "alice"}))
        for i in range(len(data)):
            self.protocol.dataReceived(data[i : i + 1])
        self.assertEqual(self.replies(), [AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)])
        self.assertEqual(self.protocol.key, ("alice", "alice"))

    def test_protocolVersion2(self) -> None:
        """
        Protocol 2.0 gets PostgreSQL's FATAL 0A000.
        """
        self.protocol.dataReceived(codec.encode(StartupMessage({"user": "a"}, protocol=2 << 16)))
        self.assertFatal("0A000", "unsupported frontend protocol 2.0: server supports 3.0 to 3.0")

    def test_oversizedStartup(self) -> None:
        """
        A startup packet over 10000 bytes is refused.
        """
        self.protocol.dataReceived(codec.INT32.pack(10001))
        self.assertFatal("08P01", "invalid length of startup packet")

    def test_garbage(self) -> None:
        """
        An HTTP request is not a startup packet.
        """
        self.protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertFatal("08P01", "invalid length of startup packet")

    def test_noUser(self) -> None:
        """
        A StartupMessage must name a user.
        """
        self.protocol.dataReceived(codec.encode(StartupMessage({"database": "x"})))
        self.assertFatal("28000", "no PostgreSQL user name specified in startup packet")

    def test_authenticationTimeout(self) -> None:
        """
        A client that never completes startup is closed after
        C{authentication_timeout}, without a message (PostgreSQL's behaviour).
        """
        self.clock.advance(self.factory.config.main.authenticationTimeout - 0.001)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.001)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.transport.value(), b"")

    def test_cancelRequestForwarded(self) -> None:
        """
        A CancelRequest is passed to the registry and the connection closed.
        """
        seen: list[CancelRequest] = []
        self.patch(self.cancels, "cancel", seen.append)
        self.protocol.dataReceived(codec.encode(CancelRequest(12, 34)))
        self.assertEqual(seen, [CancelRequest(12, 34)])
        self.assertTrue(self.transport.disconnecting)


class PasswordAuthenticationTests(FrontendTestCase):
    """
    Authentication with the C{password} HBA method.
    """

    def test_rightPassword(self) -> None:
        """
        The right password gets AuthenticationOk and the pipeline finishes the
        login with the backend's parameters and pid, and a secret of our own.
        """
        self.startup(application_name="app")
        self.replies()
        self.protocol.dataReceived(codec.encode(PasswordMessage(b"wonderland\x00")))
        replies = self.replies()
        self.assertEqual(replies[0], AuthenticationRequest(constants.AUTH_OK))
        self.assertIn(ParameterStatus("client_encoding", "UTF8"), replies)
        self.assertEqual(replies[-2], BackendKeyData(self.pool.backend.processId, 777))
        self.assertEqual(replies[-1], ReadyForQuery(b"I"))
        self.assertIs(self.protocol.state, FrontendState.READY)
        self.assertEqual(self.pool.acquired[0][0], ("db", "alice"))
        self.assertEqual(self.pool.acquired[0][1]["application_name"], "app")

    def test_wrongPassword(self) -> None:
        """
        A wrong password gets PostgreSQL's FATAL 28P01.
        """
        self.startup()
        self.replies()
        self.protocol.dataReceived(codec.encode(PasswordMessage(b"guess\x00")))
        self.assertFatal("28P01", 'password authentication failed for user "alice"')
        self.assertEqual(self.pool.acquired, [])

    def test_unknownUser(self) -> None:
        """
        A user missing from the vault cannot pass a password check.
        """
        self.startup(user="mallory")
        self.replies()
        self.protocol.dataReceived(codec.encode(PasswordMessage(b"x\x00")))
        self.assertFatal("28P01", 'password authentication failed for user "mallory"')

    def test_wrongMessageType(self) -> None:
        """
        Anything but a password message during authentication is a violation.
        """
        self.startup()
        self.replies()
        self.protocol.dataReceived(codec.encode(Query("SELECT 1")))
        self.assertFatal("08P01", "expected password response, got message type 81")

    def test_pipelinedQueryKept(self) -> None:
        """
        A query pipelined right behind the password reaches the backend after login.
        """
        self.startup()
        self.replies()
        query = codec.encode(Query("SELECT 1"))
        self.protocol.dataReceived(codec.encode(PasswordMessage(b"wonderland\x00")) + query)
        self.assertEqual(bytes(self.pool.backend.written), query)

    def test_queryAndTerminateAnswered(self) -> None:
        """
        A query and Terminate in one write: the query's answer reaches the
        client before its connection is closed, as from PostgreSQL.
        """
        self.startup()
        self.protocol.dataReceived(codec.encode(PasswordMessage(b"wonderland\x00")))
        self.replies()
        query = codec.encode(Query("SELECT 1"))
        self.protocol.dataReceived(query + codec.encode(Terminate()))
        backend = self.pool.backend
        self.assertEqual(bytes(backend.written), query)
        self.assertFalse(self.transport.disconnecting)
        assert backend.session is not None
        backend.session.backendDataReceived(
            codec.encodeAll([CommandComplete("SELECT 1"), ReadyForQuery()])
        )
        self.assertEqual(self.replies(), [CommandComplete("SELECT 1"), ReadyForQuery(b"I")])
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.pool.released, [backend])

    def test_cancelKeyRegistered(self) -> None:
        """
        After login the client's key routes cancels to its backend; after
        disconnect it is forgotten.
        """
        self.startup()
        self.protocol.dataReceived(codec.encode(PasswordMessage(b"wonderland\x00")))
        self.assertEqual(len(self.cancels), 1)
        self.protocol.connectionLost()
        self.assertEqual(len(self.cancels), 0)
        self.assertEqual(self.pool.released, [self.pool.backend])


class HbaTests(FrontendTestCase):
    """
    HBA decisions, worded as PostgreSQL words them.
    """

    def test_noEntry(self) -> None:
        """
        No matching rule: FATAL 28000 naming host, user and database.
        """
        self.factory.config = Configuration(
            main=MainSettings(),
            servers=self.factory.config.servers,
            hba=(HbaRule("host", "all", "all", ipaddress.ip_network("10.0.0.0/8"), "trust"),),
        )
        self.startup()
        self.assertFatal(
            "28000",
            'no pg_hba.conf entry for host "127.0.0.1", user "alice", database "db", no encryption',
        )

    def test_reject(self) -> None:
        """
        A C{reject} rule refuses with PostgreSQL's message.
        """
        self.factory.config = makeConfiguration("reject")
        self.startup()
        self.assertFatal(
            "28000",
            'pg_hba.conf rejects connection for host "127.0.0.1", user "alice", '
            'database "db", no encryption',
        )

    def test_unixSocketClient(self) -> None:
        """
        A unix-socket client is described as C{[local]}.
        """
        self.factory.config = makeConfiguration("reject")
        self.protocol = self.connect(UNIXAddress("/tmp/.s.PGSQL.1"))
        self.startup()
        error = self.replies()[0]
        assert isinstance(error, ErrorResponse)
        self.assertIn('host "[local]"', error.message)

    def test_trustUnknownUserRefusedWhenNotAllowed(self) -> None:
        """
        With C{allow_unknown_users = off}, trust still refuses users pgtwist
        does not know, as PostgreSQL refuses a missing role.
        """
        config = makeConfiguration("trust", allowUnknownUsers=False)
        self.factory.config = config
        self.startup(user="mallory")
        self.assertFatal("28000", 'role "mallory" does not exist')

    def test_protocolNegotiated(self) -> None:
        """
        A client asking for protocol 3.2 with a C{_pq_.} option gets
        PostgreSQL's NegotiateProtocolVersion (3.0, the option named) before
        its password request, and the option is not kept as a startup
        parameter.
        """
        params = {"user": "alice", "database": "db", "_pq_.test": "on"}
        self.protocol.dataReceived(codec.encode(StartupMessage(params, 3 << 16 | 2)))
        replies = self.replies()
        self.assertEqual(
            replies[0], NegotiateProtocolVersion(constants.PROTOCOL_3_0, ("_pq_.test",))
        )
        reply = replies[1]
        assert isinstance(reply, AuthenticationRequest)
        self.assertEqual(reply.code, constants.AUTH_CLEARTEXT_PASSWORD)
        self.assertEqual(self.protocol.startupParameters, {"user": "alice", "database": "db"})

    def test_allFollowsPostgres(self) -> None:
        """
        HBA method C{all} asks the client for what PostgreSQL asked for at an
        earlier login of the pool (here md5), so that clients without SCRAM
        keep working.
        """
        self.factory.config = makeConfiguration("all")
        self.startup()
        reply = self.replies()[0]
        assert isinstance(reply, AuthenticationRequest)
        self.assertEqual(reply.code, constants.AUTH_MD5_PASSWORD)


class AllMethodTests(FrontendTestCase):
    """
    HBA method C{all} makes the client prove the password pgtwist holds for
    the user before anything reaches PostgreSQL, and refuses strangers as
    PostgreSQL refuses a wrong password, whatever names they gave.
    """

    method = "all"

    def scram(self, user: str, database: str, password: str) -> list[Message]:
        """
        Connect afresh and run a SCRAM-SHA-256 exchange as C{user}; return
        what pgtwist sent after the client-final-message.
        """
        self.protocol = self.connect()
        self.startup(user=user, database=database)
        request = self.replies()
        self.assertEqual(len(request), 1, request)
        assert isinstance(request[0], AuthenticationRequest)
        self.assertEqual(request[0].code, constants.AUTH_SASL)
        client = ScramClient(password, "clientnonce")
        self.protocol.dataReceived(
            codec.encode(codec.encodeSASLInitialResponse(SCRAM_SHA_256, client.clientFirst()))
        )
        serverFirst = self.replies()[0]
        assert isinstance(serverFirst, AuthenticationRequest), serverFirst
        self.protocol.dataReceived(
            codec.encode(PasswordMessage(client.serverFirst(serverFirst.data)))
        )
        return self.replies()

    def test_scramBeforeAnyLogin(self) -> None:
        """
        Before pgtwist has logged into PostgreSQL for the pool, the client
        runs SCRAM-SHA-256 with pgtwist, and PostgreSQL is not asked
        anything (no backend is acquired to find out).
        """
        self.pool.code = None
        self.startup()
        reply = self.replies()[0]
        assert isinstance(reply, AuthenticationRequest)
        self.assertEqual(reply.code, constants.AUTH_SASL)
        self.assertEqual(self.pool.acquired, [])

    def test_postgresTrustStillNeedsThePassword(self) -> None:
        """
        PostgreSQL trusting pgtwist (its address) does not make pgtwist trust
        the client: with no password, or a wrong one, it gets 28P01 and no
        backend; with the vault's password it logs in.
        """
        self.pool.code = constants.AUTH_OK
        replies = self.scram("alice", "db", "guess")
        self.assertEqual(len(replies), 1, replies)
        error = replies[0]
        assert isinstance(error, ErrorResponse)
        self.assertEqual(
            (error.code, error.message),
            ("28P01", 'password authentication failed for user "alice"'),
        )
        self.assertEqual(self.pool.acquired, [])
        self.protocol = self.connect()
        self.startup()
        request = self.replies()[0]
        assert isinstance(request, AuthenticationRequest)
        self.assertEqual(request.code, constants.AUTH_SASL)
        self.protocol.dataReceived(codec.encode(PasswordMessage(b"\x00")))
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.pool.acquired, [])
        replies = self.scram("alice", "db", "wonderland")
        final = replies[0]
        assert isinstance(final, AuthenticationRequest)
        self.assertEqual(final.code, constants.AUTH_SASL_FINAL)
        self.assertIs(self.protocol.state, FrontendState.READY)
        self.assertEqual([key for key, _ in self.pool.acquired], [("db", "alice")])

    def test_sameRefusalForEveryStranger(self) -> None:
        """
        A wrong password, an unknown database and an unknown user (the
        default C{allow_unknown_users = on} notwithstanding) get the same
        FATAL 28P01 after the same exchange, with no DETAIL, and PostgreSQL
        is asked nothing.
        """
        self.pool.code = None
        refusals = [
            self.scram(user, database, password)
            for user, database, password in (
                ("alice", "db", "guess"),
                ("alice", "no_such_database", "guess"),
                ("mallory", "db", "anything"),
                ("mallory", "no_such_database", "anything"),
            )
        ]
        expected = [
            [
                errors.fatal(
                    constants.SQLSTATE_INVALID_PASSWORD,
                    f'password authentication failed for user "{user}"',
                )
            ]
            for user in ("alice", "alice", "mallory", "mallory")
        ]
        self.assertEqual(refusals, expected)
        self.assertEqual(self.pool.acquired, [])
        self.assertEqual(
            self.pool.authFailures,
            [
                ("db", "alice"),
                ("no_such_database", "alice"),
                ("db", "mallory"),
                ("no_such_database", "mallory"),
            ],
        )

    def test_knownMethodForUnknownUserIsScram(self) -> None:
        """
        A user pgtwist has no password for gets the mock SCRAM exchange
        even where the pool is known to use md5, so that the method asked
        for does not tell which users exist.
        """
        self.startup(user="mallory")
        reply = self.replies()[0]
        assert isinstance(reply, AuthenticationRequest)
        self.assertEqual(reply.code, constants.AUTH_SASL)
