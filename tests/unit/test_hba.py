"""
Tests for HBA: reading C{pgtwist_hba.conf} (L{pgtwist.config.loader}) and
matching clients against its rules (L{pgtwist.auth.hba}).
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.auth.hba import matchHba
from pgtwist.config.loader import DEFAULT_AUTH_METHODS, ConfigError
from pgtwist.config.model import HbaRule
from tests.unit._configfiles import MINIMAL, FilesTestCase


def rule(kind: str, database: str, user: str, address: str, method: str, line: int = 0) -> HbaRule:
    """
    Build an L{HbaRule} the way the loader does (C{all} is no network).
    """
    network = None if address == "all" else ipaddress.ip_network(address, strict=False)
    return HbaRule(kind, database, user, network, method, "hba.conf", line)


class MatchHbaTests(SynchronousTestCase):
    """
    Tests for L{matchHba}.
    """

    def test_allMatchesEveryone(self) -> None:
        """
        pgagroal's C{host all all all all} matches TCP clients with or
        without TLS, over IPv4, IPv6 or a unix socket.
        """
        rules = [rule("host", "all", "all", "all", "all")]
        for address in ("127.0.0.1", "10.1.2.3", "::1", "2001:db8::7", None):
            for tls in (False, True):
                self.assertIs(matchHba(rules, address, "db", "user", tls), rules[0])

    def test_firstMatchWins(self) -> None:
        """
        Rules are tried in order and the first match decides, even when a
        later rule is more specific.
        """
        rules = [
            rule("host", "all", "all", "127.0.0.0/8", "reject", 1),
            rule("host", "db", "alice", "127.0.0.1/32", "trust", 2),
            rule("host", "all", "all", "all", "md5", 3),
        ]
        self.assertIs(matchHba(rules, "127.0.0.1", "db", "alice", False), rules[0])
        self.assertIs(matchHba(rules, "10.0.0.1", "db", "alice", False), rules[2])

    def test_databaseAndUser(self) -> None:
        """
        DATABASE and USER match by exact name, or C{all}.
        """
        rules = [
            rule("host", "sales", "all", "all", "trust", 1),
            rule("host", "all", "bob", "all", "md5", 2),
        ]
        self.assertIs(matchHba(rules, "10.0.0.1", "sales", "carol", False), rules[0])
        self.assertIs(matchHba(rules, "10.0.0.1", "hr", "bob", False), rules[1])
        self.assertIsNone(matchHba(rules, "10.0.0.1", "hr", "carol", False))
        self.assertIsNone(matchHba(rules, "10.0.0.1", "Sales", "Bob", False))

    def test_noMatch(self) -> None:
        """
        With no matching rule (or no rules) the result is C{None}.
        """
        self.assertIsNone(matchHba([], "127.0.0.1", "db", "u", False))
        rules = [rule("host", "all", "all", "192.168.0.0/16", "trust")]
        self.assertIsNone(matchHba(rules, "10.0.0.1", "db", "u", False))

    def test_hostssl(self) -> None:
        """
        C{hostssl} rules match only clients that negotiated TLS; C{host}
        rules match both.
        """
        rules = [
            rule("hostssl", "all", "all", "all", "scram-sha-256", 1),
            rule("host", "all", "all", "all", "reject", 2),
        ]
        self.assertIs(matchHba(rules, "10.0.0.1", "db", "u", True), rules[0])
        self.assertIs(matchHba(rules, "10.0.0.1", "db", "u", False), rules[1])

    def test_ipv4Networks(self) -> None:
        """
        IPv4 clients match the IPv4 networks holding them, not IPv6 ones.
        """
        rules = [
            rule("host", "all", "all", "::/0", "reject", 1),
            rule("host", "all", "all", "10.0.0.0/8", "md5", 2),
            rule("host", "all", "all", "192.168.1.5", "trust", 3),
        ]
        self.assertIs(matchHba(rules, "10.200.0.1", "db", "u", False), rules[1])
        self.assertIs(matchHba(rules, "192.168.1.5", "db", "u", False), rules[2])
        self.assertIsNone(matchHba(rules, "192.168.1.6", "db", "u", False))

    def test_ipv6Networks(self) -> None:
        """
        IPv6 clients match the IPv6 networks holding them, not IPv4 ones.
        """
        rules = [
            rule("host", "all", "all", "0.0.0.0/0", "reject", 1),
            rule("host", "all", "all", "::1/128", "trust", 2),
            rule("host", "all", "all", "2001:db8::/32", "md5", 3),
        ]
        self.assertIs(matchHba(rules, "::1", "db", "u", False), rules[1])
        self.assertIs(matchHba(rules, "2001:db8:1::5", "db", "u", False), rules[2])
        self.assertIsNone(matchHba(rules, "2001:db9::1", "db", "u", False))

    def test_ipv6Scope(self) -> None:
        """
        An IPv6 scope (C{fe80::1%eth0}) is ignored.
        """
        rules = [rule("host", "all", "all", "fe80::/10", "trust")]
        self.assertIs(matchHba(rules, "fe80::1%eth0", "db", "u", False), rules[0])

    def test_mappedIPv4(self) -> None:
        """
        An IPv4-mapped IPv6 address, as a dual-stack listener reports IPv4
        clients, matches IPv4 networks (and IPv6 networks holding it).
        """
        rules = [
            rule("host", "all", "all", "127.0.0.1/32", "trust", 1),
            rule("host", "all", "all", "::ffff:0:0/96", "md5", 2),
        ]
        self.assertIs(matchHba(rules, "::ffff:127.0.0.1", "db", "u", False), rules[0])
        self.assertIs(matchHba(rules, "::ffff:10.0.0.1", "db", "u", False), rules[1])

    def test_unixClientMatchesLoopbackHostRules(self) -> None:
        """
        A unix-socket client matches C{host} rules whose address is C{all}
        or holds 127.0.0.1 or ::1, as if it came from loopback, and no other
        C{host} rule.
        """
        for address in ("127.0.0.1/32", "127.0.0.0/8", "::1/128", "0.0.0.0/0", "all"):
            rules = [rule("host", "all", "all", address, "trust")]
            self.assertIs(matchHba(rules, None, "db", "u", False), rules[0], address)
        for address in ("10.0.0.0/8", "2001:db8::/32", "127.0.0.2/32"):
            rules = [rule("host", "all", "all", address, "trust")]
            self.assertIsNone(matchHba(rules, None, "db", "u", False), address)

    def test_unixClientAndHostssl(self) -> None:
        """
        A unix-socket client never has TLS, so C{hostssl} rules skip it.
        """
        rules = [rule("hostssl", "all", "all", "all", "trust")]
        self.assertIsNone(matchHba(rules, None, "db", "u", False))

    def test_local(self) -> None:
        """
        C{local} rules (a pgtwist addition) match unix-socket clients only.
        """
        rules = [
            rule("local", "all", "all", "all", "trust", 1),
            rule("host", "all", "all", "all", "md5", 2),
        ]
        self.assertIs(matchHba(rules, None, "db", "u", False), rules[0])
        self.assertIs(matchHba(rules, "127.0.0.1", "db", "u", False), rules[1])
        self.assertIs(matchHba(rules, "::1", "db", "u", True), rules[1])

    def test_unparseableAddress(self) -> None:
        """
        A client address that is not an IP address matches only rules whose
        address is C{all}.
        """
        rules = [
            rule("host", "all", "all", "0.0.0.0/0", "trust", 1),
            rule("host", "all", "all", "all", "md5", 2),
        ]
        self.assertIs(matchHba(rules, "not-an-ip", "db", "u", False), rules[1])


class HbaFileTests(FilesTestCase):
    """
    Tests for reading C{pgtwist_hba.conf}.
    """

    def loadHba(self, text: str, **kwargs: Any) -> tuple[HbaRule, ...]:
        """
        Load a minimal main file with C{text} as the HBA file.
        """
        return self.load(MINIMAL, hbaPath=self.write("hba.conf", text), **kwargs).hba

    def hbaError(self, text: str, **kwargs: Any) -> str:
        """
        Load C{text} as the HBA file and return the L{ConfigError}'s text.
        """
        error = self.assertRaises(ConfigError, self.loadHba, text, **kwargs)
        self.assertEqual(error.path, os.path.join(self.directory, "hba.conf"))
        return str(error).replace(error.path, "hba.conf")

    def test_rules(self) -> None:
        """
        Each rule line gives an L{HbaRule} with its path and line; comments
        and blank lines are skipped; type and method are case-insensitive.
        """
        rules = self.loadHba(
            "# TYPE  DATABASE USER  ADDRESS  METHOD\n"
            "\n"
            "host    all      all   127.0.0.1/32  trust   # loopback\n"
            "HOSTSSL mydb     alice ::1/128       SCRAM-SHA-256\n"
            "host    all      all   10.1.2.3/8    md5\n"
            "host    all      bob   192.168.0.7   password\n"
            "host    all      all   fe80::1       reject\n"
            "local   all      all                 trust\n"
            "local   db       all   all           all\n"
        )
        path = os.path.join(self.directory, "hba.conf")
        net = ipaddress.ip_network
        self.assertEqual(
            rules,
            (
                HbaRule("host", "all", "all", net("127.0.0.1/32"), "trust", path, 3),
                HbaRule("hostssl", "mydb", "alice", net("::1/128"), "scram-sha-256", path, 4),
                HbaRule("host", "all", "all", net("10.0.0.0/8"), "md5", path, 5),
                HbaRule("host", "all", "bob", net("192.168.0.7/32"), "password", path, 6),
                HbaRule("host", "all", "all", net("fe80::1/128"), "reject", path, 7),
                HbaRule("local", "all", "all", None, "trust", path, 8),
                HbaRule("local", "db", "all", None, "all", path, 9),
            ),
        )
        self.assertEqual(self.warnings, [])

    def test_unknownMethod(self) -> None:
        """
        An unknown method is an error at its line.
        """
        text = "# header\n" * 6 + "host all all all sha1\n"
        self.assertEqual(self.hbaError(text), "hba.conf:7: unknown auth method 'sha1'")

    def test_authMethodsParameter(self) -> None:
        """
        The accepted methods are those passed as C{authMethods}.
        """
        rules = self.loadHba("host all all all cert\n", authMethods=["trust", "cert"])
        self.assertEqual(rules[0].method, "cert")
        self.assertEqual(
            self.hbaError("host all all all md5\n", authMethods=("trust",)),
            "hba.conf:1: unknown auth method 'md5'",
        )
        self.assertIn("scram-sha-256", DEFAULT_AUTH_METHODS)

    def test_badAddress(self) -> None:
        """
        An address that is neither C{all}, an IP address nor a network is an
        error at its line.
        """
        message = (
            "hba.conf:2: invalid address {!r}: expected all, an IP address or a network "
            "such as 127.0.0.1/32 or ::1/128"
        )
        for address in ("10.0.0.300/8", "127.0.0.1/33", "::1/129", "localhost", "samenet"):
            self.assertEqual(
                self.hbaError(f"host all all all all\nhost all all {address} trust\n"),
                message.format(address),
            )

    def test_unknownType(self) -> None:
        """
        A type other than host, hostssl or local is an error.
        """
        self.assertEqual(
            self.hbaError("hostnossl all all all trust\n"),
            "hba.conf:1: unknown connection type 'hostnossl': expected host, hostssl or local",
        )

    def test_fieldCount(self) -> None:
        """
        A line without exactly five fields is an error.
        """
        self.assertEqual(
            self.hbaError("host all all trust\n"),
            "hba.conf:1: expected TYPE DATABASE USER ADDRESS METHOD, got 4 fields",
        )
        self.assertEqual(
            self.hbaError("host all all all trust extra\n"),
            "hba.conf:1: expected TYPE DATABASE USER ADDRESS METHOD, got 6 fields",
        )

    def test_localWithAddress(self) -> None:
        """
        A local rule cannot name a network.
        """
        self.assertEqual(
            self.hbaError("local all all 127.0.0.1/32 trust\n"),
            "hba.conf:1: a local rule takes no address, got '127.0.0.1/32'",
        )

    def test_empty(self) -> None:
        """
        A file without rules loads with a warning that everyone will be
        rejected.
        """
        self.assertEqual(self.loadHba("# nothing\n"), ())
        self.assertEqual(
            self.warnings,
            [
                f"{os.path.join(self.directory, 'hba.conf')}: no HBA rules: every client will be rejected"
            ],
        )
