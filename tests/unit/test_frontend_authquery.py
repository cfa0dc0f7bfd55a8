"""
Tests for auth_query in L{pgtwist.net.frontend}: when a client's user is
looked up, how the login waits for the answer, what a miss or a failure
tells the client, and how a stale cached verifier is checked again.

Checking a client against a verifier is the auth methods' business; these
tests use a C{password} method that checks an md5 verifier, so that they
exercise the lookup whatever the built-in methods do with verifiers.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from pgtwist.app.bootstrap import loadPlugins
from pgtwist.auth._md5 import md5Response, md5Secret
from pgtwist.auth.methods import Md5AuthMethod
from pgtwist.auth.steps import AuthStep, continued, failed, succeeded
from pgtwist.config.authquery import DEFAULT_AUTH_QUERY, AuthQuerySettings
from pgtwist.config.model import (
    Configuration,
    HbaRule,
    MainSettings,
    ServerSettings,
    UserEntry,
)
from pgtwist.config.verifiers import Md5Verifier
from pgtwist.interfaces import IAuthExchange, IAuthMethod
from pgtwist.net.authquery import UserLookup
from pgtwist.net.cancel import CancelRegistry
from pgtwist.net.frontend import FrontendFactory, FrontendProtocol, findUser
from pgtwist.wire import codec, constants
from pgtwist.wire.errors import fatal
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    AuthenticationRequest,
    ErrorResponse,
    Message,
    PasswordMessage,
    Query,
    StartupMessage,
)
from tests.unit.test_frontend import FakePoolWithCodes
from tests.unit.test_net_authquery import FakeRunner


def md5Row(user: str, password: str) -> tuple[bytes, bytes]:
    """
    An auth_query row holding C{password}'s md5 verifier.
    """
    return (user.encode(), md5Secret(password, user).encode())


class _VerifierExchange:
    """
    Ask for a cleartext password and check it against an md5 verifier (or
    the vault's password).
    """

    def __init__(self, user: UserEntry) -> None:
        self.user = user

    def start(self) -> AuthStep:
        """
        Ask for the password.
        """
        return continued(AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD))

    def receive(self, message: Message) -> AuthStep:
        """
        Check it.
        """
        assert isinstance(message, PasswordMessage)
        given = message.data.rstrip(b"\x00").decode()
        verifier = self.user.verifier
        if isinstance(verifier, Md5Verifier):
            ok = verifier.hash == md5Secret(given, self.user.name)
        else:
            ok = self.user.password is not None and given == self.user.password
        if ok:
            return succeeded()
        return failed(
            "wrong password",
            fatal(
                constants.SQLSTATE_INVALID_PASSWORD,
                f'password authentication failed for user "{self.user.name}"',
            ),
        )


@implementer(IAuthMethod)
class VerifierPasswordMethod:
    """
    C{password}, checking md5 verifiers (see the module docstring).
    """

    name = "password"
    backendRequestCodes: frozenset[int] = frozenset()

    def frontendExchange(self, user: UserEntry, channelBinding: bytes | None) -> IAuthExchange:
        """
        A L{_VerifierExchange}.
        """
        return _VerifierExchange(user)  # type: ignore[return-value]

    def backendExchange(self, *args: object) -> IAuthExchange:
        """
        Not used here.
        """
        raise NotImplementedError()


class _Md5VerifierExchange(_VerifierExchange):
    """
    Ask for an md5 response with C{salt} and check it against an md5
    verifier.
    """

    def __init__(self, user: UserEntry, salt: bytes) -> None:
        super().__init__(user)
        self.salt = salt

    def start(self) -> AuthStep:
        """
        Ask for the md5 response.
        """
        return continued(AuthenticationRequest(constants.AUTH_MD5_PASSWORD, self.salt))

    def receive(self, message: Message) -> AuthStep:
        """
        Check it.
        """
        assert isinstance(message, PasswordMessage)
        verifier = self.user.verifier
        assert isinstance(verifier, Md5Verifier)
        inner = verifier.hash[3:].encode() + self.salt
        if message.data.rstrip(b"\x00").decode() == "md5" + hashlib.md5(inner).hexdigest():
            return succeeded()
        return failed(
            "wrong password",
            fatal(
                constants.SQLSTATE_INVALID_PASSWORD,
                f'password authentication failed for user "{self.user.name}"',
            ),
        )


class VerifierMd5Method(Md5AuthMethod):
    """
    C{md5}, checking md5 verifiers.
    """

    def frontendExchange(self, user: UserEntry, channelBinding: bytes | None) -> IAuthExchange:
        """
        A L{_Md5VerifierExchange} with a salt of C{randomBytes}.
        """
        return _Md5VerifierExchange(user, self.randomBytes(4))  # type: ignore[return-value]


def makeConfig(method: str = "password", **main: Any) -> Configuration:
    """
    auth_query on (as the superuser), one HBA rule, alice in the vault.
    """
    settings: dict[str, Any] = {"authQuery": DEFAULT_AUTH_QUERY}
    settings.update(main)
    return Configuration(
        main=MainSettings(**settings),
        servers=(ServerSettings("primary", "127.0.0.1", 5432, True),),
        hba=(HbaRule("host", "all", "all", None, method, "hba.conf", 1),),
        users={"alice": UserEntry("alice", "wonderland")},
        superuser=UserEntry("postgres", "su-secret"),
    )


class AuthQueryLoginTests(SynchronousTestCase):
    """
    Logins of users in no file of pgtwist's, looked up with auth_query.
    """

    method = "password"

    def setUp(self) -> None:
        self.clock = Clock()
        self.runner = FakeRunner()
        self.lookup = UserLookup(self.clock, self.runner)
        self.keys = itertools.count(1)
        self.salts = (bytes([i % 256]) * 4 for i in itertools.count(1))
        self.makeFactory(makeConfig(self.method))

    def makeFactory(self, config: Configuration) -> None:
        """
        A factory for C{config} with the lookup.
        """
        methods, pipelines = loadPlugins()
        methods = dict(methods)
        methods["password"] = VerifierPasswordMethod()  # type: ignore[assignment]
        methods["md5"] = VerifierMd5Method(lambda n: next(self.salts))
        self.factory = FrontendFactory(
            config,
            FakePoolWithCodes(),
            self.clock,
            methods,
            pipelines,
            CancelRegistry(None, randomInt=lambda: next(self.keys)),
        )
        self.factory.userLookup = self.lookup

    def connect(self, **parameters: str) -> tuple[FrontendProtocol, StringTransport]:
        """
        A client that sent its StartupMessage (carol for db by default).
        """
        addr = IPv4Address("TCP", "127.0.0.1", 50000)
        protocol = self.factory.buildProtocol(addr)
        transport = StringTransport(peerAddress=addr)
        protocol.makeConnection(transport)
        startup = {"user": "carol", "database": "db"}
        startup.update(parameters)
        protocol.dataReceived(codec.encode(StartupMessage(startup)))
        return protocol, transport

    def replies(self, transport: StringTransport) -> list[Message]:
        """
        Decode and clear what pgtwist sent the client.
        """
        data = transport.value()
        transport.clear()
        return [codec.decodeBackend(t, b) for t, b in MessageFramer().feed(data)]

    def password(self, protocol: FrontendProtocol, password: str) -> None:
        """
        Send C{password}.
        """
        protocol.dataReceived(codec.encode(PasswordMessage(password.encode() + b"\x00")))

    def assertLoggedIn(self, transport: StringTransport) -> None:
        """
        The client got AuthenticationOk.
        """
        replies = self.replies(transport)
        self.assertIn(AuthenticationRequest(constants.AUTH_OK), replies)
        self.assertFalse(transport.disconnecting)

    def assertWrongPassword(self, transport: StringTransport, user: str = "carol") -> None:
        """
        The client got exactly the FATAL of a wrong password.
        """
        replies = self.replies(transport)
        self.assertEqual(
            replies,
            [
                fatal(
                    constants.SQLSTATE_INVALID_PASSWORD,
                    f'password authentication failed for user "{user}"',
                )
            ],
        )
        self.assertTrue(transport.disconnecting)

    def test_lookedUp(self) -> None:
        """
        A user in no file is looked up before the exchange starts (a
        client that waits meanwhile is not paused); the verifier found
        checks it.
        """
        protocol, transport = self.connect()
        self.assertEqual(
            [call[2:4] for call in self.runner.calls],
            [(AuthQuerySettings(DEFAULT_AUTH_QUERY, "postgres", "db"), "carol")],
        )
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(self.replies(transport), [])
        self.runner.answer(md5Row("carol", "s3cret"))
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(
            self.replies(transport), [AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)]
        )
        self.password(protocol, "s3cret")
        self.assertLoggedIn(transport)

    def test_sentDuringLookup(self) -> None:
        """
        A client that sends something while its user is looked up is
        paused until the lookup ends, and what it sent is kept for the
        exchange.
        """
        protocol, transport = self.connect()
        self.password(protocol, "s3cret")
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(self.replies(transport), [])
        self.runner.answer(md5Row("carol", "s3cret"))
        self.assertEqual(transport.producerState, "producing")
        self.assertLoggedIn(transport)

    def test_sentDuringFailedLookup(self) -> None:
        """
        A client paused during a lookup that fails gets the lookup's error
        and is resumed to be closed.
        """
        protocol, transport = self.connect()
        self.password(protocol, "s3cret")
        self.assertEqual(transport.producerState, "paused")
        self.runner.fail(ConnectionRefusedError("refused"))
        self.assertEqual(transport.producerState, "producing")
        (error,) = self.replies(transport)
        assert isinstance(error, ErrorResponse)
        self.assertEqual(error.code, constants.SQLSTATE_CONNECTION_FAILURE)
        self.assertTrue(transport.disconnecting)

    def test_missLikeWrongPassword(self) -> None:
        """
        A name PostgreSQL does not know gets the same exchange and the same
        error as a wrong password for a name it knows.
        """
        protocol, transport = self.connect()
        self.runner.answer()
        self.assertEqual(
            self.replies(transport), [AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)]
        )
        self.password(protocol, "guess")
        self.assertWrongPassword(transport)
        protocol, transport = self.connect()
        self.runner.answer(md5Row("carol", "s3cret"))
        self.assertEqual(
            self.replies(transport), [AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)]
        )
        self.password(protocol, "guess")
        self.assertWrongPassword(transport)

    def test_passwordBeforeAnswer(self) -> None:
        """
        A password that arrives while the lookup runs is checked once the
        answer is in.
        """
        protocol, transport = self.connect()
        self.password(protocol, "s3cret")
        self.runner.answer(md5Row("carol", "s3cret"))
        self.assertLoggedIn(transport)

    def test_violationWhileLooking(self) -> None:
        """
        A message sent during the lookup that is no password response is
        refused as a protocol violation once the exchange reads it.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(codec.encode(Query("SELECT 1")))
        self.runner.answer(md5Row("carol", "s3cret"))
        replies = self.replies(transport)
        error = replies[-1]
        assert isinstance(error, ErrorResponse)
        self.assertEqual(error.code, constants.SQLSTATE_PROTOCOL_VIOLATION)
        self.assertTrue(transport.disconnecting)

    def test_lookupFailed(self) -> None:
        """
        PostgreSQL unreachable: the client gets 08006 saying the lookup
        failed, not a password error.
        """
        _, transport = self.connect()
        self.runner.fail(ConnectionRefusedError("refused"))
        (error,) = self.replies(transport)
        assert isinstance(error, ErrorResponse)
        self.assertEqual(
            (error.severity, error.code, error.message),
            (
                "FATAL",
                constants.SQLSTATE_CONNECTION_FAILURE,
                'could not look up user "carol" for authentication: connection to server failed',
            ),
        )
        self.assertTrue(transport.disconnecting)

    def test_closedWhileLooking(self) -> None:
        """
        A client gone before the answer is left alone.
        """
        protocol, transport = self.connect()
        protocol.connectionLost()
        self.runner.answer(md5Row("carol", "s3cret"))
        self.assertEqual(transport.value(), b"")

    def test_fileUsersFirst(self) -> None:
        """
        A user of pgtwist's files is never looked up: the files come first.
        """
        protocol, transport = self.connect(user="alice")
        self.assertEqual(self.runner.calls, [])
        self.password(protocol, "wonderland")
        self.assertLoggedIn(transport)
        self.assertEqual(findUser(self.factory.config, "alice"), UserEntry("alice", "wonderland"))

    def test_allowUnknownUsersOff(self) -> None:
        """
        With C{allow_unknown_users = off}, users in no file are not looked
        up: they get the mock exchange and a wrong password's error.
        """
        self.makeFactory(makeConfig(allowUnknownUsers=False))
        protocol, transport = self.connect()
        self.assertEqual(self.runner.calls, [])
        self.replies(transport)
        self.password(protocol, "s3cret")
        self.assertWrongPassword(transport)

    def test_notConfigured(self) -> None:
        """
        Without auth_query nothing is looked up.
        """
        self.makeFactory(makeConfig(authQuery=None))
        self.connect()
        self.assertEqual(self.runner.calls, [])

    def test_trustNotLookedUp(self) -> None:
        """
        A method that checks no password looks nothing up.
        """
        self.makeFactory(makeConfig("trust"))
        _, transport = self.connect()
        self.assertEqual(self.runner.calls, [])
        self.assertIn(AuthenticationRequest(constants.AUTH_OK), self.replies(transport))

    def test_consoleNotLookedUp(self) -> None:
        """
        The admin console never uses auth_query.
        """
        self.connect(database="pgbouncer")
        self.assertEqual(self.runner.calls, [])

    def test_methodAllFollowsVerifier(self) -> None:
        """
        HBA method C{all} asks a looked-up user for the method of its
        verifier: md5 for an md5 hash.
        """
        self.makeFactory(makeConfig("all"))
        _, transport = self.connect()
        self.runner.answer(md5Row("carol", "s3cret"))
        (request,) = self.replies(transport)
        assert isinstance(request, AuthenticationRequest)
        self.assertEqual(request.code, constants.AUTH_MD5_PASSWORD)

    def test_staleCacheCheckedAgain(self) -> None:
        """
        A password that fails against a cached verifier drops it and is
        checked again at once against PostgreSQL's current one: a password
        changed with ALTER ROLE works at the next login, and the old one
        stops working.
        """
        self.makeFactory(makeConfig(authQueryCacheTtl=300.0))
        protocol, transport = self.connect()
        self.runner.answer(md5Row("carol", "old"))
        self.password(protocol, "old")
        self.assertLoggedIn(transport)
        # ALTER ROLE carol PASSWORD 'new'; the cache still holds 'old'.
        protocol, transport = self.connect()
        self.assertEqual(len(self.runner.calls), 1)
        self.replies(transport)
        self.password(protocol, "new")
        self.assertEqual(len(self.runner.calls), 2)
        self.assertEqual(self.replies(transport), [])
        self.runner.answer(md5Row("carol", "new"))
        self.assertLoggedIn(transport)
        # The fresh verifier is cached: the old password now fails, after
        # one more look that finds the same verifier.
        protocol, transport = self.connect()
        self.replies(transport)
        self.password(protocol, "old")
        self.runner.answer(md5Row("carol", "new"))
        self.assertWrongPassword(transport)
        self.assertEqual(self.lookup.outcomes, {"hit": 2, "query": 3, "miss": 0, "error": 0})

    def test_staleCacheCheckedAgainMd5(self) -> None:
        """
        With md5 too, a response that fails against a cached verifier is
        checked again, with the salt the client was given, against the
        fresh one.
        """
        self.makeFactory(makeConfig("md5", authQueryCacheTtl=300.0))
        protocol, transport = self.connect()
        self.runner.answer(md5Row("carol", "old"))
        (request,) = self.replies(transport)
        assert isinstance(request, AuthenticationRequest)
        response = md5Response("old", "carol", request.data)
        protocol.dataReceived(codec.encode(PasswordMessage(response.encode() + b"\x00")))
        self.assertLoggedIn(transport)
        protocol, transport = self.connect()
        (request,) = self.replies(transport)
        assert isinstance(request, AuthenticationRequest)
        response = md5Response("new", "carol", request.data)
        protocol.dataReceived(codec.encode(PasswordMessage(response.encode() + b"\x00")))
        self.runner.answer(md5Row("carol", "new"))
        self.assertLoggedIn(transport)

    def test_staleCacheRoleGone(self) -> None:
        """
        A cached user whose role is gone when checked again gets a wrong
        password's error, and nothing stays cached.
        """
        self.makeFactory(makeConfig(authQueryCacheTtl=300.0))
        protocol, transport = self.connect()
        self.runner.answer(md5Row("carol", "old"))
        self.password(protocol, "old")
        protocol, transport = self.connect()
        self.replies(transport)
        self.password(protocol, "other")
        self.runner.answer()
        self.assertWrongPassword(transport)
        self.assertEqual(len(self.lookup), 0)

    def test_staleCacheRecheckFails(self) -> None:
        """
        If looking again fails, the client gets the wrong password's error
        it would have had without a cache.
        """
        self.makeFactory(makeConfig(authQueryCacheTtl=300.0))
        protocol, transport = self.connect()
        self.runner.answer(md5Row("carol", "old"))
        self.password(protocol, "old")
        protocol, transport = self.connect()
        self.replies(transport)
        self.password(protocol, "other")
        self.runner.fail(ConnectionRefusedError())
        self.assertWrongPassword(transport)
