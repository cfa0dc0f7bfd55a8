"""
The contract every password-verifying L{IAuthMethod} must honour
(the txacme C{_StoreTestsMixin} pattern).

A third-party method gets the same checks as the built-ins by subclassing
L{AuthMethodContractMixin} together with C{SynchronousTestCase} and
providing L{AuthMethodContractMixin.makeMethod}.

L{converse} is also used by the unit tests: it runs pgtwist's client side of
a method against pgtwist's server side, every message through the codec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface.verify import verifyObject

from pgtwist.auth.steps import AuthStep, Outcome, passwordAuthenticationFailed
from pgtwist.config.model import UserEntry
from pgtwist.config.verifiers import BackendCredential
from pgtwist.interfaces import IAuthExchange, IAuthMethod
from pgtwist.wire import codec, constants
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.messages import AuthenticationRequest, Message, PasswordMessage, Query

if TYPE_CHECKING:
    from twisted.trial.unittest import SynchronousTestCase

    _Base = SynchronousTestCase
else:
    _Base = object


def roundTrip(message: Message, backend: bool) -> Message:
    """
    Encode C{message} and decode it again, as the peer would see it.

    @param backend: Whether PostgreSQL (or pgtwist playing it) sent it.
    """
    data = codec.encode(message)
    decode = codec.decodeBackend if backend else codec.decodeFrontend
    return decode(data[:1], data[5:])


class Conversation:
    """
    What happened in a L{converse} run.

    @ivar server: The last step of the server (frontend) exchange.
    @ivar client: The last step of the client (backend) exchange, or C{None}
        when the client never got a request.
    @ivar serverSteps: Every step of the server exchange, in order.
    @ivar clientSteps: Every step of the client exchange, in order.
    """

    def __init__(self) -> None:
        """
        Nothing happened yet.
        """
        self.server: AuthStep | None = None
        self.client: AuthStep | None = None
        self.serverSteps: list[AuthStep] = []
        self.clientSteps: list[AuthStep] = []


def converse(
    method: IAuthMethod,
    user: UserEntry,
    password: BackendCredential | None,
    clientMethod: IAuthMethod | None = None,
    serverBinding: bytes | None = None,
    clientBinding: bytes | None = None,
) -> Conversation:
    """
    Run C{method}'s server side for C{user} against the client side of
    C{clientMethod} (default: C{method}) logging in with C{password}.
    C{serverBinding} and C{clientBinding} are the channel-binding data each
    side sees (the same on one honest TLS connection).

    The client side is chosen and started as a backend protocol would: on
    the first AuthenticationRequest it receives. A successful server step
    is followed by an AuthenticationOk, as the caller of an exchange sends it.
    """
    clientMethod = method if clientMethod is None else clientMethod
    result = Conversation()
    server = method.frontendExchange(user, serverBinding)
    client: IAuthExchange | None = None
    step: AuthStep = server.start()
    while True:
        result.server = step
        result.serverSteps.append(step)
        if step.outcome is Outcome.FAILED:
            return result
        toClient = list(step.messages)
        if step.outcome is Outcome.SUCCEEDED:
            toClient.append(AuthenticationRequest(constants.AUTH_OK))
        clientStep: AuthStep | None = None
        for message in toClient:
            received = roundTrip(message, backend=True)
            if client is None:
                assert isinstance(received, AuthenticationRequest)
                client = clientMethod.backendExchange(user.name, password, received, clientBinding)
                clientStep = client.start()
            else:
                clientStep = client.receive(received)
            result.client = clientStep
            result.clientSteps.append(clientStep)
            if clientStep.outcome is Outcome.FAILED:
                return result
        if step.final:
            return result
        assert clientStep is not None and len(clientStep.messages) == 1, clientStep
        step = server.receive(roundTrip(clientStep.messages[0], backend=False))


class AuthMethodContractMixin(_Base):
    """
    Tests every frontend-capable, password-verifying method must pass:
    the right password succeeds on both sides, a wrong password and an
    unknown user fail alike with FATAL 28P01, and an exchange refuses
    messages once it is over.
    """

    password = "s3cr\u00e9t, p\u00e4ss=word"

    def makeMethod(self) -> IAuthMethod:
        """
        The method under test; subclasses override it.
        """
        raise NotImplementedError()

    def setUp(self) -> None:
        """
        Build the method under test.
        """
        self.method = self.makeMethod()

    def test_providesIAuthMethod(self) -> None:
        """
        The method provides L{IAuthMethod} with a name and request codes.
        """
        self.assertTrue(verifyObject(IAuthMethod, self.method))
        self.assertIsInstance(self.method.name, str)
        self.assertIsInstance(self.method.backendRequestCodes, frozenset)

    def test_frontendExchangeProvidesIAuthExchange(self) -> None:
        """
        L{IAuthMethod.frontendExchange} returns an L{IAuthExchange}.
        """
        exchange = self.method.frontendExchange(UserEntry("alice", self.password), None)
        self.assertTrue(verifyObject(IAuthExchange, exchange))

    def test_startAsksForSomething(self) -> None:
        """
        A password method's first step asks the client with one
        AuthenticationRequest and goes on.
        """
        step = self.method.frontendExchange(UserEntry("alice", self.password), None).start()
        self.assertIs(step.outcome, Outcome.CONTINUE)
        self.assertEqual(len(step.messages), 1)
        self.assertIsInstance(step.messages[0], AuthenticationRequest)

    def test_rightPasswordSucceeds(self) -> None:
        """
        The right password logs in; the client side sees AuthenticationOk.
        """
        result = converse(self.method, UserEntry("alice", self.password), self.password)
        assert result.server is not None and result.client is not None
        self.assertIs(result.server.outcome, Outcome.SUCCEEDED)
        self.assertIs(result.client.outcome, Outcome.SUCCEEDED)
        self.assertIsNone(result.server.error)

    def test_wrongPasswordFails(self) -> None:
        """
        A wrong password fails with PostgreSQL's FATAL 28P01 error.
        """
        result = converse(self.method, UserEntry("alice", self.password), "not it")
        assert result.server is not None
        self.assertIs(result.server.outcome, Outcome.FAILED)
        self.assertEqual(result.server.error, passwordAuthenticationFailed("alice"))
        assert result.server.error is not None
        self.assertEqual(result.server.error.code, constants.SQLSTATE_INVALID_PASSWORD)
        self.assertEqual(
            result.server.error.message, 'password authentication failed for user "alice"'
        )

    def test_unknownUserFails(self) -> None:
        """
        A user with no known password goes through the same exchange and
        fails with the same error as a wrong password.
        """
        known = converse(self.method, UserEntry("alice", self.password), "guess")
        unknown = converse(self.method, UserEntry("mallory", None), "guess")
        assert known.server is not None and unknown.server is not None
        self.assertIs(unknown.server.outcome, Outcome.FAILED)
        self.assertEqual(unknown.server.error, passwordAuthenticationFailed("mallory"))
        self.assertEqual(
            [len(s.messages) for s in known.serverSteps],
            [len(s.messages) for s in unknown.serverSteps],
        )

    def test_reasonIsLogSafe(self) -> None:
        """
        Failure reasons never contain the password tried or the real one.
        """
        result = converse(self.method, UserEntry("alice", self.password), "tried-this")
        assert result.server is not None
        self.assertNotIn(self.password, result.server.reason)
        self.assertNotIn("tried-this", result.server.reason)
        self.assertTrue(result.server.reason)

    def test_receiveBeforeStartRaises(self) -> None:
        """
        A message before L{IAuthExchange.start} is a protocol violation.
        """
        exchange = self.method.frontendExchange(UserEntry("alice", self.password), None)
        self.assertRaises(ProtocolViolation, exchange.receive, PasswordMessage(b"x\x00"))

    def test_wrongMessageTypeRaises(self) -> None:
        """
        Anything but a PasswordMessage in answer to the request is a
        protocol violation (08P01).
        """
        exchange = self.method.frontendExchange(UserEntry("alice", self.password), None)
        exchange.start()
        error = self.assertRaises(ProtocolViolation, exchange.receive, Query("SELECT 1"))
        self.assertEqual(error.sqlstate, constants.SQLSTATE_PROTOCOL_VIOLATION)

    def test_receiveAfterSuccessRaises(self) -> None:
        """
        Once an exchange succeeded it accepts no more messages.
        """
        exchange = self.method.frontendExchange(UserEntry("alice", self.password), None)
        step = exchange.start()
        request = step.messages[0]
        assert isinstance(request, AuthenticationRequest)
        client = self.method.backendExchange("alice", self.password, request)
        clientStep = client.start()
        while not step.final:
            step = exchange.receive(clientStep.messages[0])
            if not step.final:
                clientStep = client.receive(step.messages[0])
        self.assertIs(step.outcome, Outcome.SUCCEEDED)
        self.assertRaises(ProtocolViolation, exchange.receive, PasswordMessage(b"x\x00"))

    def test_receiveAfterFailureRaises(self) -> None:
        """
        Once an exchange failed it accepts no more messages.
        """
        exchange = self.method.frontendExchange(UserEntry("mallory", None), None)
        step = exchange.start()
        request = step.messages[0]
        assert isinstance(request, AuthenticationRequest)
        client = self.method.backendExchange("mallory", "guess", request)
        clientStep = client.start()
        while not step.final:
            step = exchange.receive(clientStep.messages[0])
            if not step.final:
                clientStep = client.receive(step.messages[0])
        self.assertIs(step.outcome, Outcome.FAILED)
        self.assertRaises(ProtocolViolation, exchange.receive, PasswordMessage(b"x\x00"))
