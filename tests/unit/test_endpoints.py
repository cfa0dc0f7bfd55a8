"""
Tests for L{pgtwist.net.endpoints}: socket paths, listener descriptions and
connecting to a configured server.
"""

from __future__ import annotations

from twisted.internet.protocol import ClientFactory
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.model import MainSettings, ServerSettings
from pgtwist.net.endpoints import (
    connectServer,
    escape,
    listenBacklog,
    socketPath,
    tcpEndpoint,
    tcpHost,
)


class SocketPathTests(SynchronousTestCase):
    """
    L{socketPath}.
    """

    def test_pgsqlName(self) -> None:
        """
        The socket is C{.s.PGSQL.<port>} in the directory, as libpq names it.
        """
        self.assertEqual(socketPath("/run/pg", 5433), "/run/pg/.s.PGSQL.5433")
        self.assertEqual(socketPath("/run/pg/", 5433), "/run/pg/.s.PGSQL.5433")


class TcpEndpointTests(SynchronousTestCase):
    """
    L{tcpEndpoint}, L{tcpHost}, L{escape} and L{listenBacklog}.
    """

    def test_hosts(self) -> None:
        """
        C{*} is every IPv4 and IPv6 address, C{localhost} is 127.0.0.1, an
        IPv6 address is escaped; the backlog is optional.
        """
        self.assertEqual(tcpEndpoint("*", 6432, 128), "tcp6:6432:interface=\\:\\::backlog=128")
        self.assertEqual(tcpEndpoint("localhost", 6432), "tcp:6432:interface=127.0.0.1")
        self.assertEqual(tcpEndpoint("::1", "9187"), "tcp6:9187:interface=\\:\\:1")
        self.assertEqual(tcpEndpoint("10.0.0.1", 6432, 5), "tcp:6432:interface=10.0.0.1:backlog=5")

    def test_tcpHost(self) -> None:
        """
        Only C{localhost} is rewritten.
        """
        self.assertEqual(tcpHost("localhost"), "127.0.0.1")
        self.assertEqual(tcpHost("db.example"), "db.example")

    def test_escape(self) -> None:
        """
        Backslash, colon and equals sign are escaped for strports.
        """
        self.assertEqual(escape("a\\b:c=d"), "a\\\\b\\:c\\=d")

    def test_backlog(self) -> None:
        """
        C{backlog} wins; by default a quarter of C{max_connections}, at least 128.
        """
        self.assertEqual(listenBacklog(MainSettings(backlog=7)), 7)
        self.assertEqual(listenBacklog(MainSettings(maxConnections=100)), 128)
        self.assertEqual(listenBacklog(MainSettings(maxConnections=1000)), 250)


class ConnectServerTests(SynchronousTestCase):
    """
    L{connectServer}.
    """

    def test_tcp(self) -> None:
        """
        A host name connects over TCP, C{localhost} to 127.0.0.1.
        """
        reactor = MemoryReactorClock()
        factory = ClientFactory()
        connectServer(reactor, ServerSettings("p", "localhost", 5432), factory, 3.0)
        host, port, used, timeout, _ = reactor.tcpClients[0]
        self.assertEqual((host, port, used, timeout), ("127.0.0.1", 5432, factory, 3.0))

    def test_unix(self) -> None:
        """
        A directory connects over its C{.s.PGSQL.<port>} socket.
        """
        reactor = MemoryReactorClock()
        factory = ClientFactory()
        connectServer(reactor, ServerSettings("p", "/run/pg", 5433), factory)
        path, used, timeout, _ = reactor.unixClients[0]
        self.assertEqual((path, used, timeout), ("/run/pg/.s.PGSQL.5433", factory, 30.0))
        self.assertEqual(reactor.tcpClients, [])
