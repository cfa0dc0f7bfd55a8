# -*- test-case-name: tests.unit.test_testing_certs -*-
"""
Throwaway X.509 certificates for TLS tests and C{make run}: a certificate
authority made on the spot, and server or client certificates it signs.

Made with C{cryptography} (already a dependency, for the vault) at the time
they are needed, so no key is ever committed. Keys are ECDSA P-256: quick
to make, and accepted by PostgreSQL, libpq, Python's C{ssl} and pyOpenSSL.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pgtwist._compat import SLOTS

__all__ = ["CertificateAuthority", "IssuedCertificate"]

#: How long certificates are valid by default: long enough for any run.
_DEFAULT_LIFETIME = datetime.timedelta(days=30)


@dataclass(frozen=True, **SLOTS)
class IssuedCertificate:
    """
    A certificate and its private key, both PEM.

    @ivar certificatePEM: The certificate.
    @ivar privateKeyPEM: Its unencrypted PKCS#8 private key.
    """

    certificatePEM: bytes
    privateKeyPEM: bytes

    def write(self, directory: str, name: str) -> tuple[str, str]:
        """
        Write C{<name>.crt} and C{<name>.key} (mode 0600, as PostgreSQL and
        pgtwist require of a key file) into C{directory}; return their paths.
        """
        certificate = os.path.join(directory, f"{name}.crt")
        key = os.path.join(directory, f"{name}.key")
        with open(certificate, "wb") as f:
            f.write(self.certificatePEM)
        descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as f:
            f.write(self.privateKeyPEM)
        os.chmod(key, 0o600)
        return certificate, key


def _newKey() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _keyPEM(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(commonName: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)])


class CertificateAuthority:
    """
    A self-signed CA that issues certificates for tests.

    @ivar certificatePEM: The CA's certificate, for C{sslrootcert},
        C{tls_ca_file} and the like.
    """

    def __init__(self, commonName: str = "pgtwist throwaway CA") -> None:
        self._key = _newKey()
        now = datetime.datetime.now(datetime.timezone.utc)
        self._name = _name(commonName)
        self._certificate = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _DEFAULT_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        self.certificatePEM = self._certificate.public_bytes(serialization.Encoding.PEM)

    def writeCertificate(self, directory: str, name: str = "ca") -> str:
        """
        Write the CA's certificate as C{<name>.crt} in C{directory}; return its path.
        """
        path = os.path.join(directory, f"{name}.crt")
        with open(path, "wb") as f:
            f.write(self.certificatePEM)
        return path

    def issue(
        self,
        commonName: str,
        hosts: Iterable[str] = (),
        client: bool = False,
        notBefore: datetime.datetime | None = None,
        notAfter: datetime.datetime | None = None,
    ) -> IssuedCertificate:
        """
        A certificate signed by this CA.

        @param commonName: The subject's CN (for a client certificate, the
            user name PostgreSQL's and pgtwist's C{cert} method compare).
        @param hosts: DNS names and IP addresses for the subjectAltName of
            a server certificate (C{localhost}, C{127.0.0.1}, C{::1}).
        @param client: Mark it for client authentication rather than for a
            server.
        @param notBefore: Start of validity (default: a few minutes ago).
        @param notAfter: End of validity (default: in 30 days); a time in
            the past makes an expired certificate.
        """
        key = _newKey()
        now = datetime.datetime.now(datetime.timezone.utc)
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(commonName))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(notBefore or now - datetime.timedelta(minutes=5))
            .not_valid_after(notAfter or now + _DEFAULT_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(certificate.public_bytes(serialization.Encoding.PEM), _keyPEM(key))
