# -*- test-case-name: tests.unit.test_wire_walker -*-
"""
Walk the messages of one direction of a relayed stream, chunk by chunk.

A relay must not hold what it only forwards: a 64 MiB DataRow or CopyData
goes on in the pieces it arrives in. L{MessageWalker} reads the five-byte
headers of each received chunk in place (C{struct.unpack_from}) and keeps
between chunks only:

 - a header cut by the end of a chunk (at most four bytes);
 - how many bytes of a message being passed on are still to come;
 - the message its caller must decode, held until complete, and never more
   than L{MessageWalker.maxHeldLength} bytes of body (a longer one is shown
   to the caller once that much is in, to be passed on or refused).

Held bytes are appended to one C{bytearray}, never joined with a whole new
chunk, so a stream costs time linear in its size however it is cut. A length
below 4 or above L{MessageWalker.maxMessageLength} (PostgreSQL's 1 GiB - 1)
is refused with L{ProtocolViolation} before any of the payload is kept.

Two ways to walk a chunk:

 - L{MessageWalker.feed} reports the message types a caller I{watches} (at
   their end, without body) and I{collects} (with their body), for a relay
   that forwards each chunk whole with one write (the session pipeline);
 - L{MessageWalker.walk} hands whole messages, and the start of a message
   that runs past the chunk, to the caller's own loop, which forwards spans
   of the chunk, swallows or rewrites messages, and says which message must
   be held whole (the transaction pipeline, the backend's own queries).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from pgtwist.wire import constants
from pgtwist.wire.codec import HEADER
from pgtwist.wire.errors import ProtocolViolation

#: C{(type, body or None, end)}: C{end} is the offset in the fed chunk just
#: past the message (smaller than the message's length when the message
#: began in an earlier chunk).
ScanCallback = Callable[[bytes, Optional[bytes], int], None]

#: C{scan(buffer, offset, out) -> stop}: see L{MessageWalker.walk}.
Scan = Callable[[bytes, int, list[bytes]], int]


def invalidLength() -> ProtocolViolation:
    """
    The error for a message length outside PostgreSQL's bounds, worded as
    PostgreSQL's C{pq_getmessage} words it.
    """
    return ProtocolViolation("invalid message length")


def tooLong(type: bytes, limit: int) -> ProtocolViolation:
    """
    The error for a message pgtwist must read whole that is longer than it
    holds.
    """
    return ProtocolViolation(
        f"message of type {type.decode('latin-1')!r} is longer than the {limit} bytes"
        " pgtwist can examine"
    )


class MessageWalker:
    """
    Track message boundaries in one direction of a connection.

    @ivar watch: Types L{feed} reports without their body.
    @ivar collect: Types L{feed} reports with their body (held until whole).
    @ivar maxMessageLength: The longest message accepted, length word included.
    @ivar maxHeldLength: The most body bytes held of one message.
    @ivar forwarding: Whether the rest of the message being passed on goes
        to the peer (L{walk} appends it to C{out}) or is dropped.
    @ivar atBoundary: Whether everything walked so far ends exactly at a
        message boundary (an attribute, not a property: relays read it per
        chunk).
    """

    __slots__ = (
        "atBoundary",
        "watch",
        "collect",
        "maxMessageLength",
        "maxHeldLength",
        "forwarding",
        "_callback",
        "_held",
        "_need",
        "_remaining",
        "_type",
    )

    def __init__(
        self,
        callback: ScanCallback | None = None,
        watch: frozenset[bytes] = frozenset(),
        collect: frozenset[bytes] = frozenset(),
        maxMessageLength: int = constants.DEFAULT_MAX_MESSAGE_LENGTH,
        maxHeldLength: int = constants.DEFAULT_MAX_HELD_LENGTH,
    ) -> None:
        self.watch = watch
        self.collect = collect
        self.maxMessageLength = maxMessageLength
        self.maxHeldLength = maxHeldLength
        self.forwarding = True
        self.atBoundary = True
        self._callback = callback
        #: A cut header (under five bytes), or a held message from its type byte.
        self._held = bytearray()
        #: Bytes the held message still needs before it is shown (0: complete,
        #: or as much as is held of a long one).
        self._need = 0
        #: Bytes of the message being passed on still to come.
        self._remaining = 0
        self._type = b""

    def release(self) -> None:
        """
        Forget the callback once its owner is done with this walker: a bound
        method of the owner, which holds the walker, is a reference cycle
        that only Python's cyclic collector would free, in bulk and late.
        L{feed} may not be called afterwards.
        """
        self._callback = None

    @property
    def heldBytes(self) -> int:
        """
        How many bytes are held (a cut header or a message being gathered).
        """
        return len(self._held)

    @property
    def passingOn(self) -> bool:
        """
        Whether part of a message has been passed on and the rest is to come.
        """
        return self._remaining > 0

    @property
    def ready(self) -> bool:
        """
        Whether a held message is ready to be shown (L{walk} it on, even
        with C{b""}): one a scan stopped at, or as much as is held of a long
        one.
        """
        return len(self._held) >= 5 and not self._need

    def passing(self, remaining: int, forward: bool = True) -> None:
        """
        Called by a L{walk} scan that passes on a message running past the
        end of its buffer: C{remaining} more bytes of it will come, to be
        forwarded or dropped.
        """
        self._remaining = remaining
        self.forwarding = forward
        self.atBoundary = not remaining

    def _header(self, held: bytearray) -> tuple[bytes, int]:
        """
        The type and length of the held message, checked.
        """
        type, length = HEADER.unpack_from(held, 0)
        if length < 4 or length > self.maxMessageLength:
            # Nothing of this stream can be trusted after it: whatever is fed
            # next starts afresh.
            self._held = bytearray()
            self.atBoundary = True
            raise invalidLength()
        return type, length

    def _hold(self, data: bytes, offset: int, length: int) -> None:
        """
        Start holding the message at C{offset}, which runs past C{data}.
        """
        body = len(data) - offset - 5
        want = length - 4
        if want > self.maxHeldLength:
            want = self.maxHeldLength
        self._held = bytearray(data[offset:])
        self._need = want - body if body < want else 0
        self.atBoundary = False

    def _fillHeader(self, data: bytes, offset: int) -> int:
        """
        Move bytes of C{data} from C{offset} into a cut header, up to its
        five bytes; return the offset after them.
        """
        held = self._held
        take = 5 - len(held)
        available = len(data) - offset
        if take > available:
            take = available
        held += data[offset : offset + take]
        return offset + take

    def _fill(self, data: bytes, offset: int) -> int:
        """
        Move bytes of C{data} from C{offset} into the held message, up to
        what it needs; return the offset after them.
        """
        held = self._held
        take = self._need
        available = len(data) - offset
        if take > available:
            take = available
        held += memoryview(data)[offset : offset + take]
        self._need -= take
        return offset + take

    # -- reporting: the chunk is forwarded whole by the caller ---------------

    def feed(self, data: bytes) -> None:
        """
        Walk one chunk; report the watched and collected messages it
        completes, with the offset in C{data} just past each.

        @raise ProtocolViolation: A length out of bounds, or a collected
            message longer than L{maxHeldLength}.
        """
        size = len(data)
        offset = 0
        watch = self.watch
        collect = self.collect
        callback = self._callback
        assert callback is not None
        while not self.atBoundary:
            if self._remaining:
                take = self._remaining
                if take > size - offset:
                    take = size - offset
                self._remaining -= take
                offset += take
                if self._remaining:
                    return
                self.atBoundary = True
                if self._type in watch:
                    callback(self._type, None, offset)
                continue
            held = self._held
            if len(held) < 5:
                offset = self._fillHeader(data, offset)
                if len(held) < 5:
                    return
                type, length = self._header(held)
                if type not in collect:
                    self._held = bytearray()
                    self._type = type
                    self._remaining = length - 4
                    if not self._remaining:
                        self.atBoundary = True
                        if type in watch:
                            callback(type, None, offset)
                    continue
                if length - 4 > self.maxHeldLength:
                    raise tooLong(type, self.maxHeldLength)
                self._need = length - 4
            offset = self._fill(data, offset)
            if self._need:
                return
            self._held = bytearray()
            self.atBoundary = True
            callback(bytes(held[:1]), bytes(held[5:]), offset)
        unpack = HEADER.unpack_from
        limit = self.maxMessageLength
        while offset < size:
            if size - offset < 5:
                self._held = bytearray(data[offset:])
                self.atBoundary = False
                return
            type, length = unpack(data, offset)
            if length < 4 or length > limit:
                raise invalidLength()
            end = offset + 1 + length
            if end <= size:
                if type in collect:
                    callback(type, data[offset + 5 : end], end)
                elif type in watch:
                    callback(type, None, end)
                offset = end
                continue
            # The message continues in a later chunk.
            if type in collect:
                if length - 4 > self.maxHeldLength:
                    raise tooLong(type, self.maxHeldLength)
                self._hold(data, offset, length)
            else:
                self._type = type
                self._remaining = end - size
                self.atBoundary = False
            return

    # -- walking: the caller's loop forwards, swallows and rewrites ----------

    def walk(self, data: bytes, scan: Scan, out: list[bytes]) -> int:
        """
        Walk one chunk with the caller's C{scan} loop.

        C{scan(buffer, offset, out)} reads the messages of C{buffer} from
        C{offset}, appending what it forwards to C{out}, and returns where it
        stopped. A message that runs past the end of C{buffer} it either
        passes on (forwarding or dropping what is there, then calling
        L{passing} with the bytes still to come, and returning
        C{len(buffer)}), or stops at, and the walker holds it: until it is
        whole, or when it is longer than L{maxHeldLength}, until that much
        of its body is in, when C{scan} sees it again and must pass it on.
        C{scan} sees a held message as a buffer of its own; a header cut by
        the end of a chunk, once complete, too. Stopping at a whole message
        ends the walk there.

        @return: Where in C{data} the walk ended: C{len(data)}, or the offset
            of the bytes that follow a message C{scan} stopped at (which the
            walker keeps, when it was held: walk on later, with what follows,
            or C{b""}, to show it again).

        @raise ProtocolViolation: A length out of bounds, or a message
            longer than L{maxHeldLength} that C{scan} would not pass on.
        """
        if self.atBoundary:
            stop = scan(data, 0, out)
            return stop if stop >= len(data) else self.tail(data, stop)
        size = len(data)
        offset = 0
        while not self.atBoundary:
            if self._remaining:
                take = self._remaining
                if take > size - offset:
                    take = size - offset
                if take and self.forwarding:
                    out.append(data if take == size else data[offset : offset + take])
                self._remaining -= take
                offset += take
                if self._remaining:
                    return size
                self.atBoundary = True
                continue
            held = self._held
            if len(held) < 5:
                offset = self._fillHeader(data, offset)
                if len(held) < 5:
                    return size
                _, length = self._header(held)
                want = length - 4
                self._need = want if want <= self.maxHeldLength else self.maxHeldLength
                if self._need:
                    # Show the bare header: the scan may pass the message on,
                    # or have it held.
                    if scan(bytes(held), 0, out) == 5:
                        self._held = bytearray()
                    continue
            elif self._need:
                offset = self._fill(data, offset)
                if self._need:
                    return size
            message = bytes(held)
            type, length = HEADER.unpack_from(message, 0)
            whole = len(message) == 1 + length
            if whole:
                # While the scan reads it, nothing is held: what it does
                # (attach the stream to someone else...) starts at a boundary.
                self._held = bytearray()
                self.atBoundary = True
            if scan(message, 0, out):
                self._held = bytearray()
                continue
            if whole:
                # A whole message the scan stopped at: kept for the next walk.
                self._held = held
                self.atBoundary = False
                return offset
            raise tooLong(type, self.maxHeldLength)
        if offset >= size:
            return size
        stop = scan(data, offset, out)
        return stop if stop >= size else self.tail(data, stop)

    def tail(self, data: bytes, stop: int) -> int:
        """
        Deal with the end of C{data} from C{stop}, where a scan of C{data}
        from a message boundary stopped (L{walk} calls it; so may a relay
        that, the walker being L{atBoundary}, ran its scan itself). A cut
        header, or a message that runs past C{data}, is held.

        @return: C{len(data)}, or C{stop} when a whole message is there (the
            scan stopped at it).
        """
        size = len(data)
        if size - stop < 5:
            self._held = bytearray(data[stop:])
            self.atBoundary = False
            return size
        type, length = HEADER.unpack_from(data, stop)
        if length < 4 or length > self.maxMessageLength:
            raise invalidLength()
        if stop + 1 + length <= size:
            return stop
        if length - 4 > self.maxHeldLength and size - stop - 5 >= self.maxHeldLength:
            raise tooLong(type, self.maxHeldLength)
        self._hold(data, stop, length)
        return size
