"""
Tests for L{pgtwist.net.tlsreads}: reads sized to the replies give the
caller the same bytes as pyOpenSSL's own, over memory BIOs (no sockets).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.net.tlsreads import FIRST_READ, MAX_READ, SizedReads, sizeReads
from pgtwist.testing.certs import CertificateAuthority

_ISSUED = CertificateAuthority().issue("localhost", ["localhost"])


def _pair() -> tuple[SizedReads, SizedReads]:
    """
    A server and a client L{SizedReads} over memory BIOs, handshake done.
    """
    serverContext = SSL.Context(SSL.TLS_METHOD)
    serverContext.use_certificate(x509.load_pem_x509_certificate(_ISSUED.certificatePEM))
    serverContext.use_privatekey(load_pem_private_key(_ISSUED.privateKeyPEM, None))  # type: ignore[arg-type]
    server = SizedReads(serverContext, None)
    server.set_accept_state()
    client = SizedReads(SSL.Context(SSL.TLS_METHOD), None)
    client.set_connect_state()
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except SSL.WantReadError:
                pass
        _pump(client, server)
        _pump(server, client)
    return server, client


def _pump(source: SSL.Connection, sink: SSL.Connection) -> int:
    """
    Move what C{source} wrote into C{sink}, 32 KiB at a time as Twisted
    asks; return how many bytes moved.
    """
    moved = 0
    while True:
        try:
            data = source.bio_read(2**15)
        except SSL.WantReadError:
            return moved
        sink.bio_write(data)
        moved += len(data)


def _receiveAll(connection: SSL.Connection) -> bytes:
    """
    What Twisted's TLS layer does with received records: C{recv(2**15)}
    until C{WantReadError}.
    """
    parts = []
    while True:
        try:
            parts.append(connection.recv(2**15))
        except SSL.WantReadError:
            return b"".join(parts)


class SizedReadsTests(SynchronousTestCase):
    """
    L{SizedReads} asks OpenSSL for small buffers first and returns what
    pyOpenSSL would.
    """

    def test_smallReply(self) -> None:
        """
        A small reply is read whole with the first, small buffers, and the
        read that finds nothing raises C{WantReadError} as before.
        """
        server, client = _pair()
        client.send(b"Q" * 100)
        _pump(client, server)
        self.assertEqual(_receiveAll(server), b"Q" * 100)
        self.assertEqual(server._recvSize, FIRST_READ)
        self.assertRaises(SSL.WantReadError, server.recv, 2**15)
        self.assertRaises(SSL.WantReadError, server.bio_read, 2**15)

    def test_largeTransfer(self) -> None:
        """
        A megabyte each way arrives whole and in order, and the buffers grow
        to L{MAX_READ}.
        """
        server, client = _pair()
        payload = bytes(range(256)) * 4096
        sent = 0
        received = []
        while sent < len(payload):
            sent += client.send(payload[sent : sent + 2**14])
            _pump(client, server)
            received.append(_receiveAll(server))
        self.assertEqual(b"".join(received), payload)
        self.assertEqual(server._recvSize, MAX_READ)
        self.assertEqual(client._bioSize, MAX_READ)

    def test_bioReadEmptiesUpToAsked(self) -> None:
        """
        C{bio_read} still returns everything the BIO holds up to what was
        asked for, reading on past its own buffer, and leaves the rest: a
        caller that reads once per write (Twisted) loses nothing.
        """
        server, client = _pair()
        for _ in range(3):
            client.send(b"x" * 2**14)
        held = client.bio_read(2**15)
        self.assertEqual(len(held), 2**15)
        rest = client.bio_read(2**17)
        self.assertGreater(len(rest), 2**14)
        self.assertRaises(SSL.WantReadError, client.bio_read, 2**15)
        server.bio_write(held + rest)
        self.assertEqual(_receiveAll(server), b"x" * 3 * 2**14)

    def test_sizeReads(self) -> None:
        """
        L{sizeReads} gives a connection someone else made these reads, and
        leaves alone what is not a plain C{SSL.Connection}.
        """
        connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
        self.assertIs(sizeReads(connection), connection)
        self.assertIsInstance(connection, SizedReads)
        other = object()
        self.assertIs(sizeReads(other), other)
