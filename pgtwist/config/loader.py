# -*- test-case-name: tests.unit.test_config_loader,tests.unit.test_config_files,tests.unit.test_hba -*-
"""
Read pgagroal's family of configuration files into one L{Configuration}.

The files, each with its pgagroal command-line flag:
    - C{pgtwist.conf} (C{-c}): a C{[pgtwist]} (or C{[pgagroal]}) main section
      and one section per PostgreSQL server;
    - C{pgtwist_hba.conf} (C{-a}): C{TYPE DATABASE USER ADDRESS METHOD};
    - C{pgtwist_databases.conf} (C{-l}):
      C{DATABASE[=ALIAS,...] USER MAX_SIZE [INITIAL_SIZE [MIN_SIZE [PIPELINE]]]};
    - the user vaults C{-u}, C{-F}, C{-A} and C{-S}, read by L{pgtwist.vault}.

A C{pgagroal.conf} and its companions load unchanged. Every problem is a
L{ConfigError} naming the file and line (C{etc/pgtwist.conf:7: ...});
suspicious but harmless input (unknown keys, duplicate keys, sizes that had
to be corrected) is reported through the C{warn} callable and loading goes on.

This is the only module that maps snake_case file keys to the camelCase
fields of L{pgtwist.config.model}.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from pgtwist.config.model import (
    ConfigPaths,
    Configuration,
    DatabaseLimit,
    HbaRule,
    MainSettings,
    Network,
    ServerSettings,
    UserEntry,
)
from pgtwist.config.values import (
    expandVariables,
    parseBool,
    parseByteSize,
    parseChoice,
    parseDuration,
    parseEndpoint,
    parseEndpointList,
    parseHost,
    parseInt,
    parseLogLevel,
    parseName,
    parseNetwork,
    stripQuotes,
)

__all__ = [
    "DEFAULT_AUTH_METHODS",
    "MAIN_SECTIONS",
    "MAX_SERVERS",
    "ConfigError",
    "checkManholeEndpoint",
    "findConfigFiles",
    "loadConfiguration",
]

_log = Logger()

#: The names the main section may have; C{[pgagroal]} lets a pgagroal.conf load unchanged.
MAIN_SECTIONS = ("pgtwist", "pgagroal")

#: pgagroal's limit on server sections.
MAX_SERVERS = 64

#: The HBA methods pgagroal knows; C{all} means any method (what PostgreSQL asks for).
DEFAULT_AUTH_METHODS = ("trust", "reject", "password", "md5", "scram-sha-256", "all")

#: pgagroal keys pgtwist reads without using (yet): accepted silently.
_IGNORED_MAIN_KEYS = frozenset(
    """
    auth_query ev_backend hugepage log_line_prefix log_mode
    metrics_ca_file metrics_cache_max_age metrics_cache_max_size
    metrics_cert_file metrics_key_file pidfile rotate_frontend_password_length
    rotate_frontend_password_timeout tls_ca_file tls_cert_file tls_key_file
    track_prepared_statements tracker update_process_title
    """.split()
)
_IGNORED_SERVER_KEYS = frozenset({"tls_ca_file", "tls_cert_file", "tls_key_file"})

_Warn = Callable[[str], None]
_Parser = Callable[[str], Any]

#: The files C{findConfigFiles} looks for, as C{loadConfiguration} argument
#: names; the pgtwist name is preferred over pgagroal's.
_STANDARD_FILES = {
    "configPath": ".conf",
    "hbaPath": "_hba.conf",
    "limitsPath": "_databases.conf",
    "usersPath": "_users.conf",
    "frontendUsersPath": "_frontend_users.conf",
    "adminsPath": "_admins.conf",
    "superuserPath": "_superuser.conf",
}

#: The defaults, for keys whose empty value means "the default"
#: (pgagroal's own sample has C{log_path =}).
_DEFAULT_MAIN = MainSettings()


class ConfigError(Exception):
    """
    The configuration cannot be used. Printed as C{path:line: message}
    (or C{path: message} when no single line is at fault).

    @ivar message: What is wrong, naming the key and the expected form.
    @ivar path: The file at fault.
    @ivar line: The 1-based line number, or C{None}.
    @ivar key: The configuration key at fault, or C{None}.
    """

    def __init__(
        self, message: str, path: str, line: int | None = None, key: str | None = None
    ) -> None:
        super().__init__(message, path, line, key)
        self.message = message
        self.path = path
        self.line = line
        self.key = key

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"


def _defaultWarn(message: str) -> None:
    """
    Report a configuration warning through twisted.logger.
    """
    _log.warn("{configWarning}", configWarning=message)


# --- the main file ---------------------------------------------------------


@dataclass
class _Entry:
    """
    One C{key = value} line, the value already without comment and quotes.
    """

    key: str
    value: str
    line: int


@dataclass
class _Section:
    """
    One C{[name]} section and its entries (the last one wins for each key).
    """

    name: str
    line: int
    entries: dict[str, _Entry] = field(default_factory=dict)


def _readText(path: str) -> list[str]:
    """
    Read a whole file as lines, turning I/O errors into L{ConfigError}.
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as e:
        raise ConfigError(f"not valid UTF-8 ({e.reason})", path) from e
    except OSError as e:
        raise ConfigError(f"cannot read the file: {e.strerror}", path) from e


def _stripComment(text: str, markers: str) -> str:
    """
    Cut a line at the first comment marker.
    """
    for index, char in enumerate(text):
        if char in markers:
            return text[:index]
    return text


def _parseValue(text: str, path: str, line: int) -> str:
    """
    The value of a C{key = value} line: the text after C{=} without its
    trailing comment, and without its quotes if it is quoted.

    pgagroal allows trailing comments (C{log_type = console # stdout}) and
    quoted values holding comment characters or spaces
    (C{log_line_prefix = "PGAGROAL #%Y" # why}); only a quote that starts
    the value opens a quoted value, so C{it's} needs no quoting.

    @raise ConfigError: When text other than a comment follows the
        closing quote.
    """
    value = text.strip()
    if value[:1] in ("'", '"'):
        end = value.find(value[0], 1)
        if end != -1:
            rest = value[end + 1 :].strip()
            if rest and rest[0] not in "#;":
                raise ConfigError(f"unexpected text after the closing quote: {rest!r}", path, line)
            return stripQuotes(value[: end + 1])
    return _stripComment(value, "#;").strip()


def _parseSections(path: str, lines: list[str], warn: _Warn) -> list[_Section]:
    """
    Split the main file into sections of C{key = value} entries.

    Blank lines and comments (C{#} or C{;}, whole-line or trailing) are
    skipped. Keys are case-insensitive. A key repeated in a section is
    reported and the last value wins; a key before any section header, a
    line that is neither a header nor C{key = value}, and a repeated section
    name are errors.
    """
    sections: list[_Section] = []
    seen: dict[str, _Section] = {}
    current: _Section | None = None
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text[0] in "#;":
            continue
        if text.startswith("["):
            text = _stripComment(text, "#;").strip()
            if not text.endswith("]") or not text[1:-1].strip():
                raise ConfigError(
                    f"expected a section header such as [primary], got {text!r}", path, number
                )
            name = text[1:-1].strip()
            if name in seen:
                raise ConfigError(
                    f"duplicate section [{name}] (first at line {seen[name].line})", path, number
                )
            current = _Section(name, number)
            seen[name] = current
            sections.append(current)
            continue
        key, equals, rest = text.partition("=")
        key = key.strip().lower()
        if not equals or not key:
            text = _stripComment(text, "#;").strip()
            raise ConfigError(f"expected 'key = value', got {text!r}", path, number)
        if current is None:
            raise ConfigError(
                f"key {key!r} is outside any section; put it under [pgtwist]", path, number, key
            )
        previous = current.entries.get(key)
        if previous is not None:
            warn(
                f"{path}:{number}: duplicate key {key!r} in section [{current.name}] "
                f"(also at line {previous.line}); the last one wins"
            )
        current.entries[key] = _Entry(key, _parseValue(rest, path, number), number)
    return sections


def _parseNames(value: str) -> tuple[str, ...]:
    """
    A comma-separated list of names (C{stats_users}).
    """
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _splitEndpoint(description: str) -> tuple[str, list[str], dict[str, str]]:
    """
    A strports description as (type, positional arguments, keyword
    arguments), with C{\\} escapes undone as Twisted's parser does.
    """
    parts: list[str] = [""]
    escaped = False
    keyAt: list[int | None] = [None]
    for char in description:
        if escaped:
            parts[-1] += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append("")
            keyAt.append(None)
        else:
            if char == "=" and keyAt[-1] is None:
                keyAt[-1] = len(parts[-1])
            parts[-1] += char
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for part, at in zip(parts[1:], keyAt[1:], strict=True):
        if at is None:
            args.append(part)
        else:
            kwargs[part[:at]] = part[at + 1 :]
    return parts[0].lower(), args, kwargs


def _isLoopback(interface: str) -> bool:
    if interface.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


def checkManholeEndpoint(description: str) -> str:
    """
    Check that a C{manhole} endpoint can only be reached from this machine:
    a C{unix:} socket, or C{tcp}/C{tcp6} with an C{interface} of
    127.0.0.1 (any 127.x address), C{::1} or C{localhost}. Whoever logs in
    to the manhole controls the process.

    @return: C{description}, unchanged.
    @raise ValueError: For anything else (no interface means every address).
    """
    kind, args, kwargs = _splitEndpoint(description)
    if kind == "unix":
        return description
    if kind in ("tcp", "tcp6"):
        interface = kwargs.get("interface", args[1] if len(args) > 1 else "")
        if _isLoopback(interface):
            return description
    raise ValueError(
        f"the manhole must listen on a unix socket or on loopback only, such as "
        f"tcp:2222:interface=127.0.0.1 or unix:/run/pgtwist/manhole.sock; got {description!r}"
    )


def parseManhole(value: str) -> str | None:
    """
    Parse C{manhole}: off as L{parseEndpoint} says; a bare port C{N} is
    C{tcp:N:interface=127.0.0.1}; any other endpoint must pass
    L{checkManholeEndpoint}.

    @raise ValueError: For a bad endpoint or one reachable from elsewhere.
    """
    endpoint = parseEndpoint(value)
    if endpoint is None:
        return None
    if value.strip().isdigit():
        return f"{endpoint}:interface=127.0.0.1"
    return checkManholeEndpoint(endpoint)


def _mainParsers(environ: Mapping[str, str]) -> dict[str, tuple[str, _Parser]]:
    """
    The keys of the main section: key -> (L{MainSettings} field, parser).
    """

    def path(value: str) -> str:
        """A path, with environment variables expanded."""
        return expandVariables(value.strip(), environ)

    def optionalPath(value: str) -> str | None:
        """A path, or C{None} when empty."""
        return path(value) or None

    def port(value: str) -> int:
        """A TCP port; 0 is "any" for listening, "off" for management."""
        return parseInt(value, 0, 65535)

    def nonNegative(value: str) -> int:
        """A count that may be 0."""
        return parseInt(value, 0)

    return {
        "host": ("host", parseHost),
        "port": ("port", port),
        "unix_socket_dir": ("unixSocketDir", optionalPath),
        "log_type": ("logType", lambda v: parseChoice(v, ("console", "file", "syslog"))),
        "log_level": ("logLevel", parseLogLevel),
        "log_path": ("logPath", lambda v: path(v) or _DEFAULT_MAIN.logPath),
        "log_connections": ("logConnections", parseBool),
        "log_disconnections": ("logDisconnections", parseBool),
        "max_connections": ("maxConnections", lambda v: parseInt(v, 1, 10000)),
        "idle_timeout": ("idleTimeout", parseDuration),
        "blocking_timeout": ("blockingTimeout", parseDuration),
        "authentication_timeout": ("authenticationTimeout", parseDuration),
        "max_connection_age": ("maxConnectionAge", parseDuration),
        "pipeline": ("pipeline", parseName),
        "validation": ("validation", lambda v: parseChoice(v, ("off", "foreground", "background"))),
        "background_interval": ("backgroundInterval", parseDuration),
        "max_retries": ("maxRetries", nonNegative),
        "allow_unknown_users": ("allowUnknownUsers", parseBool),
        "failover": ("failover", parseBool),
        "failover_script": ("failoverScript", optionalPath),
        "disconnect_client": ("disconnectClient", parseDuration),
        "disconnect_client_force": ("disconnectClientForce", parseBool),
        "keep_alive": ("keepAlive", parseBool),
        "nodelay": ("nodelay", parseBool),
        "backlog": ("backlog", nonNegative),
        "tls": ("tls", parseBool),
        "metrics": ("metrics", parseEndpoint),
        "management": ("management", port),
        "listen": ("listen", parseEndpointList),
        "manhole": ("manhole", parseManhole),
        "max_prepared_statements": ("maxPreparedStatements", nonNegative),
        "workers": ("workers", lambda v: parseInt(v, 1)),
        "log_rotation_size": ("logRotationSize", parseByteSize),
        "log_rotation_age": ("logRotationAge", parseDuration),
        "log_format": ("logFormat", lambda v: parseChoice(v, ("text", "json"))),
        "stats_users": ("statsUsers", _parseNames),
        "stats_period": ("statsPeriod", parseDuration),
        "manhole_keys_dir": ("manholeKeysDir", optionalPath),
    }


_SERVER_PARSERS: dict[str, tuple[str, _Parser]] = {
    "host": ("host", parseHost),
    "port": ("port", lambda v: parseInt(v, 1, 65535)),
    "primary": ("primary", parseBool),
    "tls": ("tls", parseBool),
}


def _applySection(
    path: str,
    section: _Section,
    parsers: Mapping[str, tuple[str, _Parser]],
    ignored: frozenset[str],
    required: Iterable[str],
    warn: _Warn,
) -> dict[str, Any]:
    """
    Parse a section's entries into dataclass keyword arguments.

    @raise ConfigError: For a bad value or a missing required key.
    """
    values: dict[str, Any] = {}
    for entry in section.entries.values():
        if entry.key in parsers:
            fieldName, parser = parsers[entry.key]
            try:
                values[fieldName] = parser(entry.value)
            except ValueError as e:
                raise ConfigError(f"{entry.key}: {e}", path, entry.line, entry.key) from e
        elif entry.key not in ignored:
            warn(f"{path}:{entry.line}: unknown key {entry.key!r} in section [{section.name}]")
    for key in required:
        if key not in section.entries:
            raise ConfigError(
                f"missing required key {key!r} in section [{section.name}]", path, section.line, key
            )
    return values


def _readMainFile(
    path: str, warn: _Warn, environ: Mapping[str, str]
) -> tuple[MainSettings, tuple[ServerSettings, ...]]:
    """
    Read the main file: the main section and the server sections.
    """
    sections = _parseSections(path, _readText(path), warn)
    mains = [s for s in sections if s.name.lower() in MAIN_SECTIONS]
    if not mains:
        raise ConfigError("no [pgtwist] (or [pgagroal]) main section", path)
    if len(mains) > 1:
        raise ConfigError(
            f"more than one main section: [{mains[0].name}] at line {mains[0].line} "
            f"and [{mains[1].name}]",
            path,
            mains[1].line,
        )
    main = MainSettings(
        **_applySection(
            path, mains[0], _mainParsers(environ), _IGNORED_MAIN_KEYS, ("host", "port"), warn
        )
    )

    servers: list[ServerSettings] = []
    lines: dict[str, int] = {}
    primaryOf: tuple[str, int] | None = None
    for section in sections:
        if section is mains[0]:
            continue
        if len(servers) == MAX_SERVERS:
            raise ConfigError(
                f"too many server sections: at most {MAX_SERVERS}", path, section.line
            )
        server = ServerSettings(
            name=section.name,
            **_applySection(
                path, section, _SERVER_PARSERS, _IGNORED_SERVER_KEYS, ("host", "port"), warn
            ),
        )
        for other in servers:
            if (other.host, other.port) == (server.host, server.port):
                raise ConfigError(
                    f"server [{server.name}] has the same host and port as "
                    f"[{other.name}] (line {lines[other.name]})",
                    path,
                    section.line,
                )
        if server.primary:
            if primaryOf is not None:
                raise ConfigError(
                    f"only one server may have primary = on; [{primaryOf[0]}] "
                    f"(line {primaryOf[1]}) already has it",
                    path,
                    section.entries["primary"].line,
                    "primary",
                )
            primaryOf = (server.name, section.line)
        servers.append(server)
        lines[server.name] = section.line
    if not servers:
        raise ConfigError("no server section: add one such as [primary] with host and port", path)
    return main, tuple(servers)


# --- pgtwist_hba.conf ------------------------------------------------------


def _readHbaFile(path: str, authMethods: Iterable[str], warn: _Warn) -> tuple[HbaRule, ...]:
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
    for number, raw in enumerate(_readText(path), 1):
        fields = _stripComment(raw, "#").split()
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


def _readLimitLine(path: str, number: int, fields: list[str], warn: _Warn) -> DatabaseLimit:
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


def _readLimitsFile(path: str, maxConnections: int, warn: _Warn) -> tuple[DatabaseLimit, ...]:
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
    for number, raw in enumerate(_readText(path), 1):
        fields = _stripComment(raw, "#").split()
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


def _readUsers(path: str, masterKey: bytes | None) -> dict[str, UserEntry]:
    """
    Read a user vault through L{pgtwist.vault.readUsersFile}.

    The vault module is imported here, not at the top, so loading a
    configuration without user files does not need it.
    """
    vault = importlib.import_module("pgtwist.vault")
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


def findConfigFiles(directory: str) -> dict[str, str]:
    """
    Find the standard files of pgagroal's C{-D} directory option.

    For each file, C{pgtwist<suffix>} is preferred over C{pgagroal<suffix>}
    (C{pgtwist.conf} or C{pgagroal.conf}, C{pgtwist_hba.conf} or
    C{pgagroal_hba.conf}, C{_databases.conf}, C{_users.conf},
    C{_frontend_users.conf}, C{_admins.conf}, C{_superuser.conf}).

    @return: The files present, keyed by L{loadConfiguration}'s argument
        names (C{configPath}, C{hbaPath}, C{limitsPath}, C{usersPath},
        C{frontendUsersPath}, C{adminsPath}, C{superuserPath}), so that
        C{loadConfiguration(**findConfigFiles(d))} works when a main file
        is there. Flags given explicitly should override these entries.
    """
    found = {}
    for argument, suffix in _STANDARD_FILES.items():
        for prefix in MAIN_SECTIONS:
            candidate = os.path.join(directory, prefix + suffix)
            if os.path.isfile(candidate):
                found[argument] = candidate
                break
    return found


def loadConfiguration(
    configPath: str,
    hbaPath: str | None = None,
    limitsPath: str | None = None,
    usersPath: str | None = None,
    frontendUsersPath: str | None = None,
    adminsPath: str | None = None,
    superuserPath: str | None = None,
    masterKey: bytes | None = None,
    warn: Callable[[str], None] | None = None,
    authMethods: Iterable[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Configuration:
    """
    Read and validate every file of the family into one L{Configuration}.

    Only C{configPath} is required; a file not given leaves its part of the
    configuration empty (no HBA rules, no limits, no users).

    @param masterKey: The vault master key; C{None} lets L{pgtwist.vault}
        read C{~/.pgtwist/master.key}.
    @param warn: Called with one C{path:line: message} string per warning;
        by default warnings go to twisted.logger.
    @param authMethods: The HBA method names accepted (the installed
        L{pgtwist.interfaces.IAuthMethod} plugins' names, plus C{all});
        default L{DEFAULT_AUTH_METHODS}.
    @param environ: The environment for C{$VAR} in C{log_path},
        C{unix_socket_dir} and C{failover_script}; default C{os.environ}.
    @raise ConfigError: For the first problem found.
    """
    report = warn if warn is not None else _defaultWarn
    main, servers = _readMainFile(configPath, report, os.environ if environ is None else environ)
    hba: tuple[HbaRule, ...] = ()
    if hbaPath is not None:
        methods = DEFAULT_AUTH_METHODS if authMethods is None else authMethods
        hba = _readHbaFile(hbaPath, methods, report)
    limits: tuple[DatabaseLimit, ...] = ()
    if limitsPath is not None:
        limits = _readLimitsFile(limitsPath, main.maxConnections, report)
    users = _readUsers(usersPath, masterKey) if usersPath is not None else {}
    frontendUsers: dict[str, UserEntry] = {}
    if frontendUsersPath is not None:
        frontendUsers = _readUsers(frontendUsersPath, masterKey)
        for name in frontendUsers:
            if name not in users:
                where = f"the users file {usersPath}" if usersPath else "a users file (-u)"
                raise ConfigError(
                    f"frontend user {name!r} must also be in {where}", frontendUsersPath
                )
    admins = _readUsers(adminsPath, masterKey) if adminsPath is not None else {}
    superuser = None
    if superuserPath is not None:
        entries = list(_readUsers(superuserPath, masterKey).values())
        if len(entries) != 1:
            raise ConfigError(
                f"expected exactly one user in the superuser file, found {len(entries)}",
                superuserPath,
            )
        superuser = entries[0]
    return Configuration(
        main=main,
        servers=servers,
        hba=hba,
        limits=limits,
        users=users,
        frontendUsers=frontendUsers,
        admins=admins,
        superuser=superuser,
        paths=ConfigPaths(
            config=configPath,
            hba=hbaPath,
            limits=limitsPath,
            users=usersPath,
            frontendUsers=frontendUsersPath,
            admins=adminsPath,
            superuser=superuserPath,
        ),
    )
