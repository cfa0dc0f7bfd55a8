# -*- test-case-name: tests.unit.test_auth_md5 -*-
"""
PostgreSQL's md5 password hashing, pure (no Twisted, no I/O).

PostgreSQL stores C{"md5" + md5hex(password + user)} and, for the md5
authentication method, the client answers a 4-byte salt with
C{"md5" + md5hex(md5hex(password + user) + salt)}.
"""

from __future__ import annotations

import hashlib

#: The prefix of every md5 password and md5 response.
MD5_PREFIX = "md5"
#: Length of the salt in an AuthenticationMD5Password request.
MD5_SALT_LENGTH = 4

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


def _bytes(text: str) -> bytes:
    # Passwords and user names are decoded from the wire with surrogateescape,
    # so any byte string the client sent is restored exactly.
    """
    C{text} as the bytes PostgreSQL hashes. Text decoded from the wire
    with C{surrogateescape} gets its original bytes back.
    """
    return text.encode(_ENCODING, _ERRORS)


def md5Secret(password: str, user: str) -> str:
    """
    The md5 secret PostgreSQL keeps in C{pg_authid}:
    C{"md5" + md5hex(password + user)}.
    """
    return MD5_PREFIX + hashlib.md5(_bytes(password) + _bytes(user)).hexdigest()


def md5Response(password: str, user: str, salt: bytes) -> str:
    """
    What a client sends in its PasswordMessage for an AuthenticationMD5Password
    request with C{salt}: C{"md5" + md5hex(md5hex(password + user) + salt)}.

    @raise ValueError: C{salt} is not 4 bytes long.
    """
    if len(salt) != MD5_SALT_LENGTH:
        raise ValueError(f"md5 salt must be {MD5_SALT_LENGTH} bytes, not {len(salt)}")
    return md5ResponseFromSecret(md5Secret(password, user), salt)


def md5ResponseFromSecret(secret: str, salt: bytes) -> str:
    """
    The same answer as L{md5Response}, from the md5 secret
    (C{"md5" + md5hex(password + user)}) rather than the password: md5
    needs no more, which is why an md5 hash is a password equivalent.

    @raise ValueError: C{salt} is not 4 bytes long.
    """
    if len(salt) != MD5_SALT_LENGTH:
        raise ValueError(f"md5 salt must be {MD5_SALT_LENGTH} bytes, not {len(salt)}")
    inner = secret[len(MD5_PREFIX) :]
    return MD5_PREFIX + hashlib.md5(inner.encode("ascii") + salt).hexdigest()
