"""
Tests for L{pgtwist.wire.sql}: quoting that no value can break out of.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.wire.sql import quoteIdentifier, quoteLiteral, quoteStandardLiteral, setConfig


class QuoteIdentifierTests(SynchronousTestCase):
    """
    L{quoteIdentifier}.
    """

    def test_plain(self) -> None:
        """
        Every identifier is double-quoted, so case and spaces are kept.
        """
        self.assertEqual(quoteIdentifier("Application Name"), '"Application Name"')

    def test_doubleQuotes(self) -> None:
        """
        Inner double quotes are doubled; backslashes mean nothing there.
        """
        self.assertEqual(quoteIdentifier('a"b\\c'), '"a""b\\c"')


class QuoteLiteralTests(SynchronousTestCase):
    """
    L{quoteLiteral} and L{quoteStandardLiteral}.
    """

    def test_plain(self) -> None:
        """
        A value without backslash is C{'...'} with inner quotes doubled.
        """
        self.assertEqual(quoteLiteral("5s"), "'5s'")
        self.assertEqual(quoteLiteral("it's"), "'it''s'")
        self.assertEqual(quoteLiteral(""), "''")

    def test_backslash(self) -> None:
        """
        A value with a backslash is C{E'...'} with backslashes doubled and
        quotes doubled, so neither C{\\'} nor a trailing backslash can end
        the literal early.
        """
        self.assertEqual(quoteLiteral("a\\'b"), "E'a\\\\''b'")
        self.assertEqual(quoteLiteral("C:\\dir\\"), "E'C:\\\\dir\\\\'")

    def test_standard(self) -> None:
        """
        L{quoteStandardLiteral} doubles quotes only: its readers take
        backslashes literally.
        """
        self.assertEqual(quoteStandardLiteral("it's"), "'it''s'")
        self.assertEqual(quoteStandardLiteral("a\\b"), "'a\\b'")


class SetConfigTests(SynchronousTestCase):
    """
    L{setConfig}.
    """

    def test_quoted(self) -> None:
        """
        Name and value are literals, so neither can break out; a list value
        goes in as one text for PostgreSQL to parse.
        """
        self.assertEqual(
            setConfig("search_path", "a, b'c"),
            "SELECT pg_catalog.set_config('search_path', 'a, b''c', false)",
        )

    def test_backslash(self) -> None:
        """
        A backslash makes an C{E''} literal, whatever
        C{standard_conforming_strings} is.
        """
        self.assertEqual(
            setConfig("x.y", "a\\b"),
            "SELECT pg_catalog.set_config('x.y', E'a\\\\b', false)",
        )
