# -*- test-case-name: tests.unit.test_wire_framing -*-
"""
Split a byte stream into PostgreSQL packets, with PostgreSQL's limits.

Both framers keep one C{bytearray} and an offset and compact it once per
L{feed} call, so a chunk holding many messages costs no copy per message.
"""

from __future__ import annotations

from typing import NamedTuple

from pgtwist.wire import constants
from pgtwist.wire.codec import HEADER, INT32
from pgtwist.wire.errors import ProtocolViolation


class Frame(NamedTuple):
    """
    One typed message: its type byte and its body (without type and length).
    Untyped startup packets have C{type} C{b""}.
    """

    type: bytes
    body: bytes


class StartupFramer:
    """
    Frames the untyped packets of the startup phase (StartupMessage,
    SSLRequest, GSSENCRequest, CancelRequest): an int32 length including
    itself, then the body. Packets longer than
    L{constants.MAX_STARTUP_PACKET_LENGTH} are refused, as PostgreSQL does.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """
        Add bytes; return the first complete packet (at most one: the caller
        decides what the bytes after it may be).

        @raise ProtocolViolation: A length outside PostgreSQL's bounds.
        """
        self._buffer += data
        frames: list[Frame] = []
        offset = 0
        buffer = self._buffer
        while len(buffer) - offset >= 4:
            (length,) = INT32.unpack_from(buffer, offset)
            if length < 8 or length > constants.MAX_STARTUP_PACKET_LENGTH:
                raise ProtocolViolation("invalid length of startup packet")
            if len(buffer) - offset < length:
                break
            body = bytes(buffer[offset + 4 : offset + length])
            frames.append(Frame(b"", body))
            offset += length
            # One packet per call: after a negotiation request nothing may
            # arrive before our reply, and after a StartupMessage what follows
            # is typed messages for MessageFramer (see takeRemainder).
            break
        if offset:
            del buffer[:offset]
        return frames

    def takeRemainder(self) -> bytes:
        """
        Return and forget the bytes not yet framed (after the startup phase
        ends, the rest of the stream belongs to L{MessageFramer}).
        """
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


class MessageFramer:
    """
    Frames typed messages: one type byte, an int32 length including itself,
    then the body.

    @ivar maxMessageLength: The longest message accepted, length word included.
    """

    def __init__(self, maxMessageLength: int = constants.DEFAULT_MAX_MESSAGE_LENGTH) -> None:
        self._buffer = bytearray()
        self.maxMessageLength = maxMessageLength

    def feed(self, data: bytes) -> list[Frame]:
        """
        Add bytes; return the complete messages they finish.

        @raise ProtocolViolation: A length below 4 or above C{maxMessageLength}.
        """
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        offset = 0
        end = len(buffer)
        while end - offset >= 5:
            type, length = HEADER.unpack_from(buffer, offset)
            if length < 4 or length > self.maxMessageLength:
                raise ProtocolViolation(f"invalid message length {length}")
            stop = offset + 1 + length
            if stop > end:
                break
            frames.append(Frame(type, bytes(buffer[offset + 5 : stop])))
            offset = stop
        if offset:
            del buffer[:offset]
        return frames

    def feedOne(self, data: bytes) -> Frame | None:
        """
        Add bytes; return the first complete message, if any, and keep the
        rest buffered for the next call.

        The length word is checked as soon as the five header bytes are
        here, so a message over C{maxMessageLength} is refused before any
        of its body is kept: the authentication phase relies on this to
        hold no more than PostgreSQL's C{PG_MAX_AUTH_TOKEN_LENGTH} for a
        client that has not logged in, while a caller that changes
        C{maxMessageLength} between calls (at the end of authentication)
        gets the new limit applied to the very next message.

        @raise ProtocolViolation: A length below 4 or above
            C{maxMessageLength}, with PostgreSQL's message (its
            C{pq_getmessage}); the buffer is emptied.
        """
        buffer = self._buffer
        buffer += data
        if len(buffer) < 5:
            return None
        type, length = HEADER.unpack_from(buffer, 0)
        if length < 4 or length > self.maxMessageLength:
            buffer.clear()
            raise ProtocolViolation("invalid message length")
        stop = 1 + length
        if stop > len(buffer):
            return None
        frame = Frame(type, bytes(buffer[5:stop]))
        del buffer[:stop]
        return frame

    def takeRemainder(self) -> bytes:
        """
        Return and forget the bytes not yet framed.
        """
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    @property
    def pending(self) -> int:
        """
        How many bytes are buffered waiting for the rest of a message.
        """
        return len(self._buffer)
