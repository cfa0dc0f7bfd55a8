# -*- test-case-name: tests.unit.test_net_tlsreads -*-
"""
TLS reads sized to what a reply needs, for both hops.

Twisted's TLS layer (C{TLSMemoryBIOProtocol}) asks pyOpenSSL for 32 KiB at
every C{recv} and C{bio_read}: for each reply pgtwist receives, a C{recv}
that returns the reply and one more that finds nothing, and for each reply it
sends, one C{bio_read}. pyOpenSSL allocates a buffer of the size asked for at
each of those calls. On CPython that costs a fraction of a microsecond; on
PyPy it costs about half a nanosecond per byte asked for (15 µs for 32 KiB),
so the three calls of a small transaction allocated about 45 µs worth, most
of what TLS added to pgtwist's CPU per transaction there
(docs/performance.rst, "TLS on PyPy").

L{SizedReads} asks for 4 KiB first and doubles what it asks for after each
read that filled its buffer, up to what the caller asked for, so small
replies cost small buffers and a large result soon reads in large ones.
What the caller gets is unchanged in meaning: C{recv} returns at most what
was asked for, and Twisted calls it again until it raises C{WantReadError};
C{bio_read}, which Twisted calls once per write, still returns everything
the memory BIO holds up to what was asked for (it reads on while its buffer
fills).
"""

from __future__ import annotations

from typing import TypeVar

from OpenSSL import SSL

__all__ = ["FIRST_READ", "MAX_READ", "SizedReads", "sizeReads"]

_T = TypeVar("_T")

#: The first size asked of OpenSSL, and the least after a short read.
FIRST_READ = 4096
#: The most asked of OpenSSL in one call (Twisted asks for 32 KiB).
MAX_READ = 32768


class SizedReads(SSL.Connection):
    """
    An C{SSL.Connection} whose C{recv} and C{bio_read} ask OpenSSL for a
    buffer sized to recent reads (see the module docstring).

    @ivar _recvSize: What the next C{recv} asks for at most.
    @ivar _bioSize: What the next C{bio_read} asks for at most.
    """

    _recvSize = FIRST_READ
    _bioSize = FIRST_READ

    def recv(self, bufsiz: int, flags: int | None = None) -> bytes:
        """
        C{SSL.Connection.recv}, asking for at most L{_recvSize}: the caller
        reads again for the rest, as it does after any short read.
        """
        size = self._recvSize
        if bufsiz <= size:
            return SSL.Connection.recv(self, bufsiz, flags)
        data = SSL.Connection.recv(self, size, flags)
        if len(data) == size:
            self._recvSize = min(size * 2, MAX_READ)
        return data

    def bio_read(self, bufsiz: int) -> bytes:
        """
        C{SSL.Connection.bio_read}: what the memory BIO holds, up to
        C{bufsiz}, read in buffers of L{_bioSize} (a read that does not fill
        its buffer has emptied the BIO). Raises C{WantReadError} when the
        BIO is empty, as pyOpenSSL does.
        """
        size = self._bioSize
        if bufsiz <= size:
            return SSL.Connection.bio_read(self, bufsiz)
        data = SSL.Connection.bio_read(self, size)
        if len(data) < size:
            return data
        self._bioSize = min(size * 2, MAX_READ)
        parts = [data]
        left = bufsiz - size
        while left > 0:
            asked = min(left, self._bioSize)
            try:
                more = SSL.Connection.bio_read(self, asked)
            except SSL.WantReadError:
                break
            parts.append(more)
            left -= len(more)
            if len(more) < asked:
                break
        return b"".join(parts)


def sizeReads(connection: _T) -> _T:
    """
    Give C{connection}, an C{SSL.Connection} someone else made (Twisted's
    client options make the backend hop's), L{SizedReads}' reads, and
    return it; anything else is returned as it is.
    """
    if type(connection) is SSL.Connection:
        connection.__class__ = SizedReads  # type: ignore[assignment]
    return connection
