"""
Tests for L{pgtwist.config.limits}: which databases-file line governs a
pool, aliases, and the pipeline a pool runs.
"""

from __future__ import annotations

import dataclasses

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.limits import matchLimit, pipelineName, resolveAlias, sessionFeatures
from pgtwist.config.model import Configuration, DatabaseLimit, MainSettings


def configuration(limits: tuple[DatabaseLimit, ...] = (), **main: object) -> Configuration:
    """
    A configuration with C{main} settings changed and the databases file's
    C{limits}.
    """
    return Configuration(main=dataclasses.replace(MainSettings(), **main), limits=limits)


class LimitLookupTests(SynchronousTestCase):
    """
    L{matchLimit} and L{resolveAlias}.
    """

    def test_matchOrder(self) -> None:
        """
        pgagroal's order: exact pair, user with all, database with all.
        """
        limits = (
            DatabaseLimit("all", "alice", 1),
            DatabaseLimit("db", "all", 2),
            DatabaseLimit("db", "alice", 3),
            DatabaseLimit("all", "all", 4),
        )
        self.assertEqual(matchLimit(limits, "db", "alice"), 2)
        self.assertEqual(matchLimit(limits, "other", "alice"), 0)
        self.assertEqual(matchLimit(limits, "db", "bob"), 1)
        self.assertEqual(matchLimit(limits, "x", "y"), 3)
        self.assertIsNone(matchLimit(limits[:3], "x", "y"))

    def test_alias(self) -> None:
        """
        An alias names the real database.
        """
        limits = (DatabaseLimit("production", "all", 5, aliases=("prod", "main")),)
        self.assertEqual(resolveAlias(limits, "prod"), "production")
        self.assertEqual(resolveAlias(limits, "other"), "other")


class PipelineNameTests(SynchronousTestCase):
    """
    L{pipelineName}: the databases file's PIPELINE column, else the main
    C{pipeline}, with pgagroal's C{auto}.
    """

    def test_main(self) -> None:
        """
        Without a PIPELINE column, the main setting applies.
        """
        config = configuration(pipeline="transaction")
        self.assertEqual(pipelineName(config, ("db", "alice")), "transaction")

    def test_column(self) -> None:
        """
        The governing line's PIPELINE column wins over the main setting.
        """
        limits = (
            DatabaseLimit("db", "all", 5, pipeline="transaction"),
            DatabaseLimit("all", "all", 5),
        )
        config = configuration(limits, pipeline="session")
        self.assertEqual(pipelineName(config, ("db", "alice")), "transaction")
        self.assertEqual(pipelineName(config, ("other", "alice")), "session")

    def test_auto(self) -> None:
        """
        C{auto} is C{performance} unless a configured feature needs
        C{session}.
        """
        self.assertEqual(pipelineName(configuration(pipeline="auto"), ("d", "u")), "performance")
        config = configuration(pipeline="auto", failover=True)
        self.assertEqual(sessionFeatures(config), ["failover"])
        self.assertEqual(pipelineName(config, ("d", "u")), "session")
