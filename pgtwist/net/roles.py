# -*- test-case-name: tests.unit.test_net_roles -*-
"""
Role membership read from PostgreSQL, for HBA rules that name C{+group} or
C{samerole} (L{pgtwist.auth.hba.RoleMembership} keeps what this reads).

pgtwist connects as the superuser of the superuser file (C{-S}), to the
C{postgres} database or, where that is gone, C{template1} (as PostgreSQL's
own tools do), reads the membership and closes the connection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks

from pgtwist.config.model import ServerSettings, UserEntry
from pgtwist.interfaces import IAuthMethod
from pgtwist.net.backend import BackendError, BackendProtocol, connectBackend
from pgtwist.wire import constants
from pgtwist.wire.sql import quoteLiteral

__all__ = ["lookupRoles", "membershipQuery"]

#: The databases tried in turn for the lookup connection.
_DATABASES = ("postgres", "template1")


def membershipQuery(groups: frozenset[str] | None) -> str:
    """
    The query giving C{(group, member)} rows: every role that is a member
    of a group, directly or through other roles, and the group itself, as
    PostgreSQL's C{is_member_of_role} (which HBA uses) counts them, whatever
    C{INHERIT} says.

    @param groups: The groups; C{None} for every role.
    """
    if groups is None:
        where = ""
    else:
        names = ", ".join(quoteLiteral(name) for name in sorted(groups))
        where = f" WHERE rolname IN ({names})"
    return (
        "WITH RECURSIVE m(grp, member) AS ("
        f"SELECT oid, oid FROM pg_catalog.pg_roles{where}"
        " UNION SELECT m.grp, a.member FROM m"
        " JOIN pg_catalog.pg_auth_members a ON a.roleid = m.member)"
        " SELECT g.rolname, r.rolname FROM m"
        " JOIN pg_catalog.pg_roles g ON g.oid = m.grp"
        " JOIN pg_catalog.pg_roles r ON r.oid = m.member"
    )


def lookupRoles(
    reactor: Any,
    server: ServerSettings,
    superuser: UserEntry,
    authMethods: Sequence[IAuthMethod],
    groups: frozenset[str] | None,
) -> Deferred[Mapping[str, frozenset[str]]]:
    """
    Read the members of C{groups} from C{server} as C{superuser}.

    @return: Fires with each group's members (the group itself included;
        a group that is no role is absent), or fails with why not.
    """
    return _lookup(reactor, server, superuser, authMethods, groups)  # type: ignore[no-any-return]


@inlineCallbacks
def _lookup(
    reactor: Any,
    server: ServerSettings,
    superuser: UserEntry,
    authMethods: Sequence[IAuthMethod],
    groups: frozenset[str] | None,
) -> Any:
    for database in _DATABASES:
        protocol, ready = connectBackend(
            reactor, server, (database, superuser.name), superuser.password, authMethods
        )
        try:
            backend: BackendProtocol = yield ready
        except BackendError as e:
            if e.error.code == constants.SQLSTATE_INVALID_CATALOG_NAME and database != "template1":
                continue
            raise
        try:
            rows = yield backend.queryRows(
                "SET client_encoding = 'UTF8'; " + membershipQuery(groups)
            )
        finally:
            backend.close()
        members: dict[str, set[str]] = {}
        for group, member in rows:
            members.setdefault(group.decode(), set()).add(member.decode())
        return {group: frozenset(names) for group, names in members.items()}
    raise AssertionError("unreachable")  # pragma: no cover
