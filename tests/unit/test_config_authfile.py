"""
Tests for L{pgtwist.config.authfile}: PgBouncer's C{auth_file} format, and
the C{auth_file} main key.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.auth import _md5, _scram
from pgtwist.config.authfile import (
    formatAuthFile,
    formatAuthFileLine,
    parseAuthFile,
    readAuthFile,
)
from pgtwist.config.errors import ConfigError
from pgtwist.config.model import UserEntry
from pgtwist.config.verifiers import Md5Verifier, formatScramSecret
from tests.unit._configfiles import MINIMAL, FilesTestCase

SECRET = _scram.makeSecret("pw", b"0123456789abcdef")
SCRAM_TEXT = formatScramSecret(SECRET)
MD5_TEXT = _md5.md5Secret("pw", "bob")


class ParseTests(SynchronousTestCase):
    """
    Tests for L{parseAuthFile}.
    """

    def parse(self, *lines: str) -> dict[str, UserEntry]:
        """
        Parse C{lines} as C{auth.txt}.
        """
        return parseAuthFile(lines, "auth.txt")

    def error(self, *lines: str) -> ConfigError:
        """
        The error parsing C{lines} raises.
        """
        return self.assertRaises(ConfigError, self.parse, *lines)

    def test_kinds(self) -> None:
        """
        A SCRAM verifier and an md5 hash become verifiers; anything else is a
        plaintext password.
        """
        users = self.parse(
            f'"alice" "{SCRAM_TEXT}"',
            f'"bob" "{MD5_TEXT}"',
            '"carol" "plain secret"',
        )
        self.assertEqual(
            users,
            {
                "alice": UserEntry("alice", verifier=SECRET),
                "bob": UserEntry("bob", verifier=Md5Verifier(MD5_TEXT)),
                "carol": UserEntry("carol", "plain secret"),
            },
        )

    def test_commentsAndBlankLines(self) -> None:
        """
        Blank lines and lines starting with C{;} or C{#} are skipped; what
        follows the second field is ignored, as in PgBouncer.
        """
        users = self.parse(
            "; PgBouncer comment",
            "# another",
            "",
            "   ",
            '  "alice"   "pw"   "extra field" ignored',
        )
        self.assertEqual(users, {"alice": UserEntry("alice", "pw")})

    def test_doubledQuotes(self) -> None:
        """
        A double quote inside a field is written twice.
        """
        users = self.parse('"we""ird" "p""w"""')
        self.assertEqual(users, {'we"ird': UserEntry('we"ird', 'p"w"')})

    def test_emptySecret(self) -> None:
        """
        An empty secret gives a known user with neither password nor verifier.
        """
        self.assertEqual(self.parse('"alice" ""'), {"alice": UserEntry("alice")})

    def test_lastLineWins(self) -> None:
        """
        A user listed twice gets the last line's secret, with a warning.
        """
        warnings: list[str] = []
        users = parseAuthFile(['"alice" "one"', '"alice" "two"'], "auth.txt", warnings.append)
        self.assertEqual(users, {"alice": UserEntry("alice", "two")})
        self.assertEqual(
            warnings, ["auth.txt:2: user 'alice' is listed again (line 1): this line wins"]
        )

    def test_unquotedUser(self) -> None:
        """
        A line not starting with a quote is an error naming the file and line.
        """
        error = self.error('"alice" "pw"', "bob pw")
        self.assertEqual(str(error), 'auth.txt:2: expected "user" "secret", each in double quotes')

    def test_unterminated(self) -> None:
        """
        An unterminated field is an error.
        """
        self.assertEqual(str(self.error('"alice')), "auth.txt:1: unterminated quoted user name")
        self.assertEqual(str(self.error('"alice" "pw')), "auth.txt:1: unterminated quoted secret")

    def test_missingSecret(self) -> None:
        """
        A user name alone is an error.
        """
        self.assertEqual(
            str(self.error('"alice"')), "auth.txt:1: no quoted secret after the user name 'alice'"
        )
        self.assertEqual(
            str(self.error('"alice" pw')),
            "auth.txt:1: no quoted secret after the user name 'alice'",
        )

    def test_emptyUser(self) -> None:
        """
        An empty user name is an error.
        """
        self.assertEqual(str(self.error('"" "pw"')), "auth.txt:1: empty user name")

    def test_tooLong(self) -> None:
        """
        PgBouncer's limits on the lengths of the fields hold.
        """
        self.assertIn("user name too long", str(self.error(f'"{"u" * 128}" "pw"')))
        self.assertIn("too long", str(self.error(f'"alice" "{"p" * 2048}"')))

    def test_errorHidesSecret(self) -> None:
        """
        An error never quotes a secret.
        """
        error = self.error('"alice" "hunter2')
        self.assertNotIn("hunter2", str(error))

    def test_badVerifierIsPlaintext(self) -> None:
        """
        Text that is almost a verifier (PostgreSQL's get_password_type says
        plaintext) is a plaintext password.
        """
        users = self.parse('"alice" "SCRAM-SHA-256$4096:bad"', '"bob" "md5xyz"')
        self.assertEqual(users["alice"].password, "SCRAM-SHA-256$4096:bad")
        self.assertEqual(users["bob"].password, "md5xyz")


class FormatTests(SynchronousTestCase):
    """
    Tests for L{formatAuthFileLine} and L{formatAuthFile}.
    """

    def test_roundTrip(self) -> None:
        """
        What is written reads back the same.
        """
        secrets = {"alice": SCRAM_TEXT, 'we"ird': 'p"w', "carol": "plain"}
        users = parseAuthFile(formatAuthFile(secrets).splitlines(), "x")
        self.assertEqual(list(users), list(secrets))
        self.assertEqual(users["alice"].verifier, SECRET)
        self.assertEqual(users['we"ird'].password, 'p"w')

    def test_lineBreakRefused(self) -> None:
        """
        A value with a line break cannot be written.
        """
        self.assertRaises(ValueError, formatAuthFileLine, "alice", "a\nb")


class ReadTests(FilesTestCase):
    """
    Tests for L{readAuthFile} and the C{auth_file} main key.
    """

    def test_groupReadableWarns(self) -> None:
        """
        A file group or others may read is read, with a warning.
        """
        path = self.write("auth.txt", '"alice" "pw"\n')
        os.chmod(path, 0o644)
        users = readAuthFile(path, self.warnings.append)
        self.assertEqual(users, {"alice": UserEntry("alice", "pw")})
        self.assertEqual(len(self.warnings), 1)
        self.assertIn("mode 0644", self.warnings[0])
        self.assertIn("chmod 0600", self.warnings[0])

    def test_privateFileSilent(self) -> None:
        """
        A file of mode 0600 is read without a warning.
        """
        path = self.write("auth.txt", '"alice" "pw"\n')
        os.chmod(path, 0o600)
        readAuthFile(path, self.warnings.append)
        self.assertEqual(self.warnings, [])

    def test_missingFile(self) -> None:
        """
        A file that cannot be read is a L{ConfigError}.
        """
        self.assertRaises(ConfigError, readAuthFile, os.path.join(self.directory, "nope"))

    def test_mainKey(self) -> None:
        """
        The main key C{auth_file} names the file; its users land in
        L{Configuration.authFile}.
        """
        path = self.write("auth.txt", f'"alice" "{SCRAM_TEXT}"\n')
        os.chmod(path, 0o600)
        config = self.load(MINIMAL.replace("port = 6432\n", f"port = 6432\nauth_file = {path}\n"))
        self.assertEqual(config.main.authFile, path)
        self.assertEqual(config.authFile, {"alice": UserEntry("alice", verifier=SECRET)})
        self.assertEqual(config.lookupUser("alice"), UserEntry("alice", verifier=SECRET))

    def test_mainKeyBadLine(self) -> None:
        """
        A bad line of the file named by C{auth_file} stops loading with the
        file and line.
        """
        path = self.write("auth.txt", '"alice" "pw"\n"bob\n')
        error = self.loadError(
            MINIMAL.replace("port = 6432\n", f"port = 6432\nauth_file = {path}\n")
        )
        self.assertEqual((error.path, error.line), (path, 2))

    def test_noKey(self) -> None:
        """
        Without the key there are no C{auth_file} users.
        """
        self.assertEqual(self.load(MINIMAL).authFile, {})
