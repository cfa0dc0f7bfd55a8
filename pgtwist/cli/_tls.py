# -*- test-case-name: tests.unit.test_cli_tls -*-
"""
TLS for C{pgtwist-cli}'s remote mode, as libpq does it: over TCP, an
SSLRequest first; on C{S} a TLS handshake with Python's L{ssl} module (the
client is blocking code), on C{N} plaintext only if the mode allows it.

The modes are libpq's C{sslmode}:

    - C{disable}: no SSLRequest, plaintext;
    - C{prefer} (the default, as libpq's): TLS when pgtwist offers it, no
      verification, plaintext when it answers C{N};
    - C{require}: TLS or nothing; the chain is checked when a root
      certificate file is given (as libpq does when C{root.crt} exists);
    - C{verify-ca}: the chain must lead to C{--sslrootcert};
    - C{verify-full}: that, and the host name (or address) given with
      C{-h} must match the certificate.

C{--sslrootcert system} uses the system's trusted CAs. C{--sslcert} and
C{--sslkey} present a client certificate; the key file must not be readable
by group or others, as libpq requires.

Bytes pgtwist sends after its C{S} and before the handshake are never taken
as a reply: only the one answer byte is read from the socket, and anything
after it goes to the TLS layer, which refuses it (the client side of
CVE-2021-23222).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from pgtwist._compat import SLOTS
from pgtwist.config.servertls import checkPrivateKeyFile
from pgtwist.wire import codec
from pgtwist.wire.messages import SSLRequest

__all__ = [
    "SSLMODES",
    "TlsOptions",
    "TlsRefused",
    "clientContext",
    "negotiate",
    "reason",
    "startTls",
]

#: libpq's C{sslmode} values C{pgtwist-cli} takes, weakest first (libpq's
#: C{allow} is plaintext in practice against pgtwist: not offered).
SSLMODES = ("disable", "prefer", "require", "verify-ca", "verify-full")

#: The SSLRequest packet.
_SSL_REQUEST = codec.encode(SSLRequest())


class TlsRefused(Exception):
    """
    TLS could not be set up as the mode requires; the message says why.
    """


@dataclass(frozen=True, **SLOTS)
class TlsOptions:
    """
    The TLS options of one remote connection.

    @ivar sslmode: One of L{SSLMODES}.
    @ivar rootCert: A PEM file of trusted CAs, C{"system"}, or C{None}.
    @ivar cert: A client certificate file, or C{None}.
    @ivar key: Its private key file, or C{None}.
    """

    sslmode: str = "prefer"
    rootCert: str | None = None
    cert: str | None = None
    key: str | None = None

    def check(self) -> None:
        """
        Refuse options that contradict each other, before connecting.

        @raise ValueError: Naming the option at fault.
        """
        if self.sslmode not in SSLMODES:
            raise ValueError(f"--sslmode: expected one of {', '.join(SSLMODES)}")
        if self.sslmode.startswith("verify-") and not self.rootCert:
            raise ValueError(
                f"--sslmode {self.sslmode} needs --sslrootcert (a CA file, or 'system')"
            )
        if bool(self.cert) != bool(self.key):
            raise ValueError("--sslcert and --sslkey go together")
        if self.sslmode == "disable" and (self.rootCert or self.cert):
            raise ValueError("--sslmode disable uses no certificates")
        if self.key:
            checkPrivateKeyFile(self.key)


def negotiate(sock: socket.socket, sslmode: str) -> bool:
    """
    Send the SSLRequest the mode asks for and read pgtwist's answer.

    @return: Whether to start TLS now.
    @raise TlsRefused: pgtwist answered C{N} and the mode needs TLS, or
        answered something else than C{S} or C{N}.
    @raise OSError: The socket failed.
    """
    if sslmode == "disable":
        return False
    sock.sendall(_SSL_REQUEST)
    answer = sock.recv(1)
    if answer == b"S":
        return True
    if answer == b"N":
        if sslmode == "prefer":
            return False
        raise TlsRefused(f"pgtwist does not offer TLS here, and --sslmode is {sslmode}")
    if not answer:
        raise TlsRefused("pgtwist closed the connection in answer to the SSLRequest")
    raise TlsRefused(f"unexpected answer to the SSLRequest: {answer!r}")


def clientContext(options: TlsOptions) -> ssl.SSLContext:
    """
    The TLS client context for C{options}: TLS 1.2 or later, ALPN
    C{postgresql} (as libpq 17 sends), and the verification the mode asks
    for.

    @raise ValueError: A file cannot be read or used, naming it.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["postgresql"])
    verify = options.sslmode in ("verify-ca", "verify-full") or (
        options.sslmode == "require" and options.rootCert is not None
    )
    if verify:
        try:
            if options.rootCert == "system":
                context.load_default_certs()
            else:
                context.load_verify_locations(cafile=options.rootCert)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"cannot use --sslrootcert {options.rootCert}: {reason(e)}") from None
        context.check_hostname = options.sslmode == "verify-full"
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if options.cert and options.key:
        try:
            context.load_cert_chain(options.cert, options.key)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(
                f"cannot use --sslcert {options.cert} with --sslkey {options.key}: {reason(e)}"
            ) from None
    return context


def startTls(sock: socket.socket, context: ssl.SSLContext, host: str) -> ssl.SSLSocket:
    """
    The TLS handshake on C{sock}, the host name sent as SNI and checked
    when the context says so.

    @raise TlsRefused: The handshake failed, with OpenSSL's reason.
    """
    try:
        return context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as e:
        raise TlsRefused(f"certificate verification failed: {e.verify_message}") from None
    except (OSError, ssl.SSLError) as e:
        raise TlsRefused(f"TLS handshake failed: {reason(e)}") from None


def reason(error: BaseException) -> str:
    """
    The short reason of an L{ssl} or socket error.
    """
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason.replace("_", " ").lower()
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
