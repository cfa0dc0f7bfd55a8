# -*- test-case-name: tests.unit.test_tap -*-
"""
C{twistd pgtwist}: command-line options (pgagroal's flags) and the service.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from twisted.python import usage

from pgtwist import __version__
from pgtwist.app import bootstrap
from pgtwist.config.errors import ConfigError
from pgtwist.config.model import Configuration


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
    files: bootstrap.ConfigurationFiles
    #: What SIGHUP does; L{makeService} sets it.
    onHangup: Callable[[], object] | None = None
    #: What SIGTERM and SIGINT do; L{makeService} sets it.
    onTerminate: Callable[[], object] | None = None
    #: What SIGQUIT does; L{makeService} sets it.
    onQuit: Callable[[], object] | None = None

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
        for option, (_, fileName) in bootstrap.FILE_OPTIONS.items():
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
        anything starts; under twistd, set up logging and signals.
        """
        found = bootstrap.plugins()
        if self["list-plugins"]:
            for pipeline in found.pipelines.values():
                print(f"pipeline     {pipeline.name:<16} {pipeline.description}")
            for method in found.authMethods.values():
                print(f"auth method  {method.name}")
            raise SystemExit(0)
        self.paths = self.resolvePaths()
        config = self.paths["config"]
        if config is None:
            raise usage.UsageError("no configuration file: give -c PATH (or -D DIR)")
        paths = self.paths
        self.files = bootstrap.ConfigurationFiles(
            config,
            hba=paths["hba"],
            limit=paths["limit"],
            users=paths["users"],
            frontend=paths["frontend"],
            admins=paths["admins"],
            superuser=paths["superuser"],
        )
        try:
            self.configuration = self.files.load()
            if self.configuration.main.metricsCertFile:
                # Only then: prometheus_client stays unloaded when unused.
                from pgtwist.admin.metrics import checkTlsFiles

                checkTlsFiles(self.configuration)
        except ConfigError as e:
            # A broken file is not a mistake on the command line: one line
            # naming file and line, without twistd's whole usage text.
            sys.stderr.write(f"pgtwist: {e}\n")
            raise SystemExit(1) from None
        parent: Any = getattr(self, "parent", None)
        if parent is not None:
            from twisted.internet import reactor

            bootstrap.setUpProcess(
                self.configuration.main,
                reactor,
                self.hangup,
                twistdOptions=parent,
                terminate=self.terminate,
                quit=self.quit,
            )

    def hangup(self) -> None:
        """
        SIGHUP: whatever L{makeService} set (a reload, or passing the signal
        on to the workers).
        """
        if self.onHangup is not None:
            self.onHangup()

    def terminate(self) -> None:
        """
        SIGTERM or SIGINT: whatever L{makeService} set (a graceful shutdown,
        immediate at the second signal), else stop.
        """
        if self.onTerminate is not None:
            self.onTerminate()
            return
        from twisted.internet import reactor

        reactor.stop()

    def quit(self) -> None:
        """
        SIGQUIT: whatever L{makeService} set (an immediate shutdown), else
        stop.
        """
        if self.onQuit is not None:
            self.onQuit()
            return
        from twisted.internet import reactor

        reactor.stop()

    def load(self) -> Configuration:
        """
        Read the configuration files again (on reload).

        @raise ConfigError: With C{path:line: message}.
        """
        return self.files.load()


def makeService(options: Options) -> Any:
    """
    The pgtwist service tree for the parsed options.
    """
    from twisted.internet import reactor

    from pgtwist.app.service import buildService

    if options.configuration.main.workers > 1:
        return _supervisorTree(options, reactor)
    service = buildService(options.configuration, reactor, reloadConfiguration=options.load)
    options.onHangup = service.reload
    options.onTerminate = service.management.terminate
    options.onQuit = service.management.quit
    return service


def _supervisorTree(options: Options, reactor: Any) -> Any:
    """
    With C{workers = N}, this process only supervises: the workers run the
    pooler, each with the same file arguments; SIGHUP is passed on to them.
    """
    from twisted.application.service import MultiService

    from pgtwist.app.workers import WorkerSupervisor

    root = MultiService()
    supervisor = WorkerSupervisor(options.configuration, options.files.arguments(), reactor)
    supervisor.setServiceParent(root)
    options.onHangup = lambda: supervisor.signalWorkers("HUP")
    options.onTerminate = supervisor.terminate
    options.onQuit = supervisor.quit
    return root
