"""
Tests for HBA in L{pgtwist.net.frontend}: rules match the database the
client asked for, before aliases, and C{+group} rules wait for, or fail
closed without, role membership (issue 11, finding 6).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from twisted.internet.defer import Deferred

from pgtwist.auth.hba import RoleMembership
from pgtwist.config.model import DatabaseLimit, HbaName, HbaRule
from pgtwist.wire import constants
from pgtwist.wire.messages import AuthenticationRequest, ErrorResponse
from tests.unit.test_frontend import FrontendTestCase


class AliasTests(FrontendTestCase):
    """
    A rule for an alias applies to clients asking for the alias.
    """

    def setUp(self) -> None:
        super().setUp()
        config = dataclasses.replace(
            self.factory.config,
            limits=(DatabaseLimit("db", "all", 5, aliases=("rep",)),),
            hba=(
                HbaRule("host", "rep", "all", None, "reject", "hba.conf", 1),
                HbaRule("host", "all", "all", None, "password", "hba.conf", 2),
            ),
        )
        self.factory.reconfigure(config)
        self.protocol = self.connect()

    def test_rejectForAliasStopsIt(self) -> None:
        """
        C{host rep all all reject} stops C{dbname=rep}, although C{rep}
        is an alias of C{db} (before, the alias was resolved first and the
        rule never matched).
        """
        self.startup(database="rep")
        (error,) = self.replies()
        assert isinstance(error, ErrorResponse)
        self.assertEqual(
            (error.code, error.message),
            (
                "28000",
                'pg_hba.conf rejects connection for host "127.0.0.1", user "alice", '
                'database "rep", no encryption',
            ),
        )
        self.assertTrue(self.transport.disconnecting)

    def test_realNameStillAllowed(self) -> None:
        """
        The database's own name is not the alias: the next rule applies.
        """
        self.startup(database="db")
        self.assertEqual(self.replies(), [AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)])
        self.assertEqual(self.protocol.key, ("db", "alice"))


class GroupTests(FrontendTestCase):
    """
    C{+group} rules and the role membership they need.
    """

    def setUp(self) -> None:
        super().setUp()
        self.lookups: list[Deferred[Mapping[str, frozenset[str]]]] = []

        def lookup(groups: object) -> Deferred[Mapping[str, frozenset[str]]]:
            d: Deferred[Mapping[str, frozenset[str]]] = Deferred()
            self.lookups.append(d)
            return d

        config = dataclasses.replace(
            self.factory.config,
            hba=(
                HbaRule(
                    "host",
                    "all",
                    "+staff",
                    None,
                    "password",
                    "hba.conf",
                    1,
                    users=(HbaName("group", "staff"),),
                ),
                HbaRule("host", "all", "all", None, "trust", "hba.conf", 2),
            ),
        )
        self.factory.reconfigure(config)
        self.factory.roles = RoleMembership(frozenset({"staff"}), lookup, self.clock)
        self.protocol = self.connect()

    def test_waitsForMembership(self) -> None:
        """
        The first client waits, paused, for the membership; a member then
        gets the group rule's method.
        """
        self.startup()
        self.assertEqual(self.replies(), [])
        self.assertEqual(self.transport.producerState, "paused")
        self.lookups[0].callback({"staff": frozenset({"staff", "alice"})})
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(self.replies(), [AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)])

    def test_failsClosed(self) -> None:
        """
        When membership cannot be read, the client is refused with a clear
        error rather than the C{trust} rule behind the group rule applying.
        """
        self.startup()
        self.lookups[0].errback(ConnectionRefusedError("no server"))
        (error,) = self.replies()
        assert isinstance(error, ErrorResponse)
        self.assertEqual(error.code, "28000")
        self.assertIn("cannot check role membership", error.message)
        self.assertTrue(self.transport.disconnecting)

    def test_reloadWhileWaiting(self) -> None:
        """
        A client that waited for a membership a reload replaced waits for
        the new one rather than being refused.
        """
        self.startup()
        second: Deferred[Mapping[str, frozenset[str]]] = Deferred()
        self.factory.roles = RoleMembership(frozenset({"staff"}), lambda groups: second, self.clock)
        self.lookups[0].callback({"staff": frozenset({"staff"})})
        self.assertEqual(self.replies(), [])
        second.callback({"staff": frozenset({"staff", "alice"})})
        self.assertEqual(self.replies(), [AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)])

    def test_clientGoneWhileWaiting(self) -> None:
        """
        A client that leaves while membership is read is simply forgotten.
        """
        self.startup()
        self.protocol.connectionLost()
        self.lookups[0].callback({"staff": frozenset({"staff"})})
        self.assertEqual(self.replies(), [])
