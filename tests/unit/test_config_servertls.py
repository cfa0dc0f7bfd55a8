"""
Tests for L{pgtwist.config.servertls}: the server-hop TLS keys, how the
main section's defaults and a server section's keys combine, and the rule
that a private key file may not be readable by others.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.errors import ConfigError
from pgtwist.config.servertls import (
    checkPrivateKeyFile,
    parseServerSslmode,
)
from pgtwist.config.tlsfiles import parseTlsProtocols
from pgtwist.config.validate import changeSetting
from tests.unit._configfiles import FilesTestCase

MAIN = "[pgtwist]\nhost = *\nport = 6432\n"


class ParseTests(SynchronousTestCase):
    """
    The values of the keys.
    """

    def test_sslmodes(self) -> None:
        """
        libpq's levels are accepted in any case; C{off} is C{disable}.
        """
        for mode in ("disable", "prefer", "require", "verify-ca", "verify-full"):
            self.assertEqual(parseServerSslmode(mode.upper()), mode)
        self.assertEqual(parseServerSslmode("off"), "disable")

    def test_allowRefused(self) -> None:
        """
        C{allow} would be plaintext in practice: refused with a word on why.
        """
        error = self.assertRaises(ValueError, parseServerSslmode, "allow")
        self.assertIn("use disable or prefer", str(error))
        self.assertRaises(ValueError, parseServerSslmode, "verify")

    def test_protocols(self) -> None:
        """
        PgBouncer's protocol words: C{secure}, C{all}, or versions.
        """
        self.assertEqual(parseTlsProtocols("secure"), ("tlsv1.2", "tlsv1.3"))
        self.assertEqual(parseTlsProtocols("all"), ("tlsv1.0", "tlsv1.1", "tlsv1.2", "tlsv1.3"))
        self.assertEqual(parseTlsProtocols("tlsv1.3"), ("tlsv1.3",))
        self.assertEqual(parseTlsProtocols("TLSv1.3, tlsv1.2"), ("tlsv1.2", "tlsv1.3"))
        self.assertRaises(ValueError, parseTlsProtocols, "sslv3")
        self.assertRaises(ValueError, parseTlsProtocols, " ")


class KeyFileTests(FilesTestCase):
    """
    L{checkPrivateKeyFile}: PostgreSQL's rule for key files.
    """

    def test_ownerOnly(self) -> None:
        """
        A key only its owner may read is accepted.
        """
        path = self.write("k.key", "key")
        os.chmod(path, 0o600)
        checkPrivateKeyFile(path)
        os.chmod(path, 0o400)
        checkPrivateKeyFile(path)

    def test_readableByOthers(self) -> None:
        """
        A key others may read is refused, naming the path and the mode.
        """
        path = self.write("k.key", "key")
        os.chmod(path, 0o644)
        error = self.assertRaises(ValueError, checkPrivateKeyFile, path)
        self.assertIn(path, str(error))
        self.assertIn("0644", str(error))
        self.assertNotIn("\n", str(error))

    def test_groupReadable(self) -> None:
        """
        Group read is refused unless root owns the file and pgtwist does not
        run as root (0640 is then allowed, as PostgreSQL allows it).
        """
        path = self.write("k.key", "key")
        os.chmod(path, 0o640)
        if os.stat(path).st_uid == 0 and os.geteuid() != 0:
            checkPrivateKeyFile(path)
            os.chmod(path, 0o660)
        self.assertRaises(ValueError, checkPrivateKeyFile, path)

    def test_missing(self) -> None:
        """
        A missing key file is refused with its path.
        """
        path = os.path.join(self.directory, "none.key")
        self.assertIn(path, str(self.assertRaises(ValueError, checkPrivateKeyFile, path)))


class CombineTests(FilesTestCase):
    """
    Main-section defaults and server-section keys, as loaded.
    """

    def key(self, name: str = "client.key", mode: int = 0o600) -> str:
        """
        A key file with C{mode}.
        """
        path = self.write(name, "key")
        os.chmod(path, mode)
        return path

    def test_defaultOff(self) -> None:
        """
        Without any key, servers are reached in plaintext (pgagroal's default).
        """
        config = self.load(MAIN + "[primary]\nhost = db\nport = 5432\n")
        self.assertEqual(config.servers[0].sslmode, "disable")
        self.assertEqual(config.main.serverTlsSslmode, "disable")

    def test_mainDefaults(self) -> None:
        """
        The main section's C{server_tls_*} keys apply to every server.
        """
        key = self.key()
        config = self.load(
            MAIN + "server_tls_sslmode = verify-full\nserver_tls_ca_file = /etc/ca.pem\n"
            f"server_tls_cert_file = /etc/c.pem\nserver_tls_key_file = {key}\n"
            "server_tls_protocols = tlsv1.3\nserver_tls_ciphers = HIGH\n"
            "[a]\nhost = db1\nport = 5432\n[b]\nhost = db2\nport = 5432\n"
        )
        for server in config.servers:
            self.assertEqual(server.sslmode, "verify-full")
            self.assertEqual(server.tlsCaFile, "/etc/ca.pem")
            self.assertEqual(server.tlsCertFile, "/etc/c.pem")
            self.assertEqual(server.tlsKeyFile, key)
            self.assertEqual(server.tlsProtocols, ("tlsv1.3",))
            self.assertEqual(server.tlsCiphers, "HIGH")
        self.assertEqual(self.warnings, [])

    def test_sectionWins(self) -> None:
        """
        pgagroal's C{tls_*_file} keys and C{server_tls_sslmode} in a section
        win over the main section's for that server only; the main
        section's C{tls_*_file} keys (the client side) never apply.
        """
        key = self.key("own.key")
        config = self.load(
            MAIN + "tls_ca_file = /etc/clients-ca.pem\n"
            "server_tls_sslmode = require\nserver_tls_ca_file = /etc/ca.pem\n"
            "[a]\nhost = db1\nport = 5432\nserver_tls_sslmode = verify-ca\n"
            f"tls_ca_file = /etc/own-ca.pem\ntls_cert_file = /etc/own.pem\ntls_key_file = {key}\n"
            "[b]\nhost = db2\nport = 5432\n"
        )
        a, b = config.servers
        self.assertEqual(
            (a.sslmode, a.tlsCaFile, a.tlsKeyFile), ("verify-ca", "/etc/own-ca.pem", key)
        )
        self.assertEqual((b.sslmode, b.tlsCaFile, b.tlsKeyFile), ("require", "/etc/ca.pem", None))

    def test_pgagroalTlsSwitch(self) -> None:
        """
        A section's C{tls = on} means C{require}, or the main mode when it
        is stricter; C{tls = off} means C{disable}; the section's own
        C{server_tls_sslmode} wins over both.
        """
        config = self.load(
            MAIN + "server_tls_sslmode = prefer\n"
            "[a]\nhost = db1\nport = 5432\ntls = on\n"
            "[b]\nhost = db2\nport = 5432\ntls = off\n"
            "[c]\nhost = db3\nport = 5432\ntls = on\nserver_tls_sslmode = prefer\n"
            "[d]\nhost = db4\nport = 5432\n"
        )
        self.assertEqual(
            [s.sslmode for s in config.servers], ["require", "disable", "prefer", "prefer"]
        )
        config = self.load(
            MAIN + "server_tls_sslmode = verify-ca\nserver_tls_ca_file = /ca.pem\n"
            "[a]\nhost = db1\nport = 5432\ntls = on\n"
        )
        self.assertEqual(config.servers[0].sslmode, "verify-ca")

    def test_verifyNeedsCa(self) -> None:
        """
        C{verify-ca} and C{verify-full} without a CA file are refused,
        naming the section.
        """
        error = self.loadError(
            MAIN + "[a]\nhost = db\nport = 5432\nserver_tls_sslmode = verify-full\n"
        )
        self.assertIn("[a]", error.message)
        self.assertIn("CA file", error.message)
        self.assertEqual(error.line, 7)

    def test_certificateWithoutKey(self) -> None:
        """
        A client certificate without its key is refused.
        """
        error = self.loadError(
            MAIN + "[a]\nhost = db\nport = 5432\nserver_tls_sslmode = require\n"
            "tls_cert_file = /etc/c.pem\n"
        )
        self.assertIn("go together", error.message)

    def test_sectionKeyReadableByOthers(self) -> None:
        """
        A server section's key file readable by others is refused at load:
        one line with the configuration file, line, and the key's path.
        """
        key = self.key(mode=0o644)
        error = self.loadError(
            MAIN + f"[a]\nhost = db\nport = 5432\ntls = on\ntls_key_file = {key}\n"
            "tls_cert_file = /etc/c.pem\n"
        )
        self.assertEqual(error.line, 8)
        self.assertIn(key, str(error))
        self.assertNotIn("\n", str(error))

    def test_mainKeyReadableByOthers(self) -> None:
        """
        So is the main section's C{server_tls_key_file}.
        """
        key = self.key(mode=0o604)
        error = self.loadError(MAIN + f"server_tls_key_file = {key}\n[a]\nhost = db\nport = 5432\n")
        self.assertEqual((error.line, error.key), (4, "server_tls_key_file"))
        self.assertIn(key, str(error))

    def test_notFromTheConsole(self) -> None:
        """
        The console's SET cannot change the server TLS defaults: they are
        read into the server sections with the files.
        """
        config = self.load(MAIN + "[a]\nhost = db\nport = 5432\n")
        for key, value in (("server_tls_sslmode", "require"), ("server_tls_ca_file", "/x")):
            error = self.assertRaises(ConfigError, changeSetting, config, key, value)
            self.assertIn("RELOAD", error.message)
