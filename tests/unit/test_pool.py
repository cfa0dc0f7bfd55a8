"""
Tests for L{pgtwist.pool.PoolSet}: limits, waiting, reuse and reset, with a
scripted connector and a C{Clock} (no sockets).
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.backend import BackendError, BackendProtocol
from pgtwist.config.model import Configuration, MainSettings, PoolKey, ServerSettings, UserEntry
from pgtwist.pool import BackendState, PoolSet, PoolTimeout
from pgtwist.wire import errors
from pgtwist.wire.messages import ErrorResponse

SERVER = ServerSettings("primary", "127.0.0.1", 5432, True)


class ScriptedBackend(BackendProtocol):
    """
    A backend whose queries are answered by the test.
    """

    def __init__(self, key: PoolKey, clock: Clock, pid: int) -> None:
        super().__init__(key, SERVER, None, [], clock)
        self.processId = pid
        self.queries: list[tuple[str, Deferred[ErrorResponse | None]]] = []
        self.closed = False

    def simpleQuery(self, sql: str) -> Deferred[ErrorResponse | None]:
        """
        Record the query; the test fires its Deferred.
        """
        d: Deferred[ErrorResponse | None] = Deferred()
        self.queries.append((sql, d))
        return d

    def close(self) -> None:
        """
        Record the close.
        """
        self.closed = True
        self.closing = True


class PoolSetTests(SynchronousTestCase):
    """
    Acquire, release, limits and timeouts.
    """

    key: PoolKey = ("db", "alice")

    def setUp(self) -> None:
        self.clock = Clock()
        self.connects: list[tuple[ScriptedBackend, Deferred[BackendProtocol]]] = []
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
    ) -> tuple[BackendProtocol, Deferred[BackendProtocol]]:
        """
        The scripted connector: the test fires the login Deferred.
        """
        self.assertEqual(password, "pw" if key[1] == "alice" else None)
        backend = ScriptedBackend(key, self.clock, 1000 + len(self.connects))
        d: Deferred[BackendProtocol] = Deferred()
        self.connects.append((backend, d))
        return backend, d

    def login(self, index: int = -1) -> ScriptedBackend:
        """
        Complete the login of a pending connect.
        """
        backend, d = self.connects[index]
        d.callback(backend)
        return backend

    def test_newBackend(self) -> None:
        """
        The first client makes the pool connect; it gets the backend once logged in.
        """
        d = self.pools.acquire(self.key, {"user": "alice"})
        self.assertNoResult(d)
        backend = self.login()
        self.assertIs(self.successResultOf(d), backend)
        self.assertIs(backend.poolState, BackendState.ACTIVE)
        self.assertEqual(self.pools.total, 1)

    def test_reuseAfterReset(self) -> None:
        """
        A released backend is reset with DISCARD ALL and handed to the next
        client without a new connection.
        """
        d = self.pools.acquire(self.key, {})
        backend = self.login()
        self.successResultOf(d)
        self.pools.release(backend)
        self.assertEqual(backend.queries[0][0], "DISCARD ALL")
        self.assertIs(backend.poolState, BackendState.RESETTING)
        backend.queries[0][1].callback(None)
        self.assertIs(backend.poolState, BackendState.IDLE)
        d2 = self.pools.acquire(self.key, {})
        self.assertIs(self.successResultOf(d2), backend)
        self.assertEqual(len(self.connects), 1)

    def test_startupParametersApplied(self) -> None:
        """
        A reused backend gets the client's settings with SET, skipping values
        already in effect.
        """
        d = self.pools.acquire(self.key, {})
        backend = self.login()
        self.successResultOf(d)
        backend.parameters["application_name"] = "same"
        self.pools.release(backend)
        backend.queries[0][1].callback(None)
        d2 = self.pools.acquire(
            self.key, {"application_name": "same", "options": "-c DateStyle=German"}
        )
        self.assertNoResult(d2)
        self.assertEqual(backend.queries[1][0], "SET \"DateStyle\" = 'German'")
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
            d = self.pools.acquire(self.key, {})
            backend = self.login()
            self.successResultOf(d)
            backend.clean = clean
            backend.transactionStatus = status
            self.pools.release(backend)
            self.assertTrue(backend.closed)
            self.assertIs(backend.poolState, BackendState.CLOSED)
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

    def test_evictIdleOfOtherPool(self) -> None:
        """
        At the global limit, an idle backend of another pool is closed to make
        room.
        """
        other: PoolKey = ("db", "bob")
        d = self.pools.acquire(other, {})
        bobs = self.login()
        self.successResultOf(d)
        self.pools.release(bobs)
        bobs.queries[0][1].callback(None)
        self.pools.acquire(self.key, {})
        self.login()
        d2 = self.pools.acquire(self.key, {})
        self.assertTrue(bobs.closed)
        self.login()
        self.successResultOf(d2)
        self.assertEqual(self.pools.total, 2)

    def test_idleTimeout(self) -> None:
        """
        An idle backend is closed after C{idle_timeout}.
        """
        self.pools = self.makePools(idleTimeout=10.0)
        d = self.pools.acquire(self.key, {})
        backend = self.login()
        self.successResultOf(d)
        self.pools.release(backend)
        backend.queries[0][1].callback(None)
        self.clock.advance(9.9)
        self.assertFalse(backend.closed)
        self.clock.advance(0.1)
        self.assertTrue(backend.closed)
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

    def test_connectFailure(self) -> None:
        """
        An unreachable server fails the waiting client with 08001.
        """
        d = self.pools.acquire(self.key, {})
        self.connects[0][1].errback(ConnectionRefusedError())
        failure = self.failureResultOf(d, BackendError)
        self.assertEqual(failure.value.error.code, "08001")
