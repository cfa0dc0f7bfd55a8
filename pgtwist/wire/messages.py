# -*- test-case-name: tests.unit.test_wire_codec -*-
"""
PostgreSQL v3 protocol messages as frozen, slotted dataclasses.

Messages are built only for what drives policy (login, authentication, the
messages pipelines inspect); bulk traffic is relayed as bytes. Text fields are
decoded as UTF-8 with C{surrogateescape}, so any byte string round-trips.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from pgtwist._compat import SLOTS
from pgtwist.wire import constants


@dataclass(frozen=True, **SLOTS)
class Message:
    """
    Base class of every message. C{type} is the type byte (C{b""} for the
    untyped startup-phase packets).
    """

    type: ClassVar[bytes] = b""


# -- Untyped startup-phase packets (frontend) --------------------------------


@dataclass(frozen=True, **SLOTS)
class StartupMessage(Message):
    """
    The first packet of a session: protocol version and parameters such as
    C{user}, C{database}, C{options}, C{application_name}.
    """

    parameters: Mapping[str, str] = field(default_factory=dict)
    protocol: int = constants.PROTOCOL_3_0


@dataclass(frozen=True, **SLOTS)
class SSLRequest(Message):
    """
    Ask the server whether it will negotiate TLS.
    """


@dataclass(frozen=True, **SLOTS)
class GSSENCRequest(Message):
    """
    Ask the server whether it will negotiate GSSAPI encryption.
    """


@dataclass(frozen=True, **SLOTS)
class CancelRequest(Message):
    """
    Cancel the query running on the backend identified by the key.
    """

    processId: int
    secretKey: int


# -- Typed frontend messages --------------------------------------------------


@dataclass(frozen=True, **SLOTS)
class PasswordMessage(Message):
    """
    A C{p} message. Its body is a cleartext or md5 password, a
    SASLInitialResponse or a SASLResponse depending on the authentication in
    progress, so it is kept raw; see L{pgtwist.wire.codec.parsePassword} and
    L{pgtwist.wire.codec.parseSASLInitialResponse}.
    """

    type: ClassVar[bytes] = constants.PASSWORD_MESSAGE
    data: bytes


@dataclass(frozen=True, **SLOTS)
class Query(Message):
    """
    A simple-protocol query string (possibly several statements).
    """

    type: ClassVar[bytes] = constants.QUERY
    sql: str


@dataclass(frozen=True, **SLOTS)
class Terminate(Message):
    """
    The client is closing the session.
    """

    type: ClassVar[bytes] = constants.TERMINATE


@dataclass(frozen=True, **SLOTS)
class Sync(Message):
    """
    End of an extended-protocol batch.
    """

    type: ClassVar[bytes] = constants.SYNC


@dataclass(frozen=True, **SLOTS)
class Flush(Message):
    """
    Ask the backend to send pending extended-protocol output.
    """

    type: ClassVar[bytes] = constants.FLUSH


@dataclass(frozen=True, **SLOTS)
class Parse(Message):
    """
    Prepare C{query} as statement C{name} (C{""}: the unnamed statement).
    """

    type: ClassVar[bytes] = constants.PARSE
    name: str
    query: str
    parameterTypes: tuple[int, ...] = ()


@dataclass(frozen=True, **SLOTS)
class Bind(Message):
    """
    Bind parameters of a prepared statement into a portal.
    """

    type: ClassVar[bytes] = constants.BIND
    portal: str
    statement: str
    parameterFormats: tuple[int, ...] = ()
    parameters: tuple[bytes | None, ...] = ()
    resultFormats: tuple[int, ...] = ()


@dataclass(frozen=True, **SLOTS)
class Describe(Message):
    """
    Describe a statement (C{kind} C{b"S"}) or a portal (C{b"P"}).
    """

    type: ClassVar[bytes] = constants.DESCRIBE
    kind: bytes
    name: str


@dataclass(frozen=True, **SLOTS)
class Execute(Message):
    """
    Run a portal, returning at most C{maxRows} rows (0: all).
    """

    type: ClassVar[bytes] = constants.EXECUTE
    portal: str
    maxRows: int = 0


@dataclass(frozen=True, **SLOTS)
class Close(Message):
    """
    Close a statement (C{kind} C{b"S"}) or a portal (C{b"P"}).
    """

    type: ClassVar[bytes] = constants.CLOSE
    kind: bytes
    name: str


# -- Backend messages ---------------------------------------------------------


@dataclass(frozen=True, **SLOTS)
class AuthenticationRequest(Message):
    """
    An C{R} message: C{code} is one of the C{AUTH_*} constants, C{data} the
    rest of the body (md5 salt, SASL mechanism list, SASL data).
    """

    type: ClassVar[bytes] = constants.AUTHENTICATION
    code: int
    data: bytes = b""


@dataclass(frozen=True, **SLOTS)
class ParameterStatus(Message):
    """
    The backend reports the current value of a run-time parameter.
    """

    type: ClassVar[bytes] = constants.PARAMETER_STATUS
    name: str
    value: str


@dataclass(frozen=True, **SLOTS)
class BackendKeyData(Message):
    """
    The key a client needs to cancel queries of this session.
    """

    type: ClassVar[bytes] = constants.BACKEND_KEY_DATA
    processId: int
    secretKey: int


@dataclass(frozen=True, **SLOTS)
class ReadyForQuery(Message):
    """
    The backend is ready; C{status} is C{b"I"}, C{b"T"} or C{b"E"}.
    """

    type: ClassVar[bytes] = constants.READY_FOR_QUERY
    status: bytes = constants.TRANSACTION_IDLE


@dataclass(frozen=True, **SLOTS)
class ErrorResponse(Message):
    """
    An error; C{fields} are (field code byte, value) pairs in wire order.
    """

    type: ClassVar[bytes] = constants.ERROR_RESPONSE
    fields: tuple[tuple[bytes, str], ...]

    def get(self, code: bytes, default: str = "") -> str:
        """
        The value of field C{code}, or C{default}.
        """
        for key, value in self.fields:
            if key == code:
                return value
        return default

    @property
    def severity(self) -> str:
        """
        The non-localized severity (C{V}), falling back to C{S}.
        """
        return self.get(constants.FIELD_SEVERITY_NONLOCALIZED) or self.get(constants.FIELD_SEVERITY)

    @property
    def code(self) -> str:
        """
        The SQLSTATE.
        """
        return self.get(constants.FIELD_CODE)

    @property
    def message(self) -> str:
        """
        The primary human-readable message.
        """
        return self.get(constants.FIELD_MESSAGE)


@dataclass(frozen=True, **SLOTS)
class NoticeResponse(Message):
    """
    A notice; same layout as L{ErrorResponse}.
    """

    type: ClassVar[bytes] = constants.NOTICE_RESPONSE
    fields: tuple[tuple[bytes, str], ...]


@dataclass(frozen=True, **SLOTS)
class CommandComplete(Message):
    """
    A statement finished; C{tag} is e.g. C{"SELECT 1"}.
    """

    type: ClassVar[bytes] = constants.COMMAND_COMPLETE
    tag: str


@dataclass(frozen=True, **SLOTS)
class FieldDescription:
    """
    One column of a L{RowDescription}.
    """

    name: str
    tableOid: int = 0
    columnNumber: int = 0
    typeOid: int = 25
    typeSize: int = -1
    typeModifier: int = -1
    formatCode: int = 0


@dataclass(frozen=True, **SLOTS)
class RowDescription(Message):
    """
    The shape of the rows that follow.
    """

    type: ClassVar[bytes] = constants.ROW_DESCRIPTION
    fields: tuple[FieldDescription, ...]


@dataclass(frozen=True, **SLOTS)
class DataRow(Message):
    """
    One row; C{None} is SQL NULL.
    """

    type: ClassVar[bytes] = constants.DATA_ROW
    values: tuple[bytes | None, ...]


@dataclass(frozen=True, **SLOTS)
class EmptyQueryResponse(Message):
    """
    The query string was empty.
    """

    type: ClassVar[bytes] = constants.EMPTY_QUERY_RESPONSE


@dataclass(frozen=True, **SLOTS)
class ParseComplete(Message):
    """
    A Parse succeeded.
    """

    type: ClassVar[bytes] = constants.PARSE_COMPLETE


@dataclass(frozen=True, **SLOTS)
class BindComplete(Message):
    """
    A Bind succeeded.
    """

    type: ClassVar[bytes] = constants.BIND_COMPLETE


@dataclass(frozen=True, **SLOTS)
class CloseComplete(Message):
    """
    A Close succeeded.
    """

    type: ClassVar[bytes] = constants.CLOSE_COMPLETE


@dataclass(frozen=True, **SLOTS)
class NoData(Message):
    """
    The described statement or portal returns no rows.
    """

    type: ClassVar[bytes] = constants.NO_DATA


@dataclass(frozen=True, **SLOTS)
class NegotiateProtocolVersion(Message):
    """
    The server supports an older minor version and not these options.
    """

    type: ClassVar[bytes] = constants.NEGOTIATE_PROTOCOL_VERSION
    newestMinor: int
    unrecognized: tuple[str, ...] = ()
