# -*- test-case-name: tests.unit.test_config_loader -*-
"""
The immutable configuration model.

Keys are snake_case in the files and camelCase here; L{pgtwist.config.loader}
is the only place that maps one to the other.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Union

from pgtwist._compat import SLOTS
from pgtwist.config.verifiers import Verifier

#: A pool is keyed by (database, user) as the client named them.
PoolKey = tuple[str, str]

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

#: libpq's C{target_session_attrs} values (L{pgtwist.pool.routing}).
TARGET_SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")

#: libpq's C{load_balance_hosts} values, and PgDoorman's C{round-robin}.
LOAD_BALANCE_HOSTS = ("disable", "random", "round-robin")


@dataclass(frozen=True, **SLOTS)
class MainSettings:
    """
    The main section (C{[pgtwist]}, alias C{[pgagroal]}). Durations are
    seconds as floats; C{0} means "off" where pgagroal says so.
    """

    host: str = "*"
    port: int = 2345
    unixSocketDir: str | None = None
    logType: str = "console"
    logLevel: str = "info"
    logPath: str = "pgtwist.log"
    #: PostgreSQL's C{log_file_mode}: the permissions a log file pgtwist
    #: creates gets (an existing file keeps its own).
    logFileMode: int = 0o600
    logConnections: bool = False
    logDisconnections: bool = False
    maxConnections: int = 100
    #: PgBouncer's C{max_client_conn}: the most client connections at once
    #: (admin console included in the count, never refused by it).
    maxClientConn: int = 1000
    idleTimeout: float = 0.0
    #: PgBouncer's C{autodb_idle_timeout}: a pool no databases-file line
    #: names is forgotten once unused this long (0: never).
    autodbIdleTimeout: float = 3600.0
    blockingTimeout: float = 30.0
    authenticationTimeout: float = 5.0
    maxConnectionAge: float = 0.0
    #: C{server_reset_query} (pgagroal 2.x, PgBouncer): run before the
    #: C{DISCARD ALL} that resets a backend given back, unless it is that.
    serverResetQuery: str = "DISCARD ALL"
    #: C{server_reset_query_always} (pgagroal 2.x, PgBouncer): the
    #: transaction pipeline resets every backend a client's transaction ran
    #: on when it gives it back, not only one whose session state changed.
    serverResetQueryAlways: bool = False
    pipeline: str = "auto"
    validation: str = "off"
    backgroundInterval: float = 300.0
    maxRetries: int = 5
    allowUnknownUsers: bool = True
    failover: bool = False
    failoverScript: str | None = None
    disconnectClient: float = 0.0
    disconnectClientForce: bool = False
    #: SIGTERM: how long transactions under way may take to finish (0: no
    #: limit) before their clients are cut.
    shutdownTimeout: float = 60.0
    keepAlive: bool = True
    nodelay: bool = True
    backlog: int = 0
    tls: bool = False
    metrics: str | None = None
    #: HTTPS for C{metrics}, pgagroal's keys: the certificate and its key
    #: switch it on; a CA file makes every scraper show a certificate it
    #: signed (L{pgtwist.config.servertls.checkMetricsTls}).
    metricsCertFile: str | None = None
    metricsKeyFile: str | None = None
    metricsCaFile: str | None = None
    management: int = 0
    #: pgtwist additions (never renames of pgagroal keys):
    #: extra strports listen endpoints, e.g. C{("tcp:6433:interface=::1",)}.
    listen: tuple[str, ...] = ()
    manhole: str | None = None
    maxPreparedStatements: int = 200
    #: Transaction pooling's LISTEN: channels per client, and notifications
    #: held for a client that is busy or not reading before it is disconnected.
    maxListenChannels: int = 1000
    maxPendingNotifications: int = 10000
    workers: int = 1
    #: Logging: rotate the log file past this many bytes / this age (0: never),
    #: and write text lines or JSON (twisted.logger's jsonFileLogObserver).
    logRotationSize: int = 0
    logRotationAge: float = 0.0
    logFormat: str = "text"
    #: Admin console: users (beside the admins file's) allowed read-only SHOWs.
    statsUsers: tuple[str, ...] = ()
    #: Seconds between the snapshots SHOW STATS_AVERAGES compares.
    statsPeriod: float = 60.0
    #: How long a pgtwist that handed its listeners to an upgraded one waits
    #: for its clients to leave before it disconnects them (0: forever).
    upgradeGracePeriod: float = 300.0
    #: Where the manhole's SSH host key is created on first start.
    manholeKeysDir: str | None = None
    #: TLS toward the servers, PgBouncer's C{server_tls_*} keys: the
    #: defaults of every server section (L{pgtwist.config.servertls}).
    serverTlsSslmode: str = "disable"
    serverTlsCaFile: str | None = None
    serverTlsCertFile: str | None = None
    serverTlsKeyFile: str | None = None
    serverTlsProtocols: tuple[str, ...] = ("tlsv1.2", "tlsv1.3")
    serverTlsCiphers: str = "default"
    #: TLS toward clients (L{pgtwist.config.tlsfiles}): pgagroal's files
    #: (the certificate may be followed by its chain; the CA, when set, is
    #: what client certificates are checked against), and PgBouncer's
    #: C{client_tls_sslmode} (C{None}: C{prefer} if C{tls}, else
    #: C{disable}), C{client_tls_protocols} and C{client_tls_ciphers}.
    tlsCertFile: str | None = None
    tlsKeyFile: str | None = None
    tlsCaFile: str | None = None
    clientTlsSslmode: str | None = None
    clientTlsProtocols: tuple[str, ...] = ("tlsv1.2", "tlsv1.3")
    clientTlsCiphers: str = "default"
    #: PgBouncer's C{auth_file}: users and their verifiers (or plaintext
    #: passwords), read by L{pgtwist.config.authfile}.
    authFile: str | None = None
    #: auth_query (L{pgtwist.config.authquery}): the query that reads a
    #: user's verifier from PostgreSQL (pgagroal's C{auth_query = on} sets
    #: the default one; C{None}: off unless C{auth_user} is set), the role
    #: it runs as (C{None}: the superuser of the C{-S} file) and the
    #: database it runs in (C{None}: the one the client asked for).
    authQuery: str | None = None
    authUser: str | None = None
    authDbname: str | None = None
    #: How long an answer of auth_query is used again (0: ask PostgreSQL at
    #: every login), and how many answers are kept at most.
    authQueryCacheTtl: float = 0.0
    authQueryCacheSize: int = 1000
    #: PgBouncer's limits and timeouts (L{pgtwist.config.limits.clientLimits}
    #: combines them with a databases-file line's): seconds, C{0} is off.
    #: C{transaction_timeout}, C{idle_transaction_timeout}, C{query_timeout}
    #: and C{client_idle_timeout} end a client; C{query_wait_timeout}
    #: (C{None}: C{blocking_timeout} governs the wait) ends one that waited
    #: that long for a backend, and C{query_wait_notify} tells it once that
    #: it waits.
    transactionTimeout: float = 0.0
    idleTransactionTimeout: float = 0.0
    queryTimeout: float = 0.0
    queryWaitTimeout: float | None = None
    queryWaitNotify: float = 5.0
    clientIdleTimeout: float = 0.0
    #: Client connections per user (whatever the database) and per database
    #: (whatever the user); 0 is no limit.
    maxUserClientConnections: int = 0
    maxDbClientConnections: int = 0
    #: Backends a pool may open beyond its size once a client has waited
    #: C{reserve_pool_timeout} (still within C{max_connections}).
    reservePoolSize: int = 0
    reservePoolTimeout: float = 5.0
    #: How long a new backend may take to connect and log in.
    serverConnectTimeout: float = 15.0
    #: Health checks (pgagroal 2.x's C{health_check*} keys,
    #: L{pgtwist.pool.health}): every C{healthCheckPeriod} seconds each
    #: server is asked C{pg_is_in_recovery()} and its replay lag, as
    #: C{healthCheckUser} (C{None}: the superuser of the C{-S} file) in
    #: C{healthCheckDatabase} (C{None}: the database named after that
    #: user, as pgagroal does); one that does not answer within
    #: C{healthCheckTimeout} gets no new backend until it does. The
    #: defaults are pgagroal 2.x's.
    healthCheck: bool = False
    healthCheckPeriod: float = 30.0
    healthCheckTimeout: float = 5.0
    healthCheckUser: str | None = None
    healthCheckDatabase: str | None = None
    #: Routing (L{pgtwist.pool.routing}): libpq's C{target_session_attrs}
    #: and C{load_balance_hosts}, PgDoorman's C{max_lag_in_bytes} and
    #: Odyssey's C{catchup_timeout} (0: no limit); a databases-file line
    #: may set its own.
    targetSessionAttrs: str = "read-write"
    loadBalanceHosts: str = "disable"
    maxLagInBytes: int = 0
    catchupTimeout: float = 0.0


@dataclass(frozen=True, **SLOTS)
class ServerSettings:
    """
    One PostgreSQL server section. A C{host} starting with C{/} is a unix
    socket directory.
    """

    name: str
    host: str
    port: int
    primary: bool | None = None
    tls: bool = False
    #: TLS toward this server, the section's keys and the main section's
    #: defaults combined as L{pgtwist.config.servertls} says.
    sslmode: str = "disable"
    tlsCaFile: str | None = None
    tlsCertFile: str | None = None
    tlsKeyFile: str | None = None
    tlsProtocols: tuple[str, ...] = ("tlsv1.2", "tlsv1.3")
    tlsCiphers: str = "default"
    #: C{channel_binding} (pgagroal 2.2, libpq's meanings): whether logging
    #: in with SCRAM binds to the server's TLS certificate
    #: (C{SCRAM-SHA-256-PLUS}): C{disable}, C{prefer} (when offered) or
    #: C{require} (a login without it fails).
    channelBinding: str = "prefer"


#: The kinds of L{HbaName}: PostgreSQL's keywords (unquoted only), a role
#: group (C{+name} in the USER column) and a plain name.
HBA_KEYWORDS = frozenset({"all", "sameuser", "samerole", "samegroup", "replication"})


@dataclass(frozen=True, **SLOTS)
class HbaName:
    """
    One item of an HBA rule's DATABASE or USER list, as PostgreSQL reads it.

    @ivar kind: C{"name"} (a literal name, quoted or not), C{"group"}
        (C{+role}: the user is a member of C{role}, directly or not), or a
        keyword: C{"all"}, C{"sameuser"}, C{"samerole"} (C{samegroup} is
        its old spelling), C{"replication"}.
    @ivar name: The literal name or the group role; the keyword itself
        otherwise.
    """

    kind: str
    name: str


def _plainNames(text: str) -> tuple[HbaName, ...]:
    """
    The list a rule built from one bare word stands for (a rule made in
    code rather than read from a file).
    """
    if text in HBA_KEYWORDS:
        return (HbaName("samerole" if text == "samegroup" else text, text),)
    return (HbaName("name", text),)


@dataclass(frozen=True, **SLOTS)
class HbaRule:
    """
    One line of C{pgtwist_hba.conf}: C{TYPE DATABASE USER ADDRESS METHOD}.

    @ivar database: The DATABASE column as written (for messages).
    @ivar user: The USER column as written.
    @ivar address: C{None} for C{all}, else the network a client must be in.
    @ivar databases: What the DATABASE column lists, C{@file}s expanded; by
        default the one word C{database}.
    @ivar users: What the USER column lists; by default the one word C{user}.
    @ivar clientcert: The C{clientcert} option: C{""} (none), C{"verify-ca"}
        (a client certificate verified against C{tls_ca_file} is required)
        or C{"verify-full"} (its CN must also equal the user name); always
        C{"verify-full"} for method C{cert}, as in PostgreSQL.
    """

    type: str
    database: str
    user: str
    address: Network | None
    method: str
    path: str = ""
    line: int = 0
    databases: tuple[HbaName, ...] = ()
    users: tuple[HbaName, ...] = ()
    clientcert: str = ""

    def __post_init__(self) -> None:
        if not self.databases:
            object.__setattr__(self, "databases", _plainNames(self.database))
        if not self.users:
            object.__setattr__(self, "users", _plainNames(self.user))

    @property
    def groups(self) -> frozenset[str]:
        """
        The roles whose members this rule needs to know (C{+group}s).
        """
        return frozenset(item.name for item in self.users if item.kind == "group")

    @property
    def needsRoles(self) -> bool:
        """
        Whether matching this rule may need role membership from
        PostgreSQL (C{+group} or C{samerole}).
        """
        return bool(self.groups) or any(item.kind == "samerole" for item in self.databases)


@dataclass(frozen=True, **SLOTS)
class DatabaseLimit:
    """
    One line of C{pgtwist_databases.conf}:
    C{DATABASE[=ALIAS,...] USER MAX_SIZE [INITIAL_SIZE [MIN_SIZE [PIPELINE]]]}
    followed by optional C{key=value} words.

    @ivar maxSize: C{None} for C{all} (the rest of C{max_connections}).
    """

    database: str
    user: str
    maxSize: int | None
    initialSize: int = 0
    minSize: int = 0
    aliases: tuple[str, ...] = ()
    pipeline: str | None = None
    path: str = ""
    line: int = 0
    #: PgBouncer's per-database C{auth_user}, C{auth_query} and
    #: C{auth_dbname} (C{key=value} words after the columns): they override
    #: the main section's for the pools this line governs.
    authUser: str | None = None
    authQuery: str | None = None
    authDbname: str | None = None
    #: PgBouncer's per-database and per-user limits (C{key=value} words):
    #: C{None} where the line does not set one (a less specific line or
    #: the main section's value applies, see
    #: L{pgtwist.config.limits.clientLimits}).
    transactionTimeout: float | None = None
    idleTransactionTimeout: float | None = None
    queryTimeout: float | None = None
    queryWaitTimeout: float | None = None
    clientIdleTimeout: float | None = None
    reservePoolSize: int | None = None
    #: Only on a C{DATABASE all} line: clients of the database, any user.
    maxDbClientConnections: int | None = None
    #: Only on an C{all USER} line: clients of the user, any database.
    maxUserClientConnections: int | None = None
    #: Routing of the line's pools (L{pgtwist.pool.routing}), C{None}
    #: where the main section's applies; C{dbname}, PgBouncer's: the
    #: database the backends log into, when the line's DATABASE is a name
    #: for clients only (a read-only C{app_ro} in front of C{app}).
    targetSessionAttrs: str | None = None
    loadBalanceHosts: str | None = None
    maxLagInBytes: int | None = None
    catchupTimeout: float | None = None
    dbname: str | None = None


@dataclass(frozen=True, **SLOTS)
class UserEntry:
    """
    A user pgtwist knows: from the vault (C{password} set), from a verifier
    source such as C{auth_file} or C{auth_query} (C{verifier} set: enough to
    check a client, not to log into PostgreSQL without pass-through), or an
    unknown user admitted by C{allow_unknown_users} (both C{None}).
    """

    name: str
    password: str | None = None
    verifier: Verifier | None = None

    def __repr__(self) -> str:
        # Never let a password or a verifier reach a log line or a traceback.
        return (
            f"UserEntry(name={self.name!r}, password={'***' if self.password else None}, "
            f"verifier={'***' if self.verifier else None})"
        )


@dataclass(frozen=True, **SLOTS)
class ConfigPaths:
    """
    Where each file of the family was read from (for reload and C{conf ls}).
    """

    config: str | None = None
    hba: str | None = None
    limits: str | None = None
    users: str | None = None
    frontendUsers: str | None = None
    admins: str | None = None
    superuser: str | None = None


@dataclass(frozen=True, **SLOTS)
class Configuration:
    """
    Everything pgtwist was configured with, validated as a whole.
    """

    main: MainSettings = field(default_factory=MainSettings)
    servers: tuple[ServerSettings, ...] = ()
    hba: tuple[HbaRule, ...] = ()
    limits: tuple[DatabaseLimit, ...] = ()
    users: Mapping[str, UserEntry] = field(default_factory=dict)
    frontendUsers: Mapping[str, UserEntry] = field(default_factory=dict)
    admins: Mapping[str, UserEntry] = field(default_factory=dict)
    superuser: UserEntry | None = None
    paths: ConfigPaths = field(default_factory=ConfigPaths)
    #: The users of C{auth_file} (L{MainSettings.authFile}).
    authFile: Mapping[str, UserEntry] = field(default_factory=dict)

    def lookupUser(self, name: str) -> UserEntry | None:
        """
        The entry a client naming user C{name} is checked against, from the
        first users source that has it: the frontend users (C{-F}, a
        separate client password), the vault (C{-u}), then C{auth_file}.
        C{None} when none has it (then C{auth_query}, where configured, or
        C{allow_unknown_users} decide).
        """
        return self.frontendUsers.get(name) or self.users.get(name) or self.authFile.get(name)

    def backendPassword(self, name: str) -> str | None:
        """
        The plaintext password pgtwist logs into PostgreSQL with as C{name}:
        the vault's, else a plaintext entry of C{auth_file}. C{None} when
        only a verifier is known (pgtwist then logs in by pass-through).
        """
        entry = self.users.get(name)
        if entry is not None and entry.password is not None:
            return entry.password
        entry = self.authFile.get(name)
        return entry.password if entry is not None else None

    @property
    def primary(self) -> ServerSettings:
        """
        The server new backends connect to: the one marked C{primary = on},
        else the first section.
        """
        for server in self.servers:
            if server.primary:
                return server
        return self.servers[0]
