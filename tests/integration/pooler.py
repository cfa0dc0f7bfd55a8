"""
pgtwist as a real process in front of the suite's PostgreSQL: the
configuration family written to a directory, the C{pgtwist} console script
started on it, and helpers to connect through it.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from pgtwist.config.vault import writeMasterKey, writeUsersFile
from pgtwist.testing.embedded import PostgresCluster

BIN = Path(sys.executable).parent


def pgtwistCommand() -> list[str]:
    """
    How to run pgtwist: the console script next to the interpreter, or its
    entry point run by the interpreter where pgtwist is not installed but
    importable (C{make test-pypy}: PyPy with pgtwist on C{PYTHONPATH}).
    """
    script = BIN / "pgtwist"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from pgtwist.app.script import main; main()"]


def freePort() -> int:
    """
    A free TCP port on 127.0.0.1 below Linux's ephemeral range (32768-60999),
    where outgoing connections never take it from under a listener.
    """
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000")


#: The main-section keys naming a listener of its own.
_LISTENERS = ("management", "metrics", "manhole")


def _tcpPort(value: object) -> int | None:
    """
    The port of a listener setting: a bare port number or a C{tcp:PORT:...}
    endpoint description; C{None} for anything else (unset, disabled, unix).
    """
    text = str(value) if value is not None else ""
    if text.isdigit():
        return int(text) or None
    if text.startswith("tcp:"):
        port = text.split(":")[1]
        return int(port) if port.isdigit() else None
    return None


class Pooler:
    """
    One pgtwist process and its configuration files.

    @ivar port: The TCP port it listens on (127.0.0.1).
    @ivar socketDir: Its unix socket directory.
    """

    def __init__(
        self,
        directory: Path,
        cluster: PostgresCluster,
        main: Mapping[str, object] | None = None,
        hba: Sequence[str] = ("host all all all all",),
        users: Mapping[str, str] | None = None,
        serverSections: str | None = None,
        limits: Sequence[str] | None = None,
        admins: Mapping[str, str] | None = None,
        superuser: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self.cluster = cluster
        self.port = freePort()
        self.socketDir = str(directory)
        self.home = directory / "home"
        self.home.mkdir(exist_ok=True)
        settings: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "unix_socket_dir": self.socketDir,
            "log_type": "file",
            "log_path": str(directory / "pgtwist.log"),
            "log_level": "debug",
            "max_connections": 10,
            "blocking_timeout": 5,
        }
        settings.update(main or {})
        #: The other TCP ports it listens on, besides C{port}.
        self.listenerPorts = [
            port
            for port in map(_tcpPort, (settings.get(k) for k in _LISTENERS))
            if port is not None
        ]
        lines = ["[pgtwist]"] + [f"{k} = {v}" for k, v in settings.items()]
        servers = serverSections or (
            f"[primary]\nhost = {cluster.host}\nport = {cluster.port}\nprimary = on\n"
        )
        self.configPath = directory / "pgtwist.conf"
        self.configPath.write_text("\n".join(lines) + "\n\n" + servers)
        self.hbaPath = directory / "pgtwist_hba.conf"
        self.hbaPath.write_text("\n".join(hba) + "\n")
        self.usersPath = directory / "pgtwist_users.conf"
        self.limitsPath: Path | None = None
        if limits is not None:
            self.limitsPath = directory / "pgtwist_databases.conf"
            self.limitsPath.write_text("\n".join(limits) + "\n")
        self.environ = dict(os.environ, HOME=str(self.home))
        keyPath = str(self.home / ".pgtwist" / "master.key")
        if not os.path.exists(keyPath):
            writeMasterKey(b"integration-master-key", keyPath)
        writeUsersFile(str(self.usersPath), dict(users or {}), masterKey=b"integration-master-key")
        #: The admins file (C{-A}), written when C{admins} is given.
        self.adminsPath: Path | None = None
        if admins is not None:
            self.adminsPath = directory / "pgtwist_admins.conf"
            writeUsersFile(str(self.adminsPath), dict(admins), masterKey=b"integration-master-key")
        #: The superuser file (C{-S}), written when C{superuser} is given.
        self.superuserPath: Path | None = None
        if superuser is not None:
            self.superuserPath = directory / "pgtwist_superuser.conf"
            writeUsersFile(
                str(self.superuserPath), dict(superuser), masterKey=b"integration-master-key"
            )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def logPath(self) -> Path:
        """
        Where pgtwist logs.
        """
        return self.directory / "pgtwist.log"

    def log(self) -> str:
        """
        Everything logged so far.
        """
        return self.logPath.read_text() if self.logPath.exists() else ""

    def logCount(self, pattern: str) -> int:
        """
        How many lines of the log match the regular expression C{pattern}.
        """
        return sum(1 for line in self.log().splitlines() if re.search(pattern, line))

    def waitForLog(self, pattern: str, count: int = 1, timeout: float = 10.0) -> None:
        """
        Wait until C{pattern} matches at least C{count} lines of the log.

        pgtwist runs beside the test: when the test looks, the line may not
        be written yet, so reading the log once could miss it.
        """
        deadline = time.monotonic() + timeout
        while self.logCount(pattern) < count:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{pattern!r} matched fewer than {count} log lines:\n{self.log()}"
                )
            time.sleep(0.05)

    def arguments(self) -> list[str]:
        """
        The console script's command line.
        """
        return [
            *pgtwistCommand(),
            "-c",
            str(self.configPath),
            "-a",
            str(self.hbaPath),
            "-u",
            str(self.usersPath),
            *(["-l", str(self.limitsPath)] if self.limitsPath is not None else []),
            *(["-A", str(self.adminsPath)] if self.adminsPath is not None else []),
            *(["-S", str(self.superuserPath)] if self.superuserPath is not None else []),
        ]

    def start(self, timeout: float = 20.0) -> Pooler:
        """
        Start pgtwist and wait until it accepts connections on its port and
        on each other TCP port it was configured with (the management,
        metrics and manhole listeners start after the PostgreSQL port).
        """
        self.process = subprocess.Popen(
            self.arguments(),
            env=self.environ,
            stdout=open(self.directory / "stdout.txt", "wb"),
            stderr=subprocess.STDOUT,
        )
        waiting = [self.port, *self.listenerPorts]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"pgtwist exited with {self.process.returncode}:\n"
                    + (self.directory / "stdout.txt").read_text()
                    + self.log()
                )
            try:
                socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
                continue
            del waiting[0]
            if not waiting:
                return self
        self.stop()
        raise RuntimeError(f"pgtwist did not start listening on {waiting}:\n" + self.log())

    def reload(self) -> None:
        """
        Send SIGHUP.
        """
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> int | None:
        """
        SIGTERM, then wait (kill after 10 s). Returns the exit status.
        """
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def dsn(
        self, user: str, password: str | None, database: str | None = None, **extra: str
    ) -> str:
        """
        A libpq connection string to pgtwist over TCP.
        """
        parts = {
            "host": "127.0.0.1",
            "port": str(self.port),
            "user": user,
            "dbname": database or user,
            "sslmode": "disable",
            "connect_timeout": "10",
        }
        if password is not None:
            parts["password"] = password
        parts.update(extra)
        return " ".join(f"{k}='{v}'" for k, v in parts.items())
