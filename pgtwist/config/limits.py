# -*- test-case-name: tests.unit.test_config_limits -*-
"""
Lookups over the databases file and the main settings that every layer
asks: which line governs a pool, what an alias stands for, and which
pipeline a pool runs. Pure functions of the configuration, so the
frontend, the pools and the console answer alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pgtwist._compat import SLOTS
from pgtwist.config.model import Configuration, DatabaseLimit, PoolKey
from pgtwist.config.tlsfiles import clientTlsMode

__all__ = [
    "ClientLimits",
    "clientLimits",
    "matchLimit",
    "pipelineName",
    "resolveAlias",
    "Routing",
    "backendDatabase",
    "routingFor",
    "sessionFeatures",
]


def matchLimit(limits: Sequence[DatabaseLimit], database: str, user: str) -> int | None:
    """
    The index of the C{pgtwist_databases.conf} line governing (database,
    user), in pgagroal's order: exact pair, then the user with database
    C{all}, then the database with user C{all}, then C{all all}.
    """
    for wanted in ((database, user), ("all", user), (database, "all"), ("all", "all")):
        for index, limit in enumerate(limits):
            if (limit.database, limit.user) == wanted:
                return index
    return None


def resolveAlias(limits: Sequence[DatabaseLimit], database: str) -> str:
    """
    The real database behind an alias of the databases file (or C{database}).
    """
    for limit in limits:
        if database in limit.aliases:
            return limit.database
    return database


def sessionFeatures(config: Configuration) -> list[str]:
    """
    The configured features the performance pipeline does not support.
    """
    main = config.main
    problems = []
    if clientTlsMode(main) != "disable":
        problems.append("tls")
    if main.failover:
        problems.append("failover")
    if main.disconnectClient > 0:
        problems.append("disconnect_client")
    return problems


def pipelineName(config: Configuration, key: PoolKey) -> str:
    """
    The name of the pipeline a pool runs: the PIPELINE column of the
    databases-file line governing it, else the main C{pipeline}. C{auto} is
    pgagroal's rule: C{performance}, unless a configured feature needs
    C{session} (L{sessionFeatures}).
    """
    name = config.main.pipeline
    index = matchLimit(config.limits, *key)
    if index is not None and config.limits[index].pipeline:
        name = config.limits[index].pipeline or name
    if name == "auto":
        name = "session" if sessionFeatures(config) else "performance"
    return name


@dataclass(frozen=True, **SLOTS)
class ClientLimits:
    """
    The limits and timeouts, PgBouncer's, that apply to the clients of one
    pool: seconds, C{0} meaning off.

    @ivar queryWaitTimeout: How long a client may wait for a backend, and
        C{None} where no C{query_wait_timeout} is set (C{blocking_timeout}
        governs, with its own message).
    """

    transactionTimeout: float = 0.0
    idleTransactionTimeout: float = 0.0
    queryTimeout: float = 0.0
    queryWaitTimeout: float | None = None
    clientIdleTimeout: float = 0.0
    reservePoolSize: int = 0
    maxDbClientConnections: int = 0
    maxUserClientConnections: int = 0

    @property
    def transactional(self) -> bool:
        """
        Whether a timeout that watches transactions and queries is on.
        """
        return bool(self.transactionTimeout or self.idleTransactionTimeout or self.queryTimeout)


#: The fields of L{ClientLimits} a databases-file line may set, and the
#: lines each is looked up on: C{"pair"} follows pgagroal's order (the exact
#: pair, C{all USER}, C{DATABASE all}, C{all all}), C{"database"} only
#: C{DATABASE all} and C{all all}, C{"user"} only C{all USER} and C{all all}.
_LIMIT_FIELDS = {
    "transactionTimeout": "pair",
    "idleTransactionTimeout": "pair",
    "queryTimeout": "pair",
    "queryWaitTimeout": "pair",
    "clientIdleTimeout": "pair",
    "reservePoolSize": "pair",
    "maxDbClientConnections": "database",
    "maxUserClientConnections": "user",
}


def clientLimits(config: Configuration, key: PoolKey) -> ClientLimits:
    """
    The limits of the pool C{key}: for each, the value of the most specific
    databases-file line that sets it (PgBouncer's per-user value before
    its per-database one, as a C{[users]} entry wins over a C{[databases]}
    one), else the main section's.
    """
    database, user = key
    main = config.main
    orders = {
        "pair": ((database, user), ("all", user), (database, "all"), ("all", "all")),
        "database": ((database, "all"), ("all", "all")),
        "user": (("all", user), ("all", "all")),
    }
    lines = {(limit.database, limit.user): limit for limit in reversed(config.limits)}
    values: dict[str, Any] = {}
    for name, order in _LIMIT_FIELDS.items():
        value = getattr(main, name)
        for wanted in orders[order]:
            limit = lines.get(wanted)
            if limit is not None and getattr(limit, name) is not None:
                value = getattr(limit, name)
                break
        values[name] = value
    return ClientLimits(**values)


@dataclass(frozen=True, **SLOTS)
class Routing:
    """
    How one pool picks the server of a new backend (the databases-file
    line's keys, else the main section's; L{pgtwist.pool.routing}).

    @ivar maxLagBytes: PgDoorman's C{max_lag_in_bytes}: a standby further
        behind takes no new backend (0: no limit).
    @ivar maxLagSeconds: Odyssey's C{catchup_timeout}: the same in seconds
        of replay lag (0: no limit).
    @ivar followPrimary: Whether read-write pools go to whichever server is
        found to be the primary; C{False} when a C{failover_script} decides
        (then the primary is the one the failover order made current).
    """

    targetSessionAttrs: str = "read-write"
    loadBalanceHosts: str = "disable"
    maxLagBytes: int = 0
    maxLagSeconds: float = 0.0
    followPrimary: bool = True


def _lineFor(config: Configuration, key: PoolKey) -> DatabaseLimit | None:
    index = matchLimit(config.limits, *key)
    return None if index is None else config.limits[index]


def routingFor(config: Configuration, key: PoolKey) -> Routing:
    """
    The routing of the pool C{key}: each key of the databases-file line
    governing it where the line sets it, else the main section's.
    """
    main = config.main
    line = _lineFor(config, key)

    def pick(name: str, default: Any) -> Any:
        value = getattr(line, name) if line is not None else None
        return default if value is None else value

    return Routing(
        targetSessionAttrs=pick("targetSessionAttrs", main.targetSessionAttrs),
        loadBalanceHosts=pick("loadBalanceHosts", main.loadBalanceHosts),
        maxLagBytes=pick("maxLagInBytes", main.maxLagInBytes),
        maxLagSeconds=pick("catchupTimeout", main.catchupTimeout),
        followPrimary=not (main.failover and main.failoverScript),
    )


def backendDatabase(config: Configuration, key: PoolKey) -> str:
    """
    The database the backends of the pool C{key} log into: the C{dbname}
    of the line governing it (PgBouncer's key), else the pool's database.
    """
    line = _lineFor(config, key)
    if line is not None and line.dbname and line.database == key[0]:
        return line.dbname
    return key[0]
