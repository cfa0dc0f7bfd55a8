"""
Tests for L{pgtwist.net.eager.eagerWrite}.
"""

from __future__ import annotations

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.net.eager import eagerWrite


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
