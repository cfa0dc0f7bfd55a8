# -*- test-case-name: tests.unit.test_bench -*-
"""
The processes a benchmark runs: PgBouncer and pgtwist with equivalent
settings, each started for one pgbench run and stopped after it.

Starting a pooler per run keeps the sum of all pools under PostgreSQL's
C{max_connections}: a pooler's idle backends would otherwise hold their
slots for C{server_idle_timeout} (PERFORMANCE.md, "Connection slots").
Both poolers therefore start cold in every run, alike.

The configuration text (L{pgbouncerIni}, L{pgbouncerAuthFile},
L{pgtwistConf}, L{pgtwistHba}) and the C{/proc} readers are pure and unit
tested; the rest runs programs.
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from benchmarks.results import parseCpuTicks, parseVmRssKiB

if TYPE_CHECKING:
    from pgtwist.testing.certs import IssuedCertificate

#: Where Debian's package installs PgBouncer.
PGBOUNCER_BINARY = "/usr/sbin/pgbouncer"
#: The only address anything listens on.
LOOPBACK = "127.0.0.1"
#: Listening ports are picked below Linux's ephemeral range (32768-60999),
#: so that no outgoing connection in TIME_WAIT can hold one.
LOW_PORTS = range(20000, 32000)
#: How long a pooler may take to accept connections.
START_TIMEOUT = 30.0
#: How long a pooler may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 15.0
#: The names of a pooler's server certificate and key in its directory,
#: for a TLS workload.
TLS_CERT_FILE = "server.crt"
TLS_KEY_FILE = "server.key"
#: The query both poolers look clients up with in an auth_query workload:
#: pgtwist's default (PgBouncer 1.25's), given to PgBouncer explicitly,
#: whose older default reads C{pg_shadow}.
AUTH_QUERY = (
    "SELECT rolname, CASE WHEN rolvaliduntil < pg_catalog.now() THEN NULL "
    "ELSE rolpassword END FROM pg_catalog.pg_authid WHERE rolname = $1 AND rolcanlogin"
)


#: Linux's C{prctl} option asking for a signal when the parent exits.
PR_SET_PDEATHSIG = 1


def _loadLibc() -> ctypes.CDLL | None:
    """
    The C library (for C{prctl}), loaded before any fork; C{None} if it
    cannot be.
    """
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _loadLibc()


def dieWithParent() -> None:
    """
    C{preexec_fn} for the poolers: have the kernel send them SIGTERM if the
    harness dies without stopping them (even on SIGKILL). A no-op where
    C{prctl} is missing.
    """
    prctl = getattr(_LIBC, "prctl", None)
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class ServerError(RuntimeError):
    """
    A pooler did not start (the message quotes the tail of its log).
    """


# -- configuration text -----------------------------------------------------


def pgbouncerIni(
    directory: str,
    port: int,
    pgPort: int,
    database: str,
    poolMode: str,
    poolSize: int,
    tls: bool = False,
    authUser: str | None = None,
) -> str:
    """
    C{pgbouncer.ini} equivalent to pgtwist's settings: loopback TCP only,
    SCRAM for clients from an C{auth_file} holding the role's SCRAM secret
    (so PgBouncer runs no PBKDF2 per login and logs into PostgreSQL with
    SCRAM pass-through), no per-connection logging.

    @param tls: Demand TLS from clients (C{client_tls_sslmode = require})
        with the certificate and key in C{directory} (L{TLS_CERT_FILE},
        L{TLS_KEY_FILE}); otherwise no TLS. Never TLS to PostgreSQL.
    @param authUser: Look clients up with L{AUTH_QUERY} run as this role
        (whose password the C{auth_file} then holds instead of the
        clients' secrets); C{None} for no C{auth_query}.
    """
    settings = {
        "listen_addr": LOOPBACK,
        "listen_port": str(port),
        "unix_socket_dir": "",
        "auth_type": "scram-sha-256",
        "auth_file": os.path.join(directory, "userlist.txt"),
        "pool_mode": poolMode,
        "default_pool_size": str(poolSize),
        "max_client_conn": "1000",
        "server_tls_sslmode": "disable",
        "client_tls_sslmode": "disable",
    }
    if tls:
        settings["client_tls_sslmode"] = "require"
        settings["client_tls_cert_file"] = os.path.join(directory, TLS_CERT_FILE)
        settings["client_tls_key_file"] = os.path.join(directory, TLS_KEY_FILE)
    if authUser is not None:
        settings["auth_user"] = authUser
        settings["auth_query"] = AUTH_QUERY
    settings |= {
        "logfile": os.path.join(directory, "pgbouncer.log"),
        "pidfile": "",
        "log_connections": "0",
        "log_disconnections": "0",
        "log_stats": "0",
        "ignore_startup_parameters": "extra_float_digits",
    }
    lines = ["[databases]", f"{database} = host={LOOPBACK} port={pgPort} dbname={database}", ""]
    lines.append("[pgbouncer]")
    lines += [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def pgbouncerAuthFile(user: str, secret: str) -> str:
    """
    A PgBouncer C{auth_file} line: C{"user" "secret"}, double quotes doubled.
    """

    def quote(value: str) -> str:
        """
        Double-quote C{value} the way PgBouncer reads it.
        """
        return '"' + value.replace('"', '""') + '"'

    return f"{quote(user)} {quote(secret)}\n"


def pgtwistConf(
    port: int,
    pgPort: int,
    pipeline: str,
    maxConnections: int,
    workers: int = 1,
    tlsDirectory: str | None = None,
    authUser: str | None = None,
) -> str:
    """
    C{pgtwist.conf} equivalent to the PgBouncer settings: loopback TCP, one
    pipeline, C{max_connections} backends, no per-connection logging.

    @param tlsDirectory: Where L{TLS_CERT_FILE} and L{TLS_KEY_FILE} are,
        to demand TLS from clients as PgBouncer's C{client_tls_sslmode =
        require} does (pgagroal's C{tls} keys, and PgBouncer's mode key);
        C{None} for no TLS. Never TLS to PostgreSQL.
    @param authUser: Look clients up with C{auth_query} (pgtwist's default
        query, L{AUTH_QUERY}) run as this role; C{None} for none.
    """
    tls = ""
    if tlsDirectory is not None:
        tls = (
            "tls = on\n"
            f"tls_cert_file = {os.path.join(tlsDirectory, TLS_CERT_FILE)}\n"
            f"tls_key_file = {os.path.join(tlsDirectory, TLS_KEY_FILE)}\n"
            "client_tls_sslmode = require\n"
        )
    if authUser is not None:
        tls += f"auth_user = {authUser}\n"
    return (
        "[pgtwist]\n"
        f"host = {LOOPBACK}\n"
        f"port = {port}\n"
        "log_type = console\n"
        "log_level = warn\n"
        f"max_connections = {maxConnections}\n"
        # The memory step holds --connections (10,000) idle clients.
        "max_client_conn = 100000\n"
        f"pipeline = {pipeline}\n"
        "idle_timeout = 600\n"
        "backlog = 128\n"
        f"workers = {workers}\n"
        f"{tls}"
        "\n"
        "[primary]\n"
        f"host = {LOOPBACK}\n"
        f"port = {pgPort}\n"
        "primary = on\n"
        "tls = off\n"
    )


def pgtwistHba() -> str:
    """
    C{pgtwist_hba.conf}: SCRAM for everyone on loopback.
    """
    return "host all all 127.0.0.1/32 scram-sha-256\n"


# -- /proc ------------------------------------------------------------------


def _readProc(path: str) -> str | None:
    """
    A C{/proc} file's text, or C{None} when the process is gone.
    """
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def childPids(pid: int, procRoot: str = "/proc") -> list[int]:
    """
    The live descendants of C{pid} (worker processes), found through the
    parent pid field of every C{/proc/N/stat}.
    """
    parents: dict[int, list[int]] = {}
    for entry in os.listdir(procRoot):
        if not entry.isdigit():
            continue
        text = _readProc(os.path.join(procRoot, entry, "stat"))
        if text is None:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        parents.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    pending = [pid]
    while pending:
        children = parents.get(pending.pop(), [])
        found += children
        pending += children
    return found


def processTree(pid: int) -> list[int]:
    """
    C{pid} and its descendants.
    """
    return [pid, *childPids(pid)]


def cpuTicks(pid: int) -> int:
    """
    CPU clock ticks (user + system, plus reaped children's) used so far by
    C{pid} and its live descendants.
    """
    total = 0
    for member in processTree(pid):
        text = _readProc(f"/proc/{member}/stat")
        if text is not None:
            total += parseCpuTicks(text)
    return total


def rssKiB(pid: int) -> int:
    """
    Resident memory of C{pid} and its descendants, in KiB.
    """
    total = 0
    for member in processTree(pid):
        text = _readProc(f"/proc/{member}/status")
        if text is not None:
            total += parseVmRssKiB(text) or 0
    return total


#: Clock ticks per second, for L{cpuTicks}.
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


# -- ports and processes ------------------------------------------------------


def portIsFree(port: int, host: str = LOOPBACK) -> bool:
    """
    Whether a listener could bind C{host:port} now (with C{SO_REUSEADDR},
    as PgBouncer and Twisted bind).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def pickLowPort(
    taken: Sequence[int] = (),
    isFree: Callable[[int], bool] = portIsFree,
    choice: Callable[[Sequence[int]], int] = random.choice,
) -> int:
    """
    A free port in L{LOW_PORTS}, not in C{taken}.

    @raise ServerError: None was found in 200 tries.
    """
    for _ in range(200):
        port = choice(LOW_PORTS)
        if port not in taken and isFree(port):
            return port
    raise ServerError(f"no free port in {LOW_PORTS.start}-{LOW_PORTS.stop - 1}")


def waitForPort(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    """
    Return once C{127.0.0.1:port} accepts a connection.

    @raise ServerError: C{process} exited, or the time ran out.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"exited with status {process.returncode} before listening")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise ServerError(f"not listening on port {port} after {timeout:g}s")


@dataclass(eq=False)
class RunningServer:
    """
    A started pooler: its process, where it listens and its log.
    """

    name: str
    process: subprocess.Popen[bytes]
    port: int
    logPath: str
    directory: str
    logFile: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """
        The pooler's process id (the one C{/proc} is read for).
        """
        return self.process.pid

    def logTail(self, lines: int = 20) -> str:
        """
        The last lines of its log.
        """
        text = _readProc(self.logPath) or ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """
        SIGTERM, then SIGKILL after L{STOP_TIMEOUT}; remove its directory.
        Safe to call twice.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.logFile is not None:
            self.logFile.close()
            self.logFile = None
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass(frozen=True)
class Credentials:
    """
    The benchmark role and database, and the account unprivileged servers
    run as (C{None}: ourselves).
    """

    user: str
    password: str
    database: str
    scramSecret: str
    runAsUid: int | None = None
    runAsGid: int | None = None
    #: The role both poolers run C{auth_query} as in auth_query workloads,
    #: and its password.
    authUser: str = ""
    authPassword: str = ""


def _privateDirectory(prefix: str, credentials: Credentials | None = None) -> str:
    """
    A new C{0700} directory under C{/tmp}, owned by the unprivileged account
    when one is given.
    """
    directory = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    if credentials is not None and credentials.runAsUid is not None:
        os.chown(directory, credentials.runAsUid, credentials.runAsGid or -1)
    return directory


def _writeFile(path: str, text: str, credentials: Credentials | None = None) -> None:
    """
    Write a private (C{0600}) file, owned by the unprivileged account when
    one is given.
    """
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    if credentials is not None and credentials.runAsUid is not None:
        os.chown(path, credentials.runAsUid, credentials.runAsGid or -1)


def _started(server: RunningServer) -> RunningServer:
    """
    Wait until C{server} listens; stop it and raise with its log otherwise.
    """
    try:
        waitForPort(server.port, server.process, START_TIMEOUT)
    except ServerError as e:
        tail = server.logTail()
        server.stop()
        raise ServerError(f"{server.name}: {e}\n--- log ---\n{tail}") from None
    return server


def _writeCertificate(
    directory: str, certificate: IssuedCertificate, credentials: Credentials | None = None
) -> None:
    """
    Write C{certificate} and its key as L{TLS_CERT_FILE} and L{TLS_KEY_FILE}
    in C{directory}, both C{0600} (the key must be, for both poolers), owned
    by the unprivileged account when one is given.
    """
    for name, pem in (
        (TLS_CERT_FILE, certificate.certificatePEM),
        (TLS_KEY_FILE, certificate.privateKeyPEM),
    ):
        _writeFile(os.path.join(directory, name), pem.decode("ascii"), credentials)


def startPgBouncer(
    credentials: Credentials,
    pgPort: int,
    poolMode: str,
    poolSize: int,
    binary: str,
    certificate: IssuedCertificate | None = None,
    authQuery: bool = False,
) -> RunningServer:
    """
    Start PgBouncer in the foreground as the unprivileged account (it
    refuses to run as root), in a private directory of its own.

    @param certificate: The server certificate to demand TLS from clients
        with, or C{None} for no TLS.
    @param authQuery: Its C{auth_file} holds only the C{auth_user}'s
        password, and clients are looked up with C{auth_query}.
    """
    directory = _privateDirectory("pgtwist-bench-pgbouncer-", credentials)
    port = pickLowPort()
    ini = os.path.join(directory, "pgbouncer.ini")
    tls = certificate is not None
    if certificate is not None:
        _writeCertificate(directory, certificate, credentials)
    authUser = credentials.authUser if authQuery else None
    text = pgbouncerIni(
        directory, port, pgPort, credentials.database, poolMode, poolSize, tls, authUser
    )
    _writeFile(ini, text, credentials)
    if authQuery:
        authFile = pgbouncerAuthFile(credentials.authUser, credentials.authPassword)
    else:
        authFile = pgbouncerAuthFile(credentials.user, credentials.scramSecret)
    _writeFile(os.path.join(directory, "userlist.txt"), authFile, credentials)
    extra: dict[str, object] = {}
    if credentials.runAsUid is not None:
        extra = {"user": credentials.runAsUid, "group": credentials.runAsGid, "extra_groups": []}
    process = subprocess.Popen(
        [binary, ini],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd=directory, preexec_fn=dieWithParent, **extra,  # type: ignore[call-overload]
    )  # fmt: skip
    logPath = os.path.join(directory, "pgbouncer.log")
    label = f"PgBouncer ({poolMode}" + (", TLS" if tls else "")
    label += ", auth_query)" if authQuery else ")"
    return _started(RunningServer(label, process, port, logPath, directory))


#: What L{snapshotCheckout} copies of C{benchmarks/} for L{startFloor}.
FLOOR_FILES = ("__init__.py", "floor.py")


def snapshotCheckout(checkout: str) -> str:
    """
    Copy the C{pgtwist} package and the C{twisted/plugins} dropins of
    C{checkout} into a new directory and return it.

    Every pgtwist the run starts imports from this copy (it comes first on
    C{PYTHONPATH}), so edits to the checkout during a long run cannot mix
    two versions of pgtwist in one table.
    """
    snapshot = tempfile.mkdtemp(prefix="pgtwist-bench-code-", dir="/tmp")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache")
    shutil.copytree(
        os.path.join(checkout, "pgtwist"), os.path.join(snapshot, "pgtwist"), ignore=ignore
    )
    plugins = os.path.join(checkout, "twisted", "plugins")
    if os.path.isdir(plugins):
        shutil.copytree(plugins, os.path.join(snapshot, "twisted", "plugins"), ignore=ignore)
    # The relay floor (benchmarks/floor.py) runs from the same copy.
    os.mkdir(os.path.join(snapshot, "benchmarks"))
    for name in FLOOR_FILES:
        shutil.copy(
            os.path.join(checkout, "benchmarks", name), os.path.join(snapshot, "benchmarks")
        )
    return snapshot


def pgtwistCommand(python: str = sys.executable) -> list[str]:
    """
    How to run pgtwist: the C{pgtwist} console script next to C{python}
    when installed, else the same script's entry point run by C{python}
    (an interpreter with pgtwist's dependencies but pgtwist only on
    C{PYTHONPATH}, such as C{make pypy}'s).
    """
    script = os.path.join(os.path.dirname(python), "pgtwist")
    if os.access(script, os.X_OK):
        return [script]
    return [python, "-c", "from pgtwist.app.script import main; main()"]


def startPgtwist(
    credentials: Credentials,
    pgPort: int,
    pipeline: str,
    maxConnections: int,
    workers: int = 1,
    code: str | None = None,
    environ: Mapping[str, str] = os.environ,
    python: str = sys.executable,
    reactor: str | None = None,
    certificate: IssuedCertificate | None = None,
    authQuery: bool = False,
) -> RunningServer:
    """
    Start pgtwist in the foreground with C{HOME} pointed at a private
    directory, so that its vault's master key (C{~/.pgtwist/master.key})
    belongs to this run only.

    @param code: A L{snapshotCheckout} to import pgtwist from, or C{None}
        for the installed one.
    @param python: The interpreter to run it on (see L{pgtwistCommand}).
    @param reactor: A Twisted reactor other than pgtwist's own (C{uvloop}).
    @param certificate: The server certificate to demand TLS from clients
        with, or C{None} for no TLS.
    @param authQuery: The vault holds only the C{auth_user}'s password,
        and clients are looked up with C{auth_query}.
    """
    from pgtwist.config.vault import writeMasterKey, writeUsersFile

    directory = _privateDirectory("pgtwist-bench-pgtwist-")
    port = pickLowPort()
    conf = os.path.join(directory, "pgtwist.conf")
    hba = os.path.join(directory, "pgtwist_hba.conf")
    users = os.path.join(directory, "pgtwist_users.conf")
    tlsDirectory = None
    if certificate is not None:
        _writeCertificate(directory, certificate)
        tlsDirectory = directory
    authUser = credentials.authUser if authQuery else None
    _writeFile(
        conf, pgtwistConf(port, pgPort, pipeline, maxConnections, workers, tlsDirectory, authUser)
    )
    _writeFile(hba, pgtwistHba())
    masterKey = os.urandom(32).hex().encode()
    writeMasterKey(masterKey, os.path.join(directory, ".pgtwist", "master.key"))
    if authQuery:
        vault = {credentials.authUser: credentials.authPassword}
    else:
        vault = {credentials.user: credentials.password}
    writeUsersFile(users, vault, masterKey=masterKey)
    env = {key: value for key, value in environ.items() if not key.startswith("PG")}
    env["HOME"] = directory
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [code, environ.get("PYTHONPATH")]))
    logPath = os.path.join(directory, "pgtwist.log")
    logFile = open(logPath, "wb")
    try:
        process = subprocess.Popen(
            [*pgtwistCommand(python), *(["--reactor", reactor] if reactor else []),
             "-c", conf, "-a", hba, "-u", users],
            stdin=subprocess.DEVNULL, stdout=logFile, stderr=subprocess.STDOUT,
            cwd=directory, env=env, preexec_fn=dieWithParent,
        )  # fmt: skip
    except BaseException:
        logFile.close()
        raise
    label = f"pgtwist ({pipeline}, workers={workers}, {os.path.basename(python)}"
    label += (f", {reactor}" if reactor else "") + (", TLS" if certificate else "")
    label += ", auth_query)" if authQuery else ")"
    return _started(RunningServer(label, process, port, logPath, directory, logFile))


def startFloor(
    pgPort: int,
    code: str | None = None,
    environ: Mapping[str, str] = os.environ,
    python: str = sys.executable,
) -> RunningServer:
    """
    Start the relay floor (L{benchmarks.floor}) on C{python} in front of
    PostgreSQL's C{pgPort}: no configuration, no credentials (pgbench logs
    into PostgreSQL through it).

    @param code: A L{snapshotCheckout} to import pgtwist and the floor
        from, or C{None} for the checkout this module belongs to.
    @param python: The interpreter to run it on (with Twisted installed).
    """
    directory = _privateDirectory("pgtwist-bench-floor-")
    port = pickLowPort()
    env = {key: value for key, value in environ.items() if not key.startswith("PG")}
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [code if code is not None else here, environ.get("PYTHONPATH")])
    )
    logPath = os.path.join(directory, "floor.log")
    logFile = open(logPath, "wb")
    try:
        process = subprocess.Popen(
            [python, "-m", "benchmarks.floor", "--listen", str(port), "--target", str(pgPort)],
            stdin=subprocess.DEVNULL, stdout=logFile, stderr=subprocess.STDOUT,
            cwd=directory, env=env, preexec_fn=dieWithParent,
        )  # fmt: skip
    except BaseException:
        logFile.close()
        raise
    label = f"floor ({os.path.basename(python)})"
    return _started(RunningServer(label, process, port, logPath, directory, logFile))
