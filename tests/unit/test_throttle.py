"""
Tests for L{pgtwist.net.throttle}: backpressure between a client connection
and the backends lent to it, through L{BackendProtocol.attach} and
L{BackendProtocol.detach}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pgtwist.config.model import ServerSettings
from pgtwist.net.backend import BackendProtocol
from pgtwist.net.throttle import Throttle
from pgtwist.wire import codec, constants
from pgtwist.wire.messages import AuthenticationRequest, ReadyForQuery

SERVER = ServerSettings("primary", "127.0.0.1", 5432, True)


class _Frontend:
    """
    Just what L{BackendProtocol.attach} reads of a frontend: its transport.
    """

    def __init__(self) -> None:
        self.transport = StringTransport()


def _loggedInBackend() -> BackendProtocol:
    """
    A backend logged in over a C{StringTransport}, ready to be attached.
    """
    backend = BackendProtocol(("db", "alice"), SERVER, None, [], Clock())
    backend.makeConnection(StringTransport())
    backend.dataReceived(
        codec.encodeAll([AuthenticationRequest(constants.AUTH_OK), ReadyForQuery()])
    )
    return backend


class _Session:
    """
    The attached session: only what L{BackendProtocol.attach} reaches for.
    """

    def backendDataReceived(self, data: bytes) -> None:
        """
        Ignore PostgreSQL's bytes.
        """


class ThrottleTests(SynchronousTestCase):
    """
    L{Throttle} on its own.
    """

    def test_interface(self) -> None:
        """
        A throttle is a push producer.
        """
        from twisted.internet.interfaces import IPushProducer

        self.assertTrue(verifyObject(IPushProducer, Throttle()))

    def test_ofRegistersOnce(self) -> None:
        """
        L{Throttle.of} registers a throttle with a transport the first time
        and returns that same throttle afterwards.
        """
        transport = StringTransport()
        throttle = Throttle.of(transport)
        self.assertIsInstance(throttle, Throttle)
        self.assertIs(transport.producer, throttle)
        self.assertTrue(transport.streaming)
        self.assertIs(Throttle.of(transport), throttle)

    def test_ofLeavesOtherProducers(self) -> None:
        """
        A transport that already has another producer keeps it: no throttle.
        """
        transport = StringTransport()
        other: Any = object()
        transport.registerProducer(other, True)
        self.assertIsNone(Throttle.of(transport))
        self.assertIs(transport.producer, other)

    def test_ofThroughTLS(self) -> None:
        """
        Over TLS, Twisted registers a membrane wrapping the throttle with
        the transport: L{Throttle.of} finds the throttle inside it rather
        than registering another (which Twisted would refuse).
        """
        from twisted.protocols.tls import _ProducerMembrane

        transport = StringTransport()
        throttle = Throttle()
        transport.registerProducer(_ProducerMembrane(throttle), True)
        self.assertIs(Throttle.of(transport), throttle)
        other = StringTransport()
        other.registerProducer(_ProducerMembrane(object()), True)
        self.assertIsNone(Throttle.of(other))

    def test_pauseAndResumeThePeer(self) -> None:
        """
        Pausing the throttle pauses its peer; resuming resumes it.
        """
        throttle, peer = Throttle(), StringTransport()
        throttle.follow(peer)
        throttle.pauseProducing()
        self.assertEqual(peer.producerState, "paused")
        throttle.resumeProducing()
        self.assertEqual(peer.producerState, "producing")

    def test_followWhilePaused(self) -> None:
        """
        A peer that starts following a paused throttle is paused at once.
        """
        throttle, peer = Throttle(), StringTransport()
        throttle.pauseProducing()
        throttle.follow(peer)
        self.assertEqual(peer.producerState, "paused")

    def test_pauseWithoutPeer(self) -> None:
        """
        With nothing attached a pause is only remembered; C{release} hands
        back the peer it controlled.
        """
        throttle, peer = Throttle(), StringTransport()
        throttle.pauseProducing()
        throttle.resumeProducing()
        throttle.stopProducing()
        throttle.follow(peer)
        self.assertIs(throttle.release(), peer)
        self.assertIsNone(throttle.release())
        self.assertEqual(peer.producerState, "producing")


class AttachedBackpressureTests(SynchronousTestCase):
    """
    Backpressure between a client and the backend attached to it.
    """

    def setUp(self) -> None:
        self.frontend = _Frontend()
        self.backend = _loggedInBackend()
        self.backendTransport: Any = self.backend.transport

    def test_clientFullPausesBackend(self) -> None:
        """
        When the client's buffer fills, the attached backend stops being
        read until it drains.
        """
        self.backend.attach(_Session(), self.frontend)  # type: ignore[arg-type]
        self.frontend.transport.producer.pauseProducing()
        self.assertEqual(self.backendTransport.producerState, "paused")
        self.frontend.transport.producer.resumeProducing()
        self.assertEqual(self.backendTransport.producerState, "producing")

    def test_backendFullPausesClient(self) -> None:
        """
        When the buffer towards PostgreSQL fills, the client stops being read.
        """
        self.backend.attach(_Session(), self.frontend)  # type: ignore[arg-type]
        self.backendTransport.producer.pauseProducing()
        self.assertEqual(self.frontend.transport.producerState, "paused")
        self.backendTransport.producer.resumeProducing()
        self.assertEqual(self.frontend.transport.producerState, "producing")

    def test_detachWhilePausedResumesBackend(self) -> None:
        """
        A backend given back while the client's buffer was full reads again,
        and the client's later backpressure no longer reaches it.
        """
        self.backend.attach(_Session(), self.frontend)  # type: ignore[arg-type]
        self.frontend.transport.producer.pauseProducing()
        self.backendTransport.connected = True
        self.backend.detach()
        self.assertEqual(self.backendTransport.producerState, "producing")
        self.frontend.transport.producer.pauseProducing()
        self.assertEqual(self.backendTransport.producerState, "producing")

    def test_detachWhileBackendFullResumesClient(self) -> None:
        """
        A backend given back while its buffer towards PostgreSQL is full
        lets its client read again, and pauses the next client it serves
        until that buffer drains.
        """
        self.backend.attach(_Session(), self.frontend)  # type: ignore[arg-type]
        throttle = self.backendTransport.producer
        throttle.pauseProducing()
        self.assertEqual(self.frontend.transport.producerState, "paused")
        self.backend.detach()
        self.assertEqual(self.frontend.transport.producerState, "producing")
        other = _Frontend()
        self.backend.attach(_Session(), other)  # type: ignore[arg-type]
        self.assertEqual(other.transport.producerState, "paused")
        throttle.resumeProducing()
        self.assertEqual(other.transport.producerState, "producing")
        self.assertEqual(self.frontend.transport.producerState, "producing")

    def test_nextBackendInheritsPause(self) -> None:
        """
        The next backend lent to a client whose buffer is still full starts
        paused; the throttles are registered once per connection.
        """
        self.backend.attach(_Session(), self.frontend)  # type: ignore[arg-type]
        throttle = self.frontend.transport.producer
        throttle.pauseProducing()
        self.backend.detach()
        other = _loggedInBackend()
        other.attach(_Session(), self.frontend)  # type: ignore[arg-type]
        otherTransport: Any = other.transport
        self.assertIs(self.frontend.transport.producer, throttle)
        self.assertEqual(otherTransport.producerState, "paused")
        throttle.resumeProducing()
        self.assertEqual(otherTransport.producerState, "producing")
        self.assertEqual(self.backendTransport.producerState, "producing")
