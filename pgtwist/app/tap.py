# -*- test-case-name: tests.unit.test_tap -*-
"""
C{twistd pgtwist}: command-line options (pgagroal's flags) and the service.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.python import usage

from pgtwist import __version__
from pgtwist.app import logs
from pgtwist.config.model import Configuration

#: Option name -> (short flag, file name in a configuration directory).
_FILES = {
    "config": ("c", "pgtwist.conf"),
    "hba": ("a", "pgtwist_hba.conf"),
    "limit": ("l", "pgtwist_databases.conf"),
    "users": ("u", "pgtwist_users.conf"),
    "frontend": ("F", "pgtwist_frontend_users.conf"),
    "admins": ("A", "pgtwist_admins.conf"),
    "superuser": ("S", "pgtwist_superuser.conf"),
}


class Options(usage.Options):
    """
    pgagroal's flags: C{-c -a -l -u -F -A -S -D}.
    """

    synopsis = "[options]"
    longdesc = (
        "Run pgtwist, a PostgreSQL connection pooler. Files not named on the command line are "
        "looked up in -D DIR, then next to the main configuration file, then in /etc/pgtwist."
    )
    optParameters = [
        ["config", "c", None, "Path to pgtwist.conf (pgagroal.conf is read as is)."],
        ["hba", "a", None, "Path to pgtwist_hba.conf."],
        ["limit", "l", None, "Path to pgtwist_databases.conf."],
        ["users", "u", None, "Path to the users vault, pgtwist_users.conf."],
        ["frontend", "F", None, "Path to pgtwist_frontend_users.conf."],
        ["admins", "A", None, "Path to pgtwist_admins.conf."],
        ["superuser", "S", None, "Path to pgtwist_superuser.conf."],
        ["directory", "D", None, "Directory holding the configuration files."],
    ]
    optFlags = [["list-plugins", None, "List the pipelines and auth methods found, then exit."]]

    configuration: Configuration

    def opt_version(self) -> None:
        """
        Print the version and exit.
        """
        print(f"pgtwist {__version__}")
        raise SystemExit(0)

    opt_V = opt_version

    def resolvePaths(self) -> dict[str, str | None]:
        """
        Every file of the family: the flag, else the directory (C{-D}, then the
        main file's directory, then C{/etc/pgtwist}), else nothing.
        """
        directories = []
        if self["directory"]:
            directories.append(self["directory"])
        elif os.environ.get("PGTWIST_CONFIG_DIR"):
            directories.append(os.environ["PGTWIST_CONFIG_DIR"])
        if self["config"]:
            directories.append(os.path.dirname(os.path.abspath(self["config"])))
        directories.append("/etc/pgtwist")
        paths: dict[str, str | None] = {}
        for option, (_, fileName) in _FILES.items():
            path = self[option]
            if path is None:
                for directory in directories:
                    for name in (fileName, fileName.replace("pgtwist", "pgagroal")):
                        candidate = os.path.join(directory, name)
                        if os.path.exists(candidate):
                            path = candidate
                            break
                    if path is not None:
                        break
            paths[option] = path
        return paths

    def postOptions(self) -> None:
        """
        Load and validate the whole configuration now, so a bad file stops
        twistd with C{path:line: message} (and exit status 1) before
        anything starts.
        """
        from pgtwist.app.service import loadPlugins

        methods, pipelines = loadPlugins()
        if self["list-plugins"]:
            for pipeline in pipelines.values():
                print(f"pipeline     {pipeline.name:<16} {pipeline.description}")
            for method in methods.values():
                print(f"auth method  {method.name}")
            raise SystemExit(0)
        self.paths = self.resolvePaths()
        if self.paths["config"] is None:
            raise usage.UsageError("no configuration file: give -c PATH (or -D DIR)")
        try:
            self.configuration = self.load()
        except usage.UsageError as e:
            # A broken file is not a mistake on the command line: one line
            # naming file and line, without twistd's whole usage text.
            sys.stderr.write(f"pgtwist: {e}\n")
            raise SystemExit(1) from None
        parent: Any = getattr(self, "parent", None)
        if parent is not None and not (
            parent.get("logfile") or parent.get("syslog") or parent.get("logger")
        ):
            logs.configure(self.configuration.main)
            parent["logger"] = "pgtwist.app.logs.makeObserver"

    def load(self) -> Configuration:
        """
        Read the configuration files (again, on reload).

        @raise usage.UsageError: With C{path:line: message}.
        """
        from pgtwist.app.service import loadPlugins
        from pgtwist.config.loader import ConfigError, loadConfiguration

        methods, pipelines = loadPlugins()
        paths = self.paths
        try:
            assert paths["config"] is not None
            config = loadConfiguration(
                paths["config"],
                hbaPath=paths["hba"],
                limitsPath=paths["limit"],
                usersPath=paths["users"],
                frontendUsersPath=paths["frontend"],
                adminsPath=paths["admins"],
                superuserPath=paths["superuser"],
                authMethods=[*methods, "all"],
            )
        except ConfigError as e:
            raise usage.UsageError(str(e)) from e
        names = {*pipelines, "auto"}
        if config.main.pipeline not in names:
            raise usage.UsageError(
                f"{paths['config']}: pipeline: unknown pipeline {config.main.pipeline!r} "
                f"(known: {', '.join(sorted(names))})"
            )
        for limit in config.limits:
            if limit.pipeline and limit.pipeline not in names:
                raise usage.UsageError(
                    f"{limit.path}:{limit.line}: unknown pipeline {limit.pipeline!r}"
                )
        for pipeline in pipelines.values():
            problems = pipeline.checkConfiguration(config)
            if problems and (config.main.pipeline == pipeline.name):
                raise usage.UsageError(f"{paths['config']}: " + "; ".join(problems))
        return config


def makeService(options: Options) -> Any:
    """
    The pgtwist service tree for the parsed options.
    """
    from twisted.internet import reactor

    from pgtwist.app.service import buildService

    if options.configuration.main.workers > 1:
        return _supervisorTree(options, reactor)
    return buildService(
        options.configuration, reactor, reloadConfiguration=options.load, installSignalHandlers=True
    )


def _supervisorTree(options: Options, reactor: Any) -> Any:
    """
    With C{workers = N}, this process only supervises: the workers run the
    pooler, each with the same file arguments; SIGHUP is passed on to them.
    """
    import signal

    from twisted.application.service import MultiService

    from pgtwist.app.workers import WorkerSupervisor

    arguments = []
    for option, (flag, _) in _FILES.items():
        path = options.paths.get(option)
        if path is not None:
            arguments += [f"-{flag}", os.path.abspath(path)]
    root = MultiService()
    supervisor = WorkerSupervisor(options.configuration, arguments, reactor)
    supervisor.setServiceParent(root)
    signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(supervisor.signalWorkers, "HUP"))
    return root
