"""
Tests for L{pgtwist.app.bootstrap}: one load + validate for every source of
configuration, plugins discovered once per process, one way to set up
logging and signals.
"""

from __future__ import annotations

import io
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

import pgtwist.plugins
from pgtwist.admin.management import Management
from pgtwist.app import bootstrap, tap
from pgtwist.app.service import PoolerService, buildService
from pgtwist.config.errors import ConfigError
from pgtwist.config.vault import writeUsersFile
from pgtwist.interfaces import IAuthMethod, IPipeline
from pgtwist.testing import devrun
from tests.unit._console import ConsoleTestCase
from tests.unit._tempdir import temporaryDirectory

#: Bad values, each with what the main section must hold for it to be bad:
#: (key, value, other main-section lines).
BAD_VALUES = [
    # No plugin provides it: new clients used to get session silently.
    ("pipeline", "bogus", ""),
    # The performance pipeline's own check refuses failover.
    ("failover", "on", "pipeline = performance"),
    # A value the key's parser refuses.
    ("max_connections", "lots", ""),
]


def mainFile(mainLines: str = "") -> str:
    """
    A main file's text, with C{mainLines} in its main section.
    """
    return (
        "[pgtwist]\nhost = 127.0.0.1\nport = 16543\n"
        f"{mainLines}\n\n[primary]\nhost = localhost\nport = 5432\n"
    )


def writeFamily(case: SynchronousTestCase, mainLines: str = "") -> Path:
    """
    A main file (with C{mainLines} in its main section) and an HBA file in
    a temporary directory; return the main file's path.
    """
    directory = temporaryDirectory(case)
    conf = directory / "pgtwist.conf"
    conf.write_text(mainFile(mainLines))
    (directory / "pgtwist_hba.conf").write_text("host all all all trust\n")
    return conf


def filesAt(conf: Path) -> bootstrap.ConfigurationFiles:
    """
    The family L{writeFamily} wrote.
    """
    return bootstrap.ConfigurationFiles(str(conf), hba=str(conf.parent / "pgtwist_hba.conf"))


def fileError(case: SynchronousTestCase, key: str, value: str, base: str) -> ConfigError:
    """
    What loading a file with C{key = value} (after C{base}) raises.
    """
    conf = writeFamily(case, f"{base}\n{key} = {value}")
    return case.assertRaises(ConfigError, filesAt(conf).load)


class EverySourceTests(ConsoleTestCase):
    """
    A bad value is refused with the message the configuration file gets,
    wherever it comes from, and nothing of it is applied.
    """

    def test_file(self) -> None:
        """
        The files name file and key; the pipeline errors are those the
        configuration file always got.
        """
        messages = [fileError(self, *bad).message for bad in BAD_VALUES]
        self.assertEqual(
            messages[0],
            "pipeline: unknown pipeline 'bogus' (known: auto, performance, session, transaction)",
        )
        self.assertEqual(messages[1], "the performance pipeline does not support failover")
        self.assertTrue(messages[2].startswith("max_connections: "), messages[2])

    def test_twistd(self) -> None:
        """
        C{twistd pgtwist} (and so the C{pgtwist} script) stops with the
        file's error on one line.
        """
        for key, value, base in BAD_VALUES:
            expected = fileError(self, key, value, base)
            conf = writeFamily(self, f"{base}\n{key} = {value}")
            err = io.StringIO()
            self.patch(sys, "stderr", err)
            with self.assertRaises(SystemExit):
                tap.Options().parseOptions(["-c", str(conf)])
            self.assertEqual(
                err.getvalue(), f"pgtwist: {expected}\n".replace(expected.path, str(conf))
            )

    def test_worker(self) -> None:
        """
        A worker reads the supervisor's file flags and gets the same error.
        """
        for key, value, base in BAD_VALUES:
            conf = writeFamily(self, f"{base}\n{key} = {value}")
            files = bootstrap.filesFromArguments(filesAt(conf).arguments())
            self.assertEqual(files, filesAt(conf))
            error = self.assertRaises(ConfigError, files.load)
            self.assertEqual(error.message, fileError(self, key, value, base).message)

    def test_makeRun(self) -> None:
        """
        C{make run}'s files are loaded and checked as C{twistd pgtwist}'s.
        """
        masterKey = b"k" * 32
        for key, value, base in BAD_VALUES:
            directory = temporaryDirectory(self)
            conf = Path(devrun.writeConfiguration(str(directory), 5432, 16543, str(directory)))
            conf.write_text(
                conf.read_text().replace("\n[primary]", f"{base}\n{key} = {value}\n[primary]")
            )
            writeUsersFile(str(directory / "pgtwist_users.conf"), {}, masterKey=masterKey)
            writeUsersFile(str(directory / "pgtwist_admins.conf"), {}, masterKey=masterKey)
            files = devrun.configurationFiles(str(directory), masterKey)
            error = self.assertRaises(ConfigError, files.load)
            self.assertEqual(error.message, fileError(self, key, value, base).message)

    def startFrom(self, base: str) -> Path:
        """
        Replace the harness's service by one started from files holding
        C{base}, reloading from them; return the main file.
        """
        conf = writeFamily(self, base)
        files = filesAt(conf)
        self.service: PoolerService = buildService(
            files.load(), self.reactor, reloadConfiguration=files.load
        )
        self.frontend, self.session = self.openSession("admin")
        return conf

    def assertUnchanged(self, config: object) -> None:
        """
        The service, its pools and its clients' factory still run C{config}.
        """
        self.assertIs(self.service.config, config)
        self.assertIs(self.service.pools.config, config)
        self.assertIs(self.service.factory.config, config)

    def test_consoleSet(self) -> None:
        """
        The console's C{SET} answers C{SET failed} with the file's message
        as DETAIL, and changes nothing.
        """
        for key, value, base in BAD_VALUES:
            expected = fileError(self, key, value, base).message
            self.startFrom(base)
            running = self.service.config
            result = self.one(f"SET {key} = '{value}'")
            assert result.error is not None, key
            self.assertEqual(result.error.message, "SET failed")
            self.assertEqual(result.error.get(b"D"), expected)
            self.assertUnchanged(running)

    def test_managementSet(self) -> None:
        """
        The management API's C{configure} raises the file's error and changes nothing.
        """
        for key, value, base in BAD_VALUES:
            expected = fileError(self, key, value, base).message
            self.startFrom(base)
            running = self.service.config
            error = self.assertRaises(ConfigError, self.service.management.configure, key, value)
            self.assertEqual(error.message, expected)
            self.assertUnchanged(running)

    def test_reconfigure(self) -> None:
        """
        A whole configuration handed to the service is validated before
        anything of it is applied.
        """
        self.startFrom("pipeline = performance")
        running = self.service.config
        main = running.main.__class__(**{**_fields(running.main), "failover": True})
        bad = running.__class__(**{**_fields(running), "main": main})
        error = self.assertRaises(ConfigError, self.service.reconfigure, bad)
        self.assertEqual(error.message, "the performance pipeline does not support failover")
        self.assertUnchanged(running)

    def test_reload(self) -> None:
        """
        C{RELOAD} from the console and from the management API logs the
        file's error, keeps the running configuration and says it failed.
        """
        for key, value, base in BAD_VALUES:
            expected = fileError(self, key, value, base)
            conf = self.startFrom(base)
            running = self.service.config
            conf.write_text(mainFile(f"{base}\n{key} = {value}"))
            events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
            result = self.one("RELOAD")
            assert result.error is not None
            self.assertEqual(result.error.message, "RELOAD failed, see logs for additional details")
            self.assertEqual(self.service.management.reload(), (False, []))
            errors = [e["error"] for e in events if "error" in e]
            self.assertEqual(errors, [str(expected).replace(expected.path, str(conf))] * 2)
            self.assertUnchanged(running)

    def test_programOnlyFromTheFile(self) -> None:
        """
        C{failover_script} cannot be set from the console or the management
        API, but a RELOAD of the file applies it.
        """
        conf = self.startFrom("failover_script = /usr/local/bin/failover.sh")
        running = self.service.config
        result = self.one("SET failover_script = '/bin/sh'")
        assert result.error is not None
        self.assertIn("cannot be changed from the console", result.error.get(b"D"))
        error = self.assertRaises(
            ConfigError, self.service.management.configure, "failover_script", "/bin/sh"
        )
        self.assertEqual(
            error.message,
            "failover_script names a program and cannot be changed from the console; "
            "edit the file and RELOAD",
        )
        self.assertUnchanged(running)
        conf.write_text(mainFile("failover_script = /opt/pg/promote.sh"))
        self.assertEqual(self.one("RELOAD").tag, "RELOAD")
        self.assertEqual(self.service.config.main.failoverScript, "/opt/pg/promote.sh")
        self.assertEqual(self.service.factory.config.main.failoverScript, "/opt/pg/promote.sh")

    def test_goodValuesApply(self) -> None:
        """
        The same sources apply a valid value: C{SET} and the management API.
        """
        self.startFrom("pipeline = performance")
        self.assertEqual(self.one("SET pipeline = session").tag, "SET pipeline=session")
        self.service.management.configure("failover", "on")
        self.assertTrue(self.service.factory.config.main.failover)
        self.assertEqual(self.service.pools.config.main.pipeline, "session")


def _fields(instance: Any) -> dict[str, Any]:
    """
    A frozen dataclass's fields, to rebuild it with one changed.
    """
    return {name: getattr(instance, name) for name in instance.__dataclass_fields__}


class PluginsOnceTests(SynchronousTestCase):
    """
    Plugins are discovered once per process.
    """

    def countDiscoveries(self) -> list[object]:
        """
        Forget this process's plugins and count C{getPlugins} calls from now.
        """
        calls: list[object] = []

        def counting(interface: Any, package: Any = None) -> Any:
            calls.append(interface)
            return getPlugins(interface, package)

        self.patch(bootstrap, "getPlugins", counting)
        self.patch(bootstrap, "_found", None)
        return calls

    def test_twistdStart(self) -> None:
        """
        Parsing the options, building the service and a reload look for
        each kind of plugin once in all.
        """
        calls = self.countDiscoveries()
        conf = writeFamily(self)
        options = tap.Options()
        options.parseOptions(["-c", str(conf)])
        service = tap.makeService(options)
        self.assertEqual(service.reload(), (True, []))
        self.assertEqual(calls, [IAuthMethod, IPipeline])
        self.assertIs(service.plugins, bootstrap.plugins())

    def test_listPlugins(self) -> None:
        """
        C{--list-plugins} too.
        """
        calls = self.countDiscoveries()
        self.patch(sys, "stdout", io.StringIO())
        self.assertRaises(SystemExit, tap.Options().parseOptions, ["--list-plugins"])
        bootstrap.plugins()
        self.assertEqual(calls, [IAuthMethod, IPipeline])

    def test_workerStart(self) -> None:
        """
        A worker's load and service tree share one discovery.
        """
        calls = self.countDiscoveries()
        files = bootstrap.filesFromArguments(filesAt(writeFamily(self)).arguments())
        buildService(files.load(), MemoryReactorClock(), reloadConfiguration=files.load).reload()
        self.assertEqual(calls, [IAuthMethod, IPipeline])

    def test_duplicateNames(self) -> None:
        """
        Two plugins of a kind with one name are refused, not one silently
        overriding the other.
        """
        for kind, words in ((IPipeline, "pipeline"), (IAuthMethod, "auth method")):
            found = list(getPlugins(kind, pgtwist.plugins))
            self.patch(
                bootstrap,
                "getPlugins",
                lambda interface, package=None, kind=kind, found=found: (
                    found * 2 if interface is kind else []
                ),
            )
            error = self.assertRaises(ValueError, bootstrap.discoverPlugins)
            self.assertIn(f"two {words} plugins are named", str(error))


class FakeReactor:
    """
    What the signal handlers use of a reactor: calls run at once.
    """

    def __init__(self) -> None:
        self.running = True
        self.stops = 0

    def callFromThread(self, f: Callable[..., object], *args: object) -> None:
        """
        Run C{f} now.
        """
        f(*args)

    def stop(self) -> None:
        """
        Count the stops (the reactor keeps C{running} until it is back in its loop).
        """
        self.stops += 1


class SetUpProcessTests(SynchronousTestCase):
    """
    L{bootstrap.setUpProcess}: logging and signals, the same for every
    entry point.
    """

    def setUp(self) -> None:
        self.handlers: dict[int, Any] = {}
        self.patch(
            signal, "signal", lambda number, handler: self.handlers.__setitem__(number, handler)
        )
        self.observers: list[object] = []

        class Beginner:
            def beginLoggingTo(inner, observers: list[object], redirectStandardIO: bool) -> None:
                self.observers.extend(observers)
                self.assertFalse(redirectStandardIO)

        self.patch(bootstrap, "globalLogBeginner", Beginner())
        self.reloads: list[bool] = []
        self.reactor = FakeReactor()

    def test_ownProcess(self) -> None:
        """
        A worker or C{make run}: logging begins as the settings say, SIGHUP
        reloads, SIGTERM and SIGINT stop the reactor once.
        """
        config = bootstrap.ConfigurationFiles(str(writeFamily(self))).load()
        bootstrap.setUpProcess(config.main, self.reactor, lambda: self.reloads.append(True))
        self.assertEqual(len(self.observers), 1)
        self.assertEqual(
            sorted(self.handlers), sorted([signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
        )
        self.handlers[signal.SIGHUP](signal.SIGHUP, None)
        self.assertEqual(self.reloads, [True])
        self.handlers[signal.SIGTERM](signal.SIGTERM, None)
        self.handlers[signal.SIGINT](signal.SIGINT, None)
        self.assertEqual(self.reactor.stops, 1)

    def test_ownProcessTerminate(self) -> None:
        """
        With C{terminate} (a worker), SIGTERM and SIGINT each call it (a
        graceful shutdown, then an immediate one) instead of stopping.
        """
        config = bootstrap.ConfigurationFiles(str(writeFamily(self))).load()
        calls: list[str] = []
        bootstrap.setUpProcess(
            config.main,
            self.reactor,
            lambda: None,
            terminate=lambda: calls.append("stop"),
            quit=lambda: calls.append("quit"),
        )
        self.handlers[signal.SIGTERM](signal.SIGTERM, None)
        self.handlers[signal.SIGINT](signal.SIGINT, None)
        self.handlers[signal.SIGQUIT](signal.SIGQUIT, None)
        self.assertEqual(calls, ["stop", "stop", "quit"])
        self.assertEqual(self.reactor.stops, 0)

    def test_tapTerminate(self) -> None:
        """
        C{twistd pgtwist} puts its SIGTERM and SIGINT handlers over
        twistd's once the reactor runs: they call the service's graceful
        shutdown.
        """
        from twisted.internet import reactor

        running: list[Callable[[], object]] = []
        self.patch(reactor, "callFromThread", lambda f, *args: f(*args))
        self.patch(reactor, "callWhenRunning", lambda f, *args: running.append(f))
        options = tap.Options()
        options.parent = {"logfile": "x.log", "syslog": False, "logger": None}  # type: ignore[attr-defined]
        options.parseOptions(["-c", str(writeFamily(self))])
        self.assertEqual(list(self.handlers), [signal.SIGHUP])
        calls: list[str] = []
        self.patch(Management, "terminate", lambda management: calls.append("terminate"))
        self.patch(Management, "quit", lambda management: calls.append("quit"))
        tap.makeService(options)
        [install] = running
        install()
        self.handlers[signal.SIGTERM](signal.SIGTERM, None)
        self.handlers[signal.SIGINT](signal.SIGINT, None)
        self.handlers[signal.SIGQUIT](signal.SIGQUIT, None)
        self.assertEqual(calls, ["terminate", "terminate", "quit"])

    def test_supervisorTerminate(self) -> None:
        """
        With C{workers = N}, the first SIGTERM stops the supervisor (which
        sends the workers SIGTERM, their graceful shutdown, and waits); a
        second one sends SIGTERM again, their immediate one.
        """
        from pgtwist.app.workers import WorkerSupervisor

        signals: list[str] = []
        self.patch(WorkerSupervisor, "signalWorkers", lambda supervisor, name: signals.append(name))
        config = bootstrap.ConfigurationFiles(str(writeFamily(self, "workers = 2"))).load()
        supervisor = WorkerSupervisor(config, [], self.reactor)
        supervisor.terminate()
        self.assertEqual((self.reactor.stops, signals), (1, []))
        supervisor._stopping = True
        supervisor.terminate()
        self.assertEqual((self.reactor.stops, signals), (1, ["TERM"]))

    def test_supervisorQuit(self) -> None:
        """
        With C{workers = N}, SIGQUIT is passed on to the workers (their
        immediate shutdown) and the supervisor stops.
        """
        from pgtwist.app.workers import WorkerSupervisor

        signals: list[str] = []
        self.patch(WorkerSupervisor, "signalWorkers", lambda supervisor, name: signals.append(name))
        config = bootstrap.ConfigurationFiles(str(writeFamily(self, "workers = 2"))).load()
        supervisor = WorkerSupervisor(config, [], self.reactor)
        supervisor.quit()
        self.assertEqual((self.reactor.stops, signals), (1, ["QUIT"]))

    def test_underTwistd(self) -> None:
        """
        Under twistd, its C{--logger} builds the configured observer and its
        own SIGTERM and SIGINT handlers stay; SIGHUP still reloads.
        """
        config = bootstrap.ConfigurationFiles(str(writeFamily(self))).load()
        twistdOptions: dict[str, Any] = {"logfile": None, "syslog": False, "logger": None}
        bootstrap.setUpProcess(
            config.main, self.reactor, lambda: self.reloads.append(True), twistdOptions
        )
        self.assertEqual(twistdOptions["logger"], "pgtwist.app.logs.makeObserver")
        self.assertEqual(self.observers, [])
        self.assertEqual(list(self.handlers), [signal.SIGHUP])
        self.handlers[signal.SIGHUP](signal.SIGHUP, None)
        self.assertEqual(self.reloads, [True])

    def test_twistdLogfile(self) -> None:
        """
        An observer named on twistd's command line is kept.
        """
        config = bootstrap.ConfigurationFiles(str(writeFamily(self))).load()
        twistdOptions: dict[str, Any] = {"logfile": "x.log", "syslog": False, "logger": None}
        bootstrap.setUpProcess(config.main, self.reactor, lambda: None, twistdOptions)
        self.assertIsNone(twistdOptions["logger"])

    def test_tapHangup(self) -> None:
        """
        C{twistd pgtwist} routes SIGHUP to what its service tree says: a
        reload of the service.
        """
        from twisted.internet import reactor

        self.patch(reactor, "callFromThread", lambda f, *args: f(*args))
        self.patch(reactor, "callWhenRunning", lambda f, *args: None)
        conf = writeFamily(self)
        options = tap.Options()
        parent: dict[str, Any] = {"logfile": None, "syslog": False, "logger": None}
        options.parent = parent  # type: ignore[attr-defined]
        options.parseOptions(["-c", str(conf)])
        self.assertEqual(parent["logger"], "pgtwist.app.logs.makeObserver")
        self.assertEqual(list(self.handlers), [signal.SIGHUP])
        # Before the service exists, a SIGHUP does nothing.
        self.handlers[signal.SIGHUP](signal.SIGHUP, None)
        calls: list[bool] = []
        self.patch(PoolerService, "reload", lambda service: calls.append(True))
        tap.makeService(options)
        self.handlers[signal.SIGHUP](signal.SIGHUP, None)
        self.assertEqual(calls, [True])

    def test_supervisorHangup(self) -> None:
        """
        With C{workers = N}, SIGHUP is passed on to the workers.
        """
        from twisted.internet import reactor

        from pgtwist.app.workers import WorkerSupervisor

        self.patch(reactor, "callFromThread", lambda f, *args: f(*args))
        self.patch(reactor, "callWhenRunning", lambda f, *args: None)
        signals: list[str] = []
        self.patch(WorkerSupervisor, "signalWorkers", lambda supervisor, name: signals.append(name))
        options = tap.Options()
        options.parent = {"logfile": "x.log", "syslog": False, "logger": None}  # type: ignore[attr-defined]
        options.parseOptions(["-c", str(writeFamily(self, "workers = 2"))])
        tap.makeService(options)
        self.handlers[signal.SIGHUP](signal.SIGHUP, None)
        self.assertEqual(signals, ["HUP"])
