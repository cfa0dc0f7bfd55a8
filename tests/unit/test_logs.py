"""
Tests for L{pgtwist.app.logs}: pgagroal's logging keys (and C{log_format})
become an observer.
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys

from twisted.logger import LogLevel, eventsFromJSONLogFile, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.app import logs
from pgtwist.config.model import Configuration, MainSettings, ServerSettings
from pgtwist.config.restart import restartRequired
from tests.unit._tempdir import temporaryDirectory


class LogsTests(SynchronousTestCase):
    """
    Levels and file output.
    """

    def test_levels(self) -> None:
        """
        pgagroal's levels map onto twisted.logger's.
        """
        self.assertEqual(logs.logLevel("FATAL"), LogLevel.critical)
        self.assertEqual(logs.logLevel("warn"), LogLevel.warn)
        self.assertEqual(logs.logLevel("info"), LogLevel.info)
        self.assertEqual(logs.logLevel("debug3"), LogLevel.debug)
        self.assertEqual(logs.logLevel("trace"), LogLevel.debug)

    def test_fileFiltered(self) -> None:
        """
        C{log_type = file} writes to C{log_path}, dropping events below C{log_level}.
        """
        path = temporaryDirectory(self) / "log"
        observer = logs.observerFor(
            MainSettings(logType="file", logPath=str(path), logLevel="warn")
        )
        base = {"log_time": 0.0, "log_namespace": "t", "log_system": "-"}
        observer({**base, "log_level": LogLevel.info, "log_format": "quiet"})
        observer({**base, "log_level": LogLevel.warn, "log_format": "loud {x}", "x": 1})
        text = path.read_text()
        self.assertIn("loud 1", text)
        self.assertNotIn("quiet", text)

    def test_configuredObserver(self) -> None:
        """
        twistd's C{--logger} factory uses the configured settings.
        """
        path = temporaryDirectory(self) / "log"
        self.patch(logs, "_configured", MainSettings(logType="file", logPath=str(path)))
        observer = logs.makeObserver()
        observer(
            {
                "log_time": 0.0,
                "log_namespace": "t",
                "log_system": "-",
                "log_level": LogLevel.info,
                "log_format": "hello",
            }
        )
        self.assertIn("hello", path.read_text())


def _event(text: str, level: LogLevel = LogLevel.info, **fields: object) -> dict[str, object]:
    """
    A minimal twisted.logger event.
    """
    return {
        "log_time": 0.0,
        "log_namespace": "t",
        "log_system": "-",
        "log_level": level,
        "log_format": text,
        **fields,
    }


class RotationTests(SynchronousTestCase):
    """
    C{log_rotation_size} and C{log_rotation_age} for C{log_type = file}.
    """

    def test_neverByDefault(self) -> None:
        """
        With both keys at 0 the file is never rotated (Twisted's own
        LogFile default would rotate at 1 MB).
        """
        path = temporaryDirectory(self) / "pgtwist.log"
        logFile = logs.logFileFor(MainSettings(logType="file", logPath=str(path)))
        self.addCleanup(logFile.close)
        self.assertIsNone(logFile.rotateLength)
        logFile.write("x" * 2_000_000)
        logFile.write("y")
        self.assertEqual(logFile.listLogs(), [])

    def test_bySize(self) -> None:
        """
        Past C{log_rotation_size} bytes the next line goes to a new file and
        the old one becomes C{.1}, then C{.2}.
        """
        path = temporaryDirectory(self) / "pgtwist.log"
        observer = logs.observerFor(
            MainSettings(logType="file", logPath=str(path), logRotationSize=100)
        )
        for number in range(3):
            observer(_event("line {number} " + "x" * 100, number=number))
        self.assertIn("line 2", path.read_text())
        self.assertIn("line 1", (path.parent / "pgtwist.log.1").read_text())
        self.assertIn("line 0", (path.parent / "pgtwist.log.2").read_text())

    def test_byAge(self) -> None:
        """
        Once the file is C{log_rotation_age} old, the next line starts a new
        file; an empty file is not rotated however old.
        """
        now = [1000.0]
        path = temporaryDirectory(self) / "pgtwist.log"
        logFile = logs.logFileFor(
            MainSettings(logType="file", logPath=str(path), logRotationAge=3600.0),
            clock=lambda: now[0],
        )
        self.addCleanup(logFile.close)
        now[0] += 7200
        self.assertFalse(logFile.shouldRotate())
        logFile.write("first\n")
        now[0] += 3599
        logFile.write("second\n")
        self.assertEqual(logFile.listLogs(), [])
        now[0] += 1
        logFile.write("third\n")
        self.assertEqual(logFile.listLogs(), [1])
        self.assertEqual((path.parent / "pgtwist.log.1").read_text(), "first\nsecond\n")
        self.assertEqual(path.read_text(), "third\n")
        self.assertEqual(logFile.openedAt, now[0])


class JSONFormatTests(SynchronousTestCase):
    """
    C{log_format = json}: one JSON object per line, read back by
    twisted.logger.
    """

    def test_file(self) -> None:
        """
        The file holds events twisted.logger can read back, fields included.
        """
        path = temporaryDirectory(self) / "pgtwist.log"
        observer = logs.observerFor(
            MainSettings(logType="file", logPath=str(path), logFormat="json")
        )
        observer(_event("Client {clientAddress} connected", clientAddress="127.0.0.1:5"))
        observer(_event("dropped", LogLevel.debug))
        lines = path.read_text().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertEqual(json.loads(lines[0])["clientAddress"], "127.0.0.1:5")
        with path.open() as f:
            events = list(eventsFromJSONLogFile(f))
        self.assertEqual(formatEvent(events[0]), "Client 127.0.0.1:5 connected")
        self.assertEqual(events[0]["log_level"], LogLevel.info)

    def test_console(self) -> None:
        """
        On the console too, each event is one JSON line.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        observer = logs.observerFor(MainSettings(logFormat="json"))
        observer(_event("hello {who}", who="operator"))
        record = json.loads(out.getvalue())
        self.assertEqual(record["who"], "operator")
        self.assertEqual(record["log_format"], "hello {who}")

    def test_textDefault(self) -> None:
        """
        Without C{log_format}, console lines are text.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        logs.observerFor(MainSettings())(_event("hello {who}", who="operator"))
        self.assertIn("hello operator", out.getvalue())
        self.assertNotIn("{", out.getvalue())


class LogModeTests(SynchronousTestCase):
    """
    C{log_file_mode}: the permissions of a log file pgtwist creates (PostgreSQL's
    C{log_file_mode}), whatever the umask.
    """

    def setUp(self) -> None:
        # A permissive umask, so that a file created per the umask would show.
        oldUmask = os.umask(0o022)
        self.addCleanup(os.umask, oldUmask)

    def _mode(self, path: object) -> int:
        return stat.S_IMODE(os.stat(str(path)).st_mode)

    def test_default0600(self) -> None:
        """
        By default the file is created 0600: it holds client addresses and
        the names of failed logins.
        """
        path = temporaryDirectory(self) / "pgtwist.log"
        logFile = logs.logFileFor(MainSettings(logType="file", logPath=str(path)))
        self.addCleanup(logFile.close)
        self.assertEqual(self._mode(path), 0o600)

    def test_configured(self) -> None:
        """
        C{log_file_mode = 0640} creates the file 0640.
        """
        path = temporaryDirectory(self) / "pgtwist.log"
        logFile = logs.logFileFor(
            MainSettings(logType="file", logPath=str(path), logFileMode=0o640)
        )
        self.addCleanup(logFile.close)
        self.assertEqual(self._mode(path), 0o640)

    def test_ownerWrites(self) -> None:
        """
        A mode without the owner's write bit still lets pgtwist write (as
        PostgreSQL adds C{S_IWUSR}).
        """
        path = temporaryDirectory(self) / "pgtwist.log"
        logFile = logs.logFileFor(
            MainSettings(logType="file", logPath=str(path), logFileMode=0o440)
        )
        self.addCleanup(logFile.close)
        self.assertEqual(self._mode(path), 0o640)

    def test_existingKept(self) -> None:
        """
        An existing file keeps its mode and its lines, as in PostgreSQL.
        """
        path = temporaryDirectory(self) / "pgtwist.log"
        path.write_text("old\n")
        os.chmod(str(path), 0o644)
        logFile = logs.logFileFor(MainSettings(logType="file", logPath=str(path)))
        self.addCleanup(logFile.close)
        logFile.write("new\n")
        self.assertEqual(self._mode(path), 0o644)
        self.assertEqual(path.read_text(), "old\nnew\n")

    def test_rotated(self) -> None:
        """
        The file a rotation starts is created with C{log_file_mode} too.
        """
        path = temporaryDirectory(self) / "pgtwist.log"
        observer = logs.observerFor(
            MainSettings(logType="file", logPath=str(path), logRotationSize=100)
        )
        for number in range(2):
            observer(_event("line {number} " + "x" * 100, number=number))
        self.assertEqual(self._mode(path.parent / "pgtwist.log.1"), 0o600)
        self.assertEqual(self._mode(path), 0o600)


class ReloadTests(SynchronousTestCase):
    """
    The observer is built once, at start.
    """

    def test_restartRequired(self) -> None:
        """
        A reload that changes the logging keys says they need a restart.
        """
        servers = (ServerSettings("primary", "127.0.0.1", 5432, True),)
        old = Configuration(main=MainSettings(), servers=servers)
        new = Configuration(
            main=MainSettings(logRotationSize=1024, logRotationAge=60.0, logFormat="json"),
            servers=servers,
        )
        self.assertEqual(
            restartRequired(old, new), ["log_rotation_size", "log_rotation_age", "log_format"]
        )


class ConchQuietTests(SynchronousTestCase):
    """
    The SSH manhole does not flood an C{info} log.
    """

    def test_conchInfoDropped(self) -> None:
        """
        At C{info}, conch's own info lines are dropped and its warnings kept;
        at C{debug} everything is kept.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        observer = logs.observerFor(MainSettings(logLevel="info"))
        conch = "twisted.conch.ssh.session.SSHSession"
        observer({**_event("requesting shell"), "log_namespace": conch})
        observer({**_event("odd client", LogLevel.warn), "log_namespace": conch})
        observer(_event("pgtwist lifecycle"))
        self.assertNotIn("requesting shell", out.getvalue())
        self.assertIn("odd client", out.getvalue())
        self.assertIn("pgtwist lifecycle", out.getvalue())
        logs.observerFor(MainSettings(logLevel="debug"))(
            {**_event("requesting shell"), "log_namespace": conch}
        )
        self.assertIn("requesting shell", out.getvalue())
