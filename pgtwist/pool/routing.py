# -*- test-case-name: tests.unit.test_routing -*-
"""
Which server a new backend of a pool goes to: libpq's
C{target_session_attrs} and C{load_balance_hosts} over the roles and the
health pgtwist found out (L{pgtwist.pool.health}).

Pure functions of what is known of each server, so that the pools, the
console and the tests answer alike. Only a new backend is routed: a
backend keeps its server for life (the pools close those a change of
roles or health leaves on a server they should no longer use).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable

from pgtwist._compat import SLOTS
from pgtwist.config.limits import Routing
from pgtwist.config.model import LOAD_BALANCE_HOSTS, TARGET_SESSION_ATTRS, ServerSettings

__all__ = [
    "LOAD_BALANCE_HOSTS",
    "ROLE_PRIMARY",
    "ROLE_STANDBY",
    "ROLE_UNKNOWN",
    "TARGET_SESSION_ATTRS",
    "Routing",
    "ServerHealth",
    "candidates",
    "choose",
]

ROLE_UNKNOWN = "unknown"
ROLE_PRIMARY = "primary"
ROLE_STANDBY = "standby"


@dataclass(**SLOTS)
class ServerHealth:
    """
    What pgtwist found out about one server.

    @ivar role: C{primary} or C{standby} (C{pg_is_in_recovery()}, or the
        C{in_hot_standby} ParameterStatus PostgreSQL 14 and later reports
        at login), C{unknown} until a backend or a health check told.
    @ivar healthy: C{False} from a failed health check until one passes:
        no new backend goes there meanwhile.
    @ivar lagBytes: A standby's replay lag in bytes of WAL (C{None}:
        not measured).
    @ivar lagSeconds: A standby's replay lag in seconds, counted only while
        it has WAL it received but did not replay.
    @ivar checkedAt: When the last health check of it ended (0: never).
    @ivar error: Why its last health check failed (C{""} when it passed).
    """

    role: str = ROLE_UNKNOWN
    healthy: bool = True
    lagBytes: int | None = None
    lagSeconds: float | None = None
    checkedAt: float = 0.0
    error: str = ""


def fresh(health: ServerHealth, routing: Routing) -> bool:
    """
    Whether a server is within C{routing}'s lag limits (a primary, and a
    server whose lag is unmeasured, always is).
    """
    if health.role != ROLE_STANDBY:
        return True
    if routing.maxLagBytes and (health.lagBytes or 0) > routing.maxLagBytes:
        return False
    return not (routing.maxLagSeconds and (health.lagSeconds or 0.0) > routing.maxLagSeconds)


def candidates(
    servers: Sequence[ServerSettings],
    current: ServerSettings,
    health: Mapping[str, ServerHealth],
    routing: Routing,
    usable: Callable[[ServerSettings], bool] = lambda server: True,
) -> list[ServerSettings]:
    """
    The servers a new backend of a pool may go to now, best first: those of
    the first non-empty tier C{routing} allows, the C{current} server (the
    one pgagroal's failover order made primary) before the others, then in
    the configuration's order.

      - C{read-write}, C{primary}: the servers known to be primaries, else
        those whose role is not known yet, else C{current} (pgtwist's
        behaviour with one server, whatever it is).
      - C{read-only}, C{standby}: standbys within the lag limits, else
        servers whose role is not known yet; never a primary (libpq's
        meaning: clients wait, and get C{query_wait_timeout}'s error).
      - C{prefer-standby}: standbys, then unknown ones, then what
        C{read-write} would take.
      - C{any}: every server, standbys past the lag limits left out.

    A server whose health check failed, or that C{usable} refuses (a
    failover marked it failed), is in no tier.
    """
    ordered = [current] + [s for s in servers if s.name != current.name]

    def state(server: ServerSettings) -> ServerHealth:
        return health.get(server.name) or ServerHealth()

    up = [s for s in ordered if state(s).healthy and usable(s)]
    primaries = [s for s in up if state(s).role == ROLE_PRIMARY]
    standbys = [s for s in up if state(s).role == ROLE_STANDBY and fresh(state(s), routing)]
    unknown = [s for s in up if state(s).role == ROLE_UNKNOWN]
    fallback = [current] if current in up else []
    if not routing.followPrimary:
        # failover_script decides which server is the primary.
        primaries, unknown = fallback, []
    attrs = routing.targetSessionAttrs
    if attrs in ("read-only", "standby"):
        return standbys or unknown
    if attrs == "prefer-standby":
        return standbys or unknown or primaries or fallback
    if attrs == "any":
        return [s for s in up if fresh(state(s), routing)]
    return primaries or unknown or fallback


def choose(
    choices: Sequence[ServerSettings],
    routing: Routing,
    key: object,
    positions: dict[object, int],
    rng: random.Random | None = None,
) -> ServerSettings | None:
    """
    One of C{choices} (L{candidates}) by C{routing.loadBalanceHosts}:
    the first (C{disable}), one at random, or the next in turn for C{key}
    (C{round-robin}, C{positions} keeping each pool's turn). C{None} when
    there is no choice.
    """
    if not choices:
        return None
    balance = routing.loadBalanceHosts
    if balance == "random":
        return (rng or random).choice(list(choices))
    if balance == "round-robin":
        position = positions.get(key, -1) + 1
        positions[key] = position
        return choices[position % len(choices)]
    return choices[0]


def parseLsn(text: str | bytes | None) -> int | None:
    """
    A PostgreSQL C{pg_lsn} (C{"16/B374D848"}) as a number of bytes, or
    C{None} for C{NULL} or anything else.
    """
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    high, sep, low = text.partition("/")
    try:
        return (int(high, 16) << 32) + int(low, 16) if sep else None
    except ValueError:
        return None
