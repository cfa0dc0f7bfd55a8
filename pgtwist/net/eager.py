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
"""

from __future__ import annotations

from typing import Any


def eagerWrite(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}, sending it immediately when possible.

    Falls back to C{transport.write} for anything that is not a socket
    transport with empty buffers (test transports, a paused or closing
    connection, a partial send). Never call it for a connection that has
    started TLS: the socket is still there, and C{send()} would put
    plaintext on it past the TLS layer. The frontend and backend protocols
    stop using it once their connection starts TLS.
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
