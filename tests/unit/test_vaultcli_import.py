"""
Tests for C{pgtwist-admin import-auth-file}: PgBouncer's C{auth_file} into
the vault (plaintext passwords) and a pgtwist C{auth_file} (verifiers); and
for C{import-pgagroal}: a pgagroal users file into a pgtwist vault.
"""

from __future__ import annotations

import json
import os
import stat

from pgtwist.auth import _md5, _scram
from pgtwist.config.authfile import parseAuthFile
from pgtwist.config.model import UserEntry
from pgtwist.config.vault import (
    isPgagroalVault,
    pgagroalMasterKeyPath,
    readUsersFile,
    writeUsersFile,
)
from pgtwist.config.verifiers import Md5Verifier, formatScramSecret
from tests.unit.test_vault_pgagroal import (
    CBC_MASTER_KEY,
    CBC_USERS,
    usersText,
    writePgagroalMasterKey,
)
from tests.unit.test_vaultcli import MASTER_KEY, _CliTestCase

SECRET = _scram.makeSecret("pw", b"0123456789abcdef")
SCRAM_TEXT = formatScramSecret(SECRET)
MD5_TEXT = _md5.md5Secret("pw", "bob")


class ImportAuthFileTests(_CliTestCase):
    """
    Tests for C{import-auth-file}.
    """

    def setUp(self) -> None:
        """
        A master key and PgBouncer's auth_file with every kind of entry.
        """
        super().setUp()
        self.createMasterKey()
        self.source = os.path.join(self.home, "userlist.txt")
        self.verifiers = os.path.join(self.home, "verifiers.txt")
        self.writeSource(
            "; PgBouncer's userlist.txt\n"
            f'"alice" "{SCRAM_TEXT}"\n'
            f'"bob" "{MD5_TEXT}"\n'
            '"carol" "plain ""quoted"" pw"\n'
            '"dave" ""\n'
        )

    def writeSource(self, text: str) -> None:
        """
        Write the auth_file to import, private.
        """
        with open(self.source, "w") as f:
            f.write(text)
        os.chmod(self.source, 0o600)

    def verifiersWritten(self) -> dict[str, UserEntry]:
        """
        The verifiers file read back.
        """
        with open(self.verifiers) as f:
            return parseAuthFile(f.read().splitlines(), self.verifiers)

    def test_import(self) -> None:
        """
        Plaintext passwords land in the vault, verifiers in the verifiers
        file (mode 0600), empty secrets are skipped; nothing secret is
        printed.
        """
        status, out, err = self.invoke(
            "-f", self.users, "--verifiers", self.verifiers, "import-auth-file", self.source
        )
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(
            readUsersFile(self.users, MASTER_KEY.encode()), {"carol": 'plain "quoted" pw'}
        )
        self.assertEqual(
            self.verifiersWritten(),
            {
                "alice": UserEntry("alice", verifier=SECRET),
                "bob": UserEntry("bob", verifier=Md5Verifier(MD5_TEXT)),
            },
        )
        self.assertEqual(stat.S_IMODE(os.stat(self.verifiers).st_mode), 0o600)
        self.assertIn("Imported 1 password(s)", out)
        self.assertIn(f"set auth_file = {self.verifiers}", out)
        self.assertIn("Skipped 1 user(s)", out)
        for secret in (SCRAM_TEXT, MD5_TEXT, "quoted"):
            self.assertNotIn(secret, out)

    def test_json(self) -> None:
        """
        C{-F json} lists the names of each kind.
        """
        status, out, _ = self.invoke(
            "-F",
            "json",
            "-f",
            self.users,
            "--verifiers",
            self.verifiers,
            "import-auth-file",
            self.source,
        )
        self.assertEqual(status, 0)
        output = json.loads(out)["command"]["output"]
        self.assertEqual(
            output, {"passwords": ["carol"], "verifiers": ["alice", "bob"], "skipped": ["dave"]}
        )

    def test_mergesExisting(self) -> None:
        """
        Existing vault users and verifiers stay; imported ones are added or
        replaced.
        """
        self.invoke("-f", self.users, "-U", "erin", "-P", "old", "user", "add")
        with open(self.verifiers, "w") as f:
            f.write(f'"frank" "{MD5_TEXT}"\n"alice" "{MD5_TEXT}"\n')
        status, _, err = self.invoke(
            "-f", self.users, "--verifiers", self.verifiers, "import-auth-file", self.source
        )
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(set(readUsersFile(self.users, MASTER_KEY.encode())), {"erin", "carol"})
        written = self.verifiersWritten()
        self.assertEqual(set(written), {"frank", "alice", "bob"})
        self.assertEqual(written["alice"].verifier, SECRET)

    def test_verifiersNeedTarget(self) -> None:
        """
        Without C{--verifiers}, a file with verifiers is refused, and
        nothing is written.
        """
        self.assertFails(
            ["-f", self.users, "import-auth-file", self.source], "give --verifiers FILE"
        )
        self.assertFalse(os.path.exists(self.users))

    def test_passwordsOnly(self) -> None:
        """
        A file of plaintext passwords needs no C{--verifiers}.
        """
        self.writeSource('"carol" "pw"\n')
        status, _, err = self.invoke("-f", self.users, "import-auth-file", self.source)
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(readUsersFile(self.users, MASTER_KEY.encode()), {"carol": "pw"})

    def test_badLine(self) -> None:
        """
        A malformed line is one error line with the file and line number.
        """
        self.writeSource('"carol" "pw"\nbroken\n')
        self.assertFails(["-f", self.users, "import-auth-file", self.source], f"{self.source}:2:")

    def test_readableSourceWarns(self) -> None:
        """
        A source file others can read is imported, with a warning.
        """
        os.chmod(self.source, 0o644)
        status, _, err = self.invoke(
            "-f", self.users, "--verifiers", self.verifiers, "import-auth-file", self.source
        )
        self.assertEqual(status, 0)
        self.assertIn("warning", err)
        self.assertIn("chmod 0600", err)

    def test_usage(self) -> None:
        """
        The command takes exactly one file.
        """
        self.assertFails(["import-auth-file"], "usage: pgtwist-admin import-auth-file FILE")


class ImportPgagroalTests(_CliTestCase):
    """
    Tests for C{import-pgagroal}: a pgagroal users file, as pgagroal wrote
    it, into a pgtwist vault.
    """

    def setUp(self) -> None:
        """
        pgagroal's 1.x master key and users file, and pgtwist's master key.
        """
        super().setUp()
        self.createMasterKey()
        writePgagroalMasterKey(CBC_MASTER_KEY, None, pgagroalMasterKeyPath())
        self.source = os.path.join(self.home, "pgagroal_users.conf")
        with open(self.source, "w") as f:
            f.write(usersText(CBC_USERS))

    def test_import(self) -> None:
        """
        Every password lands in the pgtwist vault, under pgtwist's master
        key, beside the users it already held.
        """
        writeUsersFile(self.users, {"zoe": "z", "alice": "old"}, MASTER_KEY.encode())
        status, out, err = self.invoke("-f", self.users, "import-pgagroal", self.source)
        self.assertEqual(status, 0, err)
        self.assertIn("Imported 3 password(s)", out)
        self.assertEqual(
            readUsersFile(self.users, MASTER_KEY.encode()),
            {
                "zoe": "z",
                "alice": "secret-of-alice",
                "bob": "bob pässwörd:#1",
                "carol": "sixteen-chars-pw",
            },
        )
        self.assertFalse(isPgagroalVault(self.users))

    def test_notPgagroal(self) -> None:
        """
        A pgtwist vault is not a source; nor is the target itself.
        """
        writeUsersFile(self.users, {"zoe": "z"}, MASTER_KEY.encode())
        self.assertFails(["-f", self.source, "import-pgagroal", self.users], "not a pgagroal")
        self.assertFails(["-f", self.source, "import-pgagroal", self.source], "-f")

    def test_editRefused(self) -> None:
        """
        C{user add} and C{user del} refuse a pgagroal file, pointing at the
        conversion; C{user ls} lists it.
        """
        self.assertFails(
            ["-f", self.source, "-U", "dave", "-P", "x", "user", "add"], "import-pgagroal"
        )
        self.assertFails(["-f", self.source, "-U", "bob", "user", "del"], "import-pgagroal")
        status, out, _ = self.invoke("-f", self.source, "user", "ls")
        self.assertEqual((status, out), (0, "alice\nbob\ncarol\n"))

    def test_usage(self) -> None:
        """
        The command takes exactly one file.
        """
        self.assertFails(["import-pgagroal"], "usage: pgtwist-admin import-pgagroal FILE")
