"""
Tests for L{pgtwist.net.servertls} and the SSLRequest exchange of
L{pgtwist.net.backend.BackendProtocol} and of cancel requests: which byte
does what in each mode, bytes smuggled after C{S}, the client's error when
verification fails, and contexts built again on reload.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import tempfile
from typing import Any

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.app.bootstrap import loadPlugins
from pgtwist.auth._scram import ScramServer, makeSecret
from pgtwist.config.model import ServerSettings
from pgtwist.net.backend import (
    CB_NO_TLS,
    CB_NOT_BOUND,
    CB_NOT_OFFERED,
    CB_NOT_SUPPORTED,
    BackendError,
    BackendProtocol,
)
from pgtwist.net.cancel import _CancelSender
from pgtwist.net.servertls import (
    SSL_REQUEST,
    ServerTlsContext,
    ServerTlsContexts,
    TlsReport,
    handshakeError,
    usesTls,
)
from pgtwist.testing.certs import CertificateAuthority
from pgtwist.wire import codec, constants
from pgtwist.wire.framing import StartupFramer
from pgtwist.wire.messages import (
    AuthenticationRequest,
    BackendKeyData,
    PasswordMessage,
    ReadyForQuery,
)
from tests.unit.test_auth_scram import _certificate


def server(sslmode: str, host: str = "127.0.0.1", **kwargs: Any) -> ServerSettings:
    """
    A server section with C{sslmode}.
    """
    return ServerSettings("primary", host, 5432, True, sslmode=sslmode, **kwargs)


class TlsStringTransport(StringTransport):
    """
    A C{StringTransport} that records C{startTLS}.

    @ivar creator: What C{startTLS} was given, or C{None}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.creator: Any = None

    def startTLS(self, creator: Any) -> None:
        """
        Remember C{creator}.
        """
        self.creator = creator


class SslRequestTests(SynchronousTestCase):
    """
    The SSLRequest a backend connection starts with, and the answer.
    """

    def connect(self, settings: ServerSettings) -> tuple[BackendProtocol, TlsStringTransport]:
        """
        A backend connected to C{settings} over a L{TlsStringTransport}.
        """
        methods, _ = loadPlugins()
        backend = BackendProtocol(("db", "alice"), settings, None, list(methods.values()), Clock())
        transport = TlsStringTransport()
        self.logins[backend] = backend.whenLoggedIn()
        backend.makeConnection(transport)
        return backend, transport

    def setUp(self) -> None:
        self.logins: dict[BackendProtocol, Deferred[BackendProtocol]] = {}

    def failure(self, backend: BackendProtocol) -> BackendError:
        """
        The L{BackendError} the login failed with.
        """
        return self.failureResultOf(self.logins[backend], BackendError).value

    def test_disableSendsStartup(self) -> None:
        """
        With C{disable} the StartupMessage comes first, as before.
        """
        backend, transport = self.connect(server("disable"))
        (frame,) = StartupFramer().feed(transport.value())
        self.assertNotEqual(transport.value(), SSL_REQUEST)
        self.assertFalse(backend.tls)

    def test_unixSocketNeverTls(self) -> None:
        """
        A unix socket is never encrypted, whatever the mode (as in libpq).
        """
        self.assertFalse(usesTls(server("require", host="/run/postgresql")))
        self.assertTrue(usesTls(server("prefer")))
        self.assertFalse(usesTls(server("disable")))

    def test_preferPlaintextOnN(self) -> None:
        """
        C{prefer} sends SSLRequest, and on C{N} goes on in plaintext.
        """
        backend, transport = self.connect(server("prefer"))
        self.assertEqual(transport.value(), SSL_REQUEST)
        transport.clear()
        backend.dataReceived(b"N")
        StartupFramer().feed(transport.value())
        self.assertIn(b"alice", transport.value())
        self.assertIsNone(transport.creator)
        self.assertFalse(backend.tls)

    def test_requireRefusesN(self) -> None:
        """
        Every mode from C{require} refuses C{N} with libpq's words.
        """
        for mode in ("require", "verify-ca", "verify-full"):
            backend, transport = self.connect(server(mode))
            backend.dataReceived(b"N")
            error = self.failure(backend)
            self.assertEqual(error.error.code, constants.SQLSTATE_CONNECTION_FAILURE)
            self.assertIn('could not connect to server "primary"', error.error.message)
            self.assertIn("server does not support SSL, but SSL was required", error.error.message)
            self.assertTrue(transport.disconnecting)

    def test_sStartsTls(self) -> None:
        """
        On C{S} the connection starts TLS, then sends the StartupMessage
        through it.
        """
        backend, transport = self.connect(server("require"))
        transport.clear()
        written: list[bytes] = []
        transport.write = written.append  # type: ignore[method-assign]
        backend.dataReceived(b"S")
        self.assertIsNotNone(transport.creator)
        self.assertTrue(backend.tls)
        self.assertIn(b"alice", b"".join(written))
        # Later writes (queries, relayed bytes) go through the transport's
        # write, so that TLS encrypts them.
        backend.write(b"Q")
        self.assertEqual(written[-1], b"Q")

    def test_bytesAfterS(self) -> None:
        """
        Bytes after C{S}, before the handshake, are refused (CVE-2021-23222):
        no TLS is started and no StartupMessage sent.
        """
        backend, transport = self.connect(server("require"))
        transport.clear()
        backend.dataReceived(b"SR\x00\x00\x00\x08\x00\x00\x00\x00")
        error = self.failure(backend)
        self.assertEqual(error.error.code, constants.SQLSTATE_PROTOCOL_VIOLATION)
        self.assertIn("unexpected bytes after its answer to SSLRequest", error.error.message)
        self.assertIsNone(transport.creator)
        self.assertEqual(transport.value(), b"")

    def test_bytesAfterN(self) -> None:
        """
        So are bytes after C{N}.
        """
        backend, transport = self.connect(server("prefer"))
        backend.dataReceived(b"NR")
        self.assertEqual(self.failure(backend).error.code, constants.SQLSTATE_PROTOCOL_VIOLATION)

    def test_otherAnswer(self) -> None:
        """
        Any other answer (an old server's ErrorResponse) is refused.
        """
        backend, transport = self.connect(server("prefer"))
        backend.dataReceived(b"E")
        self.assertIn("invalid response to SSL", self.failure(backend).error.message)

    def test_handshakeFailure(self) -> None:
        """
        A handshake that fails reaches the client as a FATAL naming the
        server and OpenSSL's reason; a verification problem is named.
        """
        backend, transport = self.connect(server("require"))
        backend.dataReceived(b"S")
        assert backend._tlsReport is not None
        backend._tlsReport.problem = "certificate has expired (certificate 'x', depth 0)"
        error = SSL.Error([("SSL routines", "", "certificate verify failed")])
        backend.connectionLost(Failure(error))
        message = self.failure(backend).error.message
        self.assertEqual(
            message,
            'could not connect to server "primary": certificate verify failed: '
            "certificate has expired (certificate 'x', depth 0)",
        )

    def test_handshakeAlert(self) -> None:
        """
        An alert from the server (a client certificate it refused) is named.
        """
        backend, transport = self.connect(server("require"))
        backend.dataReceived(b"S")
        backend.connectionLost(Failure(SSL.Error([("SSL routines", "", "tlsv1 alert unknown ca")])))
        self.assertIn("SSL error: tlsv1 alert unknown ca", self.failure(backend).error.message)

    def test_scramPlus(self) -> None:
        """
        Over TLS, a PostgreSQL offering SCRAM-SHA-256-PLUS is logged into
        with it, bound to the certificate the server presented
        (C{tls-server-end-point}: SHA-256 of the DER for this certificate).
        """
        settings = server("require")
        methods, _ = loadPlugins()
        backend = BackendProtocol(
            ("db", "alice"), settings, "secret", list(methods.values()), Clock()
        )
        transport = TlsStringTransport()
        self.logins[backend] = backend.whenLoggedIn()
        backend.makeConnection(transport)
        backend.dataReceived(b"S")
        issued = CertificateAuthority().issue("localhost", hosts=["localhost"])
        certificate = crypto.load_certificate(crypto.FILETYPE_PEM, issued.certificatePEM)
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, certificate)
        transport.getPeerCertificate = lambda: certificate  # type: ignore[attr-defined]
        transport.clear()
        mechanisms = codec.encodeSASLMechanisms(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])
        backend.dataReceived(codec.encode(AuthenticationRequest(constants.AUTH_SASL, mechanisms)))
        # The ScramServer checks the binding: a wrong one raises here.
        self.assertIsNotNone(_plusExchange(self, backend, transport, der))

    def test_noTlsNoCertificate(self) -> None:
        """
        A plaintext backend has no server certificate.
        """
        backend, transport = self.connect(server("disable"))
        self.assertIsNone(backend.serverCertificate)


def _edwardsCertificate() -> crypto.X509:
    """
    A self-signed Ed25519 certificate: its signature names no hash, so it
    gives no C{tls-server-end-point} binding.
    """
    return crypto.load_certificate(crypto.FILETYPE_ASN1, _certificate(None, edwards=True))


def _plusExchange(
    case: SynchronousTestCase, backend: BackendProtocol, transport: StringTransport, der: bytes
) -> bytes:
    """
    Play PostgreSQL's side of a SCRAM-SHA-256-PLUS exchange bound to the
    certificate C{der}, from the client's initial response in C{transport}
    (which must choose PLUS) to its final message; return the server-final
    message (the ScramServer checks the binding: a wrong one raises).
    """
    scram = ScramServer(
        makeSecret("secret", b"0123456789abcdef"),
        "servernonce",
        channelBinding=hashlib.sha256(der).digest(),
        plus=True,
    )
    initial = PasswordMessage(transport.value()[5:])
    mechanism, payload = codec.parseSASLInitialResponse(initial.data)
    case.assertEqual(mechanism, "SCRAM-SHA-256-PLUS")
    assert payload is not None
    serverFirst = scram.clientFirst(payload)
    transport.clear()
    backend.dataReceived(
        codec.encode(AuthenticationRequest(constants.AUTH_SASL_CONTINUE, serverFirst))
    )
    return scram.clientFinal(transport.value()[5:])


class ChannelBindingTests(SynchronousTestCase):
    """
    A server section's C{channel_binding}: whether the backend login binds
    SCRAM to the server's TLS certificate, and C{require} refusing every
    login that is not so bound, before any password is sent.
    """

    def setUp(self) -> None:
        issued = CertificateAuthority().issue("localhost", hosts=["localhost"])
        self.certificate = crypto.load_certificate(crypto.FILETYPE_PEM, issued.certificatePEM)
        self.der = crypto.dump_certificate(crypto.FILETYPE_ASN1, self.certificate)

    def connect(
        self, binding: str, sslmode: str = "require", certificate: Any = None
    ) -> tuple[BackendProtocol, TlsStringTransport, Deferred[BackendProtocol]]:
        """
        A backend to a server with C{channel_binding = binding}, past its
        SSLRequest: TLS with C{certificate} (the CA-issued one by default)
        unless C{sslmode} is C{disable}; its StartupMessage cleared.
        """
        methods, _ = loadPlugins()
        settings = server(sslmode, channelBinding=binding)
        backend = BackendProtocol(
            ("db", "alice"), settings, "secret", list(methods.values()), Clock()
        )
        transport = TlsStringTransport()
        login = backend.whenLoggedIn()
        backend.makeConnection(transport)
        if sslmode != "disable":
            backend.dataReceived(b"S")
            peer = self.certificate if certificate is None else certificate
            transport.getPeerCertificate = lambda: peer  # type: ignore[attr-defined]
        transport.clear()
        return backend, transport, login

    def sasl(self, backend: BackendProtocol, *mechanisms: str) -> None:
        """
        PostgreSQL asks for SASL with C{mechanisms}.
        """
        body = codec.encodeSASLMechanisms(mechanisms)
        backend.dataReceived(codec.encode(AuthenticationRequest(constants.AUTH_SASL, body)))

    def mechanism(self, transport: TlsStringTransport) -> str:
        """
        The SASL mechanism of the SASLInitialResponse the backend sent.
        """
        initial = PasswordMessage(transport.value()[5:])
        mechanism, _ = codec.parseSASLInitialResponse(initial.data)
        return mechanism

    def refused(
        self,
        login: Deferred[BackendProtocol],
        transport: TlsStringTransport,
        reason: str,
    ) -> None:
        """
        The login failed with C{reason} in libpq's words, naming the
        server, with nothing (no password) sent, and the connection closed.
        """
        error = self.failureResultOf(login, BackendError).value.error
        self.assertEqual(error.code, constants.SQLSTATE_CONNECTION_FAILURE)
        self.assertEqual(error.message, f'could not connect to server "primary": {reason}')
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)

    def test_preferBinds(self) -> None:
        """
        C{prefer} (the default) uses SCRAM-SHA-256-PLUS when offered over
        TLS, and plain SCRAM-SHA-256 when not.
        """
        self.assertEqual(server("require").channelBinding, "prefer")
        backend, transport, login = self.connect("prefer")
        self.sasl(backend, "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")
        self.assertEqual(self.mechanism(transport), "SCRAM-SHA-256-PLUS")
        self.assertTrue(backend.channelBound)
        backend, transport, login = self.connect("prefer")
        self.sasl(backend, "SCRAM-SHA-256")
        self.assertEqual(self.mechanism(transport), "SCRAM-SHA-256")
        self.assertFalse(backend.channelBound)
        self.assertNoResult(login)

    def test_disableNeverBinds(self) -> None:
        """
        C{disable} uses plain SCRAM-SHA-256 even when PLUS is offered over
        TLS, with the GS2 flag C{n} (the client does not support binding),
        so that PostgreSQL sees no downgrade.
        """
        backend, transport, login = self.connect("disable")
        self.sasl(backend, "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")
        initial = PasswordMessage(transport.value()[5:])
        mechanism, payload = codec.parseSASLInitialResponse(initial.data)
        self.assertEqual(mechanism, "SCRAM-SHA-256")
        assert payload is not None
        self.assertTrue(payload.startswith(b"n,,"))
        self.assertFalse(backend.channelBound)
        self.assertNoResult(login)

    def test_requireBinds(self) -> None:
        """
        C{require} logs in with SCRAM-SHA-256-PLUS, bound to the server's
        certificate, and the login completes.
        """
        backend, transport, login = self.connect("require")
        self.sasl(backend, "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")
        serverFinal = _plusExchange(self, backend, transport, self.der)
        backend.dataReceived(
            codec.encode(AuthenticationRequest(constants.AUTH_SASL_FINAL, serverFinal))
            + codec.encode(AuthenticationRequest(constants.AUTH_OK))
            + codec.encode(ReadyForQuery(b"I"))
        )
        self.assertIs(self.successResultOf(login), backend)
        self.assertTrue(backend.channelBound)

    def test_requireNoPlusOffered(self) -> None:
        """
        C{require} refuses a server that offers no SCRAM-SHA-256-PLUS.
        """
        backend, transport, login = self.connect("require")
        self.sasl(backend, "SCRAM-SHA-256")
        self.refused(login, transport, CB_NOT_OFFERED)

    def test_requireWithoutTls(self) -> None:
        """
        C{require} over a plaintext connection refuses SASL (even one that
        claims PLUS) as libpq does.
        """
        backend, transport, login = self.connect("require", sslmode="disable")
        self.sasl(backend, "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")
        self.refused(login, transport, CB_NO_TLS)

    def test_requireUnusableCertificate(self) -> None:
        """
        C{require} refuses a certificate whose signature names no hash
        (Ed25519), with libpq's reason.
        """
        backend, transport, login = self.connect("require", certificate=_edwardsCertificate())
        self.sasl(backend, "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")
        self.refused(
            login,
            transport,
            "channel binding required, but could not determine server certificate signature "
            "algorithm",
        )

    def test_requirePasswordRequests(self) -> None:
        """
        C{require} answers no md5 or cleartext request: the password (or
        its hash) never leaves.
        """
        for request in (
            AuthenticationRequest(constants.AUTH_MD5_PASSWORD, b"salt"),
            AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD),
        ):
            backend, transport, login = self.connect("require")
            backend.dataReceived(codec.encode(request))
            self.refused(login, transport, CB_NOT_SUPPORTED)

    def test_requireTrust(self) -> None:
        """
        C{require} refuses a server that admits the login with no
        authentication at all (trust, cert), even with the rest of the
        login in the same read.
        """
        backend, transport, login = self.connect("require")
        backend.dataReceived(
            codec.encode(AuthenticationRequest(constants.AUTH_OK))
            + codec.encode(BackendKeyData(7, 8))
            + codec.encode(ReadyForQuery(b"I"))
        )
        self.refused(login, transport, CB_NOT_BOUND)

    def test_requireUnboundOk(self) -> None:
        """
        An AuthenticationOk that comes while the exchange is not bound is
        refused; C{prefer} accepts a plain SCRAM exchange's (the exchange
        itself refuses one that skips SASLFinal).
        """
        backend, transport, login = self.connect("require")
        self.sasl(backend, "SCRAM-SHA-256-PLUS")
        self.assertTrue(backend.channelBound)
        backend.channelBound = False
        transport.clear()
        backend.dataReceived(codec.encode(AuthenticationRequest(constants.AUTH_OK)))
        self.refused(login, transport, CB_NOT_BOUND)

    def test_requireLogged(self) -> None:
        """
        The refusal is logged with the server's name.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        backend, transport, login = self.connect("require")
        self.sasl(backend, "SCRAM-SHA-256")
        self.failureResultOf(login, BackendError)
        (event,) = [e for e in events if e.get("reason") == CB_NOT_OFFERED]
        self.assertEqual(event["server"], "primary")


class CancelTests(SynchronousTestCase):
    """
    Cancel requests go with the server's mode too.
    """

    def send(self, mode: str, answer: bytes) -> TlsStringTransport:
        """
        A cancel toward a server in C{mode} answering C{answer}.
        """
        sender = _CancelSender(b"cancel-packet", server(mode))
        transport = TlsStringTransport()
        sender.makeConnection(transport)
        self.assertEqual(transport.value(), SSL_REQUEST)
        transport.clear()
        sender.dataReceived(answer)
        return transport

    def test_plaintextWithoutTls(self) -> None:
        """
        With C{disable}, the packet goes at once.
        """
        sender = _CancelSender(b"cancel-packet", server("disable"))
        transport = TlsStringTransport()
        sender.makeConnection(transport)
        self.assertEqual(transport.value(), b"cancel-packet")

    def test_insideTls(self) -> None:
        """
        On C{S} the packet goes after C{startTLS}.
        """
        transport = self.send("require", b"S")
        self.assertIsNotNone(transport.creator)
        self.assertEqual(transport.value(), b"cancel-packet")

    def test_preferN(self) -> None:
        """
        On C{N}, C{prefer} sends it in plaintext; C{require} does not send it.
        """
        self.assertEqual(self.send("prefer", b"N").value(), b"cancel-packet")
        transport = self.send("require", b"N")
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)


class ContextTests(SynchronousTestCase):
    """
    L{ServerTlsContext}: files, verification, and what the error says.
    """

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="pgtwist-servertls-")
        self.addCleanup(shutil.rmtree, self.directory)
        self.ca = CertificateAuthority()
        self.caFile = self.ca.writeCertificate(self.directory)

    def x509(self, hosts: list[str], **kwargs: Any) -> Any:
        """
        A server certificate for C{hosts}, as OpenSSL hands it to the
        verify callback.
        """
        issued = self.ca.issue(hosts[0], hosts=hosts, **kwargs)
        return ssl.Certificate.loadPEM(issued.certificatePEM).original

    def test_verifyFullHostName(self) -> None:
        """
        C{verify-full} checks the section's host (a name or an address)
        against the leaf certificate with service-identity.
        """
        context = ServerTlsContext(
            server("verify-full", host="db.example.com", tlsCaFile=self.caFile)
        )
        report = TlsReport()
        self.assertTrue(context.verify(report, self.x509(["db.example.com"]), 0, 0, 1))
        self.assertFalse(context.verify(report, self.x509(["other.example.com"]), 0, 0, 1))
        self.assertEqual(
            report.problem, 'server certificate does not match host name "db.example.com"'
        )
        address = ServerTlsContext(server("verify-full", tlsCaFile=self.caFile))
        self.assertTrue(address.verify(TlsReport(), self.x509(["127.0.0.1"]), 0, 0, 1))
        self.assertFalse(address.verify(TlsReport(), self.x509(["localhost"]), 0, 0, 1))

    def test_verifyCaIgnoresHostName(self) -> None:
        """
        C{verify-ca} takes OpenSSL's verdict on the chain, and no host name.
        """
        context = ServerTlsContext(
            server("verify-ca", host="db.example.com", tlsCaFile=self.caFile)
        )
        report = TlsReport()
        self.assertTrue(context.verify(report, self.x509(["elsewhere"]), 0, 0, 1))
        past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
        expired = self.x509(["elsewhere"], notBefore=past, notAfter=past)
        self.assertFalse(context.verify(report, expired, 10, 0, 0))
        self.assertEqual(
            report.problem, "certificate has expired (certificate 'elsewhere', depth 0)"
        )

    def test_requireWithoutCa(self) -> None:
        """
        C{require} without a CA file verifies nothing; with one, it checks
        the chain as libpq does when a root certificate exists. C{prefer}
        never does.
        """
        self.assertFalse(ServerTlsContext(server("require")).verifyChain)
        self.assertTrue(ServerTlsContext(server("require", tlsCaFile=self.caFile)).verifyChain)
        self.assertFalse(ServerTlsContext(server("prefer", tlsCaFile=self.caFile)).verifyChain)
        self.assertTrue(ServerTlsContext(server("require")).verify(TlsReport(), None, 10, 0, 0))

    def test_badFiles(self) -> None:
        """
        A missing or unusable file is a L{ValueError} naming it.
        """
        missing = os.path.join(self.directory, "none.pem")
        error = self.assertRaises(
            ValueError, ServerTlsContext, server("verify-ca", tlsCaFile=missing)
        )
        self.assertIn(missing, str(error))
        garbage = os.path.join(self.directory, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("not a certificate")
        error = self.assertRaises(
            ValueError, ServerTlsContext, server("verify-ca", tlsCaFile=garbage)
        )
        self.assertIn(garbage, str(error))

    def test_clientCertificate(self) -> None:
        """
        A client certificate and its key are loaded; a key that is not the
        certificate's is refused.
        """
        issued = self.ca.issue("alice", client=True)
        cert, key = issued.write(self.directory, "alice")
        ServerTlsContext(server("require", tlsCertFile=cert, tlsKeyFile=key))
        _, otherKey = self.ca.issue("bob", client=True).write(self.directory, "bob")
        error = self.assertRaises(
            ValueError, ServerTlsContext, server("require", tlsCertFile=cert, tlsKeyFile=otherKey)
        )
        self.assertIn(cert, str(error))

    def test_protocolsAndCiphers(self) -> None:
        """
        Protocol ranges and cipher lists are accepted; an unknown cipher
        list is refused.
        """
        ServerTlsContext(server("require", tlsProtocols=("tlsv1.3",)))
        ServerTlsContext(server("require", tlsProtocols=("tlsv1.2",), tlsCiphers="HIGH:!aNULL"))
        self.assertRaises(ValueError, ServerTlsContext, server("require", tlsCiphers="NOPE"))

    def test_errorWithoutReport(self) -> None:
        """
        Without a verification problem, the error names what OpenSSL said,
        or that the server closed during the handshake.
        """
        error = handshakeError(server("require"), TlsReport(), ConnectionError("gone"))
        self.assertEqual(error.code, constants.SQLSTATE_CONNECTION_FAILURE)
        self.assertIn("closed during the handshake", error.message)


class ReloadTests(SynchronousTestCase):
    """
    L{ServerTlsContexts}: contexts built again on reload.
    """

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="pgtwist-servertls-")
        self.addCleanup(shutil.rmtree, self.directory)
        self.caFile = CertificateAuthority().writeCertificate(self.directory)
        self.contexts = ServerTlsContexts()
        self.server = server("verify-ca", tlsCaFile=self.caFile)

    def test_newFilesOnReload(self) -> None:
        """
        A reload builds a new context: new connections use it.
        """
        first = self.contexts.contextFor(self.server)
        self.assertIs(self.contexts.contextFor(self.server), first)
        self.assertEqual(self.contexts.reload((self.server,)), [])
        self.assertIsNot(self.contexts.contextFor(self.server), first)

    def test_badFileKeepsOld(self) -> None:
        """
        A reload whose new file cannot be used keeps the old context and
        says why.
        """
        first = self.contexts.contextFor(self.server)
        with open(self.caFile, "w") as f:
            f.write("garbage")
        problems = self.contexts.reload((self.server,))
        self.assertEqual(len(problems), 1)
        self.assertIn(self.caFile, problems[0])
        self.assertIn("keeping the certificates and keys loaded before", problems[0])
        self.assertIs(self.contexts.contextFor(self.server), first)
        self.flushLoggedErrors()

    def test_badFileNewMode(self) -> None:
        """
        With a new mode, the old context is not kept: connections fail
        with the reason rather than use weaker settings.
        """
        self.contexts.contextFor(server("require", tlsCaFile=self.caFile))
        with open(self.caFile, "w") as f:
            f.write("garbage")
        problems = self.contexts.reload((self.server,))
        self.assertNotIn("keeping", problems[0])
        self.assertRaises(ValueError, self.contexts.contextFor, self.server)

    def test_plaintextServersSkipped(self) -> None:
        """
        Servers without TLS get no context.
        """
        self.assertEqual(self.contexts.reload((server("disable"),)), [])
