"""
TLS from pgtwist to a real PostgreSQL started with C{ssl = on} (issue 12):
every C{sslmode}, certificate verification refusing a wrong CA, a wrong
host name and an expired certificate with a clear error reaching the
client, a C{hostssl}-only server, PostgreSQL's C{cert} authentication with
a client certificate, certificates read again on SIGHUP, SCRAM channel
binding stopping a man in the middle, and a server section's
C{channel_binding} (C{disable}, C{require}).
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.certs import CertificateAuthority
from pgtwist.testing.embedded import PostgresCluster
from tests.integration.pooler import Pooler

USER, PASSWORD = "pgt_tls", "tls-secret"
TLS_ONLY = "pgt_tls_only"
CERT_USER = "pgt_tls_cert"

#: Starts pgtwist before a cluster with a server section (see L{startPooler}).
StartPooler = Callable[..., Pooler]

SSL_QUERY = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@pytest.fixture(scope="module")
def tlsCluster() -> Iterator[PostgresCluster]:
    """
    A PostgreSQL with C{ssl = on}: C{pgt_tls} over TLS or not,
    C{pgt_tls_only} over TLS only, C{pgt_tls_cert} by client certificate.
    """
    cluster = PostgresCluster(ssl=True)
    cluster.start()
    try:
        cluster.createRole(USER, PASSWORD, "scram-sha-256")
        cluster.createRole(TLS_ONLY, PASSWORD, "scram-sha-256")
        cluster.createRole(CERT_USER, None, "trust")
        cluster.setHba(
            [
                "local all all trust",
                f"host all {USER} 127.0.0.1/32 scram-sha-256",
                f"hostssl all {TLS_ONLY} 127.0.0.1/32 scram-sha-256",
                f"hostnossl all {TLS_ONLY} 127.0.0.1/32 reject",
                f"hostssl all {CERT_USER} 127.0.0.1/32 cert",
            ]
        )
        yield cluster
    finally:
        cluster.stop()


def section(cluster: PostgresCluster, host: str = "127.0.0.1", **keys: str) -> str:
    """
    A C{[primary]} section for C{cluster} with TLS C{keys}.
    """
    lines = [f"[primary]\nhost = {host}\nport = {cluster.port}\nprimary = on"]
    lines += [f"{key} = {value}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def startPooler(tmp_path: Path) -> Iterator[StartPooler]:
    """
    Start pgtwist with a given server section; stopped (its log printed on
    failure) after the test.
    """
    started: list[Pooler] = []

    def start(
        cluster: PostgresCluster, servers: str, users: dict[str, str] | None = None, **kw: object
    ) -> Pooler:
        directory = tmp_path / f"pooler{len(started)}"
        directory.mkdir()
        pooler = Pooler(
            directory,
            cluster,
            serverSections=servers,
            users=users if users is not None else {USER: PASSWORD, TLS_ONLY: PASSWORD},
            **kw,  # type: ignore[arg-type]
        )
        started.append(pooler)
        return pooler.start()

    try:
        yield start
    finally:
        for pooler in started:
            pooler.stop()
            # Shown by pytest when the test failed.
            print(pooler.log())


def backendSsl(pooler: Pooler, user: str = USER, password: str | None = PASSWORD) -> bool:
    """
    Whether the backend serving a client of C{pooler} is encrypted, as
    PostgreSQL's C{pg_stat_ssl} says.
    """
    with psycopg.connect(pooler.dsn(user, password, "postgres"), autocommit=True) as conn:
        row = conn.execute(SSL_QUERY).fetchone()
    assert row is not None
    return bool(row[0])


def refusal(pooler: Pooler, user: str = USER, password: str = PASSWORD) -> str:
    """
    The error a client of C{pooler} gets.
    """
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(pooler.dsn(user, password, "postgres"), autocommit=True).close()
    return str(caught.value)


def writeCa(directory: Path, ca: CertificateAuthority, name: str = "ca") -> str:
    """
    Write C{ca}'s certificate into C{directory}.
    """
    directory.mkdir(exist_ok=True)
    return ca.writeCertificate(str(directory), name)


def test_disable(tlsCluster: PostgresCluster, startPooler: StartPooler) -> None:
    """
    C{disable}: plaintext, even to a server that offers TLS.
    """
    pooler = startPooler(tlsCluster, section(tlsCluster, server_tls_sslmode="disable"))
    assert backendSsl(pooler) is False


def test_preferTls(tlsCluster: PostgresCluster, startPooler: StartPooler) -> None:
    """
    C{prefer} against a server with C{ssl = on}: TLS.
    """
    pooler = startPooler(tlsCluster, section(tlsCluster, server_tls_sslmode="prefer"))
    assert backendSsl(pooler) is True


def test_preferPlaintext(pgCluster: PostgresCluster, startPooler: StartPooler) -> None:
    """
    C{prefer} against a server with C{ssl = off}: plaintext after C{N}.
    """
    pooler = startPooler(
        pgCluster,
        section(pgCluster, server_tls_sslmode="prefer"),
        users={"pgt_scram": "scram-secret"},
    )
    assert backendSsl(pooler, "pgt_scram", "scram-secret") is False


def test_requireRefusedByPlainServer(pgCluster: PostgresCluster, startPooler: StartPooler) -> None:
    """
    C{require} against a server with C{ssl = off}: the client hears why.
    """
    pooler = startPooler(
        pgCluster,
        section(pgCluster, tls="on"),
        users={"pgt_scram": "scram-secret"},
    )
    message = refusal(pooler, "pgt_scram", "scram-secret")
    assert 'could not connect to server "primary"' in message
    assert "server does not support SSL, but SSL was required" in message


def test_requireHostsslOnly(tlsCluster: PostgresCluster, startPooler: StartPooler) -> None:
    """
    C{require} reaches a role PostgreSQL accepts over TLS only (C{hostssl}),
    which C{disable} cannot.
    """
    pooler = startPooler(tlsCluster, section(tlsCluster, server_tls_sslmode="require"))
    assert backendSsl(pooler, TLS_ONLY) is True
    plain = startPooler(tlsCluster, section(tlsCluster))
    assert "rejects connection" in refusal(plain, TLS_ONLY)


def test_verifyCa(tlsCluster: PostgresCluster, startPooler: StartPooler, tmp_path: Path) -> None:
    """
    C{verify-ca} with the server's CA works; with another CA the client
    hears that the certificate was refused, and why.
    """
    assert tlsCluster.certificateAuthority is not None
    right = writeCa(tmp_path / "right", tlsCluster.certificateAuthority)
    pooler = startPooler(
        tlsCluster, section(tlsCluster, server_tls_sslmode="verify-ca", tls_ca_file=right)
    )
    assert backendSsl(pooler) is True
    wrong = writeCa(tmp_path / "wrong", CertificateAuthority("another CA"))
    refused = startPooler(
        tlsCluster, section(tlsCluster, server_tls_sslmode="verify-ca", tls_ca_file=wrong)
    )
    message = refusal(refused)
    assert 'could not connect to server "primary": certificate verify failed' in message
    assert "unable to get local issuer certificate" in message or "self-signed" in message
    refused.waitForLog("TLS to primary .* failed")


def test_verifyFull(tlsCluster: PostgresCluster, startPooler: StartPooler, tmp_path: Path) -> None:
    """
    C{verify-full} works with a host name the certificate names
    (C{localhost}, and the address C{127.0.0.1}).
    """
    assert tlsCluster.certificateAuthority is not None
    ca = writeCa(tmp_path / "ca", tlsCluster.certificateAuthority)
    for host in ("localhost", "127.0.0.1"):
        pooler = startPooler(
            tlsCluster,
            section(tlsCluster, host=host, server_tls_sslmode="verify-full", tls_ca_file=ca),
        )
        assert backendSsl(pooler) is True


@pytest.fixture
def replacedCertificate(tlsCluster: PostgresCluster) -> Iterator[None]:
    """
    Put the cluster's own certificate back after a test replaced it.
    """
    try:
        yield
    finally:
        assert tlsCluster.certificateAuthority is not None
        tlsCluster.setServerCertificate(
            tlsCluster.certificateAuthority.issue(
                "localhost", hosts=["localhost", "127.0.0.1", "::1"]
            )
        )


def test_wrongHostName(
    tlsCluster: PostgresCluster, startPooler: StartPooler, tmp_path: Path, replacedCertificate: None
) -> None:
    """
    A certificate for another host name: C{verify-full} refuses it with
    the reason, C{verify-ca} accepts it.
    """
    ca = tlsCluster.certificateAuthority
    assert ca is not None
    tlsCluster.setServerCertificate(ca.issue("db.example.com", hosts=["db.example.com"]))
    caFile = writeCa(tmp_path / "ca", ca)
    full = startPooler(
        tlsCluster, section(tlsCluster, server_tls_sslmode="verify-full", tls_ca_file=caFile)
    )
    message = refusal(full)
    assert 'server certificate does not match host name "127.0.0.1"' in message
    verifyCa = startPooler(
        tlsCluster, section(tlsCluster, server_tls_sslmode="verify-ca", tls_ca_file=caFile)
    )
    assert backendSsl(verifyCa) is True


def test_expired(
    tlsCluster: PostgresCluster, startPooler: StartPooler, tmp_path: Path, replacedCertificate: None
) -> None:
    """
    An expired server certificate is refused, and the client hears so.
    """
    ca = tlsCluster.certificateAuthority
    assert ca is not None
    now = datetime.datetime.now(datetime.timezone.utc)
    tlsCluster.setServerCertificate(
        ca.issue(
            "localhost",
            hosts=["localhost", "127.0.0.1"],
            notBefore=now - datetime.timedelta(days=10),
            notAfter=now - datetime.timedelta(days=1),
        )
    )
    pooler = startPooler(
        tlsCluster,
        section(tlsCluster, server_tls_sslmode="verify-full", tls_ca_file=writeCa(tmp_path, ca)),
    )
    message = refusal(pooler)
    assert "certificate verify failed: certificate has expired" in message


def test_clientCertificate(
    tlsCluster: PostgresCluster, startPooler: StartPooler, tmp_path: Path
) -> None:
    """
    PostgreSQL's C{cert} authentication: pgtwist presents the configured
    client certificate, whose CN is the role; without it, PostgreSQL
    refuses.
    """
    ca = tlsCluster.certificateAuthority
    assert ca is not None
    tmp_path.joinpath("certs").mkdir()
    cert, key = ca.issue(CERT_USER, client=True).write(str(tmp_path / "certs"), "client")
    pooler = startPooler(
        tlsCluster,
        section(tlsCluster, server_tls_sslmode="require", tls_cert_file=cert, tls_key_file=key),
        users={},
        hba=("host all all all trust",),
    )
    assert backendSsl(pooler, CERT_USER, None) is True
    without = startPooler(
        tlsCluster,
        section(tlsCluster, server_tls_sslmode="require"),
        users={},
        hba=("host all all all trust",),
    )
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(without.dsn(CERT_USER, None, "postgres")).close()
    assert "certificate" in str(caught.value)


def test_reloadKeepsOldOnBadFile(
    tlsCluster: PostgresCluster, startPooler: StartPooler, tmp_path: Path
) -> None:
    """
    SIGHUP with a CA file that is no longer a certificate keeps the one
    loaded before (new backends still verify and connect) and logs why.
    """
    ca = tlsCluster.certificateAuthority
    assert ca is not None
    caFile = writeCa(tmp_path / "ca", ca)
    pooler = startPooler(
        tlsCluster,
        section(tlsCluster, server_tls_sslmode="verify-ca", tls_ca_file=caFile),
        main={"pipeline": "session"},
    )
    assert backendSsl(pooler) is True
    Path(caFile).write_text("garbage\n")
    pooler.reload()
    pooler.waitForLog("keeping the certificates and keys loaded before")
    with psycopg.connect(pooler.dsn(USER, PASSWORD, "postgres"), autocommit=True) as a:
        with psycopg.connect(pooler.dsn(USER, PASSWORD, "postgres"), autocommit=True) as b:
            for conn in (a, b):
                row = conn.execute(SSL_QUERY).fetchone()
                assert row is not None and row[0] is True


def test_cancelAndShowServers(tlsCluster: PostgresCluster, startPooler: StartPooler) -> None:
    """
    Over a TLS backend, C{cancel()} stops a running query (the cancel goes
    to PostgreSQL inside TLS too), and SHOW SERVERS names the backend's TLS
    version and cipher.
    """
    pooler = startPooler(
        tlsCluster,
        section(tlsCluster, server_tls_sslmode="require"),
        main={"pipeline": "session"},
        admins={"pgt_admin": "admin-secret"},
    )
    with psycopg.connect(pooler.dsn(USER, PASSWORD, "postgres"), autocommit=True) as conn:
        canceller = threading.Timer(0.5, conn.cancel)
        started = time.monotonic()
        canceller.start()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(10)")
        finally:
            canceller.join()
        assert time.monotonic() - started < 5.0
        console = pooler.dsn("pgt_admin", "admin-secret", "pgbouncer")
        with psycopg.connect(console, autocommit=True) as admin:
            cursor = admin.execute("SHOW SERVERS")
            assert cursor.description is not None
            column = [c.name for c in cursor.description].index("tls")
            values = [row[column] for row in cursor.fetchall()]
    assert len(values) == 1
    assert values[0].startswith("TLSv1."), values
    assert pooler.logCount("Cancel request to primary not sent") == 0


def test_relayOverTls(tlsCluster: PostgresCluster, startPooler: StartPooler) -> None:
    """
    Over a TLS backend, whose writes pgtwist encrypts and sends at once: a
    16 MiB C{COPY FROM STDIN} row and a 64 MiB value arrive intact, and
    2,000 pipelined queries get their answers in order.
    """
    pooler = startPooler(
        tlsCluster, section(tlsCluster, server_tls_sslmode="require"), main={"pipeline": "session"}
    )
    size = 16 << 20
    with psycopg.connect(pooler.dsn(USER, PASSWORD, "postgres"), autocommit=True) as conn:
        assert conn.execute(SSL_QUERY).fetchone() == (True,)
        conn.execute("CREATE TEMP TABLE big (v text)")
        with conn.cursor() as cursor:
            with cursor.copy("COPY big (v) FROM STDIN") as copy:
                copy.write(b"z" * size + b"\n")
        row = conn.execute("SELECT length(v), length(replace(v, 'z', '')) FROM big").fetchone()
        assert row == (size, 0)
        value = conn.execute("SELECT repeat('x', %s)", (4 * size,)).fetchone()
        assert value is not None
        assert len(value[0]) == 4 * size and value[0].count("x") == 4 * size
        with conn.pipeline():
            cursors = [conn.execute("SELECT %s::int", (i,)) for i in range(2000)]
        assert [cursor.fetchone() for cursor in cursors] == [(i,) for i in range(2000)]


def test_reloadUnderLoad(
    tlsCluster: PostgresCluster, startPooler: StartPooler, tmp_path: Path
) -> None:
    """
    SIGHUP with a new CA file while clients come and go drops none of them:
    open backends keep their TLS, new ones verify with the new file.
    """
    ca = tlsCluster.certificateAuthority
    assert ca is not None
    caFile = writeCa(tmp_path / "ca", ca)
    pooler = startPooler(
        tlsCluster,
        section(tlsCluster, server_tls_sslmode="verify-full", tls_ca_file=caFile),
        main={"pipeline": "session", "max_connections": 4},
    )
    failures: list[BaseException] = []
    done = threading.Event()

    def client() -> None:
        while not done.is_set():
            try:
                assert backendSsl(pooler) is True
            except BaseException as e:
                failures.append(e)
                return

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        other = CertificateAuthority("another CA").certificatePEM
        for reload in range(1, 4):
            time.sleep(0.3)
            # The bundle grows by one CA each time: a new file, still valid.
            Path(caFile).write_bytes(ca.certificatePEM + other * reload)
            pooler.reload()
            pooler.waitForLog("Configuration reloaded", count=reload)
    finally:
        done.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    assert pooler.logCount("TLS to PostgreSQL") == 0
    # A pool that did not exist before the reloads: its backend is new.
    with psycopg.connect(pooler.dsn(USER, PASSWORD, "template1"), autocommit=True) as conn:
        row = conn.execute(SSL_QUERY).fetchone()
    assert row is not None and row[0] is True


class TlsInterceptor:
    """
    A man in the middle between pgtwist and PostgreSQL who terminates
    pgtwist's TLS with a certificate of his own (one that C{require} does
    not check) and opens his own TLS connection to PostgreSQL, relaying
    everything in between. Without channel binding, the SCRAM login
    passes through him unnoticed.
    """

    def __init__(self, cluster: PostgresCluster, directory: Path) -> None:
        directory.mkdir(exist_ok=True)
        certificate, key = (
            CertificateAuthority("interceptor")
            .issue("localhost", hosts=["localhost", "127.0.0.1"])
            .write(str(directory), "interceptor")
        )
        self._serverContext = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._serverContext.load_cert_chain(certificate, key)
        self._clientContext = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._clientContext.check_hostname = False
        self._clientContext.verify_mode = ssl.CERT_NONE
        self._cluster = cluster
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        """
        Stop accepting.
        """
        self._listener.close()

    def _accept(self) -> None:
        """
        Relay every connection until the listener closes.
        """
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        """
        Answer pgtwist's SSLRequest with C{S}, do the same toward
        PostgreSQL, and pump bytes both ways.
        """
        try:
            request = client.recv(8)
            client.sendall(b"S")
            inner = self._serverContext.wrap_socket(client, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", self._cluster.port))
            upstream.sendall(request)
            assert upstream.recv(1) == b"S"
            outer = self._clientContext.wrap_socket(upstream)
        except (OSError, AssertionError):
            client.close()
            return

        def pump(source: ssl.SSLSocket, sink: ssl.SSLSocket) -> None:
            try:
                while True:
                    data = source.recv(65536)
                    if not data:
                        break
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                source.close()
                sink.close()

        threading.Thread(target=pump, args=(inner, outer), daemon=True).start()
        pump(outer, inner)


def test_channelBindingStopsInterceptor(
    tlsCluster: PostgresCluster, startPooler: StartPooler, tmp_path: Path
) -> None:
    """
    Over TLS pgtwist logs into PostgreSQL with SCRAM-SHA-256-PLUS, bound to
    the certificate it was shown: through a man in the middle who presents
    his own certificate (C{require} does not check it), PostgreSQL sees a
    binding to a certificate it never sent and refuses the login, though
    the password is right. Directly, the same login succeeds.
    """
    interceptor = TlsInterceptor(tlsCluster, tmp_path / "interceptor")
    try:
        direct = startPooler(tlsCluster, section(tlsCluster, server_tls_sslmode="require"))
        assert backendSsl(direct) is True
        keys = f"[primary]\nhost = 127.0.0.1\nport = {interceptor.port}\nprimary = on\n"
        relayed = startPooler(tlsCluster, keys + "server_tls_sslmode = require\n")
        message = refusal(relayed)
        assert "SCRAM channel binding check failed" in message, message
    finally:
        interceptor.close()


def test_channelBindingDisable(
    tlsCluster: PostgresCluster, startPooler: StartPooler, tmp_path: Path
) -> None:
    """
    C{channel_binding = disable} logs in over TLS with plain SCRAM-SHA-256:
    directly, and, since nothing is bound, through the man in the middle
    that binding stops.
    """
    interceptor = TlsInterceptor(tlsCluster, tmp_path / "interceptor")
    try:
        direct = startPooler(
            tlsCluster,
            section(tlsCluster, server_tls_sslmode="require", channel_binding="disable"),
        )
        assert backendSsl(direct) is True
        keys = f"[primary]\nhost = 127.0.0.1\nport = {interceptor.port}\nprimary = on\n"
        relayed = startPooler(
            tlsCluster, keys + "server_tls_sslmode = require\nchannel_binding = disable\n"
        )
        assert backendSsl(relayed) is True
    finally:
        interceptor.close()


def test_channelBindingRequire(tlsCluster: PostgresCluster, startPooler: StartPooler) -> None:
    """
    C{channel_binding = require} logs in over TLS to a PostgreSQL that
    offers SCRAM-SHA-256-PLUS, without a warning.
    """
    pooler = startPooler(
        tlsCluster,
        section(tlsCluster, server_tls_sslmode="require", channel_binding="require"),
    )
    assert backendSsl(pooler) is True
    assert backendSsl(pooler, TLS_ONLY) is True
    assert pooler.logCount("channel binding") == 0


@pytest.mark.parametrize(
    ("user", "password", "reason"),
    [
        ("pgt_scram", "scram-secret", "channel binding required, but SSL not in use"),
        (
            "pgt_md5",
            "md5-secret",
            "channel binding required but not supported by server's authentication request",
        ),
        (
            "pgt_trust",
            "trust-secret",
            "channel binding required, but server authenticated client without channel binding",
        ),
    ],
)
def test_channelBindingRequireRefused(
    pgCluster: PostgresCluster, startPooler: StartPooler, user: str, password: str, reason: str
) -> None:
    """
    C{channel_binding = require} toward a PostgreSQL without TLS refuses
    SCRAM (no TLS to bind to), md5 (the hash would go out) and trust (no
    authentication at all), each with libpq's words: the client hears
    them, and the log names the server.
    """
    pooler = startPooler(
        pgCluster,
        section(pgCluster, server_tls_sslmode="prefer", channel_binding="require"),
        users={user: password},
    )
    message = refusal(pooler, user, password)
    assert 'could not connect to server "primary"' in message, message
    assert reason in message, message
    pooler.waitForLog(f"Cannot connect to primary: {reason}")
