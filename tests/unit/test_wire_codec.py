"""
Tests for L{pgtwist.wire.codec}: every message round-trips, malformed bodies
raise L{ProtocolViolation} with PostgreSQL's SQLSTATEs.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.wire import codec, constants, errors
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.messages import (
    AuthenticationRequest,
    BackendKeyData,
    Bind,
    BindComplete,
    CancelRequest,
    Close,
    CloseComplete,
    CommandComplete,
    DataRow,
    Describe,
    EmptyQueryResponse,
    ErrorResponse,
    Execute,
    FieldDescription,
    Flush,
    GSSENCRequest,
    Message,
    NegotiateProtocolVersion,
    NoData,
    NoticeResponse,
    ParameterStatus,
    Parse,
    ParseComplete,
    PasswordMessage,
    Query,
    ReadyForQuery,
    RowDescription,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
)

FRONTEND: list[Message] = [
    Query("SELECT 1; SELECT 'é'"),
    Terminate(),
    Sync(),
    Flush(),
    PasswordMessage(b"md5abc\x00"),
    Parse("s1", "SELECT $1::int", (23,)),
    Parse("", "SELECT 1"),
    Bind("p", "s1", (0, 1), (b"1", None, b""), (1,)),
    Describe(b"S", "s1"),
    Execute("p", 10),
    Close(b"P", "p"),
]

BACKEND: list[Message] = [
    AuthenticationRequest(constants.AUTH_OK),
    AuthenticationRequest(constants.AUTH_MD5_PASSWORD, b"\x01\x02\x03\x04"),
    ParameterStatus("client_encoding", "UTF8"),
    BackendKeyData(1234, -5678),
    ReadyForQuery(constants.TRANSACTION_IN_BLOCK),
    errors.fatal("28P01", 'password authentication failed for user "x"', detail="d"),
    NoticeResponse(((b"S", "WARNING"), (b"M", "careful"))),
    CommandComplete("SELECT 1"),
    RowDescription((FieldDescription("a", 1, 2, 23, 4, -1, 0), FieldDescription("b"))),
    DataRow((b"1", None, b"")),
    EmptyQueryResponse(),
    ParseComplete(),
    BindComplete(),
    CloseComplete(),
    NoData(),
    NegotiateProtocolVersion(0, ("_pq_.x",)),
]


class RoundTripTests(SynchronousTestCase):
    """
    C{decode(encode(m)) == m} for every message type.
    """

    def test_frontendMessages(self) -> None:
        """
        Every typed frontend message survives encode then decode.
        """
        for message in FRONTEND:
            wire = codec.encode(message)
            self.assertEqual(wire[0:1], message.type)
            self.assertEqual(codec.INT32.unpack_from(wire, 1)[0], len(wire) - 1)
            self.assertEqual(codec.decodeFrontend(wire[0:1], wire[5:]), message)

    def test_backendMessages(self) -> None:
        """
        Every backend message survives encode then decode.
        """
        for message in BACKEND:
            wire = codec.encode(message)
            self.assertEqual(codec.decodeBackend(wire[0:1], wire[5:]), message)

    def test_startupPackets(self) -> None:
        """
        The untyped packets round-trip through L{codec.decodeStartupPacket}.
        """
        for message in [
            StartupMessage({"user": "u", "database": "d", "options": "-c a=b"}),
            SSLRequest(),
            GSSENCRequest(),
            CancelRequest(42, -7),
        ]:
            wire = codec.encode(message)
            self.assertEqual(codec.INT32.unpack_from(wire, 0)[0], len(wire))
            self.assertEqual(codec.decodeStartupPacket(wire[4:]), message)

    def test_encodeAll(self) -> None:
        """
        L{codec.encodeAll} is the messages' wire forms one after the other,
        from a list or any iterable, and nothing for none.
        """
        messages = [
            AuthenticationRequest(constants.AUTH_OK),
            ReadyForQuery(constants.TRANSACTION_IN_BLOCK),
        ]
        expected = b"".join(codec.encode(m) for m in messages)
        self.assertEqual(codec.encodeAll(messages), expected)
        self.assertEqual(codec.encodeAll(iter(messages)), expected)
        self.assertEqual(codec.encodeAll(()), b"")

    def test_nonUtf8TextRoundTrips(self) -> None:
        """
        Text in another client encoding (LATIN1 bytes) is kept byte for byte.
        """
        body = b"SELECT '\xe9'\x00"
        message = codec.decodeFrontend(b"Q", body)
        self.assertEqual(codec.encode(message)[5:], body)


class DecodeErrorTests(SynchronousTestCase):
    """
    Malformed input raises L{ProtocolViolation} with PostgreSQL's wording.
    """

    def test_protocolVersion2(self) -> None:
        """
        A v2 StartupMessage is refused as PostgreSQL refuses it (0A000).
        """
        with self.assertRaises(ProtocolViolation) as caught:
            codec.decodeStartupPacket(codec.INT32.pack(2 << 16) + b"user\x00u\x00\x00")
        self.assertEqual(caught.exception.sqlstate, constants.SQLSTATE_FEATURE_NOT_SUPPORTED)
        self.assertIn("unsupported frontend protocol 2.0", caught.exception.message)

    def test_startupWithoutTerminator(self) -> None:
        """
        Parameters must end with an empty name.
        """
        self.assertRaises(
            ProtocolViolation,
            codec.decodeStartupPacket,
            codec.INT32.pack(constants.PROTOCOL_3_0) + b"user\x00u\x00",
        )

    def test_truncatedBody(self) -> None:
        """
        A body shorter than its fields is a protocol violation, not an IndexError.
        """
        self.assertRaises(ProtocolViolation, codec.decodeBackend, b"K", b"\x00\x00")
        self.assertRaises(ProtocolViolation, codec.decodeFrontend, b"Q", b"no terminator")

    def test_trailingBytes(self) -> None:
        """
        Bytes after the last field are refused (PostgreSQL's pq_getmsgend).
        """
        self.assertRaises(ProtocolViolation, codec.decodeFrontend, b"S", b"x")

    def test_unknownType(self) -> None:
        """
        An unknown message type is a protocol violation.
        """
        self.assertRaises(ProtocolViolation, codec.decodeFrontend, b"!", b"")

    def test_violationToErrorResponse(self) -> None:
        """
        A violation becomes a FATAL ErrorResponse with its SQLSTATE.
        """
        error = ProtocolViolation("bad").toErrorResponse()
        self.assertIsInstance(error, ErrorResponse)
        self.assertEqual(error.severity, "FATAL")
        self.assertEqual(error.code, "08P01")
        self.assertEqual(error.message, "bad")


def _referenceStartup(body: bytes) -> dict[str, str]:
    """
    The parameters of a version 3.0 startup packet, read one string at a time
    with L{codec.Reader} as pgtwist did before it split the packet once.
    """
    parameters: dict[str, str] = {}
    reader = codec.Reader(body)
    while True:
        name = reader.cstring()
        if not name:
            break
        parameters[name] = reader.cstring()
    if not reader.atEnd():
        raise ProtocolViolation("invalid startup packet layout: expected terminator as last byte")
    return parameters


class StartupPacketTests(SynchronousTestCase):
    """
    L{codec.decodeStartupPacket} reads parameters exactly as reading them one
    C{cstring} at a time does, malformed packets included.
    """

    bodies = [
        b"",
        b"\x00",
        b"\x00\x00",
        b"\x00x",
        b"user",
        b"user\x00",
        b"user\x00u",
        b"user\x00u\x00",
        b"user\x00u\x00\x00",
        b"user\x00u\x00\x00\x00",
        b"user\x00u\x00\x00x",
        b"user\x00\x00\x00",
        b"user\x00\x00",
        b"user\x00a\x00user\x00b\x00\x00",
        b"user\x00u\x00database\x00d\x00options\x00-c a=b\x00\x00",
        b"us\xe9r\x00\xff\xfe\x00\x00",
        b"user\x00u\x00database\x00\x00",
        b"user\x00u\x00database\x00",
    ]

    def test_sameAsReadingStringByString(self) -> None:
        """
        Every body gives the same parameters, or the same violation, as the
        string-by-string reading.
        """
        prefix = codec.INT32.pack(constants.PROTOCOL_3_0)
        for body in self.bodies:
            try:
                expected: object = _referenceStartup(body)
            except ProtocolViolation as e:
                expected = ("violation", e.message, e.sqlstate)
            try:
                message = codec.decodeStartupPacket(prefix + body)
            except ProtocolViolation as e:
                got: object = ("violation", e.message, e.sqlstate)
            else:
                assert isinstance(message, StartupMessage)
                self.assertEqual(message.protocol, constants.PROTOCOL_3_0)
                got = message.parameters
                assert isinstance(expected, dict)
                self.assertEqual(list(got), list(expected), body)
            self.assertEqual(got, expected, body)

    def test_lastValueWins(self) -> None:
        """
        A repeated parameter keeps its last value, as PostgreSQL does.
        """
        message = codec.decodeStartupPacket(
            codec.INT32.pack(constants.PROTOCOL_3_0) + b"user\x00a\x00user\x00b\x00\x00"
        )
        assert isinstance(message, StartupMessage)
        self.assertEqual(message.parameters, {"user": "b"})


class SaslHelperTests(SynchronousTestCase):
    """
    The helpers that read and write SASL bodies.
    """

    def test_initialResponse(self) -> None:
        """
        A SASLInitialResponse body parses back into mechanism and payload.
        """
        message = codec.encodeSASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abc")
        self.assertEqual(
            codec.parseSASLInitialResponse(message.data), ("SCRAM-SHA-256", b"n,,n=,r=abc")
        )

    def test_mechanisms(self) -> None:
        """
        The mechanism list round-trips.
        """
        body = codec.encodeSASLMechanisms(["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"])
        self.assertEqual(body, b"SCRAM-SHA-256\x00SCRAM-SHA-256-PLUS\x00\x00")
        self.assertEqual(codec.parseSASLMechanisms(body), ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"])
        self.assertEqual(
            codec.encodeSASLMechanisms(iter(["SCRAM-SHA-256"])), b"SCRAM-SHA-256\x00\x00"
        )

    def test_password(self) -> None:
        """
        A cleartext password body is a C string.
        """
        self.assertEqual(codec.parsePassword(b"secret\x00"), "secret")
        self.assertRaises(ProtocolViolation, codec.parsePassword, b"secret")
