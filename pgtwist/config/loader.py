# -*- test-case-name: tests.unit.test_config_loader,tests.unit.test_config_files,tests.unit.test_hba -*-
"""
Read pgagroal's family of configuration files into one L{Configuration}.

The files, each with its pgagroal command-line flag:
    - C{pgtwist.conf} (C{-c}): a C{[pgtwist]} (or C{[pgagroal]}) main section
      and one section per PostgreSQL server;
    - C{pgtwist_hba.conf} (C{-a}): C{TYPE DATABASE USER ADDRESS METHOD};
    - C{pgtwist_databases.conf} (C{-l}):
      C{DATABASE[=ALIAS,...] USER MAX_SIZE [INITIAL_SIZE [MIN_SIZE [PIPELINE]]]};
    - the user vaults C{-u}, C{-F}, C{-A} and C{-S}, pgtwist's or pgagroal's,
      read by L{pgtwist.config.vault};
    - PgBouncer's C{auth_file} (the main key of that name), read by
      L{pgtwist.config.authfile}.

A C{pgagroal.conf} and its companions load unchanged. Every problem is a
L{ConfigError} naming the file and line (C{etc/pgtwist.conf:7: ...});
suspicious but harmless input (unknown keys, duplicate keys, sizes that had
to be corrected) is reported through the C{warn} callable and loading goes on.

This is the only module that maps snake_case file keys to the camelCase
fields of L{pgtwist.config.model}.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from pgtwist.config.model import (
    LOAD_BALANCE_HOSTS,
    TARGET_SESSION_ATTRS,
    ConfigPaths,
    Configuration,
    DatabaseLimit,
    HbaRule,
    MainSettings,
    ServerSettings,
    UserEntry,
)
from pgtwist.config.pgagroalkeys import (
    PGAGROAL_NOTED_KEYS,
    PGAGROAL_NOTED_SERVER_KEYS,
    notePgagroalKeys,
    parseServerResetQuery,
    warnMd5,
)
from pgtwist.config.servertls import (
    SERVER_KEYS,
    checkMetricsTls,
    checkPrivateKeyFile,
    parseChannelBinding,
    parseServerSslmode,
    resolveServerTls,
)
from pgtwist.config.values import (
    expandVariables,
    parseBool,
    parseByteSize,
    parseChoice,
    parseDuration,
    parseEndpoint,
    parseEndpointList,
    parseFileMode,
    parseHost,
    parseInt,
    parseLogLevel,
    parseName,
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

from pgtwist.config.authfile import readAuthFile
from pgtwist.config.authquery import authQueryLines, authUserPassword, parseAuthQuery
from pgtwist.config.errors import ConfigError, Warn, readText, stripComment
from pgtwist.config.tables import readHbaFile, readLimitsFile, readUsers
from pgtwist.config.tlsfiles import (
    checkClientTls,
    clientTlsMode,
    parseCiphers,
    parseSslmode,
    parseTlsProtocols,
)

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
    ev_backend hugepage log_line_prefix log_mode
    metrics_ca_file metrics_cache_max_age metrics_cache_max_size
    metrics_cert_file metrics_key_file pidfile rotate_frontend_password_length
    rotate_frontend_password_timeout
    track_prepared_statements tracker update_process_title
    """.split()
)
_IGNORED_SERVER_KEYS: frozenset[str] = frozenset()

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
    return stripComment(value, "#;").strip()


def _parseSections(path: str, lines: list[str], warn: Warn) -> list[_Section]:
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
            text = stripComment(text, "#;").strip()
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
            text = stripComment(text, "#;").strip()
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
    for part, at in zip(parts[1:], keyAt[1:]):
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

    def keyFile(value: str) -> str | None:
        """A private key file no one else may read, or C{None} when empty."""
        found = optionalPath(value)
        if found is not None:
            checkPrivateKeyFile(found)
        return found

    return {
        "host": ("host", parseHost),
        "port": ("port", port),
        "unix_socket_dir": ("unixSocketDir", optionalPath),
        "log_type": ("logType", lambda v: parseChoice(v, ("console", "file", "syslog"))),
        "log_level": ("logLevel", parseLogLevel),
        "log_path": ("logPath", lambda v: path(v) or _DEFAULT_MAIN.logPath),
        "log_file_mode": ("logFileMode", parseFileMode),
        "log_connections": ("logConnections", parseBool),
        "log_disconnections": ("logDisconnections", parseBool),
        "max_connections": ("maxConnections", lambda v: parseInt(v, 1, 10000)),
        "max_client_conn": ("maxClientConn", lambda v: parseInt(v, 1)),
        "idle_timeout": ("idleTimeout", parseDuration),
        "autodb_idle_timeout": ("autodbIdleTimeout", parseDuration),
        "blocking_timeout": ("blockingTimeout", parseDuration),
        "authentication_timeout": ("authenticationTimeout", parseDuration),
        "max_connection_age": ("maxConnectionAge", parseDuration),
        "pipeline": ("pipeline", parseName),
        "validation": ("validation", lambda v: parseChoice(v, ("off", "foreground", "background"))),
        "background_interval": ("backgroundInterval", parseDuration),
        "max_retries": ("maxRetries", nonNegative),
        "allow_unknown_users": ("allowUnknownUsers", parseBool),
        "auth_file": ("authFile", optionalPath),
        "failover": ("failover", parseBool),
        "failover_script": ("failoverScript", optionalPath),
        "disconnect_client": ("disconnectClient", parseDuration),
        "disconnect_client_force": ("disconnectClientForce", parseBool),
        "shutdown_timeout": ("shutdownTimeout", parseDuration),
        "keep_alive": ("keepAlive", parseBool),
        "nodelay": ("nodelay", parseBool),
        "backlog": ("backlog", nonNegative),
        "tls": ("tls", parseBool),
        "metrics": ("metrics", parseEndpoint),
        "metrics_cert_file": ("metricsCertFile", optionalPath),
        "metrics_key_file": ("metricsKeyFile", keyFile),
        "metrics_ca_file": ("metricsCaFile", optionalPath),
        "management": ("management", port),
        "listen": ("listen", parseEndpointList),
        "manhole": ("manhole", parseManhole),
        "max_prepared_statements": ("maxPreparedStatements", nonNegative),
        "max_listen_channels": ("maxListenChannels", nonNegative),
        "max_pending_notifications": ("maxPendingNotifications", lambda v: parseInt(v, 1)),
        "workers": ("workers", lambda v: parseInt(v, 1)),
        "log_rotation_size": ("logRotationSize", parseByteSize),
        "log_rotation_age": ("logRotationAge", parseDuration),
        "log_format": ("logFormat", lambda v: parseChoice(v, ("text", "json"))),
        "stats_users": ("statsUsers", _parseNames),
        "stats_period": ("statsPeriod", parseDuration),
        "upgrade_grace_period": ("upgradeGracePeriod", parseDuration),
        "manhole_keys_dir": ("manholeKeysDir", optionalPath),
        "server_tls_sslmode": ("serverTlsSslmode", parseServerSslmode),
        "server_tls_ca_file": ("serverTlsCaFile", optionalPath),
        "server_tls_cert_file": ("serverTlsCertFile", optionalPath),
        "server_tls_key_file": ("serverTlsKeyFile", keyFile),
        "server_tls_protocols": ("serverTlsProtocols", parseTlsProtocols),
        "server_tls_ciphers": ("serverTlsCiphers", lambda v: v.strip() or "default"),
        "tls_cert_file": ("tlsCertFile", optionalPath),
        "tls_key_file": ("tlsKeyFile", optionalPath),
        "tls_ca_file": ("tlsCaFile", optionalPath),
        "client_tls_sslmode": ("clientTlsSslmode", parseSslmode),
        "client_tls_protocols": ("clientTlsProtocols", parseTlsProtocols),
        "client_tls_ciphers": ("clientTlsCiphers", parseCiphers),
        "auth_query": ("authQuery", parseAuthQuery),
        "auth_user": ("authUser", lambda v: v.strip() or None),
        "auth_dbname": ("authDbname", lambda v: v.strip() or None),
        "auth_query_cache_ttl": ("authQueryCacheTtl", parseDuration),
        "auth_query_cache_size": ("authQueryCacheSize", lambda v: parseInt(v, 1)),
        "transaction_timeout": ("transactionTimeout", parseDuration),
        "idle_transaction_timeout": ("idleTransactionTimeout", parseDuration),
        "query_timeout": ("queryTimeout", parseDuration),
        "query_wait_timeout": ("queryWaitTimeout", parseDuration),
        "query_wait_notify": ("queryWaitNotify", parseDuration),
        "client_idle_timeout": ("clientIdleTimeout", parseDuration),
        "max_user_client_connections": ("maxUserClientConnections", nonNegative),
        "max_db_client_connections": ("maxDbClientConnections", nonNegative),
        "reserve_pool_size": ("reservePoolSize", nonNegative),
        "reserve_pool_timeout": ("reservePoolTimeout", parseDuration),
        "server_connect_timeout": ("serverConnectTimeout", parseDuration),
        "server_reset_query": ("serverResetQuery", parseServerResetQuery),
        "server_reset_query_always": ("serverResetQueryAlways", parseBool),
        "health_check": ("healthCheck", parseBool),
        "health_check_period": ("healthCheckPeriod", parseDuration),
        "health_check_timeout": ("healthCheckTimeout", parseDuration),
        "health_check_user": ("healthCheckUser", lambda v: v.strip() or None),
        "health_check_database": ("healthCheckDatabase", lambda v: v.strip() or None),
        "target_session_attrs": (
            "targetSessionAttrs",
            lambda v: parseChoice(v, TARGET_SESSION_ATTRS),
        ),
        "load_balance_hosts": ("loadBalanceHosts", lambda v: parseChoice(v, LOAD_BALANCE_HOSTS)),
        "max_lag_in_bytes": ("maxLagInBytes", parseByteSize),
        "catchup_timeout": ("catchupTimeout", parseDuration),
    }


_SERVER_PARSERS: dict[str, tuple[str, _Parser]] = {
    "host": ("host", parseHost),
    "port": ("port", lambda v: parseInt(v, 1, 65535)),
    "primary": ("primary", parseBool),
    "tls": ("tls", parseBool),
    "server_tls_sslmode": ("sslmode", parseServerSslmode),
    "tls_ca_file": ("tlsCaFile", lambda v: v.strip() or None),
    "tls_cert_file": ("tlsCertFile", lambda v: v.strip() or None),
    "tls_key_file": ("tlsKeyFile", lambda v: v.strip() or None),
    "server_tls_protocols": ("tlsProtocols", parseTlsProtocols),
    "server_tls_ciphers": ("tlsCiphers", lambda v: v.strip() or None),
    "channel_binding": ("channelBinding", parseChannelBinding),
}


def _applySection(
    path: str,
    section: _Section,
    parsers: Mapping[str, tuple[str, _Parser]],
    ignored: frozenset[str],
    required: Iterable[str],
    warn: Warn,
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
    path: str, warn: Warn, environ: Mapping[str, str]
) -> tuple[MainSettings, tuple[ServerSettings, ...]]:
    """
    Read the main file: the main section and the server sections.
    """
    sections = _parseSections(path, readText(path), warn)
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
            path,
            mains[0],
            _mainParsers(environ),
            _IGNORED_MAIN_KEYS | PGAGROAL_NOTED_KEYS,
            ("host", "port"),
            warn,
        )
    )
    notePgagroalKeys(path, {e.key: (e.value, e.line) for e in mains[0].entries.values()}, warn)
    checkClientTls(main, path)

    try:
        checkMetricsTls(main)
    except ValueError as e:
        key = str(e).partition(":")[0]
        entry = mains[0].entries.get(key)
        raise ConfigError(str(e), path, entry.line if entry else mains[0].line, key) from None

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
        values = _applySection(
            path,
            section,
            _SERVER_PARSERS,
            _IGNORED_SERVER_KEYS | PGAGROAL_NOTED_SERVER_KEYS,
            ("host", "port"),
            warn,
        )
        notePgagroalKeys(
            path, {e.key: (e.value, e.line) for e in section.entries.values()}, warn, server=True
        )
        given = {field: values.pop(field) for field in SERVER_KEYS.values() if field in values}
        try:
            values.update(resolveServerTls(main, given, values.get("tls")))
        except ValueError as e:
            key = str(e).partition(":")[0]
            entry = section.entries.get(key)
            raise ConfigError(
                f"[{section.name}] {e}", path, entry.line if entry else section.line, key
            ) from None
        server = ServerSettings(name=section.name, **values)
        if server.channelBinding == "require" and (
            server.sslmode == "disable" or server.host.startswith("/")
        ):
            warn(
                f"{path}:{section.entries['channel_binding'].line}: channel_binding: require "
                f"needs TLS, which [{server.name}] never uses (a unix socket, or sslmode "
                "disable): every login to it fails"
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


def _checkAuthQuery(config: Configuration, configPath: str) -> None:
    """
    Refuse an auth_query that could not run: its role (C{auth_user}, else
    the superuser of the C{-S} file) must have a password in the users
    file or the superuser file, for the main section and for every
    databases-file line that sets an auth_query key.

    @raise ConfigError: Naming the line or key at fault.
    """
    main = config.main
    places: list[tuple[str | None, str, int | None]] = []
    if main.authQuery is not None or main.authUser is not None:
        places.append((main.authUser, configPath, None))
    for limit in authQueryLines(config):
        places.append((limit.authUser or main.authUser, limit.path, limit.line))
    for name, path, line in places:
        if name is None:
            if config.superuser is None:
                raise ConfigError(
                    "auth_query runs as auth_user, or as the superuser of the superuser "
                    "file (-S); neither is given",
                    path,
                    line,
                    "auth_user",
                )
            name = config.superuser.name
        if authUserPassword(config, name) is None:
            raise ConfigError(
                f"auth_query runs as {name!r}, who has no password in the users file (-u) "
                "or the superuser file (-S)",
                path,
                line,
                "auth_user",
            )


def _checkHealthCheck(config: Configuration, configPath: str) -> None:
    """
    Refuse health checks with no one to log in as: C{health_check_user},
    else the superuser of the C{-S} file. Its password, if PostgreSQL asks
    for one, comes from the users file or the superuser file.

    @raise ConfigError: Naming C{health_check_user}.
    """
    main = config.main
    if main.healthCheck and main.healthCheckUser is None and config.superuser is None:
        raise ConfigError(
            "health checks log in as health_check_user, or as the superuser of the "
            "superuser file (-S); neither is given",
            configPath,
            None,
            "health_check_user",
        )


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

    @param masterKey: The vault master key; C{None} lets L{pgtwist.config.vault}
        read C{~/.pgtwist/master.key} (C{~/.pgagroal/master.key} first for
        pgagroal's users files).
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
        hba = readHbaFile(hbaPath, methods, report)
        warnMd5(hba, report)
    limits: tuple[DatabaseLimit, ...] = ()
    if limitsPath is not None:
        limits = readLimitsFile(limitsPath, main.maxConnections, report)
    users = readUsers(usersPath, masterKey) if usersPath is not None else {}
    frontendUsers: dict[str, UserEntry] = {}
    if frontendUsersPath is not None:
        frontendUsers = readUsers(frontendUsersPath, masterKey)
        for name in frontendUsers:
            if name not in users:
                where = f"the users file {usersPath}" if usersPath else "a users file (-u)"
                raise ConfigError(
                    f"frontend user {name!r} must also be in {where}", frontendUsersPath
                )
    authFile = readAuthFile(main.authFile, report) if main.authFile else {}
    admins = readUsers(adminsPath, masterKey) if adminsPath is not None else {}
    superuser = None
    if superuserPath is not None:
        entries = list(readUsers(superuserPath, masterKey).values())
        if len(entries) != 1:
            raise ConfigError(
                f"expected exactly one user in the superuser file, found {len(entries)}",
                superuserPath,
            )
        superuser = entries[0]
    for rule in hba:
        if rule.needsRoles and (superuser is None or superuser.password is None):
            raise ConfigError(
                "+role and samerole need role membership from PostgreSQL, which pgtwist "
                "reads as the superuser of the superuser file (-S); none is given",
                rule.path,
                rule.line,
            )
    for rule in hba:
        if rule.clientcert and (clientTlsMode(main) == "disable" or not main.tlsCaFile):
            what = "cert authentication" if rule.method == "cert" else "clientcert"
            raise ConfigError(
                f"{what} needs client certificates verified against tls_ca_file, with TLS "
                "for clients on (client_tls_sslmode or tls): this rule could never match",
                rule.path,
                rule.line,
            )
    configuration = Configuration(
        main=main,
        servers=servers,
        hba=hba,
        limits=limits,
        users=users,
        frontendUsers=frontendUsers,
        admins=admins,
        superuser=superuser,
        authFile=authFile,
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
    _checkAuthQuery(configuration, configPath)
    _checkHealthCheck(configuration, configPath)
    return configuration
