"""
Tests for HTTPS on the metrics endpoint: pgagroal's C{metrics_cert_file},
C{metrics_key_file} and C{metrics_ca_file} as loaded, and the TLS settings
L{pgtwist.admin.metrics.MetricsTls} builds and reloads from them.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory

from pgtwist.admin.metrics import MetricsService, MetricsTls, checkTlsFiles
from pgtwist.config.errors import ConfigError
from pgtwist.config.model import Configuration, MainSettings
from pgtwist.config.validate import changeSetting
from pgtwist.testing.certs import CertificateAuthority
from tests.unit._configfiles import FilesTestCase

MAIN = "[pgtwist]\nhost = *\nport = 6432\nmetrics = 9187\n"
SERVER = "[primary]\nhost = db\nport = 5432\n"


class MetricsTlsConfigTests(FilesTestCase):
    """
    The three keys as the loader reads them.
    """

    def setUp(self) -> None:
        super().setUp()
        self.ca = CertificateAuthority()
        self.certFile, self.keyFile = self.ca.issue("metrics", hosts=["localhost"]).write(
            self.directory, "metrics"
        )
        self.caFile = self.ca.writeCertificate(self.directory)

    def test_offByDefault(self) -> None:
        """
        Without the keys the endpoint is plain HTTP, as before.
        """
        main = self.load(MAIN + SERVER).main
        self.assertEqual(
            (main.metricsCertFile, main.metricsKeyFile, main.metricsCaFile), (None,) * 3
        )

    def test_loaded(self) -> None:
        """
        The three files are read by name, with no warning.
        """
        main = self.load(
            MAIN + f"metrics_cert_file = {self.certFile}\nmetrics_key_file = {self.keyFile}\n"
            f"metrics_ca_file = {self.caFile}\n" + SERVER
        ).main
        self.assertEqual(
            (main.metricsCertFile, main.metricsKeyFile, main.metricsCaFile),
            (self.certFile, self.keyFile, self.caFile),
        )
        self.assertEqual(self.warnings, [])

    def test_keyReadableByOthers(self) -> None:
        """
        A key file readable by group or others is refused at load, as for
        every other private key: one line naming the key and the file.
        """
        os.chmod(self.keyFile, 0o604)
        error = self.loadError(
            MAIN
            + f"metrics_cert_file = {self.certFile}\nmetrics_key_file = {self.keyFile}\n"
            + SERVER
        )
        self.assertEqual((error.line, error.key), (6, "metrics_key_file"))
        self.assertIn(self.keyFile, str(error))
        self.assertIn("0604", str(error))

    def test_certificateWithoutKey(self) -> None:
        """
        A certificate without its key is refused, naming the missing key.
        """
        error = self.loadError(MAIN + f"metrics_cert_file = {self.certFile}\n" + SERVER)
        self.assertEqual(error.key, "metrics_key_file")
        self.assertIn("both", error.message)

    def test_keyWithoutCertificate(self) -> None:
        """
        And a key without its certificate.
        """
        error = self.loadError(MAIN + f"metrics_key_file = {self.keyFile}\n" + SERVER)
        self.assertEqual((error.key, error.line), ("metrics_cert_file", 1))

    def test_caWithoutHttps(self) -> None:
        """
        A CA file alone would verify nothing: refused.
        """
        error = self.loadError(MAIN + f"metrics_ca_file = {self.caFile}\n" + SERVER)
        self.assertEqual((error.key, error.line), ("metrics_ca_file", 5))

    def test_unusableFileStopsStart(self) -> None:
        """
        L{checkTlsFiles} (run at start) turns a file that cannot be used
        into one configuration error naming the main file and that file.
        """
        with open(self.certFile, "w") as f:
            f.write("not a certificate\n")
        config = self.load(
            MAIN
            + f"metrics_cert_file = {self.certFile}\nmetrics_key_file = {self.keyFile}\n"
            + SERVER
        )
        error = self.assertRaises(ConfigError, checkTlsFiles, config)
        self.assertEqual(error.key, "metrics_cert_file")
        self.assertIn(self.certFile, error.message)
        self.assertTrue(str(error).startswith(config.paths.config or "?"))
        checkTlsFiles(self.load(MAIN + SERVER))

    def test_notFromTheConsole(self) -> None:
        """
        The console's SET cannot point the endpoint at other files.
        """
        config = self.load(MAIN + SERVER)
        for key in ("metrics_cert_file", "metrics_key_file", "metrics_ca_file"):
            error = self.assertRaises(ConfigError, changeSetting, config, key, "/x")
            self.assertIn(key, error.message)


class MetricsTlsTests(FilesTestCase):
    """
    L{MetricsTls}: the server contexts it gives new connections.
    """

    def setUp(self) -> None:
        super().setUp()
        self.ca = CertificateAuthority()
        self.certFile, self.keyFile = self.ca.issue("metrics", hosts=["localhost"]).write(
            self.directory, "metrics"
        )
        self.caFile = self.ca.writeCertificate(self.directory)
        self.main = MainSettings(
            metrics="tcp:0", metricsCertFile=self.certFile, metricsKeyFile=self.keyFile
        )

    def certificateOf(self, tls: MetricsTls) -> bytes:
        """
        The certificate a new connection would present, DER.
        """
        connection = tls.serverConnectionForTLS(None)
        self.assertIsInstance(connection, SSL.Connection)
        certificate = connection.get_certificate()
        assert certificate is not None
        return certificate.to_cryptography().public_bytes(Encoding.DER)

    def test_noClientCertificateAsked(self) -> None:
        """
        Without C{metrics_ca_file} scrapers are not asked for a certificate.
        """
        context = MetricsTls(self.main).serverConnectionForTLS(None).get_context()
        self.assertEqual(context.get_verify_mode(), SSL.VERIFY_NONE)

    def test_clientCertificateRequired(self) -> None:
        """
        With C{metrics_ca_file} a scraper without a certificate is refused
        (pgagroal's C{SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT}).
        """
        main = MainSettings(
            metrics="tcp:0",
            metricsCertFile=self.certFile,
            metricsKeyFile=self.keyFile,
            metricsCaFile=self.caFile,
        )
        context = MetricsTls(main).serverConnectionForTLS(None).get_context()
        required = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        self.assertEqual(context.get_verify_mode() & required, required)

    def test_badFiles(self) -> None:
        """
        A missing file, a file without a certificate, and a key that is not
        the certificate's are each refused with the file named.
        """
        otherCert, otherKey = self.ca.issue("other").write(self.directory, "other")
        missing = os.path.join(self.directory, "missing.crt")
        for cert, key, named in (
            (missing, self.keyFile, missing),
            (self.keyFile, self.keyFile, self.keyFile),
            (self.certFile, otherKey, otherKey),
        ):
            main = MainSettings(metrics="tcp:0", metricsCertFile=cert, metricsKeyFile=key)
            error = self.assertRaises(ValueError, MetricsTls, main)
            self.assertIn(named, str(error))

    def test_reload(self) -> None:
        """
        After a reload new connections present the new certificate.
        """
        tls = MetricsTls(self.main)
        before = self.certificateOf(tls)
        self.ca.issue("renewed", hosts=["localhost"]).write(self.directory, "metrics")
        self.assertIsNone(tls.reload(self.main))
        self.assertNotEqual(self.certificateOf(tls), before)

    def test_reloadBadFileKeepsOld(self) -> None:
        """
        A new file that cannot be used keeps the certificate and key loaded
        before, and says why.
        """
        tls = MetricsTls(self.main)
        before = self.certificateOf(tls)
        with open(self.certFile, "w") as f:
            f.write("not a certificate\n")
        problem = tls.reload(self.main)
        assert problem is not None
        self.assertIn(self.certFile, problem)
        self.assertIn("keeping", problem)
        self.assertEqual(self.certificateOf(tls), before)


class _Service:
    """
    What L{MetricsService} reads of the root service.
    """

    def __init__(self, main: MainSettings) -> None:
        self.config = Configuration(main=main)


class MetricsServiceTlsTests(FilesTestCase):
    """
    L{MetricsService} with and without HTTPS, and its reload.
    """

    def setUp(self) -> None:
        super().setUp()
        ca = CertificateAuthority()
        self.certFile, self.keyFile = ca.issue("metrics", hosts=["localhost"]).write(
            self.directory, "metrics"
        )
        self.https = MainSettings(
            metrics="tcp:0", metricsCertFile=self.certFile, metricsKeyFile=self.keyFile
        )
        self.plain = MainSettings(metrics="tcp:0")

    def service(self, main: MainSettings) -> MetricsService:
        """
        A metrics service for C{main} (not started).
        """
        return MetricsService(_Service(main), MemoryReactorClock())  # type: ignore[arg-type]

    def test_plainOrHttps(self) -> None:
        """
        Without the files the site is served as it is; with them, wrapped
        in TLS.
        """
        self.assertIsNone(self.service(self.plain).tls)
        self.assertNotIsInstance(self.service(self.plain).factory, TLSMemoryBIOFactory)
        https = self.service(self.https)
        self.assertIsInstance(https.factory, TLSMemoryBIOFactory)
        self.assertIsNotNone(https.tls)

    def test_switchNeedsRestart(self) -> None:
        """
        A reload that sets or clears the files says a restart is needed
        and changes nothing.
        """
        for first, then in ((self.plain, self.https), (self.https, self.plain)):
            service = self.service(first)
            tls = service.tls
            problem = service.reloadTls(then)
            assert problem is not None
            self.assertIn("restart", problem)
            self.assertIs(service.tls, tls)

    def test_reloadReadsFiles(self) -> None:
        """
        With HTTPS on, a reload reads the files again; without, it does
        nothing.
        """
        self.assertIsNone(self.service(self.plain).reloadTls(self.plain))
        service = self.service(self.https)
        self.assertIsNone(service.reloadTls(self.https))
        os.remove(self.keyFile)
        problem = service.reloadTls(self.https)
        assert problem is not None
        self.assertIn(self.keyFile, problem)
