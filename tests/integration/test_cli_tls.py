"""
C{pgtwist-cli}'s remote mode over TLS against a small TLS server in the
test (Python's L{ssl}): it answers the SSLRequest with C{S}, completes the
handshake, reads the StartupMessage inside TLS and refuses the login with a
message naming what it saw, so the CLI's exit and error say how far it got.
The client-facing TLS of pgtwist's own listeners is tested with them.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pgtwist.cli.control import main
from pgtwist.testing.certs import CertificateAuthority
from pgtwist.wire import codec
from pgtwist.wire.errors import fatal
from pgtwist.wire.messages import SSLRequest
from tests.integration.clients import waitFor

SSL_REQUEST = codec.encode(SSLRequest())


@dataclass
class TlsConsole:
    """
    The test server: one connection at a time, each recorded.

    @ivar port: Where it listens, on 127.0.0.1.
    @ivar seen: One line per connection: C{"tls <version> <alpn> <peer CN>"}
        once the startup arrived inside TLS, else what went wrong.
    @ivar smuggle: Bytes sent in plaintext right after the C{S}.
    """

    context: ssl.SSLContext
    listener: socket.socket
    port: int
    seen: list[str] = field(default_factory=list)
    smuggle: bytes = b""

    def waitForSeen(self, count: int = 1) -> list[str]:
        """
        L{seen} once it has C{count} lines (the server records a connection
        after the CLI may have exited).
        """
        return waitFor(lambda: self.seen if len(self.seen) >= count else None)

    def serve(self) -> None:
        """
        Accept connections until the listener closes.
        """
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    self.seen.append(self.handle(conn))
                except (OSError, ssl.SSLError) as e:
                    self.seen.append(f"failed: {e}")

    def handle(self, conn: socket.socket) -> str:
        """
        One connection: SSLRequest, C{S}, handshake, startup, refusal.
        """
        request = conn.recv(len(SSL_REQUEST), socket.MSG_WAITALL)
        if request != SSL_REQUEST:
            return f"no SSLRequest: {request!r}"
        conn.sendall(b"S" + self.smuggle)
        with self.context.wrap_socket(conn, server_side=True) as tls:
            (length,) = struct.unpack("!I", tls.recv(4))
            body = b""
            while len(body) < length - 4:
                body += tls.recv(length - 4 - len(body))
            user = body.split(b"user\x00", 1)[1].split(b"\x00", 1)[0].decode()
            peer = tls.getpeercert()
            cn = "-"
            if peer:
                cn = next(v for rdn in peer["subject"] for k, v in rdn if k == "commonName")
            refusal = fatal("08P01", f"tls-test-server saw {user}")
            tls.sendall(codec.encode(refusal))
            return f"tls {tls.version()} {tls.selected_alpn_protocol()} {cn}"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    """
    A CA, a server certificate for C{localhost} only, a client
    certificate, and a CA nobody trusts.
    """
    ca = CertificateAuthority()
    files = {"ca": ca.writeCertificate(str(tmp_path))}
    files["cert"], files["key"] = ca.issue("pgtwist", hosts=["localhost"]).write(
        str(tmp_path), "server"
    )
    files["clientCert"], files["clientKey"] = ca.issue("admin", client=True).write(
        str(tmp_path), "client"
    )
    files["otherCa"] = CertificateAuthority("another CA").writeCertificate(str(tmp_path), "other")
    return files


@pytest.fixture
def console(pki: dict[str, str]) -> Iterator[TlsConsole]:
    """
    A running L{TlsConsole} with the server certificate; stopped after.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["cert"], pki["key"])
    context.set_alpn_protocols(["postgresql"])
    listener = socket.create_server(("127.0.0.1", 0))
    server = TlsConsole(context, listener, listener.getsockname()[1])
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        # shutdown() wakes the accept() blocked in the thread; close() alone does not.
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(10)


def cli(capsys: pytest.CaptureFixture[str], host: str, port: int, *options: str) -> tuple[int, str]:
    """
    Run C{pgtwist-cli ping} in remote mode; its exit status and standard error.
    """
    argv = ["-h", host, "-p", str(port), "-U", "admin", "-P", "secret", *options, "ping"]
    status = main(argv)
    return status, capsys.readouterr().err


def test_verifyFull(
    console: TlsConsole, pki: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{verify-full} with the CA reaches the login inside TLS 1.2 or later,
    offering ALPN C{postgresql}; without a client certificate none is shown.
    """
    status, err = cli(
        capsys, "localhost", console.port, "--sslmode", "verify-full", "--sslrootcert", pki["ca"]
    )
    assert status == 1
    assert "tls-test-server saw admin" in err
    seen = console.waitForSeen()
    assert len(seen) == 1
    assert seen[0].startswith("tls TLSv1.")
    assert seen[0].endswith(" postgresql -")


def test_clientCertificate(
    console: TlsConsole, pki: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{--sslcert}/C{--sslkey} present the client certificate when the
    server asks for one.
    """
    console.context.verify_mode = ssl.CERT_REQUIRED
    console.context.load_verify_locations(cafile=pki["ca"])
    status, err = cli(
        capsys,
        "localhost",
        console.port,
        "--sslmode",
        "verify-full",
        "--sslrootcert",
        pki["ca"],
        "--sslcert",
        pki["clientCert"],
        "--sslkey",
        pki["clientKey"],
    )
    assert "tls-test-server saw admin" in err, err
    assert console.waitForSeen()[0].endswith(" admin")


@pytest.mark.parametrize(
    ("host", "rootCert", "reason"),
    [
        ("127.0.0.1", "ca", "IP address mismatch"),
        ("localhost", "otherCa", "unable to get local issuer certificate"),
    ],
)
def test_verificationFails(
    console: TlsConsole,
    pki: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    host: str,
    rootCert: str,
    reason: str,
) -> None:
    """
    A certificate for another host name, or from a CA not given, is
    refused in the handshake with OpenSSL's reason: exit 1, and nothing
    (no StartupMessage, no password) reaches the server.
    """
    status, err = cli(
        capsys, host, console.port, "--sslmode", "verify-full", "--sslrootcert", pki[rootCert]
    )
    assert status == 1
    assert "certificate verification failed" in err
    assert reason in err
    seen = console.waitForSeen()
    assert not any(line.startswith("tls ") for line in seen), seen


def test_requireWithoutCa(console: TlsConsole, capsys: pytest.CaptureFixture[str]) -> None:
    """
    C{require} without a root certificate encrypts without verifying
    (libpq's meaning): a certificate for another name is accepted.
    """
    status, err = cli(capsys, "127.0.0.1", console.port, "--sslmode", "require")
    assert status == 1
    assert "tls-test-server saw admin" in err
    assert console.waitForSeen()[0].startswith("tls ")


def test_plaintextAfterS(console: TlsConsole, capsys: pytest.CaptureFixture[str]) -> None:
    """
    An ErrorResponse smuggled in plaintext right after the C{S} is never
    taken as pgtwist's answer: the handshake fails on it.
    """
    console.smuggle = codec.encode(fatal("28000", "smuggled"))
    status, err = cli(capsys, "127.0.0.1", console.port, "--sslmode", "require")
    assert status == 1
    assert "TLS handshake failed" in err
    assert "smuggled" not in err
    assert console.waitForSeen()[0].startswith("failed: ")


def test_libpqEnvironment(
    console: TlsConsole,
    pki: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    libpq's C{PGSSLMODE}, C{PGSSLROOTCERT}, C{PGSSLCERT} and C{PGSSLKEY}
    do what the options do, as for psql: C{verify-full} against another CA
    is refused, and with the right CA the client certificate is shown.
    """
    console.context.verify_mode = ssl.CERT_REQUIRED
    console.context.load_verify_locations(cafile=pki["ca"])
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    monkeypatch.setenv("PGSSLROOTCERT", pki["otherCa"])
    status, err = cli(capsys, "localhost", console.port)
    assert status == 1
    assert "certificate verification failed" in err
    monkeypatch.setenv("PGSSLROOTCERT", pki["ca"])
    monkeypatch.setenv("PGSSLCERT", pki["clientCert"])
    monkeypatch.setenv("PGSSLKEY", pki["clientKey"])
    status, err = cli(capsys, "localhost", console.port)
    assert status == 1
    assert "tls-test-server saw admin" in err
    # The refused handshake may or may not be recorded (TLS 1.3 ends the
    # server's side first): the last line is the verified connection's.
    assert waitFor(lambda: console.seen and console.seen[-1].endswith(" admin"))
