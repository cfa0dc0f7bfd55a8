# -*- test-case-name: tests.unit.test_auth_scram -*-
"""
SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, both sides, sans-IO.

L{ScramServer} verifies a client, L{ScramClient} logs into PostgreSQL. Neither
imports Twisted nor does I/O: they turn one SCRAM message (bytes) into the
next. Wrapping them in PostgreSQL's SASL messages is L{pgtwist.auth.methods}'
job.

Differences from the RFCs, all PostgreSQL's own (C{src/backend/libpq/auth-scram.c}):
  - The user name in the SCRAM messages is ignored (the startup packet's is
    used); libpq sends it empty (C{n=}), so the server accepts an empty one
    and the client sends an empty one.
  - A password that SASLprep rejects is used as raw UTF-8 bytes rather than
    refused.
  - A user without a usable secret still goes through the whole exchange
    with a mock salt and fails at the end ("doomed"), so that the exchange
    does not tell an attacker which users exist.

Performance: PBKDF2 with 4096 iterations costs milliseconds of CPU, far more
than the rest of a login. It runs only in L{hi}, and its results are cached:
the server's secret per (user, password), the client's keys per (password,
salt, iterations), each in a L{BoundedCache}. Only the first login of a user
(or the first backend a pool opens) pays for it.

Channel binding (C{SCRAM-SHA-256-PLUS}, RFC 5802 section 6) uses the one type
PostgreSQL implements, C{tls-server-end-point} (RFC 5929): a hash of the TLS
server's certificate, see L{tlsServerEndPoint}. It ties the proof to the TLS
connection it travels on, so that a man in the middle who terminates TLS with
another certificate cannot relay the exchange. The server and client here
take the binding data as bytes and never look at a connection.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

try:
    from scramp.utils import saslprep
except ImportError:  # scramp < 1.5, the last for Python 3.9 (PyPy)
    from scramp.core import saslprep  # type: ignore[no-redef,attr-defined]

from pgtwist.config.verifiers import KEY_LENGTH, MAX_ITERATIONS, ScramPassThrough, ScramSecret
from pgtwist.wire import constants
from pgtwist.wire.errors import ProtocolViolation

#: The mechanism without channel binding.
SCRAM_SHA_256 = "SCRAM-SHA-256"
#: The mechanism with channel binding, offered and used over TLS only.
SCRAM_SHA_256_PLUS = "SCRAM-SHA-256-PLUS"
#: The one channel-binding type PostgreSQL implements (RFC 5929).
TLS_SERVER_END_POINT = "tls-server-end-point"
#: PostgreSQL's SCRAM_DEFAULT_ITERATIONS.
DEFAULT_ITERATIONS = 4096
#: PostgreSQL's SCRAM_DEFAULT_SALT_LEN.
SALT_LENGTH = 16
#: PostgreSQL's SCRAM_RAW_NONCE_LEN: random bytes in a nonce, before base64.
RAW_NONCE_LENGTH = 18
#: Entries kept by each of the two key caches.
CACHE_SIZE = 1024

#: C{c=} of the GS2 headers without channel binding, by flag.
_CBIND_FOR_FLAG = {"n": "biws", "y": "eSws"}  # base64 of "n,," and "y,,"
#: GS2 header with channel binding (libpq and PostgreSQL send no authzid).
_GS2_PLUS = f"p={TLS_SERVER_END_POINT},,"

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"

_K = TypeVar("_K")
_V = TypeVar("_V")


class ScramError(Exception):
    """
    The SCRAM exchange failed as an authentication, not as a protocol: the
    peer does not know the password, or misbehaved in a way that is a
    security failure. The message is log-safe (no secrets).
    """


class BoundedCache(Generic[_K, _V]):
    """
    A small least-recently-used mapping. Used for derived SCRAM keys, which
    are expensive to compute and few (one per user or per backend secret).

    @ivar maxSize: The number of entries kept; the least recently used one
        is dropped when a new one would exceed it.
    """

    def __init__(self, maxSize: int = CACHE_SIZE) -> None:
        """
        @param maxSize: See L{BoundedCache.maxSize}.
        """
        self.maxSize = maxSize
        self._entries: OrderedDict[_K, _V] = OrderedDict()

    def get(self, key: _K) -> _V | None:
        """
        The value for C{key}, or C{None}; marks it recently used.
        """
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: _K, value: _V) -> None:
        """
        Store C{value} for C{key}, evicting the least recently used entry
        when full.
        """
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.maxSize:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """
        Forget everything (for tests, and after a vault reload if wanted).
        """
        self._entries.clear()

    def __len__(self) -> int:
        """
        The number of entries held.
        """
        return len(self._entries)


# -- primitives ----------------------------------------------------------------


def normalizePassword(password: str) -> bytes:
    """
    The bytes SCRAM hashes for C{password}: SASLprep'd UTF-8 when SASLprep
    accepts it, else the raw bytes (as PostgreSQL does; passwords decoded
    from the wire with C{surrogateescape} get their original bytes back).
    """
    try:
        prepared = str(saslprep(password))
    except Exception:  # scramp raises ScramException for prohibited input
        prepared = ""
    if not prepared:
        return password.encode(_ENCODING, _ERRORS)
    return prepared.encode(_ENCODING)


def hi(password: bytes, salt: bytes, iterations: int) -> bytes:
    """
    SCRAM's C{Hi()}: PBKDF2-HMAC-SHA-256, the SaltedPassword. The only
    expensive function here; everything else calls it through the caches.
    """
    return hashlib.pbkdf2_hmac("sha256", password, salt, iterations)


def _hmac(key: bytes, message: bytes) -> bytes:
    """
    HMAC-SHA-256 of C{message} under C{key}: C{hmac.digest}, OpenSSL's
    one-shot HMAC on CPython, no HMAC object per call on either runtime.
    """
    return hmac.digest(key, message, "sha256")


def _xor(left: bytes, right: bytes) -> bytes:
    """
    Bytewise exclusive or of two equally long strings.
    """
    size = len(left)
    return (int.from_bytes(left, "big") ^ int.from_bytes(right, "big")).to_bytes(size, "big")


def _b64encode(data: bytes) -> str:
    """
    Base64 as text: C{binascii} directly, without C{base64.b64encode}'s
    Python frame (three per login).
    """
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _b64decode(text: str) -> bytes:
    """
    Strict base64 decoding; bad input is a malformed SCRAM message.
    """
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ProtocolViolation("malformed SCRAM message") from None


def _keys(saltedPassword: bytes) -> tuple[bytes, bytes, bytes]:
    """
    ClientKey, StoredKey and ServerKey from a SaltedPassword.
    """
    clientKey = _hmac(saltedPassword, b"Client Key")
    storedKey = hashlib.sha256(clientKey).digest()
    serverKey = _hmac(saltedPassword, b"Server Key")
    return clientKey, storedKey, serverKey


def makeSecret(password: str, salt: bytes, iterations: int = DEFAULT_ITERATIONS) -> ScramSecret:
    """
    Derive a server secret from a plaintext password (runs PBKDF2; see
    L{serverSecret} for the cached variant).
    """
    _, storedKey, serverKey = _keys(hi(normalizePassword(password), salt, iterations))
    return ScramSecret(salt, iterations, storedKey, serverKey)


# -- caches ----------------------------------------------------------------------

#: Server secrets by (user name, password): a user's salt stays stable while cached.
serverSecrets: BoundedCache[tuple[str, str], ScramSecret] = BoundedCache()
#: Client keys (ClientKey, StoredKey, ServerKey) by (password bytes, salt, iterations).
clientKeys: BoundedCache[tuple[bytes, bytes, int], tuple[bytes, bytes, bytes]] = BoundedCache()

#: Keys the mock salts of unknown users, so they are stable within a process
#: but cannot be predicted from the user name alone (PostgreSQL uses its
#: cluster's mock_authentication_nonce the same way).
_MOCK_KEY = os.urandom(32)


def serverSecret(
    user: str,
    password: str,
    randomBytes: Callable[[int], bytes] = os.urandom,
    iterations: int = DEFAULT_ITERATIONS,
) -> ScramSecret:
    """
    The secret to verify C{user}'s C{password} with, derived (with a fresh
    random salt) on the first call for this (user, password) only.
    """
    key = (user, password)
    secret = serverSecrets.get(key)
    if secret is None or secret.iterations != iterations:
        secret = makeSecret(password, randomBytes(SALT_LENGTH), iterations)
        serverSecrets.put(key, secret)
    return secret


def mockSecret(user: str, iterations: int = DEFAULT_ITERATIONS) -> ScramSecret:
    """
    A plausible secret for a user who has none: the salt is derived from the
    user name (stable across attempts, as a real salt would be), the keys
    are zeros and can never match. No PBKDF2 runs.
    """
    salt = _hmac(_MOCK_KEY, user.encode(_ENCODING, _ERRORS))[:SALT_LENGTH]
    return ScramSecret(salt, iterations, bytes(KEY_LENGTH), bytes(KEY_LENGTH))


def _clientKeys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes, bytes]:
    """
    ClientKey, StoredKey and ServerKey for logging in with C{password},
    from L{clientKeys} or derived once and cached there.
    """
    normalized = normalizePassword(password)
    key = (normalized, salt, iterations)
    keys = clientKeys.get(key)
    if keys is None:
        keys = _keys(hi(normalized, salt, iterations))
        clientKeys.put(key, keys)
    return keys


def verifyPlainPassword(password: str, secret: ScramSecret) -> bool:
    """
    Whether C{password} is the one C{secret} was made from, as PostgreSQL's
    C{scram_verify_plain_password} checks a cleartext password against a
    SCRAM secret: derive the keys with the secret's salt and iteration
    count and compare them in constant time. Only a password that verifies
    is cached (in L{clientKeys}, where the backend login that follows finds
    it): wrong guesses must neither stay in memory nor evict real entries.
    """
    normalized = normalizePassword(password)
    key = (normalized, secret.salt, secret.iterations)
    keys = clientKeys.get(key)
    if keys is None:
        keys = _keys(hi(normalized, secret.salt, secret.iterations))
    _, storedKey, serverKey = keys
    # Both compared, without short-circuit, so the time does not tell which differed.
    storedOk = hmac.compare_digest(storedKey, secret.storedKey)
    serverOk = hmac.compare_digest(serverKey, secret.serverKey)
    if storedOk & serverOk:
        clientKeys.put(key, keys)
        return True
    return False


def makeNonce(randomBytes: Callable[[int], bytes] = os.urandom) -> str:
    """
    A fresh nonce: base64 of L{RAW_NONCE_LENGTH} random bytes (printable,
    no comma), as PostgreSQL and libpq make theirs.
    """
    return _b64encode(randomBytes(RAW_NONCE_LENGTH))


def tlsServerEndPoint(certificate: bytes) -> bytes:
    """
    The C{tls-server-end-point} channel-binding data of a TLS server
    certificate (RFC 5929 section 4.1): its hash with the hash function of
    its signature algorithm, SHA-256 when that is MD5 or SHA-1, as
    PostgreSQL's C{be_tls_get_certificate_hash} and libpq's
    C{pgtls_get_peer_certificate_hash} compute it.

    @param certificate: The certificate, DER.
    @raise ValueError: The certificate cannot be parsed, or its signature
        algorithm names no hash (Ed25519, for instance) or one unknown to
        C{cryptography}, which PostgreSQL refuses as well.
    """
    parsed = x509.load_der_x509_certificate(certificate)
    try:
        algorithm = parsed.signature_hash_algorithm
    except UnsupportedAlgorithm:
        algorithm = None
    if algorithm is None:
        raise ValueError("could not determine server certificate signature algorithm")
    if isinstance(algorithm, (hashes.MD5, hashes.SHA1)):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(certificate)
    return digest.finalize()


def _cbindAttribute(gs2Header: str, bindingData: bytes = b"") -> str:
    """
    The value of C{c=} in a client-final-message: base64 of the GS2 header
    and, with channel binding, the binding data.
    """
    return _b64encode(gs2Header.encode("ascii") + bindingData)


# -- message parsing -----------------------------------------------------------


def _decode(message: bytes) -> str:
    """
    A SCRAM message as text; empty messages and NULs are malformed
    (PostgreSQL checks the length against C{strlen}).
    """
    if not message:
        raise ProtocolViolation("malformed SCRAM message")
    if b"\x00" in message:
        raise ProtocolViolation("malformed SCRAM message")
    return message.decode(_ENCODING, _ERRORS)


def _attribute(part: str, expected: str | None = None) -> tuple[str, str]:
    """
    Split one C{attr=value} part, checking the attribute letter.
    """
    if len(part) < 2 or part[1] != "=" or not (part[0].isascii() and part[0].isalpha()):
        raise ProtocolViolation("malformed SCRAM message")
    name = part[0]
    if expected is not None and name != expected:
        raise ProtocolViolation("malformed SCRAM message")
    return name, part[2:]


#: A character outside RFC 5802's C{printable}: %x21-2B / %x2D-7E
#: (printable ASCII except ",").
_NOT_PRINTABLE = re.compile(r"[^\x21-\x2b\x2d-\x7e]")


def _isPrintable(value: str) -> bool:
    """
    Whether C{value} is RFC 5802 C{printable}: %x21-2B / %x2D-7E (one
    regular expression search, not a Python call per character: nonces
    are checked at every login).
    """
    return _NOT_PRINTABLE.search(value) is None


def _escapeUserName(name: str) -> str:
    """
    A user name as a SCRAM C{saslname}: C{=} and C{,} escaped.
    """
    return name.replace("=", "=3D").replace(",", "=2C")


def sanitize(value: str, limit: int = 30) -> str:
    """
    A peer-supplied string made safe for a log line (printable ASCII, short),
    as PostgreSQL's C{sanitize_str} does.
    """
    return "".join(c if "\x21" <= c <= "\x7e" else "?" for c in value[:limit])


# -- server --------------------------------------------------------------------


class _ServerStage(enum.Enum):
    """
    Where a L{ScramServer} stands.
    """

    AWAITING_CLIENT_FIRST = enum.auto()
    AWAITING_CLIENT_FINAL = enum.auto()
    FINISHED = enum.auto()


class ScramServer:
    """
    The server side of one SCRAM-SHA-256 or SCRAM-SHA-256-PLUS exchange
    (PostgreSQL's auth-scram.c).

    Feed the client-first-message to L{clientFirst}, send back its result
    (server-first-message), feed the client-final-message to L{clientFinal}.

    @ivar doomed: The exchange fails at the end whatever the client sends
        (mock authentication of a user without a secret).
    @ivar clientKey: Once L{clientFinal} verified the proof: the client's
        C{ClientKey}, recovered as C{ClientProof XOR ClientSignature}. With
        it pgtwist can log into PostgreSQL as the client (SCRAM
        pass-through, L{ScramPassThrough}); it is a password equivalent for
        this secret's salt and iterations.
    """

    def __init__(
        self,
        secret: ScramSecret,
        serverNonce: str,
        doomed: bool = False,
        channelBinding: bytes | None = None,
        plus: bool = False,
    ) -> None:
        """
        @param secret: The user's secret (or L{mockSecret} when C{doomed}).
        @param serverNonce: The server's part of the nonce; printable ASCII
            without commas (see L{makeNonce}). Injectable for tests.
        @param channelBinding: The C{tls-server-end-point} data of the TLS
            connection the exchange runs on (L{tlsServerEndPoint} of the
            certificate the server presented), or C{None} without TLS. With
            it, a client that says it supports channel binding but thinks
            the server does not (C{y}) is refused: someone removed
            C{SCRAM-SHA-256-PLUS} from the mechanisms offered.
        @param plus: The client selected C{SCRAM-SHA-256-PLUS}: its messages
            must carry C{channelBinding}.
        """
        if not serverNonce or not _isPrintable(serverNonce):
            raise ValueError("the server nonce must be printable ASCII without commas")
        if plus and channelBinding is None:
            raise ValueError("SCRAM-SHA-256-PLUS needs channel-binding data")
        self._channelBinding = channelBinding
        self._plus = plus
        self._expectedCbind = ""
        self._secret = secret
        self._serverNonce = serverNonce
        self.doomed = doomed
        self.clientKey: bytes | None = None
        self._stage = _ServerStage.AWAITING_CLIENT_FIRST
        self._nonce = ""
        self._clientFirstBare = ""
        self._serverFirst = ""

    def clientFirst(self, message: bytes) -> bytes:
        """
        Read the client-first-message and return the server-first-message.

        @raise ProtocolViolation: The message is malformed, its channel-binding
            flag does not fit the mechanism and connection (see
            L{_checkCbindFlag}), it asks for an authorization identity or a
            mandatory extension, or it comes out of order.
        """
        if self._stage is not _ServerStage.AWAITING_CLIENT_FIRST:
            raise ProtocolViolation("unexpected SCRAM client-first-message")
        self._stage = _ServerStage.FINISHED  # until this message proves well formed
        text = _decode(message)
        header = text.split(",", 2)
        if len(header) != 3:
            raise ProtocolViolation("malformed SCRAM message")
        flag, authzid, bare = header
        self._expectedCbind = self._checkCbindFlag(flag)
        if authzid:
            if authzid.startswith("a="):
                raise ProtocolViolation(
                    "client uses authorization identity, but it is not supported",
                    constants.SQLSTATE_FEATURE_NOT_SUPPORTED,
                )
            raise ProtocolViolation("malformed SCRAM message")
        if bare.startswith("m="):
            raise ProtocolViolation(
                "client requires an unsupported SCRAM extension",
                constants.SQLSTATE_FEATURE_NOT_SUPPORTED,
            )
        parts = bare.split(",")
        if len(parts) < 2:
            raise ProtocolViolation("malformed SCRAM message")
        # The user name is ignored (PostgreSQL uses the startup packet's) and may be empty.
        if not parts[0].startswith("n="):
            raise ProtocolViolation("malformed SCRAM message")
        _, clientNonce = _attribute(parts[1], "r")
        if not clientNonce or not _isPrintable(clientNonce):
            raise ProtocolViolation("non-printable characters in SCRAM nonce")
        for extension in parts[2:]:
            _attribute(extension)
        self._nonce = clientNonce + self._serverNonce
        self._clientFirstBare = bare
        self._serverFirst = (
            f"r={self._nonce},s={_b64encode(self._secret.salt)},i={self._secret.iterations}"
        )
        self._stage = _ServerStage.AWAITING_CLIENT_FINAL
        return self._serverFirst.encode("ascii")

    def _checkCbindFlag(self, flag: str) -> str:
        """
        Check the client's GS2 channel-binding flag against the mechanism it
        selected and the connection, as PostgreSQL's
        C{read_client_first_message} does.

        @return: The C{c=} value its client-final-message must carry.
        @raise ProtocolViolation: The flag contradicts the mechanism, names
            a binding type other than C{tls-server-end-point}, or is C{y}
            over TLS (a downgrade: the client was told the server cannot
            bind).
        """
        if flag.startswith("p="):
            if not self._plus:
                # The client selected SCRAM-SHA-256 but sends binding data.
                raise ProtocolViolation("malformed SCRAM message")
            if flag[2:] != TLS_SERVER_END_POINT:
                raise ProtocolViolation(
                    f'unsupported SCRAM channel-binding type "{sanitize(flag[2:])}"',
                    constants.SQLSTATE_FEATURE_NOT_SUPPORTED,
                )
            assert self._channelBinding is not None
            return _cbindAttribute(_GS2_PLUS, self._channelBinding)
        if flag not in _CBIND_FOR_FLAG or self._plus:
            # Unknown, or SCRAM-SHA-256-PLUS selected without binding data.
            raise ProtocolViolation("malformed SCRAM message")
        if flag == "y" and self._channelBinding is not None:
            raise ProtocolViolation("SCRAM channel binding negotiation error")
        return _CBIND_FOR_FLAG[flag]

    def clientFinal(self, message: bytes) -> bytes | None:
        """
        Read the client-final-message and verify its proof.

        @return: The server-final-message (C{v=...}) when the proof is right,
            C{None} when it is wrong or the exchange was doomed. PostgreSQL
            sends no C{e=} message on failure, only its ErrorResponse.
        @raise ProtocolViolation: The message is malformed, its nonce or
            channel-binding attribute does not match, or it comes out of order.
        """
        if self._stage is not _ServerStage.AWAITING_CLIENT_FINAL:
            raise ProtocolViolation("unexpected SCRAM client-final-message")
        self._stage = _ServerStage.FINISHED
        text = _decode(message)
        parts = text.split(",")
        if len(parts) < 3:
            raise ProtocolViolation("malformed SCRAM message")
        _, channelBinding = _attribute(parts[0], "c")
        if not hmac.compare_digest(
            channelBinding.encode(_ENCODING, _ERRORS), self._expectedCbind.encode("ascii")
        ):
            if self._plus:
                raise ProtocolViolation(
                    "SCRAM channel binding check failed", constants.SQLSTATE_INVALID_AUTHORIZATION
                )
            raise ProtocolViolation(
                "unexpected SCRAM channel-binding attribute in client-final-message"
            )
        _, nonce = _attribute(parts[1], "r")
        if not hmac.compare_digest(nonce.encode(_ENCODING, _ERRORS), self._nonce.encode("ascii")):
            raise ProtocolViolation("invalid SCRAM response")
        for extension in parts[2:-1]:
            if _attribute(extension)[0] == "p":
                raise ProtocolViolation("malformed SCRAM message")
        _, encodedProof = _attribute(parts[-1], "p")
        proof = _b64decode(encodedProof)
        if len(proof) != KEY_LENGTH:
            raise ProtocolViolation("malformed SCRAM message")
        withoutProof = ",".join(parts[:-1])
        authMessage = ",".join((self._clientFirstBare, self._serverFirst, withoutProof)).encode(
            _ENCODING, _ERRORS
        )
        # Verify even when doomed, so the time taken does not tell.
        clientSignature = _hmac(self._secret.storedKey, authMessage)
        clientKey = _xor(proof, clientSignature)
        verified = hmac.compare_digest(hashlib.sha256(clientKey).digest(), self._secret.storedKey)
        if not verified or self.doomed:
            return None
        self.clientKey = clientKey
        serverSignature = _hmac(self._secret.serverKey, authMessage)
        return b"v=" + _b64encode(serverSignature).encode("ascii")


# -- client --------------------------------------------------------------------


class _ClientStage(enum.Enum):
    """
    Where a L{ScramClient} stands.
    """

    INITIAL = enum.auto()
    AWAITING_SERVER_FIRST = enum.auto()
    AWAITING_SERVER_FINAL = enum.auto()
    VERIFIED = enum.auto()
    FAILED = enum.auto()


class ScramClient:
    """
    The client side of one SCRAM-SHA-256 or SCRAM-SHA-256-PLUS exchange, as
    libpq plays it (empty user name by default).

    Call L{clientFirst}, feed the server-first-message to L{serverFirst} and
    send its result, then feed the server-final-message to L{serverFinal},
    which checks the server's signature: a server that cannot produce it
    does not know the password, and must not be trusted.
    """

    def __init__(
        self,
        password: str | ScramPassThrough,
        clientNonce: str,
        userName: str = "",
        channelBinding: bytes | None = None,
        plus: bool = False,
    ) -> None:
        """
        @param password: The plaintext password, or a L{ScramPassThrough}:
            the C{ClientKey} a client proved, with the secret it was checked
            against. Then the proof is C{ClientKey XOR HMAC(StoredKey,
            AuthMessage)} and the server's signature is checked with the
            secret's C{ServerKey}, which works only while the server's salt
            and iteration count are the secret's (L{serverFirst} refuses
            others: the password was changed since).
        @param clientNonce: The client nonce; printable ASCII without commas
            (see L{makeNonce}). Injectable for tests.
        @param userName: The user name put in the client-first-message;
            PostgreSQL ignores it, and libpq sends it empty.
        @param channelBinding: The C{tls-server-end-point} data of the TLS
            connection (L{tlsServerEndPoint} of the server's certificate),
            or C{None} without TLS.
        @param plus: Use C{SCRAM-SHA-256-PLUS} (the server offered it) with
            C{channelBinding}. Without it but with C{channelBinding}, the
            GS2 flag is C{y}, as libpq sends it: a server that can bind
            then knows that its offer was tampered with.
        """
        if not clientNonce or not _isPrintable(clientNonce):
            raise ValueError("the client nonce must be printable ASCII without commas")
        if plus and channelBinding is None:
            raise ValueError("SCRAM-SHA-256-PLUS needs channel-binding data")
        if plus:
            assert channelBinding is not None
            self._gs2Header = _GS2_PLUS
            self._cbind = _cbindAttribute(_GS2_PLUS, channelBinding)
        else:
            flag = "n" if channelBinding is None else "y"
            self._gs2Header = f"{flag},,"
            self._cbind = _CBIND_FOR_FLAG[flag]
        self._password = password
        self._clientNonce = clientNonce
        self._clientFirstBare = f"n={_escapeUserName(userName)},r={clientNonce}"
        self._serverSignature = b""
        self._stage = _ClientStage.INITIAL

    def clientFirst(self) -> bytes:
        """
        The client-first-message (GS2 header C{n,,} and the bare message).
        """
        if self._stage is not _ClientStage.INITIAL:
            raise ProtocolViolation("SCRAM client-first-message already sent")
        self._stage = _ClientStage.AWAITING_SERVER_FIRST
        return (self._gs2Header + self._clientFirstBare).encode(_ENCODING, _ERRORS)

    def serverFirst(self, message: bytes) -> bytes:
        """
        Read the server-first-message and return the client-final-message.

        @raise ProtocolViolation: The message is malformed or out of order.
        @raise ScramError: The server's nonce does not extend ours, or it
            demands a mandatory extension.
        """
        if self._stage is not _ClientStage.AWAITING_SERVER_FIRST:
            raise ProtocolViolation("unexpected SCRAM server-first-message")
        self._stage = _ClientStage.FAILED
        serverFirst = _decode(message)
        parts = serverFirst.split(",")
        if parts[0].startswith("m="):
            raise ScramError("server requires an unsupported SCRAM extension")
        if len(parts) < 3:
            raise ProtocolViolation("malformed SCRAM message")
        _, nonce = _attribute(parts[0], "r")
        _, encodedSalt = _attribute(parts[1], "s")
        _, iterationText = _attribute(parts[2], "i")
        for extension in parts[3:]:
            _attribute(extension)
        if not _isPrintable(nonce):
            raise ProtocolViolation("malformed SCRAM message")
        if not (nonce.startswith(self._clientNonce) and len(nonce) > len(self._clientNonce)):
            raise ScramError("invalid SCRAM response (nonce mismatch)")
        salt = _b64decode(encodedSalt)
        if not (iterationText.isascii() and iterationText.isdigit()):
            raise ProtocolViolation("malformed SCRAM message")
        iterations = int(iterationText)
        if not 1 <= iterations <= MAX_ITERATIONS:
            raise ScramError(f"unacceptable SCRAM iteration count {iterations}")
        if isinstance(self._password, ScramPassThrough):
            secret = self._password.secret
            # Salt and iteration count are public; a mismatch means the
            # secret the client was checked against is no longer PostgreSQL's.
            if salt != secret.salt or iterations != secret.iterations:
                raise ScramError(
                    "PostgreSQL's SCRAM salt or iteration count differs from the verifier "
                    "the client was checked against (the password was changed?)"
                )
            clientKey = self._password.clientKey
            storedKey, serverKey = secret.storedKey, secret.serverKey
        else:
            clientKey, storedKey, serverKey = _clientKeys(self._password, salt, iterations)
        withoutProof = f"c={self._cbind},r={nonce}"
        authMessage = ",".join((self._clientFirstBare, serverFirst, withoutProof)).encode(
            _ENCODING, _ERRORS
        )
        proof = _xor(clientKey, _hmac(storedKey, authMessage))
        self._serverSignature = _hmac(serverKey, authMessage)
        self._stage = _ClientStage.AWAITING_SERVER_FINAL
        return f"{withoutProof},p={_b64encode(proof)}".encode("ascii")

    def serverFinal(self, message: bytes) -> None:
        """
        Read the server-final-message and check the server's signature.

        @raise ProtocolViolation: The message is malformed or out of order.
        @raise ScramError: The server reported an error, or its signature is
            wrong (it does not know the password).
        """
        if self._stage is not _ClientStage.AWAITING_SERVER_FINAL:
            raise ProtocolViolation("unexpected SCRAM server-final-message")
        self._stage = _ClientStage.FAILED
        parts = _decode(message).split(",")
        name, value = _attribute(parts[0])
        for extension in parts[1:]:
            _attribute(extension)
        if name == "e":
            raise ScramError(f"server reported SCRAM error {sanitize(value)!r}")
        if name != "v":
            raise ProtocolViolation("malformed SCRAM message")
        if not hmac.compare_digest(_b64decode(value), self._serverSignature):
            raise ScramError("incorrect server signature")
        self._stage = _ClientStage.VERIFIED

    @property
    def verified(self) -> bool:
        """
        Whether L{serverFinal} verified the server's signature.
        """
        return self._stage is _ClientStage.VERIFIED
