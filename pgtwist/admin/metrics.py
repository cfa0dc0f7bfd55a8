# -*- test-case-name: tests.unit.test_metrics -*-
"""
Prometheus metrics: C{metrics = <port or endpoint>} serves C{/metrics}.

Nothing here runs on the hot path. The pools keep plain integer counters and
cheap histograms (L{pgtwist.pool.stats.PoolStats}); L{PoolerCollector} reads them,
and the pool and server state, only when Prometheus scrapes. The collector is
registered in a L{CollectorRegistry} of its own per service (never
prometheus_client's global C{REGISTRY}), so tests and several services in one
process stay apart.

Metric names are pgagroal's (C{src/libpgagroal/prometheus.c}) with the
C{pgagroal_} prefix replaced by C{pgtwist_}; per-pool series carry the
labels C{database} and C{user}. Counters get the C{_total} suffix
prometheus_client gives every counter (C{pgtwist_query_count_total}).
pgtwist adds per-pool histograms neither pgagroal nor PgBouncer has: the
time a client waited for a backend, transaction and query durations.

With pgagroal's C{metrics_cert_file} and C{metrics_key_file} set the
endpoint speaks HTTPS only (L{MetricsTls}); C{metrics_ca_file} makes every
scraper show a client certificate that CA signed, as pgagroal does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL, crypto
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, IProtocolFactory
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web import http, pages
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from pgtwist.config.errors import ConfigError
from pgtwist.config.model import Configuration, MainSettings
from pgtwist.config.tlsfiles import readCertificates
from pgtwist.net.endpoints import tcpEndpoint
from pgtwist.net.listeners import ListenerService
from pgtwist.pipelines._notify import listenerGroups
from pgtwist.pool.servers import ServerState
from pgtwist.pool.state import BackendState

if TYPE_CHECKING:
    from pgtwist.admin.management import Pooler

#: pgagroal's C{pgagroal_pipeline_mode} values.
PIPELINE_MODES = {"performance": 0, "session": 1, "transaction": 2}

#: Per-pool counters: (metric name, help, L{PoolStats} attribute).
POOL_COUNTERS: tuple[tuple[str, str, str], ...] = (
    (
        "pgtwist_connection_success",
        "Clients given a backend (pgagroal's successful connection gets)",
        "serverAssignmentCount",
    ),
    (
        "pgtwist_connection_error",
        "Backend connections that failed to open or log in",
        "connectionErrors",
    ),
    (
        "pgtwist_connection_timeout",
        "Clients that waited blocking_timeout for a backend and gave up",
        "timeouts",
    ),
    ("pgtwist_connection_open", "Backend connections opened (attempts)", "connectionsOpened"),
    ("pgtwist_connection_remove", "Backend connections closed", "connectionsClosed"),
    ("pgtwist_auth_user_success", "Successful client authentications", "authSuccess"),
    (
        "pgtwist_auth_user_bad_password",
        "Failed client authentications (bad password or refused)",
        "authFailure",
    ),
    ("pgtwist_network_sent", "Bytes sent by pgtwist (PgBouncer's total_sent)", "bytesSent"),
    (
        "pgtwist_network_received",
        "Bytes received by pgtwist (PgBouncer's total_received)",
        "bytesReceived",
    ),
    ("pgtwist_query_count", "Queries (a Query, or an extended batch up to Sync)", "queryCount"),
    ("pgtwist_tx_count", "Transactions (or autocommit statements)", "xactCount"),
)

#: Per-pool histograms: (metric name, help, L{PoolStats} attribute).
POOL_HISTOGRAMS: tuple[tuple[str, str, str], ...] = (
    (
        "pgtwist_client_wait_seconds",
        "Time a client waited for a backend, seconds",
        "waitHistogram",
    ),
    (
        "pgtwist_transaction_duration_seconds",
        "Transaction durations, seconds",
        "xactHistogram",
    ),
    ("pgtwist_query_duration_seconds", "Query durations, seconds", "queryHistogram"),
)

_POOL_LABELS = ["database", "user"]


class PoolerCollector:
    """
    A prometheus_client custom collector reading a running pgtwist at
    scrape time.

    @ivar service: The root service: its C{pools}, C{factory},
        C{management} and C{config} are read on every L{collect}.
    """

    def __init__(self, service: Pooler, clock: Any) -> None:
        """
        @param clock: An C{IReactorTime}, for the age of the oldest waiter.
        """
        self.service = service
        self._clock = clock

    def describe(self) -> list[Metric]:
        """
        Nothing up front: registering must not run L{collect}, whose metric
        set depends on which pools exist.
        """
        return []

    def collect(self) -> Iterator[Metric]:
        """
        Every metric, built from the current state.
        """
        yield from self._general()
        yield from self._connections()
        yield from self._pools()
        yield from self._listeners()

    def _listeners(self) -> Iterator[Metric]:
        """
        Transaction pooling's LISTEN (L{pgtwist.pipelines._notify}): per
        pool key, whether its listener backend is up, the channels it
        listens on, the clients listening, and the notifications delivered.
        """
        up = GaugeMetricFamily(
            "pgtwist_listener_backend",
            "1 while the pool's listener backend (LISTEN in transaction pooling) is up",
            labels=_POOL_LABELS,
        )
        channels = GaugeMetricFamily(
            "pgtwist_listen_channels",
            "Channels the pool's listener backend listens on",
            labels=_POOL_LABELS,
        )
        clients = GaugeMetricFamily(
            "pgtwist_listen_clients",
            "Transaction-pooling clients listening on at least one channel",
            labels=_POOL_LABELS,
        )
        delivered = CounterMetricFamily(
            "pgtwist_notifications_delivered",
            "Notifications handed to listening clients",
            labels=_POOL_LABELS,
        )
        lost = CounterMetricFamily(
            "pgtwist_listener_backends_lost",
            "Listener backends that died (their listening clients were disconnected)",
            labels=_POOL_LABELS,
        )
        for group in listenerGroups():
            labels = list(group.key)
            up.add_metric(labels, 1 if group.backend is not None else 0)
            channels.add_metric(labels, len(group.wanted))
            clients.add_metric(labels, group.listenerCount())
            delivered.add_metric(labels, group.delivered)
            lost.add_metric(labels, group.lost)
        yield from (up, channels, clients, delivered, lost)

    def _serverHealth(self, servers: list[tuple[Any, ServerState]]) -> Iterator[Metric]:
        """
        Per server: the role found out, the health check's verdict, a
        standby's replay lag, and the backends on it (L{pgtwist.pool.routing}).
        """
        management = self.service.management
        role = GaugeMetricFamily(
            "pgtwist_server_role",
            "1 for each server in the role found out (primary, standby or unknown)",
            labels=["name", "role"],
        )
        healthy = GaugeMetricFamily(
            "pgtwist_server_healthy",
            "1 while the server passes its health checks (or none run), 0 after a failed one",
            labels=["name"],
        )
        lag = GaugeMetricFamily(
            "pgtwist_server_lag_bytes",
            "A standby's replay lag in bytes of WAL, as the last health check measured it",
            labels=["name"],
        )
        backends = GaugeMetricFamily(
            "pgtwist_server_backends",
            "Backends open (or logging in) on the server, all pools together",
            labels=["name"],
        )
        counts = management.backendsByServer()
        for server, _ in servers:
            roleName, up, lagBytes = management.serverRole(server.name)
            role.add_metric([server.name, roleName], 1)
            healthy.add_metric([server.name], 1 if up else 0)
            if lagBytes is not None:
                lag.add_metric([server.name], lagBytes)
            backends.add_metric([server.name], counts.get(server.name, 0))
        yield from (role, healthy, lag, backends)

    def _general(self) -> Iterator[Metric]:
        management = self.service.management
        gracefully = management.state in ("gracefully", "terminating")
        yield GaugeMetricFamily(
            "pgtwist_state",
            "The state of pgtwist: 1 running, 2 graceful shutdown",
            value=2 if gracefully else 1,
        )
        pipeline = management.pipelineName(("", ""))
        mode = GaugeMetricFamily(
            "pgtwist_pipeline_mode",
            "The default pipeline: 0 performance, 1 session, 2 transaction, -1 other",
            labels=["pipeline"],
        )
        mode.add_metric([pipeline], PIPELINE_MODES.get(pipeline, -1))
        yield mode
        servers = management.serverStates()
        yield GaugeMetricFamily(
            "pgtwist_failed_servers",
            "The number of servers marked failed",
            value=sum(1 for _, s in servers if s is ServerState.FAILED),
        )
        state = GaugeMetricFamily(
            "pgtwist_server_state",
            "1 for each server in its current state (primary, standby or failed)",
            labels=["name", "state"],
        )
        for server, serverState in servers:
            state.add_metric([server.name, serverState.value], 1)
        yield state
        yield from self._serverHealth(servers)
        yield GaugeMetricFamily(
            "pgtwist_client_sockets",
            "Client connections open to pgtwist",
            value=len(management.clients()),
        )
        yield CounterMetricFamily(
            "pgtwist_auth_failure",
            "Failed client authentications, all pools and names together (a refused "
            "login counts in pgtwist_auth_user_bad_password only if its pool exists)",
            value=management.authFailures(),
        )
        lookups = CounterMetricFamily(
            "pgtwist_auth_query_lookups",
            "auth_query lookups by outcome: hit (the cache), query (a verifier from "
            "PostgreSQL), miss (none), error (the query failed)",
            labels=["outcome"],
        )
        for outcome, count in management.authQueryLookups().items():
            lookups.add_metric([outcome], count)
        yield lookups

    def _connections(self) -> Iterator[Metric]:
        management = self.service.management
        config = self.service.config
        allPools = list(management.allPools())
        yield GaugeMetricFamily(
            "pgtwist_active_connections",
            "Backend connections lent to a client",
            value=sum(p.count(BackendState.ACTIVE) for p in allPools),
        )
        yield GaugeMetricFamily(
            "pgtwist_total_connections",
            "Backend connections open or opening",
            value=management.totalBackends(),
        )
        yield GaugeMetricFamily(
            "pgtwist_max_connections",
            "The maximum number of backend connections (max_connections)",
            value=config.main.maxConnections,
        )
        yield GaugeMetricFamily(
            "pgtwist_connection_awaiting",
            "Clients waiting for a backend",
            value=sum(len(p.waiters) for p in allPools),
        )
        if not config.limits:
            return
        limit = GaugeMetricFamily(
            "pgtwist_limit",
            "pgtwist_databases.conf lines: min, initial and max size, and backends in use",
            labels=["database", "user", "type"],
        )
        awaiting = GaugeMetricFamily(
            "pgtwist_limit_awaiting",
            "Clients waiting for a backend, per pgtwist_databases.conf line",
            labels=_POOL_LABELS,
        )
        for index, line in enumerate(config.limits):
            governed = [p for p in allPools if p.limitIndex == index]
            maxSize = line.maxSize if line.maxSize is not None else config.main.maxConnections
            for kind, value in (
                ("min", line.minSize),
                ("initial", line.initialSize),
                ("max", maxSize),
                ("active", sum(p.size for p in governed)),
            ):
                limit.add_metric([line.database, line.user, kind], value)
            awaiting.add_metric([line.database, line.user], sum(len(p.waiters) for p in governed))
        yield limit
        yield awaiting

    def _pools(self) -> Iterator[Metric]:
        now = self._clock.seconds()
        pools = self.service.management.sortedPools()
        active = GaugeMetricFamily(
            "pgtwist_client_active", "Clients holding a backend", labels=_POOL_LABELS
        )
        wait = GaugeMetricFamily(
            "pgtwist_client_wait", "Clients waiting for a backend", labels=_POOL_LABELS
        )
        maxwait = GaugeMetricFamily(
            "pgtwist_client_maxwait_seconds",
            "How long the oldest waiting client has waited, seconds",
            labels=_POOL_LABELS,
        )
        backends = GaugeMetricFamily(
            "pgtwist_pool_connections",
            "Backend connections by state (connecting, idle, active, resetting)",
            labels=[*_POOL_LABELS, "state"],
        )
        paused = GaugeMetricFamily(
            "pgtwist_pool_paused", "1 while the pool is paused", labels=_POOL_LABELS
        )
        pinned = GaugeMetricFamily(
            "pgtwist_client_pinned",
            "Clients that keep their backend between transactions (session-only objects)",
            labels=_POOL_LABELS,
        )
        pinnedCounts: dict[object, int] = {}
        for client in self.service.management.clients():
            if getattr(getattr(client, "session", None), "pinned", ""):
                pinnedCounts[client.key] = pinnedCounts.get(client.key, 0) + 1
        counters = [
            CounterMetricFamily(name, doc, labels=_POOL_LABELS) for name, doc, _ in POOL_COUNTERS
        ]
        histograms = [
            HistogramMetricFamily(name, doc, labels=_POOL_LABELS)
            for name, doc, _ in POOL_HISTOGRAMS
        ]
        for pool in pools:
            labels = list(pool.key)
            active.add_metric(labels, pool.count(BackendState.ACTIVE))
            wait.add_metric(labels, len(pool.waiters))
            maxwait.add_metric(labels, max(0.0, now - pool.waiters[0].since) if pool.waiters else 0)
            for state in BackendState:
                if state is not BackendState.CLOSED:
                    backends.add_metric([*labels, state.value], pool.count(state))
            paused.add_metric(labels, 1 if pool.paused else 0)
            pinned.add_metric(labels, pinnedCounts.get(pool.key, 0))
            stats = pool.stats
            for family, (_, _, attribute) in zip(counters, POOL_COUNTERS):
                family.add_metric(labels, getattr(stats, attribute))
            for histogram, (_, _, attribute) in zip(histograms, POOL_HISTOGRAMS):
                observed = getattr(stats, attribute)
                histogram.add_metric(labels, observed.cumulative(), observed.sum)
        yield from (active, wait, maxwait, backends, paused, *counters, *histograms, pinned)


def makeRegistry(service: Pooler, clock: Any) -> CollectorRegistry:
    """
    A registry of its own holding a L{PoolerCollector} for C{service}.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolerCollector(service, clock))
    return registry


class MetricsResource(Resource):
    """
    C{GET /metrics}: the registry in Prometheus' text format (or
    OpenMetrics when the scraper asks for it).

    Unlike C{prometheus_client.twisted.MetricsResource}, which runs the
    collectors in the global reactor's thread pool, this renders in the
    reactor thread (as Synapse's does): the collector reads pool state that
    only the reactor thread may touch, and it is cheap.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        """
        Encode every metric now.
        """
        accept = request.getHeader(b"accept")
        encoder, contentType = choose_encoder(accept.decode("latin-1") if accept else "")
        request.setHeader(b"Content-Type", contentType.encode("ascii"))
        result: bytes = encoder(self.registry)
        return result


class _Index(Resource):
    """
    C{GET /}: where the metrics are (pgagroal answers C{/} with a help page).
    """

    isLeaf = False

    def getChild(self, path: bytes, request: Request) -> IResource:
        """
        C{/} is this page; anything but C{/metrics} is not found.
        """
        if path == b"":
            return self
        return pages.notFound()

    def render_GET(self, request: Request) -> bytes:
        """
        A one-line pointer to C{/metrics}.
        """
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"pgtwist: Prometheus metrics are at /metrics\n"


class MetricsSite(Site):
    """
    A site that keeps scrapes out of the log (one access line every few
    seconds would drown everything else).
    """

    def log(self, request: http.Request) -> None:
        """
        Log nothing.
        """


def metricsSite(registry: CollectorRegistry) -> Site:
    """
    The HTTP site: C{/metrics} and a pointer at C{/}.
    """
    root = _Index()
    root.putChild(b"metrics", MetricsResource(registry))
    site = MetricsSite(root)
    site.noisy = False
    return site


def metricsEndpoint(description: str, main: MainSettings) -> str:
    """
    Where to listen for C{metrics}. A bare port (C{metrics = 9187}, which the
    loader turns into C{tcp:9187}) binds the main C{host} address, as
    pgagroal binds its metrics port to C{host}: C{*} is every address, IPv4
    and IPv6, and C{localhost} is 127.0.0.1. Any other endpoint (C{tcp:9187:
    interface=0.0.0.0}, C{unix:/run/pgtwist/metrics.sock}) is used as given.
    """
    kind, _, port = description.partition(":")
    if kind != "tcp" or not port.isdigit() or main.host.startswith("/"):
        return description
    return tcpEndpoint(main.host, port)


def _tlsOptions(main: MainSettings) -> ssl.CertificateOptions:
    """
    The server TLS options C{main}'s metrics files make: its certificate
    (and any chain after it in the file) and key, TLS 1.2 or later, and,
    with C{metrics_ca_file}, a client certificate that CA signed required.

    @raise ValueError: A file cannot be read or used, naming it.
    """
    assert main.metricsCertFile is not None and main.metricsKeyFile is not None
    certificates = readCertificates(main.metricsCertFile)
    try:
        with open(main.metricsKeyFile, "rb") as f:
            key = crypto.load_privatekey(crypto.FILETYPE_PEM, f.read())
    except OSError as e:
        raise ValueError(f"cannot read {main.metricsKeyFile}: {e.strerror}") from None
    except Exception as e:
        raise ValueError(f"cannot use {main.metricsKeyFile}: {e}") from None
    options: dict[str, Any] = {}
    if main.metricsCaFile:
        options.update(
            verify=True, requireCertificate=True, caCerts=readCertificates(main.metricsCaFile)
        )
    try:
        result = ssl.CertificateOptions(
            privateKey=key,
            certificate=certificates[0],
            extraCertChain=certificates[1:],
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
            **options,
        )
        # Build the context now: a key that is not the certificate's is
        # found here rather than at the first scrape.
        result.getContext()
    except Exception as e:
        raise ValueError(
            f"cannot use {main.metricsCertFile} with {main.metricsKeyFile}: {e}"
        ) from None
    return result


def checkTlsFiles(config: Configuration) -> None:
    """
    Read the metrics HTTPS files once at start, so that one that cannot be
    used stops pgtwist with one line, as any other bad file does, rather
    than when the endpoint is set up.

    @raise ConfigError: Naming the main file and the file at fault.
    """
    main = config.main
    if not (main.metrics and main.metricsCertFile):
        return
    try:
        _tlsOptions(main)
    except ValueError as e:
        raise ConfigError(
            f"metrics_cert_file: {e}",
            config.paths.config or "pgtwist.conf",
            key="metrics_cert_file",
        ) from None


@implementer(IOpenSSLServerConnectionCreator)
class MetricsTls:
    """
    The metrics endpoint's TLS: each new connection gets the options read
    last, so L{reload} (on SIGHUP) reaches new scrapes while open ones keep
    theirs.
    """

    log = Logger()

    def __init__(self, main: MainSettings) -> None:
        """
        @raise ValueError: The files cannot be used (see L{_tlsOptions}).
        """
        self._options = _tlsOptions(main)

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """
        A server-side OpenSSL connection from the current options.
        """
        return SSL.Connection(self._options.getContext(), None)

    def reload(self, main: MainSettings) -> str | None:
        """
        Read the files again; if they cannot be used, keep the ones read
        before and log why.

        @return: The problem, or C{None} when the new files are in use.
        """
        try:
            self._options = _tlsOptions(main)
        except ValueError as e:
            problem = f"{e}; keeping the certificate and key loaded before"
            self.log.error("Metrics HTTPS: {problem}", problem=problem)
            return problem
        return None


class MetricsService(ListenerService):
    """
    The C{metrics} child service: C{/metrics} over HTTP on the configured
    endpoint (see L{metricsEndpoint}), over HTTPS only when
    C{metrics_cert_file} and C{metrics_key_file} are set.

    @ivar registry: This service's own registry.
    @ivar tls: The TLS settings, C{None} for plain HTTP.
    """

    def __init__(self, service: Pooler, reactor: Any) -> None:
        """
        @raise ValueError: HTTPS is configured and its files cannot be used.
        """
        main = service.config.main
        assert main.metrics is not None, "metrics is off"
        self.registry = makeRegistry(service, reactor)
        site: IProtocolFactory = metricsSite(self.registry)
        self.tls = MetricsTls(main) if main.metricsCertFile else None
        if self.tls is not None:
            site = TLSMemoryBIOFactory(self.tls, False, site)
        super().__init__(
            reactor,
            metricsEndpoint(main.metrics, main),
            site,
            name="metrics",
        )

    def reloadTls(self, main: MainSettings) -> str | None:
        """
        Apply C{main}'s metrics files after a reload: new scrapes use the
        new certificate, key and CA; a file that cannot be used keeps the
        old ones. Switching HTTPS on or off needs a restart (the listener
        is set up once).

        @return: The problem, logged already, or C{None}.
        """
        if (self.tls is not None) != bool(main.metricsCertFile):
            problem = "switching metrics HTTPS on or off takes effect after a restart"
            self.log.warn("{problem}", problem=problem)
            return problem
        if self.tls is None:
            return None
        return self.tls.reload(main)


def sampleValues(registry: CollectorRegistry, name: str) -> dict[tuple[str, ...], float]:
    """
    The samples called C{name} by their label values (for tests and the
    manhole: C{sampleValues(registry, "pgtwist_client_wait")}).
    """
    result: dict[tuple[str, ...], float] = {}
    families: Iterable[Metric] = registry.collect()
    for family in families:
        for sample in family.samples:
            if sample.name == name:
                result[tuple(sample.labels.values())] = sample.value
    return result
