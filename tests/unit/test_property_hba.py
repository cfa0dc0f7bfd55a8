"""
Properties of HBA matching (L{pgtwist.auth.hba.matchHba} over rules read by
L{pgtwist.config.tables.readHbaFile}) against an independent model of
PostgreSQL's own C{check_hba}: random C{pg_hba.conf} files, random clients,
and the rule the model picks must be the one pgtwist picks.

The model follows C{src/backend/libpq/hba.c}: lines are tried in order and
the first whose connection type, database, user and address all match
wins; no match rejects. Keywords count only unquoted and spelled in lower
case (C{token_is_keyword}); a quoted keyword, or a quoted C{+name}, is a
plain name; C{+role} matches members of the role, C{sameuser} a database
named as the user, C{samerole} a user that is a member of the role named
as the database; an address matches when its masked bits equal the rule's.
Where pgtwist documents a difference, the model follows pgtwist
(L{matchHba}): C{replication} and C{hostgssenc} never match, a unix-socket
client also matches C{host} rules that would admit loopback, and an
IPv4-mapped IPv6 client matches IPv4 networks too.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

from hypothesis import given, note
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.auth.hba import RoleMembership, matchHba
from pgtwist.config.tables import readHbaFile

#: Role membership as PostgreSQL would report it: each role's members, the
#: role itself included.
MEMBERS = {
    "staff": frozenset({"staff", "alice", "bob"}),
    "sales": frozenset({"sales", "bob"}),
    "alice": frozenset({"alice"}),
    "bob": frozenset({"bob"}),
}

DATABASES = ["db", "sales", "alice", "all", "ALL", "sameuser", "replication", "+staff"]
USERS = ["alice", "bob", "carol", "staff", "all", "+staff", "ALL"]

#: Words of the DATABASE column: (text, quoted).
_databaseItem = st.one_of(
    st.tuples(
        st.sampled_from(["all", "sameuser", "samerole", "samegroup", "replication"]), st.just(False)
    ),
    st.tuples(st.sampled_from(["db", "sales", "alice", "ALL", "Db"]), st.just(False)),
    st.tuples(st.sampled_from(DATABASES), st.just(True)),
)
#: Words of the USER column: (text, quoted).
_userItem = st.one_of(
    st.tuples(st.sampled_from(["all", "+staff", "+sales", "+nobody"]), st.just(False)),
    st.tuples(st.sampled_from(["alice", "bob", "carol", "staff", "ALL"]), st.just(False)),
    st.tuples(st.sampled_from(USERS), st.just(True)),
)
_network = st.one_of(
    st.just("all"),
    st.builds(
        lambda a, b, bits: f"{a}.{b}.7.9/{bits}",
        st.sampled_from([10, 127, 192]),
        st.sampled_from([0, 1, 168]),
        st.integers(0, 32),
    ),
    st.sampled_from(["127.0.0.1", "10.0.0.1", "::1", "::1/128", "fe80::/10", "::/0", "0.0.0.0/0"]),
    st.builds(lambda bits: f"2001:db8::7/{bits}", st.integers(0, 128)),
)


@dataclass(frozen=True)
class Line:
    """
    One generated HBA line.
    """

    type: str
    databases: tuple[tuple[str, bool], ...]
    users: tuple[tuple[str, bool], ...]
    address: str

    def text(self) -> str:
        """
        The line as written in the file.
        """

        def column(items: tuple[tuple[str, bool], ...]) -> str:
            return ",".join(f'"{text}"' if quoted else text for text, quoted in items)

        address = "" if self.type == "local" and self.address == "all" else self.address
        return f"{self.type} {column(self.databases)} {column(self.users)} {address} trust"


_line = st.builds(
    Line,
    st.sampled_from(["host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc", "local"]),
    st.lists(_databaseItem, min_size=1, max_size=3).map(tuple),
    st.lists(_userItem, min_size=1, max_size=3).map(tuple),
    _network,
).map(
    lambda line: line if line.type != "local" else Line("local", line.databases, line.users, "all")
)


@dataclass(frozen=True)
class Client:
    """
    One generated client: C{address} is C{None} for a unix socket.
    """

    address: str | None
    database: str
    user: str
    tls: bool


_client = st.builds(
    Client,
    st.one_of(
        st.none(),
        st.sampled_from(
            ["127.0.0.1", "10.0.0.1", "10.1.7.9", "192.168.7.9", "::1", "fe80::1", "2001:db8::7"]
        ),
        st.sampled_from(
            ["::ffff:127.0.0.1", "::ffff:10.1.7.9", "2001:db8:ffff::1", "fe80::1%eth0"]
        ),
    ),
    st.sampled_from(DATABASES),
    st.sampled_from(USERS),
    st.booleans(),
)


def isMember(user: str, role: str) -> bool:
    """
    PostgreSQL's C{is_member_of_role} over L{MEMBERS}.
    """
    return user in MEMBERS.get(role, frozenset())


def _ipBits(text: str) -> tuple[int, int]:
    """
    An address as (version, integer).
    """
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    return ip.version, int(ip)


def addressMatches(rule: str, client: str | None) -> bool:
    """
    Whether a client's address is in a rule's ADDRESS: the bits under the
    mask are equal. A unix-socket client is taken as loopback (pgtwist);
    an IPv4-mapped client is also its IPv4 address (pgtwist).
    """
    if rule == "all":
        return True
    text, _, bits = rule.partition("/")
    version, network = _ipBits(text)
    width = 32 if version == 4 else 128
    prefix = int(bits) if bits else width
    mask = ((1 << prefix) - 1) << (width - prefix)
    candidates = ["127.0.0.1", "::1"] if client is None else [client]
    if client is not None:
        version6, value = _ipBits(client)
        if version6 == 6 and value >> 32 == 0xFFFF:
            candidates.append(str(ipaddress.IPv4Address(value & 0xFFFFFFFF)))
    for candidate in candidates:
        candidateVersion, value = _ipBits(candidate)
        if candidateVersion == version and value & mask == network & mask:
            return True
    return False


def databaseMatches(items: tuple[tuple[str, bool], ...], client: Client) -> bool:
    """
    PostgreSQL's C{check_db}, for a connection that is not replication.
    """
    for text, quoted in items:
        if not quoted and text == "all":
            return True
        if not quoted and text == "sameuser":
            if client.database == client.user:
                return True
        elif not quoted and text in ("samerole", "samegroup"):
            if isMember(client.user, client.database):
                return True
        elif not quoted and text == "replication":
            continue
        elif text == client.database:
            return True
    return False


def userMatches(items: tuple[tuple[str, bool], ...], client: Client) -> bool:
    """
    PostgreSQL's C{check_role}.
    """
    for text, quoted in items:
        if not quoted and text.startswith("+"):
            if isMember(client.user, text[1:]):
                return True
        elif not quoted and text == "all":
            return True
        elif text == client.user:
            return True
    return False


def modelMatch(lines: list[Line], client: Client) -> int | None:
    """
    The index of the line PostgreSQL's rules pick for C{client}, or C{None}.
    """
    for index, line in enumerate(lines):
        if line.type == "local":
            if client.address is not None:
                continue
        else:
            if line.type == "hostssl" and not client.tls:
                continue
            if line.type == "hostnossl" and client.tls:
                continue
            if line.type == "hostgssenc":
                continue
            if not addressMatches(line.address, client.address):
                continue
        if not databaseMatches(line.databases, client):
            continue
        if not userMatches(line.users, client):
            continue
        return index
    return None


def lookup(groups: frozenset[str] | None) -> Deferred[Mapping[str, frozenset[str]]]:
    """
    PostgreSQL answering a role-membership query at once.
    """
    return succeed(MEMBERS)


class HbaPropertyTests(SynchronousTestCase):
    """
    pgtwist picks the rule PostgreSQL would.
    """

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="pgtwist-hba-")
        self.addCleanup(shutil.rmtree, self.directory)
        self.path = os.path.join(self.directory, "pgtwist_hba.conf")

    @given(st.lists(_line, max_size=6), st.lists(_client, min_size=1, max_size=6))
    def test_firstMatchAsPostgres(self, lines: list[Line], clients: list[Client]) -> None:
        """
        For any file of rules and any client, L{matchHba} returns the rule
        of the line the model of PostgreSQL picks, or C{None} when it
        rejects.
        """
        text = "".join(line.text() + "\n" for line in lines)
        note(text)
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(text)
        rules = readHbaFile(self.path, ["trust"], lambda message: None)
        self.assertEqual([rule.line for rule in rules], list(range(1, len(lines) + 1)))
        roles = RoleMembership(None, lookup, Clock())
        self.assertIsNone(roles.ready())
        for client in clients:
            rule = matchHba(rules, client.address, client.database, client.user, client.tls, roles)
            expected = modelMatch(lines, client)
            self.assertEqual(
                None if rule is None else rule.line - 1,
                expected,
                f"{client} against:\n{text}",
            )
