# -*- test-case-name: tests.unit.test_wire_codec -*-
"""
Encode messages to bytes and decode frames to messages, on demand.

C{encode(message)} returns the complete wire form (type byte, int32 length
including itself, body). C{decodeFrontend}/C{decodeBackend} turn one frame body
into a message; they are called only for the messages that drive policy.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

from pgtwist.wire import constants
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

INT16 = struct.Struct("!h")
INT32 = struct.Struct("!i")
UINT32 = struct.Struct("!I")
HEADER = struct.Struct("!ci")  # type byte + length
TWO_INT32 = struct.Struct("!ii")
THREE_INT32 = struct.Struct("!iii")
FIELD = struct.Struct("!IhIhih")  # RowDescription field after its name

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


def encodeString(value: str) -> bytes:
    """
    A NUL-terminated protocol string.
    """
    return value.encode(_ENCODING, _ERRORS) + b"\x00"


def decodeText(value: bytes) -> str:
    """
    Decode protocol text so that any byte string round-trips.
    """
    return value.decode(_ENCODING, _ERRORS)


def frame(type: bytes, body: bytes) -> bytes:
    """
    The wire form of a typed message with this body.
    """
    return type + INT32.pack(len(body) + 4) + body


class Reader:
    """
    A cursor over one message body that raises L{ProtocolViolation} instead of
    reading past its end.
    """

    __slots__ = ("_data", "_offset")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def _need(self, n: int) -> None:
        if self._offset + n > len(self._data):
            raise ProtocolViolation("invalid message format")

    def int16(self) -> int:
        """
        Read a signed 16-bit integer.
        """
        self._need(2)
        (value,) = INT16.unpack_from(self._data, self._offset)
        self._offset += 2
        return int(value)

    def int32(self) -> int:
        """
        Read a signed 32-bit integer.
        """
        self._need(4)
        (value,) = INT32.unpack_from(self._data, self._offset)
        self._offset += 4
        return int(value)

    def uint32(self) -> int:
        """
        Read an unsigned 32-bit integer (OIDs).
        """
        self._need(4)
        (value,) = UINT32.unpack_from(self._data, self._offset)
        self._offset += 4
        return int(value)

    def byte(self) -> bytes:
        """
        Read one byte.
        """
        self._need(1)
        value = self._data[self._offset : self._offset + 1]
        self._offset += 1
        return value

    def read(self, n: int) -> bytes:
        """
        Read C{n} bytes.
        """
        if n < 0:
            raise ProtocolViolation("invalid message format")
        self._need(n)
        value = self._data[self._offset : self._offset + n]
        self._offset += n
        return value

    def cstring(self) -> str:
        """
        Read a NUL-terminated string.
        """
        end = self._data.find(b"\x00", self._offset)
        if end < 0:
            raise ProtocolViolation("invalid string in message")
        value = self._data[self._offset : end]
        self._offset = end + 1
        return decodeText(value)

    def rest(self) -> bytes:
        """
        Everything not read yet.
        """
        value = self._data[self._offset :]
        self._offset = len(self._data)
        return value

    def atEnd(self) -> bool:
        """
        Whether the whole body was read.
        """
        return self._offset >= len(self._data)

    def end(self) -> None:
        """
        Insist that the whole body was read, as PostgreSQL's C{pq_getmsgend} does.
        """
        if self._offset != len(self._data):
            raise ProtocolViolation("invalid message format")


# -- encoding -----------------------------------------------------------------


def _fields(fields: Iterable[tuple[bytes, str]]) -> bytes:
    return b"".join(code + encodeString(value) for code, value in fields) + b"\x00"


def encodeStartupPacket(body: bytes) -> bytes:
    """
    The wire form of an untyped startup-phase packet.
    """
    return INT32.pack(len(body) + 4) + body


def _encodeBody(message: Message) -> bytes:  # noqa: C901 - one branch per message type
    if isinstance(message, Query):
        return encodeString(message.sql)
    if isinstance(message, PasswordMessage):
        return message.data
    if isinstance(message, (Terminate, Sync, Flush)):
        return b""
    if isinstance(message, Parse):
        return (
            encodeString(message.name)
            + encodeString(message.query)
            + INT16.pack(len(message.parameterTypes))
            + b"".join(UINT32.pack(oid) for oid in message.parameterTypes)
        )
    if isinstance(message, Bind):
        parts = [
            encodeString(message.portal),
            encodeString(message.statement),
            INT16.pack(len(message.parameterFormats)),
        ]
        parts.extend(INT16.pack(f) for f in message.parameterFormats)
        parts.append(INT16.pack(len(message.parameters)))
        for value in message.parameters:
            if value is None:
                parts.append(INT32.pack(-1))
            else:
                parts.append(INT32.pack(len(value)) + value)
        parts.append(INT16.pack(len(message.resultFormats)))
        parts.extend(INT16.pack(f) for f in message.resultFormats)
        return b"".join(parts)
    if isinstance(message, (Describe, Close)):
        return message.kind + encodeString(message.name)
    if isinstance(message, Execute):
        return encodeString(message.portal) + INT32.pack(message.maxRows)
    if isinstance(message, AuthenticationRequest):
        return INT32.pack(message.code) + message.data
    if isinstance(message, ParameterStatus):
        return encodeString(message.name) + encodeString(message.value)
    if isinstance(message, BackendKeyData):
        return TWO_INT32.pack(message.processId, message.secretKey)
    if isinstance(message, ReadyForQuery):
        return message.status
    if isinstance(message, (ErrorResponse, NoticeResponse)):
        return _fields(message.fields)
    if isinstance(message, CommandComplete):
        return encodeString(message.tag)
    if isinstance(message, RowDescription):
        parts = [INT16.pack(len(message.fields))]
        for f in message.fields:
            parts.append(encodeString(f.name))
            parts.append(
                FIELD.pack(
                    f.tableOid, f.columnNumber, f.typeOid, f.typeSize, f.typeModifier, f.formatCode
                )
            )
        return b"".join(parts)
    if isinstance(message, DataRow):
        parts = [INT16.pack(len(message.values))]
        for value in message.values:
            if value is None:
                parts.append(INT32.pack(-1))
            else:
                parts.append(INT32.pack(len(value)) + value)
        return b"".join(parts)
    if isinstance(
        message, (EmptyQueryResponse, ParseComplete, BindComplete, CloseComplete, NoData)
    ):
        return b""
    if isinstance(message, NegotiateProtocolVersion):
        return (
            INT32.pack(message.newestMinor)
            + INT32.pack(len(message.unrecognized))
            + b"".join(encodeString(o) for o in message.unrecognized)
        )
    raise TypeError(f"cannot encode {message!r}")


def encode(message: Message) -> bytes:
    """
    The complete wire form of C{message}.
    """
    if isinstance(message, StartupMessage):
        body = INT32.pack(message.protocol)
        for name, value in message.parameters.items():
            body += encodeString(name) + encodeString(value)
        return encodeStartupPacket(body + b"\x00")
    if isinstance(message, SSLRequest):
        return encodeStartupPacket(INT32.pack(constants.SSL_REQUEST_CODE))
    if isinstance(message, GSSENCRequest):
        return encodeStartupPacket(INT32.pack(constants.GSSENC_REQUEST_CODE))
    if isinstance(message, CancelRequest):
        return encodeStartupPacket(
            THREE_INT32.pack(constants.CANCEL_REQUEST_CODE, message.processId, message.secretKey)
        )
    return frame(message.type, _encodeBody(message))


def encodeAll(messages: Iterable[Message]) -> bytes:
    """
    Several messages as one byte string (one write); C{map} rather than a
    generator, whose frame is resumed once per message.
    """
    return b"".join(map(encode, messages))


# -- decoding -----------------------------------------------------------------


def decodeStartupPacket(body: bytes) -> Message:
    """
    Decode an untyped startup-phase packet (its body, after the length word).

    @raise ProtocolViolation: With PostgreSQL's wording for an unsupported
        protocol version or a malformed packet.
    """
    if len(body) < 4:
        raise ProtocolViolation("invalid length of startup packet")
    (code,) = INT32.unpack_from(body, 0)
    if code == constants.SSL_REQUEST_CODE:
        if len(body) != 4:
            raise ProtocolViolation("invalid length of startup packet")
        return SSLRequest()
    if code == constants.GSSENC_REQUEST_CODE:
        if len(body) != 4:
            raise ProtocolViolation("invalid length of startup packet")
        return GSSENCRequest()
    if code == constants.CANCEL_REQUEST_CODE:
        if len(body) != 12:
            raise ProtocolViolation("invalid length of startup packet")
        _, pid, secret = THREE_INT32.unpack(body)
        return CancelRequest(pid, secret)
    major, minor = code >> 16, code & 0xFFFF
    if major != 3:
        raise ProtocolViolation(
            f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0",
            constants.SQLSTATE_FEATURE_NOT_SUPPORTED,
        )
    # One split instead of a Reader call per string: every login parses
    # this packet. parts[-1] is what follows the last NUL, so only
    # parts[:-1] are complete strings, as Reader.cstring() would read them.
    parameters: dict[str, str] = {}
    parts = body[4:].split(b"\x00")
    complete = len(parts) - 1
    index = 0
    while True:
        if index >= complete:
            raise ProtocolViolation("invalid string in message")
        name = parts[index]
        if not name:
            break
        if index + 1 >= complete:
            raise ProtocolViolation("invalid string in message")
        parameters[name.decode(_ENCODING, _ERRORS)] = parts[index + 1].decode(_ENCODING, _ERRORS)
        index += 2
    if index + 1 != complete or parts[-1]:
        raise ProtocolViolation("invalid startup packet layout: expected terminator as last byte")
    return StartupMessage(parameters, code)


def _errorFields(reader: Reader) -> tuple[tuple[bytes, str], ...]:
    fields: list[tuple[bytes, str]] = []
    while True:
        code = reader.byte()
        if code == b"\x00":
            return tuple(fields)
        fields.append((code, reader.cstring()))


def _decodeRowDescription(reader: Reader) -> RowDescription:
    count = reader.int16()
    fields = []
    for _ in range(count):
        name = reader.cstring()
        fields.append(
            FieldDescription(
                name,
                reader.uint32(),
                reader.int16(),
                reader.uint32(),
                reader.int16(),
                reader.int32(),
                reader.int16(),
            )
        )
    return RowDescription(tuple(fields))


def _decodeValues(reader: Reader) -> tuple[bytes | None, ...]:
    count = reader.int16()
    values: list[bytes | None] = []
    for _ in range(count):
        length = reader.int32()
        values.append(None if length == -1 else reader.read(length))
    return tuple(values)


def _decodeBind(reader: Reader) -> Bind:
    portal = reader.cstring()
    statement = reader.cstring()
    formats = tuple(reader.int16() for _ in range(reader.int16()))
    parameters = _decodeValues(reader)
    results = tuple(reader.int16() for _ in range(reader.int16()))
    return Bind(portal, statement, formats, parameters, results)


def _decodeParse(reader: Reader) -> Parse:
    name = reader.cstring()
    query = reader.cstring()
    types = tuple(reader.uint32() for _ in range(reader.int16()))
    return Parse(name, query, types)


def _decodeNegotiate(reader: Reader) -> NegotiateProtocolVersion:
    minor = reader.int32()
    return NegotiateProtocolVersion(minor, tuple(reader.cstring() for _ in range(reader.int32())))


_Decoder = Callable[[Reader], Message]

_FRONTEND: dict[bytes, _Decoder] = {
    constants.QUERY: lambda r: Query(r.cstring()),
    constants.TERMINATE: lambda r: Terminate(),
    constants.SYNC: lambda r: Sync(),
    constants.FLUSH: lambda r: Flush(),
    constants.PASSWORD_MESSAGE: lambda r: PasswordMessage(r.rest()),
    constants.PARSE: _decodeParse,
    constants.BIND: _decodeBind,
    constants.DESCRIBE: lambda r: Describe(r.byte(), r.cstring()),
    constants.EXECUTE: lambda r: Execute(r.cstring(), r.int32()),
    constants.CLOSE: lambda r: Close(r.byte(), r.cstring()),
}

_BACKEND: dict[bytes, _Decoder] = {
    constants.AUTHENTICATION: lambda r: AuthenticationRequest(r.int32(), r.rest()),
    constants.PARAMETER_STATUS: lambda r: ParameterStatus(r.cstring(), r.cstring()),
    constants.BACKEND_KEY_DATA: lambda r: BackendKeyData(r.int32(), r.int32()),
    constants.READY_FOR_QUERY: lambda r: ReadyForQuery(r.byte()),
    constants.ERROR_RESPONSE: lambda r: ErrorResponse(_errorFields(r)),
    constants.NOTICE_RESPONSE: lambda r: NoticeResponse(_errorFields(r)),
    constants.COMMAND_COMPLETE: lambda r: CommandComplete(r.cstring()),
    constants.ROW_DESCRIPTION: _decodeRowDescription,
    constants.DATA_ROW: lambda r: DataRow(_decodeValues(r)),
    constants.EMPTY_QUERY_RESPONSE: lambda r: EmptyQueryResponse(),
    constants.PARSE_COMPLETE: lambda r: ParseComplete(),
    constants.BIND_COMPLETE: lambda r: BindComplete(),
    constants.CLOSE_COMPLETE: lambda r: CloseComplete(),
    constants.NO_DATA: lambda r: NoData(),
    constants.NEGOTIATE_PROTOCOL_VERSION: _decodeNegotiate,
}


def _decode(table: dict[bytes, _Decoder], type: bytes, body: bytes, side: str) -> Message:
    decoder = table.get(type)
    if decoder is None:
        raise ProtocolViolation(f"invalid {side} message type {type!r}")
    reader = Reader(body)
    message = decoder(reader)
    reader.end()
    return message


def decodeFrontend(type: bytes, body: bytes) -> Message:
    """
    Decode a typed message a client sent.

    @raise ProtocolViolation: Unknown type or malformed body.
    """
    return _decode(_FRONTEND, type, body, "frontend")


def decodeBackend(type: bytes, body: bytes) -> Message:
    """
    Decode a typed message a PostgreSQL backend sent.

    @raise ProtocolViolation: Unknown type or malformed body.
    """
    return _decode(_BACKEND, type, body, "backend")


def parsePassword(data: bytes) -> str:
    """
    The password in a cleartext or md5 PasswordMessage body.
    """
    reader = Reader(data)
    password = reader.cstring()
    reader.end()
    return password


def parseSASLInitialResponse(data: bytes) -> tuple[str, bytes | None]:
    """
    The mechanism name and initial client response of a SASLInitialResponse.
    """
    reader = Reader(data)
    mechanism = reader.cstring()
    length = reader.int32()
    payload = None if length == -1 else reader.read(length)
    reader.end()
    return mechanism, payload


def encodeSASLInitialResponse(mechanism: str, payload: bytes) -> PasswordMessage:
    """
    A SASLInitialResponse as the client side of SCRAM sends it.
    """
    return PasswordMessage(encodeString(mechanism) + INT32.pack(len(payload)) + payload)


def parseSASLMechanisms(data: bytes) -> list[str]:
    """
    The mechanism names of an AuthenticationSASL request body.
    """
    reader = Reader(data)
    mechanisms: list[str] = []
    while True:
        name = reader.cstring()
        if not name:
            return mechanisms
        mechanisms.append(name)


def encodeSASLMechanisms(mechanisms: Iterable[str]) -> bytes:
    """
    The body of an AuthenticationSASL request after its code.
    """
    return b"".join(map(encodeString, mechanisms)) + b"\x00"
