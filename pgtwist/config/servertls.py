# -*- test-case-name: tests.unit.test_config_servertls -*-
"""
The configuration of TLS toward PostgreSQL servers (the server hop).

Keys, PgBouncer's names in the main section as defaults for every server,
pgagroal's names in a server section for that server:

    - C{server_tls_sslmode}: C{disable} (default), C{prefer}, C{require},
      C{verify-ca} or C{verify-full}, with libpq's meanings (C{off} is
      C{disable});
    - C{server_tls_ca_file}: the CA certificates a server's chain must lead
      to (C{tls_ca_file} in a server section);
    - C{server_tls_cert_file}, C{server_tls_key_file}: a client certificate
      and its key, for PostgreSQL's C{cert} authentication (C{tls_cert_file},
      C{tls_key_file} in a server section);
    - C{server_tls_protocols}: the TLS versions allowed (C{secure}, the
      default, is C{tlsv1.2,tlsv1.3}; C{all}; or a list);
    - C{server_tls_ciphers}: an OpenSSL cipher list for TLS 1.2 and below
      (C{default}: Twisted's).

How they combine, for each server section: a key in the section wins over
the main section's default. A section's C{server_tls_sslmode} wins over its
pgagroal C{tls} switch; C{tls = on} alone means the main section's mode when
that is C{require} or stricter, else C{require}; C{tls = off} alone means
C{disable}. The main section's C{tls_*_file} keys are the client-facing
listener's (pgagroal's meaning) and never apply to servers.

This module knows files only by name and mode; certificates are read by
L{pgtwist.net.servertls}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgtwist.config.model import MainSettings
from pgtwist.config.tlsfiles import keyFileProblem
from pgtwist.config.values import parseChoice

__all__ = [
    "CHANNEL_BINDINGS",
    "SSLMODES",
    "checkMetricsTls",
    "checkPrivateKeyFile",
    "parseChannelBinding",
    "parseServerSslmode",
    "resolveServerTls",
    "strongerThanPrefer",
]

#: libpq's C{sslmode} levels pgtwist supports toward servers, weakest first.
SSLMODES = ("disable", "prefer", "require", "verify-ca", "verify-full")


def parseServerSslmode(value: str) -> str:
    """
    Parse an sslmode: one of L{SSLMODES}; C{off} is C{disable}.

    libpq's C{allow} (plaintext first, TLS only if the server insists) is
    refused rather than guessed at: PostgreSQL never insists before the
    StartupMessage, so C{allow} is plaintext in practice; say C{disable}
    or C{prefer}.

    @raise ValueError: For anything else.
    """
    text = value.strip().lower()
    if text in ("off", "no", "false", "0"):
        return "disable"
    if text == "allow":
        raise ValueError("allow is not supported toward servers; use disable or prefer")
    return parseChoice(text, SSLMODES)


#: libpq's C{channel_binding} values (a server section's key).
CHANNEL_BINDINGS = ("disable", "prefer", "require")


def parseChannelBinding(value: str) -> str:
    """
    Parse a server section's C{channel_binding}: one of L{CHANNEL_BINDINGS};
    C{disabled} (the spelling of pgagroal's documentation) is C{disable}.

    @raise ValueError: For anything else.
    """
    text = value.strip().lower()
    if text == "disabled":
        return "disable"
    return parseChoice(text, CHANNEL_BINDINGS)


def strongerThanPrefer(mode: str) -> bool:
    """
    Whether C{mode} refuses a server that answers SSLRequest with C{N}.
    """
    return SSLMODES.index(mode) >= SSLMODES.index("require")


def checkPrivateKeyFile(path: str) -> None:
    """
    Refuse a private key file others could read, by the rule the listener's
    key follows too (L{keyFileProblem}).

    @raise ValueError: Naming the path and what is wrong, in one line.
    """
    problem = keyFileProblem(path)
    if problem is not None:
        raise ValueError(f"{path}: {problem}")


def checkMetricsTls(main: MainSettings) -> None:
    """
    Check pgagroal's C{metrics_cert_file}, C{metrics_key_file} and
    C{metrics_ca_file} together (the key file's mode was checked as it was
    read): the certificate and its key switch HTTPS on and go together; a
    CA file, which makes every scraper show a certificate it signed, needs
    them.

    @raise ValueError: With the key at fault first (C{"key: message"}).
    """
    if bool(main.metricsCertFile) != bool(main.metricsKeyFile):
        missing = "metrics_key_file" if main.metricsCertFile else "metrics_cert_file"
        raise ValueError(
            f"{missing}: HTTPS for metrics needs both metrics_cert_file and metrics_key_file"
        )
    if main.metricsCaFile and not main.metricsCertFile:
        raise ValueError(
            "metrics_ca_file: verifying scrapers' certificates needs HTTPS "
            "(metrics_cert_file and metrics_key_file)"
        )


#: The server-section keys and the L{ServerSettings} field each sets
#: (C{tls} itself is the section's pgagroal switch).
SERVER_KEYS = {
    "server_tls_sslmode": "sslmode",
    "tls_ca_file": "tlsCaFile",
    "tls_cert_file": "tlsCertFile",
    "tls_key_file": "tlsKeyFile",
    "server_tls_protocols": "tlsProtocols",
    "server_tls_ciphers": "tlsCiphers",
}


def resolveServerTls(
    main: MainSettings, section: Mapping[str, Any], tls: bool | None
) -> dict[str, Any]:
    """
    The TLS fields of one server's L{ServerSettings}: what its section
    gave (C{section}, by field name) over the main section's defaults.

    @param tls: The section's pgagroal C{tls} switch, C{None} if absent.
    @return: L{ServerSettings} keyword arguments.
    @raise ValueError: With the key at fault first (C{"key: message"}),
        for a certificate without its key, a verify mode without a CA
        file, or a key file others may read.
    """
    mode = section.get("sslmode")
    if mode is None:
        if tls is None:
            mode = main.serverTlsSslmode
        elif tls:
            default = main.serverTlsSslmode
            mode = default if strongerThanPrefer(default) else "require"
        else:
            mode = "disable"
    resolved = {
        "sslmode": mode,
        "tlsCaFile": section.get("tlsCaFile") or main.serverTlsCaFile,
        "tlsCertFile": section.get("tlsCertFile") or main.serverTlsCertFile,
        "tlsKeyFile": section.get("tlsKeyFile") or main.serverTlsKeyFile,
        "tlsProtocols": section.get("tlsProtocols") or main.serverTlsProtocols,
        "tlsCiphers": section.get("tlsCiphers") or main.serverTlsCiphers,
    }
    if mode == "disable":
        return resolved
    if mode.startswith("verify-") and not resolved["tlsCaFile"]:
        raise ValueError(
            f"server_tls_sslmode: {mode} needs a CA file "
            "(tls_ca_file in the section or server_tls_ca_file)"
        )
    if bool(resolved["tlsCertFile"]) != bool(resolved["tlsKeyFile"]):
        raise ValueError(
            "tls_cert_file: a client certificate and its key go together "
            "(tls_cert_file and tls_key_file, or server_tls_cert_file and server_tls_key_file)"
        )
    if section.get("tlsKeyFile"):
        # The main section's key file was checked as it was read.
        try:
            checkPrivateKeyFile(section["tlsKeyFile"])
        except ValueError as e:
            raise ValueError(f"tls_key_file: {e}") from None
    return resolved
