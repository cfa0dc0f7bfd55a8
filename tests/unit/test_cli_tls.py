"""
Tests for L{pgtwist.cli._tls}: the SSLRequest negotiation of
C{pgtwist-cli}'s remote mode with fake sockets, the TLS client contexts
each C{--sslmode} builds, and the C{--ssl*} options on the command line.
"""

from __future__ import annotations

import os
import ssl

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.cli._tls import TlsOptions, TlsRefused, clientContext, negotiate
from pgtwist.testing.certs import CertificateAuthority
from pgtwist.wire import codec
from pgtwist.wire.messages import SSLRequest
from tests.unit._tempdir import temporaryDirectory
from tests.unit.test_cli import FakeConsole, _CliTestCase


class FakeSocket:
    """
    A socket that records what is sent and answers from a buffer.

    @ivar sent: Everything sent.
    @ivar sizes: The size of every C{recv}.
    """

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.sent = b""
        self.sizes: list[int] = []

    def sendall(self, data: bytes) -> None:
        """
        Record C{data}.
        """
        self.sent += data

    def recv(self, size: int) -> bytes:
        """
        Up to C{size} bytes of the answer.
        """
        self.sizes.append(size)
        data, self.answer = self.answer[:size], self.answer[size:]
        return data


SSL_REQUEST = codec.encode(SSLRequest())


class NegotiateTests(SynchronousTestCase):
    """
    L{negotiate}: the SSLRequest and pgtwist's one-byte answer.
    """

    def test_disable(self) -> None:
        """
        C{disable} sends nothing and reads nothing.
        """
        sock = FakeSocket(b"")
        self.assertFalse(negotiate(sock, "disable"))  # type: ignore[arg-type]
        self.assertEqual((sock.sent, sock.sizes), (b"", []))

    def test_accepted(self) -> None:
        """
        On C{S} TLS starts, and only the answer byte is read: bytes behind it
        are left to the TLS layer, never taken as pgtwist's reply.
        """
        for mode in ("prefer", "require", "verify-ca", "verify-full"):
            sock = FakeSocket(b"SR\x00\x00\x00\x08\x00\x00\x00\x00")
            self.assertTrue(negotiate(sock, mode), mode)  # type: ignore[arg-type]
            self.assertEqual(sock.sent, SSL_REQUEST)
            self.assertEqual(sock.sizes, [1])

    def test_refusedPrefer(self) -> None:
        """
        On C{N}, C{prefer} goes on in plaintext.
        """
        sock = FakeSocket(b"N")
        self.assertFalse(negotiate(sock, "prefer"))  # type: ignore[arg-type]
        self.assertEqual(sock.sent, SSL_REQUEST)

    def test_refusedRequire(self) -> None:
        """
        On C{N} every stronger mode gives up, saying why.
        """
        for mode in ("require", "verify-ca", "verify-full"):
            error = self.assertRaises(
                TlsRefused,
                negotiate,
                FakeSocket(b"N"),  # type: ignore[arg-type]
                mode,
            )
            self.assertIn("does not offer TLS", str(error))
            self.assertIn(mode, str(error))

    def test_oddAnswers(self) -> None:
        """
        A hang-up or any other byte (an ErrorResponse from something that
        is not pgtwist) is refused, even in C{prefer}.
        """
        for answer, words in ((b"", "closed"), (b"E", "unexpected")):
            error = self.assertRaises(
                TlsRefused,
                negotiate,
                FakeSocket(answer),  # type: ignore[arg-type]
                "prefer",
            )
            self.assertIn(words, str(error))


class ContextTests(SynchronousTestCase):
    """
    L{clientContext} and L{TlsOptions.check}: what each mode verifies.
    """

    def setUp(self) -> None:
        self.directory = str(temporaryDirectory(self))
        self.ca = CertificateAuthority()
        self.caFile = self.ca.writeCertificate(self.directory)
        self.cert, self.key = self.ca.issue("admin", client=True).write(self.directory, "admin")

    def test_unverified(self) -> None:
        """
        C{prefer} and C{require} without a root certificate check nothing
        (libpq's meaning); both ask for TLS 1.2 or later.
        """
        for mode in ("prefer", "require"):
            context = clientContext(TlsOptions(mode))
            self.assertEqual(context.verify_mode, ssl.CERT_NONE)
            self.assertFalse(context.check_hostname)
            self.assertEqual(context.minimum_version, ssl.TLSVersion.TLSv1_2)

    def test_verified(self) -> None:
        """
        C{verify-ca} checks the chain; C{verify-full} the host name too;
        C{require} with a root certificate checks the chain, as libpq does.
        """
        for mode, hostname in (("require", False), ("verify-ca", False), ("verify-full", True)):
            context = clientContext(TlsOptions(mode, self.caFile))
            self.assertEqual(context.verify_mode, ssl.CERT_REQUIRED, mode)
            self.assertEqual(context.check_hostname, hostname, mode)
            self.assertEqual(len(context.get_ca_certs()), 1, mode)

    def test_clientCertificate(self) -> None:
        """
        C{--sslcert}/C{--sslkey} are loaded; a key that is not the
        certificate's, or a missing root certificate, is refused naming the
        file.
        """
        clientContext(TlsOptions("verify-full", self.caFile, self.cert, self.key))
        _, otherKey = self.ca.issue("other", client=True).write(self.directory, "other")
        error = self.assertRaises(
            ValueError, clientContext, TlsOptions("require", None, self.cert, otherKey)
        )
        self.assertIn(otherKey, str(error))
        missing = os.path.join(self.directory, "missing.crt")
        error = self.assertRaises(ValueError, clientContext, TlsOptions("verify-ca", missing))
        self.assertIn(missing, str(error))

    def test_check(self) -> None:
        """
        Contradictory options are refused before connecting: an unknown
        mode, a verify mode without a root certificate, a certificate
        without its key, certificates with C{disable}, and a key file
        others may read.
        """
        for options, words in (
            (TlsOptions("allow"), "--sslmode"),
            (TlsOptions("verify-full"), "--sslrootcert"),
            (TlsOptions("require", None, self.cert), "go together"),
            (TlsOptions("disable", self.caFile), "no certificates"),
        ):
            error = self.assertRaises(ValueError, options.check)
            self.assertIn(words, str(error))
        os.chmod(self.key, 0o604)
        error = self.assertRaises(
            ValueError, TlsOptions("require", None, self.cert, self.key).check
        )
        self.assertIn(self.key, str(error))


class RemoteTlsTests(_CliTestCase):
    """
    The C{--ssl*} options of C{pgtwist-cli}.
    """

    remote = ["-h", "127.0.0.1", "-p", "6544", "-U", "admin", "-P", "s3cret"]

    def test_preferByDefault(self) -> None:
        """
        Remote mode asks for TLS first by default and, as libpq's
        C{prefer}, goes on in plaintext when pgtwist answers C{N}.
        """
        self.console.password = "s3cret"
        status, out, err = self.invoke(*self.remote, "status", local=False)
        self.assertEqual(status, 0, err)
        self.assertEqual(self.console.sslRequests, 1)
        self.assertEqual(self.console.queries, ["SHOW STATUS"])

    def test_disable(self) -> None:
        """
        C{--sslmode disable} sends no SSLRequest.
        """
        self.console.password = "s3cret"
        argv = [*self.remote, "--sslmode", "disable", "status"]
        status, out, err = self.invoke(*argv, local=False)
        self.assertEqual(status, 0, err)
        self.assertEqual(self.console.sslRequests, 0)

    def test_requireRefused(self) -> None:
        """
        C{--sslmode require} against a pgtwist without TLS exits 1 (a
        connection error) before the password or any command is sent.
        """
        self.console = FakeConsole(password="s3cret")
        argv = [*self.remote, "--sslmode", "require", "status"]
        status, out, err = self.invoke(*argv, local=False)
        self.assertEqual((status, out), (1, ""))
        self.assertIn("does not offer TLS", err)
        self.assertIn("127.0.0.1:6544", err)
        self.assertIsNone(self.console.startup)
        self.assertEqual(self.console.passwords, [])

    def test_usageErrors(self) -> None:
        """
        TLS options in local mode, or contradicting each other, are usage
        errors (exit 1) and nothing is connected.
        """
        status, out, err = self.invoke("--sslmode", "require", "status")
        self.assertEqual(status, 1)
        self.assertIn("-h and -p", err)
        argv = [*self.remote, "--sslmode", "verify-full", "status"]
        status, out, err = self.invoke(*argv, local=False)
        self.assertEqual(status, 1)
        self.assertIn("--sslrootcert", err)
        self.assertEqual(self.connections, [])

    def test_environment(self) -> None:
        """
        libpq's C{PGSSLMODE} (and C{PGSSLROOTCERT}...) stand for options not
        given, as with psql; the command line wins; a usage error names the
        variable; local mode ignores them.
        """
        self.console.password = "s3cret"
        self.patch(os, "environ", {**self.environ, "PGSSLMODE": "disable"})
        status, out, err = self.invoke(*self.remote, "status", local=False)
        self.assertEqual(status, 0, err)
        self.assertEqual(self.console.sslRequests, 0)
        self.console = FakeConsole(password="s3cret")
        argv = [*self.remote, "--sslmode", "prefer", "status"]
        status, out, err = self.invoke(*argv, local=False)
        self.assertEqual(status, 0, err)
        self.assertEqual(self.console.sslRequests, 1)
        self.patch(os, "environ", {**self.environ, "PGSSLMODE": "verify-full"})
        status, out, err = self.invoke(*self.remote, "status", local=False)
        self.assertEqual(status, 1)
        self.assertIn("--sslrootcert", err)
        self.assertIn("(from the environment: PGSSLMODE)", err)
        self.console = FakeConsole()
        status, out, err = self.invoke("status")
        self.assertEqual(status, 0, err)
