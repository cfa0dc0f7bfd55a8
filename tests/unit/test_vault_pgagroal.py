"""
Tests for L{pgtwist.config.vault} reading pgagroal's own users files and
master keys: pgagroal 1.x's AES-256-CBC and pgagroal 2.1's AES-256-GCM.

The vectors were made outside pgtwist (the openssl command line for 1.x, a
small libcrypto program calling OpenSSL as pgagroal 2.1 does for 2.1: see
C{fixtures/pgagroal_vault_vectors.sh}), so the decoder is checked against
OpenSSL rather than against itself.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config import vault
from pgtwist.config.vault import (
    MasterKey,
    VaultError,
    isPgagroalVault,
    pgagroalMasterKeyPath,
    readMasterKey,
    readMasterKeyFile,
    readUserNames,
    readUsersFile,
    writeMasterKey,
    writeUsersFile,
)
from tests.unit.test_vault import useTemporaryHome

#: pgagroal 1.x: the master key and C{openssl enc -aes-256-cbc -md sha1 -nosalt} values.
CBC_MASTER_KEY = b"pgagroal-master-key-1x"
CBC_USERS = {
    "alice": ("secret-of-alice", "hVcoon+YyA794l37QGNcKw=="),
    "bob": ("bob pässwörd:#1", "dkEYeHkrDyjTdLoQQOUEPt34qnjs3GnmeptuprFuMLU="),
    # Exactly one block: PKCS#7 adds a whole block of padding.
    "carol": ("sixteen-chars-pw", "CefstUs7h7YNTKuRkRJS4PzWxPRhSYXn0XkyhCfKMUs="),
}

#: pgagroal 2.1: the master key, its salt line, and AES-256-GCM values.
GCM_MASTER_KEY = b"pgagroal-master-key-21"
GCM_MASTER_SALT = bytes(range(16))
GCM_USERS = {
    "alice": (
        "secret-of-alice",
        "8OHSw7Sllod4aVpLPC0eD2a7xbq6c9DAG2zAyDU3a+wM3asbJWjvUA1i/CBYElR8WYpbdBN2B1XaZ/U=",
    ),
    "bob": (
        "bob pässwörd:#1",
        "ABEiM0RVZneImaq7zN3u/2T7xdb2+DwuEwLriZWnOcLdYUcyBG6CbtM2rMkaKzABs666lL9Djz//WDg7zw==",
    ),
}


def usersText(users: dict[str, tuple[str, str]]) -> str:
    """
    A users file as pgagroal writes it: C{user:base64} lines, no header.
    """
    return "".join(f"{name}:{value}\n" for name, (_, value) in users.items())


def writePgagroalMasterKey(key: bytes, salt: bytes | None, path: str) -> None:
    """
    Write a master key file as C{pgagroal-admin master-key} does: the key's
    base64, then (pgagroal 2.1) a newline and the salt's base64, mode 0600
    in a 0700 directory.
    """
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    os.chmod(os.path.dirname(path), 0o700)
    text = base64.b64encode(key).decode()
    if salt is not None:
        text += "\n" + base64.b64encode(salt).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class PgagroalVaultTests(SynchronousTestCase):
    """
    Tests for reading pgagroal users files with L{readUsersFile}.
    """

    def setUp(self) -> None:
        self.home = useTemporaryHome(self)
        self.path = os.path.join(self.home, "pgagroal_users.conf")
        self.pgagroalKey = pgagroalMasterKeyPath()

    def write(self, text: str) -> None:
        """
        Replace the users file with C{text}.
        """
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(text)

    def test_cbcVectors(self) -> None:
        """
        pgagroal 1.x values decrypt to what OpenSSL encrypted, including a
        non-ASCII password and one a whole block long.
        """
        self.write("# pgagroal users\n" + usersText(CBC_USERS))
        self.assertEqual(
            readUsersFile(self.path, CBC_MASTER_KEY),
            {name: password for name, (password, _) in CBC_USERS.items()},
        )

    def test_gcmVectors(self) -> None:
        """
        pgagroal 2.1 values decrypt with the master key and its salt line.
        """
        self.write(usersText(GCM_USERS))
        self.assertEqual(
            readUsersFile(self.path, MasterKey(GCM_MASTER_KEY, GCM_MASTER_SALT)),
            {name: password for name, (password, _) in GCM_USERS.items()},
        )

    def test_pgagroalMasterKeyFile(self) -> None:
        """
        Without a master key given, a pgagroal file is read with
        C{~/.pgagroal/master.key}, even when C{~/.pgtwist/master.key}
        exists; a salt line there means pgagroal 2.1's format.
        """
        writeMasterKey(b"pgtwist's own key")
        writePgagroalMasterKey(CBC_MASTER_KEY, None, self.pgagroalKey)
        self.write(usersText(CBC_USERS))
        self.assertEqual(readUsersFile(self.path)["alice"], "secret-of-alice")
        os.unlink(self.pgagroalKey)
        writePgagroalMasterKey(GCM_MASTER_KEY, GCM_MASTER_SALT, self.pgagroalKey)
        self.write(usersText(GCM_USERS))
        self.assertEqual(readUsersFile(self.path)["bob"], "bob pässwörd:#1")

    def test_pgtwistMasterKeyFallback(self) -> None:
        """
        With no C{~/.pgagroal/master.key}, a copy of it at
        C{~/.pgtwist/master.key} is used.
        """
        writePgagroalMasterKey(GCM_MASTER_KEY, GCM_MASTER_SALT, vault.masterKeyPath())
        self.write(usersText(GCM_USERS))
        self.assertEqual(readUsersFile(self.path)["alice"], "secret-of-alice")

    def test_noMasterKey(self) -> None:
        """
        With neither master key, the error names both places.
        """
        self.write(usersText(CBC_USERS))
        error = self.assertRaises(VaultError, readUsersFile, self.path)
        self.assertIn(self.pgagroalKey, error.message)
        self.assertIn(vault.masterKeyPath(), error.message)

    def test_pgtwistVaultIgnoresPgagroalKey(self) -> None:
        """
        A pgtwist vault is still read with C{~/.pgtwist/master.key} only.
        """
        writeMasterKey(b"pgtwist's own key")
        writePgagroalMasterKey(CBC_MASTER_KEY, None, self.pgagroalKey)
        writeUsersFile(self.path, {"alice": "a"})
        self.assertEqual(readUsersFile(self.path), {"alice": "a"})

    def test_wrongCbcKey(self) -> None:
        """
        A wrong 1.x master key is an error at the first entry's line, naming
        the format tried; never a garbled password.
        """
        self.write("\n" + usersText(CBC_USERS))
        error = self.assertRaises(VaultError, readUsersFile, self.path, b"not the key")
        self.assertEqual((error.path, error.line), (self.path, 2))
        self.assertIn("pgagroal 1.x AES-256-CBC", error.message)

    def test_cbcNotWholeBlocks(self) -> None:
        """
        A 1.x value that is not whole AES blocks does not decrypt.
        """
        self.write("alice:" + base64.b64encode(b"x" * 20).decode() + "\n")
        error = self.assertRaises(VaultError, readUsersFile, self.path, CBC_MASTER_KEY)
        self.assertEqual(error.line, 1)

    def test_gcmWrongSalt(self) -> None:
        """
        pgagroal 2.1 values do not decrypt with the wrong master salt.
        """
        self.write(usersText(GCM_USERS))
        error = self.assertRaises(
            VaultError, readUsersFile, self.path, MasterKey(GCM_MASTER_KEY, b"s" * 16)
        )
        self.assertIn("pgagroal 2.1 AES-256-GCM", error.message)
        self.assertEqual(error.line, 1)

    def test_gcmTampered(self) -> None:
        """
        A changed byte of a 2.1 value, or one too short to hold its salt,
        IV and tag, is refused at its line.
        """
        sealed = bytearray(base64.b64decode(GCM_USERS["bob"][1]))
        sealed[-20] ^= 1
        short = base64.b64encode(b"x" * 43).decode()
        key = MasterKey(GCM_MASTER_KEY, GCM_MASTER_SALT)
        for value in (base64.b64encode(bytes(sealed)).decode(), short):
            self.write(f"alice:{GCM_USERS['alice'][1]}\nbob:{value}\n")
            error = self.assertRaises(VaultError, readUsersFile, self.path, key)
            self.assertEqual(error.line, 2)

    def test_gcmKeyWithoutSalt(self) -> None:
        """
        A 2.1 file read with a key that has no salt line is tried as 1.x
        and refused.
        """
        self.write(usersText(GCM_USERS))
        error = self.assertRaises(VaultError, readUsersFile, self.path, GCM_MASTER_KEY)
        self.assertIn("without a salt line", error.message)

    def test_slowDerivationOnce(self) -> None:
        """
        pgagroal 2.1's 600000-iteration step runs once for the same master
        key and salt, however many files and users are read.
        """
        calls: list[int] = []
        real = hashlib.pbkdf2_hmac

        def counting(name: str, password: bytes, salt: bytes, rounds: int, *args: Any) -> bytes:
            calls.append(rounds)
            return real(name, password, salt, rounds, *args)

        self.patch(vault.hashlib, "pbkdf2_hmac", counting)
        self.patch(vault, "_derivedPgagroalKey", [])
        self.write(usersText(GCM_USERS))
        key = MasterKey(GCM_MASTER_KEY, GCM_MASTER_SALT)
        readUsersFile(self.path, key)
        readUsersFile(self.path, key)
        self.assertEqual(calls.count(vault.PGAGROAL_PBKDF2_ITERATIONS), 1)
        self.assertEqual(calls.count(1), 4)

    def test_namesAndKind(self) -> None:
        """
        L{readUserNames} lists a pgagroal file's users without a key, and
        L{isPgagroalVault} tells it from a pgtwist vault.
        """
        self.write("# comment\n\n" + usersText(CBC_USERS))
        self.assertEqual(readUserNames(self.path), ["alice", "bob", "carol"])
        self.assertTrue(isPgagroalVault(self.path))
        writeUsersFile(self.path, {"alice": "a"}, b"k")
        self.assertFalse(isPgagroalVault(self.path))
        writeUsersFile(self.path, {}, b"k")
        self.assertFalse(isPgagroalVault(self.path))

    def test_headerAfterEntries(self) -> None:
        """
        A pgtwist header after entries is refused at its line.
        """
        writeUsersFile(self.path, {}, b"k")
        with open(self.path, encoding="utf-8") as f:
            header = f.read().strip()
        self.write(usersText(CBC_USERS) + header + "\n")
        error = self.assertRaises(VaultError, readUsersFile, self.path, CBC_MASTER_KEY)
        self.assertEqual(error.line, 4)
        self.assertIn("after user entries", error.message)


class PgagroalMasterKeyFileTests(SynchronousTestCase):
    """
    Tests for L{readMasterKeyFile} with pgagroal's master key files.
    """

    def setUp(self) -> None:
        useTemporaryHome(self)
        self.path = pgagroalMasterKeyPath()

    def test_path(self) -> None:
        """
        pgagroal's master key is C{~/.pgagroal/master.key}.
        """
        self.assertEqual(self.path, os.path.join(os.environ["HOME"], ".pgagroal", "master.key"))

    def test_oneLine(self) -> None:
        """
        A 1.x master key file has no salt.
        """
        writePgagroalMasterKey(CBC_MASTER_KEY, None, self.path)
        self.assertEqual(readMasterKeyFile(self.path), MasterKey(CBC_MASTER_KEY, None, self.path))

    def test_saltLine(self) -> None:
        """
        A 2.1 master key file's second line is the salt; L{readMasterKey}
        gives the key alone.
        """
        writePgagroalMasterKey(GCM_MASTER_KEY, GCM_MASTER_SALT, self.path)
        found = readMasterKeyFile(self.path)
        self.assertEqual((found.key, found.salt), (GCM_MASTER_KEY, GCM_MASTER_SALT))
        self.assertEqual(readMasterKey(self.path), GCM_MASTER_KEY)
        self.assertNotIn("pgagroal-master-key", repr(found))

    def test_badSalt(self) -> None:
        """
        A salt line that is not 16 bytes of base64, or a third line, is refused.
        """
        for salt in (b"short", b"x" * 17):
            writePgagroalMasterKey(GCM_MASTER_KEY, salt, self.path)
            error = self.assertRaises(VaultError, readMasterKeyFile, self.path)
            self.assertIn("16 bytes", error.message)
        with open(self.path, "a") as f:
            f.write("\nQUJD")
        self.assertRaises(VaultError, readMasterKeyFile, self.path)

    def test_permissions(self) -> None:
        """
        pgagroal's master key must be private, as pgtwist's.
        """
        writePgagroalMasterKey(CBC_MASTER_KEY, None, self.path)
        os.chmod(self.path, 0o644)
        error = self.assertRaises(VaultError, readMasterKeyFile, self.path)
        self.assertIn("0600", error.message)
