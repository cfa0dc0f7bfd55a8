"""
Tests for L{pgtwist.config.vault}: the master key and the encrypted users files.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config import vault
from pgtwist.config.vault import (
    MAX_LINE_LENGTH,
    VaultError,
    masterKeyPath,
    readMasterKey,
    readUserNames,
    readUsersFile,
    validateUserName,
    writeMasterKey,
    writeUsersFile,
)

MASTER_KEY = b"correct horse battery staple"


def useTemporaryHome(case: SynchronousTestCase) -> str:
    """
    Point C{$HOME} at a fresh private directory for the duration of C{case}.

    @return: The new home directory.
    """
    home = tempfile.mkdtemp(prefix="pgtwist-vault-")
    case.addCleanup(shutil.rmtree, home, True)
    old = os.environ.get("HOME")

    def restore() -> None:
        if old is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old

    case.addCleanup(restore)
    os.environ["HOME"] = home
    return home


def mode(path: str) -> int:
    """
    The permission bits of C{path}.
    """
    return stat.S_IMODE(os.stat(path).st_mode)


class VaultErrorTests(SynchronousTestCase):
    """
    Tests for L{VaultError}'s attributes and rendering.
    """

    def test_pathAndLine(self) -> None:
        """
        With a path and a line the error reads C{path:line: message}, as
        compilers and L{pgtwist.config} errors do.
        """
        error = VaultError("bad line", "users.conf", 7)
        self.assertEqual(str(error), "users.conf:7: bad line")
        self.assertEqual((error.message, error.path, error.line), ("bad line", "users.conf", 7))

    def test_pathOnly(self) -> None:
        """
        Without a line number the error reads C{path: message}.
        """
        self.assertEqual(str(VaultError("gone", "users.conf")), "users.conf: gone")

    def test_messageOnly(self) -> None:
        """
        Without a path the error is just its message.
        """
        error = VaultError("empty user name")
        self.assertEqual(str(error), "empty user name")
        self.assertIsNone(error.path)
        self.assertIsNone(error.line)


class MasterKeyTests(SynchronousTestCase):
    """
    Tests for L{masterKeyPath}, L{readMasterKey} and L{writeMasterKey}.
    """

    def setUp(self) -> None:
        self.home = useTemporaryHome(self)
        self.keyDirectory = os.path.join(self.home, ".pgtwist")
        self.keyPath = os.path.join(self.keyDirectory, "master.key")

    def test_pathFollowsHome(self) -> None:
        """
        The master key lives in C{~/.pgtwist/master.key}, with C{~} read
        from C{$HOME} at call time.
        """
        self.assertEqual(masterKeyPath(), self.keyPath)
        other = useTemporaryHome(self)
        self.assertEqual(masterKeyPath(), os.path.join(other, ".pgtwist", "master.key"))

    def test_roundTrip(self) -> None:
        """
        A written key reads back unchanged; the file holds its base64.
        """
        writeMasterKey(MASTER_KEY)
        self.assertEqual(readMasterKey(), MASTER_KEY)
        with open(self.keyPath, "rb") as f:
            self.assertEqual(f.read(), base64.b64encode(MASTER_KEY) + b"\n")

    def test_explicitPath(self) -> None:
        """
        An explicit path is used instead of the home directory's.
        """
        path = os.path.join(self.home, "keys", "other.key")
        writeMasterKey(b"another key", path)
        self.assertEqual(readMasterKey(path), b"another key")
        self.assertFalse(os.path.exists(self.keyPath))

    def test_permissionsDespiteUmask(self) -> None:
        """
        The directory is created C{0700} and the file C{0600} even under a
        permissive umask.
        """
        old = os.umask(0)
        try:
            writeMasterKey(MASTER_KEY)
        finally:
            os.umask(old)
        self.assertEqual(mode(self.keyDirectory), 0o700)
        self.assertEqual(mode(self.keyPath), 0o600)
        self.assertEqual(os.listdir(self.keyDirectory), ["master.key"])

    def test_refusesToOverwrite(self) -> None:
        """
        An existing master key is not replaced by default: every vault
        sealed under it would become unreadable.
        """
        writeMasterKey(MASTER_KEY)
        error = self.assertRaises(VaultError, writeMasterKey, b"something else")
        self.assertEqual(error.message, "Master key already exists")
        self.assertEqual(error.path, self.keyPath)
        self.assertEqual(readMasterKey(), MASTER_KEY)

    def test_replace(self) -> None:
        """
        C{replace=True} overwrites the key, keeping the file private.
        """
        writeMasterKey(MASTER_KEY)
        writeMasterKey(b"something else", replace=True)
        self.assertEqual(readMasterKey(), b"something else")
        self.assertEqual(mode(self.keyPath), 0o600)
        self.assertEqual(os.listdir(self.keyDirectory), ["master.key"])

    def test_emptyKeyRefused(self) -> None:
        """
        An empty key is refused and nothing is written.
        """
        self.assertRaises(VaultError, writeMasterKey, b"")
        self.assertFalse(os.path.exists(self.keyPath))

    def test_missing(self) -> None:
        """
        A missing master key is a L{VaultError} telling how to create one.
        """
        error = self.assertRaises(VaultError, readMasterKey)
        self.assertIn("pgtwist-admin master-key", error.message)
        os.mkdir(self.keyDirectory, 0o700)
        error = self.assertRaises(VaultError, readMasterKey)
        self.assertIn("pgtwist-admin master-key", error.message)
        self.assertEqual(error.path, self.keyPath)

    def test_openDirectoryRefused(self) -> None:
        """
        A key directory the group or others can use is refused on read and
        on write, as pgagroal refuses C{~/.pgagroal}.
        """
        writeMasterKey(MASTER_KEY)
        for bad in (0o750, 0o701, 0o755):
            os.chmod(self.keyDirectory, bad)
            error = self.assertRaises(VaultError, readMasterKey)
            self.assertIn("0700", error.message)
        self.assertRaises(VaultError, writeMasterKey, b"x" * 8, replace=True)
        os.chmod(self.keyDirectory, 0o700)
        self.assertEqual(readMasterKey(), MASTER_KEY)

    def test_openFileRefused(self) -> None:
        """
        A key file the group or others can read is refused.
        """
        writeMasterKey(MASTER_KEY)
        for bad in (0o640, 0o604, 0o644):
            os.chmod(self.keyPath, bad)
            error = self.assertRaises(VaultError, readMasterKey)
            self.assertIn("0600", error.message)
            self.assertEqual(error.path, self.keyPath)

    def test_notAFile(self) -> None:
        """
        A directory or a FIFO where the key file should be is refused, and
        the FIFO does not hang the reader.
        """
        os.makedirs(self.keyPath, 0o700)
        os.chmod(self.keyDirectory, 0o700)
        os.chmod(self.keyPath, 0o700)
        error = self.assertRaises(VaultError, readMasterKey)
        self.assertIn("not a regular file", error.message)
        os.rmdir(self.keyPath)
        os.mkfifo(self.keyPath, 0o600)
        error = self.assertRaises(VaultError, readMasterKey)
        self.assertIn("not a regular file", error.message)

    def test_garbage(self) -> None:
        """
        A key file that is not base64, or is empty, is a L{VaultError}.
        """
        writeMasterKey(MASTER_KEY)
        for content in (b"not base64 !!!\n", b"\n", b""):
            with open(self.keyPath, "wb") as f:
                f.write(content)
            self.assertRaises(VaultError, readMasterKey)


class UserNameTests(SynchronousTestCase):
    """
    Tests for L{validateUserName}.
    """

    def test_valid(self) -> None:
        """
        Ordinary and unusual-but-storable names pass.
        """
        for name in ("alice", "app_user", "Ünïcode", "with space", "a@b.c", "x#y"):
            validateUserName(name)

    def test_invalid(self) -> None:
        """
        Names that cannot survive a C{user:value} line are refused.
        """
        for name in ("", "a:b", "tab\there", "new\nline", "#comment", " lead", "trail ", "\x7f"):
            self.assertRaises(VaultError, validateUserName, name)


class UsersFileTests(SynchronousTestCase):
    """
    Tests for L{readUsersFile}, L{writeUsersFile} and L{readUserNames}.
    """

    def setUp(self) -> None:
        self.home = useTemporaryHome(self)
        self.path = os.path.join(self.home, "pgtwist_users.conf")

    def lines(self) -> list[str]:
        """
        The lines of the users file.
        """
        with open(self.path, encoding="utf-8") as f:
            return f.read().splitlines()

    def writeRaw(self, text: str) -> None:
        """
        Replace the users file with C{text}.
        """
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(text)

    def assertVaultError(self, line: int | None, fragment: str) -> VaultError:
        """
        Reading the users file fails at C{line} with C{fragment} in the message.
        """
        error: VaultError = self.assertRaises(VaultError, readUsersFile, self.path, MASTER_KEY)
        self.assertEqual(error.path, self.path)
        self.assertEqual(error.line, line)
        self.assertIn(fragment, error.message)
        return error

    def test_roundTrip(self) -> None:
        """
        Passwords read back exactly, in the order written, including
        non-ASCII and punctuation-heavy ones.
        """
        users = {"zed": "z-pass", "alice": "s3cr:et#;'\"", "bob": "pässwörd ✓", "empty": ""}
        writeUsersFile(self.path, users, MASTER_KEY)
        result = readUsersFile(self.path, MASTER_KEY)
        self.assertEqual(result, users)
        self.assertEqual(list(result), ["zed", "alice", "bob", "empty"])
        self.assertEqual(readUserNames(self.path), ["zed", "alice", "bob", "empty"])

    def test_format(self) -> None:
        """
        The file is a header comment carrying a 16-byte salt, then one
        C{user:base64} line per user; no password appears in clear, and the
        file is private.
        """
        writeUsersFile(self.path, {"alice": "plain-secret"}, MASTER_KEY)
        header, entry = self.lines()
        words = header.split()
        self.assertEqual(words[:4], ["#", "pgtwist-vault", "v1", "scrypt"])
        self.assertTrue(words[4].startswith("salt="))
        self.assertEqual(len(base64.b64decode(words[4][len("salt=") :])), 16)
        user, value = entry.split(":")
        self.assertEqual(user, "alice")
        sealed = base64.b64decode(value, validate=True)
        self.assertEqual(len(sealed), 12 + len("plain-secret") + 16)
        with open(self.path, "rb") as f:
            self.assertNotIn(b"plain-secret", f.read())
        self.assertEqual(mode(self.path), 0o600)

    def test_masterKeyFromHome(self) -> None:
        """
        Without an explicit master key, the one in C{~/.pgtwist} is used.
        """
        writeMasterKey(MASTER_KEY)
        writeUsersFile(self.path, {"alice": "a"})
        self.assertEqual(readUsersFile(self.path), {"alice": "a"})
        self.assertEqual(readUsersFile(self.path, MASTER_KEY), {"alice": "a"})

    def test_emptyNeedsNoMasterKey(self) -> None:
        """
        A users file without users is written and read without a master
        key (none exists in this home).
        """
        writeUsersFile(self.path, {})
        self.assertEqual(readUsersFile(self.path), {})
        self.writeRaw("\n# just a comment\n\n")
        self.assertEqual(readUsersFile(self.path), {})

    def test_namesNeedNoMasterKey(self) -> None:
        """
        L{readUserNames} lists users without reading the master key.
        """
        writeUsersFile(self.path, {"alice": "a", "bob": "b"}, MASTER_KEY)
        self.assertEqual(readUserNames(self.path), ["alice", "bob"])

    def test_saltKept(self) -> None:
        """
        Rewriting a file keeps its salt; a new file gets a different one.
        """
        writeUsersFile(self.path, {"alice": "a"}, MASTER_KEY)
        header = self.lines()[0]
        writeUsersFile(self.path, {"alice": "a", "bob": "b"}, MASTER_KEY)
        self.assertEqual(self.lines()[0], header)
        other = os.path.join(self.home, "other.conf")
        writeUsersFile(other, {"alice": "a"}, MASTER_KEY)
        with open(other, encoding="utf-8") as f:
            self.assertNotEqual(f.readline().rstrip("\n"), header)

    def test_freshNonces(self) -> None:
        """
        The same password written twice gives different values: each value
        has its own nonce.
        """
        writeUsersFile(self.path, {"alice": "same", "bob": "same"}, MASTER_KEY)
        first = [line.split(":")[1] for line in self.lines()[1:]]
        self.assertNotEqual(first[0], first[1])
        writeUsersFile(self.path, {"alice": "same", "bob": "same"}, MASTER_KEY)
        second = [line.split(":")[1] for line in self.lines()[1:]]
        self.assertNotEqual(first, second)

    def test_keyDerivedOncePerRead(self) -> None:
        """
        scrypt runs once per file read or write, not once per user.
        """
        calls: list[bytes] = []
        derive = vault._deriveKey

        def counting(masterKey: bytes, salt: bytes) -> bytes:
            calls.append(salt)
            return derive(masterKey, salt)

        self.patch(vault, "_deriveKey", counting)
        users = {f"user{i}": f"password{i}" for i in range(10)}
        writeUsersFile(self.path, users, MASTER_KEY)
        self.assertEqual(len(calls), 1)
        self.assertEqual(readUsersFile(self.path, MASTER_KEY), users)
        self.assertEqual(len(calls), 2)

    def test_wrongMasterKey(self) -> None:
        """
        A different master key gives a clear error naming the first user
        and its line, not a traceback from the cipher.
        """
        writeUsersFile(self.path, {"alice": "secret-a", "bob": "secret-b"}, MASTER_KEY)
        error = self.assertRaises(VaultError, readUsersFile, self.path, b"wrong master key")
        self.assertEqual(
            error.message, "cannot decrypt password of user 'alice': wrong master key?"
        )
        self.assertEqual(str(error), f"{self.path}:2: {error.message}")
        self.assertNotIn("secret", str(error))

    def test_tamperedCiphertext(self) -> None:
        """
        Flipping one bit of a stored value makes that entry fail to decrypt.
        """
        writeUsersFile(self.path, {"alice": "secret-a", "bob": "secret-b"}, MASTER_KEY)
        header, alice, bob = self.lines()
        sealed = bytearray(base64.b64decode(bob.split(":")[1]))
        sealed[15] ^= 0x01
        tampered = "bob:" + base64.b64encode(bytes(sealed)).decode()
        self.writeRaw("\n".join([header, alice, tampered]) + "\n")
        self.assertVaultError(3, "cannot decrypt password of user 'bob'")

    def test_tamperedNonce(self) -> None:
        """
        Changing the nonce also makes the entry fail to decrypt.
        """
        writeUsersFile(self.path, {"alice": "secret-a"}, MASTER_KEY)
        header, alice = self.lines()
        sealed = bytearray(base64.b64decode(alice.split(":")[1]))
        sealed[0] ^= 0x80
        self.writeRaw(f"{header}\nalice:{base64.b64encode(bytes(sealed)).decode()}\n")
        self.assertVaultError(2, "wrong master key?")

    def test_swappedEntriesRejected(self) -> None:
        """
        A value moved onto another user's line does not decrypt: the user
        name is the AEAD associated data.
        """
        writeUsersFile(self.path, {"alice": "secret-a", "bob": "secret-b"}, MASTER_KEY)
        header, alice, bob = self.lines()
        aliceValue, bobValue = alice.split(":")[1], bob.split(":")[1]
        self.writeRaw(f"{header}\nalice:{bobValue}\nbob:{aliceValue}\n")
        self.assertVaultError(2, "cannot decrypt password of user 'alice'")
        self.writeRaw(f"{header}\nbob:{aliceValue}\n")
        self.assertVaultError(2, "cannot decrypt password of user 'bob'")

    def test_commentsBlankLinesAndCRLF(self) -> None:
        """
        Blank lines, C{#} comments anywhere and CRLF line ends are accepted.
        """
        writeUsersFile(self.path, {"alice": "a", "bob": "b"}, MASTER_KEY)
        header, alice, bob = self.lines()
        text = f"# leading comment\n\n{header}\n  # indented comment\n\n{alice}\n\n{bob}\n\n"
        self.writeRaw(text.replace("\n", "\r\n"))
        self.assertEqual(readUsersFile(self.path, MASTER_KEY), {"alice": "a", "bob": "b"})

    def test_malformedLines(self) -> None:
        """
        Each kind of malformed entry is reported with its line number.
        """
        writeUsersFile(self.path, {"alice": "a"}, MASTER_KEY)
        header, alice = self.lines()
        cases = [
            ("no colon here", "expected 'user:password'"),
            (":QUJD", "empty user name"),
            ("bob:not base64!", "not valid base64"),
            ("bob:" + base64.b64encode(b"short").decode(), "too short"),
            ("bob :" + alice.split(":")[1], "white space"),
            (alice, "duplicate user 'alice' (first on line 3)"),
            ("# pgtwist-vault v2 scrypt salt=AAAA", "unsupported vault header"),
            (header, "duplicate vault header"),
        ]
        for bad, fragment in cases:
            self.writeRaw(f"{header}\n\n{alice}\n{bad}\n")
            self.assertVaultError(4, fragment)

    def test_badHeaders(self) -> None:
        """
        A header with the wrong version, KDF or salt is refused at its line.
        """
        salt16 = base64.b64encode(b"s" * 16).decode()
        cases = [
            (f"# pgtwist-vault v1 pbkdf2 salt={salt16}", "unsupported vault header"),
            (f"# pgtwist-vault v1 scrypt pepper={salt16}", "unsupported vault header"),
            ("# pgtwist-vault v1 scrypt salt=!!!", "not valid base64"),
            ("# pgtwist-vault v1 scrypt salt=AAAA", "must be 16 bytes"),
            ("# pgtwist-vault", "unsupported vault header"),
        ]
        for bad, fragment in cases:
            self.writeRaw(f"\n{bad}\n")
            self.assertVaultError(2, fragment)

    def test_entryBeforeHeader(self) -> None:
        """
        Entries with no header before them are a pgagroal users file (see
        C{test_vault_pgagroal}): read as pgagroal's AES-CBC, which values
        that are not fail at their line.
        """
        self.writeRaw("# pgagroal users\nalice:" + base64.b64encode(b"x" * 32).decode() + "\n")
        self.assertVaultError(2, "pgagroal 1.x")

    def test_longLine(self) -> None:
        """
        A line longer than L{MAX_LINE_LENGTH} characters is refused, even
        in a comment.
        """
        self.writeRaw("# ok\n#" + "x" * MAX_LINE_LENGTH + "\n")
        self.assertVaultError(2, str(MAX_LINE_LENGTH))
        self.writeRaw("#" + "x" * (MAX_LINE_LENGTH - 1) + "\n")
        self.assertEqual(readUsersFile(self.path, MASTER_KEY), {})

    def test_notUTF8(self) -> None:
        """
        A line that is not UTF-8 is refused at its line.
        """
        with open(self.path, "wb") as f:
            f.write(b"# fine\n\n# caf\xe9\n")
        self.assertVaultError(3, "UTF-8")

    def test_missingFile(self) -> None:
        """
        A missing users file is a L{VaultError} naming the file.
        """
        error = self.assertRaises(VaultError, readUsersFile, self.path, MASTER_KEY)
        self.assertEqual(error.path, self.path)
        self.assertIsNone(error.line)
        self.assertRaises(VaultError, readUserNames, self.path)

    def test_badUserNameNotWritten(self) -> None:
        """
        A user name that cannot be stored is refused and the existing file
        is left as it was.
        """
        writeUsersFile(self.path, {"alice": "a"}, MASTER_KEY)
        before = self.lines()
        error = self.assertRaises(
            VaultError, writeUsersFile, self.path, {"alice": "a", "b:c": "x"}, MASTER_KEY
        )
        self.assertEqual(error.path, self.path)
        self.assertEqual(self.lines(), before)

    def test_tooLongPasswordNotWritten(self) -> None:
        """
        A password whose line would exceed L{MAX_LINE_LENGTH} is refused,
        the file is untouched, and no temporary file is left behind.
        """
        writeUsersFile(self.path, {"alice": "a"}, MASTER_KEY)
        before = self.lines()
        error = self.assertRaises(
            VaultError, writeUsersFile, self.path, {"bob": "x" * MAX_LINE_LENGTH}, MASTER_KEY
        )
        self.assertIn("too long", error.message)
        self.assertNotIn("xxx", str(error))
        self.assertEqual(self.lines(), before)
        self.assertEqual(sorted(os.listdir(self.home)), ["pgtwist_users.conf"])

    def test_longestPasswordFits(self) -> None:
        """
        A password that just fits a line round-trips.
        """
        # base64 of 12 + n + 16 bytes; 3 bytes -> 4 characters.
        n = (MAX_LINE_LENGTH - len("u:")) // 4 * 3 - 28
        writeUsersFile(self.path, {"u": "p" * n}, MASTER_KEY)
        self.assertEqual(readUsersFile(self.path, MASTER_KEY), {"u": "p" * n})

    def test_noTemporaryFilesLeft(self) -> None:
        """
        A successful write leaves only the users file in its directory.
        """
        writeUsersFile(self.path, {"alice": "a"}, MASTER_KEY)
        writeUsersFile(self.path, {"alice": "b"}, MASTER_KEY)
        self.assertEqual(os.listdir(self.home), ["pgtwist_users.conf"])

    def test_unwritableDirectory(self) -> None:
        """
        A users file in a missing directory cannot be written: a
        L{VaultError}, not an L{OSError}.
        """
        path = os.path.join(self.home, "missing", "users.conf")
        error = self.assertRaises(VaultError, writeUsersFile, path, {"a": "b"}, MASTER_KEY)
        self.assertEqual(error.path, path)
