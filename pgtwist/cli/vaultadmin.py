# -*- test-case-name: tests.unit.test_vaultcli -*-
"""
C{pgtwist-admin}: the master key and the users vault from the command line,
after pgagroal's C{pgagroal-admin}.

    pgtwist-admin [ -f FILE ] [ -U USER ] [ -P PASSWORD | -g [ -l LENGTH ] ] COMMAND

Commands are C{master-key}, C{user add}, C{user edit}, C{user del},
C{user ls}, C{import-auth-file} and C{import-pgagroal}; pgagroal's older C{add-user}, C{update-user}, C{remove-user}
and C{list-users} are accepted too.  Whatever is not given on the command
line is asked for interactively (passwords without echo, twice).  Exit
status is 0 on success and 1 on any error, which is reported as one line on
standard error.

Passwords are never printed, except a password generated with C{-g} for a
user, printed once so the operator can give it to PostgreSQL.

C{import-auth-file FILE} migrates from PgBouncer's C{auth_file}: its
plaintext passwords go into the vault (C{-f}), encrypted like any other;
its verifiers (SCRAM secrets, md5 hashes) cannot be turned into passwords
and need none, so they go into a pgtwist C{auth_file} (C{--verifiers
FILE}, mode C{0600}, PgBouncer's format) that the main key C{auth_file}
names. Keeping them out of the vault keeps every existing vault and
pgagroal's format unchanged, and the vault's promise that each entry is a
password pgtwist can log in with.

pgtwist reads pgagroal's own users files as they are (see
L{pgtwist.config.vault}), but never writes pgagroal's format: C{user add},
C{edit} and C{del} refuse such a file, and C{import-pgagroal FILE} turns it
into a pgtwist vault (C{-f}) under pgtwist's master key, reading it with
pgagroal's master key (C{~/.pgagroal/master.key}).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import string
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from pgtwist import __version__
from pgtwist.config.authfile import formatAuthFile, readAuthFile
from pgtwist.config.errors import ConfigError
from pgtwist.config.vault import (
    VaultError,
    isPgagroalVault,
    masterKeyPath,
    readMasterKey,
    readUserNames,
    readUsersFile,
    validateUserName,
    writeMasterKey,
    writeUsersFile,
)
from pgtwist.config.verifiers import Md5Verifier, ScramSecret, formatScramSecret

__all__ = ["main"]

PROGRAM = "pgtwist-admin"
#: The users file when C{-f} is not given, in the current directory (pgagroal's rule).
DEFAULT_USERS_FILE = "pgtwist_users.conf"
DEFAULT_PASSWORD_LENGTH = 64
#: The shortest master key accepted at the interactive prompt.
MIN_MASTER_KEY_LENGTH = 8
#: Gives the master key to C{master-key}, as C{PGAGROAL_PASSWORD} does for pgagroal.
PASSWORD_ENVIRONMENT_VARIABLE = "PGTWIST_PASSWORD"
#: Generated passwords use letters and digits only, so they survive shells,
#: connection URIs and C{.pgpass} files unquoted (64 of them carry 381 bits).
PASSWORD_ALPHABET = string.ascii_letters + string.digits

#: Command words to the canonical command name: the single dispatch table.
COMMANDS: dict[tuple[str, ...], str] = {
    ("master-key",): "master-key",
    ("user", "add"): "user add",
    ("user", "edit"): "user edit",
    ("user", "del"): "user del",
    ("user", "ls"): "user ls",
    # pgagroal's deprecated spellings.
    ("add-user",): "user add",
    ("update-user",): "user edit",
    ("remove-user",): "user del",
    ("list-users",): "user ls",
}

USAGE = f"""\
{PROGRAM} {__version__}
  Administration utility for pgtwist

Usage:
  {PROGRAM} [ -f FILE ] [ COMMAND ]

Options:
  -f, --file FILE         Set the path to a user file
                          Defaults to {DEFAULT_USERS_FILE}
  -U, --user USER         Set the user name
  -P, --password PASSWORD Set the password for the user
                          (or the master key; also ${PASSWORD_ENVIRONMENT_VARIABLE})
  -g, --generate          Generate a password
  -l, --length LENGTH     Password length (default {DEFAULT_PASSWORD_LENGTH})
  --verifiers FILE        Where import-auth-file writes verifiers
  -F, --format text|json  Set the output format
  -V, --version           Display version information
  -?, -h, --help          Display help

Commands:
  master-key              Create the master key (~/.pgtwist/master.key)
  user <subcommand>       Manage a specific user, where <subcommand> can be
                          - add  to add a new user
                          - del  to remove an existing user
                          - edit to change the password for an existing user
                          - ls   to list all available users
  import-auth-file FILE   Import PgBouncer's auth_file: plaintext passwords
                          into the users file, verifiers into the file of
                          --verifiers (for the auth_file key)
  import-pgagroal FILE    Import a pgagroal users file (read with
                          ~/.pgagroal/master.key) into the users file

Deprecated commands:
  add-user, update-user, remove-user, list-users
"""


class _CommandError(Exception):
    """
    The command line or an interactive answer cannot be acted on; the
    message is reported as is.
    """


class _ArgumentParser(argparse.ArgumentParser):
    """
    An argument parser that raises instead of printing usage and exiting
    with status 2, so every error is one line and exit status 1.
    """

    def error(self, message: str) -> NoReturn:
        """
        Turn argparse's complaint into a L{_CommandError}.
        """
        raise _CommandError(message)


def _buildParser() -> _ArgumentParser:
    """
    The option parser.  Help is handled by hand (C{add_help=False}) because
    argparse cannot spell pgagroal's C{-?}.
    """
    parser = _ArgumentParser(prog=PROGRAM, add_help=False, allow_abbrev=False)
    parser.add_argument("-f", "--file", default=None)
    parser.add_argument("-U", "--user", default=None)
    parser.add_argument("-P", "--password", default=None)
    parser.add_argument("-g", "--generate", action="store_true")
    parser.add_argument("-l", "--length", type=int, default=DEFAULT_PASSWORD_LENGTH)
    parser.add_argument("--verifiers", default=None)
    parser.add_argument("-F", "--format", choices=("text", "json"), default="text")
    parser.add_argument("-V", "--version", action="store_true")
    parser.add_argument("-?", "-h", "--help", dest="help", action="store_true")
    parser.add_argument("command", nargs="*")
    return parser


def _generatePassword(length: int) -> str:
    """
    A random password of C{length} characters from L{PASSWORD_ALPHABET}.
    """
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


def _askLine(prompt: str) -> str:
    """
    Ask for a line that may echo (a user name).  The prompt goes to
    standard error so that standard output stays parseable.

    @raise EOFError: Standard input is exhausted.
    """
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def _askSecret(prompt: str) -> str:
    """
    Ask for a secret without echo.  Looked up on the L{getpass} module at
    call time, so tests can patch C{getpass.getpass}.
    """
    return getpass.getpass(prompt)


class _Invocation:
    """
    One run of the tool: parsed options plus the output streams.

    @ivar options: The parsed command line.
    @ivar command: The canonical command name (a value of L{COMMANDS}).
    """

    def __init__(self, options: argparse.Namespace, command: str) -> None:
        self.options = options
        self.command = command

    def _report(self, text: list[str], output: dict[str, object]) -> None:
        """
        Print the outcome: C{text} lines, or with C{-F json} the C{output}
        object in pgagroal's C{command}/C{application} wrapper.
        """
        if self.options.format == "json":
            document = {
                "command": {
                    "name": self.command,
                    "status": "OK",
                    "error": False,
                    "exit-status": 0,
                    "output": output,
                },
                "application": {"name": PROGRAM, "version": __version__},
            }
            print(json.dumps(document, indent=2))
        else:
            for line in text:
                print(line)

    def _usersPath(self) -> str:
        """
        The users file: C{-f}, or L{DEFAULT_USERS_FILE} in the current directory.
        """
        path: str | None = self.options.file
        return path if path is not None else DEFAULT_USERS_FILE

    def _userName(self) -> str:
        """
        The user name from C{-U}, or asked for.

        @raise VaultError: It cannot be stored in a users file.
        """
        name: str | None = self.options.user
        if name is None:
            name = _askLine("User name: ")
        validateUserName(name)
        return name

    def _newPassword(self) -> tuple[str, bool]:
        """
        A user's new password: from C{-P}, generated with C{-g}, or asked
        for twice.

        @return: The password, and whether it was generated.
        @raise _CommandError: It is empty or the two answers differ.
        """
        password: str | None = self.options.password
        if password is not None:
            generated = False
        elif self.options.generate:
            return _generatePassword(self.options.length), True
        else:
            password = _askSecret("Password : ")
            if password and password != _askSecret("Verify   : "):
                raise _CommandError("Passwords do not match")
            generated = False
        if not password:
            raise _CommandError("Empty password")
        return password, generated

    def masterKey(self) -> None:
        """
        C{master-key}: create C{~/.pgtwist/master.key}.  An existing key is
        never replaced: every vault encrypted under it would be lost.
        """
        path = masterKeyPath()
        if os.path.lexists(path):
            raise VaultError("Master key already exists", path)
        key: str | None = self.options.password
        if key is None and self.options.generate:
            key = _generatePassword(self.options.length)
        if key is None:
            key = os.environ.get(PASSWORD_ENVIRONMENT_VARIABLE)
        if key is None:
            key = _askSecret("Master key (will not echo): ")
            if len(key) < MIN_MASTER_KEY_LENGTH:
                raise _CommandError(
                    f"Invalid key length, must be at least {MIN_MASTER_KEY_LENGTH} characters"
                )
            if key != _askSecret("Verify master key (will not echo): "):
                raise _CommandError("Master keys do not match")
        if not key:
            raise _CommandError("Empty master key")
        writeMasterKey(key.encode("utf-8"), path)
        self._report([f"Master key stored into {path}"], {"path": path})

    def _readUsers(self, path: str, masterKey: bytes, mustExist: bool) -> dict[str, str]:
        """
        The decrypted users of C{path}; an absent file is empty unless
        C{mustExist}.
        """
        if not mustExist and not os.path.lexists(path):
            return {}
        if isPgagroalVault(path):
            raise VaultError(
                "a pgagroal users file: pgtwist reads it as it is but does not write "
                f"pgagroal's format; convert it with '{PROGRAM} -f NEW_FILE import-pgagroal "
                f"{path}'",
                path,
            )
        return readUsersFile(path, masterKey)

    def _storePassword(self, adding: bool) -> None:
        """
        C{user add} (C{adding}) or C{user edit}: set one user's password.
        """
        path = self._usersPath()
        # Read the master key first, as pgagroal does, so a missing key is
        # reported before any question is asked.
        masterKey = readMasterKey()
        users = self._readUsers(path, masterKey, mustExist=not adding)
        name = self._userName()
        if adding and name in users:
            raise VaultError(f"Existing user: {name}", path)
        if not adding and name not in users:
            raise VaultError(f"Unknown user: {name}", path)
        password, generated = self._newPassword()
        users[name] = password
        writeUsersFile(path, users, masterKey)
        if generated:
            self._report([f"Password : {password}"], {"user": name, "password": password})
        else:
            self._report([], {"user": name})

    def userAdd(self) -> None:
        """
        C{user add}: add a user; an existing one is an error.
        """
        self._storePassword(adding=True)

    def userEdit(self) -> None:
        """
        C{user edit}: change an existing user's password.
        """
        self._storePassword(adding=False)

    def userDel(self) -> None:
        """
        C{user del}: remove an existing user.  Every other password is
        decrypted and re-sealed, which also proves the master key right.
        """
        path = self._usersPath()
        masterKey = readMasterKey()
        users = self._readUsers(path, masterKey, mustExist=True)
        name = self._userName()
        if name not in users:
            raise VaultError(f"Unknown user: {name}", path)
        del users[name]
        writeUsersFile(path, users, masterKey)
        self._report([], {"user": name})

    def userLs(self) -> None:
        """
        C{user ls}: the user names, one a line; needs no master key.
        """
        names = readUserNames(self._usersPath())
        self._report(names, {"users": names, "count": len(names)})

    def importAuthFile(self) -> None:
        """
        C{import-auth-file FILE}: PgBouncer's C{auth_file} into the vault
        (plaintext passwords, added or replaced) and the C{--verifiers}
        file (verifiers, merged into what it holds). Entries with an empty
        secret are skipped: they carry nothing to import.
        """
        source: str = self.options.command[1]
        warnings: list[str] = []
        try:
            entries = readAuthFile(source, warnings.append)
        except ConfigError as e:
            raise _CommandError(str(e)) from None
        for warning in warnings:
            print(f"{PROGRAM}: warning: {warning}", file=sys.stderr)
        passwords = {n: e.password for n, e in entries.items() if e.password is not None}
        verifiers: dict[str, str] = {}
        for name, entry in entries.items():
            if isinstance(entry.verifier, ScramSecret):
                verifiers[name] = formatScramSecret(entry.verifier)
            elif isinstance(entry.verifier, Md5Verifier):
                verifiers[name] = entry.verifier.hash
        skipped = [n for n in entries if n not in passwords and n not in verifiers]
        target: str | None = self.options.verifiers
        if verifiers and target is None:
            raise _CommandError(
                f"{len(verifiers)} entries of {source} are verifiers, not passwords: give "
                "--verifiers FILE to write them to an auth_file for pgtwist's auth_file key"
            )
        for name in passwords:
            validateUserName(name)
        if passwords:
            path = self._usersPath()
            masterKey = readMasterKey()
            users = self._readUsers(path, masterKey, mustExist=False)
            users.update(passwords)
            writeUsersFile(path, users, masterKey)
        if verifiers:
            assert target is not None
            existing: dict[str, str] = {}
            if os.path.lexists(target):
                try:
                    for name, entry in readAuthFile(target).items():
                        if isinstance(entry.verifier, ScramSecret):
                            existing[name] = formatScramSecret(entry.verifier)
                        elif isinstance(entry.verifier, Md5Verifier):
                            existing[name] = entry.verifier.hash
                        elif entry.password is not None:
                            existing[name] = entry.password
                except ConfigError as e:
                    raise _CommandError(str(e)) from None
            existing.update(verifiers)
            _writePrivate(target, formatAuthFile(existing))
        text = [f"Imported {len(passwords)} password(s) into {self._usersPath()}"]
        if verifiers:
            text.append(
                f"Imported {len(verifiers)} verifier(s) into {target}: "
                f"set auth_file = {target} in pgtwist.conf"
            )
        if skipped:
            text.append(f"Skipped {len(skipped)} user(s) with an empty secret")
        self._report(
            text,
            {
                "passwords": list(passwords),
                "verifiers": list(verifiers),
                "skipped": skipped,
            },
        )

    def importPgagroal(self) -> None:
        """
        C{import-pgagroal FILE}: a pgagroal users file, read with pgagroal's
        master key, into the pgtwist vault of C{-f} (added or replaced)
        under pgtwist's master key.
        """
        source: str = self.options.command[1]
        if not isPgagroalVault(source):
            raise _CommandError(f"{source} is not a pgagroal users file")
        passwords = readUsersFile(source)
        path = self._usersPath()
        if os.path.abspath(path) == os.path.abspath(source):
            raise _CommandError("give the pgtwist users file to write with -f, not the source")
        masterKey = readMasterKey()
        users = self._readUsers(path, masterKey, mustExist=False)
        users.update(passwords)
        writeUsersFile(path, users, masterKey)
        self._report(
            [f"Imported {len(passwords)} password(s) from {source} into {path}"],
            {"users": list(passwords), "path": path},
        )

    def dispatch(self) -> None:
        """
        Run the command.
        """
        actions: dict[str, Callable[[], None]] = {
            "master-key": self.masterKey,
            "user add": self.userAdd,
            "user edit": self.userEdit,
            "user del": self.userDel,
            "user ls": self.userLs,
            "import-auth-file": self.importAuthFile,
            "import-pgagroal": self.importPgagroal,
        }
        actions[self.command]()


def _writePrivate(path: str, text: str) -> None:
    """
    Write C{text} to C{path} whole, with mode C{0600} from the start (the
    file holds password equivalents): a temporary file in the same
    directory, renamed over C{path}.
    """
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise


def _fail(message: str) -> int:
    """
    Report an error on one line of standard error.

    @return: The exit status for errors, 1.
    """
    print(f"{PROGRAM}: {message}", file=sys.stderr)
    return 1


def _checkOptions(options: argparse.Namespace) -> str:
    """
    Validate the parsed options together.

    @return: The canonical command name.
    @raise _CommandError: Unknown or missing command, or options that
        contradict each other.
    """
    words: list[str] = options.command
    if not words:
        raise _CommandError(f"no command given (see '{PROGRAM} -?')")
    if words[0] in ("import-auth-file", "import-pgagroal"):
        if len(words) != 2:
            raise _CommandError(f"usage: {PROGRAM} {words[0]} FILE")
        return words[0]
    command = COMMANDS.get(tuple(words))
    if command is None:
        raise _CommandError(f"unknown command '{' '.join(words)}' (see '{PROGRAM} -?')")
    if options.generate and options.password is not None:
        raise _CommandError("-g/--generate and -P/--password cannot be combined")
    if options.length < 1:
        raise _CommandError("the password length must be at least 1")
    return command


def main(argv: Sequence[str] | None = None) -> int:
    """
    The C{pgtwist-admin} console script.

    @param argv: The arguments without the program name; C{sys.argv[1:]}
        when C{None}.
    @return: The exit status: 0 on success, 1 on any error (reported as one
        line on standard error).  The console script wrapper passes it to
        C{sys.exit}.
    """
    if argv is None:
        argv = sys.argv[1:]
    try:
        options = _buildParser().parse_intermixed_args(list(argv))
        if options.help:
            sys.stdout.write(USAGE)
            return 0
        if options.version:
            print(f"{PROGRAM} {__version__}")
            return 0
        _Invocation(options, _checkOptions(options)).dispatch()
    except (_CommandError, VaultError) as e:
        return _fail(str(e))
    except (EOFError, KeyboardInterrupt):
        return _fail("aborted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
