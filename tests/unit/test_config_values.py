"""
Tests for L{pgtwist.config.values}: the typed value parsers.
"""

from __future__ import annotations

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config import values


class StripQuotesTests(SynchronousTestCase):
    """
    Tests for L{values.stripQuotes}.
    """

    def test_unquoted(self) -> None:
        """
        An unquoted value loses only its surrounding white space.
        """
        self.assertEqual(values.stripQuotes("  on \t"), "on")

    def test_doubleAndSingleQuotes(self) -> None:
        """
        One pair of matching double or single quotes is removed, keeping the
        spaces inside.
        """
        self.assertEqual(values.stripQuotes('"a b"'), "a b")
        self.assertEqual(values.stripQuotes(" 'performance' "), "performance")

    def test_nestedQuotes(self) -> None:
        """
        The other kind of quote may appear inside, as pgagroal allows.
        """
        self.assertEqual(values.stripQuotes('"it\'s"'), "it's")

    def test_unmatchedQuotes(self) -> None:
        """
        Quotes that do not match at both ends are left alone.
        """
        self.assertEqual(values.stripQuotes("\"abc'"), "\"abc'")
        self.assertEqual(values.stripQuotes('"'), '"')

    def test_emptyQuotes(self) -> None:
        """
        C{""} is the empty string.
        """
        self.assertEqual(values.stripQuotes('""'), "")


class ParseBoolTests(SynchronousTestCase):
    """
    Tests for L{values.parseBool}.
    """

    def test_true(self) -> None:
        """
        C{on}, C{yes}, C{1} and C{true} are true, in any case.
        """
        for text in ("on", "yes", "1", "true", "ON", "Yes", "TRUE", " on "):
            self.assertIs(values.parseBool(text), True, text)

    def test_false(self) -> None:
        """
        C{off}, C{no}, C{0} and C{false} are false, in any case.
        """
        for text in ("off", "no", "0", "false", "OFF", "No", "False"):
            self.assertIs(values.parseBool(text), False, text)

    def test_invalid(self) -> None:
        """
        Anything else raises L{ValueError} naming the accepted forms and the
        value.
        """
        error = self.assertRaises(ValueError, values.parseBool, "maybe")
        self.assertEqual(str(error), "expected on/off (or yes/no, true/false, 1/0), got 'maybe'")
        self.assertRaises(ValueError, values.parseBool, "")


class ParseDurationTests(SynchronousTestCase):
    """
    Tests for L{values.parseDuration}.
    """

    def test_plainNumberIsSeconds(self) -> None:
        """
        A plain number is seconds, as in pgagroal.
        """
        self.assertEqual(values.parseDuration("600"), 600.0)
        self.assertEqual(values.parseDuration("0"), 0.0)

    def test_suffixes(self) -> None:
        """
        The suffixes s, m, h, d and w scale the number, in any case.
        """
        self.assertEqual(values.parseDuration("30s"), 30.0)
        self.assertEqual(values.parseDuration("5m"), 300.0)
        self.assertEqual(values.parseDuration("5M"), 300.0)
        self.assertEqual(values.parseDuration("2h"), 7200.0)
        self.assertEqual(values.parseDuration("1D"), 86400.0)
        self.assertEqual(values.parseDuration("1w"), 604800.0)

    def test_milliseconds(self) -> None:
        """
        C{ms} gives milliseconds, not minutes.
        """
        self.assertEqual(values.parseDuration("500ms"), 0.5)
        self.assertEqual(values.parseDuration("250MS"), 0.25)

    def test_decimal(self) -> None:
        """
        A decimal number is allowed, with or without a unit.
        """
        self.assertEqual(values.parseDuration("1.5"), 1.5)
        self.assertEqual(values.parseDuration("1.5m"), 90.0)

    def test_invalid(self) -> None:
        """
        Negative, empty, unit-only or unknown-unit values raise L{ValueError}
        with an example of the accepted forms.
        """
        for text in ("-1", "", "m", "5x", "5 minutes", "abc"):
            self.assertRaises(ValueError, values.parseDuration, text)
        error = self.assertRaises(ValueError, values.parseDuration, "soon")
        self.assertEqual(
            str(error), "expected a duration such as 30, 30s, 5m, 2h, 1d or 500ms, got 'soon'"
        )


class ParseByteSizeTests(SynchronousTestCase):
    """
    Tests for L{values.parseByteSize}.
    """

    def test_plainNumberIsBytes(self) -> None:
        """
        A plain number, or one with C{B}, is bytes.
        """
        self.assertEqual(values.parseByteSize("512"), 512)
        self.assertEqual(values.parseByteSize("512B"), 512)

    def test_suffixes(self) -> None:
        """
        K/KB, M/MB and G/GB are binary multiples, in any case.
        """
        self.assertEqual(values.parseByteSize("256k"), 262144)
        self.assertEqual(values.parseByteSize("1KB"), 1024)
        self.assertEqual(values.parseByteSize("8MB"), 8 * 1024**2)
        self.assertEqual(values.parseByteSize("8m"), 8 * 1024**2)
        self.assertEqual(values.parseByteSize("1G"), 1024**3)
        self.assertEqual(values.parseByteSize("2gb"), 2 * 1024**3)

    def test_invalid(self) -> None:
        """
        Negative, fractional, empty or unknown-unit values raise
        L{ValueError}.
        """
        for text in ("-1", "1.5M", "", "MB", "1TB", "lots"):
            self.assertRaises(ValueError, values.parseByteSize, text)
        error = self.assertRaises(ValueError, values.parseByteSize, "1TB")
        self.assertEqual(str(error), "expected a size such as 512, 256K, 8MB or 1G, got '1TB'")


class ParseIntTests(SynchronousTestCase):
    """
    Tests for L{values.parseInt}.
    """

    def test_unbounded(self) -> None:
        """
        Any decimal integer is accepted without bounds, signs included.
        """
        self.assertEqual(values.parseInt("42"), 42)
        self.assertEqual(values.parseInt(" -7 "), -7)
        self.assertEqual(values.parseInt("+3"), 3)

    def test_notAnInteger(self) -> None:
        """
        Text that is not a decimal integer raises L{ValueError}.
        """
        for text in ("abc", "1.0", "", "0x10", "1e3"):
            self.assertRaises(ValueError, values.parseInt, text)
        error = self.assertRaises(ValueError, values.parseInt, "abc")
        self.assertEqual(str(error), "expected an integer, got 'abc'")

    def test_bothBounds(self) -> None:
        """
        Both bounds are inclusive; the message states them.
        """
        self.assertEqual(values.parseInt("1", 1, 10000), 1)
        self.assertEqual(values.parseInt("10000", 1, 10000), 10000)
        error = self.assertRaises(ValueError, values.parseInt, "10001", 1, 10000)
        self.assertEqual(str(error), "expected an integer between 1 and 10000, got '10001'")
        error = self.assertRaises(ValueError, values.parseInt, "abc", 1, 10000)
        self.assertEqual(str(error), "expected an integer between 1 and 10000, got 'abc'")

    def test_minimumOnly(self) -> None:
        """
        With only a minimum, smaller values are refused.
        """
        self.assertEqual(values.parseInt("0", 0), 0)
        error = self.assertRaises(ValueError, values.parseInt, "-1", 0)
        self.assertEqual(str(error), "expected an integer >= 0, got '-1'")

    def test_maximumOnly(self) -> None:
        """
        With only a maximum, larger values are refused.
        """
        self.assertEqual(values.parseInt("-5", maximum=3), -5)
        error = self.assertRaises(ValueError, values.parseInt, "4", maximum=3)
        self.assertEqual(str(error), "expected an integer <= 3, got '4'")


class ParseChoiceTests(SynchronousTestCase):
    """
    Tests for L{values.parseChoice}.
    """

    def test_caseInsensitive(self) -> None:
        """
        The value matches a choice whatever its case, and the choice is
        returned as given.
        """
        choices = ("off", "foreground", "background")
        self.assertEqual(values.parseChoice("Foreground", choices), "foreground")
        self.assertEqual(values.parseChoice(" off ", choices), "off")

    def test_invalid(self) -> None:
        """
        Any other value raises L{ValueError} listing the choices.
        """
        error = self.assertRaises(ValueError, values.parseChoice, "sometimes", ["a", "b"])
        self.assertEqual(str(error), "expected one of a, b, got 'sometimes'")


class ParseLogLevelTests(SynchronousTestCase):
    """
    Tests for L{values.parseLogLevel}.
    """

    def test_levels(self) -> None:
        """
        Every pgagroal level is accepted in any case and returned lowercase.
        """
        for name in ("FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"):
            self.assertEqual(values.parseLogLevel(name), name.lower())
        for number in range(1, 6):
            self.assertEqual(values.parseLogLevel(f"DEBUG{number}"), f"debug{number}")
        self.assertEqual(values.parseLogLevel("Info"), "info")

    def test_invalid(self) -> None:
        """
        Unknown levels (including C{debug6} and Python's C{warning}) raise
        L{ValueError}.
        """
        for name in ("debug6", "warning", "verbose", ""):
            self.assertRaises(ValueError, values.parseLogLevel, name)


class ParseEndpointTests(SynchronousTestCase):
    """
    Tests for L{values.parseEndpoint}.
    """

    def test_disabled(self) -> None:
        """
        Empty, C{0} and C{off} mean disabled.
        """
        for text in ("", "0", "off", " OFF "):
            self.assertIsNone(values.parseEndpoint(text))

    def test_port(self) -> None:
        """
        A port number becomes a C{tcp:} strports description.
        """
        self.assertEqual(values.parseEndpoint("2346"), "tcp:2346")

    def test_badPort(self) -> None:
        """
        A port above 65535 is refused.
        """
        self.assertRaises(ValueError, values.parseEndpoint, "70000")

    def test_description(self) -> None:
        """
        A strports description is returned unchanged.
        """
        for text in (
            "tcp:6432:interface=127.0.0.1",
            "unix:/run/pgtwist/.s.PGSQL.6432",
            r"tcp6:6433:interface=\:\:1",
            "ssl:6433:privateKey=server.pem",
        ):
            self.assertEqual(values.parseEndpoint(text), text)

    def test_invalid(self) -> None:
        """
        A bare host name or other text is refused.
        """
        for text in ("localhost", "tcp:", ":6432", "-1"):
            self.assertRaises(ValueError, values.parseEndpoint, text)


class ParseEndpointListTests(SynchronousTestCase):
    """
    Tests for L{values.parseEndpointList}.
    """

    def test_list(self) -> None:
        """
        Comma-separated items are parsed in order; empty and disabled items
        are skipped.
        """
        self.assertEqual(
            values.parseEndpointList("tcp:6433:interface=127.0.0.1, 6434,, 0 ,unix:/tmp/s"),
            ("tcp:6433:interface=127.0.0.1", "tcp:6434", "unix:/tmp/s"),
        )
        self.assertEqual(values.parseEndpointList(""), ())

    def test_invalidItem(self) -> None:
        """
        One bad item makes the whole list invalid.
        """
        self.assertRaises(ValueError, values.parseEndpointList, "6433, localhost")


class ParseHostTests(SynchronousTestCase):
    """
    Tests for L{values.parseHost}.
    """

    def test_hosts(self) -> None:
        """
        Names, addresses, C{*} and unix socket directories are kept as they
        are.
        """
        for text in ("*", "localhost", "127.0.0.1", "::1", "/var/run/postgresql"):
            self.assertEqual(values.parseHost(f" {text} "), text)

    def test_invalid(self) -> None:
        """
        Empty values and values with spaces are refused.
        """
        error = self.assertRaises(ValueError, values.parseHost, "")
        self.assertEqual(str(error), "expected a host name, an address or *, got ''")
        self.assertRaises(ValueError, values.parseHost, "local host")


class ParseNameTests(SynchronousTestCase):
    """
    Tests for L{values.parseName}.
    """

    def test_names(self) -> None:
        """
        Plugin names are returned lowercase.
        """
        self.assertEqual(values.parseName("Session"), "session")
        self.assertEqual(values.parseName("my_pipeline-2"), "my_pipeline-2")

    def test_invalid(self) -> None:
        """
        Names must start with a letter and hold no spaces or punctuation.
        """
        for text in ("", "2pc", "my pipeline", "a.b", "-x"):
            self.assertRaises(ValueError, values.parseName, text)


class ParseNetworkTests(SynchronousTestCase):
    """
    Tests for L{values.parseNetwork}.
    """

    def test_networks(self) -> None:
        """
        CIDR networks parse; bare addresses are single-host networks; host
        bits are masked.
        """
        net = ipaddress.ip_network
        self.assertEqual(values.parseNetwork("127.0.0.1/32"), net("127.0.0.1/32"))
        self.assertEqual(values.parseNetwork("0.0.0.0/0"), net("0.0.0.0/0"))
        self.assertEqual(values.parseNetwork("::1/128"), net("::1/128"))
        self.assertEqual(values.parseNetwork("192.168.1.7"), net("192.168.1.7/32"))
        self.assertEqual(values.parseNetwork("2001:db8::1"), net("2001:db8::1/128"))
        self.assertEqual(values.parseNetwork("10.1.2.3/8"), net("10.0.0.0/8"))

    def test_invalid(self) -> None:
        """
        Host names, PostgreSQL's C{samenet} and bad masks are refused.
        """
        for text in ("localhost", "samenet", "10.0.0.1/33", "::1/129", "1.2.3.256", ""):
            self.assertRaises(ValueError, values.parseNetwork, text)


class ExpandVariablesTests(SynchronousTestCase):
    """
    Tests for L{values.expandVariables}.
    """

    def test_expand(self) -> None:
        """
        C{$VAR} and C{${VAR}} are replaced; other text is kept.
        """
        environ = {"HOME": "/home/pg", "X": "x"}
        self.assertEqual(
            values.expandVariables("$HOME/logs/${X}y.log", environ), "/home/pg/logs/xy.log"
        )
        self.assertEqual(values.expandVariables("/tmp/plain", environ), "/tmp/plain")

    def test_unset(self) -> None:
        """
        A variable that is not set is an error naming it.
        """
        error = self.assertRaises(ValueError, values.expandVariables, "$NOPE/x", {})
        self.assertEqual(str(error), "environment variable 'NOPE' is not set")
