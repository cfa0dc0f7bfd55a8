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
import warnings

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from twisted.internet._newtls import ConnectionMixin, ServerMixin
from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.protocols import tls as twistedTLS
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from pgtwist.app.bootstrap import loadPlugins
from pgtwist.config.errors import ConfigError
from pgtwist.config.model import ConfigPaths, Configuration, MainSettings, ServerSettings
from pgtwist.net.cancel import CancelRegistry
from pgtwist.net.frontend import FrontendFactory
from pgtwist.net.tls import ALPN_PROTOCOL, alpnNegotiated, clientTLS, describeConnection, eagerTLS
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

    def test_contextCompleteBeforeUse(self) -> None:
        """
        Nothing changes the context once a Connection was made of it:
        pyOpenSSL 25 checks a cipher list on a throwaway Connection, which
        marks the context used, and deprecates any change after that (later
        versions refuse it). Here the cipher list makes a Connection as
        pyOpenSSL 25 does; on a pyOpenSSL that refuses a change, any change
        after it fails the build.
        """
        uses: list[str] = []

        class UsedByCipherList(SSL.Context):
            def set_cipher_list(self, cipher_list: bytes) -> None:
                super().set_cipher_list(cipher_list)
                SSL.Connection(self, None)
                uses.append("set_cipher_list")

        self.patch(SSL, "Context", UsedByCipherList)
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            tls = clientTLS(self.main(tlsCaFile=self.caFile))
        assert tls is not None
        self.assertEqual(uses, ["set_cipher_list"])
        server, _ = handshake(tls.serverConnectionForTLS(None), self.client([ALPN_PROTOCOL]))
        self.assertTrue(alpnNegotiated(server))

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


class FakeSocket:
    """
    A non-blocking socket that takes at most C{room} bytes in all until
    given more.
    """

    def __init__(self) -> None:
        self.room = 1 << 30
        self.sent = bytearray()
        self.sends = 0

    def send(self, data: bytes) -> int:
        """
        Take what fits, or raise C{BlockingIOError} as a full socket does.
        """
        self.sends += 1
        if not self.room:
            raise BlockingIOError()
        taken = bytes(data[: self.room])
        self.sent += taken
        self.room -= len(taken)
        return len(taken)


class SocketConnection(ConnectionMixin, ServerMixin, FileDescriptor):
    """
    A server connection built as Twisted's C{tcp.Server} is (its C{startTLS},
    buffers and producers), over a L{FakeSocket} and a memory reactor.
    """

    def __init__(self, reactor: MemoryReactorClock, protocol: Protocol) -> None:
        FileDescriptor.__init__(self, reactor)
        self.socket = FakeSocket()
        self.protocol = protocol
        self.connected = 1
        self.lostReason: Failure | None = None
        protocol.makeConnection(self)

    def writeSomeData(self, data: bytes) -> int:
        """
        What C{tcp.Connection} does: send what the socket takes.
        """
        try:
            return self.socket.send(data)
        except BlockingIOError:
            return 0

    def getHost(self) -> IPv4Address:
        """
        This end.
        """
        return IPv4Address("TCP", "127.0.0.1", 6432)

    def getPeer(self) -> IPv4Address:
        """
        The client.
        """
        return IPv4Address("TCP", "127.0.0.1", 50000)

    def connectionLost(self, reason: Failure) -> None:
        """
        What the reactor and C{tcp.Connection} do on the way out.
        """
        self.lostReason = reason
        FileDescriptor.connectionLost(self, reason)
        self.protocol.connectionLost(reason)

    def writable(self) -> None:
        """
        The reactor found the socket writable: flush, and close when that
        was the last thing to do.
        """
        if self in self.reactor.getWriters():
            result = self.doWrite()
            if result is not None:
                self.connectionLost(Failure(result))


class Received(Protocol):
    """
    The application protocol: keeps what it reads.
    """

    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        """
        Keep C{data}.
        """
        self.data += data


@implementer(IPushProducer)
class Producer:
    """
    A streaming producer that records whether it is paused.
    """

    def __init__(self) -> None:
        self.paused = False

    def pauseProducing(self) -> None:
        """
        Paused.
        """
        self.paused = True

    def resumeProducing(self) -> None:
        """
        Resumed.
        """
        self.paused = False

    def stopProducing(self) -> None:
        """
        Nothing to stop.
        """


class EagerTLSTests(TLSFilesTestCase):
    """
    L{eagerTLS} on a connection that started TLS as pgtwist's do: writes are
    encrypted and sent in the same call, with no C{callLater(0)} and no
    extra reactor turn, and whatever the socket does not take waits in the
    connection's buffer, in order, with producers paused and resumed as in
    plaintext.
    """

    def setUp(self) -> None:
        super().setUp()
        self.clock = MemoryReactorClock()
        # The clock BufferingTLSTransport's aggregator schedules its flushes on.
        self.patch(twistedTLS, "_get_default_clock", lambda: self.clock)
        tls = clientTLS(self.main())
        assert tls is not None
        self.application = Received()
        self.connection = SocketConnection(self.clock, self.application)
        self.connection.startTLS(tls)
        self.tlsClient = self.client(alpn=[ALPN_PROTOCOL])
        self.tlsClient.set_connect_state()
        self.received = b""
        self.closedByServer = False

    def pump(self) -> None:
        """
        Move bytes both ways until nothing moves, as the reactor and the
        client would, decrypting what reaches the client.
        """
        for _ in range(1000):
            moved = False
            self.connection.writable()
            if self.connection.socket.sent:
                self.tlsClient.bio_write(bytes(self.connection.socket.sent))
                self.connection.socket.sent.clear()
                moved = True
            try:
                self.tlsClient.do_handshake()
                while True:
                    self.received += self.tlsClient.recv(65536)
            except SSL.WantReadError:
                pass
            except SSL.ZeroReturnError:
                if not self.closedByServer:
                    # Answer the server's close_notify with ours, as libpq does.
                    self.closedByServer = True
                    self.tlsClient.shutdown()
            try:
                toServer = self.tlsClient.bio_read(65536)
            except SSL.WantReadError:
                toServer = b""
            if toServer and self.connection.connected:
                self.connection.protocol.dataReceived(toServer)
                moved = True
            if not moved:
                return
        raise AssertionError("the connection never settled")

    def test_notTwistedTLS(self) -> None:
        """
        A transport that is not Twisted's TLS over a socket keeps its own
        C{write}.
        """
        transport = StringTransport()
        self.assertEqual(eagerTLS(transport), transport.write)

    def test_sentAtOnce(self) -> None:
        """
        After the handshake a write leaves in the same call: nothing is
        scheduled, nothing waits for the reactor, one C{send()}.
        """
        write = eagerTLS(self.connection)
        self.pump()
        sends = self.connection.socket.sends
        write(b"reply")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertNotIn(self.connection, self.clock.getWriters())
        self.assertEqual(self.connection.socket.sends, sends + 1)
        self.assertTrue(self.connection.socket.sent)
        self.pump()
        self.assertEqual(self.received, b"reply")

    def test_transportWrites(self) -> None:
        """
        The connection's own C{write} and C{writeSequence} are unbuffered
        too, so they cannot be overtaken or overtake.
        """
        write = eagerTLS(self.connection)
        self.pump()
        self.connection.write(b"one ")
        write(b"two ")
        self.connection.writeSequence([b"three ", b"four"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.pump()
        self.assertEqual(self.received, b"one two three four")

    def test_aggregatedNotOvertaken(self) -> None:
        """
        Bytes the TLS layer's aggregator held when L{eagerTLS} took over are
        sent first, and its scheduled flush is cancelled.
        """
        self.pump()
        self.connection.write(b"held ")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        write = eagerTLS(self.connection)
        write(b"then")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.pump()
        self.assertEqual(self.received, b"held then")

    def test_withoutBufferingTransport(self) -> None:
        """
        A Twisted whose C{startTLS} puts a plain C{TLSMemoryBIOProtocol}
        under the protocol (no aggregator, before 22.8) is made eager too.
        """
        self.patch(twistedTLS.TLSMemoryBIOFactory, "protocol", twistedTLS.TLSMemoryBIOProtocol)
        tls = clientTLS(self.main())
        assert tls is not None
        self.application = Received()
        self.connection = SocketConnection(self.clock, self.application)
        self.connection.startTLS(tls)
        self.assertNotIsInstance(self.connection.protocol, twistedTLS.BufferingTLSTransport)
        write = eagerTLS(self.connection)
        self.pump()
        sends = self.connection.socket.sends
        write(b"reply")
        self.assertEqual(self.connection.socket.sends, sends + 1)
        self.pump()
        self.assertEqual(self.received, b"reply")

    def test_writeBeforeHandshake(self) -> None:
        """
        A write before the handshake is done waits in the TLS layer and is
        sent once it is.
        """
        write = eagerTLS(self.connection)
        write(b"early")
        self.pump()
        self.assertEqual(self.received, b"early")

    def test_fullSocketKeepsOrder(self) -> None:
        """
        Records the socket does not take wait in the connection's buffer,
        and later writes queue behind them until the reactor flushes it.
        """
        write = eagerTLS(self.connection)
        self.pump()
        socket = self.connection.socket
        socket.room = 1000
        chunks = [bytes([65 + i]) * 30000 for i in range(5)]
        for chunk in chunks:
            write(chunk)
        self.assertIn(self.connection, self.clock.getWriters())
        socket.room = 1 << 30
        self.pump()
        self.assertEqual(self.received, b"".join(chunks))
        self.assertNotIn(self.connection, self.clock.getWriters())

    def test_backpressure(self) -> None:
        """
        A producer registered through the TLS layer is paused when the
        connection's buffer fills, and resumed when it drains, as in
        plaintext.
        """
        write = eagerTLS(self.connection)
        self.pump()
        producer = Producer()
        self.connection.registerProducer(producer, True)
        self.connection.socket.room = 0
        write(b"x" * 100_000)
        self.assertTrue(producer.paused)
        self.connection.socket.room = 1 << 30
        self.pump()
        self.assertFalse(producer.paused)
        self.assertEqual(self.received, b"x" * 100_000)

    def test_loseConnection(self) -> None:
        """
        C{loseConnection} still ends with a TLS shutdown, after everything
        written, including what the socket had not taken yet.
        """
        write = eagerTLS(self.connection)
        self.pump()
        self.connection.socket.room = 10
        write(b"y" * 50_000)
        write(b"last")
        self.connection.loseConnection()
        self.assertIsNone(self.connection.lostReason)
        self.connection.socket.room = 1 << 30
        self.pump()
        self.assertEqual(self.received, b"y" * 50_000 + b"last")
        self.assertTrue(self.closedByServer)
        self.assertIsNotNone(self.connection.lostReason)

    def test_writeAfterClose(self) -> None:
        """
        Writes after the connection is lost are dropped, as Twisted's TLS
        layer drops them.
        """
        write = eagerTLS(self.connection)
        self.pump()
        self.connection.loseConnection()
        self.pump()
        sent = self.connection.socket.sends
        write(b"too late")
        self.assertEqual(self.connection.socket.sends, sent)
