# -*- test-case-name: tests.unit.test_config_authfile -*-
"""
PgBouncer's C{auth_file}: one user per line, C{"user" "secret"}, where the
secret is a SCRAM verifier (C{SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>}),
an md5 hash (C{md5} and 32 hex digits) or a plaintext password.

The format, as PgBouncer's C{load_auth_file} reads it: both fields in double
quotes, a double quote inside a field written twice (C{""}), anything after
the second field ignored, lines starting with C{;} (or C{#}) and blank lines
skipped. pgtwist is stricter where PgBouncer silently stops reading: a line
it cannot read is an error naming the file and the line, so that a typo
does not lock out every user after it.

A verifier is enough to check a client and, by pass-through, to log into
PostgreSQL on its behalf (L{pgtwist.config.verifiers}); a plaintext entry
acts as a vault password. The file holds password equivalents either way:
L{readAuthFile} warns when group or others may read it (PgBouncer does not
check; PostgreSQL-minded operators expect the warning).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping

from pgtwist.config.errors import ConfigError, Warn, readText
from pgtwist.config.model import UserEntry
from pgtwist.config.verifiers import parseVerifier

__all__ = ["formatAuthFile", "formatAuthFileLine", "parseAuthFile", "readAuthFile"]

#: PgBouncer's MAX_USERNAME and MAX_PASSWORD: longer fields are refused.
MAX_USER_NAME = 128
MAX_SECRET = 2048
_COMMENTS = ";#"
_GROUP_OTHER_BITS = stat.S_IRWXG | stat.S_IRWXO


def _field(text: str, start: int, path: str, line: int, what: str) -> tuple[str, int]:
    """
    Read the quoted field of C{text} beginning at C{start} (a double quote).

    @return: The unquoted value and the index after its closing quote.
    @raise ConfigError: The closing quote is missing.
    """
    parts: list[str] = []
    index = start + 1
    while True:
        end = text.find('"', index)
        if end < 0:
            raise ConfigError(f"unterminated quoted {what}", path, line)
        parts.append(text[index:end])
        if text.startswith('"', end + 1):
            parts.append('"')
            index = end + 2
            continue
        return "".join(parts), end + 1


def parseAuthFile(
    lines: Iterable[str], path: str, warn: Warn | None = None
) -> dict[str, UserEntry]:
    """
    Read the lines of an C{auth_file}.

    @param path: For messages.
    @param warn: Told of a user listed twice (the last line wins, as in
        PgBouncer).
    @return: The users, in file order: verifiers as
        L{UserEntry.verifier}, plaintext secrets as L{UserEntry.password};
        an empty secret gives an entry with neither (the user is known, and
        only C{trust} admits it).
    @raise ConfigError: A line is not two quoted fields, a field is empty
        where it may not be, or too long.
    """
    users: dict[str, UserEntry] = {}
    seen: dict[str, int] = {}
    for number, text in enumerate(lines, 1):
        stripped = text.strip()
        if not stripped or stripped[0] in _COMMENTS:
            continue
        if stripped[0] != '"':
            raise ConfigError('expected "user" "secret", each in double quotes', path, number)
        name, end = _field(stripped, 0, path, number, "user name")
        rest = stripped[end:].lstrip()
        if not rest.startswith('"'):
            raise ConfigError(f"no quoted secret after the user name {name!r}", path, number)
        secret, _ = _field(rest, 0, path, number, "secret")
        if not name:
            raise ConfigError("empty user name", path, number)
        if len(name.encode("utf-8")) >= MAX_USER_NAME:
            raise ConfigError(
                f"user name too long (at most {MAX_USER_NAME - 1} bytes)", path, number
            )
        if len(secret.encode("utf-8")) >= MAX_SECRET:
            raise ConfigError(
                f"secret of user {name!r} too long (at most {MAX_SECRET - 1} bytes)",
                path,
                number,
            )
        if name in seen and warn is not None:
            warn(
                f"{path}:{number}: user {name!r} is listed again (line {seen[name]}): "
                "this line wins"
            )
        seen[name] = number
        verifier = parseVerifier(secret)
        if verifier is not None:
            entry = UserEntry(name, verifier=verifier)
        else:
            entry = UserEntry(name, secret or None)
        users.pop(name, None)
        users[name] = entry
    return users


def readAuthFile(path: str, warn: Warn | None = None) -> dict[str, UserEntry]:
    """
    Read the C{auth_file} at C{path} (see L{parseAuthFile}), warning when
    group or others have any access to it.

    @raise ConfigError: The file cannot be read, or a line is malformed.
    """
    lines = readText(path)
    if warn is not None:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0
        if mode & _GROUP_OTHER_BITS:
            warn(
                f"{path}: the auth_file holds password equivalents but has mode "
                f"{stat.S_IMODE(mode):04o}: make it readable by pgtwist's user only "
                "(chmod 0600)"
            )
    return parseAuthFile(lines, path, warn)


def _quote(value: str) -> str:
    """
    C{value} as a quoted field.
    """
    return '"' + value.replace('"', '""') + '"'


def formatAuthFileLine(user: str, secret: str) -> str:
    """
    One C{auth_file} line (no newline).

    @raise ValueError: A value has a line break (the format cannot hold one).
    """
    if any(c in value for value in (user, secret) for c in "\r\n"):
        raise ValueError("a user name or secret with a line break cannot be written")
    return f"{_quote(user)} {_quote(secret)}"


def formatAuthFile(secrets: Mapping[str, str]) -> str:
    """
    A whole C{auth_file} of C{secrets} (user to verifier text), one line each.
    """
    return "".join(formatAuthFileLine(user, secret) + "\n" for user, secret in secrets.items())
