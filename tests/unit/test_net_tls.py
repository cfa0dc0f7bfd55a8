"""
Tests for L{pgtwist.net.tls}: the server-side context built from the
configuration, its ALPN rule, and reloads, with handshakes run in memory
(OpenSSL's memory BIOs, no socket).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import tempfile

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.app.bootstrap import loadPlugins
from pgtwist.config.errors import ConfigError
from pgtwist.config.model import ConfigPaths, Configuration, MainSettings, ServerSettings
from pgtwist.net.cancel import CancelRegistry
from pgtwist.net.frontend import FrontendFactory
from pgtwist.net.tls import ALPN_PROTOCOL, alpnNegotiated, clientTLS, describeConnection
from pgtwist.testing import FakeBackendPool
from pgtwist.testing.certs import CertificateAuthority


def handshake(
    server: SSL.Connection, client: SSL.Connection
) -> tuple[SSL.Connection, SSL.Connection]:
    """
    Run a TLS handshake between two memory-BIO connections.

    @raise SSL.Error: When either side fails it.
    """
    server.set_accept_state()
    client.set_connect_state()
    for _ in range(20):
        done = 0
        for side in (client, server):
            try:
                side.do_handshake()
                done += 1
            except SSL.WantReadError:
                pass
        for source, target in ((client, server), (server, client)):
            try:
                target.bio_write(source.bio_read(65536))
            except SSL.WantReadError:
                pass
        if done == 2:
            return server, client
    raise AssertionError("the handshake did not finish")


class TLSFilesTestCase(SynchronousTestCase):
    """
    A throwaway CA and server certificate in a private directory.
    """

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="pgtwist-tls-")
        self.addCleanup(shutil.rmtree, self.directory)
        self.authority = CertificateAuthority()
        self.caFile = self.authority.writeCertificate(self.directory)
        self.certificate, self.key = self.authority.issue(
            "localhost", hosts=("localhost", "127.0.0.1")
        ).write(self.directory, "server")

    def main(self, **settings: object) -> MainSettings:
        """
        Main settings with TLS on and this test's files.
        """
        values: dict[str, object] = {
            "tls": True,
            "tlsCertFile": self.certificate,
            "tlsKeyFile": self.key,
        }
        values.update(settings)
        return MainSettings(**values)  # type: ignore[arg-type]

    def client(self, alpn: list[bytes] | None = None, certificate: bool = False) -> SSL.Connection:
        """
        A client connection that verifies the server against the CA.
        """
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.load_verify_locations(self.caFile)
        context.set_verify(SSL.VERIFY_PEER)
        if alpn is not None:
            context.set_alpn_protos(alpn)
        if certificate:
            cert, key = self.authority.issue("alice", client=True).write(self.directory, "alice")
            context.use_certificate_file(cert)
            context.use_privatekey_file(key)
        connection = SSL.Connection(context, None)
        connection.set_tlsext_host_name(b"localhost")
        return connection


class ClientTLSTests(TLSFilesTestCase):
    """
    L{clientTLS} builds the context, or refuses what cannot be used.
    """

    def test_off(self) -> None:
        """
        No TLS configured: no context.
        """
        self.assertIsNone(clientTLS(MainSettings()))
        self.assertIsNone(clientTLS(self.main(clientTlsSslmode="disable")))

    def test_modes(self) -> None:
        """
        C{tls = on} is C{prefer}; C{require} and stronger make TLS required.
        """
        tls = clientTLS(self.main())
        assert tls is not None
        self.assertEqual((tls.mode, tls.required), ("prefer", False))
        for mode, required in (("allow", False), ("require", True)):
            tls = clientTLS(self.main(clientTlsSslmode=mode))
            assert tls is not None
            self.assertEqual((tls.mode, tls.required), (mode, required))

    def test_handshake(self) -> None:
        """
        A client that trusts the CA completes a handshake and sees the
        certificate; SHOW CLIENTS' description names protocol and cipher.
        """
        tls = clientTLS(self.main())
        assert tls is not None
        server, client = handshake(tls.serverConnectionForTLS(None), self.client())
        served = client.get_peer_certificate(as_cryptography=True)
        assert served is not None
        self.assertEqual(served.subject.rfc4514_string(), "CN=localhost")
        self.assertEqual(server.get_protocol_version_name(), "TLSv1.3")
        self.assertTrue(describeConnection(server).startswith("TLSv1.3/TLS_"))
        self.assertFalse(alpnNegotiated(server))
        self.assertIsNone(server.get_peer_certificate())

    def test_protocols(self) -> None:
        """
        C{client_tls_protocols} bounds the versions: with only TLS 1.2
        allowed, the handshake uses it, with the configured ciphers.
        """
        tls = clientTLS(
            self.main(
                clientTlsProtocols=("tlsv1.2",), clientTlsCiphers="ECDHE-ECDSA-AES128-GCM-SHA256"
            )
        )
        assert tls is not None
        server, _ = handshake(tls.serverConnectionForTLS(None), self.client())
        self.assertEqual(describeConnection(server), "TLSv1.2/ECDHE-ECDSA-AES128-GCM-SHA256")

    def test_alpn(self) -> None:
        """
        A client offering ALPN C{postgresql} gets it.
        """
        tls = clientTLS(self.main())
        assert tls is not None
        server, client = handshake(
            tls.serverConnectionForTLS(None), self.client([b"http/1.1", ALPN_PROTOCOL])
        )
        self.assertTrue(alpnNegotiated(server))
        self.assertEqual(client.get_alpn_proto_negotiated(), ALPN_PROTOCOL)

    def test_alpnWithoutPostgresql(self) -> None:
        """
        A client offering ALPN without C{postgresql} fails the handshake,
        as with PostgreSQL 17.
        """
        tls = clientTLS(self.main())
        assert tls is not None
        server, client = tls.serverConnectionForTLS(None), self.client([b"http/1.1"])
        with self.assertRaises(SSL.Error) as caught:
            handshake(server, client)
        self.assertIn("postgresql not offered", str(caught.exception))
        client.bio_write(server.bio_read(65536))
        with self.assertRaises(SSL.Error) as alert:
            client.do_handshake()
        self.assertIn("no application protocol", str(alert.exception))

    def test_clientCertificateVerified(self) -> None:
        """
        With a CA file, a client certificate is asked for and kept (for
        certificate authentication); C{verify-ca} requires one.
        """
        tls = clientTLS(self.main(tlsCaFile=self.caFile))
        assert tls is not None
        server, _ = handshake(tls.serverConnectionForTLS(None), self.client(certificate=True))
        sent = server.get_peer_certificate(as_cryptography=True)
        assert sent is not None
        self.assertEqual(sent.subject.rfc4514_string(), "CN=alice")
        strict = clientTLS(self.main(tlsCaFile=self.caFile, clientTlsSslmode="verify-ca"))
        assert strict is not None
        self.assertRaises(SSL.Error, handshake, strict.serverConnectionForTLS(None), self.client())

    def test_clientCertificateUnknownCA(self) -> None:
        """
        A client certificate from another CA fails the handshake.
        """
        other = CertificateAuthority("another CA")
        tls = clientTLS(self.main(tlsCaFile=other.writeCertificate(self.directory, "other")))
        assert tls is not None
        self.assertRaises(
            SSL.Error, handshake, tls.serverConnectionForTLS(None), self.client(certificate=True)
        )

    def test_keyPermissions(self) -> None:
        """
        A key file others may read is refused, naming it.
        """
        os.chmod(self.key, 0o644)
        error = self.assertRaises(ConfigError, clientTLS, self.main())
        self.assertEqual(error.path, self.key)

    def test_wrongKey(self) -> None:
        """
        A key that is not the certificate's is refused, naming the key file.
        """
        _, other = self.authority.issue("other").write(self.directory, "other")
        error = self.assertRaises(ConfigError, clientTLS, self.main(tlsKeyFile=other))
        self.assertEqual(error.path, other)
        self.assertIn("does not match", error.message)

    def test_notACertificate(self) -> None:
        """
        A certificate file that holds no certificate is refused.
        """
        with open(self.certificate, "w") as f:
            f.write("not a certificate\n")
        error = self.assertRaises(ConfigError, clientTLS, self.main())
        self.assertEqual(error.path, self.certificate)

    def test_badCiphers(self) -> None:
        """
        A cipher list OpenSSL accepts nothing of is refused, naming the key.
        """
        error = self.assertRaises(
            ConfigError, clientTLS, self.main(clientTlsCiphers="NO-SUCH-CIPHER")
        )
        self.assertEqual(error.key, "client_tls_ciphers")


class ReloadTests(TLSFilesTestCase):
    """
    L{FrontendFactory.reconfigure} reads the TLS files again; bad files keep
    the previous context.
    """

    def setUp(self) -> None:
        super().setUp()
        methods, pipelines = loadPlugins()
        self.configuration = Configuration(
            main=self.main(),
            servers=(ServerSettings("primary", "127.0.0.1", 5432, True),),
            paths=ConfigPaths(config="pgtwist.conf"),
        )
        self.factory = FrontendFactory(
            self.configuration,
            FakeBackendPool(),
            Clock(),
            methods,
            pipelines,
            CancelRegistry(None),
        )

    def test_newCertificate(self) -> None:
        """
        A reload takes a renewed certificate at the same path: new
        connections get it, connections made before keep the old one.
        """
        before = self.factory.tls
        assert before is not None
        old = before.serverConnectionForTLS(None)
        renewed = self.authority.issue("localhost", hosts=("localhost",))
        renewed.write(self.directory, "server")
        self.factory.reconfigure(self.configuration)
        after = self.factory.tls
        assert after is not None
        self.assertIsNot(after, before)
        server, client = handshake(after.serverConnectionForTLS(None), self.client())
        served = client.get_peer_certificate()
        assert served is not None
        self.assertEqual(
            served.to_cryptography().public_bytes(Encoding.PEM), renewed.certificatePEM
        )
        _, oldClient = handshake(old, self.client())
        self.assertNotEqual(
            oldClient.get_peer_certificate().get_serial_number(),  # type: ignore[union-attr]
            client.get_peer_certificate().get_serial_number(),  # type: ignore[union-attr]
        )

    def test_badFileKeepsOld(self) -> None:
        """
        A reload whose key no longer matches the certificate keeps the
        running context, and the log says why.
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        before = self.factory.tls
        _, other = self.authority.issue("other").write(self.directory, "other")
        shutil.copy(other, self.key)
        os.chmod(self.key, 0o600)
        self.factory.reconfigure(self.configuration)
        self.assertIs(self.factory.tls, before)
        self.assertIs(self.factory.config, self.configuration)
        errors = [event for event in logged if "TLS for clients unchanged" in event["log_format"]]
        self.assertEqual(len(errors), 1)
        self.assertIn("does not match", errors[0]["error"])

    def test_turnedOff(self) -> None:
        """
        A reload that turns TLS off gives new clients none.
        """
        self.factory.reconfigure(dataclasses.replace(self.configuration, main=MainSettings()))
        self.assertIsNone(self.factory.tls)

    def test_expiredStillLoads(self) -> None:
        """
        An expired server certificate is pgtwist's operator's problem, as
        with PostgreSQL: it loads (clients refuse it).
        """
        past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
        self.authority.issue(
            "localhost", notBefore=past - datetime.timedelta(days=2), notAfter=past
        ).write(self.directory, "server")
        self.factory.reconfigure(self.configuration)
        tls = self.factory.tls
        assert tls is not None
        with self.assertRaises(SSL.Error) as caught:
            handshake(tls.serverConnectionForTLS(None), self.client())
        self.assertIn("certificate verify failed", str(caught.exception))
