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
on the wire is a negative int here, the same four bytes either way). With
several worker processes the lowest bits name the worker that owns the key:
as few as the count needs (1 for 2 workers, 4 for 16).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger

from pgtwist.net.endpoints import connectServer
from pgtwist.wire import codec
from pgtwist.wire.messages import CancelRequest

#: Something that can tell which backend a client is using now:
#: returns (server, processId, secretKey) or None.
CancelTarget = Callable[[], Any]


#: The low bits of a cancel secret that can name its worker process (16 at most).
WORKER_MASK = 0xF


def randomSecret() -> int:
    """
    A cancel secret: 32 bits from L{secrets}, as a signed Int32 (what
    C{BackendKeyData} and C{CancelRequest} carry and the codec decodes).
    """
    value = secrets.randbits(32)
    return value - (1 << 32) if value >= 1 << 31 else value


def workerMask(workers: int) -> int:
    """
    The low bits of a secret that name one of C{workers} processes: none for
    one worker, then as many as C{workers - 1} needs.
    """
    return (1 << (max(workers, 1) - 1).bit_length()) - 1


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
        #: With several worker processes, a secret's low bits name the worker
        #: that owns the key, and C{forward(worker, packet)} sends a
        #: CancelRequest that reached the wrong worker to the right one.
        self.workerIndex = workerIndex
        self.workers = workers
        self._mask = workerMask(workers)
        self._forward = forward

    def __len__(self) -> int:
        return len(self._targets)

    def register(self, processId: int, target: CancelTarget) -> int:
        """
        Give a client the key (C{processId}, secret); return the secret.
        """
        while True:
            secret = self._randomInt()
            if self.workers > 1:
                secret = (secret & ~self._mask) | self.workerIndex
            if (processId, secret) not in self._targets:
                break
        self._targets[(processId, secret)] = target
        return secret

    def unregister(self, processId: int, secretKey: int) -> None:
        """
        Forget a key (its client disconnected).
        """
        self._targets.pop((processId, secretKey), None)

    def cancel(self, request: CancelRequest) -> bool:
        """
        Forward C{request} to the backend its key names. Returns whether the key
        was known and its client had a backend.
        """
        if self.workers > 1 and self._forward is not None:
            owner = request.secretKey & self._mask
            if owner != self.workerIndex:
                if owner < self.workers:
                    self._forward(owner, codec.encode(request))
                return False
        target = self._targets.get((request.processId, request.secretKey))
        if target is None:
            self.log.info(
                "CancelRequest with an unknown key for pid {backendPid}",
                backendPid=request.processId,
            )
            return False
        current = target()
        if current is None:
            return False
        server, processId, secretKey = current
        packet = codec.encode(CancelRequest(processId, secretKey))
        factory = _CancelFactory(packet)
        connectServer(self._reactor, server, factory)
        return True


class _CancelSender(Protocol):
    """
    Sends one CancelRequest packet and closes, as libpq's PQcancel does.
    """

    def __init__(self, packet: bytes) -> None:
        self._packet = packet

    def connectionMade(self) -> None:
        """
        Send and close.
        """
        assert self.transport is not None
        self.transport.write(self._packet)
        self.transport.loseConnection()


class _CancelFactory(ClientFactory):
    noisy = False

    def __init__(self, packet: bytes) -> None:
        self._packet = packet

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return _CancelSender(self._packet)
