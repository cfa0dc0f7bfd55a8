"""
Tests for L{pgtwist.net.eager.eagerWrite} and L{pgtwist.net.eager.eagerSend}.
"""

from __future__ import annotations

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.net.eager import eagerSend, eagerWrite


class FakeSocket:
    """
    A socket that accepts at most C{room} bytes per send.
    """

    def __init__(self, room: int) -> None:
        self.room = room
        self.sent = b""

    def send(self, data: bytes) -> int:
        """
        Take what fits.
        """
        if self.room == 0:
            raise BlockingIOError()
        taken = data[: self.room]
        self.sent += taken
        return len(taken)


class FakeFileDescriptor:
    """
    Just the attributes of C{FileDescriptor} that L{eagerWrite} reads.
    """

    def __init__(self, room: int) -> None:
        self.socket = FakeSocket(room)
        self._tempDataLen = 0
        self.dataBuffer = b""
        self.offset = 0
        self.disconnecting = False
        self.connected = True
        self.buffered = b""

    def write(self, data: bytes) -> None:
        """
        The normal buffered path.
        """
        self.buffered += data
        self._tempDataLen += len(data)


class EagerWriteTests(SynchronousTestCase):
    """
    Sent at once when nothing is queued; the rest goes through C{write()}.
    """

    def test_sentAtOnce(self) -> None:
        """
        With empty buffers the bytes go straight to the socket.
        """
        transport = FakeFileDescriptor(room=100)
        eagerWrite(transport, b"hello")
        self.assertEqual((transport.socket.sent, transport.buffered), (b"hello", b""))

    def test_partialSend(self) -> None:
        """
        What the kernel did not take is buffered, in order.
        """
        transport = FakeFileDescriptor(room=2)
        eagerWrite(transport, b"hello")
        self.assertEqual((transport.socket.sent, transport.buffered), (b"he", b"llo"))

    def test_wouldBlock(self) -> None:
        """
        A full socket buffer sends everything through C{write()}.
        """
        transport = FakeFileDescriptor(room=0)
        eagerWrite(transport, b"hello")
        self.assertEqual(transport.buffered, b"hello")

    def test_queuedDataKeepsOrder(self) -> None:
        """
        When bytes are queued already, new ones queue behind them.
        """
        transport = FakeFileDescriptor(room=100)
        transport.write(b"first")
        eagerWrite(transport, b"second")
        self.assertEqual((transport.socket.sent, transport.buffered), (b"", b"firstsecond"))

    def test_otherTransports(self) -> None:
        """
        Transports without a socket (TLS, tests) use plain C{write()}.
        """
        transport = StringTransport()
        eagerWrite(transport, b"hello")
        self.assertEqual(transport.value(), b"hello")


class EagerSendTests(SynchronousTestCase):
    """
    L{eagerSend} sends as L{eagerWrite} does, but whatever cannot be sent
    goes to the fallback it is given (the TLS layer's lower write), never to
    the transport's own C{write()}.
    """

    def setUp(self) -> None:
        self.fellBack: list[bytes] = []

    def fallback(self, data: bytes) -> None:
        """
        Record C{data}, standing for C{_BypassTLS.write}.
        """
        self.fellBack.append(data)

    def test_sentAtOnce(self) -> None:
        """
        With empty buffers the bytes go straight to the socket.
        """
        transport = FakeFileDescriptor(room=100)
        eagerSend(transport, self.fallback, b"record")
        self.assertEqual(
            (transport.socket.sent, transport.buffered, self.fellBack), (b"record", b"", [])
        )

    def test_partialSend(self) -> None:
        """
        What the kernel did not take goes to the fallback, in order.
        """
        transport = FakeFileDescriptor(room=2)
        eagerSend(transport, self.fallback, b"record")
        self.assertEqual((transport.socket.sent, self.fellBack), (b"re", [b"cord"]))
        self.assertEqual(transport.buffered, b"")

    def test_wouldBlock(self) -> None:
        """
        A full socket buffer sends everything to the fallback.
        """
        transport = FakeFileDescriptor(room=0)
        eagerSend(transport, self.fallback, b"record")
        self.assertEqual(self.fellBack, [b"record"])

    def test_queuedDataKeepsOrder(self) -> None:
        """
        When bytes are queued already, new ones go to the fallback behind
        them, even though the socket has room.
        """
        transport = FakeFileDescriptor(room=100)
        transport.write(b"first")
        eagerSend(transport, self.fallback, b"second")
        self.assertEqual((transport.socket.sent, self.fellBack), (b"", [b"second"]))

    def test_pendingBuffer(self) -> None:
        """
        Bytes still in C{dataBuffer} past C{offset} also count as queued.
        """
        transport = FakeFileDescriptor(room=100)
        transport.dataBuffer = b"xxqueued"
        transport.offset = 2
        eagerSend(transport, self.fallback, b"record")
        self.assertEqual((transport.socket.sent, self.fellBack), (b"", [b"record"]))

    def test_closing(self) -> None:
        """
        A disconnecting or disconnected transport is left to the fallback.
        """
        closing = FakeFileDescriptor(room=100)
        closing.disconnecting = True
        eagerSend(closing, self.fallback, b"one")
        closed = FakeFileDescriptor(room=100)
        closed.connected = False
        eagerSend(closed, self.fallback, b"two")
        self.assertEqual((closing.socket.sent, closed.socket.sent), (b"", b""))
        self.assertEqual(self.fellBack, [b"one", b"two"])

    def test_socketError(self) -> None:
        """
        A send that fails hands everything to the fallback, whose normal
        path then notices the error.
        """
        transport = FakeFileDescriptor(room=100)

        def broken(data: bytes) -> int:
            raise ConnectionResetError()

        transport.socket.send = broken  # type: ignore[method-assign]
        eagerSend(transport, self.fallback, b"record")
        self.assertEqual(self.fellBack, [b"record"])

    def test_otherTransports(self) -> None:
        """
        Transports without a socket use the fallback, not their C{write()}.
        """
        transport = StringTransport()
        eagerSend(transport, self.fallback, b"record")
        self.assertEqual((transport.value(), self.fellBack), (b"", [b"record"]))
