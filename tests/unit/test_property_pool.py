"""
The pool set (L{pgtwist.pool.poolset.PoolSet}) as a Hypothesis state
machine: clients acquire, release, discard and abandon backends of two
pools; logins succeed or fail (failing over to a standby); resets and
settings succeed, fail or never come back; backends die; waiters cancel;
time passes on a C{task.Clock} (blocking and idle timeouts); the
configuration is reloaded and backends flushed, in any order. After every
step:

 - every backend is in exactly one state, the one its record says, and
   counted once (C{total});
 - no backend is lent to two clients, and every backend lent is one a
   client holds;
 - no waiter is lost: every client still waiting is queued (or its
   backend's settings are being applied), none past its blocking timeout,
   and none while its pool has an idle backend.

A failure prints the shrunk sequence of steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from pgtwist.config.model import Configuration, MainSettings, PoolKey, ServerSettings, UserEntry
from pgtwist.interfaces import IBackendLink, IPooledConnection, PoolTimeout
from pgtwist.net.backend import BackendError, BackendGone
from pgtwist.pool.poolset import BackendState, PoolSet
from pgtwist.testing import FakePooledConnection
from pgtwist.wire import constants, errors
from tests.unit._hypothesis import examples

SERVERS = (
    ServerSettings("primary", "127.0.0.1", 5432, True),
    ServerSettings("standby", "127.0.0.2", 5432),
)
KEYS: list[PoolKey] = [("db", "alice"), ("other", "alice")]


@dataclass(eq=False)
class Client:
    """
    One acquire and what came of it.

    @ivar deadline: When its blocking timeout runs out (C{None}: none).
    @ivar outcome: The backend, or the failure's exception, once fired.
    """

    key: PoolKey
    deferred: Deferred[IBackendLink]
    deadline: float | None
    fired: bool = False
    outcome: object = None
    holding: IBackendLink | None = field(default=None, repr=False)


class PoolSetMachine(RuleBasedStateMachine):
    """
    Drive a L{PoolSet} over fake backends and check its bookkeeping.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.connects: list[tuple[FakePooledConnection, Deferred[IPooledConnection]]] = []
        self.clients: list[Client] = []
        self.maxConnections = 3
        self.pools = PoolSet(self.configuration(3, 5.0, 10.0, "off"), self.clock, [], self.connect)
        self.unexpected: list[Failure] = []
        self.cancels: list[tuple[str, int]] = []
        self.pools.sendCancel = lambda server, pid, key: self.cancels.append((server.name, pid))

    def configuration(
        self, maxConnections: int, blocking: float, idle: float, validation: str
    ) -> Configuration:
        """
        The configuration: two servers, failover on, one retry.
        """
        main = MainSettings(
            maxConnections=maxConnections,
            blockingTimeout=blocking,
            idleTimeout=idle,
            validation=validation,
            failover=True,
            maxRetries=1,
        )
        return Configuration(main=main, servers=SERVERS, users={"alice": UserEntry("alice", "pw")})

    def connect(
        self, server: ServerSettings, key: PoolKey, password: object
    ) -> tuple[IPooledConnection, Deferred[IPooledConnection]]:
        """
        The connector: the machine completes or fails each login.
        """
        backend = FakePooledConnection(key, 1000 + len(self.connects), server)
        d: Deferred[IPooledConnection] = Deferred()
        self.connects.append((backend, d))
        return backend, d

    # -- what the machine can pick ------------------------------------------

    def pendingLogins(self) -> list[tuple[FakePooledConnection, Deferred[IPooledConnection]]]:
        """
        Logins not finished.
        """
        return [(b, d) for b, d in self.connects if not d.called]

    def pendingQueries(self) -> list[tuple[str, Deferred[object]]]:
        """
        Queries (resets, settings) not answered, of backends still connected.
        """
        return [
            (sql, d)
            for b, _ in self.connects
            for sql, d in b.queries
            if not d.called and b.connected
        ]

    def holders(self) -> list[Client]:
        """
        Clients holding a backend.
        """
        return [c for c in self.clients if c.holding is not None]

    def waiting(self) -> list[Client]:
        """
        Clients whose acquire has not fired.
        """
        return [c for c in self.clients if not c.fired]

    def live(self) -> list[FakePooledConnection]:
        """
        Backends connected, logged in or not.
        """
        return [b for b, _ in self.connects if b.connected]

    # -- rules -----------------------------------------------------------------

    @rule(
        key=st.sampled_from(KEYS),
        parameters=st.sampled_from([None, {}, {"application_name": "x"}, {"options": "-X"}]),
    )
    def acquire(self, key: PoolKey, parameters: dict[str, str] | None) -> None:
        """
        A client asks for a backend (C{None}: the transaction pipeline's
        fast path first), with settings to apply (C{-X}: options pgtwist
        refuses once it has a backend).
        """
        timeout = self.pools.config.main.blockingTimeout
        deadline = self.clock.seconds() + timeout if timeout > 0 else None
        client = Client(key, self.pools.acquire(key, parameters), deadline)
        self.clients.append(client)
        client.deferred.addCallbacks(self._got, self._failed, (client,), None, (client,))

    def _got(self, backend: IBackendLink, client: Client) -> None:
        client.fired = True
        client.outcome = backend
        for other in self.holders():
            assert other.holding is not backend, f"{backend} lent to two clients"
        client.holding = backend

    def _failed(self, reason: Failure, client: Client) -> None:
        client.fired = True
        client.outcome = reason.value
        # ConnectionError: the backend was lost while the client's settings
        # were applied, and the client hears why.
        if not reason.check(
            PoolTimeout, BackendError, BackendGone, CancelledError, ConnectionError
        ):
            self.unexpected.append(reason)

    @precondition(lambda self: self.pendingLogins())
    @rule(data=st.data(), how=st.sampled_from(["ok", "refused", "fatal"]))
    def login(self, data: st.DataObject, how: str) -> None:
        """
        A pending login completes, cannot connect (retries, failover) or
        is refused by PostgreSQL. One whose connection was closed meanwhile
        fails, as the real one does when its connection is lost.
        """
        backend, d = data.draw(st.sampled_from(self.pendingLogins()))
        if backend.closing:
            d.errback(ConnectionDone())
        elif how == "ok":
            d.callback(backend)
        elif how == "refused":
            backend.connected = False
            d.errback(ConnectionRefusedError())
        else:
            backend.connected = False
            d.errback(BackendError(errors.fatal("3D000", 'database "db" does not exist')))
        # Whatever the pool did with the login's outcome raised nothing.
        d.addErrback(self.unexpected.append)

    @precondition(lambda self: self.pendingQueries())
    @rule(data=st.data(), how=st.sampled_from(["ok", "error", "lost"]))
    def answer(self, data: st.DataObject, how: str) -> None:
        """
        PostgreSQL answers a reset or the settings of a backend: fine, with
        an error, or the connection breaks.
        """
        sql, d = data.draw(st.sampled_from(self.pendingQueries()))
        # Whatever the pool did with the answer raised nothing: an error
        # there would only be logged, as unhandled, by the real backend.
        if how == "ok":
            d.callback(None)
        elif how == "error":
            d.callback(errors.error("22023", "invalid value"))
        else:
            d.errback(BackendGone())
        d.addErrback(self.unexpected.append)

    @precondition(lambda self: self.holders())
    @rule(data=st.data(), how=st.sampled_from(["release", "keep", "dirty", "discard", "abandon"]))
    def giveBack(self, data: st.DataObject, how: str) -> None:
        """
        A client gives its backend back: released (reset or not), released
        inside a transaction, discarded or abandoned.
        """
        client = data.draw(st.sampled_from(self.holders()))
        backend = client.holding
        assert backend is not None
        client.holding = None
        if how == "release":
            self.pools.release(backend)
        elif how == "keep":
            self.pools.release(backend, reset=False)
        elif how == "dirty":
            backend.transactionStatus = constants.TRANSACTION_IN_BLOCK
            self.pools.release(backend)
            backend.transactionStatus = constants.TRANSACTION_IDLE
        elif how == "discard":
            self.pools.discard(backend, "the client says so")
        else:
            self.pools.abandon(backend)

    @precondition(lambda self: self.live())
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        """
        A backend's connection breaks, whatever it was doing.
        """
        backend = data.draw(st.sampled_from(self.live()))
        backend.lose()

    @precondition(lambda self: self.waiting())
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        """
        A waiting client goes away.
        """
        data.draw(st.sampled_from(self.waiting())).deferred.cancel()

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 5.0, 11.0]))
    def advance(self, seconds: float) -> None:
        """
        Time passes: retries, blocking and idle timeouts.
        """
        self.clock.advance(seconds)

    @rule(
        maxConnections=st.integers(1, 4),
        blocking=st.sampled_from([0.0, 2.0, 5.0]),
        idle=st.sampled_from([0.0, 3.0, 10.0]),
        validation=st.sampled_from(["off", "foreground"]),
    )
    def reload(self, maxConnections: int, blocking: float, idle: float, validation: str) -> None:
        """
        SIGHUP: new limits, timeouts and validation.
        """
        self.maxConnections = max(self.maxConnections, maxConnections)
        self.pools.reconfigure(self.configuration(maxConnections, blocking, idle, validation))

    @rule(mode=st.sampled_from(["idle", "gracefully", "all"]))
    def flush(self, mode: str) -> None:
        """
        The operator flushes backends.
        """
        self.pools.flush(mode, None)

    @rule(name=st.sampled_from(["primary", "standby"]))
    def switchTo(self, name: str) -> None:
        """
        The operator switches the primary.
        """
        self.pools.servers.switchTo(name)

    # -- invariants ------------------------------------------------------------

    @invariant()
    def oneStateEach(self) -> None:
        """
        Every backend is in exactly one state, the one its record says,
        and counted once.
        """
        seen: dict[int, BackendState] = {}
        live = 0
        for pool in self.pools.pools.values():
            for state, entries in pool.backends.items():
                for entry in entries:
                    assert id(entry) not in seen, (
                        f"{entry.backend} in {seen[id(entry)]} and {state}"
                    )
                    seen[id(entry)] = state
                    assert entry.state is state, f"{entry.backend}: {entry.state} in {state}'s set"
                    assert state is not BackendState.CLOSED, f"{entry.backend} kept closed"
                    assert entry.backend.key == pool.key
                    assert self.pools.entryFor(entry.backend) is entry
                    live += 1
            idle = pool.idle
            assert len(idle) == len(set(map(id, idle))), f"{pool.key}: an idle backend twice"
            assert set(map(id, idle)) == set(map(id, pool.backends[BackendState.IDLE]))
        assert live == self.pools.total, f"total {self.pools.total}, {live} backends"
        assert live == len(self.pools._entries)
        assert self.pools.total <= self.maxConnections, f"{self.pools.total} backends"

    @invariant()
    def lentOnce(self) -> None:
        """
        The backends the pool counts as lent are exactly those clients
        hold (and that are still open).
        """
        active = {
            id(entry.backend)
            for pool in self.pools.pools.values()
            for entry in pool.backends[BackendState.ACTIVE]
        }
        held = [c.holding for c in self.holders()]
        assert len(held) == len(set(map(id, held))), "a backend held twice"
        open = {id(b) for b in held if self.pools.entryFor(b) is not None}
        assert active == open, f"lent {active}, held {open}"
        for backend in held:
            entry = self.pools.entryFor(backend)
            assert entry is None or entry.state is BackendState.ACTIVE

    @invariant()
    def noWaiterLost(self) -> None:
        """
        Every client still waiting is queued in its pool, or its backend's
        settings are on their way (at most one such client per unanswered
        query); none is queued past its blocking timeout, nor while its
        pool has an idle backend to give.
        """
        assert not self.unexpected, self.unexpected[0].getTraceback()
        queued = {
            id(waiter.deferred): pool
            for pool in self.pools.pools.values()
            for waiter in pool.waiters
        }
        preparing = 0
        now = self.clock.seconds()
        for client in self.waiting():
            pool = queued.get(id(client.deferred))
            if pool is None:
                preparing += 1
                continue
            assert pool.key == client.key
            assert client.deadline is None or now < client.deadline, f"{client} waited too long"
        assert preparing <= len(self.pendingQueries()), f"{preparing} clients lost"
        for pool in self.pools.pools.values():
            assert not (pool.waiters and pool.idle and not pool.paused), f"{pool.key} idles"


class PoolSetMachineTests(PoolSetMachine.TestCase):  # type: ignore[misc,valid-type]
    """
    Acquire, release, discard, timeouts, reloads and failover in any order.
    """

    settings = settings(
        max_examples=examples(120),
        stateful_step_count=40,
        suppress_health_check=[HealthCheck.too_slow],
    )
