# -*- test-case-name: tests.unit.test_throttle -*-
"""
Backpressure between a client connection and whichever backend serves it.

When a connection's write buffer fills up, Twisted pauses the producer
registered with it. The producer that matters changes all the time in
transaction pooling: the backend lent to the client for this transaction.
Registering and unregistering producers both ways on every attach and
detach cost four calls into Twisted per transaction; instead each
connection registers one L{Throttle} once, and attaching a backend only
points the throttles at the new peer.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class Throttle:
    """
    The producer registered with one connection: it pauses and resumes
    reading on the connection that currently writes into it (C{peer}).

    @ivar peer: The transport whose reading this throttle controls, or
        C{None} while nothing is attached.
    @ivar paused: Whether the connection this throttle is registered with
        has asked for a pause (its write buffer is full).
    """

    __slots__ = ("peer", "paused")

    def __init__(self) -> None:
        self.peer: Any = None
        self.paused = False

    @classmethod
    def of(cls, transport: Any) -> Throttle | None:
        """
        The throttle registered with C{transport}, registering one first
        when it has no producer yet; C{None} for a transport that takes no
        producers (or already has another).
        """
        producer = getattr(transport, "producer", None)
        if isinstance(producer, cls):
            return producer
        if producer is not None:
            # Over TLS, Twisted's TLS layer registers a membrane around the
            # producer it was given; the throttle is inside.
            inner = getattr(producer, "_producer", None)
            return inner if isinstance(inner, cls) else None
        if not hasattr(transport, "registerProducer"):
            return None
        throttle = cls()
        transport.registerProducer(throttle, True)
        return throttle

    def follow(self, peer: Any) -> None:
        """
        Control C{peer} from now on; pause it at once if the connection
        this throttle serves is still full.
        """
        self.peer = peer
        if self.paused and peer is not None:
            peer.pauseProducing()

    def release(self) -> Any:
        """
        Stop controlling the peer; return it (or C{None}) so the caller can
        let it read again if it is to be reused.
        """
        peer, self.peer = self.peer, None
        return peer

    def pauseProducing(self) -> None:
        """
        The connection's buffer is full: stop reading from the peer.
        """
        self.paused = True
        if self.peer is not None:
            self.peer.pauseProducing()

    def resumeProducing(self) -> None:
        """
        The connection's buffer drained: read from the peer again.
        """
        self.paused = False
        if self.peer is not None:
            self.peer.resumeProducing()

    def stopProducing(self) -> None:
        """
        The connection is gone: nothing to do; its owner detaches the peer.
        """


__all__ = ["Throttle"]
