"""
Tests for L{pgtwist.config.loader}: reading pgagroal's family of files.
"""

from __future__ import annotations

import os

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.loader import ConfigError, findConfigFiles, loadConfiguration
from pgtwist.config.model import ConfigPaths, HbaRule, MainSettings, ServerSettings
from tests.unit._configfiles import MINIMAL, FilesTestCase

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
ETC = os.path.join(HERE, os.pardir, os.pardir, "etc")


class ConfigErrorTests(SynchronousTestCase):
    """
    Tests for L{ConfigError}.
    """

    def test_withLine(self) -> None:
        """
        With a line number it prints as C{path:line: message} and keeps each
        part as an attribute.
        """
        error = ConfigError("unknown auth method 'sha1'", "etc/pgtwist_hba.conf", 7, "method")
        self.assertEqual(str(error), "etc/pgtwist_hba.conf:7: unknown auth method 'sha1'")
        self.assertEqual(
            (error.message, error.path, error.line, error.key),
            ("unknown auth method 'sha1'", "etc/pgtwist_hba.conf", 7, "method"),
        )

    def test_withoutLine(self) -> None:
        """
        Without a line number it prints as C{path: message}.
        """
        error = ConfigError("no server section", "etc/pgtwist.conf")
        self.assertEqual(str(error), "etc/pgtwist.conf: no server section")
        self.assertIsNone(error.line)
        self.assertIsNone(error.key)


class PgagroalSamplesTests(FilesTestCase):
    """
    pgagroal's own sample files load unchanged.
    """

    def test_gettingStarted(self) -> None:
        """
        The C{pgagroal.conf} of pgagroal's "Getting started" gives its
        settings, with C{host = *} kept as "all interfaces", and no warning.
        """
        config = loadConfiguration(
            os.path.join(FIXTURES, "pgagroal_getting_started.conf"),
            os.path.join(FIXTURES, "pgagroal_hba.conf"),
            warn=self.warnings.append,
        )
        self.assertEqual(
            config.main,
            MainSettings(
                host="*",
                port=2345,
                logType="file",
                logLevel="info",
                logPath="/tmp/pgagroal.log",
                maxConnections=100,
                idleTimeout=600.0,
                validation="off",
                unixSocketDir="/tmp/",
            ),
        )
        self.assertEqual(config.servers, (ServerSettings("primary", "localhost", 5432),))
        self.assertEqual(config.primary.name, "primary")
        self.assertEqual(self.warnings, [])

    def test_docSample(self) -> None:
        """
        pgagroal's C{doc/etc/pgagroal.conf} loads: C{ev_backend} is accepted
        silently and the empty C{log_path} keeps the default.
        """
        config = loadConfiguration(
            os.path.join(FIXTURES, "pgagroal_doc.conf"), warn=self.warnings.append
        )
        self.assertEqual(
            config.main,
            MainSettings(
                host="localhost",
                port=2345,
                logType="console",
                logLevel="info",
                maxConnections=100,
                idleTimeout=600.0,
                validation="off",
                unixSocketDir="/tmp/",
            ),
        )
        self.assertEqual(config.main.logPath, MainSettings().logPath)
        self.assertEqual(config.servers, (ServerSettings("primary", "localhost", 5432),))
        self.assertEqual(self.warnings, [])

    def test_hbaSample(self) -> None:
        """
        pgagroal's C{host all all all all} gives one rule matching everyone
        with the method C{all}.
        """
        hbaPath = os.path.join(FIXTURES, "pgagroal_hba.conf")
        config = loadConfiguration(
            os.path.join(FIXTURES, "pgagroal_doc.conf"), hbaPath, warn=self.warnings.append
        )
        self.assertEqual(config.hba, (HbaRule("host", "all", "all", None, "all", hbaPath, 1),))
        self.assertEqual(config.paths, ConfigPaths(config=config.paths.config, hba=hbaPath))


class EtcSamplesTests(FilesTestCase):
    """
    The sample files in C{etc/} load without warnings.
    """

    def test_load(self) -> None:
        """
        C{etc/pgtwist.conf}, C{etc/pgtwist_hba.conf} and
        C{etc/pgtwist_databases.conf} load, with the settings the README
        walkthrough relies on.
        """
        config = loadConfiguration(
            os.path.join(ETC, "pgtwist.conf"),
            os.path.join(ETC, "pgtwist_hba.conf"),
            os.path.join(ETC, "pgtwist_databases.conf"),
            warn=self.warnings.append,
        )
        self.assertEqual(
            config.main,
            MainSettings(
                host="localhost",
                port=2345,
                unixSocketDir="/tmp/",
                logType="console",
                logLevel="info",
                maxConnections=100,
                idleTimeout=600.0,
                validation="off",
                pipeline="session",
            ),
        )
        self.assertEqual(config.servers, (ServerSettings("primary", "localhost", 5432),))
        self.assertEqual(
            [(r.type, r.database, r.user, r.address, r.method) for r in config.hba],
            [("host", "all", "all", None, "all")],
        )
        self.assertEqual(config.limits, ())
        self.assertEqual(self.warnings, [])

    def test_databasesExamples(self) -> None:
        """
        The commented examples of C{etc/pgtwist_databases.conf} are valid
        once uncommented.
        """
        with open(os.path.join(ETC, "pgtwist_databases.conf"), encoding="utf-8") as f:
            lines = f.read().splitlines()
        start = next(n for n, line in enumerate(lines) if line.startswith("# Examples"))
        examples = [line[1:] for line in lines[start + 1 :] if line.strip("# ")]
        limitsPath = self.write("databases.conf", "\n".join(examples) + "\n")
        config = self.load(MINIMAL, limitsPath=limitsPath)
        self.assertEqual(
            [limit.database for limit in config.limits], ["mydb", "production_db", "reports"]
        )


class MainFileTests(FilesTestCase):
    """
    Tests for reading the main file.
    """

    def test_minimal(self) -> None:
        """
        Only host and port are required in the main section; everything else
        has pgagroal's default, and there is no unix socket.
        """
        config = self.load(MINIMAL)
        self.assertEqual(config.main, MainSettings(host="127.0.0.1", port=6432))
        self.assertIsNone(config.main.unixSocketDir)
        self.assertEqual(config.hba, ())
        self.assertEqual(config.users, {})
        self.assertIsNone(config.superuser)

    def test_everyKey(self) -> None:
        """
        Every main key is parsed into its L{MainSettings} field.
        """
        certificate = self.write("server.crt", "")
        key = self.write("server.key", "")
        os.chmod(key, 0o600)
        ca = self.write("ca.crt", "")
        config = self.load(
            "[pgtwist]\n"
            "host = *\n"
            "port = 6432\n"
            "unix_socket_dir = /run/pgtwist\n"
            "log_type = FILE\n"
            "log_level = DEBUG3\n"
            "log_path = /var/log/pgtwist.log\n"
            "log_connections = on\n"
            "log_disconnections = yes\n"
            "max_connections = 250\n"
            "idle_timeout = 10m\n"
            "autodb_idle_timeout = 2h\n"
            "blocking_timeout = 15\n"
            "authentication_timeout = 500ms\n"
            "max_connection_age = 1h\n"
            "pipeline = Transaction\n"
            "validation = background\n"
            "background_interval = 2m\n"
            "max_retries = 3\n"
            "allow_unknown_users = false\n"
            "failover = on\n"
            "failover_script = /usr/local/bin/failover.sh\n"
            "disconnect_client = 1h\n"
            "disconnect_client_force = true\n"
            "shutdown_timeout = 2m\n"
            "keep_alive = off\n"
            "nodelay = 0\n"
            "backlog = 64\n"
            "tls = on\n"
            "metrics = 2346\n"
            "management = 2347\n"
            "listen = tcp:6433:interface=127.0.0.1, unix:/tmp/.s.PGSQL.6433\n"
            "manhole = tcp:2222:interface=127.0.0.1\n"
            "max_prepared_statements = 0\n"
            "max_listen_channels = 5\n"
            "max_pending_notifications = 50\n"
            "workers = 4\n"
            f"tls_cert_file = {certificate}\n"
            f"tls_key_file = {key}\n"
            f"tls_ca_file = {ca}\n"
            "client_tls_sslmode = Verify-Full\n"
            "client_tls_protocols = tlsv1.3\n"
            "client_tls_ciphers = HIGH:!aNULL\n"
            "[a]\nhost = 127.0.0.1\nport = 5432\n"
            "[b]\nhost = /var/run/postgresql\nport = 5433\nprimary = on\ntls = on\n"
        )
        self.assertEqual(
            config.main,
            MainSettings(
                host="*",
                port=6432,
                unixSocketDir="/run/pgtwist",
                logType="file",
                logLevel="debug3",
                logPath="/var/log/pgtwist.log",
                logConnections=True,
                logDisconnections=True,
                maxConnections=250,
                idleTimeout=600.0,
                autodbIdleTimeout=7200.0,
                blockingTimeout=15.0,
                authenticationTimeout=0.5,
                maxConnectionAge=3600.0,
                pipeline="transaction",
                validation="background",
                backgroundInterval=120.0,
                maxRetries=3,
                allowUnknownUsers=False,
                failover=True,
                failoverScript="/usr/local/bin/failover.sh",
                disconnectClient=3600.0,
                disconnectClientForce=True,
                shutdownTimeout=120.0,
                keepAlive=False,
                nodelay=False,
                backlog=64,
                tls=True,
                metrics="tcp:2346",
                management=2347,
                listen=("tcp:6433:interface=127.0.0.1", "unix:/tmp/.s.PGSQL.6433"),
                manhole="tcp:2222:interface=127.0.0.1",
                maxPreparedStatements=0,
                maxListenChannels=5,
                maxPendingNotifications=50,
                workers=4,
                tlsCertFile=certificate,
                tlsKeyFile=key,
                tlsCaFile=ca,
                clientTlsSslmode="verify-full",
                clientTlsProtocols=("tlsv1.3",),
                clientTlsCiphers="HIGH:!aNULL",
            ),
        )
        self.assertEqual(
            config.servers,
            (
                ServerSettings("a", "127.0.0.1", 5432),
                ServerSettings(
                    "b", "/var/run/postgresql", 5433, primary=True, tls=True, sslmode="require"
                ),
            ),
        )
        self.assertEqual(config.primary.name, "b")
        self.assertEqual(self.warnings, [])

    def test_pgagroalOnlyKeysAccepted(self) -> None:
        """
        pgagroal keys pgtwist does not use are accepted without a warning,
        in the main section and in server sections.
        """
        self.load(
            "[pgagroal]\nhost = *\nport = 2345\n"
            "ev_backend = io_uring\nhugepage = try\nmetrics_cache_max_age = 5m\n"
            "metrics_cache_max_size = 256k\nlog_rotation_age = 1d\nlog_rotation_size = 1M\n"
            'log_line_prefix = "PGAGROAL %Y-%m-%d"\nlog_mode = create\ntracker = on\n'
            "track_prepared_statements = on\npidfile = /tmp/p.pid\nupdate_process_title = never\n"
            "tls_cert_file = c.pem\ntls_key_file = k.pem\ntls_ca_file = ca.pem\n"
            "rotate_frontend_password_timeout = 0\nrotate_frontend_password_length = 8\n"
            "auth_query = off\n"
            "[primary]\nhost = localhost\nport = 5432\ntls_cert_file = c.pem\n"
            "tls_key_file = k.pem\ntls_ca_file = ca.pem\n"
        )
        self.assertEqual(self.warnings, [])

    def test_logFileMode(self) -> None:
        """
        C{log_file_mode} is octal, as PostgreSQL's, default 0600. pgagroal's
        C{log_mode} (C{append} or C{create}, how it opens the file) is
        another key: accepted, and it leaves the mode alone.
        """
        base = "[pgtwist]\nhost = *\nport = 1\n{}[p]\nhost = h\nport = 2\n"
        self.assertEqual(self.load(base.format("")).main.logFileMode, 0o600)
        self.assertEqual(self.load(base.format("log_file_mode = 0640\n")).main.logFileMode, 0o640)
        self.assertEqual(self.load(base.format("log_file_mode = 644\n")).main.logFileMode, 0o644)
        self.assertEqual(self.load(base.format("log_mode = create\n")).main.logFileMode, 0o600)

    def test_commentsAndQuotes(self) -> None:
        """
        Whole-line and trailing C{#}/C{;} comments are ignored, except
        inside quotes; quotes are removed (pgagroal's documented example).
        """
        config = self.load(
            "# This line is ignored since it starts with '#'\n"
            "  ; and so is this one\n"
            "[pgagroal]  # the main section\n"
            "host = localhost ; trailing\n"
            "port = '2345'\n"
            'log_line_prefix = "PGAGROAL #%Y-%m-%d-%H:%M:%S" # quoted because it contains spaces\n'
            "log_type= console#log to stdout\n"
            "pipeline = 'performance' # no need to quote since it does not contain any spaces\n"
            'log_path = "/tmp/a;b.log"\n'
            "[primary]\nhost = localhost\nport = 5432\n"
        )
        self.assertEqual(config.main.host, "localhost")
        self.assertEqual(config.main.port, 2345)
        self.assertEqual(config.main.logType, "console")
        self.assertEqual(config.main.pipeline, "performance")
        self.assertEqual(config.main.logPath, "/tmp/a;b.log")
        self.assertEqual(self.warnings, [])

    def test_apostropheInsideValue(self) -> None:
        """
        Only a quote that starts the value opens a quoted value: an
        apostrophe inside an unquoted value does not hide the comment.
        """
        config = self.load(
            MINIMAL.replace("port = 6432", "port = 6432\nlog_path = /tmp/it's.log # c")
        )
        self.assertEqual(config.main.logPath, "/tmp/it's.log")

    def test_unclosedQuote(self) -> None:
        """
        A value whose opening quote is never closed is taken as it is.
        """
        config = self.load(MINIMAL.replace("port = 6432", 'port = 6432\nlog_path = "/tmp/x.log'))
        self.assertEqual(config.main.logPath, '"/tmp/x.log')

    def test_textAfterQuote(self) -> None:
        """
        Text other than a comment after the closing quote is an error.
        """
        error = self.loadError(MINIMAL.replace("port = 6432", 'port = 6432\nlog_path = "a" b'))
        self.assertEqual(
            str(error), f"{error.path}:4: unexpected text after the closing quote: 'b'"
        )

    def test_keysCaseInsensitive(self) -> None:
        """
        Keys are matched whatever their case.
        """
        config = self.load("[pgtwist]\nHOST = 127.0.0.1\nPort = 1\n[p]\nHost = ::1\nPORT = 5432\n")
        self.assertEqual((config.main.host, config.main.port), ("127.0.0.1", 1))
        self.assertEqual(config.servers, (ServerSettings("p", "::1", 5432),))

    def test_sectionOrder(self) -> None:
        """
        The main section may come after server sections.
        """
        config = self.load(
            "[primary]\nhost = localhost\nport = 5432\n[pgtwist]\nhost = *\nport = 1\n"
        )
        self.assertEqual(config.main.port, 1)
        self.assertEqual([s.name for s in config.servers], ["primary"])

    def test_unknownKeyWarning(self) -> None:
        """
        An unknown key is reported as C{path:line: unknown key 'foo' in
        section [name]} and otherwise ignored.
        """
        config = self.load(
            "[pgtwist]\nhost = *\nport = 1\nfoo = bar\n[primary]\nhost = h\nport = 2\nweight = 3\n"
        )
        path = config.paths.config
        self.assertEqual(
            self.warnings,
            [
                f"{path}:4: unknown key 'foo' in section [pgtwist]",
                f"{path}:8: unknown key 'weight' in section [primary]",
            ],
        )

    def test_defaultWarnLogs(self) -> None:
        """
        Without a C{warn} callable, warnings are logged at warn level
        through twisted.logger.
        """
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        path = self.write("pgtwist.conf", MINIMAL + "foo = 1\n")
        loadConfiguration(path)
        events = [e for e in observer if e.get("log_namespace", "").startswith("pgtwist.config")]
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["log_level"], LogLevel.warn)
        self.assertEqual(
            events[0]["configWarning"], f"{path}:8: unknown key 'foo' in section [primary]"
        )

    def test_duplicateKey(self) -> None:
        """
        A key repeated in a section is reported and the last value wins.
        """
        config = self.load("[pgtwist]\nhost = *\nport = 1\nport = 2\n[p]\nhost = h\nport = 3\n")
        self.assertEqual(config.main.port, 2)
        self.assertEqual(
            self.warnings,
            [
                f"{config.paths.config}:4: duplicate key 'port' in section [pgtwist] "
                f"(also at line 3); the last one wins"
            ],
        )

    def test_badValue(self) -> None:
        """
        A bad value is a L{ConfigError} at its line, naming the key and the
        expected form.
        """
        error = self.loadError(
            "[pgtwist]\n"
            "host = localhost\n"
            "port = 2345\n"
            "# the pool\n"
            "\n"
            "log_level = info\n"
            "max_connections = abc\n"
            "[primary]\nhost = localhost\nport = 5432\n"
        )
        path = os.path.join(self.directory, "pgtwist.conf")
        self.assertEqual(
            str(error),
            f"{path}:7: max_connections: expected an integer between 1 and 10000, got 'abc'",
        )
        self.assertEqual((error.path, error.line, error.key), (path, 7, "max_connections"))

    def test_badValues(self) -> None:
        """
        Each kind of value reports its own expected form.
        """
        cases = [
            (
                "max_connections = 0",
                "max_connections: expected an integer between 1 and 10000, got '0'",
            ),
            (
                "log_connections = sometimes",
                "log_connections: expected on/off (or yes/no, true/false, 1/0), got 'sometimes'",
            ),
            (
                "idle_timeout = soon",
                "idle_timeout: expected a duration such as 30, 30s, 5m, 2h, 1d or 500ms, got 'soon'",
            ),
            ("log_type = stderr", "log_type: expected one of console, file, syslog, got 'stderr'"),
            (
                "validation = always",
                "validation: expected one of off, foreground, background, got 'always'",
            ),
            (
                "log_level = verbose",
                "log_level: expected one of fatal, error, warn, info, debug, debug1, debug2, debug3, debug4, debug5, trace, got 'verbose'",
            ),
            ("port = 70000", "port: expected an integer between 0 and 65535, got '70000'"),
            ("host = ", "host: expected a host name, an address or *, got ''"),
            (
                "pipeline = my pipeline",
                "pipeline: expected a pipeline name such as auto, session, transaction or performance, got 'my pipeline'",
            ),
            (
                "metrics = localhost",
                "metrics: expected a port number or an endpoint such as tcp:6432:interface=127.0.0.1, got 'localhost'",
            ),
            ("workers = 0", "workers: expected an integer >= 1, got '0'"),
            (
                "log_file_mode = 0999",
                "log_file_mode: expected permissions in octal such as 0600 or 0640, got '0999'",
            ),
            (
                "max_prepared_statements = -1",
                "max_prepared_statements: expected an integer >= 0, got '-1'",
            ),
            (
                "max_pending_notifications = 0",
                "max_pending_notifications: expected an integer >= 1, got '0'",
            ),
        ]
        for line, message in cases:
            error = self.loadError(
                f"[pgtwist]\nhost = *\nport = 1\n{line}\n[p]\nhost = h\nport = 2\n"
            )
            self.assertEqual(str(error), f"{error.path}:4: {message}")

    def test_badServerValue(self) -> None:
        """
        A bad value in a server section is reported at its line.
        """
        error = self.loadError(MINIMAL + "primary = perhaps\n")
        self.assertEqual(
            str(error),
            f"{error.path}:8: primary: expected on/off (or yes/no, true/false, 1/0), got 'perhaps'",
        )
        error = self.loadError("[pgtwist]\nhost = *\nport = 1\n[p]\nhost = h\nport = 0\n")
        self.assertEqual(
            str(error), f"{error.path}:6: port: expected an integer between 1 and 65535, got '0'"
        )

    def test_keyOutsideSection(self) -> None:
        """
        A key before any section header is an error at its line.
        """
        error = self.loadError("\nhost = *\n" + MINIMAL)
        self.assertEqual(
            str(error), f"{error.path}:2: key 'host' is outside any section; put it under [pgtwist]"
        )

    def test_notKeyValue(self) -> None:
        """
        A line that is neither a header nor C{key = value} is an error.
        """
        error = self.loadError("[pgtwist]\nhost *\n")
        self.assertEqual(str(error), f"{error.path}:2: expected 'key = value', got 'host *'")
        error = self.loadError("[pgtwist]\n= 5\n")
        self.assertEqual(str(error), f"{error.path}:2: expected 'key = value', got '= 5'")

    def test_badSectionHeader(self) -> None:
        """
        An unclosed or empty section header is an error at its line.
        """
        error = self.loadError(MINIMAL + "[replica\nhost = h\n")
        self.assertEqual(
            str(error),
            f"{error.path}:8: expected a section header such as [primary], got '[replica'",
        )
        error = self.loadError("[ ]\n")
        self.assertEqual(
            str(error), f"{error.path}:1: expected a section header such as [primary], got '[ ]'"
        )

    def test_duplicateSection(self) -> None:
        """
        A section name used twice is an error at the second one.
        """
        error = self.loadError(MINIMAL + "[primary]\nhost = 127.0.0.1\nport = 5433\n")
        self.assertEqual(
            str(error), f"{error.path}:8: duplicate section [primary] (first at line 5)"
        )

    def test_noMainSection(self) -> None:
        """
        A file without a main section is an error for the whole file.
        """
        error = self.loadError("[primary]\nhost = h\nport = 1\n")
        self.assertEqual(str(error), f"{error.path}: no [pgtwist] (or [pgagroal]) main section")

    def test_twoMainSections(self) -> None:
        """
        C{[pgtwist]} and its alias C{[pgagroal]} cannot both be present.
        """
        error = self.loadError(MINIMAL + "[pgagroal]\nhost = *\nport = 1\n")
        self.assertEqual(
            str(error),
            f"{error.path}:8: more than one main section: [pgtwist] at line 1 and [pgagroal]",
        )

    def test_missingRequiredKey(self) -> None:
        """
        A main or server section without host or port is an error at its
        header line.
        """
        error = self.loadError("[pgtwist]\nhost = *\n[p]\nhost = h\nport = 2\n")
        self.assertEqual(
            str(error), f"{error.path}:1: missing required key 'port' in section [pgtwist]"
        )
        self.assertEqual(error.key, "port")
        error = self.loadError("[pgtwist]\nhost = *\nport = 1\n\n[p]\nport = 2\n")
        self.assertEqual(str(error), f"{error.path}:5: missing required key 'host' in section [p]")

    def test_noServer(self) -> None:
        """
        At least one server section is required.
        """
        error = self.loadError("[pgtwist]\nhost = *\nport = 1\n")
        self.assertEqual(
            str(error),
            f"{error.path}: no server section: add one such as [primary] with host and port",
        )

    def test_duplicateServer(self) -> None:
        """
        Two servers with the same host and port are an error.
        """
        error = self.loadError(MINIMAL + "[copy]\nhost = 127.0.0.1\nport = 5432\n")
        self.assertEqual(
            str(error),
            f"{error.path}:8: server [copy] has the same host and port as [primary] (line 5)",
        )

    def test_twoPrimaries(self) -> None:
        """
        At most one server may be marked C{primary = on}.
        """
        error = self.loadError(
            "[pgtwist]\nhost = *\nport = 1\n"
            "[a]\nhost = h\nport = 2\nprimary = on\n"
            "[b]\nhost = h\nport = 3\nprimary = off\n"
            "[c]\nhost = h\nport = 4\nprimary = yes\n"
        )
        self.assertEqual(
            str(error),
            f"{error.path}:15: only one server may have primary = on; [a] (line 4) already has it",
        )

    def test_tooManyServers(self) -> None:
        """
        At most 64 server sections are allowed, as in pgagroal.
        """
        servers = "".join(f"[s{n}]\nhost = h\nport = {n + 1}\n" for n in range(64))
        config = self.load("[pgtwist]\nhost = *\nport = 1\n" + servers)
        self.assertEqual(len(config.servers), 64)
        error = self.loadError(
            "[pgtwist]\nhost = *\nport = 1\n" + servers + "[extra]\nhost = h\nport = 99\n"
        )
        self.assertEqual(str(error), f"{error.path}:196: too many server sections: at most 64")

    def test_environmentVariables(self) -> None:
        """
        C{$VAR} and C{${VAR}} are replaced in C{log_path},
        C{unix_socket_dir} and C{failover_script}.
        """
        config = self.load(
            "[pgtwist]\nhost = *\nport = 1\nlog_path = $LOGS/pgtwist.log\n"
            "unix_socket_dir = ${RUN}dir\nfailover_script = $HOME/failover.sh\n"
            "[p]\nhost = h\nport = 2\n",
            environ={"LOGS": "/var/log", "RUN": "/run/", "HOME": "/home/pg"},
        )
        self.assertEqual(config.main.logPath, "/var/log/pgtwist.log")
        self.assertEqual(config.main.unixSocketDir, "/run/dir")
        self.assertEqual(config.main.failoverScript, "/home/pg/failover.sh")

    def test_unsetEnvironmentVariable(self) -> None:
        """
        A variable that is not set is an error naming it.
        """
        error = self.loadError(
            "[pgtwist]\nhost = *\nport = 1\nlog_path = ${NOPE}/x.log\n[p]\nhost = h\nport = 2\n",
            environ={},
        )
        self.assertEqual(
            str(error), f"{error.path}:4: log_path: environment variable 'NOPE' is not set"
        )

    def test_endpoints(self) -> None:
        """
        C{metrics = 0} and an empty C{manhole} are off; C{listen} takes a
        comma-separated list and skips empty items.
        """
        config = self.load(
            "[pgtwist]\nhost = *\nport = 1\nmetrics = 0\nmanhole =\n"
            "listen = 6433,, unix:/tmp/s\n[p]\nhost = h\nport = 2\n"
        )
        self.assertIsNone(config.main.metrics)
        self.assertIsNone(config.main.manhole)
        self.assertEqual(config.main.listen, ("tcp:6433", "unix:/tmp/s"))

    def test_missingFile(self) -> None:
        """
        A file that cannot be read is a L{ConfigError} for that file.
        """
        path = os.path.join(self.directory, "nope.conf")
        error = self.assertRaises(ConfigError, loadConfiguration, path)
        self.assertEqual(str(error), f"{path}: cannot read the file: No such file or directory")

    def test_notUtf8(self) -> None:
        """
        A file that is not UTF-8 is a L{ConfigError} for that file.
        """
        path = os.path.join(self.directory, "latin1.conf")
        with open(path, "wb") as f:
            f.write(b"[pgtwist]\nhost = caf\xe9\n")
        error = self.assertRaises(ConfigError, loadConfiguration, path)
        self.assertEqual(error.path, path)
        self.assertTrue(error.message.startswith("not valid UTF-8"), error.message)


class FindConfigFilesTests(FilesTestCase):
    """
    Tests for L{findConfigFiles}, pgagroal's C{-D} directory lookup.
    """

    def test_found(self) -> None:
        """
        The standard names present are returned under
        L{loadConfiguration}'s argument names, pgtwist names first.
        """
        for name in (
            "pgagroal.conf",
            "pgtwist_hba.conf",
            "pgagroal_hba.conf",
            "pgagroal_databases.conf",
            "pgtwist_users.conf",
            "pgagroal_frontend_users.conf",
            "pgtwist_admins.conf",
            "pgagroal_superuser.conf",
            "other.conf",
        ):
            self.write(name, "")
        found = findConfigFiles(self.directory)
        self.assertEqual(
            found,
            {
                "configPath": os.path.join(self.directory, "pgagroal.conf"),
                "hbaPath": os.path.join(self.directory, "pgtwist_hba.conf"),
                "limitsPath": os.path.join(self.directory, "pgagroal_databases.conf"),
                "usersPath": os.path.join(self.directory, "pgtwist_users.conf"),
                "frontendUsersPath": os.path.join(self.directory, "pgagroal_frontend_users.conf"),
                "adminsPath": os.path.join(self.directory, "pgtwist_admins.conf"),
                "superuserPath": os.path.join(self.directory, "pgagroal_superuser.conf"),
            },
        )

    def test_loadFound(self) -> None:
        """
        The result can be passed straight to L{loadConfiguration}.
        """
        self.write("pgtwist.conf", MINIMAL)
        self.write("pgtwist_hba.conf", "host all all all trust\n")
        os.mkdir(os.path.join(self.directory, "pgtwist_users.conf"))
        found = findConfigFiles(self.directory)
        self.assertEqual(sorted(found), ["configPath", "hbaPath"])
        config = loadConfiguration(**found, warn=self.warnings.append)
        self.assertEqual(config.hba[0].method, "trust")

    def test_empty(self) -> None:
        """
        An empty directory gives an empty result.
        """
        self.assertEqual(findConfigFiles(self.directory), {})
