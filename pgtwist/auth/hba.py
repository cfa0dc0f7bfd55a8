# -*- test-case-name: tests.unit.test_hba -*-
"""
Host-based authentication: which C{pgtwist_hba.conf} rule applies to a
client.

The file is parsed by L{pgtwist.config.loader} into
L{pgtwist.config.model.HbaRule}s; this module only matches. Matching
follows pgagroal (and PostgreSQL): rules are tried in file order and the
first one whose type, database, user and address all match decides the
method. No match means the client is rejected.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Union

from pgtwist.config.model import HbaRule

__all__ = ["matchHba"]

_IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

#: The addresses a unix-socket client is taken to have for C{host} rules.
_LOOPBACKS: tuple[_IPAddress, ...] = (
    ipaddress.IPv4Address("127.0.0.1"),
    ipaddress.IPv6Address("::1"),
)


def _clientAddresses(address: str | None) -> tuple[_IPAddress, ...] | None:
    """
    The addresses to test a rule's network against.

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
    return any(ip.version == network.version and ip in network for ip in candidates)


def matchHba(
    rules: Sequence[HbaRule], address: str | None, database: str, user: str, tls: bool
) -> HbaRule | None:
    """
    Find the rule that applies to a client: the first one that matches.

    A rule matches when:
        - its type fits the connection: C{host} matches TCP clients with or
          without TLS, C{hostssl} only TCP clients that negotiated TLS, and
          C{local} (a pgtwist addition) only unix-socket clients;
        - its DATABASE and USER are C{all} or equal to the names the client
          sent;
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
    @return: The first matching rule, or C{None} when none matches (the
        client must be rejected).
    """
    addresses = _clientAddresses(address)
    for rule in rules:
        if rule.type == "hostssl" and not tls:
            continue
        if rule.database != "all" and rule.database != database:
            continue
        if rule.user != "all" and rule.user != user:
            continue
        if _addressMatches(rule, addresses):
            return rule
    return None
