# -*- test-case-name: tests.unit.test_wire_scan -*-
"""
Walk the message boundaries of a relayed stream without copying it.

A relay forwards each received chunk whole; the scanner only reads the
five-byte headers (C{struct.unpack_from} on the chunk) and skips bodies, so
relaying a 100k-row result costs one header read per row and no allocation.
Messages whose type is watched are reported; for collected types the body is
gathered (across chunks if need be) and reported too.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Optional

from pgtwist.wire import constants
from pgtwist.wire.errors import ProtocolViolation

_HEADER = struct.Struct("!ci")

#: C{(type, body or None, end)}: C{end} is the offset in the fed chunk just
#: past the message (it may be smaller than the message's length when the
#: message began in an earlier chunk).
ScanCallback = Callable[[bytes, Optional[bytes], int], None]


class MessageScanner:
    """
    Track message boundaries in one direction of a connection.

    @ivar watch: Types reported without their body.
    @ivar collect: Types reported with their body.
    """

    __slots__ = (
        "watch",
        "collect",
        "_callback",
        "_header",
        "_remaining",
        "_type",
        "_body",
        "maxMessageLength",
    )

    def __init__(
        self,
        callback: ScanCallback,
        watch: frozenset[bytes] = frozenset(),
        collect: frozenset[bytes] = frozenset(),
        maxMessageLength: int = constants.DEFAULT_MAX_MESSAGE_LENGTH,
    ) -> None:
        self.watch = watch
        self.collect = collect
        self._callback = callback
        self._header = b""
        self._remaining = 0
        self._type = b""
        self._body: bytearray | None = None
        self.maxMessageLength = maxMessageLength

    @property
    def atBoundary(self) -> bool:
        """
        Whether everything fed so far ends exactly at a message boundary.
        """
        return not self._header and not self._remaining

    def _finish(self, end: int) -> None:
        type = self._type
        if self._body is not None:
            body = bytes(self._body)
            self._body = None
            self._callback(type, body, end)
        elif type in self.watch:
            self._callback(type, None, end)

    def feed(self, data: bytes) -> None:
        """
        Scan one chunk; report the watched and collected messages it completes.

        @raise ProtocolViolation: A message length below 4 or above the limit.
        """
        size = len(data)
        offset = 0
        if self._remaining:
            take = self._remaining if self._remaining < size else size
            if self._body is not None:
                self._body += data[:take]
            self._remaining -= take
            offset = take
            if self._remaining:
                return
            self._finish(offset)
        shift = 0
        if self._header:
            # Rare: a header straddled two chunks. Scan the joined bytes and
            # report offsets relative to this chunk.
            shift = len(self._header)
            data = self._header + data
            self._header = b""
            size = len(data)
        unpack = _HEADER.unpack_from
        watch = self.watch
        collect = self.collect
        callback = self._callback
        limit = self.maxMessageLength
        while offset < size:
            if size - offset < 5:
                self._header = data[offset:]
                return
            type, length = unpack(data, offset)
            if length < 4 or length > limit:
                raise ProtocolViolation(f"invalid message length {length}")
            end = offset + 1 + length
            if end <= size:
                if type in collect:
                    callback(type, data[offset + 5 : end], end - shift)
                elif type in watch:
                    callback(type, None, end - shift)
                offset = end
                continue
            # The message continues in a later chunk.
            self._type = type
            self._remaining = end - size
            if type in collect:
                self._body = bytearray(data[offset + 5 :])
            return
