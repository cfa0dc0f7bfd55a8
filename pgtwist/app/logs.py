# -*- test-case-name: tests.unit.test_logs -*-
"""
Log observers honouring pgagroal's C{log_type}, C{log_level}, C{log_path},
C{log_rotation_size} and C{log_rotation_age}, and pgtwist's C{log_format}.

Under twistd, twistd owns the observers: when the command line names none
(C{-l}, C{--syslog}, C{--logger}), L{pgtwist.app.bootstrap.setUpProcess}
points twistd's C{--logger} at L{makeObserver}, which builds the observer the
configuration asks for; the processes twistd does not start (workers,
C{make run}) begin logging to L{observerFor} through the same function.
"""

from __future__ import annotations

import fcntl
import os
import stat
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile

from pgtwist.config.model import MainSettings

_LEVELS = {
    "fatal": LogLevel.critical,
    "error": LogLevel.error,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "info": LogLevel.info,
}

_configured: MainSettings | None = None


def logLevel(name: str) -> LogLevel:
    """
    The twisted.logger level for a pgagroal C{log_level} (DEBUG1..5 and TRACE
    are all C{debug}).
    """
    level: LogLevel = _LEVELS.get(name.lower(), LogLevel.debug)
    return level


class RotatingLogFile(LogFile):
    """
    A log file rotated by size, by age, or both (pgagroal's
    C{log_rotation_size} and C{log_rotation_age}): C{pgtwist.log} becomes
    C{pgtwist.log.1}, older ones move up (C{.2}, C{.3}...), none is deleted.

    The age counts from when pgtwist opened the file (at start), or from
    its first line when it was empty (after a rotation); the check is made
    when a line is written, so a silent log is not rotated into empty files.

    A file it creates (at start, or after a rotation) gets C{mode} (the
    C{log_file_mode} key, PostgreSQL's C{log_file_mode}) before anything is
    written to it, whatever the umask: the log holds client addresses and
    the user names of failed logins. An existing file keeps its own mode,
    as in PostgreSQL.

    @ivar maxAge: Seconds after which the file is rotated (0: never).
    @ivar openedAt: When the current file's age started (C{clock} time).
    """

    def __init__(
        self,
        name: str,
        directory: str,
        rotateLength: int | None = None,
        maxAge: float = 0.0,
        clock: Callable[[], float] = time.time,
        mode: int = 0o600,
    ) -> None:
        """
        @param rotateLength: Bytes after which the file is rotated
            (C{None} or 0: never; Twisted's own default is 1 MB).
        @param clock: The time source (tests pass a fake one).
        @param mode: The permissions of a file this creates; the owner may
            always write (as PostgreSQL adds C{S_IWUSR}).
        """
        self.maxAge = maxAge
        self.mode = mode | stat.S_IWUSR
        self._clock = clock
        self.openedAt = clock()
        super().__init__(name, directory, rotateLength=rotateLength or None)

    def _openFile(self) -> None:
        # Create the file with its mode first; Twisted's LogFile then opens
        # it as an existing file. O_EXCL: a file that appeared meanwhile is
        # left as it is.
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
        except FileExistsError:
            pass
        else:
            try:
                os.fchmod(fd, self.mode)
            finally:
                os.close(fd)
        super()._openFile()  # type: ignore[no-untyped-call]
        # Append: during an upgrade the old process (draining) and the new
        # one write this file at once, and each line must land at its end.
        fd = self._file.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        self.openedAt = self._clock()

    def write(self, data: str | bytes) -> None:
        """
        Write C{data}; the first line of an empty file starts its age.
        """
        if self.size == 0:
            self.openedAt = self._clock()
        super().write(data)  # type: ignore[no-untyped-call]

    def shouldRotate(self) -> bool:
        """
        Rotate past C{rotateLength} bytes, or once the file is C{maxAge}
        old and not empty.
        """
        if super().shouldRotate():  # type: ignore[no-untyped-call]
            return True
        return bool(self.maxAge) and self.size > 0 and self._clock() - self.openedAt >= self.maxAge


def logFileFor(main: MainSettings, clock: Callable[[], float] = time.time) -> RotatingLogFile:
    """
    The C{log_path} file, rotated as C{log_rotation_size} and
    C{log_rotation_age} say (both 0 by default: never), created with
    C{log_file_mode}.
    """
    return RotatingLogFile.fromFullPath(  # type: ignore[no-any-return]
        main.logPath,
        rotateLength=main.logRotationSize or None,
        maxAge=main.logRotationAge,
        clock=clock,
        mode=main.logFileMode,
    )


def _formatted(outFile: IO[Any], logFormat: str) -> ILogObserver:
    """
    Text lines, or with C{log_format = json} one JSON object per line
    (twisted.logger's jsonFileLogObserver with no record separator, which
    C{twisted.logger.eventsFromJSONLogFile} reads back).
    """
    if logFormat == "json":
        return jsonFileLogObserver(outFile, recordSeparator="")
    return textFileLogObserver(outFile)


def observerFor(main: MainSettings) -> ILogObserver:
    """
    Build the observer C{main} describes.
    """
    if main.logType == "file":
        observer = _formatted(logFileFor(main), main.logFormat)  # type: ignore[arg-type]
    elif main.logType == "syslog":
        from twisted.logger import LegacyLogObserverWrapper
        from twisted.python.syslog import SyslogObserver

        observer = LegacyLogObserverWrapper(SyslogObserver("pgtwist").emit)  # type: ignore[arg-type]
    else:
        observer = _formatted(sys.stdout, main.logFormat)
    level = logLevel(main.logLevel)
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    if level is LogLevel.info:
        # conch narrates each manhole session at info (every channel request);
        # its warnings and errors still show.
        predicate.setLogLevelForNamespace("twisted.conch", LogLevel.warn)
    return FilteringLogObserver(observer, [predicate])


def configure(main: MainSettings) -> None:
    """
    Remember the settings L{makeObserver} will use (set while options are
    parsed, read when twistd starts logging).
    """
    global _configured
    _configured = main


def makeObserver() -> ILogObserver:
    """
    twistd C{--logger} factory: the observer of the configuration being started.
    """
    return observerFor(_configured or MainSettings())
