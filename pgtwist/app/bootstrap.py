# -*- test-case-name: tests.unit.test_bootstrap -*-
"""
How every pgtwist process starts, in one place: the plugins are discovered
once, the configuration is loaded and validated one way, and logging and
signals are set up one way.

Used by C{twistd pgtwist} (and so the C{pgtwist} script), each process of
C{workers = N}, C{make run}, and, through L{validate}, the console's C{SET}
and C{RELOAD} and the management API. A configuration refused at start is
refused with the same words when it comes from any of these.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.logger import globalLogBeginner
from twisted.plugin import getPlugins

import pgtwist.plugins
from pgtwist._compat import SLOTS
from pgtwist.app import logs
from pgtwist.config.loader import loadConfiguration
from pgtwist.config.model import Configuration, MainSettings
from pgtwist.config.validate import validateConfiguration
from pgtwist.interfaces import IAuthMethod, IPipeline

__all__ = [
    "FILE_OPTIONS",
    "ConfigurationFiles",
    "Plugins",
    "discoverPlugins",
    "filesFromArguments",
    "loadPlugins",
    "plugins",
    "setUpProcess",
    "validate",
]


# -- plugins -------------------------------------------------------------------


@dataclass(frozen=True, **SLOTS)
class Plugins:
    """
    The installed auth methods and pipelines, by name.
    """

    authMethods: Mapping[str, IAuthMethod]
    pipelines: Mapping[str, IPipeline]


def discoverPlugins() -> Plugins:
    """
    Look for plugins with C{getPlugins} (the built-ins and any dropins in a
    C{pgtwist/plugins/} directory on C{sys.path}). Each call imports every
    dropin again: L{plugins} is what pgtwist calls.

    @raise ValueError: Two plugins claim the same name.
    """
    methods: dict[str, IAuthMethod] = {}
    for method in getPlugins(IAuthMethod, pgtwist.plugins):
        if method.name in methods:
            raise ValueError(f"two auth method plugins are named {method.name!r}")
        methods[method.name] = method
    pipelines: dict[str, IPipeline] = {}
    for pipeline in getPlugins(IPipeline, pgtwist.plugins):
        if pipeline.name in pipelines:
            raise ValueError(f"two pipeline plugins are named {pipeline.name!r}")
        pipelines[pipeline.name] = pipeline
    return Plugins(methods, pipelines)


_found: Plugins | None = None


def plugins() -> Plugins:
    """
    The plugins of this process, discovered on the first call only.
    """
    global _found
    if _found is None:
        _found = discoverPlugins()
    return _found


def loadPlugins() -> tuple[dict[str, IAuthMethod], dict[str, IPipeline]]:
    """
    The auth methods and pipelines of L{plugins}, as new dictionaries.
    """
    found = plugins()
    return dict(found.authMethods), dict(found.pipelines)


# -- configuration -------------------------------------------------------------


def validate(config: Configuration, found: Plugins | None = None) -> Configuration:
    """
    Check C{config} as a whole against the installed plugins (see
    L{pgtwist.config.validate.validateConfiguration}).

    @return: C{config}, unchanged.
    @raise pgtwist.config.errors.ConfigError: What is wrong.
    """
    pipelines = (found or plugins()).pipelines
    checks = {name: pipeline.checkConfiguration for name, pipeline in pipelines.items()}
    return validateConfiguration(config, checks)


#: The files of the family: option name -> (short flag, file name in a
#: configuration directory), as C{twistd pgtwist} and the workers take them.
FILE_OPTIONS = {
    "config": ("c", "pgtwist.conf"),
    "hba": ("a", "pgtwist_hba.conf"),
    "limit": ("l", "pgtwist_databases.conf"),
    "users": ("u", "pgtwist_users.conf"),
    "frontend": ("F", "pgtwist_frontend_users.conf"),
    "admins": ("A", "pgtwist_admins.conf"),
    "superuser": ("S", "pgtwist_superuser.conf"),
}


@dataclass(frozen=True, **SLOTS)
class ConfigurationFiles:
    """
    Where a pgtwist reads its configuration from; L{load} reads it (again,
    on every reload).

    @ivar masterKey: The vault master key; C{None} reads
        C{~/.pgtwist/master.key}.
    """

    config: str
    hba: str | None = None
    limit: str | None = None
    users: str | None = None
    frontend: str | None = None
    admins: str | None = None
    superuser: str | None = None
    masterKey: bytes | None = None

    def load(self, found: Plugins | None = None) -> Configuration:
        """
        Read every file and validate the whole (HBA methods and pipelines
        against the installed plugins).

        @raise pgtwist.config.errors.ConfigError: With C{path:line: message}.
        """
        found = found or plugins()
        config = loadConfiguration(
            self.config,
            hbaPath=self.hba,
            limitsPath=self.limit,
            usersPath=self.users,
            frontendUsersPath=self.frontend,
            adminsPath=self.admins,
            superuserPath=self.superuser,
            masterKey=self.masterKey,
            authMethods=[*found.authMethods, "all"],
        )
        return validate(config, found)

    def arguments(self) -> list[str]:
        """
        The command-line flags naming these files, with absolute paths (what
        the supervisor gives each worker; L{filesFromArguments} reads them).
        """
        result = []
        for option, (flag, _) in FILE_OPTIONS.items():
            path = getattr(self, option)
            if path is not None:
                result += [f"-{flag}", os.path.abspath(path)]
        return result


def filesFromArguments(argv: list[str]) -> ConfigurationFiles:
    """
    The files named by flags such as L{ConfigurationFiles.arguments} writes.

    @raise SystemExit: On a bad or missing flag.
    """
    parser = argparse.ArgumentParser(prog="pgtwist", add_help=False)
    for option, (flag, _) in FILE_OPTIONS.items():
        parser.add_argument(f"-{flag}", dest=option, required=option == "config")
    return ConfigurationFiles(**vars(parser.parse_args(argv)))


# -- the process ---------------------------------------------------------------


def _startLogging(main: MainSettings, twistdOptions: Any) -> None:
    """
    Log as C{main} says (C{log_type}, C{log_level}, C{log_path}...).

    Under twistd (C{twistdOptions} is its options), twistd starts logging:
    unless its command line names an observer (C{-l}, C{--syslog},
    C{--logger}), its C{--logger} is pointed at
    L{pgtwist.app.logs.makeObserver}. Otherwise logging begins now.
    """
    if twistdOptions is not None:
        if not (
            twistdOptions.get("logfile")
            or twistdOptions.get("syslog")
            or twistdOptions.get("logger")
        ):
            logs.configure(main)
            twistdOptions["logger"] = "pgtwist.app.logs.makeObserver"
        return
    globalLogBeginner.beginLoggingTo([logs.observerFor(main)], redirectStandardIO=False)


def _installSignalHandlers(
    reactor: Any,
    reload: Callable[[], object],
    stop: bool,
    terminate: Callable[[], object] | None = None,
    quit: Callable[[], object] | None = None,
) -> None:
    """
    Route SIGHUP to C{reload}. SIGTERM and SIGINT: with C{terminate}, each
    one calls it (a graceful shutdown, then an immediate one; in a twistd
    process, installed once the reactor runs, over twistd's own
    handlers), and SIGQUIT calls C{quit} where given (PgBouncer's
    immediate shutdown); else, with C{stop}, they stop the reactor (once,
    however many arrive), for a process that runs its reactor without
    Twisted's own handlers. Each handler only hands the work to the
    reactor thread. Nothing is installed off the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(reload))
    if terminate is not None:
        stopping = terminate

        def handler(number: int, frame: object) -> None:
            # As twistd's own handlers do: twistd ends the process with
            # the signal once the reactor stopped (exit status -SIGTERM).
            reactor._exitSignal = number
            reactor.callFromThread(stopping)

        def install() -> None:
            signal.signal(signal.SIGTERM, handler)
            signal.signal(signal.SIGINT, handler)
            if quit is not None:
                # No _exitSignal: twistd would end the process with SIGQUIT
                # again, whose default action dumps core.
                signal.signal(signal.SIGQUIT, lambda *_: reactor.callFromThread(quit))

        if stop:
            install()
        else:
            reactor.callWhenRunning(install)
        return
    if stop:
        stopped: list[bool] = []

        def stopOnce() -> None:
            if reactor.running and not stopped:
                stopped.append(True)
                reactor.stop()

        signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(stopOnce))
        signal.signal(signal.SIGINT, lambda *_: reactor.callFromThread(stopOnce))


def setUpProcess(
    main: MainSettings,
    reactor: Any,
    reload: Callable[[], object],
    twistdOptions: Any = None,
    terminate: Callable[[], object] | None = None,
    quit: Callable[[], object] | None = None,
) -> None:
    """
    Logging and signals for a pgtwist process: the one way C{twistd
    pgtwist}, each worker of C{workers = N} and C{make run} set them up,
    once C{main} is known.

    SIGHUP calls C{reload}; SIGTERM and SIGINT call C{terminate} when
    given (pgtwist's graceful shutdown, see docs/admin.rst), and SIGQUIT
    C{quit} (the immediate one). A process
    twistd runs (C{twistdOptions} given) has twistd start its logging
    (and keeps twistd's SIGTERM and SIGINT handlers without
    C{terminate}); any other process begins logging now and runs its
    reactor with C{installSignalHandlers=False} (without C{terminate},
    SIGTERM and SIGINT stop it).
    """
    _startLogging(main, twistdOptions)
    _installSignalHandlers(
        reactor, reload, stop=twistdOptions is None, terminate=terminate, quit=quit
    )
