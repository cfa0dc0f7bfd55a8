"""
Tests for L{pgtwist.auth._md5}: PostgreSQL's md5 password hashing.
"""

from __future__ import annotations

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.auth._md5 import MD5_SALT_LENGTH, md5Response, md5Secret


class Md5SecretTests(SynchronousTestCase):
    """
    Tests for L{md5Secret}.
    """

    def test_knownValue(self) -> None:
        """
        The secret of user C{postgres} with password C{postgres} is the
        well-known C{md53175bce1d3201d16594cebf9d7eb3f9d}.
        """
        self.assertEqual(md5Secret("postgres", "postgres"), "md53175bce1d3201d16594cebf9d7eb3f9d")

    def test_passwordThenUser(self) -> None:
        """
        The password comes before the user name in the hashed string.
        """
        expected = "md5" + hashlib.md5(b"secretalice").hexdigest()
        self.assertEqual(md5Secret("secret", "alice"), expected)

    def test_utf8AndRawBytes(self) -> None:
        """
        Text is hashed as UTF-8; invalid UTF-8 decoded with surrogateescape
        is hashed as the original bytes.
        """
        self.assertEqual(
            md5Secret("p\u00e4ss", "\u00fcser"),
            "md5" + hashlib.md5("p\u00e4ss\u00fcser".encode()).hexdigest(),
        )
        raw = b"\xff\xfe".decode("utf-8", "surrogateescape")
        self.assertEqual(md5Secret(raw, "u"), "md5" + hashlib.md5(b"\xff\xfeu").hexdigest())


class Md5ResponseTests(SynchronousTestCase):
    """
    Tests for L{md5Response}.
    """

    def test_knownValue(self) -> None:
        """
        The response is C{"md5" + md5hex(md5hex(password + user) + salt)},
        computed here independently with hashlib.
        """
        salt = b"\x01\x02\x03\x04"
        inner = hashlib.md5(b"postgrespostgres").hexdigest().encode("ascii")
        expected = "md5" + hashlib.md5(inner + salt).hexdigest()
        self.assertEqual(md5Response("postgres", "postgres", salt), expected)
        self.assertEqual(len(expected), 35)

    def test_saltMatters(self) -> None:
        """
        Different salts give different responses.
        """
        self.assertNotEqual(
            md5Response("pw", "u", b"\x00\x00\x00\x00"), md5Response("pw", "u", b"\x00\x00\x00\x01")
        )

    def test_saltLength(self) -> None:
        """
        A salt of any length but 4 is refused.
        """
        self.assertEqual(MD5_SALT_LENGTH, 4)
        self.assertRaises(ValueError, md5Response, "pw", "u", b"abc")
        self.assertRaises(ValueError, md5Response, "pw", "u", b"abcde")
