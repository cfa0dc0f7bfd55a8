"""
Tests for L{pgtwist.net.authquery}: the lookup's cache, coalescing,
outcomes and failures over a fake query runner, and the connections the
queries run over, against a scripted PostgreSQL on a C{MemoryReactorClock}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.authquery import DEFAULT_AUTH_QUERY, AuthQuerySettings
from pgtwist.config.model import Configuration, MainSettings, ServerSettings, UserEntry
from pgtwist.config.verifiers import Md5Verifier, ScramSecret, formatScramSecret
from pgtwist.net.authquery import (
    MAX_CONNECTIONS,
    PARSED_VERIFIERS,
    STATEMENT,
    AuthQueryConnections,
    AuthQueryFailed,
    RowsCallback,
    UserLookup,
)
from pgtwist.net.backend import BackendError, BackendGone, BackendProtocol
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    AuthenticationRequest,
    Bind,
    Close,
    CommandComplete,
    DataRow,
    Execute,
    Parse,
    Query,
    ReadyForQuery,
    Sync,
)

SERVER = ServerSettings("primary", "127.0.0.1", 5432, True)
SETTINGS = AuthQuerySettings(DEFAULT_AUTH_QUERY, "postgres", "appdb")
SECRET = ScramSecret(b"salt-bytes", 4096, b"s" * 32, b"k" * 32)
VERIFIER = formatScramSecret(SECRET).encode()
MD5 = "md5" + "0123456789abcdef" * 2


def makeConfig(ttl: float = 0.0, size: int = 1000, timeout: float = 5.0) -> Configuration:
    """
    A configuration whose superuser runs auth_query.
    """
    return Configuration(
        main=MainSettings(
            authQuery=DEFAULT_AUTH_QUERY,
            authQueryCacheTtl=ttl,
            authQueryCacheSize=size,
            authenticationTimeout=timeout,
        ),
        servers=(SERVER,),
        superuser=UserEntry("postgres", "su-secret"),
    )


class FakeRunner:
    """
    Records each query asked of it and answers when told.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.pending: list[RowsCallback] = []

    def __call__(
        self,
        server: ServerSettings,
        password: str | None,
        settings: AuthQuerySettings,
        user: str,
        timeout: float,
        then: RowsCallback,
    ) -> None:
        """
        A query: its answer comes from L{answer} or L{fail}.
        """
        self.calls.append((server, password, settings, user, timeout))
        self.pending.append(then)

    def answer(self, *rows: tuple[bytes | None, ...]) -> None:
        """
        Answer the oldest query with C{rows}.
        """
        self.pending.pop(0)(list(rows))

    def fail(self, reason: Exception) -> None:
        """
        Fail the oldest query.
        """
        self.pending.pop(0)(Failure(reason))


class UserLookupTests(SynchronousTestCase):
    """
    L{UserLookup} over a fake runner.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.runner = FakeRunner()
        self.lookup = UserLookup(self.clock, self.runner)
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def test_query(self) -> None:
        """
        A lookup runs the query as the auth user with its password, the
        name as the parameter, within authentication_timeout, and fires
        with the verifier of the answer's second column.
        """
        d = self.lookup.lookup(makeConfig(timeout=3.0), SETTINGS, "alice")
        self.assertNoResult(d)
        self.assertEqual(self.runner.calls, [(SERVER, "su-secret", SETTINGS, "alice", 3.0)])
        self.runner.answer((b"alice", VERIFIER))
        self.assertEqual(self.successResultOf(d), (SECRET, False))
        self.lookup.lookup(makeConfig(), SETTINGS, "bob")
        self.runner.answer((b"bob", MD5.encode()))
        self.assertEqual(self.lookup.outcomes, {"hit": 0, "query": 2, "miss": 0, "error": 0})

    def test_misses(self) -> None:
        """
        No row, NULL (an expired role under the default query), a secret
        that is no verifier, or an answer of one column, are all the same
        miss, never kept even with a cache.
        """
        config = makeConfig(ttl=60.0)
        for rows in [(), ((b"alice", None),), ((b"alice", b"plain"),), ((b"alice",),)]:
            d = self.lookup.lookup(config, SETTINGS, "alice")
            self.runner.answer(*rows)
            self.assertEqual(self.successResultOf(d), (None, False))
        self.assertEqual(len(self.lookup), 0)
        self.assertEqual(self.lookup.outcomes["miss"], 4)

    def test_noCacheByDefault(self) -> None:
        """
        With C{auth_query_cache_ttl = 0} every login asks PostgreSQL, so a
        changed password counts at the very next login.
        """
        config = makeConfig()
        for _ in range(2):
            d = self.lookup.lookup(config, SETTINGS, "alice")
            self.runner.answer((b"alice", VERIFIER))
            self.assertEqual(self.successResultOf(d), (SECRET, False))
        self.assertEqual(len(self.runner.calls), 2)
        self.assertEqual(len(self.lookup), 0)

    def test_cacheTtl(self) -> None:
        """
        With a TTL, a found verifier is used again until the TTL passed;
        then PostgreSQL is asked again.
        """
        config = makeConfig(ttl=30.0)
        d = self.lookup.lookup(config, SETTINGS, "alice")
        self.runner.answer((b"alice", VERIFIER))
        self.successResultOf(d)
        self.clock.advance(29)
        self.assertEqual(
            self.successResultOf(self.lookup.lookup(config, SETTINGS, "alice")), (SECRET, True)
        )
        self.assertEqual(len(self.runner.calls), 1)
        self.clock.advance(1)
        d = self.lookup.lookup(config, SETTINGS, "alice")
        self.assertNoResult(d)
        self.runner.answer((b"alice", MD5.encode()))
        self.assertEqual(self.successResultOf(d), (Md5Verifier(MD5), False))
        self.assertEqual(self.lookup.outcomes, {"hit": 1, "query": 2, "miss": 0, "error": 0})

    def test_cacheBounded(self) -> None:
        """
        The cache keeps at most C{auth_query_cache_size} answers, dropping
        the least recently used.
        """
        config = makeConfig(ttl=60.0, size=2)
        for name in ["a", "b"]:
            self.lookup.lookup(config, SETTINGS, name)
            self.runner.answer((name.encode(), VERIFIER))
        self.successResultOf(self.lookup.lookup(config, SETTINGS, "a"))  # a is now the newest
        self.lookup.lookup(config, SETTINGS, "c")
        self.runner.answer((b"c", VERIFIER))
        self.assertEqual(len(self.lookup), 2)
        self.successResultOf(self.lookup.lookup(config, SETTINGS, "a"))
        self.assertNoResult(self.lookup.lookup(config, SETTINGS, "b"))

    def test_keyedBySettings(self) -> None:
        """
        An answer is kept for the query, role and database that gave it: the
        same name in another database is asked again.
        """
        config = makeConfig(ttl=60.0)
        self.lookup.lookup(config, SETTINGS, "alice")
        self.runner.answer((b"alice", VERIFIER))
        other = AuthQuerySettings(DEFAULT_AUTH_QUERY, "postgres", "otherdb")
        self.assertNoResult(self.lookup.lookup(config, other, "alice"))
        self.assertEqual(len(self.runner.calls), 2)

    def test_coalescing(self) -> None:
        """
        Concurrent lookups of one name share one query and its answer.
        """
        config = makeConfig()
        waiting = [self.lookup.lookup(config, SETTINGS, "alice") for _ in range(5)]
        other = self.lookup.lookup(config, SETTINGS, "bob")
        self.assertEqual([call[3] for call in self.runner.calls], ["alice", "bob"])
        self.runner.answer((b"alice", VERIFIER))
        for d in waiting:
            self.assertEqual(self.successResultOf(d), (SECRET, False))
        self.assertNoResult(other)
        self.lookup.lookup(config, SETTINGS, "alice")
        self.assertEqual(len(self.runner.calls), 3)

    def test_findCallsBack(self) -> None:
        """
        L{UserLookup.find} gives its callback the answer with no Deferred:
        a cache hit at once, a query's answer (or the L{AuthQueryFailed} of
        a failed one) when it comes; each waiter once.
        """
        config = makeConfig(ttl=30.0)
        outcomes: list[object] = []
        self.lookup.find(config, SETTINGS, "alice", outcomes.append)
        self.lookup.find(config, SETTINGS, "alice", outcomes.append)
        self.assertEqual(outcomes, [])
        self.runner.answer((b"alice", VERIFIER))
        self.assertEqual(outcomes, [(SECRET, False), (SECRET, False)])
        self.lookup.find(config, SETTINGS, "alice", outcomes.append)
        self.assertEqual(outcomes[2:], [(SECRET, True)])
        self.lookup.find(config, SETTINGS, "bob", outcomes.append)
        self.runner.fail(ConnectionRefusedError())
        self.assertEqual(len(outcomes), 4)
        self.assertIsInstance(outcomes[3], Failure)
        outcomes[3].trap(AuthQueryFailed)  # type: ignore[attr-defined]

    def test_raisingWaiter(self) -> None:
        """
        A waiting login whose callback raises is logged and does not keep
        the answer from the logins waiting with it, nor from the query's
        connection.
        """
        config = makeConfig()
        outcomes: list[object] = []

        def broken(outcome: object) -> None:
            raise RuntimeError("broken login")

        self.lookup.find(config, SETTINGS, "alice", broken)
        self.lookup.find(config, SETTINGS, "alice", outcomes.append)
        self.runner.answer((b"alice", VERIFIER))
        self.assertEqual(outcomes, [(SECRET, False)])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_verifierParsedOnce(self) -> None:
        """
        A verifier's text is parsed once: the same text at the next login
        (the default, no cache: PostgreSQL is asked every time) gives the
        verifier parsed before; another text is parsed anew, so a changed
        password counts at once. At most L{PARSED_VERIFIERS} texts are
        kept, and L{UserLookup.clear} (a reload) drops them.
        """
        config = makeConfig()
        found = []
        for verifier in (VERIFIER, VERIFIER, MD5.encode()):
            d = self.lookup.lookup(config, SETTINGS, "alice")
            self.runner.answer((b"alice", verifier))
            found.append(self.successResultOf(d)[0])
        self.assertIs(found[0], found[1])
        self.assertEqual(found[2], Md5Verifier(MD5))
        self.assertEqual(len(self.runner.calls), 3)
        for i in range(PARSED_VERIFIERS + 10):
            self.lookup.lookup(config, SETTINGS, "alice")
            self.runner.answer((b"alice", b"md5" + b"%032x" % i))
        self.assertLessEqual(len(self.lookup._parsed), PARSED_VERIFIERS)
        self.lookup.clear()
        self.assertEqual(len(self.lookup._parsed), 0)

    def test_coalescedFailure(self) -> None:
        """
        A failed query fails every lookup waiting on it.
        """
        config = makeConfig()
        waiting = [self.lookup.lookup(config, SETTINGS, "alice") for _ in range(3)]
        self.runner.fail(ConnectionRefusedError())
        for d in waiting:
            self.failureResultOf(d, AuthQueryFailed)
        self.assertEqual(self.lookup.outcomes["error"], 1)

    def test_connectionFailure(self) -> None:
        """
        PostgreSQL unreachable fails the lookup with 08006, and the log says
        why, with neither the query nor a secret.
        """
        d = self.lookup.lookup(makeConfig(), SETTINGS, "alice")
        self.runner.fail(ConnectionRefusedError("Connection refused"))
        error = self.failureResultOf(d, AuthQueryFailed).value
        self.assertEqual(error.error.code, constants.SQLSTATE_CONNECTION_FAILURE)
        self.assertEqual(
            error.error.message,
            'could not look up user "alice" for authentication: connection to server failed',
        )
        (event,) = [e for e in self.events if "auth_query" in e.get("log_format", "")]
        self.assertEqual((event["user"], event["authUser"]), ("alice", "postgres"))
        self.assertIn("Connection refused", event["reason"])

    def test_queryRefused(self) -> None:
        """
        PostgreSQL refusing the query (a missing function, a permission
        denied) fails the lookup with 28000; the client's message does not
        repeat PostgreSQL's, the log does.
        """
        d = self.lookup.lookup(makeConfig(), SETTINGS, "alice")
        self.runner.fail(
            BackendError(errors.error("42501", "permission denied for table pg_authid"))
        )
        error = self.failureResultOf(d, AuthQueryFailed).value
        self.assertEqual(error.error.code, constants.SQLSTATE_INVALID_AUTHORIZATION)
        self.assertNotIn("pg_authid", error.error.message)
        self.assertEqual(error.reason, "42501 permission denied for table pg_authid")

    def test_runnerRaises(self) -> None:
        """
        A runner that raises fails the lookup rather than the login code.
        """

        def broken(*args: object) -> None:
            raise RuntimeError("broken")

        lookup = UserLookup(self.clock, broken)
        d = lookup.lookup(makeConfig(), SETTINGS, "alice")
        self.failureResultOf(d, AuthQueryFailed)

    def test_forget(self) -> None:
        """
        L{UserLookup.forget} drops a name's answers, in every database; the
        next lookup asks PostgreSQL.
        """
        config = makeConfig(ttl=60.0)
        other = AuthQuerySettings(DEFAULT_AUTH_QUERY, "postgres", "otherdb")
        for settings, name in [(SETTINGS, "alice"), (other, "alice"), (SETTINGS, "bob")]:
            self.lookup.lookup(config, settings, name)
            self.runner.answer((name.encode(), VERIFIER))
        self.lookup.forget("alice")
        self.assertEqual(len(self.lookup), 1)
        self.assertNoResult(self.lookup.lookup(config, SETTINGS, "alice"))
        self.successResultOf(self.lookup.lookup(config, SETTINGS, "bob"))

    def test_noSecretInLogs(self) -> None:
        """
        Nothing logged by a lookup holds the verifier.
        """
        d = self.lookup.lookup(makeConfig(ttl=1.0), SETTINGS, "alice")
        self.runner.answer((b"alice", VERIFIER))
        self.successResultOf(d)
        d = self.lookup.lookup(makeConfig(), SETTINGS, "bob")
        self.runner.fail(BackendError(errors.error("XX000", "oops")))
        self.failureResultOf(d)
        self.assertNotIn(VERIFIER.decode(), repr(self.events))
        self.assertNotIn(VERIFIER.decode(), repr(self.lookup.__dict__))


def runQuery(
    connections: AuthQueryConnections,
    server: ServerSettings,
    password: str | None,
    settings: AuthQuerySettings,
    user: str,
    timeout: float,
) -> Deferred[Any]:
    """
    L{AuthQueryConnections.run}, its answer given to a Deferred.
    """
    d: Deferred[Any] = Deferred()

    def then(outcome: Any) -> None:
        if isinstance(outcome, Failure):
            d.errback(outcome)
        else:
            d.callback(outcome)

    connections.run(server, password, settings, user, timeout, then)
    return d


class ConnectionsTests(SynchronousTestCase):
    """
    L{AuthQueryConnections} against a scripted PostgreSQL.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.connections = AuthQueryConnections(self.reactor, [])
        self.transports: list[StringTransport] = []

    def accept(self, index: int = -1) -> tuple[BackendProtocol, StringTransport]:
        """
        Complete the connection attempt C{index}: PostgreSQL trusts the
        auth user and is ready.
        """
        factory = self.reactor.tcpClients[index][2]
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        transport.clear()  # the StartupMessage
        protocol.dataReceived(
            codec.encodeAll([AuthenticationRequest(constants.AUTH_OK), ReadyForQuery()])
        )
        return protocol, transport

    def sent(self, transport: StringTransport) -> list[Any]:
        """
        The messages sent to PostgreSQL since the StartupMessage.
        """
        data = transport.value()
        transport.clear()
        return [codec.decodeFrontend(t, b) for t, b in MessageFramer(1 << 20).feed(data)]

    def test_queryAfterLogin(self) -> None:
        """
        The first query opens a connection as the auth user to the auth
        database; once logged in it sets UTF8 and prepares the query as
        L{STATEMENT}, run with the name bound; the rows come back.
        """
        d = runQuery(self.connections, SERVER, "su-secret", SETTINGS, "it's; $1", 5.0)
        ((host, port, _, timeout, _),) = self.reactor.tcpClients
        self.assertEqual((host, port, timeout), ("127.0.0.1", 5432, 5.0))
        protocol, transport = self.accept()
        self.assertEqual(protocol.key, ("appdb", "postgres"))
        self.assertEqual(
            self.sent(transport),
            [
                Query("SET client_encoding = 'UTF8'"),
                Close(b"S", STATEMENT),
                Parse(STATEMENT, DEFAULT_AUTH_QUERY),
                Bind("", STATEMENT, (), (b"it's; $1",), ()),
                Execute("", 0),
                Sync(),
            ],
        )
        protocol.dataReceived(
            codec.encodeAll(
                [
                    CommandComplete("SET"),
                    ReadyForQuery(),
                    DataRow((b"it's; $1", VERIFIER)),
                    CommandComplete("SELECT 1"),
                    ReadyForQuery(),
                ]
            )
        )
        self.assertEqual(self.successResultOf(d), [(b"it's; $1", VERIFIER)])
        # The connection's watchdog finds nothing unanswered and stops.
        self.reactor.advance(5.0)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertFalse(transport.disconnecting)

    def test_connectionKept(self) -> None:
        """
        Later queries for the same (server, database, auth user) reuse the
        connection and its prepared statement (Bind, Execute and Sync
        only); another database gets its own.
        """
        runQuery(self.connections, SERVER, "pw", SETTINGS, "a", 5.0)
        protocol, transport = self.accept()
        self.sent(transport)
        runQuery(self.connections, SERVER, "pw", SETTINGS, "b", 5.0)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(
            self.sent(transport), [Bind("", STATEMENT, (), (b"b",), ()), Execute("", 0), Sync()]
        )
        other = AuthQuerySettings(DEFAULT_AUTH_QUERY, "postgres", "otherdb")
        runQuery(self.connections, SERVER, "pw", other, "a", 5.0)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertEqual(len(self.connections), 2)

    def test_preparedAgainAfterError(self) -> None:
        """
        A query PostgreSQL refused leaves the statement to be prepared
        again by the next query, and so does a new connection.
        """
        d = runQuery(self.connections, SERVER, "pw", SETTINGS, "a", 5.0)
        protocol, transport = self.accept()
        self.sent(transport)
        error = errors.error("42883", "function missing() does not exist")
        protocol.dataReceived(
            codec.encodeAll([CommandComplete("SET"), ReadyForQuery(), error, ReadyForQuery()])
        )
        self.failureResultOf(d, BackendError)
        again = runQuery(self.connections, SERVER, "pw", SETTINGS, "b", 5.0)
        self.assertEqual(
            self.sent(transport)[:2], [Close(b"S", STATEMENT), Parse(STATEMENT, DEFAULT_AUTH_QUERY)]
        )
        protocol.connectionLost(Failure(ConnectionError()))
        self.failureResultOf(again, BackendGone)
        runQuery(self.connections, SERVER, "pw", SETTINGS, "c", 5.0)
        _, transport = self.accept()
        self.assertEqual(
            self.sent(transport)[1:3],
            [Close(b"S", STATEMENT), Parse(STATEMENT, DEFAULT_AUTH_QUERY)],
        )

    def test_bounded(self) -> None:
        """
        At most L{MAX_CONNECTIONS} connections stay open: a new one closes
        the least recently used idle one.
        """
        transports = []
        for index in range(MAX_CONNECTIONS):
            settings = AuthQuerySettings(DEFAULT_AUTH_QUERY, "postgres", f"db{index}")
            d = runQuery(self.connections, SERVER, "pw", settings, "a", 5.0)
            protocol, transport = self.accept()
            self.sent(transport)
            protocol.dataReceived(
                codec.encodeAll(
                    [CommandComplete("SET"), ReadyForQuery(), CommandComplete("SELECT 0")]
                    + [ReadyForQuery()]
                )
            )
            self.successResultOf(d)
            transports.append(transport)
        settings = AuthQuerySettings(DEFAULT_AUTH_QUERY, "postgres", "one-more")
        runQuery(self.connections, SERVER, "pw", settings, "a", 5.0)
        self.assertEqual(len(self.connections), MAX_CONNECTIONS)
        self.assertTrue(transports[0].disconnecting)
        self.assertFalse(transports[1].disconnecting)

    def test_loginRefused(self) -> None:
        """
        A refused login fails the query with PostgreSQL's error and leaves
        no connection behind: the next query connects again.
        """
        d = runQuery(self.connections, SERVER, "pw", SETTINGS, "a", 5.0)
        factory = self.reactor.tcpClients[0][2]
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        refusal = errors.fatal("28P01", 'password authentication failed for user "postgres"')
        protocol.dataReceived(codec.encode(refusal))
        self.assertEqual(self.failureResultOf(d, BackendError).value.error, refusal)
        self.assertEqual(len(self.connections), 0)
        runQuery(self.connections, SERVER, "pw", SETTINGS, "a", 5.0)
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_connectFailed(self) -> None:
        """
        A server that cannot be reached fails the query.
        """
        d = runQuery(self.connections, SERVER, "pw", SETTINGS, "a", 5.0)
        factory = self.reactor.tcpClients[0][2]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.failureResultOf(d, ConnectionRefusedError)
        self.assertEqual(len(self.connections), 0)

    def test_timeout(self) -> None:
        """
        A query unanswered within the timeout fails, and its connection is
        closed (it no longer answers in order); the next query reconnects.
        """
        d = runQuery(self.connections, SERVER, "pw", SETTINGS, "a", 2.0)
        _, transport = self.accept()
        self.reactor.advance(2.0)
        self.failureResultOf(d, TimeoutError)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(self.connections), 0)

    def test_timeoutLaterQuery(self) -> None:
        """
        One watchdog per connection serves every query: it waits again for
        a query sent after it was armed, and times that one out at its own
        deadline; every query unanswered then fails.
        """
        first = runQuery(self.connections, SERVER, "pw", SETTINGS, "a", 2.0)
        protocol, transport = self.accept()
        protocol.dataReceived(
            codec.encodeAll(
                [CommandComplete("SET"), ReadyForQuery(), CommandComplete("SELECT 0")]
                + [ReadyForQuery()]
            )
        )
        self.assertEqual(self.successResultOf(first), [])
        self.reactor.advance(1.5)
        second = runQuery(self.connections, SERVER, "pw", SETTINGS, "b", 2.0)
        self.reactor.advance(1.0)
        third = runQuery(self.connections, SERVER, "pw", SETTINGS, "c", 2.0)
        self.assertNoResult(second)
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(1.0)
        self.assertIn("within 2s", str(self.failureResultOf(second, TimeoutError).value))
        self.failureResultOf(third, TimeoutError)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        # Answers arriving after the timeout are dropped.
        protocol.dataReceived(codec.encodeAll([CommandComplete("SELECT 0"), ReadyForQuery()]))
        self.assertEqual(len(self.connections), 0)

    def test_lostConnection(self) -> None:
        """
        A connection lost between logins is reopened by the next query.
        """
        d = runQuery(self.connections, SERVER, "pw", SETTINGS, "a", 0)
        protocol, _ = self.accept()
        protocol.connectionLost(Failure(ConnectionError()))
        self.failureResultOf(d, BackendGone)
        self.assertEqual(len(self.connections), 0)
        runQuery(self.connections, SERVER, "pw", SETTINGS, "a", 0)
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_retire(self) -> None:
        """
        L{AuthQueryConnections.retire} closes idle connections at once and
        busy ones once their queries are answered; queries after it open a
        new connection.
        """
        d = runQuery(self.connections, SERVER, "pw", SETTINGS, "a", 0)
        protocol, transport = self.accept()
        self.connections.retire()
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(self.connections), 0)
        runQuery(self.connections, SERVER, "pw", SETTINGS, "b", 0)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        protocol.dataReceived(
            codec.encodeAll(
                [CommandComplete("SET"), ReadyForQuery(), CommandComplete("SELECT 0")]
                + [ReadyForQuery()]
            )
        )
        self.assertEqual(self.successResultOf(d), [])
        self.assertTrue(transport.disconnecting)

    def test_close(self) -> None:
        """
        L{AuthQueryConnections.close} closes every connection, a connecting
        one as soon as it logs in.
        """
        runQuery(self.connections, SERVER, "pw", SETTINGS, "a", 0).addErrback(lambda _: None)
        _, transport = self.accept()
        other = AuthQueryConnections(self.reactor, [])
        runQuery(other, SERVER, "pw", SETTINGS, "a", 0).addErrback(lambda _: None)
        self.connections.close()
        other.close()
        self.assertTrue(transport.disconnecting)
        self.assertEqual((len(self.connections), len(other)), (0, 0))
        protocol, late = self.accept()
        self.assertTrue(late.disconnecting)
