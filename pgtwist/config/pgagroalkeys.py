# -*- test-case-name: tests.unit.test_config_pgagroal2 -*-
"""
pgagroal 2.x's main-section keys that pgtwist's own parsers do not cover,
so that a pgagroal 2.x C{pgagroal.conf} loads as it is.

Each key is honoured where pgtwist has the function and otherwise accepted
with one warning line (C{path:line: ...}) saying what pgtwist does
instead; a value pgagroal itself would refuse is an error here too:

    - C{server_reset_query} (pgagroal 2.x and PgBouncer): the statement run
      on a backend given back to the pool.  pgtwist resets a returned
      backend with C{DISCARD ALL}, which its prepared-statement and
      C{LISTEN} tracking rely on; another statement is run before it (a
      value that is C{DISCARD ALL} changes nothing).  Empty (pgagroal's and
      PgBouncer's "no reset") is warned: pgtwist still resets.
    - C{server_reset_query_behavior_on_failure}: pgtwist closes a backend
      whose reset fails, which is pgagroal's C{discard}; C{try} and
      C{ignore} are warned.
    - C{startup_validation}: pgtwist does not compare the servers'
      C{system_identifier}s; C{on} and C{try} are warned.
    - C{connection_retry_delay}: accepted; pgtwist hands a freed backend
      to a waiting client at once, with no retry timer to bound.
    - C{flush_timeout}, C{failover_notify_script} and C{console}: warned
      when set to anything but off.

The HTTPS metrics keys (C{metrics_cert_file}, C{metrics_key_file},
C{metrics_ca_file}) and C{server_reset_query_always} are pgtwist's own
main keys, and a server section's C{channel_binding} (pgagroal 2.2) is
pgtwist's own server key (L{pgtwist.config.servertls.parseChannelBinding}).

L{warnMd5} is the load-time warning for C{md5} in the HBA file, which
pgagroal 2.2 drops and pgtwist keeps (PostgreSQL still accepts it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from pgtwist.config.errors import ConfigError, Warn
from pgtwist.config.model import HbaRule
from pgtwist.config.values import parseChoice, parseDuration, parseInt

__all__ = [
    "DISCARD_ALL",
    "PGAGROAL_NOTED_KEYS",
    "PGAGROAL_NOTED_SERVER_KEYS",
    "notePgagroalKeys",
    "parseServerResetQuery",
    "warnMd5",
]

#: The reset pgtwist always runs on a backend given back, and the default
#: C{server_reset_query}.
DISCARD_ALL = "DISCARD ALL"

_DISCARD_ALL = re.compile(r"^\s*discard\s+all\s*;?\s*$", re.IGNORECASE)


def parseServerResetQuery(value: str) -> str:
    """
    C{server_reset_query}: the statement to run before C{DISCARD ALL} when a
    backend comes back to the pool, or L{DISCARD_ALL} when that alone does
    it (the value is C{DISCARD ALL} in any spelling, or empty: see
    L{notePgagroalKeys}).
    """
    text = value.strip()
    if not text or _DISCARD_ALL.match(text):
        return DISCARD_ALL
    return text


def _resetQuery(value: str) -> str | None:
    if value.strip():
        return None
    return (
        "empty means no reset in pgagroal and PgBouncer; pgtwist still resets a returned "
        "backend with DISCARD ALL (its prepared-statement and LISTEN tracking rely on it)"
    )


def _resetFailure(value: str) -> str | None:
    if parseChoice(value, ("discard", "try", "ignore")) == "discard":
        return None
    return "pgtwist closes a backend whose reset fails (pgagroal's 'discard'); ignored"


def _startupValidation(value: str) -> str | None:
    if parseChoice(value, ("on", "try", "off")) == "off":
        return None
    return "pgtwist does not compare the servers' system identifiers at startup; ignored"


def _retryDelay(value: str) -> str | None:
    parseInt(value, 0)
    return None


def _flushTimeout(value: str) -> str | None:
    if parseDuration(value) == 0:
        return None
    return "not in effect: pgtwist's graceful shutdown is bounded by shutdown_timeout"


def _notifyScript(value: str) -> str | None:
    if not value.strip():
        return None
    return "not run: pgtwist runs failover_script only"


def _console(value: str) -> str | None:
    if parseInt(value, 0, 65535) == 0:
        return None
    return "pgagroal's web console is not part of pgtwist; ignored"


#: Key -> check of its value: C{None} when pgtwist does what it asks, else
#: the warning; raises C{ValueError} for a value pgagroal refuses.
_NOTES: dict[str, Callable[[str], str | None]] = {
    "server_reset_query": _resetQuery,
    "server_reset_query_behavior_on_failure": _resetFailure,
    "startup_validation": _startupValidation,
    "connection_retry_delay": _retryDelay,
    "flush_timeout": _flushTimeout,
    "failover_notify_script": _notifyScript,
    "console": _console,
}


#: The same for server sections (none at present: C{channel_binding} is
#: honoured).
_SERVER_NOTES: dict[str, Callable[[str], str | None]] = {}

#: The keys L{notePgagroalKeys} reads; the loader does not call them unknown.
PGAGROAL_NOTED_KEYS = frozenset(_NOTES)
PGAGROAL_NOTED_SERVER_KEYS = frozenset(_SERVER_NOTES)


def notePgagroalKeys(
    path: str, entries: Mapping[str, tuple[str, int]], warn: Warn, server: bool = False
) -> None:
    """
    Check a section's pgagroal 2.x keys and warn, one line each, for those
    pgtwist does not honour as asked.

    @param entries: The section's C{key -> (value, line)}.
    @param server: A server section's keys, not the main section's.
    @raise ConfigError: For a value pgagroal would refuse.
    """
    notes = _SERVER_NOTES if server else _NOTES
    for key, (value, line) in sorted(entries.items(), key=lambda item: item[1][1]):
        check = notes.get(key)
        if check is None:
            continue
        try:
            note = check(value)
        except ValueError as e:
            raise ConfigError(f"{key}: {e}", path, line, key) from e
        if note is not None:
            warn(f"{path}:{line}: {key}: {note}")


def warnMd5(hba: Iterable[HbaRule], warn: Warn) -> None:
    """
    One warning line when the HBA file uses C{md5}: pgagroal 2.2 removes
    it; pgtwist keeps it, as PostgreSQL still accepts it.
    """
    rules = [rule for rule in hba if rule.method == "md5"]
    if rules:
        first = rules[0]
        more = f" (and {len(rules) - 1} more line(s))" if len(rules) > 1 else ""
        warn(
            f"{first.path}:{first.line}: method md5{more}: pgagroal 2.2 removed MD5 and "
            "PostgreSQL deprecates it; pgtwist still accepts it, but prefer scram-sha-256"
        )
