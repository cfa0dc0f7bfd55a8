# -*- test-case-name: tests.unit.test_auth_methods -*-
"""
The built-in authentication methods: C{trust}, C{reject}, C{password},
C{md5}, C{scram-sha-256} and C{cert}.

Each method is an L{IAuthMethod} whose exchanges are sans-IO
L{IAuthExchange}s: the caller (the frontend or backend protocol) sends the
messages of every L{AuthStep} and feeds the peer's replies back.

On the frontend side pgtwist plays PostgreSQL. Like PostgreSQL, a
password-based method runs its whole exchange even for a user it knows no
password for, and then fails with the same FATAL 28P01 error as for a wrong
password, so that clients cannot probe which users exist.

A user may be known by a I{verifier} only (C{auth_file}, C{auth_query}: what
PostgreSQL keeps in C{pg_authid}, no plaintext): the exchanges then check the
client as PostgreSQL's C{CheckPWChallengeAuth} and C{CheckPasswordAuth} do.
C{scram-sha-256} needs a SCRAM secret (a user with an md5 hash only fails
after the whole mock exchange); C{md5} uses md5 with an md5 hash and switches
to SCRAM-SHA-256 with a SCRAM secret; C{password} checks the cleartext
against either. A successful exchange against a verifier hands out, in
L{AuthStep.credential}, what pgtwist logs into PostgreSQL with on the
client's behalf (I{pass-through}).

On the backend side pgtwist plays libpq, and never trusts a SCRAM server that
cannot prove it knows the password (the server signature is checked). It
logs in with a plaintext password (the vault), or by pass-through: a SCRAM
C{ClientKey} (L{ScramPassThrough}) answers SCRAM, an md5 hash
(L{Md5Verifier}) answers md5; no verifier can answer a cleartext request.

The plugin instances live in L{pgtwist.plugins.pgtwist_auth};
L{pgtwist.app.bootstrap.plugins} collects them with any third-party ones.
"""

from __future__ import annotations

import enum
import hmac
import os
from collections.abc import Callable, Iterable
from typing import Any

from cryptography.x509.oid import NameOID
from twisted.plugin import IPlugin
from zope.interface import implementer

from pgtwist.auth import _md5, _scram
from pgtwist.auth.steps import (
    AuthStep,
    Outcome,
    continued,
    failed,
    passwordAuthenticationFailed,
    succeeded,
)
from pgtwist.config.model import UserEntry
from pgtwist.config.verifiers import BackendCredential, Md5Verifier, ScramPassThrough, ScramSecret
from pgtwist.interfaces import IAuthExchange, IAuthMethod
from pgtwist.wire import codec, constants
from pgtwist.wire.errors import ProtocolViolation, fatal
from pgtwist.wire.messages import (
    AuthenticationRequest,
    ErrorResponse,
    Message,
    NoticeResponse,
    PasswordMessage,
)

RandomBytes = Callable[[int], bytes]

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


def _secretEquals(given: str, expected: str) -> bool:
    """
    Compare two secrets in constant time (any characters).
    """
    return hmac.compare_digest(
        given.encode(_ENCODING, _ERRORS), expected.encode(_ENCODING, _ERRORS)
    )


def _messageTypeNumber(message: Message) -> int:
    """
    The type byte of C{message} as a number, for errors worded like PostgreSQL's
    C{"expected password response, got message type %d"}.
    """
    return message.type[0] if message.type else 0


@implementer(IAuthExchange)
class _Exchange:
    """
    Shared bookkeeping of every exchange: L{start} once, then L{receive}
    until a final step; anything else is a L{ProtocolViolation}.
    """

    def __init__(self) -> None:
        """
        Remember what the exchange needs.
        """
        self._started = False
        self._finished = False

    def start(self) -> AuthStep:
        """
        See L{IAuthExchange.start}.
        """
        if self._started:
            raise ProtocolViolation("authentication exchange already started")
        self._started = True
        try:
            step = self._start()
        except ProtocolViolation:
            self._finished = True
            raise
        return self._track(step)

    def receive(self, message: Message) -> AuthStep:
        """
        See L{IAuthExchange.receive}.
        """
        if not self._started:
            raise ProtocolViolation("unexpected message before authentication started")
        if self._finished:
            raise ProtocolViolation("unexpected message after authentication completed")
        try:
            step = self._receive(message)
        except ProtocolViolation:
            self._finished = True
            raise
        return self._track(step)

    def _track(self, step: AuthStep) -> AuthStep:
        """
        Note that the exchange is over when C{step} is final (its outcome
        compared here rather than through L{AuthStep.final}, a property
        call on every step of every login).
        """
        if step.outcome is not Outcome.CONTINUE:
            self._finished = True
        return step

    def _start(self) -> AuthStep:
        """
        The first step of this exchange.
        """
        raise NotImplementedError()

    def _receive(self, message: Message) -> AuthStep:
        """
        The step after the peer's C{message}.
        """
        raise ProtocolViolation("unexpected message during authentication")


# -- frontend exchanges (pgtwist plays the server) ---------------------------------


class _FixedFrontend(_Exchange):
    """
    An exchange decided before any message: C{trust} or C{reject}.
    """

    def __init__(self, step: AuthStep) -> None:
        """
        Remember what the exchange needs.
        """
        super().__init__()
        self._step = step

    def _start(self) -> AuthStep:
        """
        The first step of this exchange.
        """
        return self._step


class _PasswordFrontend(_Exchange):
    """
    Ask for a password (cleartext or md5-hashed) and check it.
    """

    def __init__(self, user: UserEntry, request: AuthenticationRequest) -> None:
        """
        Remember what the exchange needs.
        """
        super().__init__()
        self._user = user
        self._request = request

    def _start(self) -> AuthStep:
        """
        The first step of this exchange.
        """
        return continued(self._request)

    def _receive(self, message: Message) -> AuthStep:
        """
        The step after the peer's C{message}.
        """
        if not isinstance(message, PasswordMessage):
            raise ProtocolViolation(
                f"expected password response, got message type {_messageTypeNumber(message)}"
            )
        if not message.data.endswith(b"\x00") or b"\x00" in message.data[:-1]:
            raise ProtocolViolation("invalid password packet size")
        given = codec.parsePassword(message.data)
        if not given:
            return failed(
                "empty password returned by client",
                fatal(constants.SQLSTATE_INVALID_PASSWORD, "empty password returned by client"),
            )
        error = passwordAuthenticationFailed(self._user.name)
        password = self._user.password
        if password is not None:
            if not _secretEquals(given, self._expected(password)):
                return failed("wrong password", error)
            return succeeded()
        return self._checkVerifier(given, error)

    def _expected(self, password: str) -> str:
        """
        The answer a client that knows C{password} sends.
        """
        return password

    def _checkVerifier(self, given: str, error: ErrorResponse) -> AuthStep:
        """
        Check the cleartext C{given} against the user's verifier, as
        PostgreSQL's C{plain_crypt_verify} does: hashed with the md5
        secret's user name, or derived with the SCRAM secret's salt and
        iterations; compared in constant time either way.
        """
        verifier = self._user.verifier
        credential: BackendCredential
        if isinstance(verifier, Md5Verifier):
            ok = _secretEquals(_md5.md5Secret(given, self._user.name), verifier.hash)
            credential = verifier
        elif isinstance(verifier, ScramSecret):
            ok = _scram.verifyPlainPassword(given, verifier)
            # The client gave the password itself: it logs into PostgreSQL
            # whatever PostgreSQL asks for (the vault is not involved).
            credential = given
        else:
            return failed("no password known for the user", error)
        if not ok:
            return failed("wrong password", error)
        return succeeded(credential=credential)


class _Md5Frontend(_PasswordFrontend):
    """
    Send a salt, expect C{"md5" + md5hex(md5hex(password + user) + salt)}.
    """

    def __init__(self, user: UserEntry, salt: bytes) -> None:
        """
        Remember what the exchange needs.
        """
        super().__init__(user, AuthenticationRequest(constants.AUTH_MD5_PASSWORD, salt))
        self._salt = salt

    def _expected(self, password: str) -> str:
        """
        The answer a client that knows C{password} sends.
        """
        return _md5.md5Response(password, self._user.name, self._salt)

    def _checkVerifier(self, given: str, error: ErrorResponse) -> AuthStep:
        """
        Check the md5 response C{given} against the user's md5 hash. (A
        user with a SCRAM secret never gets here: L{Md5AuthMethod} runs
        SCRAM for it, as PostgreSQL does.)
        """
        verifier = self._user.verifier
        if not isinstance(verifier, Md5Verifier):
            return failed("no password known for the user", error)
        if not _secretEquals(given, _md5.md5ResponseFromSecret(verifier.hash, self._salt)):
            return failed("wrong password", error)
        return succeeded(credential=verifier)


class _ScramStage(enum.Enum):
    """
    Which SCRAM message a L{_ScramFrontend} expects next.
    """

    INITIAL_RESPONSE = enum.auto()
    CLIENT_FIRST = enum.auto()
    CLIENT_FINAL = enum.auto()


class _ScramFrontend(_Exchange):
    """
    SASL with the one mechanism SCRAM-SHA-256 (PostgreSQL's auth-sasl.c
    wrapped around auth-scram.c).
    """

    def __init__(
        self,
        user: UserEntry,
        randomBytes: RandomBytes,
        iterations: int,
        channelBinding: bytes | None = None,
    ) -> None:
        """
        Remember what the exchange needs.

        @param channelBinding: The C{tls-server-end-point} data of the
            client's TLS connection, or C{None} without TLS: with it
            C{SCRAM-SHA-256-PLUS} is offered first, as PostgreSQL does.
        """
        super().__init__()
        self._channelBinding = channelBinding
        self._plus = False
        self._user = user
        self._randomBytes = randomBytes
        self._iterations = iterations
        self._stage = _ScramStage.INITIAL_RESPONSE
        self._server: _scram.ScramServer | None = None
        self._secret: ScramSecret | None = None

    def _start(self) -> AuthStep:
        """
        The first step of this exchange.
        """
        offered = [_scram.SCRAM_SHA_256]
        if self._channelBinding is not None:
            offered.insert(0, _scram.SCRAM_SHA_256_PLUS)
        mechanisms = codec.encodeSASLMechanisms(offered)
        return continued(AuthenticationRequest(constants.AUTH_SASL, mechanisms))

    def _receive(self, message: Message) -> AuthStep:
        """
        The step after the peer's C{message}.
        """
        if not isinstance(message, PasswordMessage):
            raise ProtocolViolation(
                f"expected SASL response, got message type {_messageTypeNumber(message)}"
            )
        if self._stage is _ScramStage.INITIAL_RESPONSE:
            mechanism, payload = codec.parseSASLInitialResponse(message.data)
            if mechanism == _scram.SCRAM_SHA_256_PLUS and self._channelBinding is not None:
                self._plus = True
            elif mechanism != _scram.SCRAM_SHA_256:
                raise ProtocolViolation("client selected an invalid SASL authentication mechanism")
            if payload is None:
                # No initial response: an empty challenge asks for the client-first-message.
                self._stage = _ScramStage.CLIENT_FIRST
                return continued(AuthenticationRequest(constants.AUTH_SASL_CONTINUE, b""))
            return self._clientFirst(payload)
        if self._stage is _ScramStage.CLIENT_FIRST:
            return self._clientFirst(message.data)
        return self._clientFinal(message.data)

    def _clientFirst(self, payload: bytes) -> AuthStep:
        """
        Answer the client-first-message with the server-first-message.
        """
        user = self._user
        doomed = False
        if user.password is not None:
            secret = _scram.serverSecret(
                user.name, user.password, self._randomBytes, self._iterations
            )
        elif isinstance(user.verifier, ScramSecret):
            # A verifier from PostgreSQL: a successful proof yields the
            # ClientKey that logs into PostgreSQL with the same secret.
            secret = self._secret = user.verifier
        else:
            # No secret (an unknown user, or an md5 hash, which cannot check
            # SCRAM): PostgreSQL's mock exchange, failing at the end.
            secret = _scram.mockSecret(user.name, self._iterations)
            doomed = True
        self._server = _scram.ScramServer(
            secret,
            _scram.makeNonce(self._randomBytes),
            doomed=doomed,
            channelBinding=self._channelBinding,
            plus=self._plus,
        )
        serverFirst = self._server.clientFirst(payload)
        self._stage = _ScramStage.CLIENT_FINAL
        return continued(AuthenticationRequest(constants.AUTH_SASL_CONTINUE, serverFirst))

    def _clientFinal(self, payload: bytes) -> AuthStep:
        """
        Verify the client-final-message: SASLFinal on success, 28P01 otherwise.
        """
        assert self._server is not None
        serverFinal = self._server.clientFinal(payload)
        if serverFinal is None:
            if not self._server.doomed:
                reason = "wrong password"
            elif isinstance(self._user.verifier, Md5Verifier):
                # PostgreSQL: 'User "x" does not have a valid SCRAM secret.'
                reason = "the user has an md5 hash, not a SCRAM secret"
            else:
                reason = "no password known for the user"
            return failed(reason, passwordAuthenticationFailed(self._user.name))
        final = AuthenticationRequest(constants.AUTH_SASL_FINAL, serverFinal)
        if self._secret is None or self._server.clientKey is None:
            return succeeded(final)
        return succeeded(final, credential=ScramPassThrough(self._server.clientKey, self._secret))


# -- backend exchanges (pgtwist plays the client) -----------------------------------


def _noPassword(user: str) -> AuthStep:
    """
    The failure when PostgreSQL wants a password the vault does not have.
    """
    return failed(f"no password for user {user} in the users vault")


def _cannotAnswer(request: str, credential: BackendCredential) -> AuthStep:
    """
    The failure when PostgreSQL asks for what a pass-through credential
    cannot give (e.g. a cleartext password, with only a verifier known).
    """
    what = "an md5 hash" if isinstance(credential, Md5Verifier) else "a SCRAM ClientKey"
    return failed(
        f"PostgreSQL asks for {request}, and pgtwist holds only {what} for the user "
        "(pass-through): give the user a password in the vault, or have PostgreSQL "
        "ask for the method its verifier is for"
    )


class _Backend(_Exchange):
    """
    The client side: answer PostgreSQL's request, then wait for
    AuthenticationOk (or an ErrorResponse).
    """

    def __init__(
        self, user: str, password: BackendCredential | None, request: AuthenticationRequest
    ) -> None:
        """
        Remember what the exchange needs.

        @param password: The vault's plaintext password, a pass-through
            credential, or C{None}.
        """
        super().__init__()
        self._user = user
        self._password = password
        self._request = request

    def _receive(self, message: Message) -> AuthStep:
        """
        The step after the peer's C{message}.
        """
        if isinstance(message, ErrorResponse):
            return failed(
                f"PostgreSQL refused the login: {message.code} {message.message}", message
            )
        if isinstance(message, NoticeResponse):
            return continued()
        if not isinstance(message, AuthenticationRequest):
            raise ProtocolViolation(
                f"expected authentication request, got message type {_messageTypeNumber(message)}"
            )
        return self._authenticationRequest(message)

    def _authenticationRequest(self, request: AuthenticationRequest) -> AuthStep:
        """
        The step after PostgreSQL's C{request}.
        """
        if request.code == constants.AUTH_OK:
            return succeeded()
        raise ProtocolViolation(f"unexpected authentication request {request.code}")


class _TrustBackend(_Backend):
    """
    PostgreSQL already said AuthenticationOk.
    """

    def _start(self) -> AuthStep:
        """
        The first step of this exchange.
        """
        return succeeded()


class _RejectBackend(_Backend):
    """
    C{reject} cannot log into anything.
    """

    def _start(self) -> AuthStep:
        """
        The first step of this exchange.
        """
        return failed("the reject method cannot log into PostgreSQL")


class _CleartextBackend(_Backend):
    """
    Answer AuthenticationCleartextPassword with the password.
    """

    def _start(self) -> AuthStep:
        """
        The first step of this exchange.
        """
        if self._password is None:
            return _noPassword(self._user)
        if not isinstance(self._password, str):
            return _cannotAnswer("a cleartext password", self._password)
        return continued(PasswordMessage(codec.encodeString(self._password)))


class _Md5Backend(_Backend):
    """
    Answer AuthenticationMD5Password with the salted md5 hash.
    """

    def _start(self) -> AuthStep:
        """
        The first step of this exchange.
        """
        if self._password is None:
            return _noPassword(self._user)
        salt = self._request.data
        if len(salt) != _md5.MD5_SALT_LENGTH:
            raise ProtocolViolation("invalid message format")
        if isinstance(self._password, Md5Verifier):
            response = _md5.md5ResponseFromSecret(self._password.hash, salt)
        elif isinstance(self._password, str):
            response = _md5.md5Response(self._password, self._user, salt)
        else:
            return _cannotAnswer("md5", self._password)
        return continued(PasswordMessage(codec.encodeString(response)))


class _ScramBackend(_Backend):
    """
    SASL SCRAM-SHA-256 as libpq does it with C{channel_binding=prefer}:
    C{SCRAM-SHA-256-PLUS} when the connection is TLS and PostgreSQL offers
    it, else C{SCRAM-SHA-256}.
    """

    def __init__(
        self,
        user: str,
        password: BackendCredential | None,
        request: AuthenticationRequest,
        randomBytes: RandomBytes,
        channelBinding: bytes | None = None,
    ) -> None:
        """
        Remember what the exchange needs.

        @param channelBinding: The C{tls-server-end-point} data of the TLS
            connection to PostgreSQL, or C{None} without TLS.
        """
        super().__init__(user, password, request)
        self._randomBytes = randomBytes
        self._channelBinding = channelBinding
        self._client: _scram.ScramClient | None = None

    def _start(self) -> AuthStep:
        """
        The first step of this exchange.
        """
        if self._password is None:
            return _noPassword(self._user)
        if isinstance(self._password, Md5Verifier):
            return _cannotAnswer("SCRAM-SHA-256", self._password)
        mechanisms = codec.parseSASLMechanisms(self._request.data)
        if _scram.SCRAM_SHA_256 not in mechanisms and not (
            self._channelBinding is not None and _scram.SCRAM_SHA_256_PLUS in mechanisms
        ):
            offered = ", ".join(_scram.sanitize(m) for m in mechanisms) or "none"
            return failed(f"PostgreSQL offers no supported SASL mechanism ({offered})")
        plus = self._channelBinding is not None and _scram.SCRAM_SHA_256_PLUS in mechanisms
        self._client = _scram.ScramClient(
            self._password,
            _scram.makeNonce(self._randomBytes),
            channelBinding=self._channelBinding,
            plus=plus,
        )
        mechanism = _scram.SCRAM_SHA_256_PLUS if plus else _scram.SCRAM_SHA_256
        return continued(codec.encodeSASLInitialResponse(mechanism, self._client.clientFirst()))

    def _authenticationRequest(self, request: AuthenticationRequest) -> AuthStep:
        """
        The step after PostgreSQL's C{request}.
        """
        assert self._client is not None
        try:
            if request.code == constants.AUTH_SASL_CONTINUE:
                return continued(PasswordMessage(self._client.serverFirst(request.data)))
            if request.code == constants.AUTH_SASL_FINAL:
                self._client.serverFinal(request.data)
                return continued()
        except _scram.ScramError as e:
            return failed(f"SCRAM authentication with PostgreSQL failed: {e}")
        if request.code == constants.AUTH_OK and not self._client.verified:
            # A server that skips SASLFinal never proved it knows the password.
            return failed("PostgreSQL sent AuthenticationOk before completing SCRAM")
        return super()._authenticationRequest(request)


# -- the methods -------------------------------------------------------------------


class _Method:
    """
    What every built-in method shares: checking the request it is asked to
    answer.
    """

    name: str
    backendRequestCodes: frozenset[int]

    def _checkRequest(self, request: AuthenticationRequest) -> AuthenticationRequest:
        """
        C{request}, checked to be one this method answers.

        @raise ValueError: It is not (the caller picked the wrong method).
        """
        if request.code not in self.backendRequestCodes:
            raise ValueError(
                f"the {self.name} method cannot answer authentication request {request.code}"
            )
        return request


@implementer(IPlugin, IAuthMethod)
class TrustAuthMethod(_Method):
    """
    C{trust}: the client is admitted without a password; toward PostgreSQL,
    what answers AuthenticationOk.
    """

    name = "trust"
    backendRequestCodes: frozenset[int] = frozenset({constants.AUTH_OK})

    def frontendExchange(self, user: UserEntry, channelBinding: bytes | None) -> IAuthExchange:
        """
        Succeed at once; the caller sends AuthenticationOk.
        """
        return _FixedFrontend(succeeded())

    def backendExchange(
        self,
        user: str,
        password: BackendCredential | None,
        request: AuthenticationRequest,
        channelBinding: bytes | None = None,
    ) -> IAuthExchange:
        """
        PostgreSQL admitted us without a password.
        """
        return _TrustBackend(user, password, self._checkRequest(request))


@implementer(IPlugin, IAuthMethod)
class RejectAuthMethod(_Method):
    """
    C{reject}: matching clients are refused. PostgreSQL never asks for it.
    """

    name = "reject"
    backendRequestCodes: frozenset[int] = frozenset()

    def frontendExchange(self, user: UserEntry, channelBinding: bytes | None) -> IAuthExchange:
        """
        Fail at once; the caller words the error.
        """
        return _FixedFrontend(failed("rejected by HBA"))

    def backendExchange(
        self,
        user: str,
        password: BackendCredential | None,
        request: AuthenticationRequest,
        channelBinding: bytes | None = None,
    ) -> IAuthExchange:
        """
        An exchange that fails at once: C{reject} answers no request.
        """
        return _RejectBackend(user, password, AuthenticationRequest(constants.AUTH_OK))


@implementer(IPlugin, IAuthMethod)
class PasswordAuthMethod(_Method):
    """
    C{password}: the password in cleartext (use it over TLS only).
    """

    name = "password"
    backendRequestCodes: frozenset[int] = frozenset({constants.AUTH_CLEARTEXT_PASSWORD})

    def frontendExchange(self, user: UserEntry, channelBinding: bytes | None) -> IAuthExchange:
        """
        Send AuthenticationCleartextPassword and compare the answer.
        """
        return _PasswordFrontend(user, AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD))

    def backendExchange(
        self,
        user: str,
        password: BackendCredential | None,
        request: AuthenticationRequest,
        channelBinding: bytes | None = None,
    ) -> IAuthExchange:
        """
        Send the password in cleartext.
        """
        return _CleartextBackend(user, password, self._checkRequest(request))


@implementer(IPlugin, IAuthMethod)
class Md5AuthMethod(_Method):
    """
    C{md5}: a salted md5 hash of the password (PostgreSQL's legacy method).
    """

    name = "md5"
    backendRequestCodes: frozenset[int] = frozenset({constants.AUTH_MD5_PASSWORD})

    def __init__(self, randomBytes: RandomBytes = os.urandom) -> None:
        """
        @param randomBytes: Where salts come from (injectable for tests).
        """
        self.randomBytes = randomBytes

    def frontendExchange(self, user: UserEntry, channelBinding: bytes | None) -> IAuthExchange:
        """
        Send AuthenticationMD5Password with a fresh salt and check the hash;
        for a user known by a SCRAM secret only, run SCRAM-SHA-256 instead,
        as PostgreSQL does (an md5 answer cannot be checked against it).
        """
        if user.password is None and isinstance(user.verifier, ScramSecret):
            return _ScramFrontend(user, self.randomBytes, _scram.DEFAULT_ITERATIONS, channelBinding)
        return _Md5Frontend(user, self.randomBytes(_md5.MD5_SALT_LENGTH))

    def backendExchange(
        self,
        user: str,
        password: BackendCredential | None,
        request: AuthenticationRequest,
        channelBinding: bytes | None = None,
    ) -> IAuthExchange:
        """
        Answer with the md5 hash salted by PostgreSQL's salt.
        """
        return _Md5Backend(user, password, self._checkRequest(request))


@implementer(IPlugin, IAuthMethod)
class ScramSha256AuthMethod(_Method):
    """
    C{scram-sha-256}: SASL SCRAM-SHA-256, and SCRAM-SHA-256-PLUS with
    C{tls-server-end-point} channel binding over TLS, on both sides.

    PBKDF2 runs once per user (server side) and once per backend secret
    (client side); see L{pgtwist.auth._scram}.
    """

    name = "scram-sha-256"
    backendRequestCodes: frozenset[int] = frozenset({constants.AUTH_SASL})

    def __init__(
        self,
        randomBytes: RandomBytes = os.urandom,
        iterations: int = _scram.DEFAULT_ITERATIONS,
    ) -> None:
        """
        @param randomBytes: Where nonces and salts come from (injectable for tests).
        @param iterations: The iteration count of the secrets pgtwist derives
            to verify clients.
        """
        self.randomBytes = randomBytes
        self.iterations = iterations

    def frontendExchange(self, user: UserEntry, channelBinding: bytes | None) -> IAuthExchange:
        """
        Offer SCRAM-SHA-256 (and SCRAM-SHA-256-PLUS first when
        C{channelBinding} is given) and verify the client's proof.
        """
        return _ScramFrontend(user, self.randomBytes, self.iterations, channelBinding)

    def backendExchange(
        self,
        user: str,
        password: BackendCredential | None,
        request: AuthenticationRequest,
        channelBinding: bytes | None = None,
    ) -> IAuthExchange:
        """
        Log into PostgreSQL with SCRAM-SHA-256, or SCRAM-SHA-256-PLUS when
        C{channelBinding} is given and PostgreSQL offers it, checking its
        signature.
        """
        return _ScramBackend(
            user, password, self._checkRequest(request), self.randomBytes, channelBinding
        )


# -- channel binding ---------------------------------------------------------------

#: The C{tls-server-end-point} data of a DER certificate, for the
#: C{channelBinding} arguments above (see L{_scram.tlsServerEndPoint}).
tlsServerEndPoint = _scram.tlsServerEndPoint


def certificateUserName(certificate: Any) -> str | None:
    """
    The user name a client certificate names: its subject's CN (PostgreSQL's
    default C{clientname=CN}), or C{None} when it has none or an unusable one
    (several CNs, an embedded NUL, which PostgreSQL refuses too).

    @param certificate: A C{cryptography} X.509 certificate.
    """
    try:
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (AttributeError, ValueError):
        return None
    if len(names) != 1:
        return None
    value = names[0].value
    if not isinstance(value, str) or not value or "\x00" in value:
        return None
    return value


def certificateNameMatches(certificate: Any, userName: str) -> bool:
    """
    Whether C{certificate}'s CN is exactly C{userName}: what method C{cert}
    and C{clientcert=verify-full} require (PostgreSQL compares case
    sensitively when no user name map is given, and pgtwist has none).
    """
    name = certificateUserName(certificate)
    return name is not None and hmac.compare_digest(
        name.encode(_ENCODING, _ERRORS), userName.encode(_ENCODING, _ERRORS)
    )


def certificateRequired() -> ErrorResponse:
    """
    PostgreSQL's refusal of a client that sent no verified certificate to a
    rule that needs one (method C{cert} or C{clientcert}).
    """
    return fatal(
        constants.SQLSTATE_INVALID_AUTHORIZATION, "connection requires a valid client certificate"
    )


def certificateAuthenticationFailed(userName: str) -> ErrorResponse:
    """
    PostgreSQL's refusal of method C{cert} for C{userName}.
    """
    return fatal(
        constants.SQLSTATE_INVALID_AUTHORIZATION,
        f'certificate authentication failed for user "{userName}"',
    )


@implementer(IPlugin, IAuthMethod)
class CertAuthMethod(_Method):
    """
    C{cert}: the client is who its TLS certificate says. The certificate was
    verified against C{tls_ca_file} during the handshake (L{pgtwist.net.tls}
    asks for one whenever a CA is configured); its CN must equal the user
    name. No password is asked. HBA allows it on C{hostssl} lines only.

    The frontend hands the verified certificate to L{certificateExchange};
    L{frontendExchange}, which has none, always fails, so that nothing is
    ever admitted by this method without a certificate. PostgreSQL never
    asks pgtwist for it (its C{cert} method is the TLS handshake itself).
    """

    name = "cert"
    backendRequestCodes: frozenset[int] = frozenset()

    def frontendExchange(self, user: UserEntry, channelBinding: bytes | None) -> IAuthExchange:
        """
        Fail: no certificate was given (see L{certificateExchange}).
        """
        return self.certificateExchange(user, None)

    def certificateExchange(self, user: UserEntry, certificate: Any) -> IAuthExchange:
        """
        Admit C{user} if C{certificate} (verified in the TLS handshake, or
        C{None}) names it, with PostgreSQL's messages otherwise.
        """
        if certificate is None:
            return _FixedFrontend(failed("no valid client certificate", certificateRequired()))
        if certificateUserName(certificate) is None:
            return _FixedFrontend(
                failed(
                    "client certificate contains no user name",
                    certificateAuthenticationFailed(user.name),
                )
            )
        if not certificateNameMatches(certificate, user.name):
            return _FixedFrontend(
                failed(
                    "the client certificate's CN is not the user name",
                    certificateAuthenticationFailed(user.name),
                )
            )
        return _FixedFrontend(succeeded())

    def backendExchange(
        self,
        user: str,
        password: BackendCredential | None,
        request: AuthenticationRequest,
        channelBinding: bytes | None = None,
    ) -> IAuthExchange:
        """
        An exchange that fails at once: C{cert} answers no request.
        """
        return _FixedFrontend(failed("the cert method cannot log into PostgreSQL"))


# -- discovery ---------------------------------------------------------------------


def backendMethodFor(
    request: AuthenticationRequest, methods: Iterable[IAuthMethod]
) -> IAuthMethod | None:
    """
    The method that answers PostgreSQL's C{request}: the first of C{methods}
    whose C{backendRequestCodes} contain its code, or C{None}.
    """
    for method in methods:
        if request.code in method.backendRequestCodes:
            return method
    return None
