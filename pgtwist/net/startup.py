# -*- test-case-name: tests.unit.test_net_startup -*-
"""
The start of a client connection, sans-IO: the negotiation packets before a
StartupMessage, and where the StartupMessage sends the client.

In the style of h11's C{Connection}: L{StartupNegotiation.receiveData} takes
bytes and returns events (L{Reply}, L{Cancel}, L{Startup}) or raises
L{ProtocolViolation}; it never touches a transport, so every path of
PostgreSQL's C{ProcessStartupPacket} is tested byte by byte without a
socket. L{routeStartup} then decides, from the StartupMessage alone, whether
the client is refused, goes to the admin console or to a pool, with
PostgreSQL's SQLSTATEs and messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from pgtwist._compat import SLOTS
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.framing import StartupFramer
from pgtwist.wire.messages import (
    CancelRequest,
    ErrorResponse,
    GSSENCRequest,
    NegotiateProtocolVersion,
    SSLRequest,
    StartupMessage,
)

CONSOLE_DATABASES = frozenset({"pgbouncer", "pgtwist"})
"""
Database names that open the admin console instead of a pool (PgBouncer's
virtual C{pgbouncer} database, and pgtwist's own name).
"""

CONSOLE_DEFAULT = "pgbouncer"
"""
The console database a console-only listener's client is given when it
names another.
"""


#: The first byte of a TLS record carrying a handshake (a ClientHello): what
#: a PostgreSQL 17 client with C{sslnegotiation=direct} sends first.
TLS_HANDSHAKE_RECORD = 0x16


@dataclass(frozen=True, **SLOTS)
class Reply:
    """
    Bytes to send to the client now (C{N}: no TLS, no GSSAPI encryption;
    C{S}: TLS follows, see L{StartTLS}).
    """

    data: bytes


@dataclass(frozen=True, **SLOTS)
class StartTLS:
    """
    Start the TLS handshake now, as the server: after an SSLRequest was
    answered C{S} (C{direct} false), or for a client whose very first bytes
    are a TLS handshake record (C{direct} true, PostgreSQL 17's
    C{sslnegotiation=direct}; C{data} holds those bytes, for the TLS layer).
    The negotiation then goes on with the decrypted bytes.
    """

    direct: bool
    data: bytes = b""


@dataclass(frozen=True, **SLOTS)
class Reject:
    """
    Close the connection without a reply: the client speaks something that
    cannot be answered in the protocol (a TLS ClientHello while TLS is
    off). C{reason} is for the log.
    """

    reason: str


@dataclass(frozen=True, **SLOTS)
class Cancel:
    """
    The connection carried a CancelRequest: act on it and close.
    """

    request: CancelRequest


@dataclass(frozen=True, **SLOTS)
class Startup:
    """
    The StartupMessage, and the bytes that followed it in the same read (the
    client's first typed messages, for the authentication phase).
    """

    message: StartupMessage
    rest: bytes


Event = Union[Reply, StartTLS, Reject, Cancel, Startup]


class StartupNegotiation:
    """
    The untyped packets a client sends first: at most one SSLRequest and
    one GSSENCRequest, in either order (each answered C{N}, or the
    SSLRequest C{S} when C{tls}), then one StartupMessage or
    CancelRequest, which ends the negotiation. With C{tls}, a client may also open with a TLS handshake
    (direct TLS) instead of an SSLRequest.

    @ivar finished: Whether a StartupMessage or CancelRequest arrived; bytes
        after that belong to the authentication phase.
    @ivar encrypted: Whether TLS was started (the bytes now fed are the
        decrypted ones).
    """

    def __init__(self, tls: bool = False) -> None:
        """
        @param tls: Whether TLS is offered to this client (configured, and
            a TCP connection).
        """
        self._framer = StartupFramer()
        self._tls = tls
        self._first = True
        #: Whether an SSLRequest, a GSSENCRequest, was answered.
        self._sslDone = False
        self._gssDone = False
        self.finished = False
        self.encrypted = False

    def receiveData(self, data: bytes) -> list[Event]:
        """
        Take bytes from the client.

        @return: What to do, in order; empty while a packet is incomplete.
        @raise ProtocolViolation: A malformed packet, a length outside
            PostgreSQL's bounds, bytes after a negotiation request that
            arrived before its answer (unencrypted data a man in the middle
            may have injected, PostgreSQL's CVE-2021-23214; PgBouncer's
            C{client.c} refuses it the same way), or a second SSLRequest or
            GSSENCRequest, or one over TLS (PostgreSQL's C{0A000}
            C{unsupported frontend protocol 1234.5679}).
        """
        if self.finished:
            raise ValueError("the startup negotiation is over")
        if self._first and data:
            self._first = False
            if data[0] == TLS_HANDSHAKE_RECORD:
                # PostgreSQL 17 looks at the first byte the same way: no
                # packet length can start with 0x16 (it would exceed the
                # largest startup packet).
                if not self._tls:
                    self.finished = True
                    return [Reject("received a TLS handshake (direct TLS), but TLS is off")]
                self.encrypted = True
                return [StartTLS(True, data)]
        events: list[Event] = []
        for _, body in self._framer.feed(data):
            message = codec.decodeStartupPacket(body)
            if isinstance(message, (SSLRequest, GSSENCRequest)):
                ssl = isinstance(message, SSLRequest)
                if (self._sslDone if ssl else self._gssDone) or self.encrypted:
                    # PostgreSQL answers each request once (and none once
                    # encrypted); another one is then read as a
                    # StartupMessage of protocol 1234.5679 (or .5680).
                    code = constants.SSL_REQUEST_CODE if ssl else constants.GSSENC_REQUEST_CODE
                    raise errors.ProtocolViolation(
                        f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: "
                        "server supports 3.0 to 3.0",
                        constants.SQLSTATE_FEATURE_NOT_SUPPORTED,
                    )
                if self._framer.takeRemainder():
                    raise errors.ProtocolViolation(
                        "received unencrypted data after SSL request"
                        if ssl
                        else "received unencrypted data after GSSAPI encryption request"
                    )
                if ssl:
                    self._sslDone = True
                else:
                    self._gssDone = True
                if ssl and self._tls:
                    self.encrypted = True
                    events += [Reply(b"S"), StartTLS(False)]
                else:
                    events.append(Reply(b"N"))
            elif isinstance(message, CancelRequest):
                self.finished = True
                events.append(Cancel(message))
            elif isinstance(message, StartupMessage):
                self.finished = True
                events.append(Startup(message, self._framer.takeRemainder()))
        return events


@dataclass(frozen=True, **SLOTS)
class ToConsole:
    """
    The client asked for the admin console (or came in through the
    console-only management listener).
    """

    database: str
    user: str


@dataclass(frozen=True, **SLOTS)
class ToPool:
    """
    The client asked for a database of PostgreSQL's (an alias not yet
    resolved).
    """

    database: str
    user: str


@dataclass(frozen=True, **SLOTS)
class Refused:
    """
    The StartupMessage asks for something pgtwist does not do.
    """

    error: ErrorResponse


Route = Union[ToConsole, ToPool, Refused]

#: The prefix of protocol-level startup options (PostgreSQL's C{_pq_.}).
PROTOCOL_OPTION_PREFIX = "_pq_."


def negotiateProtocol(
    message: StartupMessage,
) -> tuple[StartupMessage, NegotiateProtocolVersion | None]:
    """
    What PostgreSQL's C{ProcessStartupPacket} does with a 3.x StartupMessage
    that asks for more than protocol 3.0: a client that asked for a newer
    minor version (libpq 18's C{max_protocol_version=3.2}) or sent
    protocol options (C{_pq_.*}, none of which pgtwist knows) is told, by a
    NegotiateProtocolVersion before anything else, that the session speaks
    3.0 without those options; the options are dropped from the startup
    parameters, so they never reach a backend or the tracked settings.

    @return: The message to go on with (C{message} itself when there is
        nothing to negotiate) and the NegotiateProtocolVersion to send
        first, or C{None}.
    """
    parameters = message.parameters
    unrecognized = tuple(name for name in parameters if name.startswith(PROTOCOL_OPTION_PREFIX))
    if message.protocol == constants.PROTOCOL_3_0 and not unrecognized:
        return message, None
    kept = {
        name: value
        for name, value in parameters.items()
        if not name.startswith(PROTOCOL_OPTION_PREFIX)
    }
    # PostgreSQL sends its newest version's whole code (3 << 16 | minor),
    # which is what libpq reads, though the documentation says "minor".
    return StartupMessage(kept, constants.PROTOCOL_3_0), NegotiateProtocolVersion(
        constants.PROTOCOL_3_0, unrecognized
    )


def routeStartup(message: StartupMessage, consoleOnly: bool) -> Route:
    """
    Where a StartupMessage sends its client. The database defaults to the
    user name, as in PostgreSQL.

    @param consoleOnly: The client came in through the management listener,
        which serves only the console.
    @raise ProtocolViolation: No user name (PostgreSQL's 28000).
    """
    parameters = message.parameters
    user = parameters.get("user", "")
    if not user:
        raise errors.ProtocolViolation(
            "no PostgreSQL user name specified in startup packet",
            constants.SQLSTATE_INVALID_AUTHORIZATION,
        )
    if parameters.get("replication", "false").lower() not in ("false", "off", "no", "0"):
        return Refused(
            errors.fatal(
                constants.SQLSTATE_FEATURE_NOT_SUPPORTED,
                "pgtwist does not pool replication connections",
            )
        )
    requested = parameters.get("database") or user
    if requested in CONSOLE_DATABASES:
        return ToConsole(requested, user)
    if consoleOnly:
        return ToConsole(CONSOLE_DEFAULT, user)
    return ToPool(requested, user)
