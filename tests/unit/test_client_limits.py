"""
Tests for PgBouncer's limits and timeouts: the keys of the main section and
of the databases file (L{pgtwist.config.limits.clientLimits}), the client
limits a login is checked against, C{query_wait_timeout} and
C{query_wait_notify}, the timeouts the janitor enforces, the reserve pool
and C{server_connect_timeout}. On a C{MemoryReactorClock} or a
C{task.Clock}: no sockets, no sleeping.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.app.workers import _shareClientLimits
from pgtwist.config.errors import ConfigError
from pgtwist.config.limits import ClientLimits, clientLimits
from pgtwist.config.loader import loadConfiguration
from pgtwist.config.model import Configuration, DatabaseLimit, MainSettings, PoolKey
from pgtwist.interfaces import (
    SESSION_IDLE,
    SESSION_IDLE_IN_TRANSACTION,
    SESSION_RUNNING,
    IBackendLink,
    PoolTimeout,
)
from pgtwist.net.frontend import FrontendProtocol
from pgtwist.pipelines.session import SessionPipeline
from pgtwist.pool.janitor import WAIT_NOTICE
from pgtwist.pool.state import BackendState
from pgtwist.testing import FakeBackendPool, FakeFrontendLink
from pgtwist.wire import codec
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import CommandComplete, ErrorResponse, NoticeResponse, Query
from tests.unit._console import makeConfiguration
from tests.unit._pipelinescript import TransactionScript, fromClient, fromServer, ready
from tests.unit.test_frontend import FrontendTestCase
from tests.unit.test_frontend import makeConfiguration as frontendConfiguration
from tests.unit.test_janitor import JanitorTestCase


def loadFiles(main: str, databases: str = "") -> Configuration:
    """
    A configuration read from a main file with C{main} in its main section
    and a databases file holding C{databases}.
    """
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "pgtwist.conf")
        with open(path, "w") as f:
            f.write(
                f"[pgtwist]\nhost = localhost\nport = 2345\n{main}\n[primary]\nhost = db\nport = 5432\n"
            )
        limitsPath = os.path.join(directory, "pgtwist_databases.conf")
        with open(limitsPath, "w") as f:
            f.write(databases)
        return loadConfiguration(path, limitsPath=limitsPath, warn=lambda message: None)


class ConfigurationTests(SynchronousTestCase):
    """
    The keys, with PgBouncer's names, in the main section and as
    C{key=value} words of the databases file.
    """

    def test_defaults(self) -> None:
        """
        Off by default, as in PgBouncer, except C{query_wait_notify} (5 s),
        C{reserve_pool_timeout} (5 s) and C{server_connect_timeout} (15 s);
        no C{query_wait_timeout} leaves C{blocking_timeout} in charge.
        """
        main = MainSettings()
        self.assertEqual(
            (
                main.transactionTimeout,
                main.idleTransactionTimeout,
                main.queryTimeout,
                main.queryWaitTimeout,
                main.queryWaitNotify,
                main.clientIdleTimeout,
                main.maxUserClientConnections,
                main.maxDbClientConnections,
                main.reservePoolSize,
                main.reservePoolTimeout,
                main.serverConnectTimeout,
            ),
            (0.0, 0.0, 0.0, None, 5.0, 0.0, 0, 0, 0, 5.0, 15.0),
        )

    def test_mainKeys(self) -> None:
        """
        Every key is read from the main section, durations in any unit.
        """
        main = loadFiles(
            "transaction_timeout = 1m\nidle_transaction_timeout = 30\nquery_timeout = 500ms\n"
            "query_wait_timeout = 120\nquery_wait_notify = 0\nclient_idle_timeout = 1h\n"
            "max_user_client_connections = 7\nmax_db_client_connections = 8\n"
            "reserve_pool_size = 3\nreserve_pool_timeout = 2\nserver_connect_timeout = 4"
        ).main
        self.assertEqual(
            (
                main.transactionTimeout,
                main.idleTransactionTimeout,
                main.queryTimeout,
                main.queryWaitTimeout,
                main.queryWaitNotify,
                main.clientIdleTimeout,
                main.maxUserClientConnections,
                main.maxDbClientConnections,
                main.reservePoolSize,
                main.reservePoolTimeout,
                main.serverConnectTimeout,
            ),
            (60.0, 30.0, 0.5, 120.0, 0.0, 3600.0, 7, 8, 3, 2.0, 4.0),
        )

    def test_badValues(self) -> None:
        """
        A negative duration or count is refused, naming the key.
        """
        with self.assertRaises(ConfigError) as caught:
            loadFiles("query_timeout = -1")
        self.assertIn("query_timeout", str(caught.exception))
        self.assertRaises(ConfigError, loadFiles, "max_db_client_connections = -2")

    def test_databasesFileWords(self) -> None:
        """
        The databases file takes the per-database and per-user keys as
        C{key=value} words after its columns.
        """
        config = loadFiles(
            "",
            "app all 10 0 0 query_wait_timeout=3 max_db_client_connections=20 "
            "reserve_pool_size=2\n"
            "all alice 5 idle_transaction_timeout=10s max_user_client_connections=4\n",
        )
        app, alice = config.limits
        self.assertEqual(
            (app.queryWaitTimeout, app.maxDbClientConnections, app.reservePoolSize),
            (3.0, 20, 2),
        )
        self.assertEqual((alice.idleTransactionTimeout, alice.maxUserClientConnections), (10.0, 4))
        self.assertIsNone(alice.queryTimeout)

    def test_databasesFileNotSet(self) -> None:
        """
        C{-1} is PgBouncer's "not set" for the counts of a databases-file
        line: a less specific line, or the main section, decides. The size
        columns still refuse it, as pgagroal does.
        """
        config = loadFiles(
            "max_user_client_connections = 9\nreserve_pool_size = 1",
            "all all all reserve_pool_size=4\n"
            "app alice 5 reserve_pool_size=-1 max_db_client_connections=-1 "
            "max_user_client_connections=-1\n",
        )
        alice = config.limits[1]
        self.assertEqual(
            (alice.reservePoolSize, alice.maxDbClientConnections, alice.maxUserClientConnections),
            (None, None, None),
        )
        bounds = clientLimits(config, ("app", "alice"))
        self.assertEqual((bounds.reservePoolSize, bounds.maxUserClientConnections), (4, 9))
        for line in ("app all -1\n", "app all 5 -1\n", "app all 5 0 -1\n"):
            self.assertRaises(ConfigError, loadFiles, "", line)
        self.assertRaises(ConfigError, loadFiles, "", "app all 5 reserve_pool_size=-2\n")

    def test_databasesFileWrongLine(self) -> None:
        """
        C{max_db_client_connections} counts a database's clients, so it goes
        on a C{DATABASE all} line; C{max_user_client_connections} on an
        C{all USER} line; a bad value names its key.
        """
        with self.assertRaises(ConfigError) as caught:
            loadFiles("", "app alice 5 max_db_client_connections=3\n")
        self.assertIn("USER is all", str(caught.exception))
        with self.assertRaises(ConfigError) as caught:
            loadFiles("", "app alice 5 max_user_client_connections=3\n")
        self.assertIn("DATABASE is all", str(caught.exception))
        with self.assertRaises(ConfigError) as caught:
            loadFiles("", "app all 5 query_timeout=soon\n")
        self.assertIn("query_timeout", str(caught.exception))


class ClientLimitsTests(SynchronousTestCase):
    """
    L{clientLimits}: the most specific line that sets a key wins, the user's
    before the database's, else the main section's value.
    """

    def config(self, *limits: DatabaseLimit, **main: object) -> Configuration:
        """
        A configuration with these databases-file lines and main settings.
        """
        return Configuration(main=MainSettings(**main), limits=limits)  # type: ignore[arg-type]

    def test_mainOnly(self) -> None:
        """
        Without lines, the main section's values.
        """
        limits = clientLimits(self.config(queryTimeout=9.0, queryWaitTimeout=2.0), ("db", "bob"))
        self.assertEqual(limits, ClientLimits(queryTimeout=9.0, queryWaitTimeout=2.0))
        self.assertTrue(limits.transactional)
        self.assertFalse(ClientLimits(clientIdleTimeout=3.0).transactional)

    def test_order(self) -> None:
        """
        The exact pair, then C{all USER}, then C{DATABASE all}, then
        C{all all}: each key from the first line that sets it.
        """
        config = self.config(
            DatabaseLimit("all", "all", None, queryTimeout=1.0, clientIdleTimeout=1.0),
            DatabaseLimit("db", "all", 5, queryTimeout=2.0, transactionTimeout=2.0),
            DatabaseLimit("all", "bob", 5, queryTimeout=3.0),
            DatabaseLimit("db", "bob", 5, reservePoolSize=4),
            idleTransactionTimeout=7.0,
        )
        self.assertEqual(
            clientLimits(config, ("db", "bob")),
            ClientLimits(
                queryTimeout=3.0,
                transactionTimeout=2.0,
                clientIdleTimeout=1.0,
                idleTransactionTimeout=7.0,
                reservePoolSize=4,
            ),
        )
        self.assertEqual(clientLimits(config, ("other", "carol")).queryTimeout, 1.0)

    def test_clientCounts(self) -> None:
        """
        A database's client limit comes from its C{DATABASE all} line (or
        C{all all}), a user's from its C{all USER} line (or C{all all}).
        """
        config = self.config(
            DatabaseLimit("db", "all", 5, maxDbClientConnections=3),
            DatabaseLimit("all", "bob", 5, maxUserClientConnections=2),
            maxDbClientConnections=50,
            maxUserClientConnections=60,
        )
        self.assertEqual(clientLimits(config, ("db", "bob")).maxDbClientConnections, 3)
        self.assertEqual(clientLimits(config, ("db", "bob")).maxUserClientConnections, 2)
        self.assertEqual(clientLimits(config, ("x", "carol")).maxDbClientConnections, 50)
        self.assertEqual(clientLimits(config, ("x", "carol")).maxUserClientConnections, 60)


class ClientConnectionLimitTests(FrontendTestCase):
    """
    C{max_db_client_connections} and C{max_user_client_connections}: a
    client past either is refused at startup as PgBouncer refuses it.
    """

    def test_perDatabase(self) -> None:
        """
        The client beyond the database's limit gets PgBouncer's FATAL 08P01,
        whatever its user; another database's clients are not counted.
        """
        self.factory.config = frontendConfiguration(maxDbClientConnections=1)
        self.startup()
        self.replies()
        self.protocol = self.connect()
        self.startup(database="other")
        self.replies()
        self.protocol = self.connect()
        self.startup(user="bob")
        self.assertFatal("08P01", "client connections exceeded (max_db_client_connections)")

    def test_perUser(self) -> None:
        """
        The client beyond the user's limit is refused, whatever its
        database; a databases-file line sets the user's own limit.
        """
        config = frontendConfiguration()
        self.factory.config = dataclasses.replace(
            config, limits=(DatabaseLimit("all", "alice", None, maxUserClientConnections=1),)
        )
        self.startup()
        self.replies()
        self.protocol = self.connect()
        self.startup(user="bob")
        self.replies()
        self.protocol = self.connect()
        self.startup(database="other")
        self.assertFatal("08P01", "client connections exceeded (max_user_client_connections)")

    def test_roomAfterDisconnect(self) -> None:
        """
        Once a client leaves, the next one of its database gets in.
        """
        self.factory.config = frontendConfiguration(maxDbClientConnections=1)
        self.startup()
        self.replies()
        self.protocol.connectionLost()
        self.protocol = self.connect()
        self.startup()
        replies = self.replies()
        self.assertFalse(any(isinstance(r, ErrorResponse) for r in replies), replies)


class QueryWaitTimeoutTests(JanitorTestCase):
    """
    C{query_wait_timeout}: a client that waited that long for a backend is
    ended with PgBouncer's error; without it, C{blocking_timeout} governs.
    """

    def waitFor(self, key: PoolKey = ("db", "bob")) -> Deferred[IBackendLink]:
        """
        Take every backend the budget allows, then ask for one more.
        """
        pools = self.service.pools
        while pools.total < pools.config.main.maxConnections:
            self.activeBackend(key)
        return pools.acquire(key, None)

    def test_timesOut(self) -> None:
        """
        The waiter fails with a L{PoolTimeout} naming C{query_wait_timeout},
        at that time, not C{blocking_timeout}'s.
        """
        self.configure(queryWaitTimeout=2.0, blockingTimeout=30.0, maxConnections=1)
        d = self.waitFor()
        failures: list[Failure] = []
        d.addErrback(failures.append)
        self.reactor.advance(1.9)
        self.assertEqual(failures, [])
        self.reactor.advance(0.2)
        [failure] = failures
        assert isinstance(failure.value, PoolTimeout)
        self.assertEqual(failure.value.setting, "query_wait_timeout")

    def test_perDatabase(self) -> None:
        """
        A databases-file line's C{query_wait_timeout} wins over the main
        section's (and over C{blocking_timeout}).
        """
        config = makeConfiguration(blockingTimeout=30.0, maxConnections=1)
        line = dataclasses.replace(config.limits[0], queryWaitTimeout=1.0)
        self.service.reconfigure(dataclasses.replace(config, limits=(line,)))
        failures: list[Failure] = []
        self.waitFor().addErrback(failures.append)
        self.reactor.advance(1.1)
        self.assertEqual(len(failures), 1)

    def test_blockingTimeoutWithout(self) -> None:
        """
        Without C{query_wait_timeout}, C{blocking_timeout} ends the wait,
        with its own name.
        """
        self.configure(blockingTimeout=3.0, maxConnections=1)
        failures: list[Failure] = []
        self.waitFor().addErrback(failures.append)
        self.reactor.advance(3.1)
        [failure] = failures
        assert isinstance(failure.value, PoolTimeout)
        self.assertEqual(failure.value.setting, "blocking_timeout")

    def test_clientError(self) -> None:
        """
        The client hears PgBouncer's words: FATAL 08P01 C{query_wait_timeout}.
        """
        client = self.client()
        client.failFromPool(Failure(PoolTimeout("query_wait_timeout")))
        [error] = decoded(client)
        assert isinstance(error, ErrorResponse)
        self.assertEqual(
            (error.severity, error.code, error.message), ("FATAL", "08P01", "query_wait_timeout")
        )


def decoded(client: FrontendProtocol) -> list[object]:
    """
    What C{client} was sent, decoded, and cleared.
    """
    transport = client.transport
    data = transport.value()  # type: ignore[attr-defined]
    transport.clear()  # type: ignore[attr-defined]
    return [codec.decodeBackend(t, b) for t, b in MessageFramer().feed(data)]


class FakeSession:
    """
    A pipeline session whose L{timeoutState} the test sets.
    """

    def __init__(self) -> None:
        self.state: tuple[int, float, float] = (SESSION_IDLE, 0.0, 0.0)
        self.waiting = False

    def waitingForBackend(self) -> bool:
        """
        Whether the test made it wait.
        """
        return self.waiting

    def busy(self) -> bool:
        """
        Busy unless idle.
        """
        return self.state[0] != SESSION_IDLE

    def timeoutState(self) -> tuple[int, float, float]:
        """
        What the test set.
        """
        return self.state

    def frontendDataReceived(self, data: bytes) -> None:
        """
        Nothing to relay.
        """
        pass


class TimeoutTests(JanitorTestCase):
    """
    The timeouts the janitor enforces, each ending the client with
    PgBouncer's reason as a FATAL 08P01.
    """

    def setUp(self) -> None:
        super().setUp()
        self.session = FakeSession()
        self.target = self.client()
        self.target.session = self.session  # type: ignore[assignment]
        self.target.transport.clear()  # type: ignore[union-attr]

    def round(self, seconds: float = 0.0) -> None:
        """
        Let C{seconds} pass, then run one janitor round.
        """
        self.reactor.advance(seconds)
        self.service.janitor.runOnce()

    def assertEnded(self, reason: str | None) -> None:
        """
        The client was ended with C{reason}, or not at all (C{None}).
        """
        messages = decoded(self.target)
        transport = self.target.transport
        if reason is None:
            self.assertFalse(transport.disconnecting)  # type: ignore[union-attr]
            self.assertFalse([m for m in messages if isinstance(m, ErrorResponse)])
            return
        errorsSent = [m for m in messages if isinstance(m, ErrorResponse)]
        self.assertEqual(
            [(e.severity, e.code, e.message) for e in errorsSent], [("FATAL", "08P01", reason)]
        )
        self.assertTrue(transport.disconnecting)  # type: ignore[union-attr]

    def test_clientIdleTimeout(self) -> None:
        """
        A client with no transaction that sent nothing for
        C{client_idle_timeout} is ended; one that spoke since is not.
        """
        self.configure(clientIdleTimeout=10.0)
        self.round(9.5)
        self.assertEnded(None)
        self.target.dataReceived(b"")
        self.round(9.5)
        self.assertEnded(None)
        self.round(1.0)
        self.assertEnded("client_idle_timeout")

    def test_clientIdleSparesTransactions(self) -> None:
        """
        C{client_idle_timeout} leaves a client inside a transaction alone.
        """
        self.configure(clientIdleTimeout=1.0)
        self.session.state = (SESSION_IDLE_IN_TRANSACTION, 0.0, 0.0)
        self.round(5.0)
        self.assertEnded(None)

    def test_queryTimeout(self) -> None:
        """
        A request running longer than C{query_timeout} (from the time the
        session gives) ends the client with PgBouncer's C{query timeout}.
        """
        self.configure(queryTimeout=5.0)
        self.session.state = (SESSION_RUNNING, self.reactor.seconds(), self.reactor.seconds())
        self.round(4.9)
        self.assertEnded(None)
        self.round(0.2)
        self.assertEnded("query timeout")

    def test_queryTimeoutFromLastMessage(self) -> None:
        """
        Where the session knows no start, the client's last message stands
        for it.
        """
        self.configure(queryTimeout=5.0)
        self.session.state = (SESSION_RUNNING, 1.0, 0.0)
        self.round(3.0)
        self.target.dataReceived(b"")
        self.round(4.0)
        self.assertEnded(None)
        self.round(1.1)
        self.assertEnded("query timeout")

    def test_idleTransactionTimeout(self) -> None:
        """
        Idle in a transaction past C{idle_transaction_timeout}, from when
        the session says it went idle.
        """
        self.configure(idleTransactionTimeout=3.0)
        self.round(10.0)
        now = self.reactor.seconds()
        self.session.state = (SESSION_IDLE_IN_TRANSACTION, now - 8.0, now - 1.0)
        self.round(1.9)
        self.assertEnded(None)
        self.round(0.2)
        self.assertEnded("idle transaction timeout")

    def test_idleTransactionSeen(self) -> None:
        """
        Where the session does not know when it went idle, the first round
        that saw it so counts, and a message since starts again.
        """
        self.configure(idleTransactionTimeout=3.0)
        self.session.state = (SESSION_IDLE_IN_TRANSACTION, 1.0, 0.0)
        self.round(100.0)
        self.assertEnded(None)
        self.round(2.0)
        self.target.dataReceived(b"")
        self.round(2.0)
        self.assertEnded(None)
        self.round(2.0)
        self.assertEnded(None)
        self.round(1.5)
        self.assertEnded("idle transaction timeout")

    def test_transactionTimeout(self) -> None:
        """
        A transaction open longer than C{transaction_timeout}, running or
        idle, ends the client.
        """
        self.configure(transactionTimeout=10.0)
        start = self.reactor.seconds()
        self.session.state = (SESSION_RUNNING, start, start)
        self.round(6.0)
        self.session.state = (SESSION_IDLE_IN_TRANSACTION, start, self.reactor.seconds())
        self.round(3.9)
        self.assertEnded(None)
        self.round(0.2)
        self.assertEnded("transaction timeout")

    def test_perUserLine(self) -> None:
        """
        An C{all USER} line's timeout wins over the main section's.
        """
        config = makeConfiguration(idleTransactionTimeout=100.0)
        line = DatabaseLimit("all", "alice", None, idleTransactionTimeout=2.0)
        self.service.reconfigure(dataclasses.replace(config, limits=(line,) + config.limits))
        now = self.reactor.seconds()
        self.session.state = (SESSION_IDLE_IN_TRANSACTION, now, now)
        self.round(2.5)
        self.assertEnded("idle transaction timeout")

    def test_reloadApplies(self) -> None:
        """
        A reload changes the limits of connected clients too.
        """
        self.session.state = (SESSION_RUNNING, self.reactor.seconds(), self.reactor.seconds())
        self.round(50.0)
        self.assertEnded(None)
        self.configure(queryTimeout=30.0)
        self.round()
        self.assertEnded("query timeout")

    def test_off(self) -> None:
        """
        With every timeout off, nobody is ended.
        """
        self.session.state = (SESSION_IDLE_IN_TRANSACTION, 1.0, 1.0)
        self.round(86400.0)
        self.assertEnded(None)

    def test_waitNotify(self) -> None:
        """
        A client queued longer than C{query_wait_notify} gets PgBouncer's
        NOTICE, once while it waits, again on a later wait (which starts
        with a new request), seen by a round or not.
        """
        self.configure(queryWaitNotify=5.0)
        self.session.waiting = True
        self.patch(self.service.pools, "hasWaiters", lambda: True)
        self.round(4.0)
        self.assertEqual(decoded(self.target), [])
        self.round(2.0)
        [notice] = decoded(self.target)
        assert isinstance(notice, NoticeResponse)
        self.assertEqual(notice.fields, ((b"S", "NOTICE"), (b"C", "00000"), (b"M", WAIT_NOTICE)))
        self.round(10.0)
        self.assertEqual(decoded(self.target), [])
        # Served and waiting again between two rounds: a new request.
        self.target.dataReceived(b"")
        self.round(4.0)
        self.assertEqual(decoded(self.target), [])
        self.round(2.0)
        self.assertEqual(len(decoded(self.target)), 1)
        self.session.waiting = False
        self.round()
        self.session.waiting = True
        self.target.dataReceived(b"")
        self.round(6.0)
        self.assertEqual(len(decoded(self.target)), 1)

    def test_waitNotifyOff(self) -> None:
        """
        C{query_wait_notify = 0} sends no NOTICE.
        """
        self.configure(queryWaitNotify=0.0)
        self.session.waiting = True
        self.patch(self.service.pools, "hasWaiters", lambda: True)
        self.round(60.0)
        self.assertEqual(decoded(self.target), [])

    def test_noWaiterNoLook(self) -> None:
        """
        With no timeout set and no client waiting in any pool, the janitor
        does not look at the clients at all.
        """
        self.session.waiting = True
        self.patch(self.service.pools, "hasWaiters", lambda: False)
        self.patch(self.session, "timeoutState", lambda: self.fail("looked"))
        self.patch(self.session, "waitingForBackend", lambda: self.fail("looked"))
        self.round(60.0)
        self.assertEqual(decoded(self.target), [])

    def test_hasWaiters(self) -> None:
        """
        L{PoolSet.hasWaiters} says whether a client waits in a pool.
        """
        self.configure(maxConnections=1)
        pools = self.service.pools
        self.assertFalse(pools.hasWaiters())
        self.activeBackend(("db", "bob"))
        d = pools.acquire(("db", "bob"), None)
        self.assertTrue(pools.hasWaiters())
        d.cancel()
        d.addErrback(lambda f: None)
        self.assertFalse(pools.hasWaiters())

    def test_queryTimeoutWhileWaiting(self) -> None:
        """
        A client waiting for a backend longer than C{query_timeout} is
        ended with PgBouncer's C{query_timeout}.
        """
        self.configure(queryTimeout=5.0, queryWaitNotify=0.0)
        self.session.waiting = True
        self.round(5.5)
        self.assertEnded("query_timeout")


class ReservePoolTests(JanitorTestCase):
    """
    C{reserve_pool_size} and C{reserve_pool_timeout}: a pool whose line is
    full opens more backends for a client that waited long enough.
    """

    def test_reserve(self) -> None:
        """
        Past C{reserve_pool_timeout}, the next janitor round opens a backend
        beyond the line's size, up to C{reserve_pool_size}.
        """
        config = makeConfiguration(maxConnections=10, reservePoolTimeout=2.0)
        line = dataclasses.replace(config.limits[0], maxSize=1, reservePoolSize=1)
        self.service.reconfigure(dataclasses.replace(config, limits=(line,)))
        pools = self.service.pools
        self.activeBackend(("db", "bob"))
        connects = len(self.connects)
        first = pools.acquire(("db", "bob"), None)
        pools.acquire(("db", "bob"), None)
        self.service.janitor.runOnce()
        self.assertEqual(len(self.connects), connects)
        self.reactor.advance(2.0)
        self.service.janitor.runOnce()
        self.assertEqual(len(self.connects), connects + 1)
        self.reactor.advance(2.0)
        self.service.janitor.runOnce()
        self.assertEqual(len(self.connects), connects + 1)
        self.assertFalse(first.called)

    def test_noReserve(self) -> None:
        """
        Without C{reserve_pool_size}, the line's size holds however long a
        client waits.
        """
        config = makeConfiguration(maxConnections=10, reservePoolTimeout=2.0)
        line = dataclasses.replace(config.limits[0], maxSize=1)
        self.service.reconfigure(dataclasses.replace(config, limits=(line,)))
        self.activeBackend(("db", "bob"))
        connects = len(self.connects)
        self.service.pools.acquire(("db", "bob"), None)
        self.reactor.advance(60.0)
        self.service.janitor.runOnce()
        self.assertEqual(len(self.connects), connects)


class ServerConnectTimeoutTests(JanitorTestCase):
    """
    C{server_connect_timeout}: a backend not logged in by then is closed.
    """

    def test_closed(self) -> None:
        """
        A backend still connecting after C{server_connect_timeout} is
        closed; one logged in in time is not.
        """
        self.configure(serverConnectTimeout=3.0)
        pools = self.service.pools
        pools.openBackend(pools.pool(("db", "bob")))
        [entry] = pools.pool(("db", "bob")).backends[BackendState.CONNECTING]
        self.reactor.advance(2.9)
        self.assertFalse(entry.backend.closing)
        self.reactor.advance(0.2)
        self.assertTrue(entry.backend.closing)


class ConsoleTests(JanitorTestCase):
    """
    The limits in the admin console: SHOW CONFIG, SHOW DATABASES and SHOW
    USERS, in PgBouncer's columns.
    """

    def setUp(self) -> None:
        super().setUp()
        config = makeConfiguration(queryTimeout=2.5, maxUserClientConnections=9)
        lines = (
            dataclasses.replace(config.limits[0], reservePoolSize=3, maxDbClientConnections=40),
            DatabaseLimit("all", "alice", None, reservePoolSize=2, maxUserClientConnections=4),
        )
        self.service.reconfigure(dataclasses.replace(config, limits=lines))

    def test_config(self) -> None:
        """
        SHOW CONFIG has every key with its value and default, changeable.
        """
        rows = {row[0]: row[1:] for row in self.one("SHOW CONFIG").rows}
        self.assertEqual(rows["query_timeout"], ("2.5", "0", "yes"))
        self.assertEqual(rows["max_user_client_connections"], ("9", "0", "yes"))
        self.assertEqual(rows["query_wait_timeout"], ("", "", "yes"))
        for key in (
            "transaction_timeout",
            "idle_transaction_timeout",
            "query_wait_notify",
            "client_idle_timeout",
            "max_db_client_connections",
            "reserve_pool_size",
            "reserve_pool_timeout",
            "server_connect_timeout",
        ):
            self.assertIn(key, rows)

    def test_set(self) -> None:
        """
        SET changes a limit at once, for the pools and the janitor too.
        """
        self.one("SET query_wait_timeout = '1500ms'")
        self.assertEqual(self.service.config.main.queryWaitTimeout, 1.5)
        self.assertEqual(
            self.service.pools.waitTimeout(self.service.pools.pool(("x", "y"))),
            (1.5, "query_wait_timeout"),
        )
        self.one("SET client_idle_timeout = 30")
        self.assertEqual(self.one("SHOW CONFIG").asDict()["client_idle_timeout"], "30")

    def test_databases(self) -> None:
        """
        SHOW DATABASES shows a database's reserve pool and client limit.
        """
        result = self.one("SHOW DATABASES")
        byName = {r[0]: dict(zip(result.names, r)) for r in result.rows}
        self.assertEqual(byName["db"]["reserve_pool_size"], "3")
        self.assertEqual(byName["db"]["max_client_connections"], "40")

    def test_users(self) -> None:
        """
        SHOW USERS shows a user's reserve pool and client limit, the main
        section's where no line sets one.
        """
        self.client(("db", "bob"))
        result = self.one("SHOW USERS")
        byName = {r[0]: dict(zip(result.names, r)) for r in result.rows}
        self.assertEqual(byName["alice"]["reserve_pool_size"].strip(), "2")
        self.assertEqual(byName["alice"]["max_user_client_connections"], "4")
        self.assertEqual(byName["bob"]["max_user_client_connections"], "9")


class PipelineStateTests(SynchronousTestCase):
    """
    What the built-in pipelines tell the janitor (L{timeoutState}).
    """

    def test_transaction(self) -> None:
        """
        Transaction pooling: a transaction starts when a backend is lent; a
        request runs until its answer; idle in a transaction between.
        """
        script = TransactionScript(self)
        session = script.session
        clock = session.clock
        assert isinstance(clock, Clock)
        self.assertEqual(session.timeoutState(), (SESSION_IDLE, 0.0, 0.0))
        clock.advance(10)
        script.play([fromClient([Query("BEGIN")], toServer=[Query("BEGIN")])])
        self.assertEqual(session.timeoutState(), (SESSION_RUNNING, 10.0, 0.0))
        clock.advance(1)
        answer = [CommandComplete("BEGIN"), ready(b"T")]
        script.play([fromServer(answer, toClient=answer)])
        self.assertEqual(session.timeoutState(), (SESSION_IDLE_IN_TRANSACTION, 10.0, 0.0))
        script.play([fromClient([Query("COMMIT")], toServer=[Query("COMMIT")])])
        self.assertEqual(session.timeoutState()[0], SESSION_RUNNING)
        answer = [CommandComplete("COMMIT"), ready()]
        script.play([fromServer(answer, toClient=answer)])
        self.assertEqual(session.timeoutState(), (SESSION_IDLE, 0.0, 0.0))

    def test_session(self) -> None:
        """
        Session pooling: the relay knows when the transaction and each
        request began, and when the last request ended.
        """
        clock = Clock()
        session = SessionPipeline().newSession(FakeFrontendLink(), FakeBackendPool(), clock)
        session.begin()
        self.assertEqual(session.timeoutState(), (SESSION_IDLE, 0.0, 0.0))
        clock.advance(10)
        session.frontendDataReceived(codec.encode(Query("BEGIN")))
        self.assertEqual(session.timeoutState(), (SESSION_RUNNING, 10.0, 10.0))
        clock.advance(2)
        session.backendDataReceived(codec.encodeAll([CommandComplete("BEGIN"), ready(b"T")]))
        self.assertEqual(session.timeoutState(), (SESSION_IDLE_IN_TRANSACTION, 10.0, 12.0))
        clock.advance(3)
        session.frontendDataReceived(codec.encode(Query("SELECT 1")))
        self.assertEqual(session.timeoutState(), (SESSION_RUNNING, 10.0, 15.0))
        session.backendDataReceived(codec.encodeAll([CommandComplete("COMMIT"), ready()]))
        self.assertEqual(session.timeoutState(), (SESSION_IDLE, 0.0, 0.0))


class WorkerShareTests(SynchronousTestCase):
    """
    With C{workers}, each worker takes its share of the client limits, as
    of C{max_client_conn}.
    """

    def test_shares(self) -> None:
        """
        The main section's and the lines' limits are divided; 0 and unset
        stay so.
        """
        config = Configuration(
            main=MainSettings(maxDbClientConnections=10, maxUserClientConnections=0),
            limits=(
                DatabaseLimit("db", "all", 5, maxDbClientConnections=5),
                DatabaseLimit("all", "bob", 5, maxUserClientConnections=3),
            ),
        )
        shares = [_shareClientLimits(config, index, 2) for index in range(2)]
        self.assertEqual([s.main.maxDbClientConnections for s in shares], [5, 5])
        self.assertEqual([s.main.maxUserClientConnections for s in shares], [0, 0])
        self.assertEqual([s.limits[0].maxDbClientConnections for s in shares], [3, 2])
        self.assertEqual([s.limits[1].maxUserClientConnections for s in shares], [2, 1])
        self.assertEqual([s.limits[1].maxDbClientConnections for s in shares], [None, None])
