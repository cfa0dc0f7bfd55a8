# -*- test-case-name: tests.unit.test_config_limits -*-
"""
Lookups over the databases file and the main settings that every layer
asks: which line governs a pool, what an alias stands for, and which
pipeline a pool runs. Pure functions of the configuration, so the
frontend, the pools and the console answer alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgtwist.config.model import Configuration, DatabaseLimit, PoolKey
from pgtwist.config.tlsfiles import clientTlsMode

__all__ = ["matchLimit", "pipelineName", "resolveAlias", "sessionFeatures"]


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
