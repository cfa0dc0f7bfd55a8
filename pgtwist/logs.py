# -*- test-case-name: tests.unit.test_logs -*-
"""
Log observers honouring pgagroal's C{log_type}, C{log_level} and C{log_path}.

twistd owns the observers: when the command line names none (C{-l},
C{--syslog}, C{--logger}), L{pgtwist.tap.Options} points twistd's
C{--logger} at L{makeObserver}, which builds the observer the configuration
asks for.
"""

from __future__ import annotations

import sys

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    textFileLogObserver,
)

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


def observerFor(main: MainSettings) -> ILogObserver:
    """
    Build the observer C{main} describes.
    """
    if main.logType == "file":
        from twisted.python.logfile import LogFile

        observer: ILogObserver = textFileLogObserver(LogFile.fromFullPath(main.logPath))
    elif main.logType == "syslog":
        from twisted.logger import LegacyLogObserverWrapper
        from twisted.python.syslog import SyslogObserver

        observer = LegacyLogObserverWrapper(SyslogObserver("pgtwist").emit)  # type: ignore[arg-type]
    else:
        observer = textFileLogObserver(sys.stdout)
    predicate = LogLevelFilterPredicate(defaultLogLevel=logLevel(main.logLevel))
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
