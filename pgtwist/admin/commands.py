# -*- test-case-name: tests.unit.test_admin_console -*-
"""
The admin console's commands: one registry (L{COMMANDS}) that drives
dispatch, C{SHOW HELP} and C{pgtwist-cli}'s command list, as pg_doorman's
C{SHOW_SUBCOMMANDS} does.

Statements are parsed as PgBouncer's C{admin.c} parses them: a command word,
for C{SHOW} and C{CLEAR} a subject, then arguments (bare words, C{"quoted"}
names or C{'strings'}); C{SELECT} is an alias of C{SHOW}; C{SET key = value}
(or C{TO}) has its own shape. Command words are case-insensitive; arguments
keep their case.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from pgtwist._compat import SLOTS
from pgtwist.admin import control, show
from pgtwist.admin.results import Completion, ConsoleCommandError, Notice, Reply, ResultSet

if TYPE_CHECKING:
    from pgtwist.admin.context import ConsoleContext as Console

__all__ = [
    "COMMANDS",
    "Command",
    "Token",
    "execute",
    "findCommand",
    "helpLines",
    "helpText",
    "splitStatements",
    "tokenize",
]

Handler = Callable[["Console", Sequence[str]], "Reply | Deferred[Reply]"]

#: Commands whose second word names what they act on.
SUBJECT_VERBS = frozenset({"SHOW", "CLEAR"})


@dataclass(frozen=True, **SLOTS)
class Command:
    """
    One console command.

    @ivar verb: The first word (C{SHOW}, C{PAUSE}...).
    @ivar subject: The second word for C{SHOW} and C{CLEAR} (C{POOLS}...).
    @ivar usage: Its lines in C{SHOW HELP} (C{SHOW} commands are listed by
        C{group} instead).
    @ivar summary: One sentence for documentation and C{pgtwist-cli}.
    @ivar handler: Called with the console and the arguments; returns the
        reply or a Deferred firing with it; raises
        L{pgtwist.admin.results.ConsoleCommandError}.
    @ivar adminOnly: Refused to C{stats_users} ("admin access needed").
    @ivar minArgs: The fewest arguments accepted.
    @ivar maxArgs: The most arguments accepted.
    @ivar group: For C{SHOW} commands, the C{SHOW HELP} line they are on.
    """

    verb: str
    subject: str | None
    usage: tuple[str, ...]
    summary: str
    handler: Handler
    adminOnly: bool = True
    minArgs: int = 0
    maxArgs: int = 0
    group: int = 0

    @property
    def name(self) -> str:
        """
        The command as typed, e.g. C{SHOW POOLS} or C{PAUSE}.
        """
        return f"{self.verb} {self.subject}" if self.subject else self.verb


def _show(subject: str, group: int, summary: str, handler: Handler) -> Command:
    return Command("SHOW", subject, (), summary, handler, adminOnly=False, group=group)


def showHelp(console: Console, args: Sequence[str]) -> Reply:
    """
    SHOW HELP: PgBouncer answers with a notice, not rows.
    """
    return Completion("SHOW", (Notice("Console usage", helpText()),))


COMMANDS: tuple[Command, ...] = (
    _show("HELP", 1, "List the console's commands.", showHelp),
    _show(
        "CONFIG",
        1,
        "Every main-section setting, its default and whether SET can change it.",
        show.showConfig,
    ),
    _show(
        "DATABASES",
        1,
        "Each database with its limits, connections, paused and disabled flags.",
        show.showDatabases,
    ),
    _show("POOLS", 1, "Clients and backends per (database, user) pool.", show.showPools),
    _show("CLIENTS", 1, "Every client connection (and console session).", show.showClients),
    _show("SERVERS", 1, "Every PostgreSQL connection.", show.showServers),
    _show("USERS", 1, "Each user with its limits and connections.", show.showUsers),
    _show("VERSION", 1, "pgtwist's version.", show.showVersion),
    _show("PEERS", 2, "Peers (none: pgtwist does not peer).", show.showPeers),
    _show("PEER_POOLS", 2, "Peer pools (none).", show.showPeerPools),
    _show("LISTS", 3, "Counts of databases, users, pools, clients and backends.", show.showLists),
    _show("MEM", 3, "Memory held by pgtwist's objects.", show.showMem),
    _show(
        "LISTENERS",
        3,
        "Transaction pooling's listener backends (LISTEN/NOTIFY), per pool.",
        show.showListeners,
    ),
    _show("CHANNELS", 3, "Channels listened on in transaction pooling.", show.showChannels),
    _show("STATE", 3, "Whether pgtwist is active or paused.", show.showState),
    _show("DNS_HOSTS", 4, "Cached host names (none).", show.showDnsHosts),
    _show("DNS_ZONES", 4, "Cached DNS zones (none).", show.showDnsZones),
    _show("STATS", 5, "Totals and averages per database.", show.showStats),
    _show("STATS_TOTALS", 5, "Totals per database since start.", show.showStatsTotals),
    _show(
        "STATS_AVERAGES",
        5,
        "Averages per database over the last stats_period.",
        show.showStatsAverages,
    ),
    _show("TOTALS", 5, "Totals and averages over every database.", show.showTotals),
    _show(
        "STATUS", 6, "pgagroal-cli's status: state, connection counts, servers.", show.showStatus
    ),
    _show("FILES", 6, "The configuration files in use.", show.showFiles),
    Command(
        "SET",
        None,
        ("SET key = arg",),
        "Change a runtime setting (not written to the file).",
        control.setting,
        minArgs=2,
        maxArgs=2,
    ),
    Command("RELOAD", None, ("RELOAD",), "Re-read every configuration file.", control.reload),
    Command(
        "UPGRADE",
        None,
        ("UPGRADE",),
        "Start the pgtwist installed now and hand it the listeners; this one drains.",
        control.upgrade,
    ),
    Command(
        "PAUSE",
        None,
        ("PAUSE [<db>]",),
        "Hand out no backends; answer once those in use were given back, then close them.",
        control.pause,
        maxArgs=1,
    ),
    Command(
        "RESUME",
        None,
        ("RESUME [<db>]",),
        "Undo PAUSE or KILL (without a database: every pause).",
        control.resume,
        maxArgs=1,
    ),
    Command(
        "DISABLE",
        None,
        ("DISABLE <db>",),
        "Refuse new clients of a database (* for all).",
        control.disable,
        maxArgs=1,
    ),
    Command(
        "ENABLE",
        None,
        ("ENABLE <db>",),
        "Accept new clients of a database again (* for all).",
        control.enable,
        maxArgs=1,
    ),
    Command(
        "RECONNECT",
        None,
        ("RECONNECT [<db>]",),
        "Close backends as they are given back.",
        control.reconnect,
        maxArgs=1,
    ),
    Command(
        "KILL",
        None,
        ("KILL [<db>]",),
        "Drop clients and backends now; the database stays paused until RESUME.",
        control.kill,
        maxArgs=1,
    ),
    Command(
        "KILL_CLIENT",
        None,
        ("KILL_CLIENT <client_id>",),
        "Drop one client (its id from SHOW CLIENTS).",
        control.killClient,
        minArgs=1,
        maxArgs=1,
    ),
    Command(
        "SUSPEND",
        None,
        ("SUSPEND",),
        "Hand out no backends, accept and read nothing more; answer once all is written.",
        control.suspend,
    ),
    Command(
        "SHUTDOWN",
        None,
        (
            "SHUTDOWN",
            "SHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS",
            "SHUTDOWN GRACEFULLY|IMMEDIATE|CANCEL",
        ),
        "Stop pgtwist: at once, once backends are given back, or once clients left (CANCEL undoes).",
        control.shutdown,
        maxArgs=1,
    ),
    Command(
        "WAIT_CLOSE",
        None,
        ("WAIT_CLOSE [<db>]",),
        "Answer once the backends RECONNECT marked are closed.",
        control.waitClose,
        maxArgs=1,
    ),
    Command(
        "FLUSH",
        None,
        ("FLUSH [IDLE|GRACEFULLY|ALL] [<db>|*]",),
        "Close backends: idle ones, busy ones when given back, or all now.",
        control.flush,
        maxArgs=2,
    ),
    Command(
        "SWITCH_TO",
        None,
        ("SWITCH_TO <server>",),
        "Make a server section the primary.",
        control.switchTo,
        minArgs=1,
        maxArgs=1,
    ),
    Command(
        "CLEAR",
        "SERVER",
        ("CLEAR SERVER <server>",),
        "Forget that a server failed.",
        control.clearServer,
        minArgs=1,
        maxArgs=1,
    ),
    Command(
        "CLEAR",
        "PROMETHEUS",
        ("CLEAR PROMETHEUS",),
        "Zero the statistics.",
        control.clearPrometheus,
    ),
)

_TABLE: dict[tuple[str, str | None], Command] = {(c.verb, c.subject): c for c in COMMANDS}


def helpLines() -> list[str]:
    """
    SHOW HELP's lines: the C{SHOW} subjects grouped as PgBouncer groups
    them, then every other command's usage, in registry order.
    """
    groups: dict[int, list[str]] = {}
    lines: list[str] = []
    for command in COMMANDS:
        if command.verb == "SHOW":
            assert command.subject is not None
            groups.setdefault(command.group, []).append(command.subject)
    for group in sorted(groups):
        lines.append("SHOW " + "|".join(groups[group]))
    for command in COMMANDS:
        if command.verb != "SHOW":
            lines.extend(command.usage)
    return lines


def helpText() -> str:
    """
    The DETAIL of SHOW HELP's notice, formatted as PgBouncer's.
    """
    return "".join(f"\n\t{line}" for line in helpLines())


def findCommand(verb: str, subject: str | None = None) -> Command | None:
    """
    The command named C{verb} (and C{subject}), any case; C{SELECT} is C{SHOW}.
    """
    verb = verb.upper()
    if verb == "SELECT":
        verb = "SHOW"
    return _TABLE.get((verb, subject.upper() if subject else None))


# -- parsing ------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:"((?:[^"]|"")*)"|'((?:[^']|'')*)'|(=)|([^\s="';]+))""")
_STATEMENT = re.compile(r"""(?:"(?:[^"]|"")*"|'(?:[^']|'')*'|[^;"'])+|;""")


@dataclass(frozen=True, **SLOTS)
class Token:
    """
    One word of a statement; C{quoted} for C{"name"} or C{'string'}.
    """

    text: str
    quoted: bool = False


def splitStatements(sql: str) -> list[str]:
    """
    Split a Query on C{;} outside quotes; blank statements are dropped.
    """
    statements = []
    current = ""
    for piece in _STATEMENT.findall(sql):
        if piece == ";":
            statements.append(current)
            current = ""
        else:
            current += piece
    statements.append(current)
    return [s.strip() for s in statements if s.strip()]


def tokenize(statement: str) -> list[Token] | None:
    """
    The words of one statement, or C{None} when it cannot be split
    (an unterminated quote, a stray character).
    """
    tokens: list[Token] = []
    position = 0
    text = statement.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            return None
        doubled, single, equals, bare = match.groups()
        if doubled is not None:
            tokens.append(Token(doubled.replace('""', '"'), True))
        elif single is not None:
            tokens.append(Token(single.replace("''", "'"), True))
        else:
            tokens.append(Token(equals or bare))
        position = match.end()
    return tokens


def _syntaxError(text: str) -> ConsoleCommandError:
    return ConsoleCommandError(f"invalid command '{text}', use SHOW HELP;")


def _parseSet(tokens: list[Token]) -> list[str] | None:
    if len(tokens) != 4 or tokens[2].quoted or tokens[2].text.lower() not in ("=", "to"):
        return None
    return [tokens[1].text, tokens[3].text]


def execute(
    console: Console, role: str, statement: str, display: str | None = None
) -> Reply | Deferred[Reply]:
    """
    Run one statement for a session of C{role} (C{"admin"} or C{"stats"}).

    @param display: How to quote the statement in a syntax error
        (PgBouncer quotes the whole query); default C{statement}.
    @raise ConsoleCommandError: Unknown command, bad arguments, no right,
        or the command failed.
    """
    text = statement if display is None else display
    tokens = tokenize(statement)
    if not tokens or tokens[0].quoted:
        raise _syntaxError(text)
    verb = tokens[0].text.upper()
    if verb == "SELECT":
        verb = "SHOW"
    if verb == "SET":
        args = _parseSet(tokens)
        if args is None:
            raise _syntaxError(text)
        if args[0].lower() in control.FAKE_PARAMETERS:
            return Completion("SET", (Notice("SET ignored"),))
        command: Command | None = _TABLE[("SET", None)]
    elif verb in SUBJECT_VERBS:
        if len(tokens) < 2 or tokens[1].quoted:
            raise _syntaxError(text)
        subject = tokens[1].text.upper()
        if verb == "SHOW" and len(tokens) == 2 and subject.lower() in control.FAKE_PARAMETERS:
            name = subject.lower()
            return ResultSet("s", (name,), ((control.FAKE_PARAMETERS[name],),))
        command = _TABLE.get((verb, subject))
        args = [t.text for t in tokens[2:]]
    else:
        command = _TABLE.get((verb, None))
        args = [t.text for t in tokens[1:]]
    if command is None or not command.minArgs <= len(args) <= command.maxArgs:
        raise _syntaxError(text)
    if command.adminOnly and role != "admin":
        raise ConsoleCommandError("admin access needed")
    try:
        return command.handler(console, args)
    except control.InvalidCommand:
        raise _syntaxError(text) from None
