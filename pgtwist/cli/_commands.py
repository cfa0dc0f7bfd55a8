# -*- test-case-name: tests.unit.test_cli -*-
"""
The commands of C{pgtwist-cli} (L{pgtwist.cli.control}): parsing the command
words with pgagroal-cli's defaults and aliases, the console queries each
command sends, and what it prints (text lines, and the C{output} object of
pgagroal's JSON document).

A command is a function of a logged-in L{ConsoleClient} returning an
L{Outcome}; L{commandFor} picks it for a L{Request}.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pgtwist._compat import SLOTS
from pgtwist.cli._client import CommandFailed, ConsoleClient, ConsoleUnavailable, Reply, ResultSet
from pgtwist.config import values
from pgtwist.wire import constants
from pgtwist.wire.sql import quoteIdentifier, quoteStandardLiteral

__all__ = [
    "ALIASES",
    "EXIT_CONNECTION_ERROR",
    "EXIT_DATA_ERROR",
    "EXIT_OK",
    "Outcome",
    "Refused",
    "Request",
    "UsageError",
    "commandFor",
    "formatTable",
    "parseCommand",
    "quoteName",
    "sameValue",
]

PROGRAM = "pgtwist-cli"
#: pgagroal's C{EXIT_STATUS_*} codes.
EXIT_OK = 0
EXIT_CONNECTION_ERROR = 1
EXIT_DATA_ERROR = 2

FLUSH_MODES = ("gracefully", "idle", "all")
SHUTDOWN_MODES = ("gracefully", "immediate", "cancel")
#: Namespaces of pgagroal's C{conf get}/C{conf set} keys meaning "the main section".
_MAIN_NAMESPACES = ("pgtwist.", "pgagroal.")
#: A name the console takes unquoted (PgBouncer's admin.c C{WORD}).
_PLAIN_WORD = re.compile(r"[0-9a-z_]+")

#: pgagroal's older command names, as the words they stand for.
ALIASES: dict[str, tuple[str, ...]] = {
    "flush-idle": ("flush", "idle"),
    "flush-gracefully": ("flush", "gracefully"),
    "flush-all": ("flush", "all"),
    "is-alive": ("ping",),
    "enabledb": ("enable",),
    "disabledb": ("disable",),
    "gracefully": ("shutdown", "gracefully"),
    "stop": ("shutdown", "immediate"),
    "cancel-shutdown": ("shutdown", "cancel"),
    "details": ("status", "details"),
    "reload": ("conf", "reload"),
    "config-get": ("conf", "get"),
    "config-set": ("conf", "set"),
    "reset": ("clear", "prometheus"),
    "reset-server": ("clear", "server"),
}

#: C{SHOW FILES} names to pgagroal-cli's C{conf ls} descriptions.
FILE_DESCRIPTIONS = {
    "config": "Main Configuration file",
    "hba": "HBA file",
    "limit": "Limit file",
    "frontend": "Frontend users file",
    "admins": "Admins file",
    "superuser": "Superuser file",
    "users": "Users file",
}

#: C{SHOW STATUS} keys to text labels, in print order.
STATUS_LABELS = {
    "status": "Status",
    "active_connections": "Active connections",
    "total_connections": "Total connections",
    "max_connections": "Max connections",
    "clients": "Clients",
}
#: pgtwist's state to pgagroal's C{status} message and number.
_STATES = {"running": ("Running", 1), "gracefully": ("Graceful shutdown", 2)}


class UsageError(Exception):
    """
    The command line cannot be acted on (exit status 1).
    """


# -- commands -------------------------------------------------------------------


@dataclass(frozen=True, **SLOTS)
class Request:
    """
    One parsed command.

    @ivar name: The canonical name, as in pgagroal-cli's JSON output
        (C{flush}, C{status details}, C{conf set}, C{clear server}...).
    @ivar arguments: Its arguments with defaults filled in, for example
        C{("idle", "*")} for C{flush idle}.
    """

    name: str
    arguments: tuple[str, ...] = ()


def _expect(words: Sequence[str], most: int, usage: str, least: int = 0) -> None:
    """
    Insist on between C{least} and C{most} arguments.

    @raise UsageError: Naming the command's synopsis.
    """
    if not least <= len(words) <= most:
        raise UsageError(f"wrong number of arguments; usage: {PROGRAM} {usage}")


def parseCommand(words: Sequence[str]) -> Request:
    """
    Turn the command words (after the options) into a L{Request}, applying
    pgagroal's defaults (C{flush} is C{flush gracefully *}) and aliases
    (C{flush-idle db} is C{flush idle db}).

    @raise UsageError: Unknown command or wrong arguments.
    """
    if not words:
        raise UsageError(f"no command given (see '{PROGRAM} -?')")
    expanded = [*ALIASES.get(words[0], (words[0],)), *words[1:]]
    command, rest = expanded[0], expanded[1:]
    if command == "flush":
        mode = "gracefully"
        if rest and rest[0] in FLUSH_MODES:
            mode, rest = rest[0], rest[1:]
        _expect(rest, 1, "flush [gracefully|idle|all] [*|<database>]")
        return Request("flush", (mode, rest[0] if rest else "*"))
    if command in ("enable", "disable"):
        _expect(rest, 1, f"{command} [<database>|*]")
        return Request(command, (rest[0] if rest else "*",))
    if command == "ping":
        _expect(rest, 0, "ping")
        return Request("ping")
    if command == "shutdown":
        _expect(rest, 1, "shutdown [gracefully|immediate|cancel]")
        mode = rest[0] if rest else "gracefully"
        if mode not in SHUTDOWN_MODES:
            raise UsageError(f"unknown shutdown mode '{mode}'; use gracefully, immediate or cancel")
        return Request("shutdown", (mode,))
    if command == "upgrade":
        _expect(rest, 0, "upgrade")
        return Request("upgrade")
    if command == "status":
        if rest == ["details"]:
            return Request("status details")
        _expect(rest, 0, "status [details]")
        return Request("status")
    if command == "switch-to":
        _expect(rest, 1, "switch-to <server>", least=1)
        return Request("switch-to", (rest[0],))
    if command == "conf":
        return _parseConf(rest)
    if command == "clear":
        if rest == ["prometheus"]:
            return Request("clear prometheus")
        if rest[:1] == ["server"]:
            rest = rest[1:]
        _expect(rest, 1, "clear prometheus | clear [server] <server>", least=1)
        return Request("clear server", (rest[0],))
    raise UsageError(f"unknown command '{' '.join(words)}' (see '{PROGRAM} -?')")


def _parseConf(rest: Sequence[str]) -> Request:
    """
    The C{conf} subcommands: C{reload}, C{ls}, C{get [key]}, C{set key value}.
    """
    action, arguments = (rest[0], rest[1:]) if rest else ("", [])
    if action in ("reload", "ls"):
        _expect(arguments, 0, f"conf {action}")
    elif action == "get":
        _expect(arguments, 1, "conf get [<parameter_name>]")
    elif action == "set":
        _expect(arguments, 2, "conf set <parameter_name> <parameter_value>", least=2)
    else:
        raise UsageError(f"conf needs one of reload, ls, get, set (see '{PROGRAM} -?')")
    return Request(f"conf {action}", tuple(arguments))


def quoteName(name: str) -> str:
    """
    A database or server name as a console argument: C{*} and plain
    lowercase words as they are, anything else double-quoted as PgBouncer's
    console (and SQL) expects, doubling inner quotes.
    """
    if name == "*" or _PLAIN_WORD.fullmatch(name):
        return name
    return quoteIdentifier(name)


def _mainKey(key: str) -> str:
    """
    A C{conf get}/C{conf set} key without pgagroal's optional C{pgagroal.}
    namespace (C{pgtwist.} too).

    @raise Refused: A key of another namespace (C{server.*}, C{limit.*},
        C{hba.*}), or not a plain word.
    """
    for prefix in _MAIN_NAMESPACES:
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    if not re.fullmatch(r"[A-Za-z0-9_]+", key):
        raise Refused(
            f"invalid key format '{key}': only keys of the main section "
            "('key' or 'pgtwist.key') are known to the console"
        )
    return key.lower()


# -- outcomes -------------------------------------------------------------------


@dataclass
class Outcome:
    """
    What a command produced: C{output} for JSON, C{text} lines for humans,
    and the status (C{"OK"} or why it failed) and exit status.
    """

    output: dict[str, object] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)
    status: str = "OK"
    exitStatus: int = EXIT_OK


class Refused(Exception):
    """
    A command failed in a way the operator should read (exit status 2).
    """

    def __init__(self, message: str, output: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.output = output or {}
        self.text: list[str] = []


def _noticeLines(reply: Reply) -> list[str]:
    """
    The console's notices (reload reports, C{SHOW HELP}) as text lines.
    """
    lines = []
    for notice in reply.notices:
        fields = dict(notice.fields)
        lines.append(fields.get(constants.FIELD_MESSAGE, ""))
        lines.extend(fields.get(constants.FIELD_DETAIL, "").splitlines())
    return lines


def _list(items: list[dict[str, object]]) -> dict[str, object]:
    """
    pgagroal's JSON rule for arrays: C{{"list": [...], "count": n}}.
    """
    return {"list": items, "count": len(items)}


def _centre(text: str, width: int) -> str:
    """
    C{text} centred in C{width}, the odd space on the right as psql does.
    """
    left = (width - len(text)) // 2
    return (" " * left + text).ljust(width)


def formatTable(names: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """
    A result set as psql draws it: a centred header, a rule, numbers aligned
    right and the rest left, and the row count.
    """
    cells = [["" if value is None else str(value) for value in row] for row in rows]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(names)]
    lines = [" " + " | ".join(_centre(n, w) for n, w in zip(names, widths))]
    lines.append("-" + "-+-".join("-" * width for width in widths) + "-")
    for typed, row in zip(rows, cells):
        aligned = [
            cell.rjust(width) if isinstance(value, (int, float)) else cell.ljust(width)
            for value, cell, width in zip(typed, row, widths)
        ]
        lines.append(" " + " | ".join(aligned))
    lines.append(f"({len(cells)} row{'' if len(cells) == 1 else 's'})")
    return [line.rstrip() for line in lines]


def _number(text: str | None) -> object:
    """
    A C{SHOW STATUS} value: an C{int} when it is one, else the text.
    """
    if text is not None and re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    return text


def _control(sql: str, output: dict[str, object]) -> Callable[[ConsoleClient], Outcome]:
    """
    A command that is one console statement with no result set; the
    console's notices are its text.
    """

    def run(console: ConsoleClient) -> Outcome:
        reply = console.query(sql)
        return Outcome(output=dict(output, tag=reply.tag), text=_noticeLines(reply))

    return run


def _shutdown(mode: str) -> Callable[[ConsoleClient], Outcome]:
    """
    C{SHUTDOWN GRACEFULLY|IMMEDIATE|CANCEL}.  pgtwist may close the
    connection before it answers a shutdown: that is the command working.
    """

    def run(console: ConsoleClient) -> Outcome:
        try:
            return _control(f"SHUTDOWN {mode.upper()}", {"mode": mode})(console)
        except ConsoleUnavailable:
            if mode == "cancel":
                raise
            return Outcome(output={"mode": mode, "tag": "SHUTDOWN"})

    return run


def _ping(console: ConsoleClient) -> Outcome:
    """
    C{ping}: pgtwist answers C{SHOW VERSION}, so it is alive; no text.
    """
    rows = console.query("SHOW VERSION").resultSet.texts()
    version = rows[0][0] if rows and rows[0] else None
    return Outcome(output={"status": 1, "message": "running", "version": version})


def _statusPairs(console: ConsoleClient) -> list[tuple[str, str | None]]:
    """
    C{SHOW STATUS} as (key, value) rows.
    """
    return [(str(row[0]), row[1]) for row in console.query("SHOW STATUS").resultSet.texts()]


def _status(console: ConsoleClient) -> Outcome:
    """
    C{status}: pgtwist's state, connection counts and servers.
    """
    pairs = _statusPairs(console)
    values = dict(pairs)
    state = values.get("status") or "running"
    message, number = _STATES.get(state, (state, 0))
    output: dict[str, object] = {
        "status": {"message": message, "status": number},
        "connections": {
            "active": _number(values.get("active_connections")),
            "total": _number(values.get("total_connections")),
            "max": _number(values.get("max_connections")),
            "clients": _number(values.get("clients")),
        },
    }
    servers: list[dict[str, object]] = []
    text = []
    for key, label in STATUS_LABELS.items():
        if key in values:
            shown = message if key == "status" else values[key]
            text.append(f"{label + ':':<21}{shown}")
    for key, value in pairs:
        if key.startswith("server."):
            state, _, address = (value or "").partition(" ")
            servers.append({"name": key[len("server.") :], "state": state, "address": address})
        elif key not in STATUS_LABELS:
            output.setdefault(key, _number(value))
            text.append(f"{key + ':':<21}{value}")
    output["servers"] = _list(servers)
    if servers:
        text.append("Servers:")
        width = max(len(str(server["name"])) for server in servers) + 2
        for server in servers:
            line = f"  {str(server['name']):<{width}}{server['state']} {server['address']}"
            text.append(line.rstrip())
    return Outcome(output=output, text=text)


def _statusDetails(console: ConsoleClient) -> Outcome:
    """
    C{status details}: C{status}, then every pool, server connection and
    client (C{SHOW POOLS}, C{SHOW SERVERS}, C{SHOW CLIENTS}).
    """
    outcome = _status(console)
    for title, key, sql in (
        ("Pools", "pools", "SHOW POOLS"),
        ("Server connections", "server_connections", "SHOW SERVERS"),
        ("Client connections", "client_connections", "SHOW CLIENTS"),
    ):
        result: ResultSet = console.query(sql).resultSet
        records = result.records()
        outcome.output[key] = _list(records)
        rows = [list(record.values()) for record in records]
        outcome.text.extend(["", f"{title}:", *formatTable(result.names, rows)])
    return outcome


def _confLs(console: ConsoleClient) -> Outcome:
    """
    C{conf ls}: where each configuration file was read from (C{SHOW FILES}).
    """
    files: list[dict[str, object]] = []
    for name, path in console.query("SHOW FILES").resultSet.texts():
        description = FILE_DESCRIPTIONS.get(str(name), str(name))
        files.append({"name": name, "description": description, "path": path or ""})
    text = [f"{str(f['description']) + ':':<27}{f['path']}".rstrip() for f in files]
    return Outcome(output={"files": _list(files)}, text=text)


def _config(console: ConsoleClient) -> dict[str, dict[str, object]]:
    """
    C{SHOW CONFIG} as key to its row (key, value, default, changeable).
    """
    return {str(row["key"]): row for row in console.query("SHOW CONFIG").resultSet.records()}


def _confGet(key: str | None, verbose: bool) -> Callable[[ConsoleClient], Outcome]:
    """
    C{conf get [key]}: one main-section setting's value, or all of them.
    """

    def run(console: ConsoleClient) -> Outcome:
        wanted = None if key is None else _mainKey(key)
        config = _config(console)
        if wanted is None:
            rows = list(config.values())
            text = [f"{row['key']} = {row['value']}".rstrip() for row in rows]
            return Outcome(output=_list(rows), text=text)
        row = config.get(wanted)
        if row is None:
            raise Refused(f"unknown configuration key '{key}'", {"key": key})
        text = [f"{wanted} = {row['value']}" if verbose else str(row["value"])]
        return Outcome(output=dict(row), text=text)

    return run


def sameValue(current: str, requested: str) -> bool:
    """
    Whether the console's C{current} value is what C{conf set} asked for,
    allowing for spelling: case, C{on}/C{true}/C{1}, C{60}/C{1m}, C{1MB}/C{1048576}.
    """
    if current.strip().lower() == requested.strip().lower():
        return True
    parsers: tuple[Callable[[str], object], ...] = (
        values.parseBool,
        float,
        values.parseDuration,
        values.parseByteSize,
    )
    for parser in parsers:
        try:
            if parser(current) == parser(requested):
                return True
        except ValueError:
            continue
    return False


def _confSet(key: str, value: str) -> Callable[[ConsoleClient], Outcome]:
    """
    C{conf set key value}: C{SET key = 'value'}, then check with C{SHOW
    CONFIG} that the running pgtwist took it (pgagroal's exit status 2
    when it did not, for instance a key that needs a restart).
    """

    def run(console: ConsoleClient) -> Outcome:
        wanted = _mainKey(key)
        before = _config(console).get(wanted, {}).get("value")
        try:
            reply = console.query(f"SET {wanted} = {quoteStandardLiteral(value)}")
        except CommandFailed as e:
            refusal = Refused(str(e), {"key": wanted, "expected": value})
            refusal.text = ["Configuration change failed", f"   {e}"]
            raise refusal from e
        row = _config(console).get(wanted, {})
        current = row.get("value")
        applied = current is not None and sameValue(str(current), value)
        output: dict[str, object] = {
            "key": wanted,
            "value": current,
            "expected": value,
            "previous": before,
            "applied": applied,
            "restart_required": not applied,
        }
        if applied:
            text = [
                "Configuration change applied successfully",
                f"   Parameter: {wanted}",
                f"   Old value: {before}",
                f"   New value: {current}",
                "   Status: Active (applied to running instance)",
            ]
            return Outcome(output=output, text=text + _noticeLines(reply))
        refusal = Refused("Current and expected values are different", output)
        refusal.text = [
            "Configuration change requires manual restart",
            f"   Parameter: {wanted}",
            f"   Current value: {current} (unchanged in running instance)",
            f"   Requested value: {value}",
            "   Status: Requires full service restart",
            *_noticeLines(reply),
        ]
        raise refusal

    return run


def commandFor(request: Request, verbose: bool = False) -> Callable[[ConsoleClient], Outcome]:
    """
    What to run on the console for C{request}.
    """
    name, arguments = request.name, request.arguments
    if name == "flush":
        mode, database = arguments
        target = "" if database == "*" else " " + quoteName(database)
        return _control(f"FLUSH {mode.upper()}{target}", {"mode": mode, "database": database})
    if name in ("enable", "disable"):
        (database,) = arguments
        return _control(f"{name.upper()} {quoteName(database)}", {"database": database})
    if name == "shutdown":
        return _shutdown(arguments[0])
    if name == "switch-to":
        (server,) = arguments
        return _control(f"SWITCH_TO {quoteName(server)}", {"server": server})
    if name == "clear prometheus":
        return _control("CLEAR PROMETHEUS", {})
    if name == "clear server":
        (server,) = arguments
        return _control(f"CLEAR SERVER {quoteName(server)}", {"server": server})
    if name == "conf reload":
        return _control("RELOAD", {})
    if name == "upgrade":
        return _control("UPGRADE", {})
    if name == "conf get":
        return _confGet(arguments[0] if arguments else None, verbose)
    if name == "conf set":
        return _confSet(*arguments)
    simple: dict[str, Callable[[ConsoleClient], Outcome]] = {
        "ping": _ping,
        "status": _status,
        "status details": _statusDetails,
        "conf ls": _confLs,
    }
    return simple[name]
