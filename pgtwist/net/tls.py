# -*- test-case-name: tests.unit.test_net_tls -*-
"""
TLS toward clients: the server side of the handshake, built from the main
section (L{pgtwist.config.tlsfiles} checked the keys and files).

One L{ClientTLS} is built at start and again at each reload: it holds one
C{OpenSSL.SSL.Context}, and every connection that starts TLS takes an
C{SSL.Connection} of the L{ClientTLS} in force when it connected. A reload
therefore serves new connections with the new certificate and leaves the
running ones alone; a reload whose files do not load keeps the previous
L{ClientTLS} (see L{pgtwist.net.frontend.FrontendFactory.reconfigure}).

The context follows PostgreSQL's C{be_tls_init}: the certificate file may
hold the chain after the certificate, the key must match it, no
compression, no renegotiation, no session resumption; with a CA file,
client certificates are asked for and, when one is sent, verified (and
required in C{verify-ca}/C{verify-full}). ALPN: a client that offers ALPN
must offer C{postgresql} or the handshake fails (C{no_application_protocol}),
as with PostgreSQL 17; whether a direct-TLS client used ALPN at all is
checked once the handshake is done (L{alpnNegotiated}).

L{eagerTLS} makes a connection's TLS writes as eager as plaintext ones
(L{pgtwist.net.eager}); both hops use it once they have called
C{startTLS}.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from pgtwist.config.errors import ConfigError
from pgtwist.config.model import MainSettings
from pgtwist.config.tlsfiles import checkKeyFile, clientTlsMode
from pgtwist.net.eager import eagerSend
from pgtwist.net.tlsreads import SizedReads

__all__ = [
    "ALPN_PROTOCOL",
    "CIPHER_SHORTCUTS",
    "ClientTLS",
    "alpnNegotiated",
    "clientTLS",
    "describeConnection",
    "eagerTLS",
]

#: The ALPN protocol name PostgreSQL 17 registered, and requires of direct TLS.
ALPN_PROTOCOL = b"postgresql"

#: C{client_tls_protocols} names -> OpenSSL protocol versions.
_VERSIONS = {
    "tlsv1.0": SSL.TLS1_VERSION,
    "tlsv1.1": SSL.TLS1_1_VERSION,
    "tlsv1.2": SSL.TLS1_2_VERSION,
    "tlsv1.3": SSL.TLS1_3_VERSION,
}

#: The AEAD ciphers with forward secrecy: PgBouncer's C{default} (libusual
#: writes it C{TLSv1.2+AEAD+ECDHE:TLSv1.2+AEAD+DHE}, which OpenSSL 4 no
#: longer parses: no C{AEAD} alias).
_SECURE_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"

#: PgBouncer's C{client_tls_ciphers} shortcuts (its libusual's lists);
#: anything else is given to OpenSSL as a cipher list. They govern TLS 1.2
#: and older: TLS 1.3 suites are OpenSSL's defaults, as in PgBouncer.
CIPHER_SHORTCUTS = {
    "default": _SECURE_CIPHERS,
    "secure": _SECURE_CIPHERS,
    "compat": "HIGH:!aNULL",
    "legacy": "HIGH:MEDIUM:!aNULL",
    "insecure": "ALL:!aNULL:!eNULL",
    "all": "ALL:!aNULL:!eNULL",
}

#: Modes in which a TCP client must use TLS.
_REQUIRED = frozenset({"require", "verify-ca", "verify-full"})


def _selectAlpn(connection: SSL.Connection, offered: list[bytes]) -> bytes:
    """
    Pick C{postgresql} from the client's ALPN list, or fail the handshake
    with a C{no_application_protocol} alert when the client offered ALPN
    without it (PostgreSQL 17's C{alpn_cb}). pyOpenSSL turns an exception
    here into that alert, and raises it from the handshake, where
    Twisted's TLS layer takes it as a failed handshake.

    @raise SSL.Error: C{postgresql} was not offered.
    """
    if ALPN_PROTOCOL in offered:
        return ALPN_PROTOCOL
    # In OpenSSL's error-queue form, which Twisted's TLS layer reads.
    raise SSL.Error([("SSL routines", "", "no application protocol (postgresql not offered)")])


def _opensslReason(error: Exception) -> str:
    """
    OpenSSL's words for C{error}, in one line.
    """
    parts = []
    for item in getattr(error, "args", ())[:1]:
        if isinstance(item, list):
            parts += [str(entry[-1]) for entry in item if isinstance(entry, tuple)]
    return "; ".join(parts) or str(error) or type(error).__name__


@implementer(IOpenSSLServerConnectionCreator)
class ClientTLS:
    """
    TLS toward clients as one configuration asks for it.

    @ivar mode: The C{client_tls_sslmode} in force (never C{disable}).
    @ivar required: Whether TCP clients must use TLS (C{require} and
        stronger); unix-socket clients never get TLS, as with PostgreSQL.
    @ivar context: The OpenSSL context every connection is made from.
    """

    def __init__(self, mode: str, context: SSL.Context) -> None:
        self.mode = mode
        self.required = mode in _REQUIRED
        self.context = context

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """
        A new TLS connection for one client (Twisted's
        L{IOpenSSLServerConnectionCreator}), with reads sized to the
        replies (L{SizedReads}).
        """
        return SizedReads(self.context, None)


def clientTLS(main: MainSettings, configPath: str = "pgtwist.conf") -> ClientTLS | None:
    """
    Read the certificate, key and CA files C{main} names into a
    L{ClientTLS}, or C{None} when TLS toward clients is off.

    @param configPath: The main file, named by errors about its keys.

    @raise ConfigError: A file that cannot be read or parsed, a key that
        does not match the certificate, a key file with unsafe permissions,
        or protocols and ciphers OpenSSL refuses; naming the file or key.
    """
    mode = clientTlsMode(main)
    if mode == "disable":
        return None
    certificate, key = main.tlsCertFile, main.tlsKeyFile
    if not certificate or not key:
        raise ConfigError(
            f"TLS for clients (client_tls_sslmode {mode}) needs tls_cert_file and tls_key_file",
            configPath,
        )
    checkKeyFile(key)
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    versions = [_VERSIONS[name] for name in main.clientTlsProtocols]
    try:
        context.set_min_proto_version(min(versions))
        context.set_max_proto_version(max(versions))
    except SSL.Error as e:
        raise ConfigError(
            f"client_tls_protocols: OpenSSL refuses them: {_opensslReason(e)}",
            configPath,
            key="client_tls_protocols",
        ) from None
    try:
        context.use_certificate_chain_file(certificate)
    except (SSL.Error, OSError) as e:
        raise ConfigError(
            f"tls_cert_file: cannot load the certificate: {_opensslReason(e)}", certificate
        ) from None
    try:
        context.use_privatekey_file(key)
        context.check_privatekey()
    except (SSL.Error, OSError) as e:
        raise ConfigError(
            f"tls_key_file: cannot load the private key, or it does not match the "
            f"certificate: {_opensslReason(e)}",
            key,
        ) from None
    if main.tlsCaFile:
        try:
            context.load_verify_locations(main.tlsCaFile)
            context.load_client_ca(main.tlsCaFile.encode())
        except (SSL.Error, OSError) as e:
            raise ConfigError(
                f"tls_ca_file: cannot load the CA certificates: {_opensslReason(e)}",
                main.tlsCaFile,
            ) from None
        flags = SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE
        if mode in ("verify-ca", "verify-full"):
            flags |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        context.set_verify(flags)
    options = SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_TICKET
    options |= getattr(SSL, "OP_NO_RENEGOTIATION", 0)
    context.set_options(options)
    context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    context.set_alpn_select_callback(_selectAlpn)
    # Last: pyOpenSSL 25 checks a cipher list on a throwaway Connection,
    # which marks the context used; a change after that is deprecated
    # there (and an error in later versions).
    ciphers = CIPHER_SHORTCUTS.get(main.clientTlsCiphers.lower(), main.clientTlsCiphers)
    try:
        context.set_cipher_list(ciphers.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError) as e:
        raise ConfigError(
            f"client_tls_ciphers: OpenSSL accepts no cipher of {main.clientTlsCiphers!r}: "
            f"{_opensslReason(e)}",
            configPath,
            key="client_tls_ciphers",
        ) from None
    return ClientTLS(mode, context)


def alpnNegotiated(connection: Any) -> bool:
    """
    Whether the TLS connection C{connection} (an C{SSL.Connection}) agreed
    on ALPN C{postgresql}: what PostgreSQL 17 requires of a direct-TLS
    client.
    """
    try:
        return bool(connection.get_alpn_proto_negotiated() == ALPN_PROTOCOL)
    except (AttributeError, SSL.Error):
        return False


def describeConnection(connection: Any) -> str:
    """
    The protocol and cipher of a TLS connection, as SHOW CLIENTS' C{tls}
    column shows them (C{TLSv1.3/TLS_AES_256_GCM_SHA384}); C{""} if unknown.
    """
    try:
        version = connection.get_protocol_version_name()
        cipher = connection.get_cipher_name()
    except (AttributeError, SSL.Error):
        return ""
    if not cipher:
        return str(version or "")
    return f"{version}/{cipher}"


class _DirectWrites:
    """
    Stands in for the C{_AggregateSmallWrites} of Twisted's
    C{BufferingTLSTransport} once L{eagerTLS} has taken it out: what the
    TLS layer still routes through its aggregator (C{writeSequence}) is
    written at once, and its C{flush} and C{close} (on C{loseConnection},
    on connection loss) have nothing to do.
    """

    __slots__ = ("write",)

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.write = write

    def flush(self) -> None:
        """
        Nothing is ever held.
        """

    def close(self) -> None:
        """
        Nothing is ever held.
        """


def _closeAggregator(aggregator: Any) -> None:
    """
    Cancel the pending flush of Twisted's C{_AggregateSmallWrites} and send
    what it holds: its C{close}, or the same by hand on the Twisted
    releases that lack it (26.4, the last for Python 3.9, which PyPy runs).
    """
    close = getattr(aggregator, "close", None)
    if close is not None:
        close()
        return
    scheduled = aggregator._scheduled
    if scheduled is not None:
        aggregator._scheduled = None
        scheduled.cancel()
    aggregator.flush()


def eagerTLS(transport: Any) -> Callable[[bytes], None]:
    """
    Make the writes of C{transport}, which has just called C{startTLS},
    as eager as plaintext ones, and return the function that writes
    application bytes to it.

    Twisted's C{startTLS} puts a C{BufferingTLSTransport} under the
    protocol: every write is held in an aggregator and encrypted on the
    next reactor turn (C{callLater(0)}), and the records then go through
    C{FileDescriptor.write}, which only buffers and waits for the socket to
    be writable: two C{epoll_ctl} calls and two extra reactor turns per
    reply, about a third of what TLS added to pgtwist's CPU per select
    (benchmarks/RESULTS.rst, "Eager TLS writes"). A pooler writes each
    reply in one call, so there is nothing to aggregate.
    This:

        - writes application bytes with C{TLSMemoryBIOProtocol.write},
          which encrypts at once, and puts a L{_DirectWrites} in place of
          the aggregator (after sending whatever it held, so nothing is
          overtaken), so C{transport.write} and C{writeSequence} are
          unbuffered too;
        - sends the records with L{eagerSend}: straight to the socket when
          nothing is queued, else through the TLS layer's own lower write,
          which buffers, pauses producers when full and keeps the order.

    Producers, C{loseConnection} and the TLS shutdown are still the TLS
    layer's: only where bytes wait changes. A transport that is not
    Twisted's TLS over a socket (a test transport) is left alone and its
    C{write} returned.
    """
    tlsProtocol = getattr(transport, "protocol", None)
    lower: Any = getattr(tlsProtocol, "transport", None)
    if (
        not isinstance(tlsProtocol, TLSMemoryBIOProtocol)
        or getattr(lower, "_connection", None) is not transport
        or getattr(transport, "socket", None) is None
    ):
        write: Callable[[bytes], None] = transport.write
        return write
    write = types.MethodType(TLSMemoryBIOProtocol.write, tlsProtocol)
    aggregator = getattr(tlsProtocol, "_aggregator", None)
    if aggregator is not None:
        # BufferingTLSTransport (Twisted 22.8 and later): send what it holds
        # and cancel its pending flush before anything is written past it.
        _closeAggregator(aggregator)
        tlsProtocol._aggregator = _DirectWrites(write)  # type: ignore[attr-defined]
    tlsProtocol.write = write  # type: ignore[method-assign]
    lower.write = functools.partial(eagerSend, transport, lower.write)
    return write
