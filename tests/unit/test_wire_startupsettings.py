"""
Tests for L{pgtwist.wire.startupsettings}: a StartupMessage's settings read
as PostgreSQL reads them.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.wire.startupsettings import (
    effectiveParameters,
    parseOptions,
    setStatements,
    splitOptions,
)


class StartupParameterTests(SynchronousTestCase):
    """
    Client startup parameters become SET statements.
    """

    def test_optionsSplitLikePostgres(self) -> None:
        """
        Backslash escapes keep spaces inside a value (pg_split_opts).
        """
        self.assertEqual(splitOptions(r"-c a=b\ c  -c  d=e"), ["-c", "a=b c", "-c", "d=e"])

    def test_parseOptions(self) -> None:
        """
        C{-c name=value}, C{-cname=value} and C{--name=value} are settings;
        dashes in names become underscores.
        """
        self.assertEqual(
            parseOptions("-c search_path=s1 -cstatement_timeout=5 --work-mem=64kB"),
            [("search_path", "s1"), ("statement_timeout", "5"), ("work_mem", "64kB")],
        )

    def test_unsupportedSwitch(self) -> None:
        """
        Other switches are refused with PostgreSQL's wording.
        """
        with self.assertRaises(ValueError) as caught:
            parseOptions("-d 5")
        self.assertEqual(
            str(caught.exception), 'invalid command-line argument for server process: "-d"'
        )

    def test_effectiveParameters(self) -> None:
        """
        user, database and options are not settings; options win over plain
        parameters of the same name (case-insensitively).
        """
        self.assertEqual(
            effectiveParameters(
                {
                    "user": "u",
                    "database": "d",
                    "datestyle": "ISO",
                    "options": "-c DateStyle=German",
                    "application_name": "a",
                }
            ),
            [("DateStyle", "German"), ("application_name", "a")],
        )

    def test_setStatementsSkipCurrentValues(self) -> None:
        """
        Values already in effect, as PostgreSQL spells them, need no SET.
        """
        self.assertEqual(
            setStatements(
                {"client_encoding": "UTF8", "application_name": "x"},
                {"client_encoding": "UTF8", "application_name": ""},
            ),
            ["SELECT pg_catalog.set_config('application_name', 'x', false)"],
        )
