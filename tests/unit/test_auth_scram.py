"""
Tests for L{pgtwist.auth._scram}: SCRAM-SHA-256 both sides, RFC 7677
vectors, PostgreSQL's deviations and the PBKDF2 caches.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import warnings

import scramp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.auth import _scram
from pgtwist.auth._scram import (
    BoundedCache,
    ScramClient,
    ScramError,
    ScramServer,
    makeNonce,
    makeSecret,
    mockSecret,
    normalizePassword,
    serverSecret,
    tlsServerEndPoint,
)
from pgtwist.wire import constants
from pgtwist.wire.errors import ProtocolViolation

# RFC 7677 section 3.
RFC_PASSWORD = "pencil"
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


class _Counter:
    """
    Wraps L{_scram.hi}, counting the PBKDF2 derivations.
    """

    def __init__(self) -> None:
        """
        Start counting at zero.
        """
        self.calls = 0
        self._hi = _scram.hi

    def __call__(self, password: bytes, salt: bytes, iterations: int) -> bytes:
        """
        Count one derivation and run it.
        """
        self.calls += 1
        return self._hi(password, salt, iterations)


class _CacheIsolation(SynchronousTestCase):
    """
    Empties the module-level key caches around each test and counts PBKDF2.
    """

    def setUp(self) -> None:
        """
        Empty the caches and count calls of L{_scram.hi}.
        """
        _scram.serverSecrets.clear()
        _scram.clientKeys.clear()
        self.addCleanup(_scram.serverSecrets.clear)
        self.addCleanup(_scram.clientKeys.clear)
        self.hi = _Counter()
        self.patch(_scram, "hi", self.hi)


class ScramClientVectorTests(_CacheIsolation):
    """
    L{ScramClient} reproduces the RFC 7677 SCRAM-SHA-256 exchange.
    """

    def test_rfc7677(self) -> None:
        """
        With the RFC's user, password and nonce, the client sends the RFC's
        messages and accepts the RFC's server signature.
        """
        client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE, userName="user")
        self.assertEqual(client.clientFirst(), RFC_CLIENT_FIRST)
        self.assertEqual(client.serverFirst(RFC_SERVER_FIRST), RFC_CLIENT_FINAL)
        self.assertFalse(client.verified)
        client.serverFinal(RFC_SERVER_FINAL)
        self.assertTrue(client.verified)

    def test_emptyUserNameByDefault(self) -> None:
        """
        Like libpq, the client leaves the SCRAM user name empty by default:
        PostgreSQL uses the startup packet's.
        """
        client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE)
        self.assertEqual(client.clientFirst(), b"n,,n=,r=rOprNGfwEbeRWgbNEkqO")

    def test_userNameEscaped(self) -> None:
        """
        C{=} and C{,} in a user name are escaped as C{=3D} and C{=2C}.
        """
        client = ScramClient(RFC_PASSWORD, "abc", userName="a=b,c")
        self.assertEqual(client.clientFirst(), b"n,,n=a=3Db=2Cc,r=abc")

    def test_wrongServerSignature(self) -> None:
        """
        A server signature that does not match is an authentication failure:
        that server does not know the password.
        """
        client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE, userName="user")
        client.clientFirst()
        client.serverFirst(RFC_SERVER_FIRST)
        wrong = b"v=" + base64.b64encode(bytes(32))
        self.assertRaises(ScramError, client.serverFinal, wrong)
        self.assertFalse(client.verified)

    def test_serverError(self) -> None:
        """
        A server-final-message with C{e=} is a failure whose message names
        the (sanitized) error.
        """
        client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE)
        client.clientFirst()
        client.serverFirst(RFC_SERVER_FIRST)
        error = self.assertRaises(ScramError, client.serverFinal, b"e=invalid-proof")
        self.assertIn("invalid-proof", str(error))

    def test_nonceNotExtended(self) -> None:
        """
        A server nonce that does not start with the client's, or does not
        add to it, fails the exchange.
        """
        for serverFirst in (
            b"r=XXXXNGfwEbeRWgbNEkqO%hvY,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        ):
            client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE)
            client.clientFirst()
            self.assertRaises(ScramError, client.serverFirst, serverFirst)

    def test_unacceptableIterations(self) -> None:
        """
        Iteration counts of zero or absurdly large are refused rather than
        computed (a hostile server could stall the reactor).
        """
        for count in (b"0", b"99999999999"):
            client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE)
            client.clientFirst()
            message = b"r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=" + count
            self.assertRaises(ScramError, client.serverFirst, message)
        self.assertEqual(self.hi.calls, 0)

    def test_malformedServerFirst(self) -> None:
        """
        Malformed server-first-messages are protocol violations.
        """
        for message in (
            b"",
            b"r=rOprNGfwEbeRWgbNEkqOabc",
            b"r=rOprNGfwEbeRWgbNEkqOabc,i=4096,s=W22ZaJ0SNY7soEsUEjb6gQ==",
            b"r=rOprNGfwEbeRWgbNEkqOabc,s=not base64!,i=4096",
            b"r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=many",
            b"r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\x00",
        ):
            client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE)
            client.clientFirst()
            error = self.assertRaises(ProtocolViolation, client.serverFirst, message)
            self.assertEqual(error.sqlstate, constants.SQLSTATE_PROTOCOL_VIOLATION)

    def test_extensionsIgnored(self) -> None:
        """
        Unknown extensions after the iteration count are ignored (RFC 5802).
        """
        client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE, userName="user")
        client.clientFirst()
        extended = client.serverFirst(RFC_SERVER_FIRST + b",x=ext")
        self.assertTrue(extended.startswith(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvY"))

    def test_outOfOrder(self) -> None:
        """
        Calls out of order raise L{ProtocolViolation}.
        """
        client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE)
        self.assertRaises(ProtocolViolation, client.serverFirst, RFC_SERVER_FIRST)
        self.assertRaises(ProtocolViolation, client.serverFinal, RFC_SERVER_FINAL)
        client.clientFirst()
        self.assertRaises(ProtocolViolation, client.clientFirst)
        self.assertRaises(ProtocolViolation, client.serverFinal, RFC_SERVER_FINAL)

    def test_finalAfterFinal(self) -> None:
        """
        A second server-final-message is a protocol violation.
        """
        client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE, userName="user")
        client.clientFirst()
        client.serverFirst(RFC_SERVER_FIRST)
        client.serverFinal(RFC_SERVER_FINAL)
        self.assertRaises(ProtocolViolation, client.serverFinal, RFC_SERVER_FINAL)

    def test_badNonce(self) -> None:
        """
        A client nonce must be printable ASCII without commas.
        """
        self.assertRaises(ValueError, ScramClient, "p", "a,b")
        self.assertRaises(ValueError, ScramClient, "p", "")

    def test_againstScramp(self) -> None:
        """
        The client logs into scramp's independent server implementation.
        """
        mechanism = scramp.ScramMechanism("SCRAM-SHA-256")
        authInfo = mechanism.make_auth_info("p\u00e4ssword", iteration_count=4096)
        server = mechanism.make_server(lambda name: authInfo)
        client = ScramClient("p\u00e4ssword", makeNonce(), userName="alice")
        server.set_client_first(client.clientFirst().decode())
        clientFinal = client.serverFirst(server.get_server_first().encode())
        server.set_client_final(clientFinal.decode())
        client.serverFinal(server.get_server_final().encode())
        self.assertTrue(client.verified)


class ScramServerVectorTests(_CacheIsolation):
    """
    L{ScramServer} reproduces the RFC 7677 exchange and follows PostgreSQL's
    rules for malformed input.
    """

    def makeServer(self, doomed: bool = False) -> ScramServer:
        """
        A server for the RFC's password, salt and server nonce.
        """
        return ScramServer(makeSecret(RFC_PASSWORD, RFC_SALT), RFC_SERVER_NONCE, doomed)

    def test_rfc7677(self) -> None:
        """
        With the RFC's secret and injected server nonce the server answers
        the RFC's messages with the RFC's messages.
        """
        server = self.makeServer()
        self.assertEqual(server.clientFirst(RFC_CLIENT_FIRST), RFC_SERVER_FIRST)
        self.assertEqual(server.clientFinal(RFC_CLIENT_FINAL), RFC_SERVER_FINAL)

    def test_wrongProof(self) -> None:
        """
        A wrong proof yields no server-final-message (PostgreSQL sends only
        its ErrorResponse).
        """
        server = self.makeServer()
        server.clientFirst(RFC_CLIENT_FIRST)
        wrong = RFC_CLIENT_FINAL[: -len("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")]
        wrong += base64.b64encode(bytes(32))
        self.assertIsNone(server.clientFinal(wrong))

    def test_doomed(self) -> None:
        """
        A doomed exchange (mock authentication) fails even with a right proof.
        """
        server = self.makeServer(doomed=True)
        server.clientFirst(RFC_CLIENT_FIRST)
        self.assertIsNone(server.clientFinal(RFC_CLIENT_FINAL))

    def test_emptyUserName(self) -> None:
        """
        libpq sends C{n=,}: an empty SCRAM user name is accepted, and the
        proof computed over it verifies.
        """
        server = ScramServer(makeSecret("pw", RFC_SALT), "servernonce")
        client = ScramClient("pw", "clientnonce")
        clientFinal = client.serverFirst(server.clientFirst(client.clientFirst()))
        serverFinal = server.clientFinal(clientFinal)
        assert serverFinal is not None
        client.serverFinal(serverFinal)
        self.assertTrue(client.verified)

    def test_clientSupportsBindingFlag(self) -> None:
        """
        The C{y} flag (the client supports channel binding but thinks we do
        not) is accepted with the matching C{c=eSws}.
        """
        server = self.makeServer()
        server.clientFirst(b"y,,n=,r=abc")
        nonce = b"abc" + RFC_SERVER_NONCE.encode()
        self.assertIsNone(server.clientFinal(b"c=eSws,r=" + nonce + b",p=" + b"A" * 43 + b"="))

    def assertViolation(
        self, call: object, message: bytes, text: str, sqlstate: str = "08P01"
    ) -> None:
        """
        Calling C{call} with C{message} raises a L{ProtocolViolation} with
        PostgreSQL's wording and SQLSTATE.
        """
        assert callable(call)
        error = self.assertRaises(ProtocolViolation, call, message)
        self.assertEqual(error.message, text)
        self.assertEqual(error.sqlstate, sqlstate)

    def test_malformedClientFirst(self) -> None:
        """
        Malformed client-first-messages are refused as PostgreSQL refuses them.
        """
        malformed = "malformed SCRAM message"
        cases = [
            (b"", malformed, "08P01"),
            (b"n,,n=,r=a\x00", malformed, "08P01"),
            (b"x,,n=,r=abc", malformed, "08P01"),
            (b"n,,", malformed, "08P01"),
            (b"n,,r=abc", malformed, "08P01"),
            (b"n,,n=,x=abc", malformed, "08P01"),
            (b"n,,n=,r=abc,", malformed, "08P01"),
            (b"p=tls-server-end-point,,n=,r=abc", malformed, "08P01"),
            (b"n,x,n=,r=abc", malformed, "08P01"),
            (b"n,,n=,r=", "non-printable characters in SCRAM nonce", "08P01"),
            (b"n,,n=,r=a\x7fb", "non-printable characters in SCRAM nonce", "08P01"),
            (
                b"n,a=bob,n=,r=abc",
                "client uses authorization identity, but it is not supported",
                "0A000",
            ),
            (b"n,,m=ext,n=,r=abc", "client requires an unsupported SCRAM extension", "0A000"),
        ]
        for message, text, sqlstate in cases:
            self.assertViolation(self.makeServer().clientFirst, message, text, sqlstate)

    def test_clientFirstExtensionsIgnored(self) -> None:
        """
        Extensions after the nonce are ignored.
        """
        server = self.makeServer()
        self.assertTrue(server.clientFirst(b"n,,n=,r=abc,x=1").startswith(b"r=abc%hvY"))

    def test_malformedClientFinal(self) -> None:
        """
        Malformed client-final-messages are refused as PostgreSQL refuses them.
        """
        nonce = RFC_CLIENT_NONCE + RFC_SERVER_NONCE
        proof = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        malformed = "malformed SCRAM message"
        cases = [
            (b"", malformed),
            (f"c=biws,r={nonce}".encode(), malformed),
            (f"r={nonce},c=biws,p={proof}".encode(), malformed),
            (f"c=biws,r={nonce},p={proof},x=1".encode(), malformed),
            (f"c=biws,r={nonce},p=AAAA".encode(), malformed),
            (f"c=biws,r={nonce},p=!!!!".encode(), malformed),
            (f"c=biws,r={nonce},p={proof},p={proof}".encode(), malformed),
            (
                f"c=eSws,r={nonce},p={proof}".encode(),
                "unexpected SCRAM channel-binding attribute in client-final-message",
            ),
            (f"c=biws,r={nonce}x,p={proof}".encode(), "invalid SCRAM response"),
            (f"c=biws,r={RFC_CLIENT_NONCE},p={proof}".encode(), "invalid SCRAM response"),
        ]
        for message, text in cases:
            server = self.makeServer()
            server.clientFirst(RFC_CLIENT_FIRST)
            self.assertViolation(server.clientFinal, message, text)

    def test_clientFinalExtensionsIgnored(self) -> None:
        """
        Extensions between the nonce and the proof take part in the
        AuthMessage, as the RFC says, and are otherwise ignored.
        """
        server = ScramServer(makeSecret("pw", RFC_SALT), "servernonce")
        server.clientFirst(b"n,,n=,r=abc")
        saltedPassword = hashlib.pbkdf2_hmac("sha256", b"pw", RFC_SALT, 4096)
        clientKey = hmac.new(saltedPassword, b"Client Key", "sha256").digest()
        storedKey = hashlib.sha256(clientKey).digest()
        withoutProof = "c=biws,r=abcservernonce,x=1"
        serverFirst = f"r=abcservernonce,s={base64.b64encode(RFC_SALT).decode()},i=4096"
        authMessage = f"n=,r=abc,{serverFirst},{withoutProof}".encode()
        signature = hmac.new(storedKey, authMessage, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(clientKey, signature, strict=True))
        final = f"{withoutProof},p={base64.b64encode(proof).decode()}".encode()
        self.assertIsNotNone(server.clientFinal(final))

    def test_outOfOrder(self) -> None:
        """
        A client-final-message first, or any message after the last, raises.
        """
        server = self.makeServer()
        self.assertRaises(ProtocolViolation, server.clientFinal, RFC_CLIENT_FINAL)
        server = self.makeServer()
        server.clientFirst(RFC_CLIENT_FIRST)
        self.assertRaises(ProtocolViolation, server.clientFirst, RFC_CLIENT_FIRST)
        server.clientFinal(RFC_CLIENT_FINAL)
        self.assertRaises(ProtocolViolation, server.clientFinal, RFC_CLIENT_FINAL)

    def test_noRetryAfterMalformed(self) -> None:
        """
        After a malformed client-first-message the exchange is over.
        """
        server = self.makeServer()
        self.assertRaises(ProtocolViolation, server.clientFirst, b"garbage")
        self.assertRaises(ProtocolViolation, server.clientFirst, RFC_CLIENT_FIRST)

    def test_badServerNonce(self) -> None:
        """
        A server nonce must be printable ASCII without commas.
        """
        secret = mockSecret("alice")
        self.assertRaises(ValueError, ScramServer, secret, "a,b")
        self.assertRaises(ValueError, ScramServer, secret, "")

    def test_againstScramp(self) -> None:
        """
        scramp's independent client logs into the server.
        """
        server = ScramServer(makeSecret("p\u00e4ssword", RFC_SALT), makeNonce())
        client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", "p\u00e4ssword")
        serverFirst = server.clientFirst(client.get_client_first().encode())
        client.set_server_first(serverFirst.decode())
        serverFinal = server.clientFinal(client.get_client_final().encode())
        assert serverFinal is not None
        client.set_server_final(serverFinal.decode())


class Base64Tests(SynchronousTestCase):
    """
    L{_scram._b64encode} is standard base64 as text, without a newline.
    """

    def test_sameAsBase64Module(self) -> None:
        """
        Every length (padding of zero, one and two characters, the 18-byte
        nonce, a 32-byte signature) gives what C{base64.b64encode} gives.
        """
        for size in (0, 1, 2, 3, 18, 32, 100):
            data = bytes(range(256))[:size]
            self.assertEqual(_scram._b64encode(data), base64.b64encode(data).decode("ascii"))


class SecretTests(_CacheIsolation):
    """
    Secrets, mock secrets, password normalization and the PBKDF2 caches.
    """

    def test_makeSecretMatchesScramp(self) -> None:
        """
        L{makeSecret} derives what scramp derives for the same salt.
        """
        salt, storedKey, serverKey, iterations = scramp.ScramMechanism().make_auth_info(
            "pencil", iteration_count=4096, salt=RFC_SALT
        )
        secret = makeSecret("pencil", RFC_SALT)
        self.assertEqual(
            (secret.salt, secret.storedKey, secret.serverKey, secret.iterations),
            (salt, storedKey, serverKey, iterations),
        )

    def test_secretReprHidesKeys(self) -> None:
        """
        A secret's repr shows no key material.
        """
        secret = makeSecret("pencil", RFC_SALT)
        self.assertNotIn(repr(secret.storedKey), repr(secret))
        self.assertNotIn(base64.b64encode(secret.serverKey).decode(), repr(secret))

    def test_serverSecretCached(self) -> None:
        """
        The server secret of a (user, password) is derived once; its salt
        stays the same across logins.
        """
        first = serverSecret("alice", "pw")
        second = serverSecret("alice", "pw")
        self.assertIs(first, second)
        self.assertEqual(self.hi.calls, 1)
        self.assertEqual(len(first.salt), _scram.SALT_LENGTH)

    def test_serverSecretPerUserAndPassword(self) -> None:
        """
        Another user or a changed password gets its own secret and salt.
        """
        alice = serverSecret("alice", "pw")
        bob = serverSecret("bob", "pw")
        changed = serverSecret("alice", "new")
        self.assertEqual(self.hi.calls, 3)
        self.assertNotEqual(alice.salt, bob.salt)
        self.assertNotEqual(alice.storedKey, changed.storedKey)

    def test_serverSecretInjectedRandomness(self) -> None:
        """
        The salt comes from the given C{randomBytes}.
        """
        secret = serverSecret("alice", "pw", lambda n: b"\x07" * n)
        self.assertEqual(secret.salt, b"\x07" * _scram.SALT_LENGTH)
        self.assertEqual(secret.iterations, _scram.DEFAULT_ITERATIONS)

    def test_clientKeysCached(self) -> None:
        """
        Two clients logging in with the same password, salt and iterations
        derive the SaltedPassword once.
        """
        for nonce in ("first", "second"):
            client = ScramClient(RFC_PASSWORD, nonce)
            client.clientFirst()
            client.serverFirst(f"r={nonce}srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".encode())
        self.assertEqual(self.hi.calls, 1)
        client = ScramClient(RFC_PASSWORD, "third")
        client.clientFirst()
        client.serverFirst(b"r=thirdsrv,s=AAAAAAAAAAAAAAAAAAAAAA==,i=4096")
        self.assertEqual(self.hi.calls, 2)

    def test_mockSecret(self) -> None:
        """
        Mock secrets are stable per user, differ between users, never
        derive PBKDF2, and have keys no proof can match.
        """
        self.assertEqual(mockSecret("mallory"), mockSecret("mallory"))
        self.assertNotEqual(mockSecret("mallory").salt, mockSecret("eve").salt)
        self.assertEqual(len(mockSecret("mallory").salt), _scram.SALT_LENGTH)
        self.assertEqual(mockSecret("mallory").storedKey, bytes(32))
        self.assertEqual(self.hi.calls, 0)

    def test_mockSaltNotPublic(self) -> None:
        """
        The mock salt is not simply a hash of the user name, which anyone
        could compute to tell mock salts from real ones.
        """
        self.assertNotEqual(
            mockSecret("mallory").salt,
            hashlib.sha256(b"mallory").digest()[: _scram.SALT_LENGTH],
        )

    def test_normalizePassword(self) -> None:
        """
        Passwords are SASLprep'd when SASLprep accepts them, and used as raw
        bytes otherwise, as PostgreSQL does.
        """
        self.assertEqual(normalizePassword("pencil"), b"pencil")
        # U+00AD SOFT HYPHEN maps to nothing; U+2168 ROMAN NUMERAL NINE NFKC-normalizes to "IX".
        self.assertEqual(normalizePassword("I\u00adX"), b"IX")
        self.assertEqual(normalizePassword("\u2168"), b"IX")
        # A control character is prohibited: the raw UTF-8 bytes are used.
        self.assertEqual(normalizePassword("a\u0007b"), b"a\x07b")
        # Invalid UTF-8 from the wire (surrogateescape) gets its bytes back.
        self.assertEqual(
            normalizePassword(b"\xff\xfe".decode("utf-8", "surrogateescape")), b"\xff\xfe"
        )

    def test_makeNonce(self) -> None:
        """
        Nonces are base64 of 18 random bytes: 24 printable characters.
        """
        self.assertEqual(makeNonce(lambda n: bytes(n)), "A" * 24)
        self.assertEqual(len(makeNonce()), 24)
        self.assertNotEqual(makeNonce(), makeNonce())


class BoundedCacheTests(SynchronousTestCase):
    """
    Tests for L{BoundedCache}.
    """

    def test_evictsLeastRecentlyUsed(self) -> None:
        """
        When full, the entry used least recently is dropped.
        """
        cache: BoundedCache[str, int] = BoundedCache(2)
        cache.put("a", 1)
        cache.put("b", 2)
        self.assertEqual(cache.get("a"), 1)
        cache.put("c", 3)
        self.assertIsNone(cache.get("b"))
        self.assertEqual(cache.get("a"), 1)
        self.assertEqual(cache.get("c"), 3)
        self.assertEqual(len(cache), 2)

    def test_clear(self) -> None:
        """
        L{BoundedCache.clear} forgets everything.
        """
        cache: BoundedCache[str, int] = BoundedCache()
        cache.put("a", 1)
        cache.clear()
        self.assertIsNone(cache.get("a"))
        self.assertEqual(len(cache), 0)

    def test_defaultSize(self) -> None:
        """
        The module's caches are bounded.
        """
        self.assertEqual(_scram.serverSecrets.maxSize, 1024)
        self.assertEqual(_scram.clientKeys.maxSize, 1024)


def _certificate(algorithm: hashes.HashAlgorithm | None, edwards: bool = False) -> bytes:
    """
    A self-signed certificate, DER, signed with C{algorithm} (an ECDSA key)
    or, when C{edwards}, with Ed25519, whose signature names no hash.
    """
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "binding")])
    now = datetime.datetime.now(datetime.timezone.utc)
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    key = (
        ed25519.Ed25519PrivateKey.generate() if edwards else ec.generate_private_key(ec.SECP256R1())
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, algorithm)
    )
    return certificate.public_bytes(serialization.Encoding.DER)


BINDING = b"\x01" * 32


class TlsServerEndPointTests(SynchronousTestCase):
    """
    L{_scram.tlsServerEndPoint} computes RFC 5929's C{tls-server-end-point}.
    """

    def test_signatureHash(self) -> None:
        """
        The certificate is hashed with its signature's hash function.
        """
        for algorithm, name in ((hashes.SHA256(), "sha256"), (hashes.SHA384(), "sha384")):
            der = _certificate(algorithm)
            self.assertEqual(tlsServerEndPoint(der), hashlib.new(name, der).digest())

    def test_sha1BecomesSha256(self) -> None:
        """
        A certificate signed with SHA-1 is hashed with SHA-256 (RFC 5929).
        """
        # cryptography refuses to sign with SHA-1; pyOpenSSL's deprecated
        # X509 API still does.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            key = crypto.PKey()
            key.generate_key(crypto.TYPE_RSA, 1024)
            legacy = crypto.X509()
            legacy.get_subject().CN = "binding"
            legacy.set_issuer(legacy.get_subject())
            legacy.set_serial_number(1)
            legacy.set_pubkey(key)
            legacy.gmtime_adj_notBefore(0)
            legacy.gmtime_adj_notAfter(3600)
            legacy.sign(key, "sha1")
            der = crypto.dump_certificate(crypto.FILETYPE_ASN1, legacy)
        self.assertEqual(tlsServerEndPoint(der), hashlib.sha256(der).digest())

    def test_noHash(self) -> None:
        """
        A signature that names no hash (Ed25519) gives no binding, as in
        PostgreSQL.
        """
        self.assertRaises(ValueError, tlsServerEndPoint, _certificate(None, edwards=True))


class ChannelBindingTests(_CacheIsolation):
    """
    SCRAM-SHA-256-PLUS: the GS2 flag checks and the binding data, as
    PostgreSQL's auth-scram.c and libpq's fe-auth-scram.c do them.
    """

    def server(self, binding: bytes | None = BINDING, plus: bool = True) -> ScramServer:
        """
        A server for the RFC's password over a connection with C{binding}.
        """
        return ScramServer(
            makeSecret(RFC_PASSWORD, RFC_SALT),
            RFC_SERVER_NONCE,
            channelBinding=binding,
            plus=plus,
        )

    def play(self, server: ScramServer, client: ScramClient) -> bytes | None:
        """
        Run a whole exchange; the server-final-message (C{None}: refused).
        """
        clientFinal = client.serverFirst(server.clientFirst(client.clientFirst()))
        serverFinal = server.clientFinal(clientFinal)
        if serverFinal is not None:
            client.serverFinal(serverFinal)
        return serverFinal

    def test_plusRoundTrip(self) -> None:
        """
        Both sides with the same binding data agree; the client sends
        libpq's header and C{c=} covers header and data.
        """
        client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE, channelBinding=BINDING, plus=True)
        first = client.clientFirst()
        self.assertTrue(first.startswith(b"p=tls-server-end-point,,n=,r="))
        server = self.server()
        clientFinal = client.serverFirst(server.clientFirst(first))
        expected = base64.b64encode(b"p=tls-server-end-point,," + BINDING)
        self.assertTrue(clientFinal.startswith(b"c=" + expected + b",r="))
        serverFinal = server.clientFinal(clientFinal)
        assert serverFinal is not None
        client.serverFinal(serverFinal)
        self.assertTrue(client.verified)

    def test_scrampClient(self) -> None:
        """
        An independent implementation (scramp) logs in with PLUS.
        """
        client = scramp.ScramClient(
            ["SCRAM-SHA-256-PLUS"],
            "user",
            RFC_PASSWORD,
            channel_binding=("tls-server-end-point", BINDING),
        )
        server = self.server()
        client.set_server_first(server.clientFirst(client.get_client_first().encode()).decode())
        serverFinal = server.clientFinal(client.get_client_final().encode())
        assert serverFinal is not None
        client.set_server_final(serverFinal.decode())

    def test_wrongBinding(self) -> None:
        """
        Binding data of another connection (a man in the middle who
        terminated TLS with his own certificate) fails with PostgreSQL's
        28000 error, whatever the proof.
        """
        client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE, channelBinding=b"\x02" * 32, plus=True)
        error = self.assertRaises(ProtocolViolation, self.play, self.server(), client)
        self.assertEqual(error.message, "SCRAM channel binding check failed")
        self.assertEqual(error.sqlstate, constants.SQLSTATE_INVALID_AUTHORIZATION)

    def test_doomedWrongBinding(self) -> None:
        """
        The mock exchange of an unknown user checks the binding the same
        way, so that it looks like a real one.
        """
        server = ScramServer(
            mockSecret("nobody"), RFC_SERVER_NONCE, True, channelBinding=BINDING, plus=True
        )
        client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE, channelBinding=b"\x02" * 32, plus=True)
        error = self.assertRaises(ProtocolViolation, self.play, server, client)
        self.assertEqual(error.message, "SCRAM channel binding check failed")
        server = ScramServer(
            mockSecret("nobody"), RFC_SERVER_NONCE, True, channelBinding=BINDING, plus=True
        )
        client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE, channelBinding=BINDING, plus=True)
        self.assertIsNone(self.play(server, client))

    def test_downgradeRefused(self) -> None:
        """
        Over TLS a client that says C{y} (it supports binding but was told
        the server does not) is refused: PLUS was removed from the offer.
        """
        server = self.server(plus=False)
        error = self.assertRaises(ProtocolViolation, server.clientFirst, b"y,,n=,r=abc")
        self.assertEqual(error.message, "SCRAM channel binding negotiation error")
        self.assertEqual(error.sqlstate, "08P01")

    def test_noBindingOverTls(self) -> None:
        """
        Over TLS, SCRAM-SHA-256 with C{n} (a client that cannot bind) is
        accepted.
        """
        client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE)
        self.assertIsNotNone(self.play(self.server(plus=False), client))

    def test_plusWithoutBindingData(self) -> None:
        """
        A client that selected PLUS but sends C{n} or C{y} is malformed.
        """
        for first in (b"n,,n=,r=abc", b"y,,n=,r=abc"):
            error = self.assertRaises(ProtocolViolation, self.server().clientFirst, first)
            self.assertEqual(error.message, "malformed SCRAM message")

    def test_bindingDataWithoutPlus(self) -> None:
        """
        A client that selected SCRAM-SHA-256 but sends C{p=} is malformed.
        """
        server = self.server(plus=False)
        error = self.assertRaises(
            ProtocolViolation, server.clientFirst, b"p=tls-server-end-point,,n=,r=abc"
        )
        self.assertEqual(error.message, "malformed SCRAM message")

    def test_unsupportedType(self) -> None:
        """
        A binding type other than C{tls-server-end-point} is not supported.
        """
        error = self.assertRaises(
            ProtocolViolation, self.server().clientFirst, b"p=tls-unique,,n=,r=abc"
        )
        self.assertEqual(error.message, 'unsupported SCRAM channel-binding type "tls-unique"')
        self.assertEqual(error.sqlstate, constants.SQLSTATE_FEATURE_NOT_SUPPORTED)

    def test_clientSaysY(self) -> None:
        """
        A client with binding data that was not offered PLUS sends C{y},
        which a server without TLS accepts.
        """
        client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE, channelBinding=BINDING)
        self.assertTrue(client.clientFirst().startswith(b"y,,"))
        client = ScramClient(RFC_PASSWORD, RFC_CLIENT_NONCE, channelBinding=BINDING)
        self.assertIsNotNone(self.play(self.server(binding=None, plus=False), client))

    def test_plusNeedsBinding(self) -> None:
        """
        PLUS without binding data is a programming error on either side.
        """
        self.assertRaises(ValueError, ScramClient, "pw", "nonce", plus=True)
        self.assertRaises(ValueError, ScramServer, makeSecret("pw", RFC_SALT), "nonce", plus=True)
