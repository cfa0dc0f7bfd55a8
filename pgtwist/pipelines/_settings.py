# -*- test-case-name: tests.unit.test_pipeline_settings -*-
"""
Session settings in transaction pooling: what a client believes its session
looks like, and the SET statements that make a backend match before the
client's next transaction runs there.

Parameters PostgreSQL reports (ParameterStatus) are compared with the
backend's reported values; startup settings PostgreSQL does not report
(C{search_path} before PostgreSQL 18, C{statement_timeout}...) are compared
with what pgtwist itself applied to that backend.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pgtwist.wire.sql import quoteIdentifier, quoteLiteral

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
    @ivar fingerprint: Changes whenever either map changes; equal
        fingerprints mean equal settings.
    """

    def __init__(self, reported: Mapping[str, str], unreported: Mapping[str, str]) -> None:
        self.reported = dict(reported)
        self.unreported = dict(unreported)
        self.fingerprint: object = None
        self.refresh()

    def refresh(self) -> None:
        """
        Recompute the fingerprint after a change.
        """
        self.fingerprint = (
            frozenset(self.reported.items()),
            frozenset(self.unreported.items()),
        )

    def update(self, name: str, value: str) -> None:
        """
        The client's own transaction changed a reported parameter.
        """
        if self.reported.get(name) != value:
            self.reported[name] = value
            self.refresh()

    @property
    def searchPath(self) -> str:
        """
        The C{search_path} prepared statements are keyed by.
        """
        return self.unreported.get("search_path") or self.reported.get("search_path", "")


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
            statements.append(f"SET {quoteIdentifier(name)} = {quoteLiteral(value)}")
    newApplied = dict(applied)
    for name, value in client.unreported.items():
        if applied.get(name) != value:
            statements.append(f"SET {quoteIdentifier(name)} = {quoteLiteral(value)}")
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


class LoginCache:
    """
    The ParameterStatus values a login reports, by pool key and startup
    settings: logging a client in needs a backend only when this pool has
    not seen those settings in the last L{ttl} seconds (a client
    reconnecting per transaction would otherwise cost a round trip to
    PostgreSQL per connection). Entries age out so that role or server
    changes show within a minute.
    """

    def __init__(self, ttl: float = 60.0, maxSize: int = 4096) -> None:
        self.ttl = ttl
        self.maxSize = maxSize
        self._entries: dict[object, tuple[float, dict[str, str], dict[str, str]]] = {}

    def get(self, key: object, now: float) -> tuple[dict[str, str], dict[str, str]] | None:
        """
        The (reported, unreported) settings for C{key}, if fresh.
        """
        entry = self._entries.get(key)
        if entry is None or now - entry[0] >= self.ttl:
            return None
        return entry[1], entry[2]

    def put(
        self, key: object, now: float, reported: Mapping[str, str], unreported: Mapping[str, str]
    ) -> None:
        """
        Remember what a login with these settings reported.
        """
        if len(self._entries) >= self.maxSize:
            self._entries.clear()
        self._entries[key] = (now, dict(reported), dict(unreported))
