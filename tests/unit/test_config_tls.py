"""
Tests for L{pgtwist.config.tlsfiles}: the client-facing TLS keys as the
loader reads them, and the private key file's permissions.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.errors import ConfigError
from pgtwist.config.model import MainSettings
from pgtwist.config.tlsfiles import (
    checkKeyFile,
    clientTlsMode,
    parseCiphers,
    parseSslmode,
    parseTlsProtocols,
)
from tests.unit._configfiles import FilesTestCase

BASE = "[pgtwist]\nhost = 127.0.0.1\nport = 6432\n{}\n[primary]\nhost = 127.0.0.1\nport = 5432\n"


class ParserTests(SynchronousTestCase):
    """
    The values of the PgBouncer-named keys.
    """

    def test_sslmode(self) -> None:
        """
        C{client_tls_sslmode} takes PgBouncer's six levels, in any case.
        """
        for level in ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"):
            self.assertEqual(parseSslmode(level.upper()), level)
        error = self.assertRaises(ValueError, parseSslmode, "on")
        self.assertIn("verify-full", str(error))

    def test_protocols(self) -> None:
        """
        C{client_tls_protocols} takes names and PgBouncer's shortcuts, in
        any order, separated by commas or spaces; C{secure} is 1.2 and 1.3.
        """
        self.assertEqual(parseTlsProtocols("secure"), ("tlsv1.2", "tlsv1.3"))
        self.assertEqual(parseTlsProtocols("tlsv1.3, TLSv1.2"), ("tlsv1.2", "tlsv1.3"))
        self.assertEqual(parseTlsProtocols("all"), ("tlsv1.0", "tlsv1.1", "tlsv1.2", "tlsv1.3"))
        self.assertEqual(parseTlsProtocols("legacy"), parseTlsProtocols("all"))
        self.assertRaises(ValueError, parseTlsProtocols, "sslv3")
        self.assertRaises(ValueError, parseTlsProtocols, " , ")

    def test_ciphers(self) -> None:
        """
        C{client_tls_ciphers} is kept as written; only an empty one is
        refused here (OpenSSL judges the rest).
        """
        self.assertEqual(parseCiphers(" HIGH:!aNULL "), "HIGH:!aNULL")
        self.assertRaises(ValueError, parseCiphers, "  ")

    def test_mode(self) -> None:
        """
        C{tls = on} alone is PgBouncer's C{prefer}; an explicit
        C{client_tls_sslmode} wins over C{tls}, either way.
        """
        self.assertEqual(clientTlsMode(MainSettings()), "disable")
        self.assertEqual(clientTlsMode(MainSettings(tls=True)), "prefer")
        self.assertEqual(
            clientTlsMode(MainSettings(tls=True, clientTlsSslmode="disable")), "disable"
        )
        self.assertEqual(clientTlsMode(MainSettings(clientTlsSslmode="require")), "require")


class KeyFileTests(FilesTestCase):
    """
    L{checkKeyFile} applies PostgreSQL's rule to the private key file.
    """

    def test_private(self) -> None:
        """
        A key file of the user pgtwist runs as, mode 0600 or less, is accepted.
        """
        for mode in (0o600, 0o400):
            path = self.write("server.key", "")
            os.chmod(path, mode)
            checkKeyFile(path)

    def test_groupOrOthers(self) -> None:
        """
        A key file readable by group or others is refused, naming the file
        and the mode in one line.
        """
        for mode in (0o640, 0o644, 0o604, 0o660):
            path = self.write("server.key", "")
            os.chmod(path, mode)
            error = self.assertRaises(ConfigError, checkKeyFile, path)
            self.assertEqual(error.path, path)
            self.assertIn("group or world access", error.message)
            self.assertIn(f"{mode:04o}", error.message)
            self.assertNotIn("\n", str(error))

    def test_missing(self) -> None:
        """
        A key file that does not exist is a configuration error too.
        """
        path = os.path.join(self.directory, "nothere.key")
        error = self.assertRaises(ConfigError, checkKeyFile, path)
        self.assertEqual(error.path, path)

    def test_notRegular(self) -> None:
        """
        A directory is not a key file.
        """
        error = self.assertRaises(ConfigError, checkKeyFile, self.directory)
        self.assertIn("not a regular file", error.message)


class LoaderTests(FilesTestCase):
    """
    The loader reads the TLS keys and checks them together.
    """

    def files(self, keyMode: int = 0o600) -> tuple[str, str, str]:
        """
        Empty certificate, key and CA files (their content is read later,
        by L{pgtwist.net.tls}).
        """
        certificate = self.write("server.crt", "")
        key = self.write("server.key", "")
        os.chmod(key, keyMode)
        return certificate, key, self.write("ca.crt", "")

    def test_pgagroalKeys(self) -> None:
        """
        pgagroal's C{tls}, C{tls_cert_file}, C{tls_key_file} and
        C{tls_ca_file} are read as they are; C{tls = on} means C{prefer}.
        """
        certificate, key, ca = self.files()
        main = self.load(
            BASE.format(
                f"tls = on\ntls_cert_file = {certificate}\ntls_key_file = {key}\n"
                f"tls_ca_file = {ca}\n"
            )
        ).main
        self.assertEqual(
            (main.tls, main.tlsCertFile, main.tlsKeyFile, main.tlsCaFile),
            (True, certificate, key, ca),
        )
        self.assertEqual(clientTlsMode(main), "prefer")
        self.assertEqual(main.clientTlsProtocols, ("tlsv1.2", "tlsv1.3"))
        self.assertEqual(main.clientTlsCiphers, "default")
        self.assertEqual(self.warnings, [])

    def test_needsFiles(self) -> None:
        """
        TLS on without a certificate or key is refused, naming the key.
        """
        certificate, key, _ = self.files()
        error = self.loadError(BASE.format(f"tls = on\ntls_cert_file = {certificate}\n"))
        self.assertEqual(error.key, "tls_key_file")
        error = self.loadError(BASE.format(f"client_tls_sslmode = require\ntls_key_file = {key}\n"))
        self.assertEqual(error.key, "tls_cert_file")

    def test_verifyNeedsCA(self) -> None:
        """
        C{verify-ca} and C{verify-full} check client certificates, so they
        need C{tls_ca_file}.
        """
        certificate, key, _ = self.files()
        for mode in ("verify-ca", "verify-full"):
            error = self.loadError(
                BASE.format(
                    f"client_tls_sslmode = {mode}\ntls_cert_file = {certificate}\n"
                    f"tls_key_file = {key}\n"
                )
            )
            self.assertEqual(error.key, "tls_ca_file")

    def test_keyPermissions(self) -> None:
        """
        A key file readable by others is refused at load, with its path.
        """
        certificate, key, _ = self.files(keyMode=0o644)
        error = self.loadError(
            BASE.format(f"tls = on\ntls_cert_file = {certificate}\ntls_key_file = {key}\n")
        )
        self.assertEqual(str(error).split(":")[0], key)
        self.assertIn("group or world access", str(error))

    def test_missingCertificate(self) -> None:
        """
        A certificate file that cannot be read is refused at load.
        """
        _, key, _ = self.files()
        missing = os.path.join(self.directory, "missing.crt")
        error = self.loadError(
            BASE.format(f"tls = on\ntls_cert_file = {missing}\ntls_key_file = {key}\n")
        )
        self.assertEqual(error.path, missing)

    def test_disabledIgnoresFiles(self) -> None:
        """
        With TLS off, the file keys are kept but not checked (a pgagroal
        configuration with C{tls = off} and stale paths still loads).
        """
        config = self.load(
            BASE.format("tls_cert_file = /nowhere.crt\ntls_key_file = /nowhere.key\n")
        )
        self.assertEqual(clientTlsMode(config.main), "disable")
