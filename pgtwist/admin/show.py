# -*- test-case-name: tests.unit.test_admin_console -*-
"""
The console's C{SHOW} commands: PgBouncer's result sets, with its column
names, order and types (C{src/admin.c}, C{src/stats.c}), read from the
running service at the moment they are asked for.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from twisted.internet.address import IPv4Address, IPv6Address

from pgtwist import __version__
from pgtwist.admin.results import Notice, ResultSet, Value
from pgtwist.config.limits import (
    backendDatabase,
    clientLimits,
    matchLimit,
    resolveAlias,
    routingFor,
)
from pgtwist.config.loader import _mainParsers
from pgtwist.config.model import MainSettings
from pgtwist.config.restart import RESTART_KEYS, UPGRADE_CANNOT
from pgtwist.net.frontend import FrontendProtocol, FrontendState
from pgtwist.net.servertls import describeTls
from pgtwist.pipelines._notify import listenerGroups
from pgtwist.pipelines.serverstate import preparedCount
from pgtwist.pool.state import BackendState, Pool, PooledBackend
from pgtwist.pool.stats import COUNTERS

if TYPE_CHECKING:
    from pgtwist.admin.context import ConsoleContext as Console

#: The admin console's own database, as PgBouncer lists it.
ADMIN_DATABASE = "pgbouncer"

#: The key under which L{databaseTotals} sums every database (for TOTALS).
ALL_DATABASES = "\x00all"

#: SHOW STATS_TOTALS columns after C{database} (PgBouncer 1.23+ names).
TOTALS_COLUMNS = (
    "server_assignment_count",
    "xact_count",
    "query_count",
    "bytes_received",
    "bytes_sent",
    "xact_time",
    "query_time",
    "wait_time",
    "client_parse_count",
    "server_parse_count",
    "bind_count",
    "client_login_count",
)

#: SHOW STATS_AVERAGES columns after C{database}.
AVERAGES_COLUMNS = (
    *TOTALS_COLUMNS[:8],
    "avg_client_parse_count",
    "avg_server_parse_count",
    "avg_bind_count",
    "avg_client_login_count",
)

#: SHOW STATS columns after C{database}: totals, then averages.
STATS_COLUMNS = (
    "total_server_assignment_count",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "total_client_parse_count",
    "total_server_parse_count",
    "total_bind_count",
    "total_client_login_count",
    "avg_server_assignment_count",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
    "avg_client_parse_count",
    "avg_server_parse_count",
    "avg_bind_count",
    "avg_client_login_count",
)

#: SHOW TOTALS row names after the C{total_}/C{avg_} prefix (C{stats.c} macros).
TOTALS_ROWS = (
    "server_assignment_count",
    "xact_count",
    "query_count",
    "client_bytes",
    "server_bytes",
    "xact_time",
    "query_time",
    "wait_time",
    "ps_client_parse_count",
    "ps_server_parse_count",
    "ps_bind_count",
    "client_login_count",
)

#: SHOW CLIENTS / SHOW SERVERS: PgBouncer's C{SKF_STD} header, then
#: pgtwist's C{pinned}: what keeps a transaction-pooling client on its
#: backend (its session's temporary tables...), empty when nothing does.
SOCKET_TYPES = "ssssssisiTTiiississiis"
SOCKET_COLUMNS = (
    "type",
    "user",
    "database",
    "replication",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
    "prepared_statements",
    "id",
    "pinned",
)

#: SHOW SERVERS: the socket columns, then the server section each backend
#: is on and the role pgtwist found that server in (after PgBouncer's).
SERVER_TYPES = SOCKET_TYPES + "ss"
SERVER_COLUMNS = (*SOCKET_COLUMNS, "server", "server_role")

#: BackendState -> the SHOW SERVERS state (PgBouncer's server lists).
SERVER_STATES = {
    BackendState.ACTIVE: "active",
    BackendState.IDLE: "idle",
    BackendState.RESETTING: "tested",
    BackendState.CONNECTING: "new",
}

_ZERO = [0] * len(COUNTERS)


# -- what the service holds ---------------------------------------------------


def poolClients(console: Console) -> list[FrontendProtocol]:
    """
    The clients logged in (or logging in) to a pool, oldest first.
    """
    return sorted(
        (
            c
            for c in console.service.management.clients()
            if c.state in (FrontendState.LOGGING_IN, FrontendState.READY)
        ),
        key=lambda c: c.id,
    )


def isWaiting(client: FrontendProtocol) -> bool:
    """
    Whether the client waits for a backend (its pipeline session is
    acquiring one).
    """
    return client.session is not None and client.session.waitingForBackend()


def pinnedBy(client: FrontendProtocol | None) -> str:
    """
    What keeps C{client} on its backend between transactions (the
    transaction pipeline's C{pinned}), or C{""}.
    """
    session = client.session if client is not None else None
    return str(getattr(session, "pinned", "") or "")


def clientState(client: FrontendProtocol) -> str:
    """
    SHOW CLIENTS' state: C{waiting} for a backend, C{active} with one,
    C{idle} between requests (PgBouncer shows an unlinked active client so).
    """
    if isWaiting(client):
        return "waiting"
    return "active" if client.backend is not None else "idle"


def sortedPools(console: Console) -> list[Pool]:
    """
    The pools by (database, user).
    """
    return console.service.management.sortedPools()


def databaseNames(console: Console) -> list[str]:
    """
    The databases pgtwist knows: the databases file's (and their aliases),
    those with a pool or a client, and the console's own.
    """
    service = console.service
    management = service.management
    names = {ADMIN_DATABASE}
    for limit in service.config.limits:
        if limit.database != "all":
            names.add(limit.database)
        names.update(limit.aliases)
    names.update(pool.key[0] for pool in management.allPools())
    names.update(c.key[0] for c in management.clients() if c.key[0])
    return sorted(names)


def userNames(console: Console) -> list[str]:
    """
    The users pgtwist knows: the vault's and C{auth_file}'s, and those
    with a pool or a client.
    """
    service = console.service
    management = service.management
    names = set(service.config.users)
    names.update(service.config.authFile)
    names.update(pool.key[1] for pool in management.allPools())
    names.update(c.key[1] for c in management.clients() if c.key[1])
    return sorted(names)


def databaseTotals(console: Console) -> dict[str, list[int]]:
    """
    PgBouncer's counters summed per database (statistics are kept per
    pool), the console's own under L{ADMIN_DATABASE}, and everything under
    L{ALL_DATABASES}.
    """
    totals: dict[str, list[int]] = {}
    for pool in console.service.management.allPools():
        values = pool.stats.totals()
        current = totals.setdefault(pool.key[0], [0] * len(values))
        for i, value in enumerate(values):
            current[i] += value
    totals[ADMIN_DATABASE] = console.adminStats.totals()
    totals[ALL_DATABASES] = [sum(column) for column in zip(_ZERO, *totals.values())]
    return totals


def _address(address: Any, unixPort: int) -> tuple[str | None, int]:
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.host, address.port
    return "unix", unixPort


def _ptr(thing: object) -> str:
    return f"{id(thing):#x}"


# -- SHOW HELP lives in commands.py; the rest is here --------------------------


def _backendsByServer(pool: Pool) -> str:
    """
    SHOW POOLS' C{servers}: how many backends of C{pool} each server has
    (C{primary=2,replica=1}), by server name.
    """
    counts: dict[str, int] = {}
    for state in SERVER_STATES:
        for entry in pool.backends[state]:
            name = entry.backend.server.name
            counts[name] = counts.get(name, 0) + 1
    return ",".join(f"{name}={count}" for name, count in sorted(counts.items()))


def showPools(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW POOLS: clients and backends per (database, user); after
    PgBouncer's columns, the pool's C{target_session_attrs} and its
    backends on each server.
    """
    management = console.service.management
    config = console.service.config
    several = len(config.servers) > 1
    now = console.clock.seconds()
    clients = poolClients(console)
    rows: list[Sequence[Value]] = []
    for pool in sortedPools(console):
        mine = [c for c in clients if c.key == pool.key]
        waiting = sum(1 for c in mine if isWaiting(c))
        maxWait = now - pool.waiters[0].since if pool.waiters else 0.0
        routing = routingFor(config, pool.key)
        rows.append(
            (
                pool.key[0],
                pool.key[1],
                len(mine) - waiting,
                waiting,
                0,
                0,
                pool.count(BackendState.ACTIVE),
                0,
                0,
                pool.count(BackendState.IDLE),
                0,
                pool.count(BackendState.RESETTING),
                pool.count(BackendState.CONNECTING),
                int(maxWait),
                int(round(maxWait * 1e6)) % 1000000,
                management.pipelineName(pool.key),
                routing.loadBalanceHosts if several else None,
                routing.targetSessionAttrs,
                _backendsByServer(pool),
            )
        )
    consoles = len(management.consoles())
    rows.append((ADMIN_DATABASE, ADMIN_DATABASE, consoles, *[0] * 12, "statement", None, None, ""))
    return ResultSet(
        "ssiiiiiiiiiiiiissss",
        (
            "database",
            "user",
            "cl_active",
            "cl_waiting",
            "cl_active_cancel_req",
            "cl_waiting_cancel_req",
            "sv_active",
            "sv_active_cancel",
            "sv_being_canceled",
            "sv_idle",
            "sv_used",
            "sv_tested",
            "sv_login",
            "maxwait",
            "maxwait_us",
            "pool_mode",
            "load_balance_hosts",
            "target_session_attrs",
            "servers",
        ),
        rows,
    )


def _clientRow(console: Console, client: FrontendProtocol, state: str) -> tuple[Value, ...]:
    port = console.service.config.main.port
    addr, addrPort = _address(client.address, port)
    host = getattr(client.transport, "getHost", lambda: None)()
    localAddr, localPort = _address(host, port)
    now = console.clock.seconds()
    wait = now - client.lastActivity if state == "waiting" else 0.0
    backend = client.backend
    return (
        "C",
        client.key[1] or "(nouser)",
        client.key[0] or "(nodb)",
        "none",
        state,
        addr,
        addrPort,
        localAddr,
        localPort,
        client.connectedAt,
        client.lastActivity,
        int(wait),
        int(round(wait * 1e6)) % 1000000,
        0,
        _ptr(client),
        _ptr(backend) if backend is not None else "",
        0,
        client.tlsDescription,
        client.startupParameters.get("application_name", ""),
        0,
        client.id,
        pinnedBy(client),
    )


def showClients(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW CLIENTS: every client of a pool, then the console sessions.
    """
    rows = [_clientRow(console, c, clientState(c)) for c in poolClients(console)]
    consoles = sorted(console.service.management.consoles(), key=lambda c: c.id)
    rows.extend(_clientRow(console, c, "idle") for c in consoles if c.state is FrontendState.READY)
    return ResultSet(SOCKET_TYPES, SOCKET_COLUMNS, rows)


def _serverRow(
    console: Console, entry: PooledBackend, state: str, client: FrontendProtocol | None
) -> tuple[Value, ...]:
    backend = entry.backend
    transport = backend.transport
    peer = transport.getPeer() if transport is not None else None
    host = transport.getHost() if transport is not None else None
    server = backend.server
    addr, port = _address(peer, server.port)
    if peer is None and not server.host.startswith("/"):
        addr = server.host
    localAddr, localPort = _address(host, server.port)
    return (
        "S",
        backend.key[1],
        backend.key[0],
        "none",
        state,
        addr,
        port,
        localAddr,
        localPort,
        entry.createdAt,
        entry.lastUsedAt,
        0,
        0,
        1 if entry.closeOnRelease else 0,
        _ptr(backend),
        _ptr(client) if client is not None else "",
        backend.processId,
        describeTls(transport) if getattr(backend, "tls", False) else "",
        backend.parameters.get("application_name", ""),
        preparedCount(backend),
        console.serverId(backend),
        pinnedBy(client),
        server.name,
        console.service.management.serverRole(server.name)[0],
    )


def showServers(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW SERVERS: every backend, by pool and state.
    """
    linked = {id(c.backend): c for c in poolClients(console) if c.backend is not None}
    rows = []
    for pool in sortedPools(console):
        for state, name in SERVER_STATES.items():
            for entry in sorted(pool.backends[state], key=lambda e: e.createdAt):
                client = linked.get(id(entry.backend))
                rows.append(_serverRow(console, entry, name, client))
    return ResultSet(SERVER_TYPES, SERVER_COLUMNS, rows)


def showDatabases(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW DATABASES: each database (or alias) with its limits and counts.
    """
    service = console.service
    management = service.management
    config = service.config
    main = config.main
    current = management.currentServer()
    lifetime = int(main.maxConnectionAge)
    rows: list[Sequence[Value]] = []
    for name in databaseNames(console):
        if name == ADMIN_DATABASE:
            consoles = len(management.consoles())
            rows.append(
                (name, None, main.port, name, name, 2, 0, 0, lifetime, "statement", None)
                + (0, 0, 0, consoles, 0, 0)
            )
            continue
        database = resolveAlias(config.limits, name)
        index = matchLimit(config.limits, database, "all")
        limit = config.limits[index] if index is not None else None
        cap = main.maxConnections
        if limit is not None and limit.maxSize is not None:
            cap = limit.maxSize
        pools = [p for p in management.allPools() if p.key[0] == database]
        clients = [c for c in management.clients() if c.key[0] == database]
        bounds = clientLimits(config, (database, "all"))
        rows.append(
            (
                name,
                current.host,
                current.port,
                backendDatabase(config, (database, "all")),
                None,
                cap,
                limit.minSize if limit is not None else 0,
                bounds.reservePoolSize,
                lifetime,
                management.pipelineName((database, "all")),
                routingFor(config, (database, "all")).loadBalanceHosts
                if len(config.servers) > 1
                else None,
                cap,
                sum(p.size for p in pools),
                bounds.maxDbClientConnections,
                len(clients),
                1 if management.isPaused(database) else 0,
                0 if management.isEnabled(database) else 1,
            )
        )
    return ResultSet(
        "ssissiiiissiiiiii",
        (
            "name",
            "host",
            "port",
            "database",
            "force_user",
            "pool_size",
            "min_pool_size",
            "reserve_pool_size",
            "server_lifetime",
            "pool_mode",
            "load_balance_hosts",
            "max_connections",
            "current_connections",
            "max_client_connections",
            "current_client_connections",
            "paused",
            "disabled",
        ),
        rows,
    )


def showUsers(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW USERS: each user with the limits of its C{all USER} line.
    """
    service = console.service
    management = service.management
    limits = service.config.limits
    rows: list[Sequence[Value]] = []
    for name in userNames(console):
        line = next((x for x in limits if (x.database, x.user) == ("all", name)), None)
        poolSize = f"{line.maxSize:9d}" if line is not None and line.maxSize is not None else ""
        bounds = clientLimits(service.config, ("all", name))
        rows.append(
            (
                name,
                poolSize,
                f"{bounds.reservePoolSize:9d}" if bounds.reservePoolSize else "",
                line.pipeline if line is not None else None,
                0,
                sum(p.size for p in management.allPools() if p.key[1] == name),
                bounds.maxUserClientConnections,
                sum(1 for c in management.clients() if c.key[1] == name),
            )
        )
    return ResultSet(
        "ssssiiii",
        (
            "name",
            "pool_size",
            "reserve_pool_size",
            "pool_mode",
            "max_user_connections",
            "current_connections",
            "max_user_client_connections",
            "current_client_connections",
        ),
        rows,
    )


def showLists(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW LISTS: counts of pgtwist's objects, as PgBouncer's lists (two
    columns: pgbouncer_exporter reads exactly two).
    """
    management = console.service.management
    inUse = len(poolClients(console)) + len(management.consoles())
    logins = sum(
        1
        for c in management.clients()
        if c.state in (FrontendState.STARTUP, FrontendState.AUTHENTICATING)
    )
    items = (
        ("databases", len(databaseNames(console))),
        ("users", len(userNames(console))),
        ("pools", len(management.allPools()) + 1),
        ("free_clients", 0),
        ("used_clients", inUse),
        ("login_clients", logins),
        ("free_servers", 0),
        ("used_servers", management.totalBackends()),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    )
    return ResultSet("si", ("list", "items"), items)


def showListeners(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW LISTENERS: per pool, transaction pooling's listener backend
    (LISTEN/NOTIFY, L{pgtwist.pipelines._notify}); a pgtwist addition.
    """
    rows = []
    for group in listenerGroups():
        backend = group.backend
        rows.append(
            (
                group.key[0],
                group.key[1],
                backend.processId if backend is not None else None,
                "active" if backend is not None else "none",
                len(group.wanted),
                group.listenerCount(),
                group.delivered,
                group.lost,
            )
        )
    return ResultSet(
        "ssisiiii",
        (
            "database",
            "user",
            "backend_pid",
            "state",
            "channels",
            "clients",
            "delivered",
            "lost",
        ),
        rows,
    )


def showChannels(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW CHANNELS: every channel a listener backend listens on, with how
    many transaction-pooling clients listen on it; a pgtwist addition.
    """
    rows = []
    for group in listenerGroups():
        for channel in sorted(group.wanted):
            rows.append(
                (
                    group.key[0],
                    group.key[1],
                    channel,
                    len(group.clients.get(channel, ())),
                    1 if channel in group.listening else 0,
                )
            )
    return ResultSet("sssii", ("database", "user", "channel", "clients", "listening"), rows)


def formatSetting(value: object) -> str:
    """
    A setting as the configuration file would spell it.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _configValue(field: str, value: object) -> str:
    """
    A main-section setting as the file spells it; C{log_file_mode} in octal.
    """
    if field == "logFileMode" and isinstance(value, int):
        return f"{value:04o}"
    return formatSetting(value)


def configKeys() -> list[tuple[str, str]]:
    """
    The main section's keys and their L{MainSettings} field names, sorted.
    """
    return sorted((key, field) for key, (field, _) in _mainParsers(os.environ).items())


def showConfig(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW CONFIG: every main-section key with the value in effect, its
    default and whether C{SET} (or a reload) can change it; a notice names
    each key whose file value waits for an upgrade (C{upgrade pending}) or,
    where pgtwist listens and C{workers}, a restart (C{restart pending}).
    """
    main = console.service.config.main
    pending = console.service.management.restartPending
    fields = {key: field for field, key in RESTART_KEYS.items()}
    notices = tuple(
        Notice(
            f"{'restart' if key in UPGRADE_CANNOT else 'upgrade'} pending: {key} is "
            f"{_configValue(fields[key], getattr(main, fields[key]))}"
            f", the configuration says {_configValue(fields[key], value)}"
            + ("" if key in UPGRADE_CANNOT else " (pgtwist-cli upgrade applies it)")
        )
        for key, value in pending.items()
    )
    defaults = MainSettings()
    fixed = set(RESTART_KEYS)
    rows = [
        (
            key,
            _configValue(field, getattr(main, field)),
            _configValue(field, getattr(defaults, field)),
            "no" if field in fixed else "yes",
        )
        for key, field in configKeys()
    ]
    return ResultSet("ssss", ("key", "value", "default", "changeable"), rows, notices=notices)


def showState(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW STATE: whether pgtwist is active, paused or suspended.
    """
    management = console.service.management
    suspended = management.suspended
    paused = management.isPaused(None) and not suspended
    rows = (
        ("active", "no" if paused or suspended else "yes"),
        ("paused", "yes" if paused else "no"),
        ("suspended", "yes" if suspended else "no"),
    )
    return ResultSet("ss", ("key", "value"), rows)


def showVersion(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW VERSION.
    """
    return ResultSet("s", ("version",), ((f"pgtwist {__version__}",),))


def _sizeOf(objects: Iterable[object]) -> tuple[int, int]:
    """
    (bytes of one object with its attributes, how many) for a few objects.
    """
    items = list(objects)
    if not items:
        return 0, 0
    sample = items[0]
    # PyPy has no object sizes: its getsizeof raises unless given a default.
    size = sys.getsizeof(sample, 0) + sys.getsizeof(getattr(sample, "__dict__", {}), 0)
    return size, len(items)


def showMem(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW MEM: PgBouncer's slab caches become object kinds (size is one
    object's shallow size), plus the process's peak resident memory.
    """
    management = console.service.management
    pools = list(management.allPools())
    backends = [b for p in pools for s in SERVER_STATES for b in p.backends[s]]
    caches = (
        ("pool_cache", _sizeOf(pools)),
        ("server_cache", _sizeOf(backends)),
        ("client_cache", _sizeOf([*management.clients(), *management.consoles()])),
    )
    rows: list[Sequence[Value]] = [
        (name, size, count, 0, size * count) for name, (size, count) in caches
    ]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows.append(("process_maxrss", peak, 1, 0, peak))
    return ResultSet("siiii", ("name", "size", "used", "free", "memtotal"), rows)


def _statsRows(console: Console, averages: bool, totals: bool) -> list[Sequence[Value]]:
    sums = databaseTotals(console)
    rows: list[Sequence[Value]] = []
    for name in sorted(sums):
        if name == ALL_DATABASES:
            continue
        values: list[Value] = []
        if totals:
            values.extend(sums[name])
        if averages:
            values.extend(console.averages.averages.get(name, _ZERO))
        rows.append((name, *values))
    return rows


def showStats(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW STATS: totals since start and averages over the last C{stats_period}.
    """
    return ResultSet("s" + "N" * 24, ("database", *STATS_COLUMNS), _statsRows(console, True, True))


def showStatsTotals(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW STATS_TOTALS.
    """
    return ResultSet(
        "s" + "N" * 12, ("database", *TOTALS_COLUMNS), _statsRows(console, False, True)
    )


def showStatsAverages(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW STATS_AVERAGES.
    """
    return ResultSet(
        "s" + "N" * 12, ("database", *AVERAGES_COLUMNS), _statsRows(console, True, False)
    )


def showTotals(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW TOTALS: every counter summed over all databases, one row each.
    """
    totals = databaseTotals(console)[ALL_DATABASES]
    averages = console.averages.averages.get(ALL_DATABASES, _ZERO)
    rows = [(f"total_{n}", v) for n, v in zip(TOTALS_ROWS, totals)]
    rows += [(f"avg_{n}", v) for n, v in zip(TOTALS_ROWS, averages)]
    return ResultSet("sN", ("name", "value"), rows)


def showStatus(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW STATUS (pgtwist): pgagroal-cli's C{status} as key/value rows.
    """
    status = console.service.management.status()
    rows: list[tuple[str, str]] = [
        (key, str(status[key]))
        for key in (
            "status",
            "active_connections",
            "total_connections",
            "max_connections",
            "clients",
        )
    ]
    rows.extend(
        (f"server.{s['name']}", f"{s['state']} {s['host']}:{s['port']}") for s in status["servers"]
    )
    return ResultSet("ss", ("key", "value"), rows)


def showFiles(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW FILES (pgtwist): the configuration files in use (C{conf ls}).
    """
    paths = console.service.config.paths
    names = {
        "config": "config",
        "hba": "hba",
        "limits": "limit",
        "users": "users",
        "frontendUsers": "frontend",
        "admins": "admins",
        "superuser": "superuser",
    }
    rows = [(names[f.name], getattr(paths, f.name) or "") for f in fields(paths)]
    return ResultSet("ss", ("name", "path"), rows)


def showPeers(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW PEERS: pgtwist has no peering; the shape is PgBouncer's.
    """
    return ResultSet("isii", ("peer_id", "host", "port", "pool_size"))


def showPeerPools(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW PEER_POOLS: empty (no peering).
    """
    return ResultSet(
        "iiiii",
        (
            "peer_id",
            "cl_active_cancel_req",
            "cl_waiting_cancel_req",
            "sv_active_cancel",
            "sv_login",
        ),
    )


def showDnsHosts(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW DNS_HOSTS: empty (the reactor resolves names, nothing is cached).
    """
    return ResultSet("sqs", ("hostname", "ttl", "addrs"))


def showDnsZones(console: Console, args: Sequence[str]) -> ResultSet:
    """
    SHOW DNS_ZONES: empty.
    """
    return ResultSet("sqi", ("zonename", "serial", "count"))
