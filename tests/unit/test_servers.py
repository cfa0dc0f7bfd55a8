"""
Tests for L{pgtwist.pool.servers}: which server new backends go to,
switch-to, clear, failover and the failover script, without sockets,
processes or time.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.model import ServerSettings
from pgtwist.pool.servers import ServerSet, ServerState, _ScriptProtocol

ONE = ServerSettings("one", "10.0.0.1", 5432)
TWO = ServerSettings("two", "10.0.0.2", 5433, True)
THREE = ServerSettings("three", "10.0.0.3", 5434)


class FakeProcessReactor:
    """
    Records C{spawnProcess} calls instead of running anything.
    """

    def __init__(self) -> None:
        self.spawned: list[tuple[Any, str, list[str]]] = []

    def spawnProcess(
        self, protocol: Any, executable: str, args: list[str], env: Any = None
    ) -> None:
        """
        Record the process that would run.
        """
        self.spawned.append((protocol, executable, list(args)))


class ServerSetTests(SynchronousTestCase):
    """
    The primary, and moving away from it.
    """

    def test_configuredPrimary(self) -> None:
        """
        The server marked primary is the current one; the others stand by.
        """
        servers = ServerSet([ONE, TWO, THREE])
        self.assertIs(servers.current, TWO)
        self.assertEqual(
            servers.states,
            {"one": ServerState.STANDBY, "two": ServerState.PRIMARY, "three": ServerState.STANDBY},
        )

    def test_firstWithoutPrimary(self) -> None:
        """
        Without a server marked primary, the first one is.
        """
        self.assertIs(ServerSet([ONE, THREE]).current, ONE)

    def test_byName(self) -> None:
        """
        Servers are found by their section name.
        """
        servers = ServerSet([ONE, TWO])
        self.assertIs(servers.byName("one"), ONE)
        self.assertIsNone(servers.byName("nowhere"))

    def test_switchTo(self) -> None:
        """
        SWITCH_TO makes a server primary and marks the old one failed.
        """
        servers = ServerSet([ONE, TWO])
        self.assertTrue(servers.switchTo("one"))
        self.assertIs(servers.current, ONE)
        self.assertIs(servers.states["two"], ServerState.FAILED)

    def test_switchToCurrent(self) -> None:
        """
        Switching to the current server changes nothing.
        """
        servers = ServerSet([ONE, TWO])
        self.assertTrue(servers.switchTo("two"))
        self.assertIs(servers.states["two"], ServerState.PRIMARY)
        self.assertIs(servers.states["one"], ServerState.STANDBY)

    def test_switchToUnknown(self) -> None:
        """
        An unknown server name is refused, and the primary stays.
        """
        servers = ServerSet([ONE, TWO])
        self.assertFalse(servers.switchTo("nowhere"))
        self.assertIs(servers.current, TWO)

    def test_reset(self) -> None:
        """
        CLEAR SERVER makes a failed server a standby again; other states stay.
        """
        servers = ServerSet([ONE, TWO])
        servers.switchTo("one")
        self.assertTrue(servers.reset("two"))
        self.assertIs(servers.states["two"], ServerState.STANDBY)
        self.assertTrue(servers.reset("one"))
        self.assertIs(servers.states["one"], ServerState.PRIMARY)
        self.assertFalse(servers.reset("nowhere"))

    def test_reconfigureKeepsCurrentAndFailures(self) -> None:
        """
        A reload keeps the server in use and the failed marks of servers
        that stay.
        """
        servers = ServerSet([ONE, TWO, THREE])
        servers.switchTo("three")
        servers.reconfigure([ONE, TWO, THREE])
        self.assertIs(servers.current, THREE)
        self.assertIs(servers.states["two"], ServerState.FAILED)

    def test_reconfigureDropsCurrent(self) -> None:
        """
        When the server in use leaves the configuration, the configured
        primary takes over.
        """
        servers = ServerSet([ONE, TWO, THREE])
        servers.switchTo("three")
        servers.reset("two")
        servers.reconfigure([ONE, TWO])
        self.assertIs(servers.current, TWO)
        self.assertEqual(set(servers.states), {"one", "two"})


class FailoverTests(SynchronousTestCase):
    """
    L{ServerSet.failover}: the next server that has not failed, and the
    failover script.
    """

    def test_next(self) -> None:
        """
        Failover marks the primary failed and moves to the next server.
        """
        servers = ServerSet([ONE, TWO, THREE])
        self.assertIs(servers.failover(None), THREE)
        self.assertIs(servers.current, THREE)
        self.assertIs(servers.states["two"], ServerState.FAILED)

    def test_wrapsAroundSkippingFailed(self) -> None:
        """
        The search wraps around the list and skips servers that failed.
        """
        servers = ServerSet([ONE, TWO, THREE])
        servers.failover(None)
        self.assertIs(servers.failover(None), ONE)
        self.assertIs(servers.states["three"], ServerState.FAILED)

    def test_noneLeft(self) -> None:
        """
        When every other server failed, there is nowhere to go: the primary
        stays in use.
        """
        servers = ServerSet([ONE, TWO])
        servers.failover(None)
        self.assertIsNone(servers.failover(None))
        self.assertIs(servers.current, ONE)
        self.assertIs(servers.states["one"], ServerState.PRIMARY)

    def test_script(self) -> None:
        """
        The failover script runs with pgagroal's arguments: old host and
        port, new host and port; until it ends the new server is only
        being promoted, and L{ServerSet.switching} is waiting.
        """
        reactor = FakeProcessReactor()
        servers = ServerSet([ONE, TWO], reactor)
        self.assertIs(servers.failover("/usr/local/bin/promote"), ONE)
        [(protocol, executable, args)] = reactor.spawned
        self.assertEqual(executable, "/usr/local/bin/promote")
        self.assertEqual(args, ["/usr/local/bin/promote", "10.0.0.2", "5433", "10.0.0.1", "5432"])
        self.assertIsInstance(protocol, _ScriptProtocol)
        self.assertIs(servers.states["one"], ServerState.PROMOTING)
        self.assertIs(servers.states["two"], ServerState.FAILED)
        self.assertIsNotNone(servers.switching)
        self.assertNotIn(ServerState.PRIMARY, servers.states.values())

    def test_scriptSucceeds(self) -> None:
        """
        The new server becomes the primary only once the script exits 0
        (pgagroal's order), and L{ServerSet.switching} fires C{True}.
        """
        reactor = FakeProcessReactor()
        servers = ServerSet([ONE, TWO], reactor)
        servers.failover("/usr/local/bin/promote")
        switching = servers.switching
        assert switching is not None
        [(protocol, _, _)] = reactor.spawned
        protocol.processEnded(Failure(ProcessDone(0)))
        self.assertIs(self.successResultOf(switching), True)
        self.assertIsNone(servers.switching)
        self.assertIs(servers.current, ONE)
        self.assertIs(servers.states["one"], ServerState.PRIMARY)

    def test_scriptFails(self) -> None:
        """
        A script that exits non-zero (or is killed) switches nothing: the
        new server is marked failed, the old one stays the primary, and
        L{ServerSet.switching} fires C{False}.
        """
        for reason in (ProcessTerminated(exitCode=3), ProcessTerminated(signal=9)):
            reactor = FakeProcessReactor()
            servers = ServerSet([ONE, TWO], reactor)
            servers.failover("/usr/local/bin/promote")
            switching = servers.switching
            assert switching is not None
            [(protocol, _, _)] = reactor.spawned
            protocol.processEnded(Failure(reason))
            self.assertIs(self.successResultOf(switching), False)
            self.assertIs(servers.current, TWO)
            self.assertEqual(
                servers.states, {"one": ServerState.FAILED, "two": ServerState.PRIMARY}
            )

    def test_scriptCannotStart(self) -> None:
        """
        A script that cannot be started counts as one that failed.
        """

        class Refusing(FakeProcessReactor):
            def spawnProcess(
                self, protocol: Any, executable: str, args: list[str], env: Any = None
            ) -> None:
                raise OSError("no such file")

        servers = ServerSet([ONE, TWO], Refusing())
        servers.failover("/nowhere")
        self.assertIsNone(servers.switching)
        self.assertIs(servers.current, TWO)
        self.assertIs(servers.states["one"], ServerState.FAILED)

    def test_switchToDuringScript(self) -> None:
        """
        C{switch-to} while the script runs wins: the script's end promotes
        nothing.
        """
        reactor = FakeProcessReactor()
        servers = ServerSet([ONE, TWO, THREE], reactor)
        servers.failover("/usr/local/bin/promote")
        self.assertTrue(servers.switchTo("one"))
        [(protocol, _, _)] = reactor.spawned
        protocol.processEnded(Failure(ProcessDone(0)))
        self.assertIs(servers.current, ONE)
        self.assertEqual(
            [s for s, state in servers.states.items() if state is ServerState.PRIMARY], ["one"]
        )

    def test_noScriptWithoutFailover(self) -> None:
        """
        No script runs when there is no server to fail over to, or none is
        configured.
        """
        reactor = FakeProcessReactor()
        servers = ServerSet([ONE, TWO], reactor)
        servers.failover(None)
        servers.failover("/usr/local/bin/promote")
        self.assertEqual(reactor.spawned, [])

    def test_scriptExitLogged(self) -> None:
        """
        A script that fails is logged as an error with its exit status; one
        that succeeds, as information.
        """
        events: list[dict[str, Any]] = []
        protocol = _ScriptProtocol("/usr/local/bin/promote")
        protocol.log = Logger(observer=events.append)
        protocol.processEnded(Failure(ProcessTerminated(exitCode=3)))
        protocol.processEnded(Failure(ProcessDone(0)))
        self.assertEqual([e["log_level"].name for e in events], ["error", "info"])
        self.assertEqual(events[0]["code"], 3)
