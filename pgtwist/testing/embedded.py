# -*- test-case-name: tests.unit.test_embedded -*-
"""
A throwaway PostgreSQL cluster for C{make run}, the test suite and the
benchmarks.

L{PostgresCluster} runs C{initdb} into a temporary directory, starts the
server on its own loopback port and unix socket directory, and removes
everything again on L{PostgresCluster.stop}. The binaries come from
L{findPostgresBin}: C{$PGTWIST_PG_BIN}, C{pg_config --bindir}, Debian's
C{/usr/lib/postgresql/*/bin} or the C{pgserver} wheel, in that order.

PostgreSQL refuses to run as root, so when we are root C{initdb}, C{pg_ctl}
and the server run as C{nobody} (or C{$PGTWIST_PG_USER}).

Everything here is synchronous and blocking (it runs child processes and
waits for them): call it before the reactor runs, or from a thread, never
from a reactor callback.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from pgtwist.net.endpoints import socketPath
from pgtwist.testing.certs import CertificateAuthority, IssuedCertificate
from pgtwist.testing.pgbin import (
    DEBIAN_PATTERN,
    REQUIRED_PROGRAMS,
    PostgresNotFound,
    debianBinDirs,
    findPostgresBin,
    pgConfigBindir,
    pgserverBinDir,
)
from pgtwist.wire.sql import quoteIdentifier, quoteLiteral

__all__ = [
    "AUTH_METHODS",
    "DEBIAN_PATTERN",
    "REQUIRED_PROGRAMS",
    "debianBinDirs",
    "pgConfigBindir",
    "pgserverBinDir",
    "PostgresCluster",
    "PostgresCommandError",
    "PostgresNotFound",
    "PostgresStartError",
    "RunAs",
    "findPostgresBin",
    "hbaForRoles",
]

#: The methods L{PostgresCluster.createRole} accepts.
AUTH_METHODS: frozenset[str] = frozenset({"scram-sha-256", "md5", "password", "trust"})
#: The only address the embedded server listens on.
LOOPBACK = "127.0.0.1"
#: A unix socket path must fit in C{sockaddr_un.sun_path} (108 bytes on Linux).
_SOCKET_PATH_MAX = 100
#: How often L{PostgresCluster.start} picks another port when its pick was taken.
_PORT_ATTEMPTS = 3
#: How many lines of the server log a start failure quotes.
_LOG_TAIL_LINES = 30


class PostgresCommandError(RuntimeError):
    """
    A PostgreSQL program (C{initdb}, C{pg_ctl}, C{psql}) exited with an error.

    @ivar returncode: The program's exit status.
    @ivar output: What it wrote to stdout and stderr.
    """

    def __init__(self, message: str, returncode: int, output: str) -> None:
        """
        @param message: What was being done.
        """
        super().__init__(f"{message} (exit status {returncode}):\n{output}")
        self.returncode = returncode
        self.output = output


class PostgresStartError(PostgresCommandError):
    """
    The server did not start; the message ends with the tail of its log.
    """


# --- binary discovery ---------------------------------------------------


@dataclass(frozen=True)
class RunAs:
    """
    The unprivileged account (name, user id, primary group id) PostgreSQL
    runs as when we are root.
    """

    name: str
    uid: int
    gid: int


def unprivilegedUser(
    environ: Mapping[str, str] = os.environ,
    geteuid: Callable[[], int] = os.geteuid,
    getpwnam: Callable[[str], Any] = pwd.getpwnam,
) -> RunAs | None:
    """
    The account to run PostgreSQL as: C{None} (ourselves) unless we are
    root, in which case C{$PGTWIST_PG_USER} or C{nobody}, because C{initdb}
    and C{postgres} refuse to run as root.

    @raise PostgresNotFound: The named account does not exist.
    """
    if geteuid() != 0:
        return None
    name = environ.get("PGTWIST_PG_USER") or "nobody"
    try:
        entry = getpwnam(name)
    except KeyError:
        raise PostgresNotFound(
            f"running as root, PostgreSQL must run as another user, but user {name!r} "
            "does not exist; set PGTWIST_PG_USER"
        ) from None
    if entry.pw_uid == 0:
        raise PostgresNotFound(f"PGTWIST_PG_USER={name!r} is root; PostgreSQL refuses that")
    return RunAs(name, entry.pw_uid, entry.pw_gid)


def _untraversable(path: str, runAs: RunAs) -> str | None:
    """
    The first directory on the way to C{path} (inclusive) that C{runAs}
    cannot enter, judged from the permission bits, or C{None}.
    """
    current = os.path.abspath(path)
    while True:
        info = os.stat(current)
        if info.st_uid == runAs.uid:
            allowed = bool(info.st_mode & stat.S_IXUSR)
        elif info.st_gid == runAs.gid:
            allowed = bool(info.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(info.st_mode & stat.S_IXOTH)
        if not allowed:
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _isPostgresProcess(pid: int, procRoot: str = "/proc") -> bool:
    """
    Whether C{pid} still looks like a PostgreSQL server, so that a stale
    C{postmaster.pid} never makes us kill an unrelated process that reused
    the pid. Without C{/proc} we cannot tell and assume it is.
    """
    if not os.path.isdir(procRoot):
        return True
    try:
        with open(os.path.join(procRoot, str(pid), "cmdline"), "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return b"postgres" in cmdline


# --- configuration text ---------------------------------------------------


def serverSettings(port: int, socketDir: str, maxConnections: int) -> dict[str, str | int]:
    """
    The settings written into the cluster's C{postgresql.conf}: loopback
    only, our own socket directory, and durability off because the data is
    thrown away.
    """
    return {
        "listen_addresses": LOOPBACK,
        "port": port,
        "unix_socket_directories": socketDir,
        "max_connections": maxConnections,
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "shared_buffers": "128MB",
        "logging_collector": "off",
        "password_encryption": "scram-sha-256",
    }


def settingsText(settings: Mapping[str, str | int]) -> str:
    """
    Render L{serverSettings} as C{postgresql.conf} lines: numbers bare,
    strings quoted like SQL literals.
    """
    return "".join(
        f"{key} = {value if isinstance(value, int) else _confLiteral(value)}\n"
        for key, value in settings.items()
    )


def _confLiteral(value: str) -> str:
    """
    A string value for C{postgresql.conf}, which reads backslash escapes in
    every quoted value as an C{E''} literal does: L{quoteLiteral} without
    the C{E}.
    """
    quoted = quoteLiteral(value)
    return quoted[1:] if quoted.startswith("E") else quoted


def _hbaName(name: str) -> str:
    """
    Quote a role name for C{pg_hba.conf} when it is not a plain word.
    """
    if re.fullmatch(r"[A-Za-z0-9_.\-]+", name) and name not in ("all", "replication"):
        return name
    return '"' + name.replace('"', '""') + '"'


def hbaForRoles(roles: Mapping[str, str]) -> list[str]:
    """
    C{pg_hba.conf} lines giving each role its method over loopback TCP.

    @param roles: Role name to method (one of L{AUTH_METHODS}, or any other
        method name PostgreSQL knows, such as C{reject}).
    @return: Two lines per role, for C{127.0.0.1/32} and C{::1/128}.
    """
    lines = []
    for role, method in roles.items():
        for address in ("127.0.0.1/32", "::1/128"):
            lines.append(f"host all {_hbaName(role)} {address} {method}")
    return lines


def hbaText(superuser: str, lines: Iterable[str], method: str = "trust") -> str:
    """
    The whole C{pg_hba.conf}: a C{local} line for the superuser first, so
    that L{PostgresCluster.psql} always works, then C{lines}.
    """
    head = ["# Written by pgtwist.testing.embedded.", f"local all {_hbaName(superuser)} {method}"]
    return "\n".join([*head, *lines]) + "\n"


def roleSql(name: str, password: str | None, method: str) -> str:
    """
    SQL creating a login role whose stored password suits C{method}: an md5
    hash for C{md5} (PostgreSQL falls back to SCRAM when the hash is SCRAM),
    a SCRAM verifier otherwise (C{password} works with any hash).

    @raise ValueError: C{method} is not in L{AUTH_METHODS}.
    """
    if method not in AUTH_METHODS:
        raise ValueError(f"unknown auth method {method!r}; expected one of {sorted(AUTH_METHODS)}")
    encryption = "md5" if method == "md5" else "scram-sha-256"
    statement = f"CREATE ROLE {quoteIdentifier(name)} LOGIN"
    if password is not None:
        statement += f" PASSWORD {quoteLiteral(password)}"
    return f"SET password_encryption = {quoteLiteral(encryption)};\n{statement};\n"


def _dsnValue(value: str) -> str:
    """
    Quote a libpq connection-string value when it needs it.
    """
    if value and not re.search(r"[\s'\\=]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def buildDsn(host: str, port: int, user: str, database: str, password: str | None = None) -> str:
    """
    A libpq C{key=value} connection string.
    """
    parts = [("host", host), ("port", str(port)), ("dbname", database), ("user", user)]
    if password is not None:
        parts.append(("password", password))
    return " ".join(f"{key}={_dsnValue(value)}" for key, value in parts)


def pickFreePort(host: str = LOOPBACK) -> int:
    """
    Ask the kernel for a free TCP port on C{host}. Another process may take
    it before the server binds it; L{PostgresCluster.start} retries then.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def _childEnvironment(environ: Mapping[str, str]) -> dict[str, str]:
    """
    C{environ} without libpq's C{PG*} variables (a stray C{PGHOST} or
    C{PGPASSWORD} must not redirect our own commands), with C messages so
    that logs read the same everywhere.
    """
    env = {key: value for key, value in environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


# --- the cluster ---------------------------------------------------------


class PostgresCluster:
    """
    A throwaway PostgreSQL cluster: C{initdb}, start on a loopback port,
    stop, delete.

    Usable as a context manager. Its data directory is C{<base>/data}, its
    unix socket directory C{<base>/sock}; C{<base>} is a new directory under
    C{/tmp} unless C{baseDir} is given, and only a directory it created is
    deleted by L{stop}. An existing cluster in a given C{baseDir} is reused.

    @ivar dataDir: The cluster's data directory (set by L{start}).
    @ivar logFile: The server log, inside the data directory.
    @ivar runAs: The account PostgreSQL runs as, or C{None} for ourselves.
    @ivar hbaLines: The lines last given to L{setHba}.
    """

    log = Logger()

    def __init__(
        self,
        baseDir: str | None = None,
        port: int = 0,
        binDir: str | None = None,
        superuser: str = "postgres",
        authMethod: str = "trust",
        maxConnections: int = 200,
        environ: Mapping[str, str] = os.environ,
        ssl: bool = False,
    ) -> None:
        """
        @param baseDir: Where to put the data and socket directories; a new
            temporary directory (deleted on L{stop}) when C{None}.
        @param port: The TCP port on C{127.0.0.1}; C{0} picks a free one.
        @param binDir: The PostgreSQL bin directory; L{findPostgresBin} when
            C{None}.
        @param superuser: The bootstrap superuser C{initdb} creates.
        @param authMethod: The method for the superuser's unix-socket
            connections. The helpers (L{psql}, L{createRole}, ...) connect
            that way without a password, so it must be C{trust}.
        @param maxConnections: The server's C{max_connections}.
        @param environ: Where C{PGTWIST_PG_BIN}/C{PGTWIST_PG_USER} are read.
        @param ssl: Start with C{ssl = on}: a throwaway
            L{CertificateAuthority} (L{certificateAuthority}) issues the
            server a certificate for C{localhost}, C{127.0.0.1} and C{::1},
            and is the server's C{ssl_ca_file} (for C{cert} authentication
            and C{clientcert}).
        @raise PostgresNotFound: C{binDir} is C{None} and nothing is installed.
        """
        if authMethod != "trust":
            raise ValueError(
                f"authMethod {authMethod!r} is not supported: the cluster's own helpers "
                "connect as the superuser over the unix socket without a password"
            )
        self._requestedBaseDir = baseDir
        self._autoPort = port == 0
        self._port = pickFreePort() if port == 0 else port
        self._binDir = binDir if binDir is not None else findPostgresBin(environ)
        self.superuser = superuser
        self.authMethod = authMethod
        self.maxConnections = maxConnections
        self._environ = environ
        self._env = _childEnvironment(environ)
        self.runAs: RunAs | None = None
        self._baseDir: str | None = None
        self._createdBaseDir = False
        self.dataDir: str | None = None
        self.logFile: str | None = None
        self._socketDir: str | None = None
        self._running = False
        self.hbaLines: list[str] = []
        self.ssl = ssl
        #: The CA of the server certificate and of trusted client
        #: certificates when started with C{ssl}; else C{None}.
        self.certificateAuthority: CertificateAuthority | None = (
            CertificateAuthority("pgtwist embedded cluster CA") if ssl else None
        )

    # -- properties --

    @property
    def host(self) -> str:
        """
        The address the server listens on: always C{127.0.0.1}.
        """
        return LOOPBACK

    @property
    def port(self) -> int:
        """
        The server's TCP port.
        """
        return self._port

    @property
    def binDir(self) -> str:
        """
        The PostgreSQL bin directory in use.
        """
        return self._binDir

    @property
    def socketDir(self) -> str:
        """
        The server's unix socket directory (known once L{start} has run).
        """
        if self._socketDir is None:
            raise RuntimeError("the cluster has not been started")
        return self._socketDir

    @property
    def pgbench(self) -> str:
        """
        Where this installation's C{pgbench} would be; it may not exist.
        """
        return os.path.join(self._binDir, "pgbench")

    @property
    def running(self) -> bool:
        """
        Whether L{start} succeeded and L{stop} has not run since.
        """
        return self._running

    def program(self, name: str) -> str:
        """
        The path of one of the installation's programs.
        """
        return os.path.join(self._binDir, name)

    def dsn(self, user: str, database: str, password: str | None = None) -> str:
        """
        A libpq connection string for C{user} on C{database} over TCP.
        """
        return buildDsn(self.host, self.port, user, database, password)

    # -- lifecycle --

    def start(self) -> None:
        """
        Create (or reuse) the cluster and start the server, returning once it
        accepts connections. Registers L{stop} with C{atexit} so no server
        outlives the process.

        @raise PostgresStartError: The server did not start; the message holds
            the tail of its log.
        @raise PostgresCommandError: C{initdb} failed.
        """
        if self._running:
            raise RuntimeError("the cluster is already running")
        self.runAs = unprivilegedUser(self._environ)
        atexit.register(self.stop)
        try:
            self._prepareDirectories()
            self._initdb()
            if self.certificateAuthority is not None:
                self._writeCertificates(
                    self.certificateAuthority.issue(
                        "localhost", hosts=["localhost", "127.0.0.1", "::1"]
                    )
                )
            self._startServer()
        except BaseException:
            self.stop()
            raise
        self._running = True
        self.log.info(
            "Started PostgreSQL from {binDir} in {dataDir} on port {port}",
            binDir=self._binDir, dataDir=self.dataDir, port=self._port,
        )  # fmt: skip

    def startStandby(self, primary: PostgresCluster) -> None:
        """
        Make this cluster a streaming standby of C{primary} and start it:
        C{pg_basebackup -R} over C{primary}'s unix socket (its
        C{pg_hba.conf} gains a C{local replication} line for the
        superuser), then the server, which replays what C{primary} streams.
        Like L{start}, registers L{stop} with C{atexit}.

        @raise PostgresCommandError: C{pg_basebackup} failed.
        @raise PostgresStartError: The standby did not start.
        """
        if self._running:
            raise RuntimeError("the cluster is already running")
        line = f"local replication {_hbaName(primary.superuser)} trust"
        if line not in primary.hbaLines:
            primary.setHba([*primary.hbaLines, line])
        self.runAs = unprivilegedUser(self._environ)
        atexit.register(self.stop)
        try:
            self._prepareDirectories()
            assert self.dataDir is not None
            if not os.path.exists(os.path.join(self.dataDir, "PG_VERSION")):
                args = [self.program("pg_basebackup"), "-D", self.dataDir, "-R", "-X", "stream"]
                args += ["-h", primary.socketDir, "-p", str(primary.port)]
                args += ["-U", primary.superuser, "--no-sync", "-c", "fast"]
                self._runAsServer(args, "pg_basebackup", timeout=300)
            self._startServer()
        except BaseException:
            self.stop()
            raise
        self._running = True
        self.hbaLines = list(primary.hbaLines)
        self.log.info(
            "Started a standby of port {primaryPort} in {dataDir} on port {port}",
            primaryPort=primary.port, dataDir=self.dataDir, port=self._port,
        )  # fmt: skip

    def stop(self) -> None:
        """
        Stop the server (C{pg_ctl -m fast stop}, killing it if that fails)
        and delete the base directory if L{start} created it. Safe to call
        more than once and after a failed L{start}.
        """
        atexit.unregister(self.stop)
        if self.dataDir is not None and os.path.exists(
            os.path.join(self.dataDir, "postmaster.pid")
        ):
            self._stopServer()
        self._running = False
        if self._createdBaseDir and self._baseDir is not None:
            shutil.rmtree(self._baseDir, ignore_errors=True)
            self._createdBaseDir = False
            self.log.info("Removed PostgreSQL cluster in {baseDir}", baseDir=self._baseDir)

    def restart(self, downFor: float = 0.0, mode: str = "fast") -> None:
        """
        Stop the server (C{pg_ctl -m fast stop}: every session is terminated)
        and start it again on the same data directory and port, keeping roles,
        databases and C{pg_hba.conf}; returns once it accepts connections.
        Unlike L{stop} and L{start}, nothing is deleted.

        @param downFor: Seconds to stay down between stop and start (an
            outage, for fault tests).
        @param mode: C{pg_ctl}'s shutdown mode: C{fast}, or C{immediate}
            (every process quits at once, as in a crash, and the start
            runs crash recovery).
        @raise RuntimeError: The cluster is not running.
        @raise PostgresStartError: The server did not start again.
        """
        if not self._running:
            raise RuntimeError("the cluster is not running")
        if mode not in ("fast", "immediate"):
            raise ValueError(f"unknown shutdown mode {mode!r}")
        self._stopServer(mode)
        time.sleep(downFor)
        self._startServer()

    def __enter__(self) -> PostgresCluster:
        """
        Start the cluster.
        """
        self.start()
        return self

    def __exit__(self, *excInfo: object) -> None:
        """
        Stop the cluster.
        """
        self.stop()

    # -- administration --

    def psql(self, sql: str, user: str | None = None, database: str = "postgres") -> str:
        """
        Run C{sql} with the cluster's C{psql} over the unix socket, one
        statement at a time (so C{CREATE DATABASE} works), stopping at the
        first error.

        @param user: The role to connect as; the superuser when C{None}.
        @return: psql's stdout, unaligned and without headers (C{-A -t}).
        @raise PostgresCommandError: psql failed or a statement errored.
        """
        role = user if user is not None else self.superuser
        args = [self.program("psql"), *"-X -q -A -t -v ON_ERROR_STOP=1 -f -".split()]
        args += ["-h", self.socketDir, "-p", str(self._port), "-U", role, "-d", database]
        result = subprocess.run(
            args, input=sql, capture_output=True, text=True, env=self._env, timeout=120
        )
        if result.returncode != 0:
            raise PostgresCommandError("psql failed", result.returncode, result.stderr)
        return result.stdout

    def createRole(self, name: str, password: str | None, method: str) -> None:
        """
        Create a login role whose stored password suits C{method} (see
        L{roleSql}). The password travels on psql's stdin, never its argv.
        """
        self.psql(roleSql(name, password, method))

    def createDatabase(self, name: str, owner: str) -> None:
        """
        Create database C{name} owned by C{owner}.
        """
        self.psql(f"CREATE DATABASE {quoteIdentifier(name)} OWNER {quoteIdentifier(owner)};")

    def setHba(self, lines: Sequence[str]) -> None:
        """
        Replace C{pg_hba.conf} with a superuser C{local ... trust} line
        followed by C{lines}, and reload, returning once new connections
        see the new rules.

        @raise ValueError: PostgreSQL rejects a line; the previous file is
            put back and stays in effect.
        """
        if self.dataDir is None:
            raise RuntimeError("the cluster has not been started")
        path = os.path.join(self.dataDir, "pg_hba.conf")
        with open(path) as f:
            previous = f.read()
        self._writeOwned(path, hbaText(self.superuser, lines, self.authMethod), 0o600)
        errors = self.psql(
            "SELECT line_number || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL;"
        ).strip()
        if errors:
            self._writeOwned(path, previous, 0o600)
            raise ValueError(f"pg_hba.conf rejected by PostgreSQL:\n{errors}")
        self._reload()
        self.hbaLines = list(lines)

    def setServerCertificate(self, certificate: IssuedCertificate) -> None:
        """
        Serve C{certificate} (and its key) from now on: new connections see
        it, as PostgreSQL reloads its TLS files with its configuration.

        @raise RuntimeError: The cluster was not started with C{ssl}.
        """
        if self.certificateAuthority is None or self.dataDir is None:
            raise RuntimeError("the cluster was not started with ssl")
        self._writeCertificates(certificate)
        self._reload()

    # -- internals --

    def _writeCertificates(self, certificate: IssuedCertificate) -> None:
        """
        Write the server's certificate, key (0600, as PostgreSQL requires)
        and CA into the data directory.
        """
        assert self.dataDir is not None and self.certificateAuthority is not None
        files = (
            ("server.crt", certificate.certificatePEM, 0o644),
            ("server.key", certificate.privateKeyPEM, 0o600),
            ("root.crt", self.certificateAuthority.certificatePEM, 0o644),
        )
        for name, pem, mode in files:
            self._writeOwned(os.path.join(self.dataDir, name), pem.decode("ascii"), mode)

    def _reload(self) -> None:
        """
        Make the postmaster re-read its configuration and wait until it has.

        C{pg_reload_conf()} only signals the postmaster. A new session's
        C{pg_conf_load_time()} is the postmaster's last load time, which it
        sets while reloading, before it loads C{pg_hba.conf} in the same
        step, and new sessions are only forked between such steps; so once
        a new session reports a later time, new connections use the new
        rules.
        """
        query = "SELECT pg_conf_load_time();"
        before = self.psql(query).strip()
        self.psql("SELECT pg_reload_conf();")
        deadline = time.monotonic() + 30
        while self.psql(query).strip() == before:
            if time.monotonic() > deadline:
                raise PostgresCommandError("configuration reload not seen after 30s", 1, "")
            time.sleep(0.01)

    def _prepareDirectories(self) -> None:
        """
        Create the base, data and socket directories, owned by L{runAs}.
        """
        if self._requestedBaseDir is None:
            self._baseDir = tempfile.mkdtemp(prefix="pgtwist-pg-", dir="/tmp")
            self._createdBaseDir = True
            # mkdtemp makes it 0700; the server's user must be able to enter it.
            os.chmod(self._baseDir, 0o755)
        else:
            self._baseDir = os.path.abspath(self._requestedBaseDir)
            os.makedirs(self._baseDir, exist_ok=True)
        if self.runAs is not None:
            blocked = _untraversable(self._baseDir, self.runAs)
            if blocked is not None:
                message = f"user {self.runAs.name} cannot enter {blocked}; choose another baseDir"
                raise PostgresStartError(message, 1, "")
        self.dataDir = os.path.join(self._baseDir, "data")
        self._socketDir = os.path.join(self._baseDir, "sock")
        self.logFile = os.path.join(self.dataDir, "server.log")
        if len(socketPath(self._socketDir, 65535)) > _SOCKET_PATH_MAX:
            message = f"socket directory {self._socketDir} is too long; choose a shorter baseDir"
            raise PostgresStartError(message, 1, "")
        for path, mode in ((self.dataDir, 0o700), (self._socketDir, 0o755)):
            os.makedirs(path, exist_ok=True)
            os.chmod(path, mode)
            if self.runAs is not None:
                os.chown(path, self.runAs.uid, self.runAs.gid)

    def _runAsServer(
        self, args: list[str], what: str, timeout: float, stdout: Any = subprocess.PIPE
    ) -> subprocess.CompletedProcess[str]:
        """
        Run a PostgreSQL program as L{runAs}, from the base directory (the
        programs need a working directory they can read).

        @raise PostgresCommandError: It exited with an error.
        """
        extra: dict[str, Any] = {}
        if self.runAs is not None:
            extra = {"user": self.runAs.uid, "group": self.runAs.gid, "extra_groups": []}
        result = subprocess.run(
            args, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT, text=True,
            cwd=self._baseDir, env=self._env, timeout=timeout, **extra,
        )  # fmt: skip
        if result.returncode != 0:
            raise PostgresCommandError(f"{what} failed", result.returncode, result.stdout or "")
        return result

    def _initdb(self) -> None:
        """
        Run C{initdb} unless the data directory already holds a cluster.
        """
        assert self.dataDir is not None
        if os.path.exists(os.path.join(self.dataDir, "PG_VERSION")):
            self.log.info("Reusing PostgreSQL cluster in {dataDir}", dataDir=self.dataDir)
        else:
            args = [self.program("initdb"), "-D", self.dataDir, "-U", self.superuser]
            args += [f"--auth={self.authMethod}", "-E", "UTF8", "--locale=C", "--no-sync"]
            self._runAsServer(args, "initdb", timeout=300)
            self._writeOwned(
                os.path.join(self.dataDir, "pg_hba.conf"),
                hbaText(self.superuser, [], self.authMethod),
                0o600,
            )
        conf = os.path.join(self.dataDir, "postgresql.conf")
        with open(conf) as f:
            hasInclude = "include = 'pgtwist.conf'" in f.read()
        if not hasInclude:
            with open(conf, "a") as f:
                f.write("\n# pgtwist.testing.embedded settings\ninclude = 'pgtwist.conf'\n")

    def _writeOwned(self, path: str, text: str, mode: int) -> None:
        """
        Write a file the server must read, owned by L{runAs}.
        """
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        if self.runAs is not None:
            os.chown(path, self.runAs.uid, self.runAs.gid)

    def _logTail(self, offset: int = 0) -> str:
        """
        The last lines the server logged since C{offset}.
        """
        assert self.logFile is not None
        try:
            with open(self.logFile, errors="replace") as f:
                f.seek(offset)
                lines = f.read().splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    def _startServer(self) -> None:
        """
        Write the settings and C{pg_ctl -w start}, picking another port when
        an automatically chosen one was taken in the meantime.

        C{pg_ctl}'s output goes to a file, not a pipe: the server it forks
        could otherwise keep the pipe open and hang the read.
        """
        assert self.dataDir is not None and self.logFile is not None
        assert self._socketDir is not None
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            settings = serverSettings(self._port, self._socketDir, self.maxConnections)
            if self.certificateAuthority is not None:
                settings.update(
                    ssl="on",
                    ssl_cert_file="server.crt",
                    ssl_key_file="server.key",
                    ssl_ca_file="root.crt",
                )
            self._writeOwned(
                os.path.join(self.dataDir, "pgtwist.conf"), settingsText(settings), 0o600
            )
            offset = os.path.getsize(self.logFile) if os.path.exists(self.logFile) else 0
            with tempfile.TemporaryFile("w+") as output:
                try:
                    args = [self.program("pg_ctl"), "-D", self.dataDir, "-l", self.logFile]
                    args += ["-w", "-t", "120", "start"]
                    self._runAsServer(args, "pg_ctl start", timeout=180, stdout=output)
                except PostgresCommandError as e:
                    output.seek(0)
                    tail = self._logTail(offset)
                    portTaken = "could not bind" in tail or "already in use" in tail
                    if self._autoPort and portTaken and attempt < _PORT_ATTEMPTS:
                        self.log.info("Port {port} was taken; retrying", port=self._port)
                        self._port = pickFreePort()
                        continue
                    raise PostgresStartError(
                        f"PostgreSQL did not start in {self.dataDir}",
                        e.returncode,
                        f"{output.read()}\n--- server log ({self.logFile}) ---\n{tail}",
                    ) from None
            return

    def _stopServer(self, mode: str = "fast") -> None:
        """
        C{pg_ctl -m fast stop} (or another C{mode}); if that fails, kill the
        postmaster so that nothing is left behind.
        """
        assert self.dataDir is not None
        try:
            with open(os.path.join(self.dataDir, "postmaster.pid")) as f:
                pid: int | None = int(f.readline().strip())
        except (OSError, ValueError):
            pid = None
        try:
            args = [
                self.program("pg_ctl"),
                "-D",
                self.dataDir,
                "-m",
                mode,
                *"-w -t 60 stop".split(),
            ]
            self._runAsServer(args, "pg_ctl stop", timeout=90)
            return
        except (PostgresCommandError, subprocess.SubprocessError, OSError) as e:
            self.log.warn("pg_ctl stop failed: {error}", error=str(e))
        if pid is None or not _isPostgresProcess(pid):
            return
        for signum in (signal.SIGQUIT, signal.SIGKILL):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)
