"""
Certificate authentication between real clients and a running pgtwist:
HBA method C{cert} and C{clientcert=verify-ca|verify-full} on a password
method, with client certificates from a CA made at test time and given to
libpq as C{sslcert}/C{sslkey}.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.certs import CertificateAuthority
from pgtwist.testing.embedded import PostgresCluster
from tests.integration.test_tls_clients import (
    PASSWORD,
    USER,
    Certificates,
    psql,
    tlsPooler,
    verifyFull,
)


class ClientCertificates:
    """
    Client certificates written into a directory: signed by the CA pgtwist
    trusts (C{tls_ca_file}), or by another one.
    """

    def __init__(self, directory: Path, authority: CertificateAuthority) -> None:
        self.directory = directory
        self.authority = authority
        self.stranger = CertificateAuthority("another CA")

    def conninfo(self, commonName: str, trusted: bool = True) -> str:
        """
        libpq's options to present a certificate for C{commonName}.
        """
        authority = self.authority if trusted else self.stranger
        name = f"client-{commonName}-{'trusted' if trusted else 'stranger'}"
        certificate, key = authority.issue(commonName, client=True).write(str(self.directory), name)
        return f"sslcert={certificate} sslkey={key}"

    def none(self) -> str:
        """
        libpq's options to present no certificate (not even
        C{~/.postgresql/postgresql.crt}).
        """
        missing = self.directory / "none"
        return f"sslcert={missing}.crt sslkey={missing}.key"


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    """
    A throwaway CA and server certificate for the test.
    """
    return Certificates(tmp_path / "tls")


@pytest.fixture
def clients(certificates: Certificates) -> ClientCertificates:
    """
    Client certificates from the same CA as the server's.
    """
    return ClientCertificates(certificates.directory, certificates.authority)


def test_certMethod(
    tmp_path: Path,
    pgCluster: PostgresCluster,
    certificates: Certificates,
    clients: ClientCertificates,
) -> None:
    """
    C{cert} in C{prefer} mode with C{tls_ca_file}: a client certificate
    whose CN is the user name logs in with no password (a wrong one is
    never asked for); another CN gets PostgreSQL's "certificate
    authentication failed"; no certificate gets "connection requires a
    valid client certificate"; a certificate from another CA fails the
    handshake; a plaintext client matches no C{hostssl} rule.
    """
    hba = ("hostssl all pgt_scram all cert",)
    main = {"tls_ca_file": certificates.rootPath}
    with tlsPooler(tmp_path, pgCluster, certificates, hba=hba, main=main) as pooler:
        tls = verifyFull(certificates)
        accepted = psql(
            pgCluster, pooler, f"{tls} {clients.conninfo(USER)}", "SELECT 42", password="wrong"
        )
        assert accepted.returncode == 0, accepted.stderr
        assert accepted.stdout.strip() == "42"

        wrongName = psql(pgCluster, pooler, f"{tls} {clients.conninfo('mallory')}", "SELECT 1")
        assert wrongName.returncode != 0
        assert f'certificate authentication failed for user "{USER}"' in wrongName.stderr

        none = psql(pgCluster, pooler, f"{tls} {clients.none()}", "SELECT 1")
        assert none.returncode != 0
        assert "connection requires a valid client certificate" in none.stderr

        stranger = psql(
            pgCluster, pooler, f"{tls} {clients.conninfo(USER, trusted=False)}", "SELECT 1"
        )
        assert stranger.returncode != 0
        assert "unknown ca" in stranger.stderr.lower(), stranger.stderr

        plain = psql(pgCluster, pooler, "sslmode=disable", "SELECT 1")
        assert plain.returncode != 0
        assert f'no pg_hba.conf entry for host "127.0.0.1", user "{USER}"' in plain.stderr

        certificate, key = certificates.authority.issue(USER, client=True).write(
            str(certificates.directory), "psycopg"
        )
        with psycopg.connect(
            host="localhost",
            hostaddr="127.0.0.1",
            port=pooler.port,
            user=USER,
            dbname=USER,
            sslmode="verify-full",
            sslrootcert=certificates.rootPath,
            sslcert=certificate,
            sslkey=key,
            connect_timeout=10,
        ) as connection:
            assert connection.execute("SELECT 7").fetchone() == (7,)
        pooler.waitForLog("certificate's CN is not the user name")


def test_clientcert(
    tmp_path: Path,
    pgCluster: PostgresCluster,
    certificates: Certificates,
    clients: ClientCertificates,
) -> None:
    """
    C{clientcert=verify-full} on C{scram-sha-256} in C{require} mode: the
    right certificate and password log in; a wrong password or another
    CN gets PostgreSQL's 28P01; no certificate is refused before the
    password. C{clientcert=verify-ca} takes any certificate from the CA.
    """
    hba = (
        "hostssl all pgt_scram all scram-sha-256 clientcert=verify-full",
        "hostssl all pgt_trust all scram-sha-256 clientcert=verify-ca",
    )
    main = {"tls_ca_file": certificates.rootPath}
    with tlsPooler(tmp_path, pgCluster, certificates, mode="require", hba=hba, main=main) as pooler:
        tls = verifyFull(certificates)
        mine = f"{tls} {clients.conninfo(USER)}"
        accepted = psql(pgCluster, pooler, mine, "SELECT 1")
        assert accepted.returncode == 0, accepted.stderr

        wrongPassword = psql(pgCluster, pooler, mine, "SELECT 1", password="guess")
        assert wrongPassword.returncode != 0
        assert f'password authentication failed for user "{USER}"' in wrongPassword.stderr

        wrongName = psql(pgCluster, pooler, f"{tls} {clients.conninfo('mallory')}", "SELECT 1")
        assert wrongName.returncode != 0
        assert f'password authentication failed for user "{USER}"' in wrongName.stderr

        none = psql(pgCluster, pooler, f"{tls} {clients.none()}", "SELECT 1", password=PASSWORD)
        assert none.returncode != 0
        assert "connection requires a valid client certificate" in none.stderr

        trust = {"user": "pgt_trust", "password": "trust-secret"}
        anyName = psql(pgCluster, pooler, mine, "SELECT 1", **trust)
        assert anyName.returncode == 0, anyName.stderr
        refused = psql(pgCluster, pooler, f"{tls} {clients.none()}", "SELECT 1", **trust)
        assert "connection requires a valid client certificate" in refused.stderr
        pooler.waitForLog("clientcert=verify-full. failed: CN mismatch")
