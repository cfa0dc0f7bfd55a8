"""
Tests for L{pgtwist.config.verifiers}: stored secrets read as PostgreSQL reads
them, and kept out of representations.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.auth import _scram
from pgtwist.config.model import UserEntry
from pgtwist.config.verifiers import (
    Md5Verifier,
    ScramPassThrough,
    formatScramSecret,
    parseVerifier,
)

#: A SCRAM secret for the password "pencil" (RFC 7677's example password).
_SECRET = _scram.makeSecret("pencil", b"0123456789abcdef")


class ParseVerifierTests(SynchronousTestCase):
    """
    Tests for L{parseVerifier}.
    """

    def test_scramRoundTrip(self) -> None:
        """
        A SCRAM secret in PostgreSQL's text form reads back as the secret.
        """
        text = formatScramSecret(_SECRET)
        self.assertTrue(text.startswith("SCRAM-SHA-256$4096:"))
        self.assertEqual(parseVerifier(text), _SECRET)

    def test_md5(self) -> None:
        """
        C{md5} and 32 lowercase hex digits is an md5 verifier.
        """
        text = "md5" + "0123456789abcdef" * 2
        self.assertEqual(parseVerifier(text), Md5Verifier(text))

    def test_plaintext(self) -> None:
        """
        Anything else is a plaintext password (C{None}), as PostgreSQL's
        C{get_password_type} decides: wrong length, upper-case hex, other
        schemes, malformed SCRAM parts.
        """
        good = formatScramSecret(_SECRET)
        for text in [
            "",
            "secret",
            "md5" + "0" * 31,
            "md5" + "A" * 32,
            "md5" + "g" * 32,
            "SCRAM-SHA-1$4096:c2FsdA==$a:b",
            good.replace("4096", "0"),
            good.replace("4096", "x"),
            good.replace("4096", "99999999999"),
            good.replace("$", "#", 1),
            good[: good.rindex(":")],
            good[:-4],
            good.replace(":MDEy", ":!DEy"),
        ]:
            self.assertIsNone(parseVerifier(text), text)


class RepresentationTests(SynchronousTestCase):
    """
    No key material in C{repr}.
    """

    def test_noSecrets(self) -> None:
        """
        Verifiers, pass-through keys and user entries hide what they hold.
        """
        md5 = Md5Verifier("md5" + "ab" * 16)
        passThrough = ScramPassThrough(b"k" * 32, _SECRET)
        entry = UserEntry("alice", "pw", _SECRET)
        for value in (md5, passThrough, entry, _SECRET):
            text = repr(value)
            self.assertNotIn("ab" * 16, text)
            self.assertNotIn("kkkk", text)
            self.assertNotIn("'pw'", text)
            self.assertNotIn(formatScramSecret(_SECRET).split("$")[2], text)
