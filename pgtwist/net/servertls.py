# -*- test-case-name: tests.unit.test_servertls -*-
"""
TLS toward PostgreSQL: what a server's C{sslmode} asks of a new backend
connection, the TLS client contexts built from its files, and the words a
client hears when the handshake fails.

The flow, as libpq's: an SSLRequest first (unless the mode is C{disable}
or the server is a unix socket, which libpq never encrypts either); the
server answers one byte, C{S} or C{N}. Anything after the C{S} before the
handshake is refused: those bytes would come from outside the encrypted
channel (the client side of CVE-2021-23222). On C{N}, C{prefer} goes on in
plaintext and every stronger mode refuses the server. On C{S} the
connection starts TLS with the server's L{ServerTlsContext}, then sends the
StartupMessage.

What is verified in each mode, with libpq's meanings:
    - C{prefer}, C{require}: nothing, unless a CA file is configured: then,
      as libpq does when a root certificate file exists, C{require} checks
      the chain (C{prefer} never does);
    - C{verify-ca}: the chain leads to the configured CA, dates valid;
    - C{verify-full}: that, and the host name (or IP address) of the
      server section matches the certificate, by service-identity's rules
      (RFC 6125: subjectAltName; the CN is not used).

Contexts are built once per server and kept in a L{ServerTlsContexts};
L{ServerTlsContexts.reload} (on SIGHUP) builds them again from the files,
keeping the old context of any server whose new files cannot be used.
Connections already open keep the context they started with.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from service_identity import VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.internet import ssl
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from pgtwist.config.model import ServerSettings
from pgtwist.config.tlsfiles import readCertificates
from pgtwist.net.tlsreads import sizeReads
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.messages import ErrorResponse, SSLRequest

__all__ = [
    "SSL_REQUEST",
    "ServerTlsContext",
    "ServerTlsContexts",
    "TlsReport",
    "contexts",
    "describeTls",
    "handshakeError",
    "peerCertificate",
    "usesTls",
]

#: The SSLRequest packet, sent before anything else when TLS is asked for.
SSL_REQUEST = codec.encode(SSLRequest())

#: OpenSSL's X509_V_ERR_* codes a server certificate commonly fails with,
#: in OpenSSL's words.
_VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    23: "certificate revoked",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
}

_VERSIONS = {
    "tlsv1.0": ssl.TLSVersion.TLSv1_0,
    "tlsv1.1": ssl.TLSVersion.TLSv1_1,
    "tlsv1.2": ssl.TLSVersion.TLSv1_2,
    "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}


def usesTls(server: ServerSettings) -> bool:
    """
    Whether a connection to C{server} starts with an SSLRequest: its mode
    is not C{disable} and it is reached over TCP (libpq never uses TLS on
    a unix socket, whatever C{sslmode} says).
    """
    return server.sslmode != "disable" and not server.host.startswith("/")


def settingsKey(server: ServerSettings) -> tuple[Any, ...]:
    """
    What a server's context is built from: a changed value means a new
    context.
    """
    return (
        server.sslmode,
        server.host,
        server.tlsCaFile,
        server.tlsCertFile,
        server.tlsKeyFile,
        server.tlsProtocols,
        server.tlsCiphers,
    )


class TlsReport:
    """
    What the verification of one connection found, for the error message.

    @ivar problem: The first reason the server certificate was refused,
        or C{None}.
    """

    __slots__ = ("problem",)

    def __init__(self) -> None:
        self.problem: str | None = None


def _versionOptions(protocols: tuple[str, ...]) -> dict[str, Any]:
    """
    The L{ssl.CertificateOptions} arguments for the allowed TLS versions:
    the oldest named is the minimum, the newest the maximum.
    """
    lowest, highest = _VERSIONS[protocols[0]], _VERSIONS[protocols[-1]]
    options: dict[str, Any] = {}
    if lowest < ssl.TLSVersion.TLSv1_2:
        options["insecurelyLowerMinimumTo"] = lowest
    else:
        options["raiseMinimumTo"] = lowest
    if highest < ssl.TLSVersion.TLSv1_3:
        options["lowerMaximumSecurityTo"] = highest
    return options


class ServerTlsContext:
    """
    The TLS client settings for one server: its files read once, and a
    connection creator for each new backend connection.

    @ivar server: The settings it was built from.
    @ivar verifyChain: Whether the chain must lead to the CA.
    @ivar verifyHost: Whether the host name must match (C{verify-full}).
    """

    def __init__(self, server: ServerSettings) -> None:
        """
        Read the server's files and build its OpenSSL context.

        @raise ValueError: A file cannot be read or used, or a setting is
            refused by OpenSSL; the message names the file.
        """
        self.server = server
        self.key = settingsKey(server)
        options: dict[str, Any] = _versionOptions(server.tlsProtocols or ("tlsv1.2", "tlsv1.3"))
        caCerts = None
        if server.tlsCaFile and server.sslmode != "prefer":
            caCerts = self._load(server.tlsCaFile, readCertificates)
        self.verifyChain = caCerts is not None
        self.verifyHost = server.sslmode == "verify-full"
        if caCerts is not None:
            options.update(verify=True, caCerts=caCerts)
        if server.tlsCertFile and server.tlsKeyFile:
            pair = self._load(server.tlsCertFile, _readFile) + self._load(
                server.tlsKeyFile, _readFile
            )
            try:
                client = ssl.PrivateCertificate.loadPEM(pair)
            except Exception as e:
                raise ValueError(
                    f"cannot use client certificate {server.tlsCertFile} with key "
                    f"{server.tlsKeyFile}: {_describe(e)}"
                ) from None
            options.update(privateKey=client.privateKey.original, certificate=client.original)
        ciphers = server.tlsCiphers or "default"
        try:
            if ciphers.lower() not in ("default", "secure"):
                options["acceptableCiphers"] = ssl.AcceptableCiphers.fromOpenSSLCipherString(
                    "ALL" if ciphers.lower() in ("all", "insecure") else ciphers
                )
            self._options = ssl.CertificateOptions(**options)
            self._options.getContext()
        except Exception as e:
            raise ValueError(f"cannot build a TLS context: {_describe(e)}") from None
        host = server.host
        self._hostIsAddress = isIPAddress(host) or isIPv6Address(host)
        self._serverName = None if self._hostIsAddress else host.encode("idna")

    @staticmethod
    def _load(path: str, read: Any) -> Any:
        try:
            return read(path)
        except OSError as e:
            raise ValueError(f"cannot read {path}: {e.strerror}") from None
        except ValueError:
            raise
        except Exception as e:
            raise ValueError(f"cannot use {path}: {_describe(e)}") from None

    def creator(self, report: TlsReport) -> IOpenSSLClientConnectionCreator:
        """
        The connection creator for one backend connection's C{startTLS};
        verification problems go to C{report}.
        """
        return _Creator(self, report)

    def verify(self, report: TlsReport, certificate: Any, error: int, depth: int, ok: int) -> bool:
        """
        OpenSSL's verify callback: OpenSSL's chain verdict, then the host
        name of the server certificate for C{verify-full}.
        """
        if not self.verifyChain:
            return True
        if not ok:
            if report.problem is None:
                reason = _VERIFY_ERRORS.get(error, f"verify error {error}")
                names = certificate.to_cryptography().subject
                common = names.get_attributes_for_oid(NameOID.COMMON_NAME)
                subject = common[0].value if common else names.rfc4514_string()
                report.problem = f"{reason} (certificate {subject!r}, depth {depth})"
            return False
        if depth == 0 and self.verifyHost:
            cert = certificate.to_cryptography()
            try:
                if self._hostIsAddress:
                    verify_certificate_ip_address(cert, self.server.host)
                else:
                    verify_certificate_hostname(cert, self.server.host)
            except VerificationError:
                report.problem = f'server certificate does not match host name "{self.server.host}"'
                return False
            except Exception as e:
                report.problem = f"server certificate cannot be checked: {_describe(e)}"
                return False
        return True


def _readFile(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _describe(error: BaseException) -> str:
    """
    An OpenSSL error in a few words: the reasons of its error queue.
    """
    if isinstance(error, SSL.Error) and error.args and isinstance(error.args[0], list):
        reasons = [str(item[-1]) for item in error.args[0] if item]
        if reasons:
            return "; ".join(reasons)
    return str(error) or error.__class__.__name__


@implementer(IOpenSSLClientConnectionCreator)
class _Creator:
    """
    Makes the OpenSSL connection of one backend connection, with SNI and
    a verify callback that records why verification failed.
    """

    def __init__(self, context: ServerTlsContext, report: TlsReport) -> None:
        self._context = context
        self._report = report

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """
        See L{IOpenSSLClientConnectionCreator.clientConnectionForTLS}.
        """
        context = self._context
        connection = sizeReads(context._options.clientConnectionForTLS(tlsProtocol))
        if context._serverName is not None:
            connection.set_tlsext_host_name(context._serverName)
        report = self._report

        def verify(conn: Any, certificate: Any, error: int, depth: int, ok: int) -> bool:
            return context.verify(report, certificate, error, depth, ok)

        if context.verifyChain:
            connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, verify)
        else:
            connection.set_verify(SSL.VERIFY_NONE, verify)
        return connection


class ServerTlsContexts:
    """
    The contexts of every server, built on first use and again on reload.
    """

    log = Logger()

    def __init__(self) -> None:
        self._contexts: dict[str, ServerTlsContext] = {}

    def contextFor(self, server: ServerSettings) -> ServerTlsContext:
        """
        The context for C{server}, built now if it has none or its settings
        changed since.

        @raise ValueError: It cannot be built (see L{ServerTlsContext}).
        """
        context = self._contexts.get(server.name)
        if context is None or context.key != settingsKey(server):
            context = self._contexts[server.name] = ServerTlsContext(server)
        return context

    def reload(self, servers: tuple[ServerSettings, ...]) -> list[str]:
        """
        Read every TLS server's files again: new backend connections use
        the new contexts, open ones keep theirs. A server whose new files
        cannot be used keeps its old context if its mode is unchanged (and
        says why in the log); with a new mode, it has none, and its new
        connections fail with the reason until its files are fixed.

        @return: The problems found, one line each.
        """
        problems = []
        known = {}
        for server in servers:
            if not usesTls(server):
                continue
            old = self._contexts.get(server.name)
            try:
                known[server.name] = ServerTlsContext(server)
            except ValueError as e:
                problem = f"server [{server.name}]: {e}"
                if old is not None and old.server.sslmode == server.sslmode:
                    problem += "; keeping the certificates and keys loaded before"
                    old.key = settingsKey(server)
                    known[server.name] = old
                problems.append(problem)
                self.log.error("TLS to PostgreSQL: {problem}", problem=problem)
        self._contexts = known
        return problems


#: The contexts of this process.
contexts = ServerTlsContexts()


def handshakeError(server: ServerSettings, report: TlsReport, reason: Any) -> ErrorResponse:
    """
    The FATAL a waiting client hears when TLS to C{server} failed, as libpq
    words it: C{could not connect to server "primary": certificate verify
    failed: certificate has expired ...}.

    @param reason: The failure's exception (an OpenSSL error, a closed
        connection...).
    """
    if report.problem is not None:
        why = f"certificate verify failed: {report.problem}"
    elif isinstance(reason, SSL.Error):
        why = f"SSL error: {_describe(reason)}"
    else:
        why = f"SSL connection closed during the handshake: {_describe(reason)}"
    return errors.fatal(
        constants.SQLSTATE_CONNECTION_FAILURE,
        f'could not connect to server "{server.name}": {why}',
    )


def peerCertificate(transport: Any) -> bytes | None:
    """
    The server certificate of a TLS transport, DER (for the channel binding
    of SCRAM-SHA-256-PLUS), or C{None}.
    """
    getter = getattr(transport, "getPeerCertificate", None)
    if getter is None:
        return None
    certificate = getter()
    if certificate is None:
        return None
    return certificate.to_cryptography().public_bytes(Encoding.DER)  # type: ignore[no-any-return]


def describeTls(transport: Any) -> str:
    """
    The TLS of a connection as PgBouncer's SHOW SERVERS shows it:
    C{TLSv1.3/TLS_AES_256_GCM_SHA384}; empty when not known.
    """
    try:
        connection = transport.getHandle()
        version = connection.get_protocol_version_name()
        cipher = connection.get_cipher_name()
    except Exception:
        return ""
    if not cipher:
        return ""
    return f"{version}/{cipher}"
