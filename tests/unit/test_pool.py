"""
Tests for L{pgtwist.pool.poolset.PoolSet}: limits, waiting, reuse and reset, with a
scripted connector of fake backends (L{FakePooledConnection}) and a C{Clock}
(no sockets, no L{pgtwist.net.backend.BackendProtocol}).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.model import (
    Configuration,
    DatabaseLimit,
    MainSettings,
    PoolKey,
    ServerSettings,
    UserEntry,
)
from pgtwist.interfaces import IPooledConnection, PoolTimeout
from pgtwist.net.backend import BackendError, BackendGone
from pgtwist.pool.maintenance import PoolMaintenance
from pgtwist.pool.poolset import BackendState, PoolSet
from pgtwist.testing import FakePooledConnection
from pgtwist.wire import errors

SERVER = ServerSettings("primary", "127.0.0.1", 5432, True)


class ProcessClock(Clock):
    """
    A C{Clock} that records the processes it would spawn (the failover
    script) instead of running them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[Any] = []

    def spawnProcess(self, protocol: Any, executable: str, args: Any, env: Any = None) -> None:
        """
        Record the protocol of the process that would run.
        """
        self.spawned.append(protocol)


class ScriptedBackend(FakePooledConnection):
    """
    A fake backend of C{SERVER} whose queries are answered by the test.
    """

    def __init__(self, key: PoolKey, clock: Clock, pid: int) -> None:
        super().__init__(key, pid, SERVER)


class PoolTestCase(SynchronousTestCase):
    """
    A PoolSet over a scripted connector.
    """

    key: PoolKey = ("db", "alice")

    def setUp(self) -> None:
        self.clock = Clock()
        self.connects: list[tuple[ScriptedBackend, Deferred[IPooledConnection]]] = []
        self.pools = self.makePools()

    def makePools(self, **main: object) -> PoolSet:
        """
        A PoolSet over the scripted connector.
        """
        settings = {"maxConnections": 2, "blockingTimeout": 5.0, "idleTimeout": 0.0}
        settings.update(main)
        config = Configuration(
            main=MainSettings(**settings),  # type: ignore[arg-type]
            servers=(SERVER,),
            users={"alice": UserEntry("alice", "pw")},
        )
        return PoolSet(config, self.clock, [], connector=self.connect)

    def connect(
        self, server: ServerSettings, key: PoolKey, password: str | None
    ) -> tuple[IPooledConnection, Deferred[IPooledConnection]]:
        """
        The scripted connector: the test fires the login Deferred.
        """
        self.assertEqual(password, "pw" if key[1] == "alice" else None)
        backend = ScriptedBackend(key, self.clock, 1000 + len(self.connects))
        d: Deferred[IPooledConnection] = Deferred()
        self.connects.append((backend, d))
        return backend, d

    def stateOf(self, backend: IPooledConnection) -> BackendState:
        """
        The pool's state of C{backend} (C{CLOSED} once forgotten).
        """
        entry = self.pools.entryFor(backend)
        return entry.state if entry is not None and entry.state else BackendState.CLOSED

    def maintain(self) -> None:
        """
        One round of the janitor's pool maintenance.
        """
        PoolMaintenance(self.pools, self.clock).maintain()

    def lendNew(
        self, parameters: Mapping[str, str] | None = None, key: PoolKey | None = None
    ) -> ScriptedBackend:
        """
        Acquire from the pool of C{key} (this case's by default) when it
        must connect: complete the new login and return the backend, which
        the client got.
        """
        d = self.pools.acquire(key or self.key, parameters)
        backend = self.login()
        self.assertIs(self.successResultOf(d), backend)
        return backend

    def login(self, index: int = -1) -> ScriptedBackend:
        """
        Complete the login of a pending connect.
        """
        backend, d = self.connects[index]
        d.callback(backend)
        return backend


class PoolSetTests(PoolTestCase):
    """
    Acquire, release, limits and timeouts.
    """

    def test_newBackend(self) -> None:
        """
        The first client makes the pool connect; it gets the backend once logged in.
        """
        d = self.pools.acquire(self.key, {"user": "alice"})
        self.assertNoResult(d)
        backend = self.login()
        self.assertIs(self.successResultOf(d), backend)
        self.assertIs(self.stateOf(backend), BackendState.ACTIVE)
        self.assertEqual(self.pools.total, 1)

    def test_reuseAfterReset(self) -> None:
        """
        A released backend is reset with DISCARD ALL and handed to the next
        client without a new connection.
        """
        backend = self.lendNew({})
        self.pools.release(backend)
        self.assertEqual(backend.queries[0][0], "DISCARD ALL")
        self.assertIs(self.stateOf(backend), BackendState.RESETTING)
        backend.queries[0][1].callback(None)
        self.assertIs(self.stateOf(backend), BackendState.IDLE)
        d2 = self.pools.acquire(self.key, {})
        self.assertIs(self.successResultOf(d2), backend)
        self.assertEqual(len(self.connects), 1)

    def test_serverResetQuery(self) -> None:
        """
        C{server_reset_query} runs on a released backend, then C{DISCARD
        ALL}; only then is the backend lent again.
        """
        self.pools = self.makePools(serverResetQuery="RESET ALL")
        backend = self.lendNew({})
        self.pools.release(backend)
        self.assertEqual([q for q, _ in backend.queries], ["RESET ALL"])
        backend.queries[0][1].callback(None)
        self.assertEqual([q for q, _ in backend.queries], ["RESET ALL", "DISCARD ALL"])
        self.assertIs(self.stateOf(backend), BackendState.RESETTING)
        self.assertEqual(backend.sessionResets, 1)
        backend.queries[1][1].callback(None)
        self.assertIs(self.stateOf(backend), BackendState.IDLE)

    def test_serverResetQueryFails(self) -> None:
        """
        A failing C{server_reset_query} closes the backend (pgagroal's
        C{discard}) without running C{DISCARD ALL}.
        """
        self.pools = self.makePools(serverResetQuery="SELECT broken()")
        backend = self.lendNew({})
        self.pools.release(backend)
        backend.queries[0][1].callback(errors.error("42883", "function broken() does not exist"))
        self.assertEqual(len(backend.queries), 1)
        self.assertIs(self.stateOf(backend), BackendState.CLOSED)

    def test_startupParametersApplied(self) -> None:
        """
        A reused backend gets the client's settings with SET, skipping values
        already in effect.
        """
        backend = self.lendNew({})
        backend.parameters["application_name"] = "same"
        self.pools.release(backend)
        backend.queries[0][1].callback(None)
        d2 = self.pools.acquire(
            self.key, {"application_name": "same", "options": "-c DateStyle=German"}
        )
        self.assertNoResult(d2)
        self.assertEqual(
            backend.queries[1][0], "SELECT pg_catalog.set_config('DateStyle', 'German', false)"
        )
        backend.queries[1][1].callback(None)
        self.assertIs(self.successResultOf(d2), backend)

    def test_badSettingIsFatal(self) -> None:
        """
        A setting PostgreSQL refuses fails the client with PostgreSQL's error
        as FATAL; the backend is reset for others.
        """
        d = self.pools.acquire(self.key, {"DateStyle": "nonsense"})
        backend = self.login()
        backend.queries[0][1].callback(
            errors.error("22023", 'invalid value for parameter "DateStyle": "nonsense"')
        )
        failure = self.failureResultOf(d, BackendError)
        self.assertEqual(failure.value.error.severity, "FATAL")
        self.assertEqual(failure.value.error.code, "22023")
        self.assertEqual(backend.queries[1][0], "DISCARD ALL")

    def test_uncleanReleaseCloses(self) -> None:
        """
        A backend released with a request in flight or in a transaction is closed.
        """
        for clean, status in ((False, b"I"), (True, b"T")):
            backend = self.lendNew({})
            backend.clean = clean
            backend.transactionStatus = status
            self.pools.release(backend)
            self.assertTrue(backend.closed)
            self.assertIs(self.stateOf(backend), BackendState.CLOSED)
        self.assertEqual(self.pools.total, 0)

    def test_blockingTimeout(self) -> None:
        """
        With every backend busy, a client waits C{blocking_timeout}, then fails
        with L{PoolTimeout}.
        """
        for _ in range(2):
            self.pools.acquire(self.key, {})
            self.login()
        d = self.pools.acquire(self.key, {})
        self.assertEqual(len(self.connects), 2)
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.failureResultOf(d, PoolTimeout)
        self.assertEqual(len(self.pools.pool(self.key).waiters), 0)

    def test_oneWaitTimerPerPool(self) -> None:
        """
        Waiters share their pool's one timer, armed for the oldest: each
        still fails at its own C{blocking_timeout}, one served in between
        never does, and the timer goes once nobody waits.
        """
        held = []
        for _ in range(2):
            d = self.pools.acquire(self.key, None)
            self.login()
            held.append(self.successResultOf(d))
        waits = []
        for _ in range(3):
            waits.append(self.pools.acquire(self.key, None))
            self.clock.advance(1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(1.9)
        self.assertNoResult(waits[0])
        self.clock.advance(0.1)
        self.failureResultOf(waits[0], PoolTimeout)
        self.pools.release(held[0], reset=False)
        self.assertIs(self.successResultOf(waits[1]), held[0])
        self.clock.advance(1.9)
        self.assertNoResult(waits[2])
        self.clock.advance(0.1)
        self.failureResultOf(waits[2], PoolTimeout)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.pools.pool(self.key).stats.timeouts, 2)

    def test_waitKeepsItsTimeoutAcrossReload(self) -> None:
        """
        A client keeps the blocking_timeout it started to wait with: a
        reload that turns the timeout off, or shortens it, changes only the
        waits that start after it.
        """
        for _ in range(2):
            self.pools.acquire(self.key, {})
            self.login()
        first = self.pools.acquire(self.key, None)
        self.pools.reconfigure(
            dataclasses.replace(
                self.pools.config,
                main=dataclasses.replace(self.pools.config.main, blockingTimeout=0.0),
            )
        )
        second = self.pools.acquire(self.key, None)
        self.pools.reconfigure(
            dataclasses.replace(
                self.pools.config,
                main=dataclasses.replace(self.pools.config.main, blockingTimeout=1.0),
            )
        )
        third = self.pools.acquire(self.key, None)
        self.clock.advance(1)
        self.failureResultOf(third, PoolTimeout)
        self.assertNoResult(first)
        self.clock.advance(4)
        self.failureResultOf(first, PoolTimeout)
        self.clock.advance(100)
        self.assertNoResult(second)
        second.cancel()
        self.failureResultOf(second)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_waitTimerGoesWithLastWaiter(self) -> None:
        """
        The last waiter served or cancelled disarms the pool's wait timer.
        """
        held = []
        for _ in range(2):
            d = self.pools.acquire(self.key, None)
            self.login()
            held.append(self.successResultOf(d))
        waiting = self.pools.acquire(self.key, None)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.pools.release(held[0], reset=False)
        self.assertIs(self.successResultOf(waiting), held[0])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        waiting = self.pools.acquire(self.key, None)
        waiting.cancel()
        self.failureResultOf(waiting)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_waiterServedOnRelease(self) -> None:
        """
        A waiting client gets the first backend released.
        """
        first = self.pools.acquire(self.key, {})
        backend = self.login()
        self.successResultOf(first)
        self.pools.acquire(self.key, {})
        self.login()
        waiting = self.pools.acquire(self.key, {})
        self.pools.release(backend)
        backend.queries[0][1].callback(None)
        self.assertIs(self.successResultOf(waiting), backend)

    def test_cancelledWaiterForgotten(self) -> None:
        """
        A client that leaves while waiting is removed from the queue.
        """
        for _ in range(2):
            self.pools.acquire(self.key, {})
            self.login()
        d = self.pools.acquire(self.key, {})
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(len(self.pools.pool(self.key).waiters), 0)

    def test_cancelledWhileSettingsRefused(self) -> None:
        """
        A client that leaves while its settings are applied, which
        PostgreSQL then refuses, is told nothing more (its Deferred fired
        once, with the cancel) and the backend goes back to the pool.
        """
        d = self.pools.acquire(self.key, {"application_name": "app"})
        backend = self.login()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        answer = backend.queries[0][1]
        answer.callback(errors.error("22023", "invalid value for parameter"))
        self.assertIsNone(self.successResultOf(answer))
        self.assertIs(self.stateOf(backend), BackendState.RESETTING)
        self.assertEqual(backend.queries[1][0], "DISCARD ALL")

    def test_cancelledWhileSettingsAndClosed(self) -> None:
        """
        A client that leaves while its settings are applied, the backend
        being closed meanwhile (a flush), is told nothing more either.
        """
        d = self.pools.acquire(self.key, {"application_name": "app"})
        backend = self.login()
        d.cancel()
        self.pools.flush("all", None)
        answer = backend.queries[0][1]
        answer.callback(None)
        self.assertIsNone(self.successResultOf(answer))
        self.failureResultOf(d, CancelledError)
        self.assertIs(self.stateOf(backend), BackendState.CLOSED)

    def test_evictIdleOfOtherPool(self) -> None:
        """
        At the global limit, an idle backend of another pool is closed to make
        room.
        """
        other: PoolKey = ("db", "bob")
        bobs = self.lendNew({}, key=other)
        self.pools.release(bobs)
        bobs.queries[0][1].callback(None)
        self.pools.acquire(self.key, {})
        self.login()
        d2 = self.pools.acquire(self.key, {})
        self.assertTrue(bobs.closed)
        self.login()
        self.successResultOf(d2)
        self.assertEqual(self.pools.total, 2)

    def test_releaseServesOtherPool(self) -> None:
        """
        At the global limit, a backend given back to one pool serves the
        client waiting in another (closing the idle one to make room), and
        the queue index forgets the pool once its queue is empty.
        """
        other: PoolKey = ("db", "bob")
        first = self.lendNew()
        self.lendNew()
        waiting = self.pools.acquire(other, None)
        self.assertNoResult(waiting)
        self.assertEqual(list(self.pools._waiting), [other])
        self.pools.release(first, reset=False)
        self.assertTrue(first.closed)
        bobs = self.login()
        self.assertIs(self.successResultOf(waiting), bobs)
        self.assertEqual(bobs.key, other)
        self.pools.release(bobs, reset=False)
        self.assertEqual(self.pools._waiting, {})

    def test_idleTimeout(self) -> None:
        """
        An idle backend is closed after C{idle_timeout}.
        """
        self.pools = self.makePools(idleTimeout=10.0)
        backend = self.lendNew({})
        self.pools.release(backend)
        backend.queries[0][1].callback(None)
        self.clock.advance(9.9)
        self.assertFalse(backend.closed)
        self.clock.advance(0.1)
        self.assertTrue(backend.closed)
        self.assertEqual(self.pools.total, 0)

    def test_idleTimeoutCountsFromLastUse(self) -> None:
        """
        A backend used again before its idle time ran out is closed
        C{idle_timeout} after its last use, and its uses arm no new timers:
        one timer serves it while it stays busy.
        """
        self.pools = self.makePools(idleTimeout=10.0)
        backend = self.lendNew()
        self.pools.release(backend, reset=False)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        for _ in range(5):
            self.clock.advance(1.0)
            self.assertIs(self.pools.acquireIdle(self.key), backend)
            self.pools.release(backend, reset=False)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(9.9)
        self.assertFalse(backend.closed)
        self.clock.advance(0.1)
        self.assertTrue(backend.closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_idleTimerDroppedWhileInUse(self) -> None:
        """
        A backend still lent when its idle timer runs out stays open, and
        going idle again starts a full C{idle_timeout}.
        """
        self.pools = self.makePools(idleTimeout=10.0)
        backend = self.lendNew()
        self.pools.release(backend, reset=False)
        self.assertIs(self.pools.acquireIdle(self.key), backend)
        self.clock.advance(15.0)
        self.assertFalse(backend.closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.pools.release(backend, reset=False)
        self.clock.advance(9.9)
        self.assertFalse(backend.closed)
        self.clock.advance(0.1)
        self.assertTrue(backend.closed)

    def test_closedBackendCancelsIdleTimer(self) -> None:
        """
        Closing an idle backend cancels its idle timer.
        """
        self.pools = self.makePools(idleTimeout=10.0)
        backend = self.lendNew()
        self.pools.release(backend, reset=False)
        self.pools.discard(backend, "test")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_acquireIdle(self) -> None:
        """
        L{PoolSet.acquireIdle} lends the most recently used idle backend at
        once, and answers C{None} (never queueing or connecting) when there
        is none, when clients wait, or when the pool is paused.
        """
        self.assertIsNone(self.pools.acquireIdle(self.key))
        self.assertEqual(self.connects, [])
        backend = self.lendNew()
        self.assertIsNone(self.pools.acquireIdle(self.key))
        self.pools.release(backend, reset=False)
        self.pools.pause()
        self.assertIsNone(self.pools.acquireIdle(self.key))
        self.pools.resume()
        self.assertIs(self.pools.acquireIdle(self.key), backend)
        self.assertIs(self.stateOf(backend), BackendState.ACTIVE)
        self.assertEqual(self.pools.pool(self.key).stats.serverAssignmentCount, 2)
        self.assertEqual(len(self.connects), 1)

    def test_acquireIdleSkipsDeadBackend(self) -> None:
        """
        An idle backend whose connection is gone is not lent by
        L{PoolSet.acquireIdle}; L{PoolSet.acquire} replaces it.
        """
        backend = self.lendNew()
        self.pools.release(backend, reset=False)
        backend.closing = True
        self.assertIsNone(self.pools.acquireIdle(self.key))
        self.assertIs(self.stateOf(backend), BackendState.IDLE)

    def test_lostIdleBackendForgotten(self) -> None:
        """
        An idle backend whose connection is lost is no longer counted or
        lent; the next client gets a new one.
        """
        backend = self.lendNew({})
        self.pools.release(backend, reset=False)
        backend.lose()
        self.assertIs(self.stateOf(backend), BackendState.CLOSED)
        self.assertEqual(self.pools.total, 0)
        self.assertEqual(self.pools.pool(self.key).stats.connectionsClosed, 1)
        self.assertIsNone(self.pools.acquireIdle(self.key))
        self.assertIsNot(self.lendNew({}), backend)

    def test_lostLentBackendForgotten(self) -> None:
        """
        A lent backend whose connection is lost frees its place; giving it
        back afterwards is harmless.
        """
        backend = self.lendNew({})
        backend.lose()
        self.assertEqual(self.pools.total, 0)
        self.pools.release(backend)
        self.pools.discard(backend, "gone")
        self.assertEqual(backend.queries, [])
        self.assertEqual(self.pools.total, 0)

    def test_loginErrorReachesWaiter(self) -> None:
        """
        PostgreSQL's refusal (e.g. unknown database) reaches the waiting client.
        """
        d = self.pools.acquire(self.key, {})
        backend, login = self.connects[0]
        login.errback(BackendError(errors.fatal("3D000", 'database "db" does not exist')))
        failure = self.failureResultOf(d, BackendError)
        self.assertEqual(failure.value.error.code, "3D000")
        self.assertEqual(self.pools.total, 0)

    def test_connectFailureRetried(self) -> None:
        """
        An unreachable server is retried C{max_retries} times with back-off;
        then every waiting client fails with 08001, and the pool does not spin.
        """
        d = self.pools.acquire(self.key, {})
        for attempt in range(6):
            self.assertEqual(len(self.connects), attempt + 1)
            self.connects[-1][1].errback(ConnectionRefusedError())
            if attempt == 0:
                d2 = self.pools.acquire(self.key, {})
            self.clock.advance(0.1 * 2**attempt)
        self.assertEqual(self.failureResultOf(d, BackendError).value.error.code, "08001")
        self.failureResultOf(d2, BackendError)
        self.assertEqual(len(self.connects), 6)
        self.assertEqual(self.pools.total, 0)

    def test_tooManyConnectionsRetried(self) -> None:
        """
        PostgreSQL's "too many clients" is retried like an unreachable server.
        """
        d = self.pools.acquire(self.key, {})
        self.connects[0][1].errback(
            BackendError(errors.fatal("53300", "sorry, too many clients already"))
        )
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.login()
        self.successResultOf(d)


class PoolSetOperationsTests(PoolTestCase):
    """
    Limits, aliases, failover, validation, lifetimes, flush and prefill.
    """

    def configure(self, **kwargs: object) -> None:
        """
        Replace the configuration (with two servers).
        """
        main = {"maxConnections": 4, "blockingTimeout": 5.0}
        main.update(kwargs.pop("main", {}))  # type: ignore[arg-type]
        config = Configuration(
            main=MainSettings(**main),  # type: ignore[arg-type]
            servers=(SERVER, ServerSettings("standby", "127.0.0.2", 5432)),
            users={"alice": UserEntry("alice", "pw")},
            **kwargs,  # type: ignore[arg-type]
        )
        self.pools = PoolSet(config, self.clock, [], connector=self.connect)

    def connect(
        self, server: ServerSettings, key: PoolKey, password: str | None
    ) -> tuple[IPooledConnection, Deferred[IPooledConnection]]:
        """
        Record which server each connection went to.
        """
        backend, d = super().connect(server, key, password)
        backend.server = server
        return backend, d

    def test_lineLimit(self) -> None:
        """
        A line's MAX_SIZE bounds the backends of the pools it governs.
        """
        self.configure(limits=(DatabaseLimit("db", "alice", 1),))
        self.pools.acquire(self.key, {})
        self.login()
        waiting = self.pools.acquire(self.key, {})
        self.assertEqual(len(self.connects), 1)
        self.assertNoResult(waiting)

    def test_allTakesTheRest(self) -> None:
        """
        MAX_SIZE C{all} is what the explicit lines leave of max_connections.
        """
        self.configure(
            limits=(DatabaseLimit("other", "alice", 3), DatabaseLimit("db", "alice", None))
        )
        self.pools.acquire(self.key, {})
        self.login()
        self.pools.acquire(self.key, {})
        self.assertEqual(len(self.connects), 1)

    def test_failover(self) -> None:
        """
        With failover on, a primary that stays unreachable is marked failed
        and new backends go to the next server.
        """
        self.configure(main={"failover": True, "maxRetries": 1})
        d = self.pools.acquire(self.key, {})
        for _ in range(2):
            self.connects[-1][1].errback(ConnectionRefusedError())
            self.clock.advance(1)
        self.assertEqual(self.connects[-1][0].server.name, "standby")
        self.login()
        self.successResultOf(d)
        self.assertEqual(self.pools.servers.current.name, "standby")

    def test_failoverWaitsForScript(self) -> None:
        """
        With C{failover_script}, no backend is opened while it runs (the
        new server may not be promoted yet); once it exits 0 the waiting
        client is served by the new primary.
        """
        self.clock = reactor = ProcessClock()
        self.configure(main={"failover": True, "failoverScript": "/bin/promote", "maxRetries": 0})
        d = self.pools.acquire(self.key, {})
        self.connects[-1][1].errback(ConnectionRefusedError())
        self.clock.advance(4)
        self.assertEqual(len(self.connects), 1)
        self.assertNoResult(d)
        [protocol] = reactor.spawned
        protocol.processEnded(Failure(ProcessDone(0)))
        self.assertEqual(self.connects[-1][0].server.name, "standby")
        self.login()
        self.successResultOf(d)
        self.assertEqual(self.pools.servers.current.name, "standby")

    def test_failoverScriptFails(self) -> None:
        """
        A C{failover_script} that exits non-zero switches no client: the
        old server stays the primary and, once it fails again with no
        other server left, the waiting client hears that pgtwist cannot
        connect.
        """
        self.clock = reactor = ProcessClock()
        self.configure(main={"failover": True, "failoverScript": "/bin/promote", "maxRetries": 0})
        d = self.pools.acquire(self.key, {})
        self.connects[-1][1].errback(ConnectionRefusedError())
        [protocol] = reactor.spawned
        protocol.processEnded(Failure(ProcessTerminated(exitCode=3)))
        self.assertEqual(self.pools.servers.current.name, "primary")
        self.assertEqual([c[0].server.name for c in self.connects], ["primary", "primary"])
        self.connects[-1][1].errback(ConnectionRefusedError())
        self.assertEqual(self.failureResultOf(d, BackendError).value.error.code, "08001")
        self.assertEqual(self.pools.servers.current.name, "primary")

    def test_failoverClosesOldServerBackends(self) -> None:
        """
        Failing over closes every backend of the failed server, idle and
        lent (their server is gone), and new backends go to the next server.
        """
        self.configure(main={"failover": True, "maxRetries": 0})
        idle = self.lendNew({})
        lent = self.lendNew({})
        self.pools.release(idle, reset=False)
        d = self.pools.acquire(("db", "bob"), {})
        self.connects[-1][1].errback(ConnectionRefusedError())
        self.assertTrue(idle.closed)
        self.assertTrue(lent.closed)
        self.assertEqual(self.pools.servers.current.name, "standby")
        self.clock.advance(0)
        self.assertEqual(self.connects[-1][0].server.name, "standby")
        self.login()
        self.successResultOf(d)

    def test_failoverNowhere(self) -> None:
        """
        When the other server failed too, the waiting clients hear that
        pgtwist cannot connect, and the primary stays in use.
        """
        self.configure(main={"failover": True, "maxRetries": 0})
        self.pools.servers.switchTo("standby")
        self.pools.servers.switchTo("primary")
        d = self.pools.acquire(self.key, {})
        self.connects[-1][1].errback(ConnectionRefusedError())
        self.assertEqual(self.failureResultOf(d, BackendError).value.error.code, "08001")
        self.assertEqual(self.pools.servers.current.name, "primary")

    def test_failoverOff(self) -> None:
        """
        Without failover, an unreachable primary stays the primary.
        """
        self.configure(main={"maxRetries": 0})
        d = self.pools.acquire(self.key, {})
        self.connects[-1][1].errback(ConnectionRefusedError())
        self.failureResultOf(d, BackendError)
        self.assertEqual(self.pools.servers.current.name, "primary")

    def test_foregroundValidationReplacesDeadBackend(self) -> None:
        """
        With foreground validation, a backend failing its empty query is
        replaced without the client noticing.
        """
        self.configure(main={"validation": "foreground"})
        backend = self.lendNew({})
        self.pools.release(backend)
        backend.queries[0][1].callback(None)
        self.clock.advance(5)
        d2 = self.pools.acquire(self.key, {})
        self.assertEqual(backend.queries[1][0], "")
        backend.queries[1][1].errback(BackendGone())
        self.assertTrue(backend.closed)
        fresh = self.login()
        self.assertIs(self.successResultOf(d2), fresh)

    def test_recentlyUsedNotValidated(self) -> None:
        """
        A backend used within the last second has just proved itself: no
        extra round trip.
        """
        self.configure(main={"validation": "foreground"})
        backend = self.lendNew({})
        self.pools.release(backend)
        backend.queries[0][1].callback(None)
        self.successResultOf(self.pools.acquire(self.key, {}))
        self.assertEqual(len(backend.queries), 1)

    def test_cancelledDuringValidationWithBadOptions(self) -> None:
        """
        A client that leaves while the backend it is to get is validated,
        and whose C{options} pgtwist refuses, is told nothing more (its
        Deferred fired once, with the cancel); the backend stays idle.
        """
        self.configure(main={"validation": "foreground"})
        backend = self.lendNew({})
        self.pools.release(backend, reset=False)
        self.clock.advance(1)
        d = self.pools.acquire(self.key, {"options": "-X"})
        check = backend.queries[-1][1]
        d.cancel()
        self.failureResultOf(d, CancelledError)
        check.callback(None)
        self.assertIsNone(self.successResultOf(check))
        self.assertIs(self.stateOf(backend), BackendState.IDLE)

    def test_deadIdleBackendReplaced(self) -> None:
        """
        With validation off, an idle backend found dead is replaced.
        """
        backend = self.lendNew({})
        self.pools.release(backend)
        backend.queries[0][1].callback(None)
        backend.connected = False
        d2 = self.pools.acquire(self.key, {})
        self.assertEqual(len(self.connects), 2)
        self.assertIs(self.successResultOf(self.loginThen(d2)), self.connects[-1][0])

    def loginThen(self, d: Deferred[object]) -> Deferred[object]:
        """
        Complete the latest login, return C{d}.
        """
        self.login()
        return d

    def test_maxConnectionAge(self) -> None:
        """
        A backend older than max_connection_age is closed when given back.
        """
        self.configure(main={"maxConnectionAge": 60.0})
        backend = self.lendNew({})
        self.clock.advance(61)
        self.pools.release(backend)
        self.assertTrue(backend.closed)

    def test_flushGracefully(self) -> None:
        """
        A graceful flush closes idle backends now and active ones on return.
        """
        active = self.lendNew({})
        self.assertEqual(self.pools.flush("gracefully", None), 1)
        self.assertFalse(active.closed)
        self.pools.release(active)
        self.assertTrue(active.closed)

    def test_flushAllOneDatabase(self) -> None:
        """
        Flushing all of one database leaves the others alone.
        """
        mine = self.lendNew({})
        other = self.pools.acquire(("elsewhere", "alice"), {})
        theirs = self.login()
        self.successResultOf(other)
        self.assertEqual(self.pools.flush("all", "db"), 1)
        self.assertTrue(mine.closed)
        self.assertFalse(theirs.closed)

    def test_prefillAndMinimum(self) -> None:
        """
        INITIAL_SIZE backends open at start, MIN_SIZE ones are kept up.
        """
        self.configure(limits=(DatabaseLimit("db", "alice", 4, initialSize=3, minSize=1),))
        self.maintain()
        self.assertEqual(len(self.connects), 3)
        for backend, d in self.connects:
            d.callback(backend)
        for entry in list(self.pools.pool(self.key).idle):
            self.pools.discard(entry.backend, "test")
        self.maintain()
        self.assertEqual(len(self.connects), 4)

    def test_noMinimumWhileDraining(self) -> None:
        """
        A process an upgrade replaced opens no backend to keep a pool at
        its minimum: it hands its idle ones over.
        """
        self.configure(limits=(DatabaseLimit("db", "alice", 4, initialSize=3, minSize=1),))
        self.pools.draining = True
        self.maintain()
        self.assertEqual(self.connects, [])

    def test_prefillNeedsVaultPassword(self) -> None:
        """
        Pairs without a vault password are not prefilled.
        """
        self.configure(limits=(DatabaseLimit("db", "bob", 4, initialSize=2),))
        self.maintain()
        self.assertEqual(self.connects, [])
