# -*- test-case-name: tests.unit.test_pipeline_settings -*-
"""
Session settings in transaction pooling: what a client believes its session
looks like, and the SET statements that make a backend match before the
client's next transaction runs there.

Parameters PostgreSQL reports (ParameterStatus) are compared with the
backend's reported values; startup settings PostgreSQL does not report
(C{search_path} before PostgreSQL 18, C{statement_timeout}...) are compared
with what pgtwist itself applied to that backend.

What a client changes itself (C{SET}, C{RESET}, C{SET ROLE}, C{SET SESSION
AUTHORIZATION}, C{set_config(..., false)}, C{DISCARD}) is not guessed from
the query text: L{sessionFlags} only spots, cheaply, a query that I{may}
change the session, and after such a transaction the pipeline reads the
backend's real state with L{stateQuery} (L{readState}). From then on the
client's settings are that state, and a backend is made to match with
L{matchStatements}: everything reset, then the client's values applied.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

from pgtwist.wire.sql import quoteIdentifier, quoteLiteral, setConfig

#: Reported parameters a client cannot SET (or must not: session_authorization).
READ_ONLY = frozenset(
    {
        "server_version",
        "server_encoding",
        "integer_datetimes",
        "is_superuser",
        "session_authorization",
        "in_hot_standby",
        "scram_iterations",
    }
)


class ClientSettings:
    """
    The session state one client believes in.

    @ivar reported: ParameterStatus values the client has seen, by name.
    @ivar unreported: Startup settings PostgreSQL does not report, by
        lowercase name.
    @ivar session: The session-level settings PostgreSQL showed after the
        client's last transaction that may have changed them (lowercase
        name -> value), custom ones (C{my.secret}) included; C{None} until
        then. Once read, it supersedes C{unreported}.
    @ivar identity: C{(session_user, current_user)} when the client ran
        C{SET SESSION AUTHORIZATION} or C{SET ROLE}, else C{None}.
    @ivar searchPath: The C{search_path} prepared statements are keyed by.
    @ivar fingerprint: Changes whenever any of these changes; equal
        fingerprints mean equal settings.
    """

    def __init__(self, reported: Mapping[str, str], unreported: Mapping[str, str]) -> None:
        self.reported = dict(reported)
        self.unreported = dict(unreported)
        self.session: dict[str, str] | None = None
        self.identity: tuple[str, str] | None = None
        self.searchPath = ""
        self.fingerprint: object = None
        #: C{reported} is another instance's too (see L{copy}).
        self._sharedReported = False
        self.refresh()

    def copy(self) -> ClientSettings:
        """
        A client's own settings, starting as these: C{reported},
        C{unreported} and the fingerprint are shared with this instance
        until the copy changes one (C{reported} is copied at its first
        L{update}; L{adopt} replaces the others), so that many idle clients
        that logged in alike hold one set of them (about 2 KiB each).
        """
        clone = ClientSettings.__new__(ClientSettings)
        clone.reported = self.reported
        clone.unreported = self.unreported
        clone.session = None if self.session is None else dict(self.session)
        clone.identity = self.identity
        clone.searchPath = self.searchPath
        clone.fingerprint = self.fingerprint
        clone._sharedReported = True
        return clone

    def refresh(self) -> None:
        """
        Recompute the fingerprint after a change.
        """
        session = self.session
        self.fingerprint = (
            frozenset(self.reported.items()),
            frozenset(self.unreported.items()),
            None if session is None else frozenset(session.items()),
            self.identity,
        )
        self.searchPath = (
            (session or {}).get("search_path")
            or self.unreported.get("search_path")
            or self.reported.get("search_path", "")
        )

    def adopt(self, session: Mapping[str, str], identity: tuple[str, str] | None) -> None:
        """
        The client's session as PostgreSQL showed it (see L{readState}):
        it replaces what pgtwist knew of the client's unreported settings.
        """
        self.session = dict(session)
        self.identity = identity
        self.unreported = {}
        self.refresh()

    def update(self, name: str, value: str) -> None:
        """
        The client's own transaction changed a reported parameter.
        """
        if self.reported.get(name) != value:
            if self._sharedReported:
                self.reported = dict(self.reported)
                self._sharedReported = False
            self.reported[name] = value
            self.refresh()


def splitStartupSettings(
    settings: Iterable[tuple[str, str]], reportedNames: Iterable[str]
) -> dict[str, str]:
    """
    The startup settings PostgreSQL does not report, by lowercase name.
    """
    reported = {name.lower() for name in reportedNames}
    return {name.lower(): value for name, value in settings if name.lower() not in reported}


def syncStatements(
    client: ClientSettings, parameters: Mapping[str, str], applied: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """
    The statements that make a backend (reported C{parameters}, unreported
    settings C{applied}) match C{client}, and the new C{applied} map.
    """
    statements = []
    for name, value in client.reported.items():
        if name in READ_ONLY:
            continue
        if parameters.get(name) != value:
            statements.append(setConfig(name, value))
    newApplied = dict(applied)
    for name, value in client.unreported.items():
        if applied.get(name) != value:
            statements.append(setConfig(name, value))
            newApplied[name] = value
    for name in applied:
        if name not in client.unreported:
            statements.append(f"RESET {quoteIdentifier(name)}")
            del newApplied[name]
    return statements, newApplied


_SESSION_FEATURES = re.compile(
    r"""
    ^\s*(?:
        (?P<listen>LISTEN)\b
      | (?P<prepare>PREPARE)\b(?!\s+TRANSACTION\b)
      | (?P<temp>CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?\s+(?:TABLE|VIEW|SEQUENCE))\b
        (?![^;]*\bON\s+COMMIT\s+DROP\b)
      | (?P<hold>DECLARE\b[^;]*\bWITH\s+HOLD)\b
    )
    | (?P<lock>\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\()
    """,
    re.IGNORECASE | re.VERBOSE,
)

_WARNINGS = {
    "listen": "LISTEN",
    "prepare": "SQL-level PREPARE",
    "temp": "temporary objects",
    "hold": "WITH HOLD cursors",
    "lock": "session-level advisory locks",
}


def sessionFeature(sql: bytes) -> str | None:
    """
    The session-only feature a query uses, if any: these outlive the
    transaction on a backend another client gets next.
    """
    # Every feature spells one of these words: a query without any skips the
    # regular expression (a case-insensitive search costs microseconds).
    lowered = sql.lower()
    if (
        b"listen" not in lowered
        and b"prepare" not in lowered
        and b"temp" not in lowered
        and b"hold" not in lowered
        and b"advisory" not in lowered
    ):
        return None
    for statement in sql.decode("utf-8", "replace").split(";"):
        match = _SESSION_FEATURES.search(statement)
        if match is not None:
            return _WARNINGS[match.lastgroup or "listen"]
    return None


_RESETS = re.compile(
    rb"^\s*(?:DEALLOCATE\s+(?:PREPARE\s+)?ALL|DISCARD\s+ALL)\s*;?\s*$", re.IGNORECASE
)


def resetsStatements(sql: bytes) -> bool:
    """
    Whether a simple query drops every prepared statement of the session
    (C{DEALLOCATE ALL}, C{DISCARD ALL}).
    """
    # Both start with a D: most queries are ruled out without the regular
    # expression.
    if sql.lstrip()[:1] not in (b"D", b"d"):
        return False
    return _RESETS.match(sql.rstrip(b"\x00")) is not None


#: L{sessionFlags} bits. C{SETTINGS}: the query may change session settings
#: or the session's role. C{OBJECTS}: it may create session-only objects
#: (temporary tables, SQL C{PREPARE}, C{WITH HOLD} cursors, session advisory
#: locks). C{LISTEN}: it runs C{LISTEN} or C{UNLISTEN} (L{pgtwist.pipelines._notify}).
#: C{RESETS}: it is C{DEALLOCATE ALL} or C{DISCARD ALL} (L{resetsStatements}).
#: C{NOTIFY}: it may send notifications (C{NOTIFY}, C{pg_notify}): the
#: pid they carry is the client's (L{pgtwist.pipelines._notify}).
SETTINGS = 1
OBJECTS = 2
LISTEN = 4
RESETS = 8
NOTIFY = 16

# Where a statement starts: the query's start, after a semicolon, or inside
# a function body, a string (EXECUTE 'SET ...'), a DO block; then blanks and
# comments. "UPDATE t SET", "ALTER ... SET", a function's own "SET x = y"
# clause have a word before SET that is none of these.
_START = rb"(?:^|[;'$(]|\b(?:begin|then|else|loop|do|execute))(?:\s|/\*.*?\*/|--[^\n]*)*"
_SETTING = re.compile(
    _START + rb"(?:set|reset|discard)\b(?!\s+(?:local|transaction|constraints)\b)"
    rb"|\bset_config\s*\(",
    re.DOTALL,
)
#: Every word one of the bits needs (set: also reset, set_config).
_WORDS = re.compile(rb"set|temp|prepare|hold|advisory|listen|discard|deallocate|notify")
_OBJECT = re.compile(rb"\btemp(?:orary)?\b|\bprepare\b|\bhold\b|\bpg_(?:try_)?advisory_lock")
_LISTEN = re.compile(rb"(?:^|;)(?:\s|/\*.*?\*/|--[^\n]*)*(?:un)?listen\b", re.DOTALL)


def sessionFlags(sql: bytes) -> int:
    """
    What a query (simple, or the text of a Parse) may do to the session
    beyond its transaction (the L{SETTINGS}, L{OBJECTS}, L{LISTEN} and
    L{RESETS} bits); C{0} for nearly every query, found with a few substring
    tests. A bit set in error only costs one state query after the
    transaction (L{stateQuery}): the words are looked for generously.
    """
    lowered = sql.lower()
    # One scan for every word (cheaper than a substring test per word).
    found = _WORDS.findall(lowered)
    if not found:
        return 0
    words = found if len(found) == 1 else set(found)
    flags = 0
    if b"discard" in words:
        if _SETTING.search(lowered) is not None:
            flags |= SETTINGS
        if resetsStatements(sql):
            flags |= RESETS
    elif b"set" in words and _changesSettings(lowered):
        flags |= SETTINGS
    if (
        b"temp" in words or b"prepare" in words or b"hold" in words or b"advisory" in words
    ) and _OBJECT.search(lowered) is not None:
        flags |= OBJECTS
    if b"listen" in words and _LISTEN.search(lowered) is not None:
        flags |= LISTEN
    if b"deallocate" in words and resetsStatements(sql):
        flags |= RESETS
    if b"notify" in words:
        flags |= NOTIFY
    return flags


#: What may come right before a statement's SET (see L{_START}).
_AFTER = frozenset(b";'$(")
_AFTER_WORDS = (b"begin", b"then", b"else", b"loop", b"do", b"execute")
_NOT_SESSION = (b"local", b"transaction", b"constraints")
_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_")
_SPACE = frozenset(b" \t\n\r\f\v")
#: A set_config(name, value, true) call: its value ends with the transaction.
_LOCAL_CONFIG = re.compile(
    rb"set_config\s*\((?:[^()']|'(?:[^']|'')*'|\((?:[^()']|'(?:[^']|'')*')*\))*,\s*true\s*\)"
)
#: Statements in which only set_config can change a setting.
_DML = (b"update", b"insert", b"delete", b"select", b"with", b"merge")


def _afterWord(lowered: bytes, end: int) -> bool:
    """
    Whether C{lowered[:end]} ends with one of L{_AFTER_WORDS} as a whole word.
    """
    for word in _AFTER_WORDS:
        start = end - len(word)
        if lowered.startswith(word, start) and (start == 0 or lowered[start - 1] not in _WORD):
            return True
    return False


def _changesSettings(lowered: bytes) -> bool:
    """
    Whether lowercase C{lowered} may change a session setting with C{SET},
    C{RESET} or C{set_config}: L{_SETTING}, without its cost for the usual
    C{UPDATE ... SET} (each C{set} is judged by what stands before it; a
    comment there falls back to L{_SETTING}).
    """
    if b"set_config" in lowered and lowered.count(b"set_config") != len(
        _LOCAL_CONFIG.findall(lowered)
    ):
        # Unless every call is set_config(..., true): transaction-local.
        return True
    if lowered.lstrip().startswith(_DML) and b";" not in lowered.rstrip(b"\x00 \t\n\r;"):
        # One UPDATE (INSERT ... DO UPDATE SET...): its SET is its own.
        return False
    size = len(lowered)
    at = lowered.find(b"set")
    while at >= 0:
        end = at + 3
        start = at - 2 if lowered.startswith(b"re", at - 2) else at
        if (end == size or lowered[end] not in _WORD) and (
            start == 0 or lowered[start - 1] not in _WORD
        ):
            before = start - 1
            while before >= 0 and lowered[before] in _SPACE:
                before -= 1
            if before >= 0 and (
                lowered.startswith(b"*/", before - 1)
                or lowered.find(b"--", lowered.rfind(b"\n", 0, before) + 1, before) >= 0
            ):
                return _SETTING.search(lowered) is not None
            if (
                before < 0
                or lowered[before] in _AFTER
                or lowered.endswith(_AFTER_WORDS, 0, before + 1)
                and _afterWord(lowered, before + 1)
            ) and not lowered[end:].lstrip().startswith(_NOT_SESSION):
                return True
        at = lowered.find(b"set", end)
    return False


_CUSTOM = re.compile(
    r"""set_config\s*\(\s*'((?:[^']|'')+)'"""
    r"""|(?:^|[;'$(]|\b(?:begin|then|else|loop|do|execute))\s*(?:re)?set\s+(?:session\s+)?"""
    r"""((?:"[^"]+"|[\w$]+)\s*\.\s*(?:"[^"]+"|[\w$]+))""",
)

#: How many custom setting names one client's state query asks for at most.
MAX_CUSTOM = 64


def customNames(sql: bytes) -> set[str]:
    """
    The custom settings (C{my.secret}) a query names in C{SET}, C{RESET} or
    C{set_config}: PostgreSQL lists no placeholder setting in C{pg_settings},
    so L{stateQuery} asks for these by name. A name computed by an
    expression is not seen (see docs/security.rst).
    """
    names = set()
    for match in _CUSTOM.finditer(sql.decode("utf-8", "replace").lower()):
        literal, identifier = match.groups()
        if literal is not None:
            name = literal.replace("''", "'")
        else:
            name = "".join(identifier.replace('"', "").split())
        if "." in name:
            names.add(name)
    return names


#: What L{stateQuery} counts: the session-only objects that keep a client on
#: its backend, by the name the client's WARNING uses.
OBJECT_KINDS = (
    (
        "temporary tables",
        "pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=)"
        " pg_catalog.pg_my_temp_schema()",
    ),
    ("SQL prepared statements", "pg_catalog.pg_prepared_statements p WHERE p.from_sql"),
    ("WITH HOLD cursors", "pg_catalog.pg_cursors c WHERE c.is_holdable"),
    (
        "session advisory locks",
        "pg_catalog.pg_locks l WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory'"
        " AND l.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()",
    ),
)


def stateQuery(customs: Iterable[str]) -> str:
    """
    One query that shows a backend's session state: every setting whose
    source is the session (C{SET}, C{set_config}), the custom settings
    C{customs}, C{session_user} and C{current_user}, and how many of each
    of L{OBJECT_KINDS} the session holds. Everything is schema-qualified:
    the client may have set any C{search_path}.
    """
    parts = [
        "SELECT 's', s.name, pg_catalog.current_setting(s.name) FROM pg_catalog.pg_settings s"
        " WHERE s.source OPERATOR(pg_catalog.=) 'session'"
    ]
    names = sorted(customs)
    if names:
        values = ", ".join(f"({quoteLiteral(name)})" for name in names)
        parts.append(
            f"SELECT 'c', v.n, pg_catalog.current_setting(v.n, true) FROM (VALUES {values}) v(n)"
        )
    parts.append("SELECT 'u', session_user::pg_catalog.text, current_user::pg_catalog.text")
    for kind, source in OBJECT_KINDS:
        parts.append(
            f"SELECT 'o', {quoteLiteral(kind)}, pg_catalog.count(*)::pg_catalog.text FROM {source}"
        )
    return " UNION ALL ".join(parts)


def readState(
    rows: Sequence[Sequence[str | None]], loginUser: str
) -> tuple[dict[str, str], tuple[str, str] | None, dict[str, int]]:
    """
    The rows of L{stateQuery} as (settings by lowercase name, identity or
    C{None} when the session runs as C{loginUser} itself, object counts by
    kind, only those not zero).
    """
    settings: dict[str, str] = {}
    identity: tuple[str, str] | None = None
    objects: dict[str, int] = {}
    for kind, name, value in rows:
        if name is None or value is None:
            continue
        if kind == "s":
            if name not in READ_ONLY and name != "role":
                settings[name.lower()] = value
        elif kind == "c":
            # A placeholder RESET ALL emptied reads as '' (a setting never
            # made reads as NULL): neither is the client's.
            if value and name.lower() not in settings:
                settings[name.lower()] = value
        elif kind == "u":
            if (name, value) != (loginUser, loginUser):
                identity = (name, value)
        elif kind == "o" and value != "0":
            objects[name] = int(value)
    return settings, identity, objects


def matchStatements(client: ClientSettings, loginUser: str) -> list[str]:
    """
    The queries, each sent as one Query message, that make any backend of
    the pool match C{client} whatever other clients did to it: reset
    everything (a failure later leaves defaults, never someone else's
    values), then the client's values with C{set_config} (exact: a list
    such as C{search_path} is not re-quoted as C{SET} would), then its
    session authorization and role.
    """
    queries = ["RESET ALL; RESET SESSION AUTHORIZATION; RESET ROLE"]
    values: dict[str, tuple[str, str]] = {}
    for name, value in client.reported.items():
        if name not in READ_ONLY:
            values[name.lower()] = (name, value)
    for source in (client.unreported, client.session or {}):
        for name, value in source.items():
            values[name.lower()] = (name, value)
    if values:
        calls = ", ".join(
            f"pg_catalog.set_config({quoteLiteral(name)}, {quoteLiteral(value)}, false)"
            for name, value in values.values()
        )
        queries.append(f"SELECT {calls}")
    if client.identity is not None:
        sessionUser, currentUser = client.identity
        statements = []
        if sessionUser != loginUser:
            statements.append(f"SET SESSION AUTHORIZATION {quoteIdentifier(sessionUser)}")
        if currentUser != sessionUser:
            statements.append(f"SET ROLE {quoteIdentifier(currentUser)}")
        if statements:
            queries.append("; ".join(statements))
    return queries


class LoginCache:
    """
    The ParameterStatus values a login reports, by pool key and startup
    settings: logging a client in needs a backend only when this pool has
    not seen those settings in the last L{ttl} seconds (a client
    reconnecting per transaction would otherwise cost a round trip to
    PostgreSQL per connection). Entries age out so that role or server
    changes show within a minute, and are dropped once aged: clients that
    each log in with settings of their own (an C{application_name} per
    connection) would otherwise fill it, up to L{maxSize}, with entries no
    one will ask for.
    """

    def __init__(self, ttl: float = 60.0, maxSize: int = 4096) -> None:
        self.ttl = ttl
        self.maxSize = maxSize
        #: Oldest first: every put moves its key to the end. The settings
        #: are never changed: each client gets a L{ClientSettings.copy}.
        self._entries: OrderedDict[object, tuple[float, ClientSettings]] = OrderedDict()

    def __len__(self) -> int:
        """
        How many entries are kept.
        """
        return len(self._entries)

    def get(self, key: object, now: float) -> ClientSettings | None:
        """
        A new client's settings for C{key} (a copy sharing the entry's), if
        the entry is fresh.
        """
        entry = self._entries.get(key)
        if entry is None or now - entry[0] >= self.ttl:
            return None
        return entry[1].copy()

    def put(
        self, key: object, now: float, reported: Mapping[str, str], unreported: Mapping[str, str]
    ) -> ClientSettings:
        """
        Remember what a login with these settings reported; forget the
        entries older than L{ttl}, and the oldest beyond L{maxSize}.

        @return: The settings of the client that logged in (a copy, as
            L{get} gives the next ones).
        """
        entries = self._entries
        entries.pop(key, None)
        while entries:
            oldest = next(iter(entries.values()))
            if now - oldest[0] < self.ttl and len(entries) < self.maxSize:
                break
            entries.popitem(last=False)
        settings = ClientSettings(reported, unreported)
        entries[key] = (now, settings)
        return settings.copy()
