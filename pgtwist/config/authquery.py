# -*- test-case-name: tests.unit.test_config_authquery -*-
"""
auth_query's settings: which query reads a user's verifier from
PostgreSQL, as which role, in which database.

Two anchors configure it. pgagroal's C{auth_query = on} runs the default
query as the superuser of the C{-S} file in the client's database.
PgBouncer's C{auth_user}, C{auth_query} (the SQL) and C{auth_dbname} in the
main section, and per database (PgBouncer 1.22+) as C{key=value} words of a
databases-file line. Pure functions of the configuration, so the loader
checks what the frontend will use.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgtwist._compat import SLOTS
from pgtwist.config.limits import backendDatabase, matchLimit
from pgtwist.config.model import Configuration, DatabaseLimit

__all__ = [
    "DEFAULT_AUTH_QUERY",
    "AuthQuerySettings",
    "authQueryFor",
    "authQueryLines",
    "authUserPassword",
    "parseAuthQuery",
]

#: PgBouncer's default (1.25), every name schema-qualified so that no
#: search_path can put another C{pg_authid} or C{now()} in its place
#: (CVE-2025-12819), and an expired role (C{VALID UNTIL} in the past) gets
#: no verifier (CVE-2025-2291).
DEFAULT_AUTH_QUERY = (
    "SELECT rolname, CASE WHEN rolvaliduntil < pg_catalog.now() THEN NULL "
    "ELSE rolpassword END FROM pg_catalog.pg_authid WHERE rolname = $1 AND rolcanlogin"
)

_ON = frozenset({"on", "yes", "true", "1"})
_OFF = frozenset({"off", "no", "false", "0", ""})


def parseAuthQuery(value: str) -> str | None:
    """
    The main section's C{auth_query}: pgagroal's boolean (C{on}: the
    default query; C{off}: none) or PgBouncer's SQL text.
    """
    text = value.strip()
    if text.lower() in _ON:
        return DEFAULT_AUTH_QUERY
    if text.lower() in _OFF:
        return None
    return text


@dataclass(frozen=True, **SLOTS)
class AuthQuerySettings:
    """
    How to look a user up for one login.

    @ivar query: The SQL, with the user name as C{$1}.
    @ivar user: The role it runs as.
    @ivar database: The database it runs in.
    """

    query: str
    user: str
    database: str


def _line(config: Configuration, database: str, user: str) -> DatabaseLimit | None:
    """
    The databases-file line governing (database, user), as for its sizes.
    """
    index = matchLimit(config.limits, database, user)
    return None if index is None else config.limits[index]


def authQueryLines(config: Configuration) -> list[DatabaseLimit]:
    """
    The databases-file lines that set an auth_query key.
    """
    return [
        limit
        for limit in config.limits
        if limit.authUser is not None or limit.authQuery is not None or limit.authDbname is not None
    ]


def authQueryFor(config: Configuration, database: str, user: str) -> AuthQuerySettings | None:
    """
    The auth_query for a client of (database, user), or C{None} when
    auth_query is off for it: it is on where C{auth_query} (C{on} or a
    query) or C{auth_user} is set, in the main section or on the
    databases-file line governing the pool; the line's keys override the
    main section's. Without an C{auth_user} it runs as the superuser of
    the C{-S} file (pgagroal's way); the loader refuses a configuration
    where neither is known.
    """
    main = config.main
    # No databases file (the common case): no line to match, at every login.
    line = _line(config, database, user) if config.limits else None
    query = main.authQuery
    authUser = main.authUser
    dbname = main.authDbname
    if line is not None:
        query = line.authQuery or query
        authUser = line.authUser or authUser
        dbname = line.authDbname or dbname
    if query is None and authUser is None:
        return None
    if authUser is None:
        if config.superuser is None:
            return None
        authUser = config.superuser.name
    # Without auth_dbname: the database the pool's backends log into (a
    # line's dbname, as PgBouncer's auth_query runs in the real database).
    dbname = dbname or backendDatabase(config, (database, user))
    return AuthQuerySettings(query or DEFAULT_AUTH_QUERY, authUser, dbname)


def authUserPassword(config: Configuration, name: str) -> str | None:
    """
    The password the auth user logs into PostgreSQL with: from the users
    file (the vault), else from the superuser file.
    """
    entry = config.users.get(name)
    if entry is not None and entry.password is not None:
        return entry.password
    superuser = config.superuser
    if superuser is not None and superuser.name == name:
        return superuser.password
    return None
