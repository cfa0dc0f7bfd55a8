# -*- test-case-name: tests.unit.test_config_files -*-
"""
The line-oriented files of the family: C{pgtwist_hba.conf}
(C{TYPE DATABASE USER ADDRESS METHOD}), C{pgtwist_databases.conf}
(C{DATABASE[=ALIAS,...] USER MAX_SIZE [INITIAL_SIZE [MIN_SIZE [PIPELINE]]]})
and the users vaults.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping

from pgtwist.config.errors import ConfigError, Warn, readText, stripComment
from pgtwist.config.model import (
    LOAD_BALANCE_HOSTS,
    TARGET_SESSION_ATTRS,
    DatabaseLimit,
    HbaName,
    HbaRule,
    Network,
    UserEntry,
)
from pgtwist.config.values import (
    parseByteSize,
    parseChoice,
    parseDuration,
    parseInt,
    parseName,
    parseNetwork,
)

__all__ = ["readHbaFile", "readLimitsFile", "readUsers"]


#: How deep C{@file}s may include C{@file}s (PostgreSQL stops at 10 too).
_MAX_INCLUDE_DEPTH = 10

#: The DATABASE keywords PostgreSQL knows; C{samegroup} is C{samerole}'s
#: old spelling.
_DATABASE_KEYWORDS = {
    "all": "all",
    "sameuser": "sameuser",
    "samerole": "samerole",
    "samegroup": "samerole",
    "replication": "replication",
}


class _Token:
    """
    One word of an HBA line: its text with quotes removed, and whether any
    of it was quoted (a quoted word is never a keyword, C{+group} or
    C{@file}).
    """

    __slots__ = ("quoted", "text")

    def __init__(self, text: str, quoted: bool) -> None:
        self.text = text
        self.quoted = quoted


def _hbaFields(text: str, path: str, line: int) -> list[list[_Token]]:
    """
    Split one (joined) line into fields, each a comma-separated list of
    words, as PostgreSQL's C{pg_hba.conf} tokenizer does: blanks separate
    fields, commas separate the items of a field (blanks may follow a
    comma), double quotes keep blanks, commas and C{#} inside a word (C{""}
    in quotes is one quote), and C{#} outside quotes starts a comment.
    """
    fields: list[list[_Token]] = []
    current: list[_Token] = []
    word: list[str] = []
    inWord = quoted = inQuotes = afterComma = False
    index, size = 0, len(text)
    while index < size:
        char = text[index]
        if inQuotes:
            if char == '"':
                if index + 1 < size and text[index + 1] == '"':
                    word.append('"')
                    index += 1
                else:
                    inQuotes = False
            else:
                word.append(char)
        elif char == '"':
            inWord = quoted = inQuotes = True
        elif char == "#":
            break
        elif char == "," or char.isspace():
            if inWord:
                current.append(_Token("".join(word), quoted))
                word, inWord, quoted = [], False, False
                afterComma = False
            if char == ",":
                if afterComma or not current:
                    raise ConfigError("empty item in a comma-separated list", path, line)
                afterComma = True
            elif current and not afterComma:
                # A blank ends the field, unless a comma follows it.
                rest = text[index:].lstrip()
                if not rest.startswith(","):
                    fields.append(current)
                    current = []
        else:
            inWord = True
            afterComma = False
            word.append(char)
        index += 1
    if inQuotes:
        raise ConfigError("unterminated quoted string", path, line)
    if inWord:
        current.append(_Token("".join(word), quoted))
    elif afterComma:
        raise ConfigError("empty item in a comma-separated list", path, line)
    if current:
        fields.append(current)
    return fields


def _hbaLines(path: str) -> Iterator[tuple[int, str]]:
    """
    The lines of an HBA file with their numbers, a line ending in a
    backslash continued on the next (PostgreSQL 16's rule).
    """
    lines = readText(path)
    index = 0
    while index < len(lines):
        number, text = index + 1, lines[index]
        while text.endswith("\\") and index + 1 < len(lines):
            index += 1
            text = text[:-1] + " " + lines[index]
        yield number, text
        index += 1


def _hbaNames(
    tokens: list[_Token], column: str, path: str, line: int, depth: int = 0
) -> list[HbaName]:
    """
    The names one DATABASE or USER field lists, C{@file}s read (relative
    to the directory of the file naming them, as PostgreSQL does).
    """
    names: list[HbaName] = []
    for token in tokens:
        text = token.text
        if token.quoted:
            names.append(HbaName("name", text))
            continue
        if text.startswith("@"):
            names.extend(_hbaIncluded(text[1:], column, path, line, depth))
        elif text.startswith("/"):
            raise ConfigError(
                f"{column} {text!r}: regular expressions are not supported; "
                f"list the names (or quote a name that starts with /)",
                path,
                line,
            )
        elif column == "DATABASE" and text in _DATABASE_KEYWORDS:
            names.append(HbaName(_DATABASE_KEYWORDS[text], text))
        elif column == "USER" and text == "all":
            names.append(HbaName("all", text))
        elif column == "USER" and text.startswith("+"):
            if len(text) == 1:
                raise ConfigError("USER '+': a group role name must follow +", path, line)
            names.append(HbaName("group", text[1:]))
        elif column == "DATABASE" and text.startswith("+"):
            raise ConfigError(
                f"DATABASE {text!r}: +role is for the USER column (quote the name if it is one)",
                path,
                line,
            )
        elif column == "USER" and text in _DATABASE_KEYWORDS:
            raise ConfigError(
                f"USER {text!r}: a DATABASE keyword; quote it if it is a role name",
                path,
                line,
            )
        else:
            names.append(HbaName("name", text))
    return names


def _hbaIncluded(name: str, column: str, path: str, line: int, depth: int) -> list[HbaName]:
    """
    The names of an C{@file}: words separated by blanks or commas, with
    comments and quotes as in the HBA file.
    """
    if not name:
        raise ConfigError(f"{column} '@': a file name must follow @", path, line)
    if depth >= _MAX_INCLUDE_DEPTH:
        raise ConfigError(f"{column} @{name}: @files nested too deeply", path, line)
    included = os.path.join(os.path.dirname(path), name)
    try:
        lines = list(_hbaLines(included))
    except ConfigError as e:
        raise ConfigError(f"{column} @{name}: {e.message}", path, line) from None
    names: list[HbaName] = []
    for number, text in lines:
        for field in _hbaFields(text, included, number):
            names.extend(_hbaNames(field, column, included, number, depth + 1))
    if not names:
        raise ConfigError(f"{column} @{name}: {included} lists no names", path, line)
    return names


def _hbaWord(field: list[_Token], column: str, path: str, line: int) -> str:
    """
    A column that takes one unquoted word (TYPE, ADDRESS, METHOD).
    """
    if len(field) != 1 or field[0].quoted:
        raise ConfigError(
            f"{column} takes one word, not a list or a quoted string",
            path,
            line,
        )
    return field[0].text


#: pg_hba.conf's connection types (PostgreSQL's, C{local} included).
_HBA_TYPES = frozenset({"host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc", "local"})


def readHbaFile(path: str, authMethods: Iterable[str], warn: Warn) -> tuple[HbaRule, ...]:
    """
    Read C{pgtwist_hba.conf}: C{TYPE DATABASE USER ADDRESS METHOD} per line,
    written as in PostgreSQL's C{pg_hba.conf}.

    TYPE is C{host} (TLS or not), C{hostssl} (TLS only), C{hostnossl}
    (without TLS), C{hostgssenc} (GSSAPI encryption, which pgtwist never
    accepts: never matches), C{hostnogssenc} (without it: as C{host}) or
    C{local} (unix-socket clients; its ADDRESS may be left out or be
    C{all}).
    DATABASE and USER are comma-separated lists of names, double-quoted
    where they hold blanks, commas or would be a keyword, and of C{@file}s
    (more names, read from a file relative to this one's directory).
    DATABASE may hold the keywords C{all}, C{sameuser}, C{samerole}
    (C{samegroup}) and C{replication}; USER C{all} and C{+role} (members of
    C{role}, directly or not). ADDRESS is C{all}, an IPv4 or IPv6 network
    (C{127.0.0.1/32}, C{::1/128}) or a bare address. METHOD must be one of
    C{authMethods}. Unlike pgagroal, the number of rules is not limited
    (pgagroal stops at 64).

    What PostgreSQL reads and pgtwist cannot honour (regular expressions,
    host names, C{samehost}/C{samenet}, a netmask column, options after the
    method other than C{clientcert} and C{clientname=CN}, include
    directives) is refused with C{path:line}, never taken as a name that
    cannot match. See L{_hbaOptions}.
    """
    methods = {name.lower() for name in authMethods}
    rules = []
    for number, raw in _hbaLines(path):
        fields = _hbaFields(raw, path, number)
        if not fields:
            continue
        kind = _hbaWord(fields[0], "TYPE", path, number).lower()
        if kind in ("include", "include_if_exists", "include_dir"):
            raise ConfigError(f"{kind} directives are not supported", path, number)
        if kind not in _HBA_TYPES:
            raise ConfigError(
                f"unknown connection type {fields[0][0].text!r}: expected "
                "host, hostssl, hostnossl, hostgssenc, hostnogssenc or local",
                path,
                number,
            )
        if kind == "local" and (len(fields) == 4 or (len(fields) > 4 and "=" in fields[4][0].text)):
            fields.insert(3, [_Token("all", False)])
        options = [field for field in fields[5:] if "=" in field[0].text]
        if options and len(options) == len(fields) - 5:
            fields = fields[:5]
        if len(fields) > 5:
            extra = fields[5][0].text
            if "=" in extra:
                word = next(f[0].text for f in fields[5:] if "=" not in f[0].text)
                message = f"expected NAME=VALUE options after the method, got {word!r}"
            elif kind != "local" and "/" not in fields[3][0].text and _isAddress(fields[4]):
                message = (
                    "a separate netmask column is not supported: write the network as "
                    "ADDRESS/BITS, e.g. 10.0.0.0/8"
                )
            else:
                message = f"expected TYPE DATABASE USER ADDRESS METHOD, got {len(fields)} fields"
            raise ConfigError(message, path, number)
        if len(fields) != 5:
            raise ConfigError(
                f"expected TYPE DATABASE USER ADDRESS METHOD, got {len(fields)} fields",
                path,
                number,
            )
        address = _hbaWord(fields[3], "ADDRESS", path, number)
        method = _hbaWord(fields[4], "METHOD", path, number)
        databases = _hbaNames(fields[1], "DATABASE", path, number)
        users = _hbaNames(fields[2], "USER", path, number)
        network: Network | None = None
        if address.lower() != "all":
            if kind == "local":
                raise ConfigError(f"a local rule takes no address, got {address!r}", path, number)
            try:
                network = parseNetwork(address)
            except ValueError:
                # Host names, samehost and samenet end here too.
                raise ConfigError(
                    f"invalid address {address!r}: expected all, an IP address "
                    f"or a network such as 127.0.0.1/32 or ::1/128",
                    path,
                    number,
                ) from None
        if method.lower() not in methods:
            raise ConfigError(f"unknown auth method {method!r}", path, number)
        clientcert = _hbaOptions(options, kind, method.lower(), path, number)
        rules.append(
            HbaRule(
                type=kind,
                database=_columnText(fields[1]),
                user=_columnText(fields[2]),
                address=network,
                method=method.lower(),
                path=path,
                line=number,
                databases=tuple(databases),
                users=tuple(users),
                clientcert=clientcert,
            )
        )
    if not rules:
        warn(f"{path}: no HBA rules: every client will be rejected")
    return tuple(rules)


def _hbaOptions(options: list[list[_Token]], kind: str, method: str, path: str, line: int) -> str:
    """
    Check the C{NAME=VALUE} options after a rule's method, as PostgreSQL's
    C{parse_hba_auth_opt} does for the ones pgtwist honours, and return the
    rule's C{clientcert}: C{clientcert=verify-ca|verify-full} (PostgreSQL
    12+; the C{1}/C{0}/C{no-verify} forms PostgreSQL 14 dropped are refused)
    and C{clientname=CN}, the default. Method C{cert} implies
    C{verify-full}, and both it and C{clientcert} need a C{hostssl} line.
    Any other option is refused: pgtwist would otherwise ignore something
    the line asks for.

    @raise ConfigError: An option pgtwist does not honour, a bad value, or
        a certificate requirement on a line that is not C{hostssl}.
    """
    clientcert = ""
    if method == "cert":
        if kind != "hostssl":
            raise ConfigError(
                "cert authentication is only supported on hostssl connections", path, line
            )
        clientcert = "verify-full"
    for field in options:
        name, _, value = field[0].text.partition("=")
        if len(field) != 1:
            raise ConfigError(f"option {name!r} takes one value, not a list", path, line)
        if name == "clientcert":
            if kind != "hostssl":
                raise ConfigError(
                    'clientcert can only be configured for "hostssl" rows', path, line
                )
            if value in ("1", "0", "no-verify"):
                raise ConfigError(
                    f"clientcert={value} is the form PostgreSQL 14 removed: write "
                    "clientcert=verify-ca or clientcert=verify-full",
                    path,
                    line,
                )
            if value not in ("verify-ca", "verify-full"):
                raise ConfigError(
                    f"invalid value for clientcert: {value!r} (expected verify-ca or verify-full)",
                    path,
                    line,
                )
            if method == "cert" and value != "verify-full":
                raise ConfigError(
                    'clientcert only accepts "verify-full" when using "cert" authentication',
                    path,
                    line,
                )
            clientcert = value
        elif name == "clientname":
            if value != "CN":
                raise ConfigError(
                    f"clientname={value} is not supported: only clientname=CN "
                    "(the certificate's CN must equal the user name)",
                    path,
                    line,
                )
        else:
            raise ConfigError(
                f"option {name!r} is not supported (only clientcert and clientname=CN)",
                path,
                line,
            )
    if (
        options
        and clientcert != "verify-full"
        and any(field[0].text.startswith("clientname=") for field in options)
    ):
        raise ConfigError(
            'clientname can only be configured with method "cert" or clientcert=verify-full',
            path,
            line,
        )
    return clientcert


def _isAddress(field: list[_Token]) -> bool:
    """
    Whether a field is one IP address (a netmask, after an ADDRESS).
    """
    try:
        ipaddress.ip_address(field[0].text)
    except ValueError:
        return False
    return True


def _columnText(field: list[_Token]) -> str:
    """
    A DATABASE or USER column as written, for messages and C{SHOW HBA}.
    """
    return ",".join(f'"{token.text}"' if token.quoted else token.text for token in field)


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


#: The C{key=value} words a databases-file line may end with: PgBouncer's
#: per-database auth_query keys, and its per-database and per-user limits
#: (L{_LIMIT_PARSERS}), as L{DatabaseLimit} fields.
_LIMIT_OPTIONS = {
    "auth_user": "authUser",
    "auth_query": "authQuery",
    "auth_dbname": "authDbname",
    "transaction_timeout": "transactionTimeout",
    "idle_transaction_timeout": "idleTransactionTimeout",
    "query_timeout": "queryTimeout",
    "query_wait_timeout": "queryWaitTimeout",
    "client_idle_timeout": "clientIdleTimeout",
    "reserve_pool_size": "reservePoolSize",
    "max_db_client_connections": "maxDbClientConnections",
    "max_user_client_connections": "maxUserClientConnections",
    "target_session_attrs": "targetSessionAttrs",
    "load_balance_hosts": "loadBalanceHosts",
    "max_lag_in_bytes": "maxLagInBytes",
    "catchup_timeout": "catchupTimeout",
    "dbname": "dbname",
}


def _notSetOr(text: str) -> int | None:
    """
    A count of the databases file's C{key=value} words: an integer >= 0, or
    C{-1}, PgBouncer's "not set" (its loader's default for these keys),
    which leaves the main section's value in effect.
    """
    if text.strip() == "-1":
        return None
    return parseInt(text, 0)


#: How the limit options' values are read (the others are text).
_LIMIT_PARSERS: dict[str, Callable[[str], object]] = {
    "transactionTimeout": parseDuration,
    "idleTransactionTimeout": parseDuration,
    "queryTimeout": parseDuration,
    "queryWaitTimeout": parseDuration,
    "clientIdleTimeout": parseDuration,
    "reservePoolSize": _notSetOr,
    "maxDbClientConnections": _notSetOr,
    "maxUserClientConnections": _notSetOr,
    "targetSessionAttrs": lambda v: parseChoice(v, TARGET_SESSION_ATTRS),
    "loadBalanceHosts": lambda v: parseChoice(v, LOAD_BALANCE_HOSTS),
    "maxLagInBytes": parseByteSize,
    "catchupTimeout": parseDuration,
    "dbname": parseName,
}

#: The file keys of L{_LIMIT_OPTIONS}, by field.
_OPTION_KEYS = {fieldName: key for key, fieldName in _LIMIT_OPTIONS.items()}

_WORD = re.compile(r"\S+")


def _optionWords(text: str, path: str, number: int) -> dict[str, str]:
    """
    The C{key=value} words of C{text}: a value may be double-quoted to hold
    spaces (C{auth_query="SELECT ..."}), C{""} standing for one quote.

    @raise ConfigError: For a word that is no known C{key=value}, a key
        given twice, or an unterminated quote.
    """
    options: dict[str, str] = {}
    index, size = 0, len(text)
    while index < size:
        if text[index].isspace():
            index += 1
            continue
        key, sep, _ = text[index:].partition("=")
        word = _WORD.match(text, index)
        assert word is not None
        if not sep or not key or any(c.isspace() for c in key):
            raise ConfigError(f"expected key=value, got {word.group()!r}", path, number)
        fieldName = _LIMIT_OPTIONS.get(key)
        if fieldName is None:
            known = ", ".join(sorted(_LIMIT_OPTIONS))
            raise ConfigError(f"unknown option {key!r} (known: {known})", path, number, key)
        if fieldName in options:
            raise ConfigError(f"option {key!r} is given twice", path, number, key)
        index += len(key) + 1
        if text[index : index + 1] == '"':
            value, index = _quotedValue(text, index, path, number)
        else:
            end = _WORD.match(text, index)
            value = "" if end is None else end.group()
            index += len(value)
        if not value.strip():
            raise ConfigError(f"option {key!r} needs a value", path, number, key)
        options[fieldName] = value
    return options


def _quotedValue(text: str, start: int, path: str, number: int) -> tuple[str, int]:
    """
    The double-quoted value opening at C{start}, and where it ends.
    """
    parts: list[str] = []
    index = start + 1
    while True:
        end = text.find('"', index)
        if end == -1:
            raise ConfigError("unterminated quoted value", path, number)
        parts.append(text[index:end])
        if text[end + 1 : end + 2] == '"':
            parts.append('"')
            index = end + 2
            continue
        after = end + 1
        if after < len(text) and not text[after].isspace():
            raise ConfigError("expected a space after the closing quote", path, number)
        return "".join(parts), after


def _splitLimitLine(text: str, path: str, number: int) -> tuple[list[str], dict[str, str]]:
    """
    The columns of a databases-file line and its C{key=value} options: the
    first word after MAX_SIZE that holds C{=} starts the options (no
    column after the DATABASE one can hold C{=}).
    """
    words = list(_WORD.finditer(text))
    for index in range(3, len(words)):
        if "=" in words[index].group():
            columns = [word.group() for word in words[:index]]
            return columns, _optionWords(text[words[index].start() :], path, number)
    return [word.group() for word in words], {}


def _readLimitLine(
    path: str, number: int, fields: list[str], warn: Warn, options: Mapping[str, str] | None = None
) -> DatabaseLimit:
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
    values: dict[str, object] = dict(options or {})
    for fieldName, parser in _LIMIT_PARSERS.items():
        if fieldName in values:
            key = _OPTION_KEYS[fieldName]
            try:
                values[fieldName] = parser(str(values[fieldName]))
            except ValueError as e:
                raise ConfigError(f"{key}: {e}", path, number, key) from None
            if values[fieldName] is None:
                del values[fieldName]
    if "maxDbClientConnections" in values and fields[1] != "all":
        raise ConfigError(
            "max_db_client_connections counts a database's clients whatever their user: "
            "it goes on a line whose USER is all",
            path,
            number,
            "max_db_client_connections",
        )
    if "maxUserClientConnections" in values and database != "all":
        raise ConfigError(
            "max_user_client_connections counts a user's clients whatever their database: "
            "it goes on a line whose DATABASE is all",
            path,
            number,
            "max_user_client_connections",
        )
    if "dbname" in values and (database == "all" or aliases):
        raise ConfigError(
            "dbname names the database behind one DATABASE: not on an 'all' line, nor "
            "on one with aliases",
            path,
            number,
            "dbname",
        )
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
        **values,  # type: ignore[arg-type]
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
        fields, options = _splitLimitLine(stripComment(raw, "#"), path, number)
        if fields:
            limits.append(_readLimitLine(path, number, fields, warn, options))

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
