"""
Tests for L{pgtwist.testing.certs}: throwaway certificates that Python's
C{ssl} (as libpq and drivers do) and pyOpenSSL accept, or refuse as meant.
"""

from __future__ import annotations

import datetime
import os
import ssl
import stat

from cryptography import x509
from OpenSSL import crypto
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.testing.certs import CertificateAuthority
from tests.unit._tempdir import temporaryDirectory


class CertificateAuthorityTests(SynchronousTestCase):
    """
    L{CertificateAuthority}.
    """

    def setUp(self) -> None:
        self.directory = str(temporaryDirectory(self))
        self.ca = CertificateAuthority()

    def verify(self, pem: bytes) -> None:
        """
        Verify C{pem} against the CA with pyOpenSSL's store; raise if refused.
        """
        store = crypto.X509Store()
        store.add_cert(crypto.load_certificate(crypto.FILETYPE_PEM, self.ca.certificatePEM))
        certificate = crypto.load_certificate(crypto.FILETYPE_PEM, pem)
        crypto.X509StoreContext(store, certificate).verify_certificate()

    def test_serverCertificate(self) -> None:
        """
        A server certificate names its hosts (DNS names and IP addresses) and
        verifies against the CA; its key loads into an C{ssl} context with it,
        and the key file is 0600.
        """
        issued = self.ca.issue("localhost", hosts=["localhost", "127.0.0.1", "::1"])
        self.verify(issued.certificatePEM)
        certificate = x509.load_pem_x509_certificate(issued.certificatePEM)
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(names.get_values_for_type(x509.DNSName), ["localhost"])
        self.assertEqual(
            [str(a) for a in names.get_values_for_type(x509.IPAddress)], ["127.0.0.1", "::1"]
        )
        path, key = issued.write(self.directory, "server")
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(path, key)
        self.assertTrue(os.path.exists(self.ca.writeCertificate(self.directory)))

    def test_clientCertificate(self) -> None:
        """
        A client certificate carries the user name as its CN and is marked
        for client authentication.
        """
        issued = self.ca.issue("alice", client=True)
        self.verify(issued.certificatePEM)
        certificate = x509.load_pem_x509_certificate(issued.certificatePEM)
        self.assertEqual(
            certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value, "alice"
        )
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(usage), [x509.ExtendedKeyUsageOID.CLIENT_AUTH])

    def test_expired(self) -> None:
        """
        A certificate whose validity ended is refused by verification.
        """
        past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
        issued = self.ca.issue(
            "localhost",
            hosts=["localhost"],
            notBefore=past - datetime.timedelta(days=2),
            notAfter=past,
        )
        self.assertRaises(crypto.X509StoreContextError, self.verify, issued.certificatePEM)

    def test_otherAuthority(self) -> None:
        """
        A certificate of another CA does not verify against this one.
        """
        issued = CertificateAuthority().issue("localhost", hosts=["localhost"])
        self.assertRaises(crypto.X509StoreContextError, self.verify, issued.certificatePEM)
