# -*- test-case-name: tests.unit.test_hba -*-
"""
Host-based authentication: which C{pgtwist_hba.conf} rule applies to a
client.

The file is parsed by L{pgtwist.config.loader} into
L{pgtwist.config.model.HbaRule}s; this module only matches. Matching
follows pgagroal (and PostgreSQL): rules are tried in file order and the
first one whose type, database, user and address all match decides the
method. No match means the client is rejected.

Rules naming C{+group} (or C{samerole}) need role membership, which only
PostgreSQL knows: L{RoleMembership} keeps, per configured group, the set
of roles that are members of it (directly or not, as PostgreSQL's
C{is_member_of_role}), read through a lookup function the caller gives it
(L{pgtwist.net.roles}). It is never keyed by a name a client sent, so
clients trying names cannot grow it.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from pgtwist.config.model import HbaName, HbaRule

__all__ = ["RoleMembership", "RolesUnknown", "matchHba"]

#: Reads role membership from PostgreSQL: given the groups (C{None}: every
#: role), fires with each group's member roles, the group itself included.
RoleLookup = Callable[[Union[frozenset[str], None]], "Deferred[Mapping[str, frozenset[str]]]"]


class RolesUnknown(Exception):
    """
    A rule needs role membership and it is not known (never read, or
    PostgreSQL could not be asked): the client must be refused, not the
    rule skipped.

    @ivar rule: The rule that needed it.
    """

    def __init__(self, rule: HbaRule) -> None:
        super().__init__(f"role membership for {rule.path}:{rule.line} is not known")
        self.rule = rule


class RoleMembership:
    """
    The members of the roles HBA rules name, as last read from PostgreSQL.

    Read when first needed, again in the background when a client is not
    found in a group (at most once per C{retryInterval}) and when the last
    read is older than C{refreshInterval}; a reload builds a new one. A
    failed read keeps what an earlier one found; until one succeeds the
    membership is unknown and L{isMember} raises L{RolesUnknown}.

    @ivar groups: The roles whose members are read; C{None} for every role
        (C{samerole} names a role by the database asked for).
    @ivar members: Each group's members, or C{None} until read.
    """

    log = Logger()

    def __init__(
        self,
        groups: frozenset[str] | None,
        lookup: RoleLookup,
        clock: Any,
        refreshInterval: float = 60.0,
        retryInterval: float = 5.0,
    ) -> None:
        self.groups = groups
        self.members: Mapping[str, frozenset[str]] | None = None
        self._lookup = lookup
        self._clock = clock
        self._refreshInterval = refreshInterval
        self._retryInterval = retryInterval
        self._lastAttempt: float | None = None
        self._lastRead: float | None = None
        self._waiters: list[Deferred[None]] | None = None

    def ready(self) -> Deferred[None] | None:
        """
        What a client must wait for before matching: a Deferred while the
        membership is unknown and being read (fires once the read ended,
        whatever its outcome), else C{None}. A stale membership is used at
        once and read again in the background.
        """
        now = self._clock.seconds()
        if self.members is None:
            if self._waiters is None and not self._mayRetry(now):
                return None
            waiter: Deferred[None] = Deferred()
            self.refresh()
            if self._waiters is None:  # the lookup answered at once
                return None
            self._waiters.append(waiter)
            return waiter
        if self._lastRead is not None and now - self._lastRead >= self._refreshInterval:
            if self._mayRetry(now):
                self.refresh()
        return None

    def isMember(self, user: str, role: str, rule: HbaRule) -> bool:
        """
        Whether C{user} is C{role} or a member of it.

        @raise RolesUnknown: The membership has not been read.
        """
        members = self.members
        if members is None:
            raise RolesUnknown(rule)
        if user in members.get(role, ()):
            return True
        if self._mayRetry(self._clock.seconds()):
            # Perhaps granted since the last read: look again for next time.
            self.refresh()
        return False

    def _mayRetry(self, now: float) -> bool:
        return self._waiters is None and (
            self._lastAttempt is None or now - self._lastAttempt >= self._retryInterval
        )

    def refresh(self) -> None:
        """
        Read the membership again, unless a read is under way.
        """
        if self._waiters is not None:
            return
        self._lastAttempt = self._clock.seconds()
        self._waiters = []
        try:
            d = self._lookup(self.groups)
        except Exception:
            d = Deferred()
            d.errback(Failure())
        d.addCallbacks(self._read, self._failed)

    def _read(self, members: Mapping[str, frozenset[str]]) -> None:
        self.members = members
        self._lastRead = self._clock.seconds()
        self._wake()

    def _failed(self, reason: Failure) -> None:
        self.log.warn(
            "Cannot read role membership for HBA rules from PostgreSQL{stale}: {error}",
            stale=" (using the last one read)" if self.members is not None else "",
            error=reason.getErrorMessage(),
        )
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters or [], None
        for waiter in waiters:
            waiter.callback(None)


_IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

#: The addresses a unix-socket client is taken to have for C{host} rules.
_LOOPBACKS: tuple[_IPAddress, ...] = (
    ipaddress.IPv4Address("127.0.0.1"),
    ipaddress.IPv6Address("::1"),
)


@functools.lru_cache(maxsize=256)
def _clientAddresses(address: str | None) -> tuple[_IPAddress, ...] | None:
    """
    The addresses to test a rule's network against; the last few clients'
    kept, since parsing an address costs about a dozen Python calls at
    every login and clients log in again and again from the same hosts.

    @return: C{None} for a unix-socket client; for an IPv4-mapped IPv6
        address (C{::ffff:1.2.3.4}) both forms, so that it matches IPv4
        networks; an empty tuple for text that is not an IP address (it
        then matches only C{all}).
    """
    if address is None:
        return None
    text = address.split("%", 1)[0]  # drop an IPv6 scope (fe80::1%eth0)
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return ()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return (ip, ip.ipv4_mapped)
    return (ip,)


def _addressMatches(rule: HbaRule, addresses: tuple[_IPAddress, ...] | None) -> bool:
    """
    Whether a client's addresses fall in the rule's ADDRESS column.
    """
    if rule.type == "local":
        return addresses is None
    if rule.address is None:
        return True
    candidates = _LOOPBACKS if addresses is None else addresses
    network = rule.address
    # A loop, not any() over a generator: its frame would be entered per
    # candidate, on every rule with an address, at every login.
    for ip in candidates:
        if ip.version == network.version and ip in network:
            return True
    return False


def _databaseMatches(rule: HbaRule, database: str, user: str, roles: RoleMembership | None) -> bool:
    """
    Whether the DATABASE list holds the database asked for.
    """
    for item in rule.databases:
        kind = item.kind
        if kind == "name":
            if item.name == database:
                return True
        elif kind == "all":
            return True
        elif kind == "sameuser":
            if database == user:
                return True
        elif kind == "samerole":
            if _isMember(roles, user, database, rule):
                return True
        # "replication" matches replication connections only, and pgtwist
        # refuses those before HBA (L{pgtwist.net.startup.routeStartup}).
    return False


def _userMatches(rule: HbaRule, user: str, roles: RoleMembership | None) -> bool:
    """
    Whether the USER list holds the user.
    """
    for item in rule.users:
        kind = item.kind
        if kind == "name":
            if item.name == user:
                return True
        elif kind == "all":
            return True
        elif kind == "group" and _isMember(roles, user, item.name, rule):
            return True
    return False


def _isMember(roles: RoleMembership | None, user: str, role: str, rule: HbaRule) -> bool:
    if roles is None:
        raise RolesUnknown(rule)
    return roles.isMember(user, role, rule)


def _plain(names: tuple[HbaName, ...]) -> str | None:
    """
    The one name, or C{all}, a list is: the common case, matched without a
    loop.
    """
    if len(names) == 1 and names[0].kind in ("name", "all"):
        return names[0].name
    return None


def matchHba(
    rules: Sequence[HbaRule],
    address: str | None,
    database: str,
    user: str,
    tls: bool,
    roles: RoleMembership | None = None,
) -> HbaRule | None:
    """
    Find the rule that applies to a client: the first one that matches.

    A rule matches when:
        - its type fits the connection: C{host} and C{hostnogssenc} match
          TCP clients with or without TLS, C{hostssl} only TCP clients that
          negotiated TLS, C{hostnossl} only those that did not,
          C{hostgssenc} none (pgtwist refuses GSSAPI encryption), and
          C{local} only unix-socket clients;
        - its DATABASE list holds the database the client asked for (the
          name it sent, before aliases: a rule for an alias applies to the
          alias), C{all}, C{sameuser} (the database is named as the user)
          or C{samerole} (the user is a member of the role named as the
          database); C{replication} never matches (pgtwist takes no
          replication connections);
        - its USER list holds the user, C{all}, or C{+role} with the user
          a member of C{role} (directly or not);
        - its ADDRESS is C{all} or a network holding the client's address.
          An IPv4-mapped IPv6 address (C{::ffff:127.0.0.1}, as a dual-stack
          listener reports IPv4 clients) matches IPv4 networks.

    pgagroal's file has only C{host} and C{hostssl} rules, yet it also
    accepts clients on its unix socket; to keep such files working, a
    unix-socket client (C{address} is C{None}) also matches C{host} rules
    whose ADDRESS is C{all} or a network containing 127.0.0.1 or ::1, as if
    it came from loopback. Use C{local} rules to treat it separately.

    @param rules: The rules in file order.
    @param address: The client's IP address as text, or C{None} for a
        unix-socket client.
    @param database: The database from the StartupMessage.
    @param user: The user from the StartupMessage.
    @param tls: Whether the client negotiated TLS.
    @param roles: Role membership, for C{+group} and C{samerole}.
    @return: The first matching rule, or C{None} when none matches (the
        client must be rejected).
    @raise RolesUnknown: A rule the client reached needs role membership
        and it is not known: the client must be refused.
    """
    addresses = _clientAddresses(address)
    for rule in rules:
        if rule.type == "hostssl" and not tls or rule.type == "hostnossl" and tls:
            continue
        if rule.type == "hostgssenc":
            continue
        if not _addressMatches(rule, addresses):
            continue
        single = _plain(rule.databases)
        if single is not None:
            if single != database and rule.databases[0].kind != "all":
                continue
        elif not _databaseMatches(rule, database, user, roles):
            continue
        single = _plain(rule.users)
        if single is not None:
            if single != user and rule.users[0].kind != "all":
                continue
        elif not _userMatches(rule, user, roles):
            continue
        return rule
    return None
