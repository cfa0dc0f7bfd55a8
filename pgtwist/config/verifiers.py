# -*- test-case-name: tests.unit.test_config_verifiers -*-
"""
Password verifiers, and the credentials a verified client leaves behind.

A I{verifier} is what PostgreSQL keeps in C{pg_authid.rolpassword} and what
PgBouncer's C{auth_file} and C{auth_query} hand over: a SCRAM secret
(C{SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>}) or an md5
hash (C{md5} and 32 hex digits). A verifier is enough to check a client;
pgtwist needs no plaintext password for it.

To log into PostgreSQL without a plaintext password, pgtwist uses what a
client proved (I{pass-through}): the SCRAM C{ClientKey} recovered from the
client's proof (L{ScramPassThrough}), or the md5 hash itself
(L{Md5Verifier}), which is all PostgreSQL's md5 method asks for.

It is configuration data (the users sources hold it), so it lives below
L{pgtwist.auth}, which checks and uses it. Everything here keeps key
material out of C{repr}: these values are
password equivalents.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
import sys
from dataclasses import dataclass
from typing import Union

from pgtwist._compat import SLOTS

__all__ = [
    "BackendCredential",
    "Md5Verifier",
    "ScramPassThrough",
    "ScramSecret",
    "Verifier",
    "formatScramSecret",
    "parseVerifier",
]

#: PostgreSQL's name for the SCRAM secret's scheme.
SCRAM_SCHEME = "SCRAM-SHA-256"
#: The prefix of an md5 secret.
MD5_PREFIX = "md5"
#: Length of SCRAM-SHA-256's StoredKey, ServerKey and ClientKey.
KEY_LENGTH = 32
#: The most iterations pgtwist accepts in a SCRAM secret or challenge.
MAX_ITERATIONS = 10_000_000
_MD5_LENGTH = len(MD5_PREFIX) + 32
_HEX = frozenset(string.hexdigits.lower())


@dataclass(frozen=True, **SLOTS)
class ScramSecret:
    """
    What a SCRAM server needs to verify a client (PostgreSQL's
    C{SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>}).
    """

    salt: bytes
    iterations: int
    storedKey: bytes
    serverKey: bytes

    def __repr__(self) -> str:
        """
        A representation without key material: the keys are password
        equivalents for SCRAM.
        """
        return f"ScramSecret(iterations={self.iterations}, salt=..., keys=***)"


@dataclass(frozen=True, **SLOTS)
class Md5Verifier:
    """
    PostgreSQL's md5 secret: C{"md5" + md5hex(password + user)}.

    It verifies an md5 response (and a cleartext password) and answers
    PostgreSQL's own md5 challenge, so it is a password equivalent for the
    md5 method.
    """

    hash: str

    def __repr__(self) -> str:
        """
        A representation without the hash.
        """
        return "Md5Verifier(***)"


#: A verifier of either kind.
Verifier = Union[ScramSecret, Md5Verifier]


@dataclass(frozen=True, **SLOTS)
class ScramPassThrough:
    """
    A SCRAM client's C{ClientKey}, recovered from a proof that verified
    against C{secret}: with it pgtwist answers PostgreSQL's SCRAM challenge
    for the same user, provided PostgreSQL's salt and iteration count are
    C{secret}'s (PostgreSQL's C{ServerKey} then verifies its signature).
    """

    clientKey: bytes
    secret: ScramSecret

    def __repr__(self) -> str:
        """
        A representation without key material.
        """
        return f"ScramPassThrough(iterations={self.secret.iterations}, keys=***)"


#: What pgtwist logs into PostgreSQL with: a plaintext password (the vault),
#: a recovered SCRAM ClientKey, or an md5 hash.
BackendCredential = Union[str, ScramPassThrough, Md5Verifier]


#: What C{base64.b64decode(..., validate=True)} accepts before decoding
#: before Python 3.11 (from 3.11 on, C{binascii}'s C{strict_mode}).
_BASE64 = re.compile("[A-Za-z0-9+/]*={0,2}")
_STRICT_BASE64 = sys.version_info >= (3, 11)


def _b64(text: str) -> bytes | None:
    """
    Strict base64, or C{None}: what C{base64.b64decode(..., validate=True)}
    accepts on this Python, without its Python layers (auth_query parses a
    verifier at every login).
    """
    try:
        if _STRICT_BASE64:
            return binascii.a2b_base64(text, strict_mode=True)  # type: ignore[call-arg,unused-ignore]
        if _BASE64.fullmatch(text) is None:
            return None
        return binascii.a2b_base64(text)
    except (binascii.Error, ValueError):
        return None


def _parseScram(text: str) -> ScramSecret | None:
    """
    PostgreSQL's C{parse_scram_secret}: the secret, or C{None} when C{text}
    is not one.
    """
    scheme, sep, rest = text.partition("$")
    if not sep or scheme != SCRAM_SCHEME:
        return None
    parameters, sep, keys = rest.partition("$")
    if not sep:
        return None
    iterations, sep, encodedSalt = parameters.partition(":")
    storedKey, sep2, serverKey = keys.partition(":")
    if not sep or not sep2 or not iterations.isdigit() or not iterations.isascii():
        return None
    count = int(iterations)
    salt = _b64(encodedSalt)
    stored = _b64(storedKey)
    server = _b64(serverKey)
    if not 0 < count <= MAX_ITERATIONS or not salt or stored is None or server is None:
        return None
    if len(stored) != KEY_LENGTH or len(server) != KEY_LENGTH:
        return None
    return ScramSecret(salt, count, stored, server)


def parseVerifier(text: str) -> Verifier | None:
    """
    Read a stored secret as PostgreSQL's C{get_password_type} does: an md5
    hash (C{md5} and 32 lowercase hex digits), a SCRAM secret, or neither
    (C{None}: a plaintext password, as PgBouncer's C{auth_file} allows).
    """
    if len(text) == _MD5_LENGTH and text.startswith(MD5_PREFIX):
        if all(c in _HEX for c in text[len(MD5_PREFIX) :]):
            return Md5Verifier(text)
    return _parseScram(text)


def formatScramSecret(secret: ScramSecret) -> str:
    """
    C{secret} as PostgreSQL writes it in C{pg_authid.rolpassword}.
    """

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return (
        f"{SCRAM_SCHEME}${secret.iterations}:{b64(secret.salt)}"
        f"${b64(secret.storedKey)}:{b64(secret.serverKey)}"
    )
