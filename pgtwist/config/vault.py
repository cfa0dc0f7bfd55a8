# -*- test-case-name: tests.unit.test_vault -*-
"""
The users vault: pgagroal's C{pgagroal_users.conf} line format with modern
cryptography.

A users file (C{pgtwist_users.conf}, and the frontend-users, admins and
superuser files, which share the format) holds the passwords pgtwist uses
towards PostgreSQL.  Each line is C{user:<base64>}, as in pgagroal, so a
line parser that skips C{#} comments can still list the users.  Unlike
pgagroal (AES-256-CBC with an unsalted single-iteration C{EVP_BytesToKey}),
each password is sealed with AES-256-GCM:

    - the key is derived from the master key by scrypt (C{n=2**14, r=8,
      p=1}) with a random 16-byte salt per file, kept in a header comment
      at the top of the file::

          # pgtwist-vault v1 scrypt salt=<base64 of 16 bytes>
          alice:<base64 of 12-byte nonce + ciphertext + 16-byte tag>

    - every value has a fresh random 96-bit nonce;
    - the user name is the AEAD associated data, so a value copied onto
      another user's line fails to decrypt instead of silently logging in
      as the wrong role.

The key is derived once per file read (scrypt costs tens of milliseconds),
never once per user.

The master key lives in C{~/.pgtwist/master.key} (base64 of the key, one
line), in a directory of mode C{0700} and a file of mode C{0600}; as
pgagroal does, reading it fails if the group or others can get at either.
C{~} is resolved from C{$HOME} each time, so tests and operators can point
it elsewhere.

pgagroal's own users files are read as they are, so an installation
switches without re-entering a password.  They have no header; which of
pgagroal's two formats a file is in follows from its master key, as in
pgagroal:

    - pgagroal 1.x and 2.0: C{~/.pgagroal/master.key} is one base64 line;
      each value is AES-256-CBC with the key and IV from OpenSSL's
      C{EVP_BytesToKey} (SHA-1, no salt, one iteration) of the master key.
      No salt, no work factor, no integrity: see docs/security.rst.
    - pgagroal 2.1 and later: the master key file has a second line, the
      base64 of a 16-byte salt; each value is C{salt(16) + iv(12) +
      ciphertext + tag(16)} under AES-256-GCM, whose key is
      PBKDF2-HMAC-SHA256 (1 iteration, the value's salt) of a 64-byte key
      that is PBKDF2-HMAC-SHA256 (600000 iterations, the file's salt) of
      the master key.  The slow step runs once per master key, not per
      file or user.

For a pgagroal users file the master key is C{~/.pgagroal/master.key},
else C{~/.pgtwist/master.key} (which may be a copy of pgagroal's).
pgtwist never writes pgagroal's formats: C{pgtwist-admin import-pgagroal}
turns such a file into a pgtwist vault.

Nothing here logs: the only secrets-bearing output is the caller's.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from pgtwist._compat import SLOTS

__all__ = [
    "MAX_LINE_LENGTH",
    "MasterKey",
    "VaultError",
    "isPgagroalVault",
    "masterKeyPath",
    "pgagroalMasterKeyPath",
    "readMasterKey",
    "readMasterKeyFile",
    "readUserNames",
    "readUsersFile",
    "validateUserName",
    "writeMasterKey",
    "writeUsersFile",
]

#: The longest line a users file may hold, in characters (without the newline).
MAX_LINE_LENGTH = 1024

#: The first word of the header comment that marks a pgtwist vault.
VAULT_MAGIC = "pgtwist-vault"
#: The only vault format version this module reads and writes.
VAULT_VERSION = "v1"
#: The key derivation function named in the header.
VAULT_KDF = "scrypt"

SALT_LENGTH = 16
NONCE_LENGTH = 12
TAG_LENGTH = 16
KEY_LENGTH = 32
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1

#: Where the master key lives, relative to the home directory.
MASTER_KEY_DIRECTORY = ".pgtwist"
MASTER_KEY_FILE = "master.key"

#: Where pgagroal keeps its master key, relative to the home directory.
PGAGROAL_MASTER_KEY_DIRECTORY = ".pgagroal"

#: pgagroal 2.1's AES-256-GCM values: C{salt + iv + ciphertext + tag}.
PGAGROAL_SALT_LENGTH = 16
PGAGROAL_IV_LENGTH = 12
PGAGROAL_TAG_LENGTH = 16
#: pgagroal 2.1's PBKDF2 iterations from the master key to its 64-byte key.
PGAGROAL_PBKDF2_ITERATIONS = 600_000
#: OpenSSL's C{EVP_MAX_KEY_LENGTH}: the length of pgagroal 2.1's derived master key.
_PGAGROAL_DERIVED_MASTER_LENGTH = 64
#: AES-256-CBC (pgagroal 1.x): the key and IV lengths, and the block size.
_CBC_KEY_LENGTH = 32
_CBC_BLOCK = 16

#: A master key file is one short base64 line; refuse anything much bigger.
_MAX_MASTER_KEY_FILE_SIZE = 8192

_GROUP_OTHER_BITS = stat.S_IRWXG | stat.S_IRWXO


class VaultError(Exception):
    """
    A vault or master key file could not be read or written.

    Prints as C{path:line: message} (or C{path: message} when no line
    applies, or just C{message} when no file does), like
    L{pgtwist.config.loader.ConfigError}.  The message never contains a
    password.

    @ivar message: What went wrong, for an operator.
    @ivar path: The file concerned, if any.
    @ivar line: The 1-based line number concerned, if any.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message, path, line)
        self.message = message
        self.path = path
        self.line = line

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"


def masterKeyPath() -> str:
    """
    The path of the master key file, C{~/.pgtwist/master.key}.

    C{~} is expanded now, from C{$HOME}, so changing C{HOME} (as tests do)
    moves the master key.

    @raise VaultError: The home directory cannot be determined.
    """
    home = os.path.expanduser("~")
    if home == "~" or not home:
        raise VaultError("cannot determine the home directory for the master key")
    return os.path.join(home, MASTER_KEY_DIRECTORY, MASTER_KEY_FILE)


def pgagroalMasterKeyPath() -> str:
    """
    The path of pgagroal's master key file, C{~/.pgagroal/master.key},
    which pgtwist reads for pgagroal's own users files.

    @raise VaultError: The home directory cannot be determined.
    """
    return os.path.join(
        os.path.dirname(os.path.dirname(masterKeyPath())),
        PGAGROAL_MASTER_KEY_DIRECTORY,
        MASTER_KEY_FILE,
    )


@dataclass(frozen=True, **SLOTS)
class MasterKey:
    """
    A master key as its file holds it.

    @ivar key: The key bytes (the first line's base64).
    @ivar salt: pgagroal 2.1's 16-byte salt (the second line's base64),
        or C{None} when the file has one line (pgtwist, pgagroal 1.x).
    @ivar path: The file it was read from, if any.
    """

    key: bytes
    salt: bytes | None = None
    path: str | None = None

    def __repr__(self) -> str:
        return f"MasterKey(path={self.path!r}, salt={self.salt is not None})"


def _describeMode(mode: int) -> str:
    """
    Format permission bits the way C{chmod} takes them, e.g. C{0755}.
    """
    return f"{stat.S_IMODE(mode):04o}"


def _checkKeyDirectory(directory: str, path: str) -> None:
    """
    Refuse a master key directory the group or others can use (pgagroal's
    C{security.c} rule for C{~/.pgagroal}).

    @raise VaultError: It is missing, not a directory, or too open.
    """
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        raise VaultError(
            "master key not found (create it with 'pgtwist-admin master-key')", path
        ) from None
    except OSError as e:
        raise VaultError(f"cannot access {directory}: {e.strerror}", path) from None
    if not stat.S_ISDIR(info.st_mode):
        raise VaultError(f"{directory} is not a directory", path)
    if info.st_mode & _GROUP_OTHER_BITS:
        raise VaultError(
            f"wrong permissions for {directory}: {_describeMode(info.st_mode)} (must be 0700)",
            path,
        )


def readMasterKey(path: str | None = None) -> bytes:
    """
    Read the master key.

    @param path: The master key file; L{masterKeyPath} when C{None}.
    @return: The key bytes (the file's first line holds their base64).
    @raise VaultError: As L{readMasterKeyFile}.
    """
    return readMasterKeyFile(path).key


def readMasterKeyFile(path: str | None = None) -> MasterKey:
    """
    Read a master key file: the key, and the salt line pgagroal 2.1 adds.

    @param path: The master key file; L{masterKeyPath} when C{None}.
    @raise VaultError: The file or its directory is missing, not private
        (any group or other permission bit set), or does not hold a
        non-empty base64 key (and at most a 16-byte base64 salt after it).
    """
    if path is None:
        path = masterKeyPath()
    _checkKeyDirectory(os.path.dirname(os.path.abspath(path)), path)
    try:
        # O_NONBLOCK: a FIFO planted at the key's name must not hang us.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise VaultError(
            "master key not found (create it with 'pgtwist-admin master-key')", path
        ) from None
    except OSError as e:
        raise VaultError(f"cannot read master key: {e.strerror}", path) from None
    try:
        # fstat the open file, not the name, so the checked file is the read one.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise VaultError("master key is not a regular file", path)
        if info.st_mode & _GROUP_OTHER_BITS:
            raise VaultError(
                f"wrong permissions for the master key: {_describeMode(info.st_mode)}"
                " (must be 0600)",
                path,
            )
        data = os.read(fd, _MAX_MASTER_KEY_FILE_SIZE + 1)
    except OSError as e:
        raise VaultError(f"cannot read master key: {e.strerror}", path) from None
    finally:
        os.close(fd)
    if len(data) > _MAX_MASTER_KEY_FILE_SIZE:
        raise VaultError("master key file is too large", path)
    lines = data.strip().splitlines()
    if len(lines) > 2:
        raise VaultError("master key file does not hold base64", path)
    try:
        key = base64.b64decode(lines[0].strip() if lines else b"", validate=True)
        salt = base64.b64decode(lines[1].strip(), validate=True) if len(lines) == 2 else None
    except (binascii.Error, ValueError):
        raise VaultError("master key file does not hold base64", path) from None
    if not key:
        raise VaultError("master key file is empty", path)
    if salt is not None and len(salt) != PGAGROAL_SALT_LENGTH:
        raise VaultError(
            f"the master key's salt line must hold {PGAGROAL_SALT_LENGTH} bytes, not {len(salt)}",
            path,
        )
    return MasterKey(key, salt, path)


@contextlib.contextmanager
def _temporaryFile(directory: str, name: str) -> Iterator[tuple[int, str]]:
    """
    A private (C{0600}) temporary file next to its final place, removed on
    the way out unless the caller moved it.

    @return: A context manager giving C{(fd, temporaryPath)}; the caller
        closes the descriptor.
    """
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        yield fd, temporary
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _writeAll(fd: int, data: bytes) -> None:
    """
    Write C{data} to C{fd}, make it durable, and close C{fd}.
    """
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _syncDirectory(directory: str) -> None:
    """
    Make a rename in C{directory} durable, where the platform allows it.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def writeMasterKey(key: bytes, path: str | None = None, *, replace: bool = False) -> None:
    """
    Store a master key, creating its directory with mode C{0700} if needed.

    The file is written whole to a temporary file of mode C{0600} and then
    moved into place, so a reader never sees half a key.

    @param key: The master key (non-empty).
    @param path: The master key file; L{masterKeyPath} when C{None}.
    @param replace: Overwrite an existing master key.  Off by default:
        every vault encrypted under the old key becomes unreadable.
    @raise VaultError: The key is empty, the master key already exists
        (and C{replace} is false), the directory is not private, or the
        file cannot be written.
    """
    if not key:
        raise VaultError("the master key must not be empty")
    if path is None:
        path = masterKeyPath()
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.lexists(directory):
        try:
            os.makedirs(directory, mode=0o700)
            os.chmod(directory, 0o700)  # makedirs' mode is subject to the umask
        except OSError as e:
            raise VaultError(f"cannot create {directory}: {e.strerror}", path) from None
    _checkKeyDirectory(directory, path)
    if not replace and os.path.lexists(path):
        raise VaultError("Master key already exists", path)
    data = base64.b64encode(key) + b"\n"
    try:
        with _temporaryFile(directory, os.path.basename(path)) as (fd, temporary):
            _writeAll(fd, data)
            if replace:
                os.replace(temporary, path)
            else:
                # link() refuses an existing name, so two racing writers
                # cannot both believe they created the key.
                os.link(temporary, path)
    except FileExistsError:
        raise VaultError("Master key already exists", path) from None
    except OSError as e:
        raise VaultError(f"cannot write master key: {e.strerror}", path) from None
    _syncDirectory(directory)


def validateUserName(name: str) -> None:
    """
    Check that C{name} can be stored on a C{user:value} line and read back
    unchanged.

    @raise VaultError: It is empty, contains C{:} or a control character,
        starts with C{#}, or has leading or trailing white space.
    """
    if not name:
        raise VaultError("empty user name")
    if ":" in name:
        raise VaultError(f"user name {name!r} contains ':'")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise VaultError(f"user name {name!r} contains a control character")
    if name.startswith("#"):
        raise VaultError(f"user name {name!r} starts with '#'")
    if name != name.strip():
        raise VaultError(f"user name {name!r} has leading or trailing white space")


@dataclass(frozen=True, **SLOTS)
class _Entry:
    """
    One C{user:value} line, not yet decrypted.

    @ivar user: The user name.
    @ivar sealed: The 12-byte nonce followed by the ciphertext and tag.
    @ivar line: The 1-based line number.
    """

    user: str
    sealed: bytes
    line: int

    def __repr__(self) -> str:
        return f"_Entry(user={self.user!r}, line={self.line})"


@dataclass(frozen=True, **SLOTS)
class _ParsedVault:
    """
    A users file split into its header salt and its entries.

    @ivar salt: The scrypt salt from the header, or C{None} when the file
        has no header (it is then pgagroal's, or empty).
    @ivar entries: The entries in file order.
    """

    salt: bytes | None
    entries: tuple[_Entry, ...]


_HEADER_EXAMPLE = f"# {VAULT_MAGIC} {VAULT_VERSION} {VAULT_KDF} salt=<base64>"


def _header(salt: bytes) -> str:
    """
    The header line carrying C{salt}.
    """
    return f"# {VAULT_MAGIC} {VAULT_VERSION} {VAULT_KDF} salt={base64.b64encode(salt).decode()}"


def _parseHeader(words: list[str], path: str, line: int) -> bytes:
    """
    Read the salt out of a header comment's words (after the C{#}).

    @raise VaultError: Unknown version or KDF, or a bad salt.
    """
    if len(words) != 4 or words[1] != VAULT_VERSION or words[2] != VAULT_KDF:
        raise VaultError(f"unsupported vault header (expected '{_HEADER_EXAMPLE}')", path, line)
    key, _, value = words[3].partition("=")
    if key != "salt":
        raise VaultError(f"unsupported vault header (expected '{_HEADER_EXAMPLE}')", path, line)
    try:
        salt = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise VaultError("vault salt is not valid base64", path, line) from None
    if len(salt) != SALT_LENGTH:
        raise VaultError(f"vault salt must be {SALT_LENGTH} bytes, not {len(salt)}", path, line)
    return salt


def _readLines(path: str) -> Iterator[tuple[int, str]]:
    """
    The lines of C{path} with their 1-based numbers and without line ends.

    @raise VaultError: The file cannot be read, a line is not UTF-8, or a
        line is longer than L{MAX_LINE_LENGTH}.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise VaultError(f"cannot read users file: {e.strerror}", path) from None
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise VaultError("line is not valid UTF-8", path, number) from None
        text = text.removesuffix("\r")
        if len(text) > MAX_LINE_LENGTH:
            raise VaultError(f"line is longer than {MAX_LINE_LENGTH} characters", path, number)
        yield number, text


def _parse(path: str) -> _ParsedVault:
    """
    Split a users file into its header salt and its sealed entries.

    Blank lines and C{#} comments are skipped; the header is the comment
    whose first word is C{pgtwist-vault} and must come before any entry.
    Entries with no header are pgagroal's.

    @raise VaultError: With the line number, for any malformed line.
    """
    salt: bytes | None = None
    entries: list[_Entry] = []
    seen: dict[str, int] = {}
    for number, text in _readLines(path):
        stripped = text.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            words = stripped[1:].split()
            if words and words[0] == VAULT_MAGIC:
                headerSalt = _parseHeader(words, path, number)
                if salt is not None:
                    raise VaultError("duplicate vault header", path, number)
                if entries:
                    raise VaultError(
                        f"vault header after user entries (line {entries[0].line})", path, number
                    )
                salt = headerSalt
            continue
        user, colon, value = stripped.partition(":")
        if not colon:
            raise VaultError("expected 'user:password'", path, number)
        try:
            validateUserName(user)
        except VaultError as e:
            raise VaultError(e.message, path, number) from None
        if user in seen:
            raise VaultError(f"duplicate user {user!r} (first on line {seen[user]})", path, number)
        try:
            sealed = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise VaultError(
                f"password of user {user!r} is not valid base64", path, number
            ) from None
        # Without a header, the file is pgagroal's: its values are checked
        # when decrypted, once the master key says which format they are in.
        if salt is not None and len(sealed) < NONCE_LENGTH + TAG_LENGTH:
            raise VaultError(
                f"password of user {user!r} is too short to be AES-256-GCM ciphertext", path, number
            )
        seen[user] = number
        entries.append(_Entry(user, sealed, number))
    return _ParsedVault(salt, tuple(entries))


def _deriveKey(masterKey: bytes, salt: bytes) -> bytes:
    """
    The AES-256 key for one vault file: scrypt of the master key with the
    file's salt.  Costs tens of milliseconds by design; call once per file.
    """
    kdf = Scrypt(salt=salt, length=KEY_LENGTH, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(masterKey)


def readUserNames(path: str) -> list[str]:
    """
    The user names in a users file, in file order, without decrypting
    anything (so no master key is needed).

    @raise VaultError: The file cannot be read or a line is malformed.
    """
    return [entry.user for entry in _parse(path).entries]


def isPgagroalVault(path: str) -> bool:
    """
    Whether C{path} is one of pgagroal's users files: user entries and no
    pgtwist header.

    @raise VaultError: The file cannot be read or a line is malformed.
    """
    parsed = _parse(path)
    return parsed.salt is None and bool(parsed.entries)


def _pgagroalMasterKey(path: str) -> MasterKey:
    """
    The master key of a pgagroal users file: C{~/.pgagroal/master.key},
    else C{~/.pgtwist/master.key}.

    @raise VaultError: Neither exists, or the one found cannot be read.
    """
    pgagroal = pgagroalMasterKeyPath()
    if os.path.lexists(pgagroal):
        return readMasterKeyFile(pgagroal)
    if os.path.lexists(masterKeyPath()):
        return readMasterKeyFile()
    raise VaultError(
        f"master key not found: {path} is a pgagroal users file, read with pgagroal's "
        f"master key ({pgagroal}) or a copy of it at {masterKeyPath()}",
        pgagroal,
    )


def _unpadCbc(data: bytes) -> bytes | None:
    """
    PKCS#7 padding removed from C{data}, or C{None} when it is not valid
    (what C{EVP_DecryptFinal_ex} refuses: a wrong key, most of the time).
    """
    pad = data[-1] if data else 0
    if not 1 <= pad <= _CBC_BLOCK or data[-pad:] != bytes([pad]) * pad:
        return None
    return data[:-pad]


def _bytesToKey(masterKey: bytes) -> tuple[bytes, bytes]:
    """
    OpenSSL's C{EVP_BytesToKey} as pgagroal 1.x calls it for AES-256-CBC:
    SHA-1, no salt, one iteration.

    @return: The 32-byte key and the 16-byte IV.
    """
    derived = b""
    block = b""
    while len(derived) < _CBC_KEY_LENGTH + _CBC_BLOCK:
        block = hashlib.sha1(block + masterKey).digest()
        derived += block
    return derived[:_CBC_KEY_LENGTH], derived[_CBC_KEY_LENGTH : _CBC_KEY_LENGTH + _CBC_BLOCK]


def _decryptPgagroalCbc(entry: _Entry, key: bytes, iv: bytes) -> bytes | None:
    """
    One pgagroal 1.x value (AES-256-CBC); C{None} when it does not decrypt.
    """
    sealed = entry.sealed
    if not sealed or len(sealed) % _CBC_BLOCK:
        return None
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return _unpadCbc(decryptor.update(sealed) + decryptor.finalize())


#: The last pgagroal 2.1 derived master key: (digest of key and salt, derived key).
#: The derivation costs 600000 PBKDF2 iterations (about half a second), and the
#: loader reads up to four users files per load; pgagroal caches it too.
_derivedPgagroalKey: list[tuple[bytes, bytes]] = []


def _pgagroalDerivedMasterKey(masterKey: bytes, salt: bytes) -> bytes:
    """
    pgagroal 2.1's first step: PBKDF2-HMAC-SHA256 of the master key with
    the master key file's salt, 600000 iterations, 64 bytes.
    """
    tag = hashlib.sha256(len(masterKey).to_bytes(4, "big") + masterKey + salt).digest()
    if _derivedPgagroalKey and hmac.compare_digest(_derivedPgagroalKey[0][0], tag):
        return _derivedPgagroalKey[0][1]
    derived = hashlib.pbkdf2_hmac(
        "sha256", masterKey, salt, PGAGROAL_PBKDF2_ITERATIONS, _PGAGROAL_DERIVED_MASTER_LENGTH
    )
    _derivedPgagroalKey[:] = [(tag, derived)]
    return derived


def _decryptPgagroalGcm(entry: _Entry, derivedMaster: bytes) -> bytes | None:
    """
    One pgagroal 2.1 value (AES-256-GCM); C{None} when it does not decrypt.
    """
    sealed = entry.sealed
    head = PGAGROAL_SALT_LENGTH + PGAGROAL_IV_LENGTH
    if len(sealed) < head + PGAGROAL_TAG_LENGTH:
        return None
    salt, iv = sealed[:PGAGROAL_SALT_LENGTH], sealed[PGAGROAL_SALT_LENGTH:head]
    # The second step also yields an IV; the stored one is what decrypts.
    key = hashlib.pbkdf2_hmac("sha256", derivedMaster, salt, 1, KEY_LENGTH + PGAGROAL_IV_LENGTH)
    try:
        return AESGCM(key[:KEY_LENGTH]).decrypt(iv, sealed[head:], None)
    except InvalidTag:
        return None


def _readPgagroalEntries(
    path: str, entries: tuple[_Entry, ...], masterKey: MasterKey
) -> Iterator[tuple[_Entry, bytes]]:
    """
    Decrypt a pgagroal users file's entries: AES-256-GCM when the master
    key has pgagroal 2.1's salt line, AES-256-CBC (pgagroal 1.x) when not.

    @raise VaultError: An entry does not decrypt.
    """
    if masterKey.salt is not None:
        derived = _pgagroalDerivedMasterKey(masterKey.key, masterKey.salt)
        for entry in entries:
            plain = _decryptPgagroalGcm(entry, derived)
            if plain is None:
                raise VaultError(
                    f"cannot decrypt password of user {entry.user!r} (pgagroal 2.1 "
                    "AES-256-GCM, as the master key's salt line says): wrong master key?",
                    path,
                    entry.line,
                )
            yield entry, plain
        return
    key, iv = _bytesToKey(masterKey.key)
    for entry in entries:
        plain = _decryptPgagroalCbc(entry, key, iv)
        if plain is None:
            raise VaultError(
                f"cannot decrypt password of user {entry.user!r} (pgagroal 1.x AES-256-CBC, "
                "as a master key without a salt line says): wrong master key?",
                path,
                entry.line,
            )
        yield entry, plain


def _readPgtwistEntries(
    path: str, parsed: _ParsedVault, masterKey: bytes
) -> Iterator[tuple[_Entry, bytes]]:
    """
    Decrypt a pgtwist vault's entries.

    @raise VaultError: An entry does not decrypt.
    """
    assert parsed.salt is not None
    aead = AESGCM(_deriveKey(masterKey, parsed.salt))
    for entry in parsed.entries:
        nonce = entry.sealed[:NONCE_LENGTH]
        try:
            plain = aead.decrypt(nonce, entry.sealed[NONCE_LENGTH:], entry.user.encode("utf-8"))
        except InvalidTag:
            raise VaultError(
                f"cannot decrypt password of user {entry.user!r}: wrong master key?",
                path,
                entry.line,
            ) from None
        yield entry, plain


def readUsersFile(path: str, masterKey: bytes | MasterKey | None = None) -> dict[str, str]:
    """
    Read and decrypt a users file: a pgtwist vault, or one of pgagroal's
    users files as pgagroal wrote it.

    @param path: The users file.
    @param masterKey: The master key; read when C{None} (only if the file
        has entries): with L{readMasterKey} for a pgtwist vault, from
        C{~/.pgagroal/master.key} (else C{~/.pgtwist/master.key}) for a
        pgagroal file.  A pgagroal 2.1 file needs a L{MasterKey} with its
        salt; bare bytes are a key without one.
    @return: User name to password, in file order.
    @raise VaultError: The file cannot be read, a line is malformed, or a
        password does not decrypt (wrong master key, tampered value, or a
        value moved from another user's line).
    """
    parsed = _parse(path)
    if not parsed.entries:
        return {}
    decrypted: Iterator[tuple[_Entry, bytes]]
    if parsed.salt is None:
        if masterKey is None:
            masterKey = _pgagroalMasterKey(path)
        elif not isinstance(masterKey, MasterKey):
            masterKey = MasterKey(masterKey)
        decrypted = _readPgagroalEntries(path, parsed.entries, masterKey)
    else:
        if masterKey is None:
            masterKey = readMasterKey()
        elif isinstance(masterKey, MasterKey):
            masterKey = masterKey.key
        decrypted = _readPgtwistEntries(path, parsed, masterKey)
    users: dict[str, str] = {}
    for entry, plain in decrypted:
        try:
            users[entry.user] = plain.decode("utf-8")
        except UnicodeDecodeError:
            raise VaultError(
                f"password of user {entry.user!r} is not valid UTF-8", path, entry.line
            ) from None
    return users


def _existingSalt(path: str) -> bytes | None:
    """
    The salt of the vault already at C{path}, if there is one with a valid
    header before its first entry; C{None} otherwise.
    """
    try:
        for number, text in _readLines(path):
            stripped = text.strip()
            if not stripped:
                continue
            if not stripped.startswith("#"):
                return None
            words = stripped[1:].split()
            if words and words[0] == VAULT_MAGIC:
                return _parseHeader(words, path, number)
    except VaultError:
        return None
    return None


def writeUsersFile(path: str, users: Mapping[str, str], masterKey: bytes | None = None) -> None:
    """
    Encrypt C{users} and replace the users file at C{path} with them.

    The file is written to a temporary file of mode C{0600} beside it and
    renamed into place, so readers see the old file or the new one, never
    a mix.  An existing file's salt is kept; a new file gets a random one.

    @param path: The users file.
    @param users: User name to password; written in iteration order.
    @param masterKey: The master key; read with L{readMasterKey} when
        C{None} (only if C{users} is not empty).
    @raise VaultError: A user name cannot be stored (see
        L{validateUserName}), a line would exceed L{MAX_LINE_LENGTH}, the
        master key cannot be read, or the file cannot be written.
    """
    for user in users:
        try:
            validateUserName(user)
        except VaultError as e:
            raise VaultError(e.message, path) from None
    salt = _existingSalt(path) or os.urandom(SALT_LENGTH)
    lines = [_header(salt)]
    if users:
        if masterKey is None:
            masterKey = readMasterKey()
        aead = AESGCM(_deriveKey(masterKey, salt))
        for user, password in users.items():
            nonce = os.urandom(NONCE_LENGTH)
            sealed = nonce + aead.encrypt(nonce, password.encode("utf-8"), user.encode("utf-8"))
            line = f"{user}:{base64.b64encode(sealed).decode('ascii')}"
            if len(line) > MAX_LINE_LENGTH:
                raise VaultError(
                    f"password of user {user!r} is too long for a {MAX_LINE_LENGTH}-character line",
                    path,
                )
            lines.append(line)
    data = ("\n".join(lines) + "\n").encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        with _temporaryFile(directory, os.path.basename(path)) as (fd, temporary):
            _writeAll(fd, data)
            os.replace(temporary, path)
    except OSError as e:
        raise VaultError(f"cannot write users file: {e.strerror}", path) from None
    _syncDirectory(directory)
