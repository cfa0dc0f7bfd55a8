"""
Tests for checking clients against verifiers (L{pgtwist.auth.methods} with
L{UserEntry.verifier}) and for logging into PostgreSQL by pass-through
(L{pgtwist.auth._scram.ScramClient} with a L{ScramPassThrough}).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.auth import _md5, _scram
from pgtwist.auth.methods import (
    Md5AuthMethod,
    PasswordAuthMethod,
    ScramSha256AuthMethod,
)
from pgtwist.auth.steps import AuthStep, Outcome, passwordAuthenticationFailed
from pgtwist.config.model import UserEntry
from pgtwist.config.verifiers import Md5Verifier, ScramPassThrough, ScramSecret
from pgtwist.wire import codec, constants
from pgtwist.wire.messages import AuthenticationRequest, PasswordMessage
from tests.contract.auth import converse

PASSWORD = "s3cr\u00e9t"
SALT = b"0123456789abcdef"
#: Channel-binding data both sides of one TLS connection see.
BOUND = b"\x02" * 32

# RFC 7677 section 3.
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def _clientKey(password: str, salt: bytes, iterations: int) -> bytes:
    """
    RFC 5802's ClientKey, computed here independently of pgtwist.
    """
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.new(salted, b"Client Key", hashlib.sha256).digest()


def _md5Verifier(password: str, user: str) -> Md5Verifier:
    """
    PostgreSQL's md5 secret, computed here independently of pgtwist.
    """
    return Md5Verifier("md5" + hashlib.md5((password + user).encode("utf-8")).hexdigest())


class _Isolated(SynchronousTestCase):
    """
    Empties the SCRAM key caches around each test.
    """

    def setUp(self) -> None:
        """
        Start from empty caches, and make the verifiers of the tests.
        """
        _scram.serverSecrets.clear()
        _scram.clientKeys.clear()
        self.addCleanup(_scram.serverSecrets.clear)
        self.addCleanup(_scram.clientKeys.clear)
        self.secret = _scram.makeSecret(PASSWORD, SALT)
        self.scramUser = UserEntry("alice", verifier=self.secret)
        self.md5User = UserEntry("alice", verifier=_md5Verifier(PASSWORD, "alice"))

    def assertWrongPassword(self, step: AuthStep | None, reason: str = "wrong password") -> None:
        """
        C{step} failed as PostgreSQL fails a wrong password.
        """
        assert step is not None
        self.assertIs(step.outcome, Outcome.FAILED)
        self.assertEqual(step.error, passwordAuthenticationFailed("alice"))
        self.assertEqual(step.reason, reason)
        self.assertIsNone(step.credential)


class ScramFrontendVerifierTests(_Isolated):
    """
    C{scram-sha-256} against a user known by a verifier only.
    """

    def test_scramVerifier(self) -> None:
        """
        The right password verifies against the SCRAM secret, and the
        ClientKey recovered from the proof is handed out with the secret.
        """
        result = converse(ScramSha256AuthMethod(), self.scramUser, PASSWORD)
        assert result.server is not None and result.client is not None
        self.assertIs(result.server.outcome, Outcome.SUCCEEDED)
        self.assertIs(result.client.outcome, Outcome.SUCCEEDED)
        self.assertEqual(
            result.server.credential,
            ScramPassThrough(_clientKey(PASSWORD, SALT, 4096), self.secret),
        )

    def test_scramVerifierWrongPassword(self) -> None:
        """
        A wrong password fails with 28P01 and hands out nothing.
        """
        result = converse(ScramSha256AuthMethod(), self.scramUser, "not it")
        self.assertWrongPassword(result.server)

    def test_scramVerifierSaltAndIterations(self) -> None:
        """
        The server-first-message carries the verifier's own salt and
        iteration count (the client derives its keys with them).
        """
        secret = _scram.makeSecret(PASSWORD, SALT, 5000)
        user = UserEntry("alice", verifier=secret)
        result = converse(ScramSha256AuthMethod(), user, PASSWORD)
        request = result.serverSteps[1].messages[0]
        assert isinstance(request, AuthenticationRequest)
        self.assertIn(b"s=" + base64.b64encode(SALT) + b",i=5000", request.data)
        assert result.server is not None
        self.assertIs(result.server.outcome, Outcome.SUCCEEDED)

    def test_md5VerifierRefusedAfterMockExchange(self) -> None:
        """
        A user with an md5 hash only runs the whole mock SCRAM exchange and
        fails as a wrong password does, even with the right password
        (PostgreSQL: the user has no valid SCRAM secret).
        """
        result = converse(ScramSha256AuthMethod(), self.md5User, PASSWORD)
        unknown = converse(ScramSha256AuthMethod(), UserEntry("alice"), PASSWORD)
        self.assertWrongPassword(result.server, "the user has an md5 hash, not a SCRAM secret")
        self.assertEqual(
            [len(s.messages) for s in result.serverSteps],
            [len(s.messages) for s in unknown.serverSteps],
        )
        self.assertEqual(len(result.serverSteps), 3)

    def test_plus(self) -> None:
        """
        Over TLS the verifier checks a SCRAM-SHA-256-PLUS client too.
        """
        result = converse(
            ScramSha256AuthMethod(),
            self.scramUser,
            PASSWORD,
            serverBinding=BOUND,
            clientBinding=BOUND,
        )
        assert result.server is not None
        self.assertIs(result.server.outcome, Outcome.SUCCEEDED)
        self.assertIsInstance(result.server.credential, ScramPassThrough)

    def test_vaultPasswordHandsOutNothing(self) -> None:
        """
        A user with a vault password leaves no credential: the vault's
        password logs into PostgreSQL.
        """
        result = converse(ScramSha256AuthMethod(), UserEntry("alice", PASSWORD), PASSWORD)
        assert result.server is not None
        self.assertIs(result.server.outcome, Outcome.SUCCEEDED)
        self.assertIsNone(result.server.credential)

    def test_credentialNotInRepr(self) -> None:
        """
        The credential stays out of the step's representation.
        """
        result = converse(ScramSha256AuthMethod(), self.scramUser, PASSWORD)
        text = repr(result.server)
        assert result.server is not None and result.server.credential is not None
        self.assertNotIn("clientKey", text)
        self.assertNotIn(repr(_clientKey(PASSWORD, SALT, 4096)), text)


class Md5FrontendVerifierTests(_Isolated):
    """
    C{md5} against a user known by a verifier only.
    """

    def test_md5Verifier(self) -> None:
        """
        The md5 response verifies against the md5 hash, which is handed out.
        """
        result = converse(Md5AuthMethod(), self.md5User, PASSWORD)
        assert result.server is not None and result.client is not None
        self.assertIs(result.server.outcome, Outcome.SUCCEEDED)
        self.assertIs(result.client.outcome, Outcome.SUCCEEDED)
        self.assertEqual(result.server.credential, self.md5User.verifier)

    def test_md5VerifierWrongPassword(self) -> None:
        """
        A wrong password fails with 28P01.
        """
        result = converse(Md5AuthMethod(), self.md5User, "not it")
        self.assertWrongPassword(result.server)

    def test_md5VerifierOtherUser(self) -> None:
        """
        The md5 hash is salted with the user name: another user's hash of
        the same password does not verify.
        """
        user = UserEntry("alice", verifier=_md5Verifier(PASSWORD, "bob"))
        result = converse(Md5AuthMethod(), user, PASSWORD)
        self.assertWrongPassword(result.server)

    def test_scramVerifierSwitchesToScram(self) -> None:
        """
        For a user with a SCRAM secret, C{md5} asks for SCRAM-SHA-256, as
        PostgreSQL does, and the exchange hands out the ClientKey.
        """
        method = Md5AuthMethod()
        first = method.frontendExchange(self.scramUser, None).start()
        request = first.messages[0]
        assert isinstance(request, AuthenticationRequest)
        self.assertEqual(request.code, constants.AUTH_SASL)
        result = converse(method, self.scramUser, PASSWORD, clientMethod=ScramSha256AuthMethod())
        assert result.server is not None
        self.assertIs(result.server.outcome, Outcome.SUCCEEDED)
        self.assertIsInstance(result.server.credential, ScramPassThrough)

    def test_scramVerifierSwitchWrongPassword(self) -> None:
        """
        The switched exchange fails a wrong password with 28P01.
        """
        result = converse(
            Md5AuthMethod(), self.scramUser, "not it", clientMethod=ScramSha256AuthMethod()
        )
        self.assertWrongPassword(result.server)

    def test_unknownUserStaysMd5(self) -> None:
        """
        A user with neither password nor verifier gets the md5 mock exchange.
        """
        step = Md5AuthMethod().frontendExchange(UserEntry("alice"), None).start()
        request = step.messages[0]
        assert isinstance(request, AuthenticationRequest)
        self.assertEqual(request.code, constants.AUTH_MD5_PASSWORD)


class PasswordFrontendVerifierTests(_Isolated):
    """
    C{password} (cleartext) against a user known by a verifier only.
    """

    def check(self, user: UserEntry, password: str) -> AuthStep:
        """
        Run the exchange with C{password} as the client's answer.
        """
        exchange = PasswordAuthMethod().frontendExchange(user, None)
        exchange.start()
        return exchange.receive(PasswordMessage(codec.encodeString(password)))

    def test_scramVerifier(self) -> None:
        """
        The cleartext password is checked by deriving the keys with the
        verifier's salt and iterations; the password itself is handed out.
        """
        step = self.check(self.scramUser, PASSWORD)
        self.assertIs(step.outcome, Outcome.SUCCEEDED)
        self.assertEqual(step.credential, PASSWORD)

    def test_scramVerifierWrongPassword(self) -> None:
        """
        A wrong cleartext password fails with 28P01.
        """
        self.assertWrongPassword(self.check(self.scramUser, "not it"))

    def test_md5Verifier(self) -> None:
        """
        The cleartext password is hashed with the user name and compared
        with the md5 hash, which is handed out.
        """
        step = self.check(self.md5User, PASSWORD)
        self.assertIs(step.outcome, Outcome.SUCCEEDED)
        self.assertEqual(step.credential, self.md5User.verifier)

    def test_md5VerifierWrongPassword(self) -> None:
        """
        A wrong cleartext password fails with 28P01.
        """
        self.assertWrongPassword(self.check(self.md5User, "not it"))

    def test_verifierTextIsNotAPassword(self) -> None:
        """
        Sending the md5 hash itself as the cleartext password fails: only
        the password verifies.
        """
        assert isinstance(self.md5User.verifier, Md5Verifier)
        self.assertWrongPassword(self.check(self.md5User, self.md5User.verifier.hash))

    def test_verifyPlainPassword(self) -> None:
        """
        L{_scram.verifyPlainPassword} accepts the password the secret was
        made from and nothing else.
        """
        self.assertTrue(_scram.verifyPlainPassword(PASSWORD, self.secret))
        self.assertFalse(_scram.verifyPlainPassword(PASSWORD + "x", self.secret))


class ScramPassThroughClientTests(_Isolated):
    """
    L{_scram.ScramClient} logging in with a recovered ClientKey.
    """

    def test_rfc7677(self) -> None:
        """
        With the ClientKey of RFC 7677's password and the secret, the client
        sends the RFC's proof and accepts the RFC's server signature,
        without the password.
        """
        secret = _scram.makeSecret("pencil", RFC_SALT)
        passThrough = ScramPassThrough(_clientKey("pencil", RFC_SALT, 4096), secret)
        client = _scram.ScramClient(passThrough, RFC_CLIENT_NONCE, userName="user")
        client.clientFirst()
        self.assertEqual(client.serverFirst(RFC_SERVER_FIRST), RFC_CLIENT_FINAL)
        client.serverFinal(RFC_SERVER_FINAL)
        self.assertTrue(client.verified)

    def test_serverRecoversClientKey(self) -> None:
        """
        L{_scram.ScramServer} recovers the RFC client's ClientKey from its
        proof once verified.
        """
        secret = _scram.makeSecret("pencil", RFC_SALT)
        server = _scram.ScramServer(secret, RFC_SERVER_NONCE)
        server.clientFirst(b"n,,n=user,r=" + RFC_CLIENT_NONCE.encode())
        self.assertIsNone(server.clientKey)
        self.assertEqual(server.clientFinal(RFC_CLIENT_FINAL), RFC_SERVER_FINAL)
        self.assertEqual(server.clientKey, _clientKey("pencil", RFC_SALT, 4096))

    def test_failedProofRecoversNothing(self) -> None:
        """
        A wrong proof leaves no ClientKey behind.
        """
        secret = _scram.makeSecret("other", RFC_SALT)
        server = _scram.ScramServer(secret, RFC_SERVER_NONCE)
        server.clientFirst(b"n,,n=user,r=" + RFC_CLIENT_NONCE.encode())
        self.assertIsNone(server.clientFinal(RFC_CLIENT_FINAL))
        self.assertIsNone(server.clientKey)

    def passThrough(self) -> ScramPassThrough:
        """
        The credential a client that proved L{PASSWORD} against
        C{self.secret} leaves.
        """
        result = converse(ScramSha256AuthMethod(), self.scramUser, PASSWORD)
        assert result.server is not None
        credential = result.server.credential
        assert isinstance(credential, ScramPassThrough)
        return credential

    def test_againstScramServer(self) -> None:
        """
        The backend exchange logs into a server holding the same secret
        with the recovered credential, and checks its signature.
        """
        result = converse(ScramSha256AuthMethod(), self.scramUser, self.passThrough())
        assert result.server is not None and result.client is not None
        self.assertIs(result.server.outcome, Outcome.SUCCEEDED)
        self.assertIs(result.client.outcome, Outcome.SUCCEEDED)

    def test_againstScramServerPlus(self) -> None:
        """
        Pass-through works with channel binding (SCRAM-SHA-256-PLUS toward
        PostgreSQL over TLS).
        """
        result = converse(
            ScramSha256AuthMethod(),
            self.scramUser,
            self.passThrough(),
            serverBinding=BOUND,
            clientBinding=BOUND,
        )
        assert result.server is not None and result.client is not None
        self.assertIs(result.server.outcome, Outcome.SUCCEEDED)
        self.assertIs(result.client.outcome, Outcome.SUCCEEDED)

    def test_changedSalt(self) -> None:
        """
        When the server's secret has another salt (the password was changed),
        the client gives up at once with a log-safe reason.
        """
        changed = UserEntry("alice", verifier=_scram.makeSecret("new", b"fedcba9876543210"))
        result = converse(ScramSha256AuthMethod(), changed, self.passThrough())
        assert result.client is not None
        self.assertIs(result.client.outcome, Outcome.FAILED)
        self.assertIn("salt or iteration count differs", result.client.reason)
        self.assertIsNone(result.client.error)

    def test_changedIterations(self) -> None:
        """
        Another iteration count fails the same way.
        """
        changed = UserEntry("alice", verifier=_scram.makeSecret(PASSWORD, SALT, 8192))
        result = converse(ScramSha256AuthMethod(), changed, self.passThrough())
        assert result.client is not None
        self.assertIs(result.client.outcome, Outcome.FAILED)
        self.assertIn("salt or iteration count differs", result.client.reason)

    def test_impostorServer(self) -> None:
        """
        A server with the same salt and iterations but other keys cannot
        prove itself: the client fails (its proof is refused first).
        """
        impostor = ScramSecret(SALT, 4096, bytes(32), bytes(32))
        result = converse(
            ScramSha256AuthMethod(), UserEntry("alice", verifier=impostor), self.passThrough()
        )
        assert result.server is not None
        self.assertIs(result.server.outcome, Outcome.FAILED)

    def test_wrongServerSignature(self) -> None:
        """
        A server-final-message signed with another ServerKey is refused.
        """
        passThrough = self.passThrough()
        client = _scram.ScramClient(passThrough, RFC_CLIENT_NONCE)
        client.clientFirst()
        serverFirst = (
            b"r=" + RFC_CLIENT_NONCE.encode() + b"xyz,s=" + base64.b64encode(SALT) + b",i=4096"
        )
        client.serverFirst(serverFirst)
        self.assertRaises(
            _scram.ScramError, client.serverFinal, b"v=" + base64.b64encode(bytes(32))
        )


class PassThroughBackendTests(_Isolated):
    """
    The backend exchanges with pass-through credentials.
    """

    def test_md5WithHash(self) -> None:
        """
        md5 is answered from the hash: C{md5(hash[3:] + salt)}, the same
        answer the password gives.
        """
        salt = b"\x01\x02\x03\x04"
        request = AuthenticationRequest(constants.AUTH_MD5_PASSWORD, salt)
        step = Md5AuthMethod().backendExchange("alice", self.md5User.verifier, request).start()
        expected = _md5.md5Response(PASSWORD, "alice", salt)
        self.assertEqual(step.messages, (PasswordMessage(codec.encodeString(expected)),))

    def test_md5VerifierThroughConverse(self) -> None:
        """
        A client checked against the md5 hash leaves what logs into a
        server holding the same hash.
        """
        first = converse(Md5AuthMethod(), self.md5User, PASSWORD)
        assert first.server is not None
        result = converse(Md5AuthMethod(), self.md5User, first.server.credential)
        assert result.client is not None
        self.assertIs(result.client.outcome, Outcome.SUCCEEDED)

    def test_cleartextWithVerifier(self) -> None:
        """
        No verifier answers a cleartext request: a clear failure.
        """
        request = AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)
        for credential in (
            self.md5User.verifier,
            ScramPassThrough(bytes(32), self.secret),
        ):
            assert credential is not None
            step = PasswordAuthMethod().backendExchange("alice", credential, request).start()
            self.assertIs(step.outcome, Outcome.FAILED)
            self.assertIn("asks for a cleartext password", step.reason)
            self.assertNotIn(repr(bytes(32)), step.reason)

    def test_scramWithMd5Hash(self) -> None:
        """
        An md5 hash cannot answer SCRAM.
        """
        request = AuthenticationRequest(
            constants.AUTH_SASL, codec.encodeSASLMechanisms(["SCRAM-SHA-256"])
        )
        step = ScramSha256AuthMethod().backendExchange("alice", self.md5User.verifier, request)
        first = step.start()
        self.assertIs(first.outcome, Outcome.FAILED)
        self.assertIn("SCRAM-SHA-256", first.reason)

    def test_md5WithClientKey(self) -> None:
        """
        A SCRAM ClientKey cannot answer md5.
        """
        request = AuthenticationRequest(constants.AUTH_MD5_PASSWORD, b"\x01\x02\x03\x04")
        credential = ScramPassThrough(bytes(32), self.secret)
        step = Md5AuthMethod().backendExchange("alice", credential, request).start()
        self.assertIs(step.outcome, Outcome.FAILED)
        self.assertIn("asks for md5", step.reason)

    def test_plaintextFromPasswordMethod(self) -> None:
        """
        The password a C{password} exchange hands out logs in with SCRAM.
        """
        exchange = PasswordAuthMethod().frontendExchange(self.scramUser, None)
        exchange.start()
        step = exchange.receive(PasswordMessage(codec.encodeString(PASSWORD)))
        result = converse(ScramSha256AuthMethod(), self.scramUser, step.credential)
        assert result.client is not None
        self.assertIs(result.client.outcome, Outcome.SUCCEEDED)


class VerifyPlainPasswordCacheTests(_Isolated):
    """
    What L{_scram.verifyPlainPassword} leaves in the key cache.
    """

    def test_wrongPasswordNotCached(self) -> None:
        """
        A wrong password leaves nothing in L{_scram.clientKeys}; the right
        one is cached for the backend login that follows.
        """
        self.assertFalse(_scram.verifyPlainPassword("guess", self.secret))
        self.assertEqual(len(_scram.clientKeys), 0)
        self.assertTrue(_scram.verifyPlainPassword(PASSWORD, self.secret))
        self.assertEqual(len(_scram.clientKeys), 1)
