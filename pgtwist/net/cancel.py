# -*- test-case-name: tests.unit.test_cancel -*-
"""
CancelRequest routing: the keys pgtwist gave its clients, and forwarding a
cancel to the backend a client is using right now.

Each client gets a BackendKeyData of pgtwist's own: in session mode the pid
is its backend's real pid (so C{pg_stat_activity}, C{pg_terminate_backend}
and NOTIFY pids agree with what the driver reports) and the secret is
pgtwist's. A key is forgotten when its client disconnects, so a stale key
never reaches a backend that now serves someone else.

Secrets come from L{secrets} and have PostgreSQL's 32 random bits, held as
the signed Int32 the wire codec reads and writes (a secret of 2**31 or more
on the wire is a negative int here, the same four bytes either way). No bit
of a secret names a worker process: with several workers, a CancelRequest
whose key the worker that took it does not know is offered to every other
worker over their private unix sockets, and only the one that gave out the
key (all 64 bits of it) forwards it to PostgreSQL. A request that arrives
that way is never offered on again.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from pgtwist.config.model import ServerSettings
from pgtwist.config.servertls import strongerThanPrefer
from pgtwist.net import servertls
from pgtwist.net.endpoints import connectServer, releaseConnector
from pgtwist.wire import codec, constants
from pgtwist.wire.messages import CancelRequest

#: Something that can tell which backend a client is using now:
#: returns (server, processId, secretKey) or None.
CancelTarget = Callable[[], Any]

#: The size of a CancelRequest packet (length word included).
CANCEL_REQUEST_LENGTH = 16

#: The code of the other request a worker's private socket takes: close
#: your idle backends to the database named next (NUL-terminated), then
#: answer one byte (C{DROP DATABASE} with C{workers = N}). Not one of
#: PostgreSQL's codes; only other workers of this pgtwist reach that socket.
CLOSE_IDLE_CODE = (1234 << 16) | 5690

#: The longest such request: a database name has at most 63 bytes.
CLOSE_IDLE_MAX_LENGTH = 8 + 64

#: Seconds a connection carrying a CancelRequest to PostgreSQL may take to
#: be made (a cancel that late is of no use to anyone).
CANCEL_CONNECT_TIMEOUT = 10.0


def randomSecret() -> int:
    """
    A cancel secret: 32 bits from L{secrets}, as a signed Int32 (what
    C{BackendKeyData} and C{CancelRequest} carry and the codec decodes).
    """
    value = secrets.randbits(32)
    return value - (1 << 32) if value >= 1 << 31 else value


class CancelRegistry:
    """
    Client cancel keys, and forwarding of CancelRequests.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        randomInt: Callable[[], int] | None = None,
        workerIndex: int = 0,
        workers: int = 1,
        forward: Callable[[int, bytes], None] | None = None,
    ) -> None:
        self._reactor = reactor
        self._randomInt = randomInt or randomSecret
        self._targets: dict[tuple[int, int], CancelTarget] = {}
        #: With several worker processes, C{forward(worker, packet)} offers a
        #: CancelRequest this worker does not know to worker C{worker}.
        self.workerIndex = workerIndex
        self.workers = workers
        self._forward = forward
        #: After an upgrade, offers a CancelRequest whose key is not known
        #: here to the process this one took over from (its clients stayed
        #: there), as C{predecessor(packet)}.
        self.predecessor: Callable[[bytes], None] | None = None

    def __len__(self) -> int:
        return len(self._targets)

    def register(self, processId: int, target: CancelTarget) -> int:
        """
        Give a client the key (C{processId}, secret); return the secret.
        """
        while True:
            secret = self._randomInt()
            if (processId, secret) not in self._targets:
                break
        self._targets[(processId, secret)] = target
        return secret

    def registerKey(self, processId: int, secretKey: int, target: CancelTarget) -> bool:
        """
        Give a client the key it was given by the process this one took it
        over from (an upgrade); C{False}, and nothing registered, when the
        key is taken here already.
        """
        if (processId, secretKey) in self._targets:
            return False
        self._targets[(processId, secretKey)] = target
        return True

    def unregister(self, processId: int, secretKey: int) -> None:
        """
        Forget a key (its client disconnected).
        """
        self._targets.pop((processId, secretKey), None)

    def cancel(self, request: CancelRequest) -> bool:
        """
        Forward C{request} (from a client) to the backend its key names, or
        offer it to the other workers when this one does not know the key.
        Returns whether the key was known here and its client had a backend.
        """
        if (request.processId, request.secretKey) in self._targets:
            return self.cancelHere(request)
        if self.workers > 1 and self._forward is not None:
            packet = codec.encode(request)
            for worker in range(self.workers):
                if worker != self.workerIndex:
                    self._forward(worker, packet)
            if self.predecessor is not None:
                self.predecessor(packet)
            return False
        if self.predecessor is not None:
            self.predecessor(codec.encode(request))
            return False
        self.log.info(
            "CancelRequest with an unknown key for pid {backendPid}",
            backendPid=request.processId,
        )
        return False

    def cancelHere(self, request: CancelRequest) -> bool:
        """
        Forward C{request} to the backend its key names if this worker gave
        out the key; never offer it to another worker (it came from one).
        After an upgrade, a key not known here is offered to the worker this
        one took over from (the client may have stayed there), which offers
        it no further unless it too took over from a process still running.
        """
        target = self._targets.get((request.processId, request.secretKey))
        if target is None:
            if self.predecessor is not None:
                self.predecessor(codec.encode(request))
            return False
        current = target()
        if current is None:
            return False
        server, processId, secretKey = current
        sendCancel(self._reactor, server, processId, secretKey)
        return True


def sendCancel(reactor: Any, server: ServerSettings, processId: int, secretKey: int) -> None:
    """
    Ask C{server} to cancel what backend C{processId} runs: one
    CancelRequest over a new connection (in TLS as for a backend when the
    server's C{sslmode} asks for it), which closes once sent. Nothing is
    answered: PostgreSQL ignores a key it does not know, and a cancel that
    finds its backend idle.

    The connection attempt gives up after L{CANCEL_CONNECT_TIMEOUT}
    seconds; once connected, PostgreSQL closes it (after its
    C{authentication_timeout} at the latest, should a TLS handshake stall).
    """
    packet = codec.encode(CancelRequest(processId, secretKey))
    connectServer(reactor, server, _CancelFactory(packet, server), CANCEL_CONNECT_TIMEOUT)


class _CancelSender(Protocol):
    """
    Sends one CancelRequest packet and closes, as libpq's PQcancel does.

    Toward a server whose C{sslmode} asks for TLS, the request goes inside
    TLS negotiated as for a backend (libpq 17's cancel API does the same),
    so the cancel key never crosses the network in plaintext; a server that
    refuses TLS gets it in plaintext only under C{prefer}.
    """

    log = Logger()

    def __init__(self, packet: bytes, server: ServerSettings | None = None) -> None:
        self._packet = packet
        self._server = server
        self._sslPending = False

    def connectionMade(self) -> None:
        """
        Send and close, or ask for TLS first.
        """
        assert self.transport is not None
        if self._server is not None and servertls.usesTls(self._server):
            self._sslPending = True
            self.transport.write(servertls.SSL_REQUEST)
            return
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.transport.write(self._packet)
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        """
        The answer to the SSLRequest (anything else closes the connection).
        """
        assert self.transport is not None and self._server is not None
        if not self._sslPending:
            self.transport.loseConnection()
            return
        self._sslPending = False
        server = self._server
        if data == b"S":
            try:
                context = servertls.contexts.contextFor(server)
            except ValueError as e:
                self.log.warn(
                    "Cancel request to {server} not sent: {error}", server=server.name, error=str(e)
                )
                self.transport.loseConnection()
                return
            transport: Any = self.transport
            transport.startTLS(context.creator(servertls.TlsReport()))
            self._send()
        elif data == b"N" and not strongerThanPrefer(server.sslmode):
            self._send()
        else:
            self.log.warn(
                "Cancel request to {server} not sent: it answered SSLRequest with {answer!r}",
                server=server.name,
                answer=data[:16],
            )
            self.transport.loseConnection()


class _CancelFactory(ClientFactory):
    noisy = False

    def __init__(self, packet: bytes, server: ServerSettings | None = None) -> None:
        self._packet = packet
        self._server = server

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return _CancelSender(self._packet, self._server)

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        """
        Free the connection by reference counting (see L{releaseConnector}).
        """
        releaseConnector(connector)


def closeIdleRequest(database: str) -> bytes:
    """
    The request that asks another worker to close its idle backends to
    C{database} (L{CLOSE_IDLE_CODE}).
    """
    name = database.encode("utf-8", "surrogateescape") + b"\x00"
    return struct.pack("!ii", 8 + len(name), CLOSE_IDLE_CODE) + name


class _CloseIdleAsker(Protocol):
    """
    Sends one L{closeIdleRequest} and waits for its answer (or the close).
    """

    def __init__(self, packet: bytes, done: Deferred[None]) -> None:
        self._packet = packet
        self._done = done

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._packet)

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        if not self._done.called:
            self._done.callback(None)


class CloseIdleFactory(ClientFactory):
    """
    Asks another worker, on its private socket, to close its idle backends
    to a database; C{done} fires once it answered, closed, or could not be
    reached (the statement then goes on, as PostgreSQL would decide).
    """

    noisy = False

    def __init__(self, database: str) -> None:
        self._packet = closeIdleRequest(database)
        self.done: Deferred[None] = Deferred()

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return _CloseIdleAsker(self._packet, self.done)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if not self.done.called:
            self.done.callback(None)


class _OfferedCancel(Protocol):
    """
    One CancelRequest another worker offers on this worker's private unix
    socket: exactly one 16-byte packet, read within a few seconds; or one
    request to close this worker's idle backends to a database
    (L{CLOSE_IDLE_CODE}), answered with one byte once they are closed.
    Anything else closes the connection unanswered.
    """

    #: Seconds a sender has to deliver its packet.
    timeOut = 5.0

    def __init__(
        self,
        registry: CancelRegistry,
        reactor: Any,
        closeIdle: Callable[[str], Deferred[None]] | None = None,
    ) -> None:
        self._registry = registry
        self._reactor = reactor
        self._closeIdle = closeIdle
        self._buffer: bytes | None = b""
        self._timer: Any = None

    def connectionMade(self) -> None:
        """
        Start the clock: a sender that stalls is dropped.
        """
        assert self.transport is not None
        self._timer = self._reactor.callLater(self.timeOut, self.transport.loseConnection)

    def dataReceived(self, data: bytes) -> None:
        """
        Collect the packet; act on it once whole.
        """
        assert self.transport is not None
        if self._buffer is None:
            return
        self._buffer += data
        buffer = self._buffer
        if len(buffer) >= 8 and self._closeIdle is not None:
            length, code = struct.unpack_from("!ii", buffer)
            if code == CLOSE_IDLE_CODE and 8 < length <= CLOSE_IDLE_MAX_LENGTH:
                if len(buffer) < length:
                    return
                self._buffer = None
                name = buffer[8:length]
                if name[-1:] != b"\x00" or b"\x00" in name[:-1]:
                    self.transport.loseConnection()
                    return
                d = self._closeIdle(name[:-1].decode("utf-8", "surrogateescape"))
                d.addBoth(self._closed)
                return
        if len(buffer) < CANCEL_REQUEST_LENGTH:
            return
        packet, self._buffer = self._buffer[:CANCEL_REQUEST_LENGTH], None
        self.transport.loseConnection()
        length, code, processId, secretKey = struct.unpack("!iiii", packet)
        if length == CANCEL_REQUEST_LENGTH and code == constants.CANCEL_REQUEST_CODE:
            self._registry.cancelHere(CancelRequest(processId, secretKey))

    def _closed(self, result: object) -> None:
        """
        This worker's idle backends to the database are gone: answer.
        """
        transport = self.transport
        if transport is not None and getattr(transport, "connected", True):
            transport.write(b"C")
            transport.loseConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        """
        Stop the clock.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class OfferedCancelFactory(Factory):
    """
    Serves a worker's private cancel socket: CancelRequests offered by the
    other workers, and nothing else (it is not a client listener).
    """

    noisy = False

    def __init__(
        self,
        registry: CancelRegistry,
        reactor: Any,
        closeIdle: Callable[[str], Deferred[None]] | None = None,
    ) -> None:
        """
        @param closeIdle: Closes this worker's idle backends to a database
            (L{pgtwist.pool.poolset.PoolSet.closeIdleBackendsHere}).
        """
        self._registry = registry
        self._reactor = reactor
        self._closeIdle = closeIdle

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """
        One protocol per offered request.
        """
        return _OfferedCancel(self._registry, self._reactor, self._closeIdle)
