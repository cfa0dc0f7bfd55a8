"""
Tests for L{pgtwist.admin.metrics}: the collector reads pool state at scrape
time, each service has its own registry, and C{/metrics} answers over HTTP.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.admin.metrics import (
    POOL_COUNTERS,
    POOL_HISTOGRAMS,
    MetricsService,
    PoolerCollector,
    makeRegistry,
    metricsEndpoint,
    metricsSite,
    sampleValues,
)
from pgtwist.app.service import buildService
from pgtwist.config.model import Configuration, DatabaseLimit, MainSettings, ServerSettings
from pgtwist.pool.poolset import BackendState
from pgtwist.pool.state import PooledBackend, Waiter
from pgtwist.testing import FakePooledConnection

SERVERS = (
    ServerSettings("primary", "127.0.0.1", 5432, True),
    ServerSettings("standby", "127.0.0.2", 5432),
)


def makeService(reactor: MemoryReactorClock, **main: Any) -> Any:
    """
    A pgtwist service over C{reactor} with metrics on, not started.
    """
    settings = MainSettings(host="127.0.0.1", port=0, metrics="tcp:0", **main)
    limits = (DatabaseLimit("app", "alice", 5, 1, 2),)
    return buildService(Configuration(main=settings, servers=SERVERS, limits=limits), reactor)


def scrape(site: Any, path: bytes = b"/metrics", accept: bytes | None = None) -> bytes:
    """
    One HTTP/1.0 GET through C{site} on a memory transport; the raw response.
    """
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    headers = b"Host: localhost\r\n" + (b"Accept: " + accept + b"\r\n" if accept else b"")
    protocol.dataReceived(b"GET " + path + b" HTTP/1.0\r\n" + headers + b"\r\n")
    response: bytes = transport.value()
    return response


class CollectorTests(SynchronousTestCase):
    """
    L{PoolerCollector} turns pools, servers and statistics into metrics.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.service = makeService(self.reactor)
        self.registry = makeRegistry(self.service, self.reactor)
        self.pools = self.service.pools

    def fillPool(self) -> Any:
        """
        A pool for (app, alice) with backends in several states, two waiting
        clients and some statistics.
        """
        pool = self.pools.pool(("app", "alice"))
        for state, count in (
            (BackendState.ACTIVE, 2),
            (BackendState.IDLE, 1),
            (BackendState.CONNECTING, 1),
        ):
            for _ in range(count):
                backend = FakePooledConnection(pool.key, 1, SERVERS[0])
                pool.backends[state].add(PooledBackend(backend, 0.0))
        self.pools.total = 4
        self.reactor.advance(100)
        pool.waiters.append(Waiter(None, 97.5))
        pool.waiters.append(Waiter(None, 99.0))
        stats = pool.stats
        stats.addWait(0.0003)
        stats.addWait(2.0)
        stats.addQuery(0.004)
        stats.addTransaction(0.02)
        stats.authSuccess = 3
        stats.authFailure = 1
        stats.connectionsOpened = 5
        stats.connectionErrors = 1
        stats.connectionsClosed = 2
        stats.timeouts = 1
        stats.bytesSent = 1000
        stats.bytesReceived = 300
        return pool

    def test_general(self) -> None:
        """
        State, pipeline mode, servers and the connection totals are pgagroal's
        gauges; a failed server is counted.
        """
        self.fillPool()
        self.pools.servers.switchTo("standby")
        self.assertEqual(sampleValues(self.registry, "pgtwist_state"), {(): 1})
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_pipeline_mode"), {("performance",): 0}
        )
        self.assertEqual(sampleValues(self.registry, "pgtwist_failed_servers"), {(): 1})
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_server_state"),
            {("primary", "failed"): 1, ("standby", "primary"): 1},
        )
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_server_role"),
            {("primary", "unknown"): 1, ("standby", "unknown"): 1},
        )
        self.pools.servers.health["standby"].healthy = False
        self.pools.servers.health["standby"].lagBytes = 4096
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_server_healthy"),
            {("primary",): 1, ("standby",): 0},
        )
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_server_lag_bytes"), {("standby",): 4096}
        )
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_server_backends"),
            {("primary",): 4, ("standby",): 0},
        )
        self.assertEqual(sampleValues(self.registry, "pgtwist_active_connections"), {(): 2})
        self.assertEqual(sampleValues(self.registry, "pgtwist_total_connections"), {(): 4})
        self.assertEqual(sampleValues(self.registry, "pgtwist_max_connections"), {(): 100})
        self.assertEqual(sampleValues(self.registry, "pgtwist_connection_awaiting"), {(): 2})

    def test_authQueryLookups(self) -> None:
        """
        auth_query's lookups are counted by outcome, without user labels.
        """
        lookup = self.service.factory.userLookup
        assert lookup is not None
        lookup.outcomes.update(hit=4, query=3, miss=2, error=1)
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_auth_query_lookups_total"),
            {("hit",): 4, ("query",): 3, ("miss",): 2, ("error",): 1},
        )

    def test_gracefulState(self) -> None:
        """
        During a graceful shutdown C{pgtwist_state} is 2, as pgagroal's,
        whether the console's SHUTDOWN or SIGTERM started it.
        """
        for state in ("gracefully", "terminating"):
            self.service.management.state = state
            self.assertEqual(sampleValues(self.registry, "pgtwist_state"), {(): 2})

    def test_clientSockets(self) -> None:
        """
        Connected clients are counted whatever their pool.
        """
        self.service.factory.clients.update({object(), object(), object()})
        self.assertEqual(sampleValues(self.registry, "pgtwist_client_sockets"), {(): 3})

    def test_limits(self) -> None:
        """
        Each databases-file line reports its sizes and the backends of the
        pools it governs; waiting clients are counted per line too.
        """
        self.fillPool()
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_limit"),
            {
                ("app", "alice", "min"): 2,
                ("app", "alice", "initial"): 1,
                ("app", "alice", "max"): 5,
                ("app", "alice", "active"): 4,
            },
        )
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_limit_awaiting"), {("app", "alice"): 2}
        )

    def test_perPool(self) -> None:
        """
        Per-pool gauges carry the database and user labels: clients holding a
        backend, waiting, the oldest wait, backends by state.
        """
        self.fillPool()
        self.pools.pool(("other", "bob"))
        labels = ("app", "alice")
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_client_active"),
            {labels: 2, ("other", "bob"): 0},
        )
        self.assertEqual(sampleValues(self.registry, "pgtwist_client_wait")[labels], 2)
        self.assertEqual(sampleValues(self.registry, "pgtwist_client_maxwait_seconds")[labels], 2.5)
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_pool_connections"),
            {
                ("app", "alice", "connecting"): 1,
                ("app", "alice", "idle"): 1,
                ("app", "alice", "active"): 2,
                ("app", "alice", "resetting"): 0,
                ("other", "bob", "connecting"): 0,
                ("other", "bob", "idle"): 0,
                ("other", "bob", "active"): 0,
                ("other", "bob", "resetting"): 0,
            },
        )
        self.assertEqual(sampleValues(self.registry, "pgtwist_pool_paused")[labels], 0)

    def test_pinned(self) -> None:
        """
        C{pgtwist_client_pinned} counts, per pool, the clients that keep
        their backend between transactions (transaction pooling, a session
        holding temporary tables...).
        """
        self.fillPool()
        self.pools.pool(("other", "bob"))

        class Client:
            def __init__(self, key: tuple[str, str], pinned: str) -> None:
                self.key = key
                self.session = type("Session", (), {"pinned": pinned})()

        self.service.factory.clients.update(
            {
                Client(("app", "alice"), "temporary tables"),  # type: ignore[arg-type]
                Client(("app", "alice"), "WITH HOLD cursors"),  # type: ignore[arg-type]
                Client(("app", "alice"), ""),  # type: ignore[arg-type]
                Client(("other", "bob"), ""),  # type: ignore[arg-type]
            }
        )
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_client_pinned"),
            {("app", "alice"): 2, ("other", "bob"): 0},
        )

    def test_counters(self) -> None:
        """
        PoolStats counters are exposed as counters (with prometheus_client's
        C{_total} suffix) under pgagroal's names.
        """
        self.fillPool()
        expected = {
            "pgtwist_connection_success_total": 2,
            "pgtwist_connection_error_total": 1,
            "pgtwist_connection_timeout_total": 1,
            "pgtwist_connection_open_total": 5,
            "pgtwist_connection_remove_total": 2,
            "pgtwist_auth_user_success_total": 3,
            "pgtwist_auth_user_bad_password_total": 1,
            "pgtwist_network_sent_total": 1000,
            "pgtwist_network_received_total": 300,
            "pgtwist_query_count_total": 1,
            "pgtwist_tx_count_total": 1,
        }
        self.assertEqual(len(expected), len(POOL_COUNTERS))
        for name, value in expected.items():
            self.assertEqual(sampleValues(self.registry, name), {("app", "alice"): value}, name)

    def test_histograms(self) -> None:
        """
        The wait, transaction and query histograms come out cumulative, with
        their sum and count.
        """
        self.fillPool()
        buckets = sampleValues(self.registry, "pgtwist_client_wait_seconds_bucket")
        self.assertEqual(buckets[("app", "alice", "0.0001")], 0)
        self.assertEqual(buckets[("app", "alice", "0.0005")], 1)
        self.assertEqual(buckets[("app", "alice", "1.0")], 1)
        self.assertEqual(buckets[("app", "alice", "2.5")], 2)
        self.assertEqual(buckets[("app", "alice", "+Inf")], 2)
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_client_wait_seconds_count"),
            {("app", "alice"): 2},
        )
        self.assertAlmostEqual(
            sampleValues(self.registry, "pgtwist_client_wait_seconds_sum")[("app", "alice")],
            2.0003,
        )
        for name, _, _ in POOL_HISTOGRAMS[1:]:
            self.assertEqual(
                sampleValues(self.registry, name + "_count"), {("app", "alice"): 1}, name
            )

    def test_readsAtScrapeTime(self) -> None:
        """
        Nothing is cached: a change between two scrapes shows in the second,
        and clearing the statistics (C{clear prometheus}) zeroes the counters.
        """
        pool = self.fillPool()
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_query_count_total"), {("app", "alice"): 1}
        )
        pool.stats.addQuery(0.1)
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_query_count_total"), {("app", "alice"): 2}
        )
        pool.stats.reset()
        self.assertEqual(
            sampleValues(self.registry, "pgtwist_query_count_total"), {("app", "alice"): 0}
        )

    def test_noPools(self) -> None:
        """
        Before any client came, the per-pool families are present but empty,
        and the text exposition parses.
        """
        from prometheus_client import generate_latest

        text = generate_latest(self.registry).decode("utf-8")
        names = {family.name for family in text_string_to_metric_families(text)}
        self.assertIn("pgtwist_client_active", names)
        self.assertIn("pgtwist_query_count", names)
        self.assertEqual(sampleValues(self.registry, "pgtwist_client_active"), {})

    def test_noLimitsNoLimitMetrics(self) -> None:
        """
        Without a databases file there is no C{pgtwist_limit}.
        """
        reactor = MemoryReactorClock()
        service = buildService(
            Configuration(main=MainSettings(host="127.0.0.1", port=0), servers=SERVERS), reactor
        )
        registry = makeRegistry(service, reactor)
        self.assertEqual(sampleValues(registry, "pgtwist_limit"), {})
        self.assertEqual(sampleValues(registry, "pgtwist_total_connections"), {(): 0})


class RegistryTests(SynchronousTestCase):
    """
    Each service has its own registry; the global one stays untouched.
    """

    def test_isolated(self) -> None:
        """
        Two services' registries see their own pools only, and prometheus_client's
        global C{REGISTRY} holds no pgtwist metric.
        """
        reactor = MemoryReactorClock()
        first, second = makeService(reactor), makeService(reactor)
        first.pools.pool(("a", "u"))
        firstRegistry = makeRegistry(first, reactor)
        secondRegistry = makeRegistry(second, reactor)
        self.assertEqual(sampleValues(firstRegistry, "pgtwist_client_wait"), {("a", "u"): 0})
        self.assertEqual(sampleValues(secondRegistry, "pgtwist_client_wait"), {})
        self.assertEqual(sampleValues(REGISTRY, "pgtwist_client_wait"), {})

    def test_describeIsEmpty(self) -> None:
        """
        Registering does not collect: C{describe} returns nothing.
        """
        reactor = MemoryReactorClock()
        self.assertEqual(PoolerCollector(makeService(reactor), reactor).describe(), [])


class HTTPTests(SynchronousTestCase):
    """
    The HTTP site serves C{/metrics}.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.service = makeService(self.reactor)
        self.site = metricsSite(makeRegistry(self.service, self.reactor))

    def test_metrics(self) -> None:
        """
        C{GET /metrics} answers 200 in Prometheus' text format.
        """
        self.service.pools.pool(("app", "alice")).stats.addQuery(0.01)
        response = scrape(self.site)
        head, _, body = response.partition(b"\r\n\r\n")
        self.assertIn(b"200 OK", head.split(b"\r\n")[0])
        self.assertIn(b"content-type: text/plain; version=0.0.4", head.lower())
        families = {f.name: f for f in text_string_to_metric_families(body.decode("utf-8"))}
        self.assertEqual(families["pgtwist_query_count"].type, "counter")
        self.assertEqual(families["pgtwist_query_duration_seconds"].type, "histogram")
        self.assertEqual(families["pgtwist_active_connections"].type, "gauge")

    def test_openMetrics(self) -> None:
        """
        A scraper asking for OpenMetrics gets it.
        """
        response = scrape(self.site, accept=b"application/openmetrics-text; version=1.0.0")
        self.assertIn(b"application/openmetrics-text", response.lower())
        self.assertTrue(response.rstrip().endswith(b"# EOF"))

    def test_index(self) -> None:
        """
        C{/} points at C{/metrics}; other paths are not found.
        """
        self.assertIn(b"/metrics", scrape(self.site, b"/"))
        self.assertIn(b"404", scrape(self.site, b"/other").split(b"\r\n")[0])


class EndpointTests(SynchronousTestCase):
    """
    Where the metrics listener binds.
    """

    def test_barePortBindsHost(self) -> None:
        """
        A bare port binds the main C{host}, as pgagroal's C{metrics} does.
        """
        self.assertEqual(
            metricsEndpoint("tcp:9187", MainSettings(host="127.0.0.1")),
            "tcp:9187:interface=127.0.0.1",
        )
        self.assertEqual(
            metricsEndpoint("tcp:9187", MainSettings(host="localhost")),
            "tcp:9187:interface=127.0.0.1",
        )
        self.assertEqual(
            metricsEndpoint("tcp:9187", MainSettings(host="*")), "tcp6:9187:interface=\\:\\:"
        )
        self.assertEqual(
            metricsEndpoint("tcp:9187", MainSettings(host="::1")),
            "tcp6:9187:interface=\\:\\:1",
        )

    def test_fullEndpointKept(self) -> None:
        """
        An endpoint with options, or of another type, is used as given.
        """
        for description in ("tcp:9187:interface=0.0.0.0", "unix:/run/pgtwist/metrics.sock"):
            self.assertEqual(metricsEndpoint(description, MainSettings()), description)

    def test_serviceListens(self) -> None:
        """
        A service with C{metrics} set has a C{metrics} child that listens on
        the main host when started and stops with the service.
        """
        reactor = MemoryReactorClock()
        service = makeService(reactor)
        metrics = service.getServiceNamed("metrics")
        self.assertIsInstance(metrics, MetricsService)
        self.assertIsNot(metrics.registry, REGISTRY)
        service.startService()
        ports = [(port, interface) for port, _, _, interface in reactor.tcpServers]
        self.assertEqual(ports, [(0, "127.0.0.1"), (0, "127.0.0.1")])
        self.successResultOf(metrics.whenListening())
        self.successResultOf(service.stopService())
        self.assertFalse(metrics.running)
        self.assertIsNone(metrics.port)

    def test_offByDefault(self) -> None:
        """
        Without C{metrics} there is no metrics child.
        """
        service = buildService(
            Configuration(main=MainSettings(host="127.0.0.1", port=0), servers=SERVERS),
            MemoryReactorClock(),
        )
        self.assertNotIn("metrics", [child.name for child in service])


class DashboardTests(SynchronousTestCase):
    """
    C{contrib/grafana/pgtwist.json} is a Grafana dashboard over metrics that
    exist.
    """

    def setUp(self) -> None:
        path = Path(__file__).parents[2] / "contrib" / "grafana" / "pgtwist.json"
        self.dashboard = json.loads(path.read_text(encoding="utf-8"))

    def test_shape(self) -> None:
        """
        A titled dashboard whose panels have unique ids and a position, and
        whose queries use the data source variable.
        """
        self.assertEqual(self.dashboard["title"], "pgtwist")
        panels = self.dashboard["panels"]
        ids = [panel["id"] for panel in panels]
        self.assertEqual(len(ids), len(set(ids)))
        for panel in panels:
            self.assertEqual(set(panel["gridPos"]), {"h", "w", "x", "y"})
            for target in panel.get("targets", []):
                self.assertEqual(target["datasource"]["uid"], "${datasource}")
        variables = [v["name"] for v in self.dashboard["templating"]["list"]]
        self.assertEqual(variables, ["datasource", "instance", "database", "user"])

    def test_metricsExist(self) -> None:
        """
        Every metric a panel, variable or description names is one the
        collector serves (a sample, or a histogram's family name);
        latency panels use C{histogram_quantile} on the histograms.
        """
        reactor = MemoryReactorClock()
        service = makeService(reactor)
        pool = service.pools.pool(("app", "alice"))
        pool.waiters.append(Waiter(None, 0.0))
        served = set()
        for family in makeRegistry(service, reactor).collect():
            served.add(family.name)
            served.update(sample.name for sample in family.samples)
        text = json.dumps(self.dashboard)
        used = set(re.findall(r"pgtwist_[a-z_]+", text))
        self.assertGreater(len(used), 20)
        self.assertEqual(used - served, set())
        for name in ("query_duration", "transaction_duration", "client_wait"):
            self.assertIn(f"histogram_quantile(0.99, sum by (le) (rate(pgtwist_{name}", text)
