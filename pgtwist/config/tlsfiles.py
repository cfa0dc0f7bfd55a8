# -*- test-case-name: tests.unit.test_config_tls -*-
"""
The client-facing TLS keys of the main section, checked as PostgreSQL and
PgBouncer check theirs.

pgagroal's keys are read as they are (C{tls}, C{tls_cert_file},
C{tls_key_file}, C{tls_ca_file}); what pgagroal has no key for is named as
PgBouncer names it (C{client_tls_sslmode}, C{client_tls_protocols},
C{client_tls_ciphers}). C{tls = on} without C{client_tls_sslmode} is
PgBouncer's C{prefer}: TLS for the clients that ask for it, plaintext for
the others. An explicit C{client_tls_sslmode} wins over C{tls}.

Only the files' presence and the key file's permissions are checked here;
L{pgtwist.net.tls} reads them into an OpenSSL context.
"""

from __future__ import annotations

import os
import re
import stat

from cryptography import x509
from OpenSSL import crypto

from pgtwist.config.errors import ConfigError
from pgtwist.config.model import MainSettings

__all__ = [
    "CLIENT_SSLMODES",
    "TLS_PROTOCOLS",
    "checkClientTls",
    "checkKeyFile",
    "clientTlsMode",
    "parseCiphers",
    "parseSslmode",
    "parseTlsProtocols",
]

#: PgBouncer's C{client_tls_sslmode} levels, weakest first. C{allow} and
#: C{prefer} are the same toward clients (TLS if the client asks), as in
#: PgBouncer; C{verify-ca} and C{verify-full} also require a client
#: certificate signed by C{tls_ca_file} (the same for a pooler: there is no
#: client host name to check).
CLIENT_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

#: PgBouncer's C{client_tls_protocols} names, oldest first.
TLS_PROTOCOLS = ("tlsv1.0", "tlsv1.1", "tlsv1.2", "tlsv1.3")

#: PgBouncer's shortcuts for lists of protocols.
_PROTOCOL_SHORTCUTS = {
    "all": TLS_PROTOCOLS,
    "legacy": TLS_PROTOCOLS,
    "secure": ("tlsv1.2", "tlsv1.3"),
}


def parseSslmode(value: str) -> str:
    """
    Parse a C{client_tls_sslmode} level.

    @raise ValueError: For anything else, listing the levels.
    """
    text = value.strip().lower()
    if text not in CLIENT_SSLMODES:
        raise ValueError(f"expected one of {', '.join(CLIENT_SSLMODES)}, got {value!r}")
    return text


def parseTlsProtocols(value: str) -> tuple[str, ...]:
    """
    Parse C{client_tls_protocols}: protocol names or PgBouncer's shortcuts
    (C{all}, C{secure}, C{legacy}), separated by commas or spaces.

    @return: The protocols allowed, oldest first, without duplicates.
    @raise ValueError: For an unknown name or an empty list.
    """
    chosen: set[str] = set()
    for word in re.split(r"[\s,:]+", value.strip().lower()):
        if not word:
            continue
        if word in _PROTOCOL_SHORTCUTS:
            chosen.update(_PROTOCOL_SHORTCUTS[word])
        elif word in TLS_PROTOCOLS:
            chosen.add(word)
        else:
            raise ValueError(
                f"unknown TLS protocol {word!r}: expected {', '.join(TLS_PROTOCOLS)}, "
                "all, secure or legacy"
            )
    if not chosen:
        raise ValueError("expected at least one TLS protocol")
    return tuple(p for p in TLS_PROTOCOLS if p in chosen)


def parseCiphers(value: str) -> str:
    """
    Parse C{client_tls_ciphers}: an OpenSSL cipher list, or one of
    PgBouncer's shortcuts (C{default}/C{secure}, C{compat}, C{legacy},
    C{insecure}/C{all}), which L{pgtwist.net.tls} expands. OpenSSL itself
    judges the list when the context is built.

    @raise ValueError: For an empty value.
    """
    text = value.strip()
    if not text:
        raise ValueError("expected an OpenSSL cipher list, or default, compat, legacy or all")
    return text


def clientTlsMode(main: MainSettings) -> str:
    """
    The C{client_tls_sslmode} in force: the one given, else C{prefer} when
    C{tls = on} (pgagroal's switch), else C{disable}.
    """
    if main.clientTlsSslmode is not None:
        return main.clientTlsSslmode
    return "prefer" if main.tls else "disable"


def keyFileProblem(path: str) -> str | None:
    """
    What is wrong with a private key file by PostgreSQL's rule
    (C{check_ssl_key_file_permissions}), or C{None}: it must be a regular
    file, owned by the user pgtwist runs as with no group or other access
    (C{0600} or less), or owned by root with at most group read (C{0640} or
    less). The one rule for every key pgtwist reads: the listener's and
    those for the servers (L{pgtwist.config.servertls}).
    """
    try:
        info = os.stat(path)
    except OSError as e:
        return f"cannot read the private key file: {e.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return "the private key file is not a regular file"
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == os.geteuid():
        allowed = 0o600
    elif info.st_uid == 0:
        allowed = 0o640
    else:
        return "the private key file must be owned by the user pgtwist runs as or by root"
    if mode & ~allowed & 0o777:
        return (
            f"the private key file has group or world access (mode {mode:04o}); "
            "it must be 0600 or less, or 0640 or less if owned by root"
        )
    return None


def readCertificates(path: str) -> list[crypto.X509]:
    """
    Every certificate of the PEM file C{path}, as pyOpenSSL objects: a CA
    file, or a certificate followed by its chain. One reader for every TLS
    file pgtwist loads itself (the servers' CA and the metrics endpoint).

    @raise ValueError: It cannot be read or holds no certificate, naming it.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError(f"no PEM certificate in {path}") from None
    return [crypto.X509.from_cryptography(c) for c in found]


def checkKeyFile(path: str, key: str = "tls_key_file") -> None:
    """
    Refuse a private key file others may read (L{keyFileProblem}).

    @param key: The configuration key naming the file, for the message.
    @raise ConfigError: Naming C{path}, in one line.
    """
    problem = keyFileProblem(path)
    if problem is not None:
        raise ConfigError(f"{key}: {problem}", path)


def _checkReadable(path: str, key: str) -> None:
    if not os.access(path, os.R_OK):
        reason = "no such file" if not os.path.exists(path) else "not readable"
        raise ConfigError(f"{key}: cannot read the file ({reason})", path)


def checkClientTls(main: MainSettings, configPath: str) -> None:
    """
    Check the client-facing TLS keys together: a mode other than
    C{disable} needs C{tls_cert_file} and C{tls_key_file}, C{verify-ca}
    and C{verify-full} also C{tls_ca_file}; every file named must be
    readable, the key file with safe permissions (L{checkKeyFile}).

    @raise ConfigError: For the first problem.
    """
    mode = clientTlsMode(main)
    if mode == "disable":
        return
    for key, value in (("tls_cert_file", main.tlsCertFile), ("tls_key_file", main.tlsKeyFile)):
        if not value:
            raise ConfigError(
                f"TLS for clients (client_tls_sslmode {mode}) needs {key}", configPath, key=key
            )
    if mode in ("verify-ca", "verify-full") and not main.tlsCaFile:
        raise ConfigError(
            f"client_tls_sslmode {mode} needs tls_ca_file (the CA client certificates are "
            "checked against)",
            configPath,
            key="tls_ca_file",
        )
    assert main.tlsCertFile is not None and main.tlsKeyFile is not None
    _checkReadable(main.tlsCertFile, "tls_cert_file")
    checkKeyFile(main.tlsKeyFile)
    _checkReadable(main.tlsKeyFile, "tls_key_file")
    if main.tlsCaFile:
        _checkReadable(main.tlsCaFile, "tls_ca_file")
