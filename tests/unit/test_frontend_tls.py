"""
Tests for TLS in L{pgtwist.net.frontend.FrontendProtocol}: what it asks of
the transport (C{startTLS}), when, and what the TLS flag changes (HBA,
C{require}), with a transport that records instead of encrypting. Real
handshakes are in C{tests/unit/test_net_tls.py} and the integration tests.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.testing import StringTransport

from pgtwist.auth._scram import SCRAM_SHA_256, SCRAM_SHA_256_PLUS, ScramClient, tlsServerEndPoint
from pgtwist.config.model import Configuration, HbaRule
from pgtwist.net.eager import eagerWrite
from pgtwist.net.frontend import FrontendProtocol, FrontendState
from pgtwist.net.tls import ALPN_PROTOCOL
from pgtwist.testing.certs import CertificateAuthority
from pgtwist.wire import codec, constants
from pgtwist.wire.messages import (
    AuthenticationRequest,
    ErrorResponse,
    GSSENCRequest,
    PasswordMessage,
    SSLRequest,
    StartupMessage,
)
from tests.unit.test_frontend import FrontendTestCase, makeConfiguration

CLIENT_HELLO = bytes.fromhex("160301020001") + b"\x00" * 16


class FakeHandle:
    """
    What the frontend reads of an C{OpenSSL.SSL.Connection}.
    """

    def __init__(self, alpn: bytes = b"") -> None:
        self.alpn = alpn
        #: The client certificate the handshake verified, if any.
        self.peerCertificate: Any = None
        #: The certificate pgtwist presents (a C{cryptography} certificate).
        self.certificate: Any = None

    def get_certificate(self, as_cryptography: bool = False) -> Any:
        """
        pgtwist's own certificate.
        """
        return self.certificate

    def get_alpn_proto_negotiated(self) -> bytes:
        """
        The ALPN protocol agreed on.
        """
        return self.alpn

    def get_protocol_version_name(self) -> str:
        """
        The protocol version.
        """
        return "TLSv1.3"

    def get_cipher_name(self) -> str:
        """
        The cipher.
        """
        return "TLS_AES_256_GCM_SHA384"

    def get_peer_certificate(self, as_cryptography: bool = False) -> Any:
        """
        The client certificate (none unless a test set one).
        """
        return self.peerCertificate


class TLSLayer:
    """
    Stands for Twisted's TLS protocol: records the bytes given to it.
    """

    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        """
        Keep C{data}.
        """
        self.received += data


class FakeTLSTransport(StringTransport):
    """
    A C{StringTransport} with C{startTLS}: it records the context factory
    and what was written before and after.
    """

    def __init__(self, peerAddress: Any) -> None:
        super().__init__(peerAddress=peerAddress)
        self.tls: Any = None
        self.beforeTLS = b""
        self.protocol: Any = None
        self.handle = FakeHandle()

    def startTLS(self, contextFactory: Any) -> None:
        """
        Remember the context factory; later writes are "encrypted".
        """
        self.tls = contextFactory
        self.beforeTLS = self.value()
        self.clear()
        self.protocol = TLSLayer()

    def getHandle(self) -> FakeHandle:
        """
        The TLS connection.
        """
        return self.handle

    def unregisterProducer(self) -> None:
        """
        As Twisted's TLS layer: nothing to do without a producer.
        """
        self.producer = None
        self.streaming = None


class TLSFrontendTestCase(FrontendTestCase):
    """
    A factory with TLS on, from throwaway certificate files.
    """

    mode = "prefer"
    hbaType = "host"

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="pgtwist-tls-")
        self.addCleanup(shutil.rmtree, self.directory)
        authority = CertificateAuthority()
        issued = authority.issue("localhost", hosts=("localhost",))
        self.certificate, self.key = issued.write(self.directory, "server")
        self.ownCertificate = x509.load_pem_x509_certificate(issued.certificatePEM)
        super().setUp()
        self.factory.reconfigure(self.tlsConfiguration(self.mode, self.hbaType))
        self.protocol = self.connect()

    def tlsConfiguration(self, mode: str, hbaType: str) -> Configuration:
        """
        The test configuration with TLS in C{mode} and one HBA rule of C{hbaType}.
        """
        config = makeConfiguration(
            self.method,
            clientTlsSslmode=mode,
            tlsCertFile=self.certificate,
            tlsKeyFile=self.key,
        )
        return dataclasses.replace(
            config, hba=(HbaRule(hbaType, "all", "all", None, self.method, "hba.conf", 1),)
        )

    def connect(self, address: object = None) -> FrontendProtocol:
        """
        A new client on a L{FakeTLSTransport}.
        """
        addr = address or IPv4Address("TCP", "127.0.0.1", 50000)
        protocol = self.factory.buildProtocol(addr)  # type: ignore[arg-type]
        self.transport = FakeTLSTransport(addr)
        self.transport.handle.certificate = self.ownCertificate
        protocol.makeConnection(self.transport)
        return protocol

    def negotiateTLS(self, direct: bool = False) -> FakeTLSTransport:
        """
        Start TLS (SSLRequest or direct) and complete the "handshake".
        """
        transport = self.transport
        assert isinstance(transport, FakeTLSTransport)
        if direct:
            transport.handle.alpn = ALPN_PROTOCOL
            self.protocol.dataReceived(CLIENT_HELLO)
        else:
            self.protocol.dataReceived(codec.encode(SSLRequest()))
        self.protocol.handshakeCompleted()
        return transport


class NegotiationTests(TLSFrontendTestCase):
    """
    SSLRequest, direct TLS and what they do to the transport.
    """

    def test_sslRequest(self) -> None:
        """
        An SSLRequest is answered C{S} in plaintext, then TLS starts with
        the factory's context; later writes go through the TLS layer (the
        transport's C{write}, never a direct send).
        """
        transport = self.negotiateTLS()
        self.assertEqual(transport.beforeTLS, b"S")
        self.assertIs(transport.tls, self.factory.tls)
        self.assertEqual(self.protocol.write, transport.write)
        self.assertTrue(self.protocol.encrypted)
        self.assertEqual(self.protocol.tlsDescription, "TLSv1.3/TLS_AES_256_GCM_SHA384")
        self.startup()
        self.assertEqual(self.replies(), [AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)])

    def test_plaintextWriteUnchanged(self) -> None:
        """
        A client that does not ask for TLS keeps plaintext writes: straight
        to its transport with L{eagerWrite}, never through a TLS writer.
        """
        self.startup()
        write: Any = self.protocol.write
        self.assertIs(write.func, eagerWrite)
        self.assertEqual(write.args, (self.protocol.transport,))
        self.assertFalse(self.protocol.encrypted)
        self.assertEqual(self.replies(), [AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)])

    def test_smuggledPlaintext(self) -> None:
        """
        Bytes behind the SSLRequest are refused in plaintext, and TLS never
        starts.
        """
        self.protocol.dataReceived(codec.encode(SSLRequest()) + codec.encode(StartupMessage({})))
        self.assertFatal("08P01", "received unencrypted data after SSL request")
        assert isinstance(self.transport, FakeTLSTransport)
        self.assertIsNone(self.transport.tls)

    def test_gssStillRefused(self) -> None:
        """
        A GSSENCRequest still gets C{N}.
        """
        self.protocol.dataReceived(codec.encode(GSSENCRequest()))
        self.assertEqual(self.transport.value(), b"N")

    def test_unixSocket(self) -> None:
        """
        A unix-socket client is answered C{N}, as by PostgreSQL.
        """
        self.protocol = self.connect(UNIXAddress("/tmp/.s.PGSQL.6432"))
        self.protocol.dataReceived(codec.encode(SSLRequest()))
        self.assertEqual(self.transport.value(), b"N")
        self.assertIsNone(self.protocol.clientTLS)

    def test_direct(self) -> None:
        """
        A ClientHello as the first bytes starts TLS at once, handing those
        bytes to the TLS layer; with ALPN C{postgresql} the client goes on.
        """
        transport = self.negotiateTLS(direct=True)
        self.assertEqual(transport.beforeTLS, b"")
        self.assertEqual(transport.protocol.received, CLIENT_HELLO)
        self.assertTrue(self.protocol.encrypted)
        self.startup()
        self.assertEqual(self.replies(), [AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)])

    def test_directWithoutAlpn(self) -> None:
        """
        Direct TLS without ALPN C{postgresql} is closed once the handshake
        is done, without a message (PostgreSQL 17).
        """
        self.protocol.dataReceived(CLIENT_HELLO)
        self.protocol.handshakeCompleted()
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.protocol.encrypted)
        self.assertEqual(self.transport.value(), b"")

    def test_directWithTLSOff(self) -> None:
        """
        With TLS off, a ClientHello is closed without a reply.
        """
        self.factory.reconfigure(makeConfiguration(self.method))
        self.protocol = self.connect()
        self.protocol.dataReceived(CLIENT_HELLO)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.transport.value(), b"")
        assert isinstance(self.transport, FakeTLSTransport)
        self.assertIsNone(self.transport.tls)

    def test_handshakeTimeout(self) -> None:
        """
        A handshake that never completes is closed by
        C{authentication_timeout}.
        """
        self.protocol.dataReceived(codec.encode(SSLRequest()))
        self.clock.advance(self.factory.config.main.authenticationTimeout)
        self.assertTrue(self.transport.disconnecting)
        self.assertIs(self.protocol.state, FrontendState.CLOSED)

    def test_closeUnregistersProducer(self) -> None:
        """
        Closing a TLS client unregisters the producer (a backend's throttle)
        first: Twisted's TLS layer does not close while one is registered.
        """
        transport = self.negotiateTLS()
        transport.registerProducer(object(), True)
        self.protocol.fail(None)
        self.assertIsNone(transport.producer)
        self.assertTrue(transport.disconnecting)

    def test_reloadKeepsConnected(self) -> None:
        """
        A client keeps the TLS it connected with across a reload.
        """
        before = self.protocol.clientTLS
        self.factory.reconfigure(self.tlsConfiguration("require", "host"))
        self.assertIsNot(self.factory.tls, before)
        self.assertIs(self.protocol.clientTLS, before)


class RequireTests(TLSFrontendTestCase):
    """
    C{client_tls_sslmode = require}.
    """

    mode = "require"

    def test_plaintextRefused(self) -> None:
        """
        A TCP client without TLS gets FATAL 28000 "SSL required" after its
        StartupMessage.
        """
        self.startup()
        self.assertFatal("28000", "SSL required")

    def test_tlsAccepted(self) -> None:
        """
        A TLS client is let through.
        """
        self.negotiateTLS()
        self.startup()
        self.assertEqual(self.replies(), [AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)])

    def test_unixSocket(self) -> None:
        """
        Unix-socket clients are not held to it (they cannot have TLS).
        """
        self.protocol = self.connect(UNIXAddress("/tmp/.s.PGSQL.6432"))
        self.startup()
        self.assertEqual(self.replies(), [AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)])


class HostsslTests(TLSFrontendTestCase):
    """
    C{hostssl} rules match TLS clients only.
    """

    hbaType = "hostssl"

    def test_tls(self) -> None:
        """
        A TLS client matches.
        """
        self.negotiateTLS()
        self.startup()
        self.assertEqual(self.replies(), [AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)])

    def test_plaintext(self) -> None:
        """
        A plaintext client does not, with PostgreSQL's message.
        """
        self.startup()
        self.assertFatal(
            "28000",
            'no pg_hba.conf entry for host "127.0.0.1", user "alice", database "db", no encryption',
        )


class HostnosslTests(TLSFrontendTestCase):
    """
    C{hostnossl} rules match plaintext clients only.
    """

    hbaType = "hostnossl"

    def test_tls(self) -> None:
        """
        A TLS client does not match; the message says it used TLS.
        """
        self.negotiateTLS()
        self.startup()
        self.assertFatal(
            "28000",
            'no pg_hba.conf entry for host "127.0.0.1", user "alice", database "db", '
            "SSL encryption",
        )

    def test_plaintext(self) -> None:
        """
        A plaintext client matches.
        """
        self.startup()
        self.assertEqual(self.replies(), [AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)])


class ClientCertificateTestCase(TLSFrontendTestCase):
    """
    A C{hostssl} rule that needs a client certificate: method C{cert}, or
    C{clientcert} on another method.
    """

    hbaType = "hostssl"
    clientcert = "verify-full"
    authority = CertificateAuthority()

    def tlsConfiguration(self, mode: str, hbaType: str) -> Configuration:
        """
        The test configuration, its rule with L{clientcert}.
        """
        config = super().tlsConfiguration(mode, hbaType)
        (rule,) = config.hba
        return dataclasses.replace(
            config, hba=(dataclasses.replace(rule, clientcert=self.clientcert),)
        )

    def negotiateWith(self, commonName: str | None) -> None:
        """
        Complete TLS with a verified client certificate for C{commonName}
        (none when C{None}), then send the StartupMessage for alice.
        """
        transport = self.transport
        assert isinstance(transport, FakeTLSTransport)
        if commonName is not None:
            issued = self.authority.issue(commonName, client=True)
            transport.handle.peerCertificate = x509.load_pem_x509_certificate(issued.certificatePEM)
        self.negotiateTLS()
        self.startup()

    def sendPassword(self, password: bytes = b"wonderland") -> None:
        """
        Answer the cleartext password request.
        """
        self.assertEqual(self.replies(), [AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD)])
        self.protocol.dataReceived(codec.encode(PasswordMessage(password + b"\x00")))


class CertMethodTests(ClientCertificateTestCase):
    """
    HBA method C{cert}.
    """

    method = "cert"

    def test_matchingCertificate(self) -> None:
        """
        A client whose verified certificate's CN is its user name logs in
        with no password asked.
        """
        self.negotiateWith("alice")
        replies = self.replies()
        self.assertEqual(replies[0], AuthenticationRequest(constants.AUTH_OK))
        self.assertIs(self.protocol.state, FrontendState.READY)

    def test_otherName(self) -> None:
        """
        A certificate for another user gets PostgreSQL's 28000.
        """
        self.negotiateWith("bob")
        self.assertFatal("28000", 'certificate authentication failed for user "alice"')
        self.assertEqual(self.pool.acquired, [])

    def test_noCertificate(self) -> None:
        """
        A TLS client that sent no certificate is refused before any method
        runs.
        """
        self.negotiateWith(None)
        self.assertFatal("28000", "connection requires a valid client certificate")

    def test_unknownUser(self) -> None:
        """
        As with C{trust}, a user pgtwist has no entry for is refused unless
        C{allow_unknown_users}, even with a matching certificate.
        """
        config = self.tlsConfiguration(self.mode, self.hbaType)
        main = dataclasses.replace(config.main, allowUnknownUsers=False)
        self.factory.reconfigure(dataclasses.replace(config, main=main))
        self.protocol = self.connect()
        transport = self.transport
        assert isinstance(transport, FakeTLSTransport)
        issued = self.authority.issue("mallory", client=True)
        transport.handle.peerCertificate = x509.load_pem_x509_certificate(issued.certificatePEM)
        self.negotiateTLS()
        self.startup(user="mallory")
        self.assertFatal("28000", 'role "mallory" does not exist')


class ClientcertVerifyFullTests(ClientCertificateTestCase):
    """
    C{clientcert=verify-full} on a password method: a certificate is
    required, the password step runs, then the CN must be the user name.
    """

    def test_matchingCertificate(self) -> None:
        """
        The right certificate and password log in.
        """
        self.negotiateWith("alice")
        self.sendPassword()
        self.assertEqual(self.replies()[0], AuthenticationRequest(constants.AUTH_OK))

    def test_otherName(self) -> None:
        """
        A certificate for another user is refused after the password, with
        the password methods' 28P01, as PostgreSQL does.
        """
        self.negotiateWith("bob")
        self.sendPassword()
        self.assertFatal("28P01", 'password authentication failed for user "alice"')
        self.assertEqual(self.pool.acquired, [])

    def test_noCertificate(self) -> None:
        """
        Without a certificate no password is asked.
        """
        self.negotiateWith(None)
        self.assertFatal("28000", "connection requires a valid client certificate")

    def test_console(self) -> None:
        """
        The admin console goes through the same rule: no certificate, no
        password asked.
        """
        transport = self.transport
        assert isinstance(transport, FakeTLSTransport)
        self.negotiateTLS()
        self.startup(database="pgbouncer")
        self.assertFatal("28000", "connection requires a valid client certificate")

    def test_wrongPassword(self) -> None:
        """
        The certificate does not replace the password.
        """
        self.negotiateWith("alice")
        self.sendPassword(b"guess")
        self.assertFatal("28P01", 'password authentication failed for user "alice"')


class ClientcertVerifyFullTrustTests(ClientCertificateTestCase):
    """
    C{clientcert=verify-full} on C{trust}: PostgreSQL's C{trust} wording.
    """

    method = "trust"

    def test_otherName(self) -> None:
        """
        A certificate for another user is refused.
        """
        self.negotiateWith("bob")
        self.assertFatal("28000", '"trust" authentication failed for user "alice"')

    def test_matchingCertificate(self) -> None:
        """
        The right certificate logs in.
        """
        self.negotiateWith("alice")
        self.assertEqual(self.replies()[0], AuthenticationRequest(constants.AUTH_OK))


class ClientcertVerifyCaTests(ClientCertificateTestCase):
    """
    C{clientcert=verify-ca}: any verified certificate, whatever its CN.
    """

    clientcert = "verify-ca"

    def test_anyName(self) -> None:
        """
        A certificate for another user is enough, with the password.
        """
        self.negotiateWith("bob")
        self.sendPassword()
        self.assertEqual(self.replies()[0], AuthenticationRequest(constants.AUTH_OK))

    def test_noCertificate(self) -> None:
        """
        Without a certificate the client is refused.
        """
        self.negotiateWith(None)
        self.assertFatal("28000", "connection requires a valid client certificate")


class ChannelBindingTests(TLSFrontendTestCase):
    """
    SCRAM-SHA-256-PLUS toward TLS clients, bound to the certificate
    pgtwist presented on the connection.
    """

    method = "scram-sha-256"

    def mechanisms(self) -> list[str]:
        """
        Start up as alice; the SASL mechanisms pgtwist offers.
        """
        self.startup()
        (request,) = self.replies()
        assert isinstance(request, AuthenticationRequest)
        self.assertEqual(request.code, constants.AUTH_SASL)
        return codec.parseSASLMechanisms(request.data)

    def login(self, client: ScramClient, mechanism: str) -> list[object]:
        """
        Run C{client}'s exchange with C{mechanism} after the mechanisms
        were offered; what pgtwist sent after the client-final-message.
        """
        self.protocol.dataReceived(
            codec.encode(codec.encodeSASLInitialResponse(mechanism, client.clientFirst()))
        )
        replies = self.replies()
        serverFirst = replies[0]
        if not isinstance(serverFirst, AuthenticationRequest):
            return list(replies)
        self.protocol.dataReceived(
            codec.encode(PasswordMessage(client.serverFirst(serverFirst.data)))
        )
        return list(self.replies())

    def binding(self) -> bytes:
        """
        The C{tls-server-end-point} data of pgtwist's certificate.
        """
        return tlsServerEndPoint(self.ownCertificate.public_bytes(Encoding.DER))

    def test_plaintextOffersScramOnly(self) -> None:
        """
        Without TLS only SCRAM-SHA-256 is offered.
        """
        self.assertEqual(self.mechanisms(), [SCRAM_SHA_256])

    def test_tlsOffersPlus(self) -> None:
        """
        Over TLS SCRAM-SHA-256-PLUS is offered first, as PostgreSQL does.
        """
        self.negotiateTLS()
        self.assertEqual(self.mechanisms(), [SCRAM_SHA_256_PLUS, SCRAM_SHA_256])

    def test_plusLogin(self) -> None:
        """
        A client bound to the certificate pgtwist presented logs in with
        PLUS (libpq's C{channel_binding=require}).
        """
        self.negotiateTLS()
        self.mechanisms()
        client = ScramClient("wonderland", "clientnonce", channelBinding=self.binding(), plus=True)
        replies = self.login(client, SCRAM_SHA_256_PLUS)
        final = replies[0]
        assert isinstance(final, AuthenticationRequest)
        self.assertEqual(final.code, constants.AUTH_SASL_FINAL)
        client.serverFinal(final.data)
        self.assertTrue(client.verified)
        self.assertIn(AuthenticationRequest(constants.AUTH_OK), replies)

    def test_otherCertificateRefused(self) -> None:
        """
        A client whose TLS ends at another certificate (a man in the
        middle's) is refused even with the right password.
        """
        self.negotiateTLS()
        self.mechanisms()
        client = ScramClient("wonderland", "clientnonce", channelBinding=b"\x02" * 32, plus=True)
        (error,) = self.login(client, SCRAM_SHA_256_PLUS)
        assert isinstance(error, ErrorResponse)
        self.assertEqual(
            (error.severity, error.code, error.message),
            ("FATAL", "28000", "SCRAM channel binding check failed"),
        )
        self.assertTrue(self.transport.disconnecting)

    def test_downgradeRefused(self) -> None:
        """
        A TLS client that says it supports binding but thinks pgtwist does
        not (C{y}: PLUS was removed from the offer on the way) is refused.
        """
        self.negotiateTLS()
        self.mechanisms()
        client = ScramClient("wonderland", "clientnonce", channelBinding=self.binding())
        replies = self.login(client, SCRAM_SHA_256)
        self.assertEqual(len(replies), 1)
        error = replies[0]
        assert isinstance(error, ErrorResponse)
        self.assertEqual(
            (error.severity, error.code, error.message),
            ("FATAL", "08P01", "SCRAM channel binding negotiation error"),
        )

    def test_unknownUserLooksTheSame(self) -> None:
        """
        An unknown user gets the same offer and the same PLUS exchange,
        failing as a wrong password does.
        """
        self.negotiateTLS()
        self.startup(user="mallory")
        (request,) = self.replies()
        assert isinstance(request, AuthenticationRequest)
        self.assertEqual(
            codec.parseSASLMechanisms(request.data), [SCRAM_SHA_256_PLUS, SCRAM_SHA_256]
        )
        client = ScramClient("guess", "clientnonce", channelBinding=self.binding(), plus=True)
        (error,) = self.login(client, SCRAM_SHA_256_PLUS)
        assert isinstance(error, ErrorResponse)
        self.assertEqual(
            (error.code, error.message),
            ("28P01", 'password authentication failed for user "mallory"'),
        )
