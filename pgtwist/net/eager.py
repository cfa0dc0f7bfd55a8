# -*- test-case-name: tests.unit.test_eager -*-
"""
Send at once when a transport has nothing queued.

Twisted's C{FileDescriptor.write} only buffers and calls C{startWriting()};
the bytes leave on the next reactor turn, after which C{stopWriting()} runs:
two C{epoll_ctl} calls per write and an extra wake-up. A pooler writes one
small reply per request, so that path costs it about 40 % of its CPU
(PERFORMANCE.md). L{eagerWrite} calls C{send()} directly when the transport's
buffers are empty and hands whatever the kernel did not take to the normal
C{write()}, so buffering, producers and backpressure behave as before.

Over TLS the same holds one layer down: L{eagerSend} sends the encrypted
records Twisted's TLS layer produces straight to the socket, and hands what
the kernel did not take to the TLS layer's own lower write (see
L{pgtwist.net.tls.eagerTLS}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def eagerWrite(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}, sending it immediately when possible.

    Falls back to C{transport.write} for anything that is not a socket
    transport with empty buffers (test transports, a paused or closing
    connection, a partial send). Never call it for a connection that has
    started TLS: the socket is still there, and C{send()} would put
    plaintext on it past the TLS layer. The frontend and backend protocols
    stop using it once their connection starts TLS (L{eagerSend} is for the
    bytes under the TLS layer).
    """
    try:
        if (
            transport._tempDataLen
            or len(transport.dataBuffer) > transport.offset
            or transport.disconnecting
            or not transport.connected
        ):
            transport.write(data)
            return
        sock = transport.socket
    except AttributeError:
        transport.write(data)
        return
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        # Let the normal path notice the error and close the connection.
        transport.write(data)
        return
    if sent < len(data):
        transport.write(data[sent:])


def eagerSend(transport: Any, fallback: Callable[[bytes], object], data: bytes) -> None:
    """
    Send C{data} on C{transport}'s socket at once when nothing is queued
    there, else give it (or what the kernel did not take) to C{fallback}.

    L{eagerWrite} for a connection that has started TLS: C{data} is already
    encrypted, and C{fallback} is the TLS layer's write to the connection
    (Twisted's C{_BypassTLS.write}: C{FileDescriptor.write} without
    encrypting again), never C{transport.write}, which would encrypt it a
    second time. A separate function rather than an argument of
    L{eagerWrite}, so that the plaintext path stays exactly as it was.

    @param transport: The connection's C{FileDescriptor}, whose buffers and
        socket are checked and used.
    @param fallback: Where the bytes go when they cannot all be sent now;
        it must append to C{transport}'s buffers, so that order is kept.
    """
    try:
        if (
            transport._tempDataLen
            or len(transport.dataBuffer) > transport.offset
            or transport.disconnecting
            or not transport.connected
        ):
            fallback(data)
            return
        sock = transport.socket
    except AttributeError:
        fallback(data)
        return
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        # Let the normal path notice the error and close the connection.
        fallback(data)
        return
    if sent < len(data):
        fallback(data[sent:])
