"""
Tests for L{benchmarks.faultproxy}: the soak's fault-injecting TCP proxy,
in front of a small echo server on loopback (no PostgreSQL needed).
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from benchmarks.faultproxy import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    """
    Send back whatever arrives.
    """

    def handle(self) -> None:
        """
        Echo until the peer closes.
        """
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    """
    A L{FaultProxy} in front of an echo server, stopped afterwards.
    """
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    running = FaultProxy("127.0.0.1", server.server_address[1]).start()
    try:
        yield running
    finally:
        running.stop()
        server.shutdown()
        server.server_close()


def connect(proxy: FaultProxy) -> socket.socket:
    """
    A client connection through C{proxy}, with a read timeout.
    """
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    return sock


def roundTrip(sock: socket.socket, data: bytes) -> float:
    """
    Send C{data}, read it back; return how long it took.
    """
    started = time.monotonic()
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = sock.recv(65536)
        assert chunk, "the proxy closed the connection"
        received += chunk
    assert received == data
    return time.monotonic() - started


def test_forwards(proxy: FaultProxy) -> None:
    """
    Bytes go to the upstream and back unchanged, and the proxy counts the
    connection it carries.
    """
    with connect(proxy) as sock:
        roundTrip(sock, b"hello" * 1000)
        assert proxy.connections == 1
        assert proxy.accepted == 1


def test_latency(proxy: FaultProxy) -> None:
    """
    With latency, every chunk waits both ways; without, it no longer does.
    """
    with connect(proxy) as sock:
        proxy.latency(0.1)
        assert roundTrip(sock, b"x") >= 0.2
        proxy.latency(0)
        assert roundTrip(sock, b"x") < 0.2


def test_stallHoldsThenForwards(proxy: FaultProxy) -> None:
    """
    During a stall nothing arrives; what was sent arrives once it ends.
    """
    with connect(proxy) as sock:
        roundTrip(sock, b"warm")
        proxy.stall(0.5)
        assert roundTrip(sock, b"held") >= 0.4


def test_reset(proxy: FaultProxy) -> None:
    """
    A reset cuts every carried connection with an RST; new connections
    are carried again.
    """
    with connect(proxy) as sock:
        roundTrip(sock, b"before")
        assert proxy.reset() == 1
        with pytest.raises(ConnectionResetError):
            sock.sendall(b"after")
            if not sock.recv(10):
                raise ConnectionResetError("closed")
    with connect(proxy) as sock:
        roundTrip(sock, b"again")


def test_cut(proxy: FaultProxy) -> None:
    """
    A cut resets every carried connection, and every new one from then on:
    the upstream is gone for good.
    """
    with connect(proxy) as sock:
        roundTrip(sock, b"before")
        assert proxy.cut() == 1
        with pytest.raises(ConnectionResetError):
            sock.sendall(b"after")
            if not sock.recv(10):
                raise ConnectionResetError("closed")
    for _ in range(2):
        # On loopback the RST may already answer the handshake.
        with pytest.raises((ConnectionResetError, AssertionError)):
            with connect(proxy) as sock:
                roundTrip(sock, b"refused")
    assert proxy.refused == 2
    assert proxy.connections == 0


def test_upstreamRefused() -> None:
    """
    When the upstream refuses, the accepted connection is reset at once.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closedPort = probe.getsockname()[1]
    proxy = FaultProxy("127.0.0.1", closedPort).start()
    try:
        # On loopback the RST may already answer the handshake.
        with pytest.raises((ConnectionResetError, AssertionError)):
            with connect(proxy) as sock:
                roundTrip(sock, b"nobody")
        assert proxy.refused == 1
    finally:
        proxy.stop()
