# -*- test-case-name: tests.unit.test_config_files -*-
"""
The line-oriented files of the family: C{pgtwist_hba.conf}
(C{TYPE DATABASE USER ADDRESS METHOD}), C{pgtwist_databases.conf}
(C{DATABASE[=ALIAS,...] USER MAX_SIZE [INITIAL_SIZE [MIN_SIZE [PIPELINE]]]})
and the users vaults.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping

from pgtwist.config.errors import ConfigError, Warn, readText, stripComment
from pgtwist.config.model import (
    DatabaseLimit,
    HbaRule,
    Network,
    UserEntry,
)
from pgtwist.config.values import (
    parseInt,
    parseName,
    parseNetwork,
)

__all__ = ["readHbaFile", "readLimitsFile", "readUsers"]


def readHbaFile(path: str, authMethods: Iterable[str], warn: Warn) -> tuple[HbaRule, ...]:
    """
    Read C{pgtwist_hba.conf}: C{TYPE DATABASE USER ADDRESS METHOD} per line.

    TYPE is C{host} (TLS or not), C{hostssl} (TLS only) or, as a pgtwist
    addition, C{local} (unix-socket clients; its ADDRESS may be left out or
    be C{all}). DATABASE and USER are a name or C{all}. ADDRESS is C{all},
    an IPv4 or IPv6 network (C{127.0.0.1/32}, C{::1/128}) or a bare address.
    METHOD must be one of C{authMethods}. Unlike pgagroal, the number of
    rules is not limited (pgagroal stops at 64).
    """
    methods = {name.lower() for name in authMethods}
    rules = []
    for number, raw in enumerate(readText(path), 1):
        fields = stripComment(raw, "#").split()
        if not fields:
            continue
        kind = fields[0].lower()
        if kind == "local" and len(fields) == 4:
            fields.insert(3, "all")
        if len(fields) != 5:
            raise ConfigError(
                f"expected TYPE DATABASE USER ADDRESS METHOD, got {len(fields)} fields",
                path,
                number,
            )
        _, database, user, address, method = fields
        if kind not in ("host", "hostssl", "local"):
            raise ConfigError(
                f"unknown connection type {fields[0]!r}: expected host, hostssl or local",
                path,
                number,
            )
        network: Network | None = None
        if address.lower() != "all":
            if kind == "local":
                raise ConfigError(f"a local rule takes no address, got {address!r}", path, number)
            try:
                network = parseNetwork(address)
            except ValueError:
                raise ConfigError(
                    f"invalid address {address!r}: expected all, an IP address "
                    f"or a network such as 127.0.0.1/32 or ::1/128",
                    path,
                    number,
                ) from None
        if method.lower() not in methods:
            raise ConfigError(f"unknown auth method {method!r}", path, number)
        rules.append(
            HbaRule(
                type=kind,
                database=database,
                user=user,
                address=network,
                method=method.lower(),
                path=path,
                line=number,
            )
        )
    if not rules:
        warn(f"{path}: no HBA rules: every client will be rejected")
    return tuple(rules)


# --- pgtwist_databases.conf ------------------------------------------------


def _parseSize(text: str, name: str, path: str, line: int, allowAll: bool) -> int | None:
    """
    Parse one size column of the databases file; C{all} gives C{None}.
    """
    if allowAll and text.lower() == "all":
        return None
    try:
        return parseInt(text, 0)
    except ValueError:
        expected = "an integer >= 0 or all" if allowAll else "an integer >= 0"
        raise ConfigError(f"{name}: expected {expected}, got {text!r}", path, line, name) from None


def _readLimitLine(path: str, number: int, fields: list[str], warn: Warn) -> DatabaseLimit:
    """
    Parse one line of the databases file, correcting incoherent sizes.
    """
    if not 3 <= len(fields) <= 6:
        raise ConfigError(
            f"expected DATABASE[=ALIAS,...] USER MAX_SIZE [INITIAL_SIZE [MIN_SIZE "
            f"[PIPELINE]]], got {len(fields)} fields",
            path,
            number,
        )
    database, hasAliases, aliasText = fields[0].partition("=")
    if not database:
        raise ConfigError("missing database name", path, number)
    aliases: tuple[str, ...] = ()
    if hasAliases:
        if database == "all":
            raise ConfigError("'all' cannot have aliases", path, number)
        aliases = tuple(alias.strip() for alias in aliasText.split(","))
        if "" in aliases:
            raise ConfigError(f"empty alias in {fields[0]!r}", path, number)
        for index, alias in enumerate(aliases):
            if alias in aliases[:index]:
                raise ConfigError(f"alias {alias!r} is listed twice", path, number)
    maxSize = _parseSize(fields[2], "max_size", path, number, True)
    initialSize = 0
    if len(fields) > 3:
        initial = _parseSize(fields[3], "initial_size", path, number, True)
        if initial is None and maxSize is None:
            warn(
                f"{path}:{number}: initial_size 'all' needs a numeric max_size; "
                f"using 0 (no prefill)"
            )
        initialSize = (maxSize or 0) if initial is None else initial
    minSize = 0
    if len(fields) > 4:
        minSize = _parseSize(fields[4], "min_size", path, number, False) or 0
    pipeline = None
    if len(fields) > 5:
        try:
            pipeline = parseName(fields[5])
        except ValueError as e:
            raise ConfigError(f"pipeline: {e}", path, number, "pipeline") from e
    # Correct incoherent sizes in pgagroal's order, with pgagroal's wording.
    if initialSize and initialSize < minSize:
        warn(
            f"{path}:{number}: initial_size {initialSize} is smaller than min_size {minSize}; using {minSize}"
        )
        initialSize = minSize
    if maxSize is not None and initialSize > maxSize:
        warn(
            f"{path}:{number}: initial_size {initialSize} is greater than max_size {maxSize}; using {maxSize}"
        )
        initialSize = maxSize
    if maxSize is not None and minSize > maxSize:
        warn(
            f"{path}:{number}: min_size {minSize} is greater than max_size {maxSize}; using {maxSize}"
        )
        minSize = maxSize
    return DatabaseLimit(
        database=database,
        user=fields[1],
        maxSize=maxSize,
        initialSize=initialSize,
        minSize=minSize,
        aliases=aliases,
        pipeline=pipeline,
        path=path,
        line=number,
    )


def readLimitsFile(path: str, maxConnections: int, warn: Warn) -> tuple[DatabaseLimit, ...]:
    """
    Read C{pgtwist_databases.conf}.

    Sizes are integers >= 0; C{all} as MAX_SIZE means "the rest of
    C{max_connections}" (C{None}) and as INITIAL_SIZE means MAX_SIZE.
    Aliases must not name a database of the file, nor another database's
    alias (an alias may be repeated on several lines of its own database).
    The numeric MAX_SIZEs must add up to at most C{max_connections}.
    Incoherent sizes are corrected with a warning, as pgagroal does.
    """
    limits: list[DatabaseLimit] = []
    for number, raw in enumerate(readText(path), 1):
        fields = stripComment(raw, "#").split()
        if fields:
            limits.append(_readLimitLine(path, number, fields, warn))

    pairs: dict[tuple[str, str], int] = {}
    databases = {limit.database for limit in limits}
    aliasOwners: dict[str, DatabaseLimit] = {}
    for limit in limits:
        pair = (limit.database, limit.user)
        if pair in pairs:
            raise ConfigError(
                f"duplicate entry for database {limit.database!r} and user {limit.user!r} "
                f"(first at line {pairs[pair]})",
                path,
                limit.line,
            )
        pairs[pair] = limit.line
        for alias in limit.aliases:
            if alias in databases:
                raise ConfigError(f"alias {alias!r} is also a database name", path, limit.line)
            owner = aliasOwners.setdefault(alias, limit)
            if owner.database != limit.database:
                raise ConfigError(
                    f"alias {alias!r} already names database {owner.database!r} "
                    f"(line {owner.line})",
                    path,
                    limit.line,
                )
    total = sum(limit.maxSize for limit in limits if limit.maxSize is not None)
    if total > maxConnections:
        raise ConfigError(
            f"the max_size values add up to {total}, more than max_connections ({maxConnections})",
            path,
        )
    return tuple(limits)


# --- user vaults -----------------------------------------------------------


def readUsers(path: str, masterKey: bytes | None) -> dict[str, UserEntry]:
    """
    Read a user vault through L{pgtwist.config.vault.readUsersFile}.

    The vault module is imported here, not at the top, so loading a
    configuration without user files does not need it.
    """
    vault = importlib.import_module("pgtwist.config.vault")
    try:
        passwords: Mapping[str, str] = vault.readUsersFile(path, masterKey)
    except vault.VaultError as e:
        raise ConfigError(
            getattr(e, "message", str(e)),
            getattr(e, "path", None) or path,
            getattr(e, "line", None),
        ) from e
    return {name: UserEntry(name, password) for name, password in passwords.items()}


# --- the whole -------------------------------------------------------------
