"""
Tests for L{pgtwist.net.roles}: reading role membership from PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.model import ServerSettings, UserEntry
from pgtwist.net import roles
from pgtwist.net.backend import BackendError
from pgtwist.wire import errors

SERVER = ServerSettings("primary", "127.0.0.1", 5432, True)


class _Backend:
    """
    A logged-in backend answering one query with rows.
    """

    def __init__(self, rows: list[tuple[bytes | None, ...]]) -> None:
        self.rows = rows
        self.queries: list[str] = []
        self.closed = False

    def queryRows(self, sql: str) -> Deferred[list[tuple[bytes | None, ...]]]:
        """
        Record C{sql} and answer with the rows.
        """
        self.queries.append(sql)
        d: Deferred[list[tuple[bytes | None, ...]]] = Deferred()
        d.callback(self.rows)
        return d

    def close(self) -> None:
        """
        Remember it was closed.
        """
        self.closed = True


class LookupRolesTests(SynchronousTestCase):
    """
    Tests for L{roles.lookupRoles} and L{roles.membershipQuery}.
    """

    def test_query(self) -> None:
        """
        The query walks C{pg_auth_members} from the groups named (quoted as
        literals), or from every role.
        """
        sql = roles.membershipQuery(frozenset({"staff", "o'brien"}))
        self.assertIn("WITH RECURSIVE", sql)
        self.assertIn("WHERE rolname IN ('o''brien', 'staff')", sql)
        self.assertNotIn("WHERE", roles.membershipQuery(None))

    def test_lookup(self) -> None:
        """
        pgtwist logs into C{postgres} as the superuser, reads the rows into
        sets per group and closes the connection.
        """
        backend = _Backend([(b"staff", b"staff"), (b"staff", b"alice")])
        logins: list[Any] = []

        def connect(reactor: Any, server: Any, key: Any, password: Any, methods: Any) -> Any:
            logins.append((key, password))
            return backend, Deferred.fromCoroutine(_value(backend))

        self.patch(roles, "connectBackend", connect)
        result = self.successResultOf(
            roles.lookupRoles(None, SERVER, UserEntry("su", "pw"), [], frozenset({"staff"}))
        )
        self.assertEqual(result, {"staff": frozenset({"staff", "alice"})})
        self.assertEqual(logins, [(("postgres", "su"), "pw")])
        self.assertTrue(backend.closed)
        self.assertTrue(backend.queries[0].startswith("SET client_encoding = 'UTF8'; WITH"))

    def test_template1(self) -> None:
        """
        Without a C{postgres} database, C{template1} is used, as
        PostgreSQL's tools do; other refusals fail the lookup.
        """
        backend = _Backend([])
        databases: list[str] = []

        def connect(reactor: Any, server: Any, key: Any, password: Any, methods: Any) -> Any:
            databases.append(key[0])
            if key[0] == "postgres":
                error = BackendError(errors.fatal("3D000", 'database "postgres" does not exist'))
                return backend, Deferred.fromCoroutine(_raise(error))
            return backend, Deferred.fromCoroutine(_value(backend))

        self.patch(roles, "connectBackend", connect)
        self.assertEqual(
            self.successResultOf(roles.lookupRoles(None, SERVER, UserEntry("su", "pw"), [], None)),
            {},
        )
        self.assertEqual(databases, ["postgres", "template1"])

        def refuse(reactor: Any, server: Any, key: Any, password: Any, methods: Any) -> Any:
            error = BackendError(errors.fatal("28P01", "password authentication failed"))
            return backend, Deferred.fromCoroutine(_raise(error))

        self.patch(roles, "connectBackend", refuse)
        self.failureResultOf(
            roles.lookupRoles(None, SERVER, UserEntry("su", "pw"), [], None), BackendError
        )


async def _value(value: Any) -> Any:
    return value


async def _raise(error: Exception) -> Any:
    raise error
