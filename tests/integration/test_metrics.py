"""
Prometheus metrics end to end: the real C{pgtwist} process with C{metrics}
set, scraped over HTTP while clients use it.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgtwist.testing.certs import CertificateAuthority
from pgtwist.testing.embedded import PostgresCluster
from tests.integration.clients import runningPooler, waitFor
from tests.integration.pooler import freePort

USER, PASSWORD, DATABASE = "pgt_scram", "scram-secret", "pgtwist_test"


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """
    GET C{/metrics}: sample name -> sorted label pairs -> value.
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode("utf-8")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    """
    The sorted label pairs L{scrape} files a sample under.
    """
    return tuple(sorted(labels.items()))


POOL = key(database=DATABASE, user=USER)
"""
The label pairs of the pool the tests use.
"""


def test_scrapeWhileInUse(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    A bare C{metrics} port listens on the main host; while a client holds a
    backend the gauges show it, and the counters and the wait histogram
    record the logins (good and bad) and the backend handed out.
    """
    port = freePort()
    with runningPooler(tmp_path, pgCluster, main={"metrics": port}) as pooler:
        before = scrape(port)
        assert before["pgtwist_state"] == {(): 1}
        assert before["pgtwist_max_connections"] == {(): 10}
        assert before["pgtwist_total_connections"] == {(): 0}
        assert "pgtwist_client_active" not in before
        with psycopg.connect(pooler.dsn(USER, PASSWORD, DATABASE)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            during = scrape(port)
            assert during["pgtwist_client_sockets"] == {(): 1}
            assert during["pgtwist_total_connections"] == {(): 1}
            assert during["pgtwist_active_connections"] == {(): 1}
            assert during["pgtwist_client_active"] == {POOL: 1}
            assert during["pgtwist_client_wait"] == {POOL: 0}
            assert (
                during["pgtwist_pool_connections"][
                    key(database=DATABASE, user=USER, state="active")
                ]
                == 1
            )
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pooler.dsn(USER, "wrong", DATABASE))
        after = scrape(port)
    assert after["pgtwist_auth_user_success_total"][POOL] == 1
    assert after["pgtwist_auth_user_bad_password_total"][POOL] == 1
    assert after["pgtwist_connection_open_total"][POOL] == 1
    assert after["pgtwist_connection_success_total"][POOL] == 1
    assert after["pgtwist_connection_error_total"][POOL] == 0
    assert after["pgtwist_client_wait_seconds_count"][POOL] == 1
    assert (
        after["pgtwist_client_wait_seconds_bucket"][key(database=DATABASE, user=USER, le="+Inf")]
        == 1
    )
    for name in (
        "pgtwist_query_count_total",
        "pgtwist_tx_count_total",
        "pgtwist_network_sent_total",
        "pgtwist_network_received_total",
        "pgtwist_query_duration_seconds_count",
        "pgtwist_transaction_duration_seconds_count",
    ):
        assert after[name][POOL] > 0, name


def test_onlyMetricsPath(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    An explicit endpoint is used as given; paths other than C{/metrics} and
    C{/} are not found.
    """
    port = freePort()
    main = {"metrics": f"tcp:{port}:interface=127.0.0.1"}
    with runningPooler(tmp_path, pgCluster, main=main):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert b"/metrics" in response.read()
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/admin", timeout=10)
        assert raised.value.code == 404


def httpsScrape(port: int, context: ssl.SSLContext) -> bytes:
    """
    GET C{/metrics} over HTTPS with C{context}; the body.
    """
    url = f"https://localhost:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        assert response.status == 200
        body: bytes = response.read()
    return body


def test_https(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    With C{metrics_cert_file} and C{metrics_key_file} the endpoint is
    scraped over HTTPS, verified against the CA with the host name; plain
    HTTP on that port gets no answer; after SIGHUP new scrapes see the new
    certificate, and a key file that cannot be used keeps it and logs why.
    """
    directory = tmp_path / "tls"
    directory.mkdir()
    ca = CertificateAuthority()
    caFile = ca.writeCertificate(str(directory))
    certFile, keyFile = ca.issue("first", hosts=["localhost", "127.0.0.1"]).write(
        str(directory), "metrics"
    )
    port = freePort()
    main = {
        "metrics": f"tcp:{port}:interface=127.0.0.1",
        "metrics_cert_file": certFile,
        "metrics_key_file": keyFile,
    }
    context = ssl.create_default_context(cafile=caFile)
    with runningPooler(tmp_path, pgCluster, main=main) as pooler:
        assert b"pgtwist_state 1.0" in httpsScrape(port, context)
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        with pytest.raises(urllib.error.URLError) as raised:
            httpsScrape(port, ssl.create_default_context())
        assert "CERTIFICATE_VERIFY_FAILED" in str(raised.value)

        ca.issue("second", hosts=["localhost"]).write(str(directory), "metrics")
        pooler.reload()
        waitFor(lambda: peerName(port, context) == "second")
        assert b"pgtwist_state 1.0" in httpsScrape(port, context)

        Path(keyFile).write_text("garbage\n")
        pooler.reload()
        pooler.waitForLog("keeping the certificate and key loaded before")
        assert peerName(port, context) == "second"


def peerName(port: int, context: ssl.SSLContext) -> str:
    """
    The CN of the certificate the metrics endpoint presents now.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            peer = tls.getpeercert()
    for rdn in peer["subject"]:
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    raise AssertionError(f"no CN in {peer}")


def test_httpsClientCertificate(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    With C{metrics_ca_file} a scraper must show a certificate that CA
    signed: one without a certificate, or with one from another CA, is
    refused in the handshake.
    """
    directory = tmp_path / "tls"
    directory.mkdir()
    ca = CertificateAuthority()
    caFile = ca.writeCertificate(str(directory))
    certFile, keyFile = ca.issue("metrics", hosts=["localhost"]).write(str(directory), "metrics")
    scraperCert, scraperKey = ca.issue("prometheus", client=True).write(str(directory), "scraper")
    strangerCert, strangerKey = (
        CertificateAuthority("another CA")
        .issue("prometheus", client=True)
        .write(str(directory), "stranger")
    )
    port = freePort()
    main = {
        "metrics": f"tcp:{port}:interface=127.0.0.1",
        "metrics_cert_file": certFile,
        "metrics_key_file": keyFile,
        "metrics_ca_file": caFile,
    }
    with runningPooler(tmp_path, pgCluster, main=main):
        context = ssl.create_default_context(cafile=caFile)
        context.load_cert_chain(scraperCert, scraperKey)
        assert b"pgtwist_state 1.0" in httpsScrape(port, context)
        for cert in (None, (strangerCert, strangerKey)):
            refused = ssl.create_default_context(cafile=caFile)
            if cert is not None:
                refused.load_cert_chain(*cert)
            # TLS 1.3 reports the refusal after the handshake, at the first read.
            with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
                httpsScrape(port, refused)
