"""
Tests for L{pgtwist.net.startup}: the negotiation before a StartupMessage and
where it sends the client, without a transport.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.net.startup import (
    Cancel,
    Refused,
    Reject,
    Reply,
    StartTLS,
    Startup,
    StartupNegotiation,
    ToConsole,
    ToPool,
    negotiateProtocol,
    routeStartup,
)
from pgtwist.wire import codec, constants
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.messages import (
    CancelRequest,
    GSSENCRequest,
    Message,
    NegotiateProtocolVersion,
    PasswordMessage,
    SSLRequest,
    StartupMessage,
)

STARTUP = StartupMessage({"user": "alice", "database": "app"})


def feedBytewise(negotiation: StartupNegotiation, data: bytes) -> list[object]:
    """
    Feed C{data} one byte at a time and collect every event.
    """
    events: list[object] = []
    for index in range(len(data)):
        events.extend(negotiation.receiveData(data[index : index + 1]))
    return events


class StartupNegotiationTests(SynchronousTestCase):
    """
    L{StartupNegotiation} answers the negotiation requests and ends with a
    StartupMessage or a CancelRequest.
    """

    def test_startupBytewise(self) -> None:
        """
        A StartupMessage fed one byte at a time gives one L{Startup} event,
        after its last byte only.
        """
        negotiation = StartupNegotiation()
        events = feedBytewise(negotiation, codec.encode(STARTUP))
        self.assertEqual(events, [Startup(STARTUP, b"")])
        self.assertTrue(negotiation.finished)

    def test_restAfterStartup(self) -> None:
        """
        Bytes that follow the StartupMessage in the same read come with it,
        for the authentication phase.
        """
        password = codec.encode(PasswordMessage(b"secret\x00"))
        negotiation = StartupNegotiation()
        events = negotiation.receiveData(codec.encode(STARTUP) + password)
        self.assertEqual(events, [Startup(STARTUP, password)])

    def test_sslAndGssRefused(self) -> None:
        """
        SSLRequest and GSSENCRequest are each answered C{N}; the client may
        then send its StartupMessage.
        """
        negotiation = StartupNegotiation()
        self.assertEqual(negotiation.receiveData(codec.encode(GSSENCRequest())), [Reply(b"N")])
        self.assertEqual(feedBytewise(negotiation, codec.encode(SSLRequest())), [Reply(b"N")])
        self.assertFalse(negotiation.finished)
        self.assertEqual(negotiation.receiveData(codec.encode(STARTUP)), [Startup(STARTUP, b"")])

    def test_secondRequestRefused(self) -> None:
        """
        PostgreSQL answers each request once: a second SSLRequest (or
        GSSENCRequest), even after the other one, gets its FATAL C{0A000},
        the request code read as a protocol version.
        """
        ssl, gss = SSLRequest(), GSSENCRequest()
        cases: list[tuple[list[Message], Message, str]] = [
            ([ssl], ssl, "1234.5679"),
            ([gss], gss, "1234.5680"),
            ([ssl, gss], ssl, "1234.5679"),
            ([gss, ssl], gss, "1234.5680"),
        ]
        for answered, second, version in cases:
            negotiation = StartupNegotiation()
            for request in answered:
                self.assertEqual(negotiation.receiveData(codec.encode(request)), [Reply(b"N")])
            with self.assertRaises(ProtocolViolation) as caught:
                negotiation.receiveData(codec.encode(second))
            self.assertEqual(
                (caught.exception.sqlstate, caught.exception.message),
                ("0A000", f"unsupported frontend protocol {version}: server supports 3.0 to 3.0"),
            )

    def test_dataAfterSSLRequest(self) -> None:
        """
        Bytes that arrive with an SSLRequest, before its answer, are refused
        (CVE-2021-23214: they may be a man in the middle's).
        """
        negotiation = StartupNegotiation()
        with self.assertRaises(ProtocolViolation) as caught:
            negotiation.receiveData(codec.encode(SSLRequest()) + codec.encode(STARTUP))
        self.assertEqual(caught.exception.message, "received unencrypted data after SSL request")

    def test_dataAfterGSSENCRequest(self) -> None:
        """
        The same holds for a GSSENCRequest.
        """
        negotiation = StartupNegotiation()
        with self.assertRaises(ProtocolViolation) as caught:
            negotiation.receiveData(codec.encode(GSSENCRequest()) + b"\x00")
        self.assertEqual(
            caught.exception.message,
            "received unencrypted data after GSSAPI encryption request",
        )

    def test_cancel(self) -> None:
        """
        A CancelRequest ends the negotiation with a L{Cancel} event.
        """
        request = CancelRequest(1234, 5678)
        negotiation = StartupNegotiation()
        self.assertEqual(feedBytewise(negotiation, codec.encode(request)), [Cancel(request)])
        self.assertTrue(negotiation.finished)

    def test_badLength(self) -> None:
        """
        A length outside PostgreSQL's bounds is a protocol violation, before
        the packet's body arrives.
        """
        for length in (3, constants.MAX_STARTUP_PACKET_LENGTH + 1):
            with self.assertRaises(ProtocolViolation):
                StartupNegotiation().receiveData(length.to_bytes(4, "big"))

    def test_finished(self) -> None:
        """
        After a StartupMessage the negotiation takes no more bytes: they
        belong to the authentication phase.
        """
        negotiation = StartupNegotiation()
        negotiation.receiveData(codec.encode(STARTUP))
        self.assertRaises(ValueError, negotiation.receiveData, b"p")


#: The first bytes of a TLS 1.2/1.3 ClientHello (a handshake record).
CLIENT_HELLO = bytes.fromhex("160301020001") + b"\x00" * 16


class TLSNegotiationTests(SynchronousTestCase):
    """
    L{StartupNegotiation} with TLS offered: C{S} and L{StartTLS} for an
    SSLRequest, direct TLS recognised by its first byte.
    """

    def test_sslRequestAccepted(self) -> None:
        """
        An SSLRequest is answered C{S}, then TLS starts; the StartupMessage
        that follows (decrypted) ends the negotiation as usual.
        """
        negotiation = StartupNegotiation(tls=True)
        self.assertEqual(
            feedBytewise(negotiation, codec.encode(SSLRequest())),
            [Reply(b"S"), StartTLS(False)],
        )
        self.assertTrue(negotiation.encrypted)
        self.assertFalse(negotiation.finished)
        self.assertEqual(negotiation.receiveData(codec.encode(STARTUP)), [Startup(STARTUP, b"")])

    def test_gssStillRefused(self) -> None:
        """
        A GSSENCRequest still gets C{N} (GSSAPI encryption is not offered),
        and the client may then ask for TLS.
        """
        negotiation = StartupNegotiation(tls=True)
        self.assertEqual(negotiation.receiveData(codec.encode(GSSENCRequest())), [Reply(b"N")])
        self.assertFalse(negotiation.encrypted)
        self.assertEqual(
            negotiation.receiveData(codec.encode(SSLRequest())), [Reply(b"S"), StartTLS(False)]
        )

    def test_smuggledAfterSSLRequest(self) -> None:
        """
        Plaintext bytes behind an SSLRequest, before its C{S}, are refused
        and TLS is not started (CVE-2021-23214).
        """
        negotiation = StartupNegotiation(tls=True)
        with self.assertRaises(ProtocolViolation) as caught:
            negotiation.receiveData(codec.encode(SSLRequest()) + codec.encode(STARTUP))
        self.assertEqual(caught.exception.message, "received unencrypted data after SSL request")
        self.assertFalse(negotiation.encrypted)

    def test_secondSSLRequest(self) -> None:
        """
        An SSLRequest or GSSENCRequest inside TLS gets PostgreSQL's FATAL
        C{0A000}: once encrypted, neither is negotiated again.
        """
        for second, version in [(SSLRequest(), "1234.5679"), (GSSENCRequest(), "1234.5680")]:
            negotiation = StartupNegotiation(tls=True)
            negotiation.receiveData(codec.encode(SSLRequest()))
            with self.assertRaises(ProtocolViolation) as caught:
                negotiation.receiveData(codec.encode(second))
            self.assertEqual(
                (caught.exception.sqlstate, caught.exception.message),
                ("0A000", f"unsupported frontend protocol {version}: server supports 3.0 to 3.0"),
            )

    def test_direct(self) -> None:
        """
        A connection whose first byte is 0x16 (a TLS handshake record) is
        direct TLS: L{StartTLS} carries every byte for the TLS layer.
        """
        negotiation = StartupNegotiation(tls=True)
        self.assertEqual(negotiation.receiveData(CLIENT_HELLO), [StartTLS(True, CLIENT_HELLO)])
        self.assertTrue(negotiation.encrypted)
        self.assertEqual(negotiation.receiveData(codec.encode(STARTUP)), [Startup(STARTUP, b"")])

    def test_directFirstBytesOnly(self) -> None:
        """
        Only the connection's first byte can open direct TLS: later, 0x16 is
        read as a packet length (and refused as one).
        """
        negotiation = StartupNegotiation(tls=True)
        negotiation.receiveData(codec.encode(GSSENCRequest()))
        with self.assertRaises(ProtocolViolation) as caught:
            negotiation.receiveData(CLIENT_HELLO)
        self.assertEqual(caught.exception.message, "invalid length of startup packet")

    def test_directWithoutTLS(self) -> None:
        """
        With TLS off, a ClientHello is rejected without a reply (the client
        could not read one) and ends the negotiation.
        """
        negotiation = StartupNegotiation()
        [event] = negotiation.receiveData(CLIENT_HELLO)
        assert isinstance(event, Reject)
        self.assertIn("TLS is off", event.reason)
        self.assertTrue(negotiation.finished)

    def test_garbage(self) -> None:
        """
        Garbage that is neither a packet nor a ClientHello is a protocol
        violation, with TLS on as with TLS off.
        """
        for tls in (False, True):
            with self.assertRaises(ProtocolViolation):
                StartupNegotiation(tls=tls).receiveData(b"GET / HTTP/1.1\r\n\r\n")


class RouteStartupTests(SynchronousTestCase):
    """
    L{routeStartup} decides from the StartupMessage alone.
    """

    def test_pool(self) -> None:
        """
        A database of PostgreSQL's goes to a pool; it defaults to the user
        name, as in PostgreSQL.
        """
        self.assertEqual(routeStartup(STARTUP, False), ToPool("app", "alice"))
        self.assertEqual(
            routeStartup(StartupMessage({"user": "alice"}), False), ToPool("alice", "alice")
        )

    def test_console(self) -> None:
        """
        C{pgbouncer} and C{pgtwist} open the admin console; the console-only
        listener gives any other name C{pgbouncer}.
        """
        for name in ("pgbouncer", "pgtwist"):
            message = StartupMessage({"user": "admin", "database": name})
            self.assertEqual(routeStartup(message, False), ToConsole(name, "admin"))
            self.assertEqual(routeStartup(message, True), ToConsole(name, "admin"))
        self.assertEqual(routeStartup(STARTUP, True), ToConsole("pgbouncer", "alice"))

    def test_noUser(self) -> None:
        """
        A StartupMessage without a user name is PostgreSQL's 28000.
        """
        with self.assertRaises(ProtocolViolation) as caught:
            routeStartup(StartupMessage({"database": "app"}), False)
        self.assertEqual(caught.exception.sqlstate, constants.SQLSTATE_INVALID_AUTHORIZATION)

    def test_replication(self) -> None:
        """
        Replication connections are refused with 0A000; C{replication=false}
        and its spellings are ordinary connections.
        """
        for value in ("true", "database", "on", "1"):
            route = routeStartup(StartupMessage({"user": "u", "replication": value}), False)
            assert isinstance(route, Refused)
            self.assertEqual(
                route.error.get(constants.FIELD_CODE), constants.SQLSTATE_FEATURE_NOT_SUPPORTED
            )
        for value in ("false", "off", "no", "0", "FALSE"):
            route = routeStartup(StartupMessage({"user": "u", "replication": value}), False)
            self.assertEqual(route, ToPool("u", "u"))


class NegotiateProtocolTests(SynchronousTestCase):
    """
    L{negotiateProtocol} answers a newer minor version or C{_pq_.} options
    as PostgreSQL's C{ProcessStartupPacket} does.
    """

    def test_plain(self) -> None:
        """
        A 3.0 StartupMessage without protocol options goes on unchanged,
        with nothing to send.
        """
        self.assertEqual(negotiateProtocol(STARTUP), (STARTUP, None))

    def test_newerMinor(self) -> None:
        """
        Protocol 3.2 (libpq 18's C{max_protocol_version=3.2}) is answered with
        version 3.0's whole code, as PostgreSQL sends it, and the session
        goes on as 3.0; the decoded message carries the same values.
        """
        asked = codec.decodeStartupPacket(
            codec.encode(StartupMessage(dict(STARTUP.parameters), 3 << 16 | 2))[4:]
        )
        message, negotiation = negotiateProtocol(asked)  # type: ignore[arg-type]
        self.assertEqual(message, STARTUP)
        self.assertEqual(negotiation, NegotiateProtocolVersion(constants.PROTOCOL_3_0, ()))
        assert negotiation is not None
        self.assertEqual(
            codec.encode(negotiation), b"v\x00\x00\x00\x0c\x00\x03\x00\x00\x00\x00\x00\x00"
        )

    def test_protocolOptions(self) -> None:
        """
        C{_pq_.} options are named back as unrecognized, in the client's
        order, and dropped from the parameters (never a setting or a backend's
        startup parameter); the rest are kept.
        """
        asked = StartupMessage({"user": "alice", "_pq_.b": "1", "database": "app", "_pq_.a": "x"})
        message, negotiation = negotiateProtocol(asked)
        self.assertEqual(message, STARTUP)
        self.assertEqual(
            negotiation, NegotiateProtocolVersion(constants.PROTOCOL_3_0, ("_pq_.b", "_pq_.a"))
        )
