# -*- test-case-name: tests.unit.test_bench_floor -*-
"""
The relay floor: what relaying a client's bytes costs on pgtwist's runtime
when the relay does nothing else.

One client connection, one connection to PostgreSQL, bytes copied 1:1 both
ways: pgtwist's reactor (L{pgtwist.net.reactor}, what the C{pgtwist} command
runs on), its eager writes (L{pgtwist.net.eager.eagerWrite}), the same socket
options as pgtwist's (C{TCP_NODELAY} both ways, keepalive to the client), and
no parsing, pooling, accounting or logging. pgbench logs into PostgreSQL
through it.

C{make bench} runs it beside pgtwist in every C{-S} workload (the C{floor}
and C{floor-pypy} rows) and divides pgtwist's CPU per transaction by it on
the same runtime (the C{CPU ÷floor} column): the part above 1.00 is
pgtwist's own code, the part the floor shows is the runtime's (issue 15).
It is not a pooler and serves nothing else.

Run as C{python -m benchmarks.floor --listen PORT --target PORT}; it runs
on CPython and on PyPy 3.9 alike (C{.venv-pypy}), with pgtwist importable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from twisted.internet import protocol

from pgtwist.net.eager import eagerWrite

#: Where the floor listens and connects.
LOOPBACK = "127.0.0.1"


class _Half(protocol.Protocol):
    """
    One side of a relayed connection: everything it receives goes to the
    other side's transport, at once when that one has nothing queued.

    @ivar peer: The other side's transport, or C{None} until both sides are
        connected (the client side is paused until then).
    """

    peer: Any = None

    def dataReceived(self, data: bytes) -> None:
        """
        Relay C{data} to the peer: the whole hot path.
        """
        eagerWrite(self.peer, data)

    def connectionLost(self, reason: object = None) -> None:
        """
        Close the other side too.
        """
        peer = self.peer
        self.peer = None
        if peer is not None:
            peer.loseConnection()


def _socketOptions(transport: Any, keepAlive: bool) -> None:
    """
    The socket options pgtwist sets: C{TCP_NODELAY}, and keepalive on client
    connections.
    """
    try:
        transport.setTcpNoDelay(True)
        if keepAlive:
            transport.setTcpKeepAlive(True)
    except (AttributeError, OSError):
        pass


class ServerHalf(_Half):
    """
    The PostgreSQL side: once connected, pair it with the client side and
    let the client's bytes flow.
    """

    def __init__(self, client: ClientHalf) -> None:
        """
        @param client: The client side it relays for.
        """
        self.client = client

    def connectionMade(self) -> None:
        """
        Pair both sides, each transport the other's streaming producer (a
        side whose peer cannot keep up stops reading), and resume the
        client.
        """
        mine: Any = self.transport
        _socketOptions(mine, keepAlive=False)
        client = self.client
        theirs: Any = client.transport
        if theirs is None or client.closed:
            mine.loseConnection()
            return
        self.peer = theirs
        client.peer = mine
        theirs.registerProducer(mine, True)
        mine.registerProducer(theirs, True)
        theirs.resumeProducing()


class _ServerFactory(protocol.ClientFactory):
    """
    Connects one client's PostgreSQL side; a failed connection closes the
    client.
    """

    noisy = False

    def __init__(self, client: ClientHalf) -> None:
        """
        @param client: The client side to relay for.
        """
        self.client = client

    def buildProtocol(self, addr: object) -> ServerHalf:
        """
        The PostgreSQL side for L{client}.
        """
        return ServerHalf(self.client)

    def clientConnectionFailed(self, connector: object, reason: object) -> None:
        """
        PostgreSQL refused: drop the client.
        """
        transport = self.client.transport
        if transport is not None:
            transport.loseConnection()


class ClientHalf(_Half):
    """
    The client side: paused until its PostgreSQL side is connected.

    @ivar closed: Whether it was closed before that happened.
    """

    closed = False

    def __init__(self, reactor: Any, targetPort: int, targetHost: str = LOOPBACK) -> None:
        """
        @param reactor: Connects the PostgreSQL side.
        @param targetPort: PostgreSQL's port.
        @param targetHost: PostgreSQL's address.
        """
        self.reactor = reactor
        self.targetPort = targetPort
        self.targetHost = targetHost

    def connectionMade(self) -> None:
        """
        Stop reading until PostgreSQL's side is there, and connect it.
        """
        transport: Any = self.transport
        _socketOptions(transport, keepAlive=True)
        transport.pauseProducing()
        self.reactor.connectTCP(self.targetHost, self.targetPort, _ServerFactory(self))

    def connectionLost(self, reason: object = None) -> None:
        """
        Close PostgreSQL's side, or keep it from pairing when it is not
        connected yet.
        """
        self.closed = True
        _Half.connectionLost(self, reason)


class FloorFactory(protocol.ServerFactory):
    """
    Builds a L{ClientHalf} per accepted connection.
    """

    noisy = False

    def __init__(self, reactor: Any, targetPort: int, targetHost: str = LOOPBACK) -> None:
        """
        @param reactor: Connects the PostgreSQL sides.
        @param targetPort: PostgreSQL's port.
        @param targetHost: PostgreSQL's address.
        """
        self.reactor = reactor
        self.targetPort = targetPort
        self.targetHost = targetHost

    def buildProtocol(self, addr: object) -> ClientHalf:
        """
        A new client side relaying to the target.
        """
        return ClientHalf(self.reactor, self.targetPort, self.targetHost)


def parseArguments(argv: Sequence[str]) -> argparse.Namespace:
    """
    The command line: where to listen and where PostgreSQL is.
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.floor",
        description="An empty 1:1 relay on pgtwist's reactor and eager writes (the relay floor).",
    )
    parser.add_argument("--listen", type=int, required=True, metavar="PORT")
    parser.add_argument("--target", type=int, required=True, metavar="PORT")
    parser.add_argument("--host", default=LOOPBACK, help="the address of both (127.0.0.1)")
    parser.add_argument("--backlog", type=int, default=128)
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """
    Install pgtwist's reactor, listen, relay until SIGTERM.
    """
    options = parseArguments(sys.argv[1:] if argv is None else argv)
    from pgtwist.net.reactor import install

    reactor = install()
    factory = FloorFactory(reactor, options.target, options.host)
    reactor.listenTCP(options.listen, factory, backlog=options.backlog, interface=options.host)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
