"""
Tests for HBA: reading C{pgtwist_hba.conf} (L{pgtwist.config.loader}) and
matching clients against its rules (L{pgtwist.auth.hba}).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.auth.hba import RoleMembership, RolesUnknown, matchHba
from pgtwist.config import vault
from pgtwist.config.loader import DEFAULT_AUTH_METHODS, ConfigError
from pgtwist.config.model import HbaName, HbaRule
from pgtwist.testing.certs import CertificateAuthority
from tests.unit._configfiles import MINIMAL, FilesTestCase

MASTER_KEY = b"a master key for the tests"


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

    def test_encryptionTypes(self) -> None:
        """
        C{hostnossl} matches TCP clients without TLS only; C{hostgssenc}
        never matches (pgtwist refuses GSSAPI encryption) and
        C{hostnogssenc} matches as C{host}; none of them takes a unix-socket
        client that C{local} would.
        """
        nossl = [rule("hostnossl", "all", "all", "all", "trust")]
        self.assertIs(matchHba(nossl, "10.0.0.1", "db", "user", False), nossl[0])
        self.assertIsNone(matchHba(nossl, "10.0.0.1", "db", "user", True))
        gss = [rule("hostgssenc", "all", "all", "all", "trust")]
        for tls in (False, True):
            self.assertIsNone(matchHba(gss, "10.0.0.1", "db", "user", tls))
        nogss = [rule("hostnogssenc", "all", "all", "all", "trust")]
        for tls in (False, True):
            self.assertIs(matchHba(nogss, "10.0.0.1", "db", "user", tls), nogss[0])
        local = [rule("local", "all", "all", "all", "trust")]
        self.assertIsNone(matchHba(local, "10.0.0.1", "db", "user", False))

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
        # md5 loads, with the one warning that pgagroal 2.2 dropped it.
        self.assertEqual(len(self.warnings), 1)
        self.assertTrue(self.warnings[0].startswith(f"{path}:5: method md5:"))

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
        rules = self.loadHba("host all all all radius\n", authMethods=["trust", "radius"])
        self.assertEqual(rules[0].method, "radius")
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
        A type that is not one of pg_hba.conf's is an error.
        """
        self.assertEqual(
            self.hbaError("hostx all all all trust\n"),
            "hba.conf:1: unknown connection type 'hostx': expected "
            "host, hostssl, hostnossl, hostgssenc, hostnogssenc or local",
        )

    def test_everyPostgresType(self) -> None:
        """
        Every connection type of PostgreSQL's pg_hba.conf loads.
        """
        rules = self.loadHba(
            "hostnossl all all all trust\nhostgssenc all all all trust\n"
            "hostnogssenc all all all trust\nHOSTSSL all all all trust\n"
        )
        self.assertEqual(
            [r.type for r in rules], ["hostnossl", "hostgssenc", "hostnogssenc", "hostssl"]
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


class PostgresSyntaxTests(FilesTestCase):
    """
    The DATABASE and USER columns as PostgreSQL's C{pg_hba.conf} reads
    them: lists, quotes, keywords, C{+group} and C{@file}; and the forms
    pgtwist cannot honour refused at their line (issue 11, finding 6).
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
        return str(error).replace(os.path.join(self.directory, ""), "")

    def test_commaLists(self) -> None:
        """
        Comma-separated names are lists (blanks may follow a comma), and
        each name matches; before, C{a,b} was one name matching nothing.
        """
        (rule,) = self.loadHba('host sales,hr, "ops" alice,bob all reject\n')
        self.assertEqual(
            rule.databases,
            (HbaName("name", "sales"), HbaName("name", "hr"), HbaName("name", "ops")),
        )
        self.assertEqual(rule.users, (HbaName("name", "alice"), HbaName("name", "bob")))
        for database in ("sales", "hr", "ops"):
            for user in ("alice", "bob"):
                self.assertIs(matchHba([rule], "10.0.0.1", database, user, False), rule)
        self.assertIsNone(matchHba([rule], "10.0.0.1", "sales,hr", "alice", False))
        self.assertIsNone(matchHba([rule], "10.0.0.1", "sales", "carol", False))

    def test_quotedNames(self) -> None:
        """
        Quotes keep blanks, commas and C{#} in a name, C{""} is a quote,
        and a quoted keyword is a plain name.
        """
        (rule,) = self.loadHba('host "all","my db","a,b","x#y","say ""hi""" all all trust\n')
        self.assertEqual(
            [name.name for name in rule.databases], ["all", "my db", "a,b", "x#y", 'say "hi"']
        )
        self.assertEqual({name.kind for name in rule.databases}, {"name"})
        self.assertIs(matchHba([rule], "10.0.0.1", "all", "u", False), rule)
        self.assertIs(matchHba([rule], "10.0.0.1", "a,b", "u", False), rule)
        self.assertIsNone(matchHba([rule], "10.0.0.1", "other", "u", False))
        (users,) = self.loadHba('host all "all","+staff" all trust\n')
        self.assertEqual(users.users, (HbaName("name", "all"), HbaName("name", "+staff")))
        self.assertIsNone(matchHba([users], "10.0.0.1", "db", "bob", False))
        self.assertIs(matchHba([users], "10.0.0.1", "db", "+staff", False), users)

    def test_keywords(self) -> None:
        """
        C{sameuser} matches a database named as the user; C{replication}
        never matches (pgtwist takes no replication connections);
        C{samegroup} is C{samerole}.
        """
        same, replication = self.loadHba(
            "host sameuser all all trust\nhost replication all all reject\n"
        )
        self.assertIs(matchHba([same], "10.0.0.1", "alice", "alice", False), same)
        self.assertIsNone(matchHba([same], "10.0.0.1", "db", "alice", False))
        self.assertIsNone(matchHba([replication], "10.0.0.1", "replication", "u", False))
        rules = self.loadHba(
            "host samegroup all all trust\n",
            superuserPath=self.superuserFile(),
            masterKey=MASTER_KEY,
        )
        self.assertEqual(rules[0].databases, (HbaName("samerole", "samegroup"),))

    def superuserFile(self) -> str:
        """
        A superuser vault with one user (its master key is L{MASTER_KEY}).
        """
        path = os.path.join(self.directory, "superuser.conf")
        vault.writeUsersFile(path, {"postgres": "secret"}, MASTER_KEY)
        return path

    def test_groups(self) -> None:
        """
        C{+role} in USER is a group; it needs the superuser file to be
        read from PostgreSQL, else the load fails at its line.
        """
        text = "host all all 10.0.0.0/8 reject\nhost all +staff,bob all md5\n"
        self.assertEqual(
            self.hbaError(text),
            "hba.conf:2: +role and samerole need role membership from PostgreSQL, which "
            "pgtwist reads as the superuser of the superuser file (-S); none is given",
        )
        rules = self.loadHba(text, superuserPath=self.superuserFile(), masterKey=MASTER_KEY)
        self.assertEqual(rules[1].users, (HbaName("group", "staff"), HbaName("name", "bob")))
        self.assertEqual(rules[1].groups, frozenset({"staff"}))
        self.assertTrue(rules[1].needsRoles)
        self.assertFalse(rules[0].needsRoles)

    def test_atFile(self) -> None:
        """
        C{@file} lists names read from a file relative to the HBA file's
        directory, with comments, commas, quotes and nested C{@file}s.
        """
        os.mkdir(os.path.join(self.directory, "lists"))
        self.write("lists/users", '# the team\nalice, bob\n"carol x" @more\n')
        self.write("lists/more", "dave\n")
        self.write("dbs", "sales hr\n")
        (rule,) = self.loadHba("host @dbs,ops @lists/users all trust\n")
        self.assertEqual([n.name for n in rule.databases], ["sales", "hr", "ops"])
        self.assertEqual([n.name for n in rule.users], ["alice", "bob", "carol x", "dave"])
        self.assertIs(matchHba([rule], "10.0.0.1", "hr", "dave", False), rule)
        self.assertIsNone(matchHba([rule], "10.0.0.1", "hr", "erin", False))

    def test_atFileErrors(self) -> None:
        """
        A missing or empty C{@file} fails the load at the line naming it.
        """
        self.assertEqual(
            self.hbaError("host all @nowhere all trust\n"),
            "hba.conf:1: USER @nowhere: cannot read the file: No such file or directory",
        )
        self.write("empty", "# nobody\n")
        self.assertEqual(
            self.hbaError("host @empty all all reject\n"),
            "hba.conf:1: DATABASE @empty: empty lists no names",
        )

    def test_unsupportedForms(self) -> None:
        """
        Forms PostgreSQL reads and pgtwist cannot honour fail the load with
        C{path:line}: never a rule that silently matches nothing.
        """
        cases = {
            "host /^sales all all trust": "hba.conf:1: DATABASE '/^sales': regular expressions "
            "are not supported; list the names (or quote a name that starts with /)",
            "host all /^a all trust": "hba.conf:1: USER '/^a': regular expressions are not "
            "supported; list the names (or quote a name that starts with /)",
            "include other.conf": "hba.conf:1: include directives are not supported",
            "include_dir conf.d": "hba.conf:1: include_dir directives are not supported",
            "host all all all scram-sha-256 ldapserver=x": "hba.conf:1: option 'ldapserver' "
            "is not supported (only clientcert and clientname=CN)",
            "host all all 10.0.0.0 255.0.0.0 md5": "hba.conf:1: a separate netmask column is "
            "not supported: write the network as ADDRESS/BITS, e.g. 10.0.0.0/8",
            "host +staff all all trust": "hba.conf:1: DATABASE '+staff': +role is for the USER "
            "column (quote the name if it is one)",
            "host all sameuser all trust": "hba.conf:1: USER 'sameuser': a DATABASE keyword; "
            "quote it if it is a role name",
            'host "db all all trust': "hba.conf:1: unterminated quoted string",
            "host a,,b all all trust": "hba.conf:1: empty item in a comma-separated list",
            "host a, all all trust": "hba.conf:1: expected TYPE DATABASE USER ADDRESS "
            "METHOD, got 4 fields",
            "host all all localhost trust": "hba.conf:1: invalid address 'localhost': "
            "expected all, an IP address or a network such as 127.0.0.1/32 or ::1/128",
            "host all all all peer": "hba.conf:1: unknown auth method 'peer'",
            'host all all "all" trust': "hba.conf:1: ADDRESS takes one word, not a list or a "
            "quoted string",
        }
        for line, message in cases.items():
            self.assertEqual(self.hbaError(line + "\n"), message, line)

    def tlsMain(self) -> str:
        """
        A main file with TLS for clients and a CA for client certificates,
        from throwaway files.
        """
        authority = CertificateAuthority()
        certificate, key = authority.issue("localhost", hosts=("localhost",)).write(
            self.directory, "server"
        )
        root = authority.writeCertificate(self.directory, "root")
        return MINIMAL.replace(
            "port = 6432\n",
            f"port = 6432\nclient_tls_sslmode = prefer\ntls_cert_file = {certificate}\n"
            f"tls_key_file = {key}\ntls_ca_file = {root}\n",
        )

    def loadTlsHba(self, text: str) -> tuple[HbaRule, ...]:
        """
        Load C{text} as the HBA file beside L{tlsMain}, with C{cert} known.
        """
        path = self.write("hba.conf", text)
        config = self.load(
            self.tlsMain(), hbaPath=path, authMethods=["scram-sha-256", "trust", "cert"]
        )
        return config.hba

    def test_clientcert(self) -> None:
        """
        C{clientcert=verify-ca} and C{clientcert=verify-full} (PostgreSQL 12+)
        are read onto the rule of a C{hostssl} line; method C{cert} implies
        C{verify-full}; C{clientname=CN} (the default) is accepted with it;
        the rule has none without the option.
        """
        rules = self.loadTlsHba(
            "hostssl all all all scram-sha-256 clientcert=verify-ca\n"
            'hostssl all all all trust clientcert="verify-full" clientname=CN\n'
            "hostssl all all all cert\n"
            "hostssl all all all cert clientcert=verify-full\n"
            "hostssl all all 10.0.0.0/8 scram-sha-256\n"
        )
        self.assertEqual(
            [rule.clientcert for rule in rules],
            ["verify-ca", "verify-full", "verify-full", "verify-full", ""],
        )
        self.assertEqual([rule.method for rule in rules[:3]], ["scram-sha-256", "trust", "cert"])

    def test_clientcertRefused(self) -> None:
        """
        What PostgreSQL refuses about client certificates fails the load
        with C{path:line}: C{cert} or C{clientcert} on a line that is not
        C{hostssl} (a connection without TLS has no certificate), the
        C{1}/C{0}/C{no-verify} forms PostgreSQL 14 removed, unknown values,
        C{clientcert=verify-ca} with C{cert}, and C{clientname} other than
        C{CN} or without a name check.
        """
        methods = ["scram-sha-256", "trust", "cert"]
        cases = {
            "host all all all cert": "hba.conf:1: cert authentication is only supported on "
            "hostssl connections",
            "local all all cert": "hba.conf:1: cert authentication is only supported on "
            "hostssl connections",
            "hostnossl all all all cert": "hba.conf:1: cert authentication is only supported "
            "on hostssl connections",
            "host all all all trust clientcert=verify-ca": "hba.conf:1: clientcert can only be "
            'configured for "hostssl" rows',
            "local all all trust clientcert=verify-full": "hba.conf:1: clientcert can only be "
            'configured for "hostssl" rows',
            "hostssl all all all trust clientcert=1": "hba.conf:1: clientcert=1 is the form "
            "PostgreSQL 14 removed: write clientcert=verify-ca or clientcert=verify-full",
            "hostssl all all all trust clientcert=0": "hba.conf:1: clientcert=0 is the form "
            "PostgreSQL 14 removed: write clientcert=verify-ca or clientcert=verify-full",
            "hostssl all all all trust clientcert=no-verify": "hba.conf:1: clientcert=no-verify "
            "is the form PostgreSQL 14 removed: write clientcert=verify-ca or "
            "clientcert=verify-full",
            "hostssl all all all trust clientcert=yes": "hba.conf:1: invalid value for "
            "clientcert: 'yes' (expected verify-ca or verify-full)",
            "hostssl all all all cert clientcert=verify-ca": "hba.conf:1: clientcert only "
            'accepts "verify-full" when using "cert" authentication',
            "hostssl all all all cert clientname=DN": "hba.conf:1: clientname=DN is not "
            "supported: only clientname=CN (the certificate's CN must equal the user name)",
            "hostssl all all all trust clientname=CN": "hba.conf:1: clientname can only be "
            'configured with method "cert" or clientcert=verify-full',
            "hostssl all all all cert map=certmap": "hba.conf:1: option 'map' is not supported "
            "(only clientcert and clientname=CN)",
            "hostssl all all all trust clientcert=verify-ca,verify-full": "hba.conf:1: option "
            "'clientcert' takes one value, not a list",
            "hostssl all all all trust clientcert=verify-ca extra": "hba.conf:1: expected "
            "NAME=VALUE options after the method, got 'extra'",
            "hostssl all all all trust clientcert=verify-ca extra clientname=CN": "hba.conf:1: "
            "expected NAME=VALUE options after the method, got 'extra'",
        }
        for line, message in cases.items():
            self.assertEqual(self.hbaError(line + "\n", authMethods=methods), message, line)

    def test_clientcertWithoutCa(self) -> None:
        """
        A rule that needs a client certificate fails the load when no
        certificate could ever be verified: TLS for clients off, or no
        C{tls_ca_file}.
        """
        methods = ["scram-sha-256", "cert"]
        self.assertEqual(
            self.hbaError("hostssl all all all cert\n", authMethods=methods),
            "hba.conf:1: cert authentication needs client certificates verified against "
            "tls_ca_file, with TLS for clients on (client_tls_sslmode or tls): this rule "
            "could never match",
        )
        main = self.tlsMain()
        main = "\n".join(line for line in main.split("\n") if not line.startswith("tls_ca"))
        path = self.write("hba.conf", "hostssl all all all scram-sha-256 clientcert=verify-ca\n")
        error = self.assertRaises(ConfigError, self.load, main, hbaPath=path, authMethods=methods)
        self.assertIn("hba.conf:1: clientcert needs client certificates", str(error))

    def test_continuation(self) -> None:
        """
        A line ending in a backslash goes on on the next (PostgreSQL 16).
        """
        (rule,) = self.loadHba("host sales,\\\n  hr all all trust\n")
        self.assertEqual([n.name for n in rule.databases], ["sales", "hr"])
        self.assertEqual(rule.line, 1)

    def test_pgagroalFile(self) -> None:
        """
        pgagroal's format (its sample file) still loads as before.
        """
        rules = self.loadHba(
            "#\n# TYPE  DATABASE USER  ADDRESS  METHOD\n#\nhost    all      all   all      all\n"
            "hostssl mydb     myuser 192.168.1.0/24 scram-sha-256\n"
        )
        self.assertEqual(rules[0].databases, (HbaName("all", "all"),))
        self.assertEqual(rules[0].users, (HbaName("all", "all"),))
        self.assertEqual(rules[1].databases, (HbaName("name", "mydb"),))
        self.assertEqual((rules[1].database, rules[1].user), ("mydb", "myuser"))


class _Lookup:
    """
    A role lookup answering with Deferreds the test fires.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[frozenset[str] | None, Deferred[Mapping[str, frozenset[str]]]]] = []

    def __call__(self, groups: frozenset[str] | None) -> Deferred[Mapping[str, frozenset[str]]]:
        d: Deferred[Mapping[str, frozenset[str]]] = Deferred()
        self.calls.append((groups, d))
        return d


class RoleMembershipTests(SynchronousTestCase):
    """
    Tests for L{RoleMembership} and C{+group}/C{samerole} matching.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.lookup = _Lookup()
        self.roles = RoleMembership(frozenset({"staff"}), self.lookup, self.clock, 60.0, 5.0)
        self.rules = [
            HbaRule(
                "host",
                "all",
                "+staff",
                None,
                "md5",
                "hba.conf",
                1,
                users=(HbaName("group", "staff"),),
            ),
            rule("host", "all", "all", "all", "reject", 2),
        ]

    def test_unknownFailsClosed(self) -> None:
        """
        Until membership is read, a rule needing it raises L{RolesUnknown}
        instead of being skipped (which would let a later rule decide).
        """
        error = self.assertRaises(
            RolesUnknown, matchHba, self.rules, "10.0.0.1", "db", "alice", False, self.roles
        )
        self.assertIs(error.rule, self.rules[0])
        self.assertRaises(RolesUnknown, matchHba, self.rules, "10.0.0.1", "db", "alice", False)

    def test_readyWaitsForFirstRead(self) -> None:
        """
        L{RoleMembership.ready} starts one read and every client waits for
        it; then members (direct or not, as the lookup says) match.
        """
        first = self.roles.ready()
        second = self.roles.ready()
        assert first is not None and second is not None
        self.assertEqual(len(self.lookup.calls), 1)
        self.assertEqual(self.lookup.calls[0][0], frozenset({"staff"}))
        fired: list[object] = []
        first.addCallback(fired.append)
        self.lookup.calls[0][1].callback({"staff": frozenset({"staff", "alice", "nested"})})
        self.assertEqual(fired, [None])
        self.assertIsNone(self.roles.ready())
        for user in ("alice", "nested", "staff"):
            self.assertIs(
                matchHba(self.rules, "1.2.3.4", "db", user, False, self.roles), self.rules[0]
            )
        self.assertIs(
            matchHba(self.rules, "1.2.3.4", "db", "bob", False, self.roles), self.rules[1]
        )

    def test_missRefreshesAtMostOncePerInterval(self) -> None:
        """
        A user not found starts a background read, at most one per
        C{retryInterval} however many names are tried; nothing is kept
        per name tried.
        """
        self.roles.ready()
        self.lookup.calls[0][1].callback({"staff": frozenset({"staff"})})
        self.clock.advance(5)
        for index in range(100):
            matchHba(self.rules, "1.2.3.4", "db", f"random{index}", False, self.roles)
        self.assertEqual(len(self.lookup.calls), 2)
        self.lookup.calls[1][1].callback({"staff": frozenset({"staff", "random7"})})
        self.assertEqual(list(self.roles.members or {}), ["staff"])
        self.assertIs(
            matchHba(self.rules, "1.2.3.4", "db", "random7", False, self.roles), self.rules[0]
        )
        matchHba(self.rules, "1.2.3.4", "db", "other", False, self.roles)
        self.assertEqual(len(self.lookup.calls), 2)

    def test_staleRefreshedInBackground(self) -> None:
        """
        Past C{refreshInterval} the membership is read again, while clients
        go on with the last one read.
        """
        self.roles.ready()
        self.lookup.calls[0][1].callback({"staff": frozenset({"staff", "alice"})})
        self.clock.advance(61)
        self.assertIsNone(self.roles.ready())
        self.assertEqual(len(self.lookup.calls), 2)

    def test_failedReadKeepsLastOrStaysUnknown(self) -> None:
        """
        A failed first read leaves membership unknown (clients refused, and
        the next read waits C{retryInterval}); a failed later read keeps
        the last one.
        """
        waiting = self.roles.ready()
        assert waiting is not None
        self.lookup.calls[0][1].errback(ConnectionRefusedError("no server"))
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        self.assertIsNone(self.roles.ready())
        self.assertRaises(
            RolesUnknown, matchHba, self.rules, "1.2.3.4", "db", "alice", False, self.roles
        )
        self.clock.advance(5)
        self.assertIsNotNone(self.roles.ready())
        self.lookup.calls[1][1].callback({"staff": frozenset({"staff", "alice"})})
        self.clock.advance(61)
        self.roles.ready()
        self.lookup.calls[2][1].errback(ConnectionRefusedError("no server"))
        self.assertIs(
            matchHba(self.rules, "1.2.3.4", "db", "alice", False, self.roles), self.rules[0]
        )

    def test_samerole(self) -> None:
        """
        C{samerole} matches when the user is a member of the role named as
        the database asked for.
        """
        roles = RoleMembership(None, self.lookup, self.clock)
        rules = [HbaRule("host", "samerole", "all", None, "md5", "hba.conf", 1)]
        roles.ready()
        self.assertIsNone(self.lookup.calls[0][0])
        self.lookup.calls[0][1].callback({"sales": frozenset({"sales", "alice"})})
        self.assertIs(matchHba(rules, "1.2.3.4", "sales", "alice", False, roles), rules[0])
        self.assertIsNone(matchHba(rules, "1.2.3.4", "hr", "alice", False, roles))
