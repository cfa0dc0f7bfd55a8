"""
Tests for L{pgtwist.net.access.DatabaseAccess}: ENABLE and DISABLE of
databases, the one check the frontend and the management API share.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.net.access import DatabaseAccess


class DatabaseAccessTests(SynchronousTestCase):
    """
    Which databases accept new clients.
    """

    def setUp(self) -> None:
        self.access = DatabaseAccess()

    def test_enabledByDefault(self) -> None:
        """
        Every database accepts clients until one is disabled.
        """
        self.assertTrue(self.access.isEnabled("db"))
        self.assertEqual(self.access.disabled, set())

    def test_disableOne(self) -> None:
        """
        Disabling a database refuses it alone, until it is enabled again.
        """
        self.access.disable("db")
        self.assertFalse(self.access.isEnabled("db"))
        self.assertTrue(self.access.isEnabled("other"))
        self.access.enable("db")
        self.assertTrue(self.access.isEnabled("db"))

    def test_disableAllButOne(self) -> None:
        """
        C{*} disables every database; enabling one afterwards lets it alone in.
        """
        self.access.disable("*")
        self.assertFalse(self.access.isEnabled("db"))
        self.access.enable("db")
        self.assertTrue(self.access.isEnabled("db"))
        self.assertFalse(self.access.isEnabled("other"))
        self.access.disable("db")
        self.assertFalse(self.access.isEnabled("db"))

    def test_disableAllForgetsExceptions(self) -> None:
        """
        Disabling C{*} again drops the databases enabled meanwhile.
        """
        self.access.disable("*")
        self.access.enable("db")
        self.access.disable("*")
        self.assertFalse(self.access.isEnabled("db"))

    def test_enableAll(self) -> None:
        """
        Enabling C{*} lifts every DISABLE.
        """
        self.access.disable("db")
        self.access.disable("*")
        self.access.enable("*")
        self.assertTrue(self.access.isEnabled("db"))
        self.assertEqual(self.access.disabled, set())
