"""
Tests for L{pgtwist.auth.methods}, L{pgtwist.auth.steps} and the
L{pgtwist.plugins.pgtwist_auth} dropin.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography import x509
from cryptography.x509.oid import NameOID
from twisted.plugin import IPlugin, getPlugins
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

import pgtwist.plugins
from pgtwist.app.bootstrap import discoverPlugins
from pgtwist.auth import _scram
from pgtwist.auth.methods import (
    CertAuthMethod,
    Md5AuthMethod,
    PasswordAuthMethod,
    RejectAuthMethod,
    ScramSha256AuthMethod,
    TrustAuthMethod,
    backendMethodFor,
    certificateAuthenticationFailed,
    certificateNameMatches,
    certificateRequired,
    certificateUserName,
)
from pgtwist.auth.steps import (
    AuthStep,
    Outcome,
    continued,
    failed,
    passwordAuthenticationFailed,
    succeeded,
)
from pgtwist.config.model import UserEntry
from pgtwist.interfaces import IAuthExchange, IAuthMethod
from pgtwist.plugins import pgtwist_auth
from pgtwist.testing.certs import CertificateAuthority
from pgtwist.wire import codec, constants
from pgtwist.wire.errors import ProtocolViolation, fatal
from pgtwist.wire.messages import (
    AuthenticationRequest,
    ErrorResponse,
    NoticeResponse,
    PasswordMessage,
    Query,
)
from tests.contract.auth import converse

ALICE = UserEntry("alice", "secret")
UNKNOWN = UserEntry("mallory", None)
OK = AuthenticationRequest(constants.AUTH_OK)
CLEARTEXT = AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)
MD5 = AuthenticationRequest(constants.AUTH_MD5_PASSWORD, b"\x01\x02\x03\x04")
#: Channel-binding data both sides of one TLS connection see.
BOUND = b"\x01" * 32
SASL = AuthenticationRequest(constants.AUTH_SASL, codec.encodeSASLMechanisms(["SCRAM-SHA-256"]))


def _fixedBytes(n: int) -> bytes:
    """
    Deterministic "random" bytes for tests.
    """
    return bytes(range(1, n + 1))


def _md5Hex(data: bytes) -> str:
    """
    The hex md5 digest of C{data}, computed independently of pgtwist.
    """
    return hashlib.md5(data).hexdigest()


class _CacheIsolation(SynchronousTestCase):
    """
    Empties the SCRAM key caches around each test.
    """

    def setUp(self) -> None:
        """
        Build the method (and caches) under test.
        """
        _scram.serverSecrets.clear()
        _scram.clientKeys.clear()
        self.addCleanup(_scram.serverSecrets.clear)
        self.addCleanup(_scram.clientKeys.clear)


class StepTests(SynchronousTestCase):
    """
    Tests for L{pgtwist.auth.steps}.
    """

    def test_continued(self) -> None:
        """
        L{continued} sends its messages and goes on.
        """
        step = continued(CLEARTEXT)
        self.assertEqual(step, AuthStep((CLEARTEXT,), Outcome.CONTINUE))
        self.assertFalse(step.final)

    def test_succeeded(self) -> None:
        """
        L{succeeded} is final, with optional messages.
        """
        self.assertEqual(succeeded(), AuthStep((), Outcome.SUCCEEDED))
        self.assertTrue(succeeded(OK).final)

    def test_failed(self) -> None:
        """
        L{failed} carries a reason, an optional error and optional messages.
        """
        error = fatal("28000", "no")
        step = failed("because", error, OK)
        self.assertEqual(step, AuthStep((OK,), Outcome.FAILED, "because", error))
        self.assertTrue(step.final)
        self.assertIsNone(failed("because").error)

    def test_passwordAuthenticationFailed(self) -> None:
        """
        The wrong-password error is PostgreSQL's FATAL 28P01.
        """
        error = passwordAuthenticationFailed("bob")
        self.assertEqual(error.severity, "FATAL")
        self.assertEqual(error.code, "28P01")
        self.assertEqual(error.message, 'password authentication failed for user "bob"')


class PluginTests(SynchronousTestCase):
    """
    The built-in methods are discoverable plugins.
    """

    def test_discovered(self) -> None:
        """
        C{getPlugins(IAuthMethod, pgtwist.plugins)} finds the five built-ins
        under unique names, each providing L{IPlugin} and L{IAuthMethod}.
        """
        found = list(getPlugins(IAuthMethod, pgtwist.plugins))
        names = [method.name for method in found]
        self.assertEqual(len(names), len(set(names)))
        self.assertTrue({"trust", "reject", "password", "md5", "scram-sha-256"} <= set(names))
        for method in found:
            self.assertTrue(verifyObject(IAuthMethod, method))
            self.assertTrue(IPlugin.providedBy(method))

    def test_dropinInstances(self) -> None:
        """
        The dropin's module-level instances are of the built-in classes.
        """
        self.assertIsInstance(pgtwist_auth.trustAuthMethod, TrustAuthMethod)
        self.assertIsInstance(pgtwist_auth.rejectAuthMethod, RejectAuthMethod)
        self.assertIsInstance(pgtwist_auth.passwordAuthMethod, PasswordAuthMethod)
        self.assertIsInstance(pgtwist_auth.md5AuthMethod, Md5AuthMethod)
        self.assertIsInstance(pgtwist_auth.scramSha256AuthMethod, ScramSha256AuthMethod)
        self.assertIsInstance(pgtwist_auth.certAuthMethod, CertAuthMethod)

    def test_backendRequestCodes(self) -> None:
        """
        Each method answers the AuthenticationRequest codes of its kind.
        """
        self.assertEqual(TrustAuthMethod.backendRequestCodes, {constants.AUTH_OK})
        self.assertEqual(RejectAuthMethod.backendRequestCodes, frozenset())
        self.assertEqual(CertAuthMethod.backendRequestCodes, frozenset())
        self.assertEqual(
            PasswordAuthMethod.backendRequestCodes, {constants.AUTH_CLEARTEXT_PASSWORD}
        )
        self.assertEqual(Md5AuthMethod.backendRequestCodes, {constants.AUTH_MD5_PASSWORD})
        self.assertEqual(ScramSha256AuthMethod.backendRequestCodes, {constants.AUTH_SASL})

    def test_backendMethodFor(self) -> None:
        """
        L{backendMethodFor} picks the method answering the request's code,
        or C{None} when none does.
        """
        all = list(discoverPlugins().authMethods.values())
        self.assertEqual(backendMethodFor(OK, all).name, "trust")  # type: ignore[union-attr]
        self.assertEqual(backendMethodFor(CLEARTEXT, all).name, "password")  # type: ignore[union-attr]
        self.assertEqual(backendMethodFor(MD5, all).name, "md5")  # type: ignore[union-attr]
        self.assertEqual(backendMethodFor(SASL, all).name, "scram-sha-256")  # type: ignore[union-attr]
        self.assertIsNone(backendMethodFor(AuthenticationRequest(constants.AUTH_GSS), all))
        self.assertIsNone(backendMethodFor(MD5, [TrustAuthMethod()]))


class ExchangeInterfaceTests(_CacheIsolation):
    """
    Every exchange provides L{IAuthExchange} and refuses calls out of order.
    """

    def exchanges(self) -> list[IAuthExchange]:
        """
        One frontend and one backend exchange of every built-in method.
        """
        return [
            TrustAuthMethod().frontendExchange(ALICE, None),
            RejectAuthMethod().frontendExchange(ALICE, None),
            PasswordAuthMethod().frontendExchange(ALICE, None),
            Md5AuthMethod().frontendExchange(ALICE, None),
            ScramSha256AuthMethod().frontendExchange(ALICE, None),
            TrustAuthMethod().backendExchange("alice", None, OK),
            RejectAuthMethod().backendExchange("alice", None, OK),
            PasswordAuthMethod().backendExchange("alice", "secret", CLEARTEXT),
            Md5AuthMethod().backendExchange("alice", "secret", MD5),
            ScramSha256AuthMethod().backendExchange("alice", "secret", SASL),
        ]

    def test_verifyObject(self) -> None:
        """
        Each exchange provides L{IAuthExchange}.
        """
        for exchange in self.exchanges():
            self.assertTrue(verifyObject(IAuthExchange, exchange))

    def test_receiveBeforeStart(self) -> None:
        """
        L{IAuthExchange.receive} before L{IAuthExchange.start} raises.
        """
        for exchange in self.exchanges():
            self.assertRaises(ProtocolViolation, exchange.receive, OK)

    def test_startTwice(self) -> None:
        """
        L{IAuthExchange.start} can be called once.
        """
        for exchange in self.exchanges():
            exchange.start()
            self.assertRaises(ProtocolViolation, exchange.start)

    def test_receiveAfterViolation(self) -> None:
        """
        After a protocol violation the exchange is over.
        """
        exchange = PasswordAuthMethod().frontendExchange(ALICE, None)
        exchange.start()
        self.assertRaises(ProtocolViolation, exchange.receive, Query("x"))
        self.assertRaises(ProtocolViolation, exchange.receive, PasswordMessage(b"secret\x00"))

    def test_receiveAfterFinalStep(self) -> None:
        """
        A step that continues leaves the exchange open; after a final one,
        succeeded or failed, another message is a protocol violation.
        """
        for password, outcome in (
            (b"secret\x00", Outcome.SUCCEEDED),
            (b"wrong\x00", Outcome.FAILED),
        ):
            exchange = PasswordAuthMethod().frontendExchange(ALICE, None)
            self.assertIs(exchange.start().outcome, Outcome.CONTINUE)
            self.assertIs(exchange.receive(PasswordMessage(password)).outcome, outcome)
            self.assertRaises(ProtocolViolation, exchange.receive, PasswordMessage(password))

    def test_wrongRequestForMethod(self) -> None:
        """
        Asking a method to answer a request it does not handle is a bug of
        the caller.
        """
        self.assertRaises(ValueError, Md5AuthMethod().backendExchange, "alice", "pw", SASL)
        self.assertRaises(ValueError, TrustAuthMethod().backendExchange, "alice", "pw", MD5)


class TrustRejectTests(SynchronousTestCase):
    """
    C{trust} and C{reject} decide at once.
    """

    def test_trustFrontend(self) -> None:
        """
        C{trust} succeeds with no message; the caller sends AuthenticationOk.
        """
        exchange = TrustAuthMethod().frontendExchange(UNKNOWN, None)
        self.assertEqual(exchange.start(), succeeded())
        self.assertRaises(ProtocolViolation, exchange.receive, PasswordMessage(b"x\x00"))

    def test_rejectFrontend(self) -> None:
        """
        C{reject} fails with no error of its own: the caller words it.
        """
        step = RejectAuthMethod().frontendExchange(ALICE, None).start()
        self.assertEqual(step, failed("rejected by HBA"))

    def test_trustConversation(self) -> None:
        """
        A trusted client and pgtwist's client side agree.
        """
        result = converse(TrustAuthMethod(), ALICE, None)
        self.assertEqual(result.server, succeeded())
        self.assertEqual(result.client, succeeded())

    def test_rejectConversation(self) -> None:
        """
        A rejected client never gets a request.
        """
        result = converse(RejectAuthMethod(), ALICE, "secret")
        assert result.server is not None
        self.assertIs(result.server.outcome, Outcome.FAILED)
        self.assertIsNone(result.client)

    def test_trustBackend(self) -> None:
        """
        PostgreSQL's AuthenticationOk is answered by succeeding at once.
        """
        self.assertEqual(TrustAuthMethod().backendExchange("alice", None, OK).start(), succeeded())

    def test_rejectBackend(self) -> None:
        """
        C{reject} cannot log into PostgreSQL.
        """
        step = RejectAuthMethod().backendExchange("alice", "pw", OK).start()
        self.assertIs(step.outcome, Outcome.FAILED)


def _certificate(authority: CertificateAuthority, commonName: str) -> x509.Certificate:
    """
    A client certificate for C{commonName}, as the frontend holds it after
    the handshake (a C{cryptography} certificate).
    """
    issued = authority.issue(commonName, client=True)
    return x509.load_pem_x509_certificate(issued.certificatePEM)


class _NoCommonName:
    """
    Stands for a certificate whose subject has no CN.
    """

    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pgtwist")])


class CertFrontendTests(SynchronousTestCase):
    """
    C{cert}: the verified client certificate's CN must be the user name.
    """

    authority = CertificateAuthority()

    def test_matchingName(self) -> None:
        """
        A certificate whose CN is the user name admits the client at once,
        with no password asked.
        """
        exchange = CertAuthMethod().certificateExchange(
            ALICE, _certificate(self.authority, "alice")
        )
        self.assertEqual(exchange.start(), succeeded())
        self.assertRaises(ProtocolViolation, exchange.receive, PasswordMessage(b"x\x00"))

    def test_otherName(self) -> None:
        """
        Another CN gets PostgreSQL's 28000 "certificate authentication
        failed"; so does a CN that differs in case only (PostgreSQL
        compares exactly without a user name map).
        """
        for name in ("bob", "Alice", "alice "):
            step = (
                CertAuthMethod()
                .certificateExchange(ALICE, _certificate(self.authority, name))
                .start()
            )
            self.assertEqual(
                step,
                failed(
                    "the client certificate's CN is not the user name",
                    certificateAuthenticationFailed("alice"),
                ),
                name,
            )
        self.assertEqual(
            certificateAuthenticationFailed("alice"),
            fatal("28000", 'certificate authentication failed for user "alice"'),
        )

    def test_noCertificate(self) -> None:
        """
        Without a verified certificate the client is refused with
        PostgreSQL's "connection requires a valid client certificate";
        L{CertAuthMethod.frontendExchange}, which is given none, always
        refuses.
        """
        expected = failed("no valid client certificate", certificateRequired())
        self.assertEqual(CertAuthMethod().certificateExchange(ALICE, None).start(), expected)
        self.assertEqual(CertAuthMethod().frontendExchange(ALICE, None).start(), expected)
        self.assertEqual(
            certificateRequired(),
            fatal("28000", "connection requires a valid client certificate"),
        )

    def test_noCommonName(self) -> None:
        """
        A certificate that names no user is refused, as PostgreSQL does.
        """
        step = CertAuthMethod().certificateExchange(ALICE, _NoCommonName()).start()
        self.assertEqual(
            step,
            failed(
                "client certificate contains no user name",
                certificateAuthenticationFailed("alice"),
            ),
        )
        self.assertIsNone(certificateUserName(_NoCommonName()))
        self.assertFalse(certificateNameMatches(_NoCommonName(), "alice"))
        self.assertFalse(certificateNameMatches(None, "alice"))

    def test_userName(self) -> None:
        """
        L{certificateUserName} is the subject's CN.
        """
        self.assertEqual(certificateUserName(_certificate(self.authority, "alice")), "alice")
        self.assertTrue(certificateNameMatches(_certificate(self.authority, "alice"), "alice"))

    def test_backend(self) -> None:
        """
        PostgreSQL never asks for C{cert}: its backend exchange fails.
        """
        step = CertAuthMethod().backendExchange("alice", "pw", OK).start()
        self.assertIs(step.outcome, Outcome.FAILED)


class PasswordFrontendTests(SynchronousTestCase):
    """
    The C{password} method as a server.
    """

    def test_request(self) -> None:
        """
        The first step asks for the password in cleartext.
        """
        step = PasswordAuthMethod().frontendExchange(ALICE, None).start()
        self.assertEqual(step, continued(CLEARTEXT))

    def check(self, user: UserEntry, data: bytes) -> AuthStep:
        """
        Run an exchange for C{user} that receives a PasswordMessage of C{data}.
        """
        exchange = PasswordAuthMethod().frontendExchange(user, None)
        exchange.start()
        return exchange.receive(PasswordMessage(data))

    def test_rightPassword(self) -> None:
        """
        The right password succeeds with no message.
        """
        self.assertEqual(self.check(ALICE, b"secret\x00"), succeeded())

    def test_wrongPassword(self) -> None:
        """
        A wrong password fails with FATAL 28P01.
        """
        step = self.check(ALICE, b"secreT\x00")
        self.assertEqual(step, failed("wrong password", passwordAuthenticationFailed("alice")))

    def test_unknownUser(self) -> None:
        """
        A user without a password fails like a wrong password.
        """
        step = self.check(UNKNOWN, b"secret\x00")
        self.assertIs(step.outcome, Outcome.FAILED)
        self.assertEqual(step.error, passwordAuthenticationFailed("mallory"))

    def test_emptyPassword(self) -> None:
        """
        An empty password is refused as PostgreSQL refuses it.
        """
        step = self.check(ALICE, b"\x00")
        assert step.error is not None
        self.assertEqual(step.error.code, "28P01")
        self.assertEqual(step.error.message, "empty password returned by client")

    def test_invalidPacket(self) -> None:
        """
        A body without its terminating NUL, or with bytes after it, is a
        protocol violation.
        """
        for data in (b"secret", b"sec\x00ret\x00", b""):
            error = self.assertRaises(ProtocolViolation, self.check, ALICE, data)
            self.assertEqual(error.message, "invalid password packet size")

    def test_nonAsciiPassword(self) -> None:
        """
        Non-ASCII passwords compare by their UTF-8 bytes.
        """
        user = UserEntry("alice", "p\u00e4ss")
        self.assertEqual(self.check(user, "p\u00e4ss\x00".encode()), succeeded())
        self.assertIs(self.check(user, b"p\xe4ss\x00").outcome, Outcome.FAILED)

    def test_wrongMessageType(self) -> None:
        """
        Anything but a PasswordMessage is refused with PostgreSQL's wording.
        """
        exchange = PasswordAuthMethod().frontendExchange(ALICE, None)
        exchange.start()
        error = self.assertRaises(ProtocolViolation, exchange.receive, Query("SELECT 1"))
        self.assertEqual(error.message, "expected password response, got message type 81")


class Md5FrontendTests(SynchronousTestCase):
    """
    The C{md5} method as a server.
    """

    def setUp(self) -> None:
        """
        Build the method (and caches) under test.
        """
        self.method = Md5AuthMethod(randomBytes=lambda n: b"\x01\x02\x03\x04"[:n])

    def test_request(self) -> None:
        """
        The first step sends the injected 4-byte salt.
        """
        step = self.method.frontendExchange(ALICE, None).start()
        self.assertEqual(step, continued(MD5))

    def test_rightHash(self) -> None:
        """
        The hash a client computes from the right password succeeds.
        """
        inner = _md5Hex(b"secretalice").encode("ascii")
        answer = ("md5" + _md5Hex(inner + b"\x01\x02\x03\x04")).encode("ascii") + b"\x00"
        exchange = self.method.frontendExchange(ALICE, None)
        exchange.start()
        self.assertEqual(exchange.receive(PasswordMessage(answer)), succeeded())

    def test_cleartextAnswerFails(self) -> None:
        """
        The cleartext password is not an acceptable md5 answer.
        """
        exchange = self.method.frontendExchange(ALICE, None)
        exchange.start()
        step = exchange.receive(PasswordMessage(b"secret\x00"))
        self.assertEqual(step.error, passwordAuthenticationFailed("alice"))

    def test_freshSaltEachTime(self) -> None:
        """
        The default method draws a new salt for every exchange.
        """
        method = Md5AuthMethod()
        salts = {
            method.frontendExchange(ALICE, None).start().messages[0].data  # type: ignore[attr-defined]
            for _ in range(5)
        }
        self.assertGreater(len(salts), 1)


class ScramFrontendTests(_CacheIsolation):
    """
    The C{scram-sha-256} method as a server.
    """

    def setUp(self) -> None:
        """
        Build the method (and caches) under test.
        """
        super().setUp()
        self.method = ScramSha256AuthMethod(randomBytes=_fixedBytes)

    def test_mechanismsOffered(self) -> None:
        """
        Without TLS only SCRAM-SHA-256 is offered; with channel-binding data
        SCRAM-SHA-256-PLUS comes first, as PostgreSQL lists them, for known
        and unknown users alike.
        """
        cases = [
            (None, ["SCRAM-SHA-256"]),
            (b"certificate hash", ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]),
        ]
        for binding, expected in cases:
            for user in (ALICE, UNKNOWN):
                step = self.method.frontendExchange(user, binding).start()
                self.assertIs(step.outcome, Outcome.CONTINUE)
                (request,) = step.messages
                assert isinstance(request, AuthenticationRequest)
                self.assertEqual(request.code, constants.AUTH_SASL)
                self.assertEqual(codec.parseSASLMechanisms(request.data), expected)

    def test_plus(self) -> None:
        """
        Over TLS, a client and server seeing the same binding log in with
        SCRAM-SHA-256-PLUS.
        """
        result = converse(self.method, ALICE, "secret", serverBinding=BOUND, clientBinding=BOUND)
        assert result.server is not None
        self.assertIs(result.server.outcome, Outcome.SUCCEEDED)
        initial = result.clientSteps[0].messages[0]
        assert isinstance(initial, PasswordMessage)
        mechanism, payload = codec.parseSASLInitialResponse(initial.data)
        self.assertEqual(mechanism, "SCRAM-SHA-256-PLUS")
        assert payload is not None
        self.assertTrue(payload.startswith(b"p=tls-server-end-point,,"))

    def test_plusBindingMismatch(self) -> None:
        """
        A client whose TLS ends elsewhere (other binding data) is refused
        with the right password, as PostgreSQL refuses it.
        """
        error = self.assertRaises(
            ProtocolViolation,
            converse,
            self.method,
            ALICE,
            "secret",
            serverBinding=BOUND,
            clientBinding=b"\x02" * 32,
        )
        self.assertEqual(error.message, "SCRAM channel binding check failed")

    def test_plusUnknownUser(self) -> None:
        """
        The mock exchange of an unknown user goes through PLUS just as a
        known user's and fails with the same 28P01.
        """
        for user in (ALICE, UNKNOWN):
            result = converse(self.method, user, "guess", serverBinding=BOUND, clientBinding=BOUND)
            assert result.server is not None
            self.assertIs(result.server.outcome, Outcome.FAILED)
            self.assertEqual(result.server.error, passwordAuthenticationFailed(user.name))
            self.assertEqual(len(result.serverSteps), 3)

    def test_plusNotOfferedWithoutTls(self) -> None:
        """
        Without TLS a client that selects SCRAM-SHA-256-PLUS anyway is
        refused, as PostgreSQL does.
        """
        message = codec.encodeSASLInitialResponse(
            "SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,n=,r=abc"
        )
        error = self.assertRaises(ProtocolViolation, self.start().receive, message)
        self.assertEqual(error.message, "client selected an invalid SASL authentication mechanism")

    def test_downgradeRefused(self) -> None:
        """
        A client over TLS that was offered only SCRAM-SHA-256 by a man in
        the middle says C{y}; pgtwist, which offered PLUS, refuses it.
        """
        exchange = self.method.frontendExchange(ALICE, BOUND)
        exchange.start()
        message = codec.encodeSASLInitialResponse("SCRAM-SHA-256", b"y,,n=,r=abc")
        error = self.assertRaises(ProtocolViolation, exchange.receive, message)
        self.assertEqual(error.message, "SCRAM channel binding negotiation error")

    def start(self, user: UserEntry = ALICE) -> IAuthExchange:
        """
        A started exchange for C{user}.
        """
        exchange = self.method.frontendExchange(user, None)
        exchange.start()
        return exchange

    def test_invalidMechanism(self) -> None:
        """
        A mechanism that was not offered is a protocol violation, worded as
        PostgreSQL words it.
        """
        for mechanism in ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1", "PLAIN"):
            message = codec.encodeSASLInitialResponse(mechanism, b"n,,n=,r=abc")
            error = self.assertRaises(ProtocolViolation, self.start().receive, message)
            self.assertEqual(
                error.message, "client selected an invalid SASL authentication mechanism"
            )
            self.assertEqual(error.sqlstate, "08P01")

    def test_malformedClientFirst(self) -> None:
        """
        A malformed client-first-message is a protocol violation.
        """
        message = codec.encodeSASLInitialResponse("SCRAM-SHA-256", b"garbage")
        error = self.assertRaises(ProtocolViolation, self.start().receive, message)
        self.assertEqual(error.message, "malformed SCRAM message")

    def test_malformedInitialResponse(self) -> None:
        """
        A SASLInitialResponse body that does not parse is a protocol violation.
        """
        self.assertRaises(
            ProtocolViolation, self.start().receive, PasswordMessage(b"SCRAM-SHA-256\x00\x00")
        )

    def test_wrongMessageType(self) -> None:
        """
        Anything but a PasswordMessage is refused with PostgreSQL's wording.
        """
        error = self.assertRaises(ProtocolViolation, self.start().receive, Query("x"))
        self.assertEqual(error.message, "expected SASL response, got message type 81")

    def test_serverFirst(self) -> None:
        """
        The client-first-message is answered with AuthenticationSASLContinue
        carrying the server-first-message built from the injected nonce.
        """
        exchange = self.start()
        step = exchange.receive(codec.encodeSASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abc"))
        (request,) = step.messages
        assert isinstance(request, AuthenticationRequest)
        self.assertEqual(request.code, constants.AUTH_SASL_CONTINUE)
        nonce = "abc" + base64.b64encode(_fixedBytes(18)).decode()
        salt = base64.b64encode(_fixedBytes(16)).decode()
        self.assertEqual(request.data, f"r={nonce},s={salt},i=4096".encode())

    def test_noInitialResponse(self) -> None:
        """
        Without an initial response the server sends an empty challenge and
        takes the client-first-message from the next message.
        """
        exchange = self.start()
        step = exchange.receive(PasswordMessage(b"SCRAM-SHA-256\x00\xff\xff\xff\xff"))
        self.assertEqual(step, continued(AuthenticationRequest(constants.AUTH_SASL_CONTINUE)))
        step = exchange.receive(PasswordMessage(b"n,,n=,r=abc"))
        self.assertTrue(step.messages[0].data.startswith(b"r=abc"))  # type: ignore[attr-defined]

    def test_success(self) -> None:
        """
        A client with the right password gets AuthenticationSASLFinal with
        the server signature, which pgtwist's own client verifies.
        """
        result = converse(self.method, ALICE, "secret")
        assert result.server is not None and result.client is not None
        (final,) = result.server.messages
        assert isinstance(final, AuthenticationRequest)
        self.assertEqual(final.code, constants.AUTH_SASL_FINAL)
        self.assertTrue(final.data.startswith(b"v="))
        self.assertIs(result.client.outcome, Outcome.SUCCEEDED)

    def test_failureSendsNoServerFinal(self) -> None:
        """
        A wrong proof fails with no message, only the 28P01 error (like
        PostgreSQL, which sends no C{e=} message).
        """
        result = converse(self.method, ALICE, "wrong")
        assert result.server is not None
        self.assertEqual(result.server.messages, ())
        self.assertEqual(result.server.error, passwordAuthenticationFailed("alice"))
        self.assertEqual(result.server.reason, "wrong password")

    def salt(self, user: UserEntry) -> bytes:
        """
        The salt the server sends C{user}.
        """
        exchange = ScramSha256AuthMethod().frontendExchange(user, None)
        exchange.start()
        step = exchange.receive(codec.encodeSASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abc"))
        serverFirst = step.messages[0].data.decode()  # type: ignore[attr-defined]
        return base64.b64decode(serverFirst.split(",")[1][2:])

    def test_saltsStable(self) -> None:
        """
        A known user and an unknown user both see the same salt on every
        attempt, and different users different salts: the salt reveals
        nothing about whether a user exists.
        """
        self.assertEqual(self.salt(ALICE), self.salt(ALICE))
        self.assertEqual(self.salt(UNKNOWN), self.salt(UNKNOWN))
        self.assertNotEqual(self.salt(UNKNOWN), self.salt(UserEntry("eve", None)))
        self.assertEqual(len(self.salt(UNKNOWN)), len(self.salt(ALICE)))

    def test_unknownUserReason(self) -> None:
        """
        The log reason (not the client's error) says there was no password.
        """
        result = converse(self.method, UNKNOWN, "secret")
        assert result.server is not None
        self.assertEqual(result.server.reason, "no password known for the user")
        self.assertEqual(result.server.error, passwordAuthenticationFailed("mallory"))

    def test_pbkdf2OncePerUser(self) -> None:
        """
        Only the first login of a user derives keys: the second login, on
        both the server and the client side, calls PBKDF2 no more.
        """
        calls: list[int] = []
        original = _scram.hi

        def counting(password: bytes, salt: bytes, iterations: int) -> bytes:
            """
            Record the derivation and run it.
            """
            calls.append(iterations)
            return original(password, salt, iterations)

        self.patch(_scram, "hi", counting)
        first = converse(ScramSha256AuthMethod(), ALICE, "secret")
        self.assertEqual(calls, [4096, 4096])  # server secret, client keys
        second = converse(ScramSha256AuthMethod(), ALICE, "secret")
        self.assertEqual(len(calls), 2)
        for result in (first, second):
            assert result.server is not None
            self.assertIs(result.server.outcome, Outcome.SUCCEEDED)

    def test_unknownUserNoPbkdf2(self) -> None:
        """
        The mock exchange of an unknown user derives nothing server side.
        """
        calls: list[int] = []

        def counting(password: bytes, salt: bytes, iterations: int) -> bytes:
            """
            Record the derivation and run it.
            """
            calls.append(iterations)
            return bytes(32)

        self.patch(_scram, "hi", counting)
        exchange = self.method.frontendExchange(UNKNOWN, None)
        exchange.start()
        exchange.receive(codec.encodeSASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abc"))
        self.assertEqual(calls, [])


class BackendTests(_CacheIsolation):
    """
    The client side of each method, answering PostgreSQL.
    """

    def test_cleartext(self) -> None:
        """
        AuthenticationCleartextPassword is answered with the password and
        AuthenticationOk ends the exchange.
        """
        exchange = PasswordAuthMethod().backendExchange("alice", "secret", CLEARTEXT)
        self.assertEqual(exchange.start(), continued(PasswordMessage(b"secret\x00")))
        self.assertEqual(exchange.receive(OK), succeeded())

    def test_md5(self) -> None:
        """
        AuthenticationMD5Password is answered with the salted hash, computed
        here independently.
        """
        exchange = Md5AuthMethod().backendExchange("postgres", "postgres", MD5)
        inner = _md5Hex(b"postgrespostgres").encode("ascii")
        expected = ("md5" + _md5Hex(inner + b"\x01\x02\x03\x04")).encode("ascii") + b"\x00"
        self.assertEqual(exchange.start(), continued(PasswordMessage(expected)))
        self.assertEqual(exchange.receive(OK), succeeded())

    def test_md5BadSalt(self) -> None:
        """
        A salt that is not 4 bytes long is a protocol violation.
        """
        request = AuthenticationRequest(constants.AUTH_MD5_PASSWORD, b"\x01\x02")
        exchange = Md5AuthMethod().backendExchange("alice", "pw", request)
        self.assertRaises(ProtocolViolation, exchange.start)

    def test_noPassword(self) -> None:
        """
        When PostgreSQL asks for a password the vault does not have, the
        exchange fails with no error of its own.
        """
        for method, request in (
            (PasswordAuthMethod(), CLEARTEXT),
            (Md5AuthMethod(), MD5),
            (ScramSha256AuthMethod(), SASL),
        ):
            step = method.backendExchange("alice", None, request).start()
            self.assertEqual(step, failed("no password for user alice in the users vault"))

    def test_errorResponse(self) -> None:
        """
        PostgreSQL's ErrorResponse fails the exchange and is passed on.
        """
        error = passwordAuthenticationFailed("alice")
        exchange = PasswordAuthMethod().backendExchange("alice", "wrong", CLEARTEXT)
        exchange.start()
        step = exchange.receive(error)
        self.assertIs(step.outcome, Outcome.FAILED)
        self.assertIs(step.error, error)
        self.assertIn("28P01", step.reason)

    def test_noticeIgnored(self) -> None:
        """
        A NoticeResponse during authentication changes nothing.
        """
        exchange = PasswordAuthMethod().backendExchange("alice", "pw", CLEARTEXT)
        exchange.start()
        self.assertEqual(exchange.receive(NoticeResponse(((b"M", "hi"),))), continued())
        self.assertEqual(exchange.receive(OK), succeeded())

    def test_unexpectedRequest(self) -> None:
        """
        A request of another method mid-exchange, or another message type,
        is a protocol violation.
        """
        exchange = PasswordAuthMethod().backendExchange("alice", "pw", CLEARTEXT)
        exchange.start()
        self.assertRaises(ProtocolViolation, exchange.receive, MD5)
        exchange = PasswordAuthMethod().backendExchange("alice", "pw", CLEARTEXT)
        exchange.start()
        self.assertRaises(ProtocolViolation, exchange.receive, Query("x"))

    def test_receiveAfterOk(self) -> None:
        """
        Nothing is accepted after AuthenticationOk.
        """
        exchange = PasswordAuthMethod().backendExchange("alice", "pw", CLEARTEXT)
        exchange.start()
        exchange.receive(OK)
        self.assertRaises(ProtocolViolation, exchange.receive, OK)


class ScramBackendTests(_CacheIsolation):
    """
    The client side of C{scram-sha-256}, against a scripted PostgreSQL.
    """

    def setUp(self) -> None:
        """
        Build the method (and caches) under test.
        """
        super().setUp()
        self.method = ScramSha256AuthMethod(randomBytes=_fixedBytes)
        self.clientNonce = base64.b64encode(_fixedBytes(18)).decode()
        self.secret = _scram.makeSecret("secret", b"0123456789abcdef")

    def request(self, code: int, data: bytes) -> AuthenticationRequest:
        """
        An AuthenticationRequest as PostgreSQL would send it.
        """
        return AuthenticationRequest(code, data)

    def test_initialResponse(self) -> None:
        """
        SCRAM-SHA-256 is picked from the offered list and the initial
        response is libpq's client-first-message with the injected nonce.
        """
        mechanisms = codec.encodeSASLMechanisms(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])
        request = self.request(constants.AUTH_SASL, mechanisms)
        step = self.method.backendExchange("alice", "secret", request).start()
        expected = codec.encodeSASLInitialResponse(
            "SCRAM-SHA-256", f"n,,n=,r={self.clientNonce}".encode()
        )
        self.assertEqual(step, continued(expected))

    def test_plusWhenOffered(self) -> None:
        """
        Over TLS, SCRAM-SHA-256-PLUS is picked when offered, with libpq's
        GS2 header.
        """
        mechanisms = codec.encodeSASLMechanisms(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])
        request = self.request(constants.AUTH_SASL, mechanisms)
        step = self.method.backendExchange("alice", "secret", request, BOUND).start()
        expected = codec.encodeSASLInitialResponse(
            "SCRAM-SHA-256-PLUS", f"p=tls-server-end-point,,n=,r={self.clientNonce}".encode()
        )
        self.assertEqual(step, continued(expected))

    def test_plusOnly(self) -> None:
        """
        Over TLS, a server offering only SCRAM-SHA-256-PLUS is logged into.
        """
        mechanisms = codec.encodeSASLMechanisms(["SCRAM-SHA-256-PLUS"])
        request = self.request(constants.AUTH_SASL, mechanisms)
        step = self.method.backendExchange("alice", "secret", request, BOUND).start()
        self.assertIs(step.outcome, Outcome.CONTINUE)

    def test_tlsWithoutPlusOffered(self) -> None:
        """
        Over TLS, a server that does not offer PLUS gets SCRAM-SHA-256 with
        the C{y} flag, as libpq sends it: a PostgreSQL that can bind then
        knows its offer was tampered with.
        """
        step = self.method.backendExchange("alice", "secret", SASL, BOUND).start()
        expected = codec.encodeSASLInitialResponse(
            "SCRAM-SHA-256", f"y,,n=,r={self.clientNonce}".encode()
        )
        self.assertEqual(step, continued(expected))

    def test_plusSuccess(self) -> None:
        """
        A PLUS exchange against a server with the same binding succeeds.
        """
        server = _scram.ScramServer(self.secret, "SERVERNONCE", channelBinding=BOUND, plus=True)
        mechanisms = codec.encodeSASLMechanisms(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])
        exchange = self.method.backendExchange(
            "alice", "secret", self.request(constants.AUTH_SASL, mechanisms), BOUND
        )
        first = exchange.start()
        _, payload = codec.parseSASLInitialResponse(first.messages[0].data)  # type: ignore[attr-defined]
        assert payload is not None
        serverFirst = server.clientFirst(payload)
        final = exchange.receive(self.request(constants.AUTH_SASL_CONTINUE, serverFirst))
        serverFinal = server.clientFinal(final.messages[0].data)  # type: ignore[attr-defined]
        assert serverFinal is not None
        self.assertEqual(
            exchange.receive(self.request(constants.AUTH_SASL_FINAL, serverFinal)), continued()
        )
        self.assertIs(exchange.receive(OK).outcome, Outcome.SUCCEEDED)

    def test_noSupportedMechanism(self) -> None:
        """
        Without SCRAM-SHA-256 on offer the exchange fails, naming what was offered.
        """
        mechanisms = codec.encodeSASLMechanisms(["SCRAM-SHA-256-PLUS", "OAUTHBEARER"])
        request = self.request(constants.AUTH_SASL, mechanisms)
        step = self.method.backendExchange("alice", "secret", request).start()
        self.assertIs(step.outcome, Outcome.FAILED)
        self.assertIn("SCRAM-SHA-256-PLUS, OAUTHBEARER", step.reason)
        self.assertIsNone(step.error)

    def play(self, final: bytes | None = None, skipFinal: bool = False) -> list[AuthStep]:
        """
        Play the exchange against C{self.server}; C{final} replaces the
        server-final-message, C{skipFinal} sends AuthenticationOk without one.
        """
        server = _scram.ScramServer(self.secret, "SERVERNONCE")
        exchange = self.method.backendExchange("alice", "secret", SASL)
        steps = [exchange.start()]
        _, payload = codec.parseSASLInitialResponse(steps[0].messages[0].data)  # type: ignore[attr-defined]
        assert payload is not None
        serverFirst = server.clientFirst(payload)
        steps.append(exchange.receive(self.request(constants.AUTH_SASL_CONTINUE, serverFirst)))
        serverFinal = server.clientFinal(steps[-1].messages[0].data)  # type: ignore[attr-defined]
        assert serverFinal is not None
        if not skipFinal:
            sent = serverFinal if final is None else final
            steps.append(exchange.receive(self.request(constants.AUTH_SASL_FINAL, sent)))
            if steps[-1].final:
                return steps
        steps.append(exchange.receive(OK))
        return steps

    def test_success(self) -> None:
        """
        SASLContinue gets the client-final-message, a right SASLFinal gets
        nothing, and AuthenticationOk succeeds.
        """
        steps = self.play()
        self.assertEqual([s.outcome for s in steps], [Outcome.CONTINUE] * 3 + [Outcome.SUCCEEDED])
        self.assertEqual(len(steps[1].messages), 1)
        self.assertEqual(steps[2], continued())

    def test_wrongServerSignature(self) -> None:
        """
        A server signature that does not verify fails the exchange.
        """
        steps = self.play(final=b"v=" + base64.b64encode(bytes(32)))
        self.assertIs(steps[-1].outcome, Outcome.FAILED)
        self.assertIn("incorrect server signature", steps[-1].reason)

    def test_serverError(self) -> None:
        """
        A server-final-message with C{e=} fails the exchange.
        """
        steps = self.play(final=b"e=invalid-proof")
        self.assertIs(steps[-1].outcome, Outcome.FAILED)

    def test_okWithoutFinal(self) -> None:
        """
        AuthenticationOk before a verified SASLFinal fails: that server never
        proved it knows the password.
        """
        steps = self.play(skipFinal=True)
        self.assertIs(steps[-1].outcome, Outcome.FAILED)

    def test_nonceMismatch(self) -> None:
        """
        A server nonce that does not extend the client's fails the exchange.
        """
        exchange = self.method.backendExchange("alice", "secret", SASL)
        exchange.start()
        serverFirst = b"r=somethingelse,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=4096"
        step = exchange.receive(self.request(constants.AUTH_SASL_CONTINUE, serverFirst))
        self.assertIs(step.outcome, Outcome.FAILED)

    def test_malformedServerFirst(self) -> None:
        """
        A malformed server-first-message is a protocol violation.
        """
        exchange = self.method.backendExchange("alice", "secret", SASL)
        exchange.start()
        self.assertRaises(
            ProtocolViolation,
            exchange.receive,
            self.request(constants.AUTH_SASL_CONTINUE, b"nonsense"),
        )

    def test_finalBeforeContinue(self) -> None:
        """
        SASLFinal before SASLContinue is a protocol violation.
        """
        exchange = self.method.backendExchange("alice", "secret", SASL)
        exchange.start()
        self.assertRaises(
            ProtocolViolation, exchange.receive, self.request(constants.AUTH_SASL_FINAL, b"v=")
        )

    def test_errorResponse(self) -> None:
        """
        PostgreSQL's ErrorResponse mid-SCRAM fails the exchange and is passed on.
        """
        exchange = self.method.backendExchange("alice", "secret", SASL)
        exchange.start()
        error = ErrorResponse(((b"S", "FATAL"), (b"C", "28P01"), (b"M", "no")))
        self.assertIs(exchange.receive(error).error, error)

    def test_reasonsLogSafe(self) -> None:
        """
        No failure reason of the client side contains the password.
        """
        for steps in (
            self.play(final=b"v=" + base64.b64encode(bytes(32))),
            self.play(final=b"e=other-error"),
            self.play(skipFinal=True),
        ):
            self.assertNotIn("secret", steps[-1].reason)
