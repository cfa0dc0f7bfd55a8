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


@dataclass(frozen=True, **SLOTS)
class Reply:
    """
    Bytes to send to the client now (C{N}: no TLS, no GSSAPI encryption).
    """

    data: bytes


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


Event = Union[Reply, Cancel, Startup]


class StartupNegotiation:
    """
    The untyped packets a client sends first: any number of SSLRequest and
    GSSENCRequest (each answered C{N}), then one StartupMessage or
    CancelRequest, which ends the negotiation.

    @ivar finished: Whether a StartupMessage or CancelRequest arrived; bytes
        after that belong to the authentication phase.
    """

    def __init__(self) -> None:
        self._framer = StartupFramer()
        self.finished = False

    def receiveData(self, data: bytes) -> list[Event]:
        """
        Take bytes from the client.

        @return: What to do, in order; empty while a packet is incomplete.
        @raise ProtocolViolation: A malformed packet, a length outside
            PostgreSQL's bounds, or bytes after a negotiation request that
            arrived before its answer (unencrypted data a man in the middle
            may have injected, PostgreSQL's CVE-2021-23214; PgBouncer's
            C{client.c} refuses it the same way).
        """
        if self.finished:
            raise ValueError("the startup negotiation is over")
        events: list[Event] = []
        for _, body in self._framer.feed(data):
            message = codec.decodeStartupPacket(body)
            if isinstance(message, (SSLRequest, GSSENCRequest)):
                if self._framer.takeRemainder():
                    raise errors.ProtocolViolation(
                        "received unencrypted data after SSL request"
                        if isinstance(message, SSLRequest)
                        else "received unencrypted data after GSSAPI encryption request"
                    )
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
