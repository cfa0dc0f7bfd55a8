"""
Tests for L{pgtwist.net.backend}: logging into a scripted PostgreSQL over a
C{StringTransport}, owned-mode queries, and the startup-parameter helpers.
"""

from __future__ import annotations

import hashlib

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.app.bootstrap import loadPlugins
from pgtwist.config.model import ServerSettings
from pgtwist.net.backend import (
    BackendError,
    BackendGone,
    BackendProtocol,
    connectBackend,
)
from pgtwist.testing import FakeFrontendLink
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.framing import MessageFramer, StartupFramer
from pgtwist.wire.messages import (
    AuthenticationRequest,
    BackendKeyData,
    Bind,
    BindComplete,
    Close,
    CloseComplete,
    CommandComplete,
    DataRow,
    Execute,
    FieldDescription,
    ParameterStatus,
    Parse,
    ParseComplete,
    ReadyForQuery,
    RowDescription,
    StartupMessage,
    Sync,
)

SERVER = ServerSettings("primary", "127.0.0.1", 5432, True)


class FakeSession:
    """
    The bytes an attached session is handed.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def backendDataReceived(self, data: bytes) -> None:
        """
        Keep C{data}.
        """
        self.received.append(data)


class BackendLoginTests(SynchronousTestCase):
    """
    The login conversation with PostgreSQL.
    """

    def setUp(self) -> None:
        methods, _ = loadPlugins()
        self.backend = BackendProtocol(
            ("db", "alice"), SERVER, "secret", list(methods.values()), Clock()
        )
        self.transport = StringTransport()
        self.backend.makeConnection(self.transport)
        self.login = self.backend.whenLoggedIn()

    def sent(self) -> bytes:
        """
        What pgtwist sent PostgreSQL since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        return data

    def test_startupCarriesOnlyUserAndDatabase(self) -> None:
        """
        The StartupMessage names only user and database, so that every client
        setting applied later is undone by DISCARD ALL.
        """
        (frame,) = StartupFramer().feed(self.sent())
        self.assertEqual(
            codec.decodeStartupPacket(frame.body),
            StartupMessage({"user": "alice", "database": "db"}),
        )

    def test_trustLogin(self) -> None:
        """
        AuthenticationOk, parameters, key and ReadyForQuery complete the login.
        """
        self.sent()
        self.backend.dataReceived(
            codec.encodeAll(
                [
                    AuthenticationRequest(constants.AUTH_OK),
                    ParameterStatus("client_encoding", "UTF8"),
                    BackendKeyData(321, 654),
                    ReadyForQuery(),
                ]
            )
        )
        self.assertIs(self.successResultOf(self.login), self.backend)
        self.assertEqual(self.backend.parameters, {"client_encoding": "UTF8"})
        self.assertEqual((self.backend.processId, self.backend.secretKey), (321, 654))
        self.assertEqual(self.backend.authRequestCode, constants.AUTH_OK)

    def test_attachedByLoginCallback(self) -> None:
        """
        Login replies cut anywhere, ReadyForQuery included: a session
        attached by the login's callback gets every byte after it, and the
        backend is at a message boundary when attached.
        """
        login = codec.encodeAll(
            [
                AuthenticationRequest(constants.AUTH_OK),
                ParameterStatus("client_encoding", "UTF8"),
                BackendKeyData(321, 654),
                ReadyForQuery(),
            ]
        )
        after = codec.encode(CommandComplete("SELECT 1"))
        stream = login + after
        for cut in range(len(login) - 5, len(stream)):
            backend = BackendProtocol(("db", "alice"), SERVER, "secret", [], Clock())
            backend.makeConnection(StringTransport())
            session = FakeSession()
            backend.whenLoggedIn().addCallback(
                lambda b, session=session: b.attach(session, FakeFrontendLink())  # type: ignore[misc]
            )
            backend.dataReceived(stream[:cut])
            backend.dataReceived(stream[cut:])
            self.assertEqual(b"".join(session.received), after, cut)

    def test_md5Login(self) -> None:
        """
        An md5 request is answered with the vault password's hash.
        """
        self.sent()
        salt = b"\x01\x02\x03\x04"
        self.backend.dataReceived(
            codec.encode(AuthenticationRequest(constants.AUTH_MD5_PASSWORD, salt))
        )
        (frame,) = MessageFramer().feed(self.sent())
        inner = hashlib.md5(b"secretalice").hexdigest().encode()
        expected = b"md5" + hashlib.md5(inner + salt).hexdigest().encode() + b"\x00"
        self.assertEqual(frame.body, expected)
        self.assertEqual(self.backend.authRequestCode, constants.AUTH_MD5_PASSWORD)

    def test_loginRefused(self) -> None:
        """
        PostgreSQL's ErrorResponse fails the login with that very error.
        """
        error = errors.fatal("3D000", 'database "db" does not exist')
        self.backend.dataReceived(codec.encode(error))
        failure = self.failureResultOf(self.login, BackendError)
        self.assertEqual(failure.value.error, error)
        self.assertTrue(self.transport.disconnecting)

    def test_noVaultPasswordStaysInTheLog(self) -> None:
        """
        PostgreSQL asking for a password the vault does not have fails the
        login with PostgreSQL's 28P01 and no DETAIL: the error reaches the
        client, and vault details are for the log only.
        """
        methods, _ = loadPlugins()
        backend = BackendProtocol(("db", "bob"), SERVER, None, list(methods.values()), Clock())
        transport = StringTransport()
        backend.makeConnection(transport)
        login = backend.whenLoggedIn()
        backend.dataReceived(
            codec.encode(AuthenticationRequest(constants.AUTH_MD5_PASSWORD, b"salt"))
        )
        failure = self.failureResultOf(login, BackendError)
        self.assertEqual(
            failure.value.error,
            errors.fatal(
                constants.SQLSTATE_INVALID_PASSWORD, 'password authentication failed for user "bob"'
            ),
        )
        self.assertTrue(transport.disconnecting)

    def test_connectionLostDuringLogin(self) -> None:
        """
        A connection lost during login fails it.
        """
        self.backend.connectionLost(Failure(ConnectionError("gone")))
        self.failureResultOf(self.login, ConnectionError)


class OwnedQueryTests(SynchronousTestCase):
    """
    Queries pgtwist runs itself on an idle backend.
    """

    def setUp(self) -> None:
        self.backend = BackendProtocol(("db", "alice"), SERVER, None, [], Clock())
        self.transport = StringTransport()
        self.backend.makeConnection(self.transport)
        self.backend.dataReceived(
            codec.encodeAll([AuthenticationRequest(constants.AUTH_OK), ReadyForQuery()])
        )
        self.transport.clear()

    def test_pipelinedQueries(self) -> None:
        """
        Two pipelined queries fire in order with their first error, and
        ParameterStatus changes are recorded.
        """
        first = self.backend.simpleQuery("DISCARD ALL")
        second = self.backend.simpleQuery("SET bad = 1")
        error = errors.error("42704", 'unrecognized configuration parameter "bad"')
        self.backend.dataReceived(
            codec.encodeAll(
                [
                    CommandComplete("DISCARD ALL"),
                    ParameterStatus("application_name", ""),
                    ReadyForQuery(),
                    error,
                    ReadyForQuery(),
                ]
            )
        )
        self.assertIsNone(self.successResultOf(first))
        self.assertEqual(self.successResultOf(second), error)
        self.assertEqual(self.backend.parameters["application_name"], "")

    def test_queryRows(self) -> None:
        """
        L{BackendProtocol.queryRows} fires with the rows of its query only
        (not those of a query before it); an error fails it with
        L{BackendError}.
        """
        first = self.backend.simpleQuery("SELECT 0")
        rows = self.backend.queryRows("SELECT a, b FROM t")
        failing = self.backend.queryRows("SELECT nope")
        error = errors.error("42703", 'column "nope" does not exist')
        self.backend.dataReceived(
            codec.encodeAll(
                [
                    DataRow((b"0",)),
                    CommandComplete("SELECT 1"),
                    ReadyForQuery(),
                    DataRow((b"x", None)),
                    DataRow((b"y", b"z")),
                    CommandComplete("SELECT 2"),
                    ReadyForQuery(),
                    error,
                    ReadyForQuery(),
                ]
            )
        )
        self.assertIsNone(self.successResultOf(first))
        self.assertEqual(self.successResultOf(rows), [(b"x", None), (b"y", b"z")])
        self.assertEqual(self.failureResultOf(failing, BackendError).value.error, error)

    def test_queryParametersBindsText(self) -> None:
        """
        L{BackendProtocol.queryParameters} sends Parse, Bind, Execute
        and Sync on the unnamed statement, the parameters bound as
        text values apart from the SQL (quotes, semicolons and C{$1} in
        them stay data), C{None} as NULL.
        """
        name = 'x\'; DROP TABLE t; -- $1 "y"'
        self.backend.queryParameters("SELECT $1, $2", [name, None])
        framer = MessageFramer(1 << 20)
        sent = [codec.decodeFrontend(t, b) for t, b in framer.feed(self.transport.value())]
        self.assertEqual(
            sent,
            [
                Parse("", "SELECT $1, $2"),
                Bind("", "", (), (name.encode("utf-8"), None), ()),
                Execute("", 0),
                Sync(),
            ],
        )

    def test_queryParametersRows(self) -> None:
        """
        L{BackendProtocol.queryParameters} fires with the DataRows of its
        query (NULL as C{None}), after ParseComplete, BindComplete and the
        RowDescription; an error fails it with L{BackendError}.
        """
        rows = self.backend.queryParameters("SELECT $1", ["a"])
        failing = self.backend.queryParameters("SELECT nope($1)", ["b"])
        field = FieldDescription("rolname", 0, 0, 19, 64, -1, 0)
        error = errors.error("42883", "function nope(unknown) does not exist")
        self.backend.dataReceived(
            codec.encodeAll(
                [
                    ParseComplete(),
                    BindComplete(),
                    RowDescription((field, field)),
                    DataRow((b"a", None)),
                    CommandComplete("SELECT 1"),
                    ReadyForQuery(),
                    error,
                    ReadyForQuery(),
                ]
            )
        )
        self.assertEqual(self.successResultOf(rows), [(b"a", None)])
        self.assertEqual(self.failureResultOf(failing, BackendError).value.error, error)

    def sentMessages(self) -> list[object]:
        """
        The messages sent to PostgreSQL since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        return [codec.decodeFrontend(t, b) for t, b in MessageFramer(1 << 20).feed(data)]

    def test_queryPreparedOnce(self) -> None:
        """
        L{BackendProtocol.queryPrepared} prepares its statement with its
        first call (Close, Parse, then Bind, Execute and Sync), and later
        calls send only Bind, Execute and Sync for it, the parameters bound
        as text values apart from the SQL, C{None} as NULL.
        """
        name = 'x\'; DROP TABLE t; -- $1 "y"'
        first = self.backend.queryPrepared("s1", "SELECT $1, $2", [name, None])
        self.assertEqual(
            self.sentMessages(),
            [
                Close(b"S", "s1"),
                Parse("s1", "SELECT $1, $2"),
                Bind("", "s1", (), (name.encode("utf-8"), None), ()),
                Execute("", 0),
                Sync(),
            ],
        )
        second = self.backend.queryPrepared("s1", "SELECT $1, $2", ["b", "\u00e9"])
        self.assertEqual(
            self.sentMessages(),
            [Bind("", "s1", (), (b"b", "\u00e9".encode()), ()), Execute("", 0), Sync()],
        )
        self.backend.dataReceived(
            codec.encodeAll(
                [
                    CloseComplete(),
                    ParseComplete(),
                    BindComplete(),
                    DataRow((name.encode("utf-8"), None)),
                    CommandComplete("SELECT 1"),
                    ReadyForQuery(),
                    BindComplete(),
                    DataRow((b"b", b"")),
                    DataRow((b"c", b"d")),
                    CommandComplete("SELECT 2"),
                    ReadyForQuery(),
                ]
            )
        )
        self.assertEqual(self.successResultOf(first), [(name.encode("utf-8"), None)])
        self.assertEqual(self.successResultOf(second), [(b"b", b""), (b"c", b"d")])

    def test_queryPreparedAgain(self) -> None:
        """
        After PostgreSQL refused a call of the statement (it may be gone,
        or its plan no longer valid), or when the SQL differs from the one
        prepared, the next call prepares it again.
        """
        self.backend.queryPrepared("s1", "SELECT $1", ["a"])
        self.backend.dataReceived(
            codec.encodeAll(
                [CloseComplete(), ParseComplete(), BindComplete(), CommandComplete("SELECT 0")]
                + [ReadyForQuery()]
            )
        )
        self.transport.clear()
        failing = self.backend.queryPrepared("s1", "SELECT $1", ["b"])
        error = errors.error("0A000", "cached plan must not change result type")
        self.backend.dataReceived(codec.encodeAll([error, ReadyForQuery()]))
        self.assertEqual(self.failureResultOf(failing, BackendError).value.error, error)
        self.transport.clear()
        self.backend.queryPrepared("s1", "SELECT $1", ["c"])
        self.assertEqual(self.sentMessages()[:2], [Close(b"S", "s1"), Parse("s1", "SELECT $1")])
        self.backend.queryPrepared("s1", "SELECT $1::text", ["d"])
        self.assertEqual(
            self.sentMessages()[:2], [Close(b"S", "s1"), Parse("s1", "SELECT $1::text")]
        )

    def test_queryPreparedThen(self) -> None:
        """
        L{BackendProtocol.queryPreparedThen} gives its callback, once and
        with no Deferred, the rows of a call, the L{BackendError} of a
        refused one (whose statement is then prepared again), and
        L{BackendGone} for one the lost connection never answered; the
        calls are pipelined and answered in order.
        """
        outcomes: list[object] = []
        for value in ("a", "b", None, "c"):
            self.backend.queryPreparedThen("s1", "SELECT $1", [value], outcomes.append)
        sent = self.sentMessages()
        self.assertEqual(sent[:2], [Close(b"S", "s1"), Parse("s1", "SELECT $1")])
        self.assertEqual(
            [m for m in sent if isinstance(m, Bind)],
            [Bind("", "s1", (), (value,), ()) for value in (b"a", b"b", None, b"c")],
        )
        error = errors.error("0A000", "cached plan must not change result type")
        self.backend.dataReceived(
            codec.encodeAll(
                [CloseComplete(), ParseComplete(), BindComplete(), DataRow((b"a", None))]
                + [CommandComplete("SELECT 1"), ReadyForQuery(), error, ReadyForQuery()]
                + [BindComplete(), CommandComplete("SELECT 0"), ReadyForQuery()]
            )
        )
        self.assertEqual(outcomes[0], [(b"a", None)])
        self.assertIsInstance(outcomes[1], Failure)
        self.assertEqual(outcomes[1].value.error, error)  # type: ignore[attr-defined]
        self.assertEqual(outcomes[2], [])
        self.assertEqual(len(outcomes), 3)
        self.backend.connectionLost(Failure(ConnectionError()))
        self.assertEqual(len(outcomes), 4)
        self.assertIsInstance(outcomes[3], Failure)
        outcomes[3].trap(BackendGone)  # type: ignore[attr-defined]
        # Refused: the next call prepares the statement again.
        self.backend.queryPreparedThen("s1", "SELECT $1", ["d"], outcomes.append)
        self.assertEqual(self.sentMessages()[:2], [Close(b"S", "s1"), Parse("s1", "SELECT $1")])

    def test_malformedDataRow(self) -> None:
        """
        A DataRow whose values do not fill its body exactly is a protocol
        violation: the connection is closed and the query fails.
        """
        rows = self.backend.queryParameters("SELECT $1", ["a"])
        body = codec.encode(DataRow((b"abc",)))[5:]
        for broken in (body[:-1], body + b"x", body[:1], b"\x00\x01\xff\xff\xff\xfe"):
            with self.subTest(body=broken):
                backend = BackendProtocol(("db", "alice"), SERVER, None, [], Clock())
                transport = StringTransport()
                backend.makeConnection(transport)
                backend.dataReceived(
                    codec.encodeAll([AuthenticationRequest(constants.AUTH_OK), ReadyForQuery()])
                )
                pending = backend.queryParameters("SELECT $1", ["a"])
                backend.dataReceived(codec.frame(constants.DATA_ROW, broken))
                self.assertTrue(transport.disconnecting)
                backend.connectionLost(Failure(ConnectionError()))
                self.failureResultOf(pending, BackendGone)
        self.backend.dataReceived(
            codec.encodeAll([DataRow((None, b"")), CommandComplete("SELECT 1"), ReadyForQuery()])
        )
        self.assertEqual(self.successResultOf(rows), [(None, b"")])

    def test_lostFailsQueries(self) -> None:
        """
        A lost connection fails pending queries with L{BackendGone}.
        """
        d = self.backend.simpleQuery("DISCARD ALL")
        self.backend.connectionLost(Failure(ConnectionError()))
        self.failureResultOf(d, BackendGone)

    def test_closeSendsTerminate(self) -> None:
        """
        Closing says Terminate first.
        """
        self.backend.close()
        self.assertEqual(self.transport.value(), b"X\x00\x00\x00\x04")
        self.assertTrue(self.transport.disconnecting)


class BackendConnectionTests(SynchronousTestCase):
    """
    The connection a backend runs on, as L{connectBackend} opens it.
    """

    def test_connectionLetsGo(self) -> None:
        """
        Once the connection is over, its factory no longer holds the
        protocol nor its connector the transport: the transport, which holds
        its connector, and everything the backend served are freed by
        reference counting, not left in a cycle to the cyclic collector.
        """
        reactor = MemoryReactor()
        methods, _ = loadPlugins()
        protocol, _ = connectBackend(
            reactor, SERVER, ("db", "alice"), "secret", list(methods.values())
        )
        factory = reactor.tcpClients[0][2]
        connector = reactor.connectors[0]
        self.assertIs(factory.buildProtocol(None), protocol)
        connector.transport = StringTransport()  # what a real connector holds
        factory.clientConnectionLost(connector, Failure(ConnectionDone()))
        self.assertIsNone(factory.protocol_)
        self.assertIsNone(connector.transport)

    def test_failedConnectionFailsLogin(self) -> None:
        """
        A connection that could not be made fails the login with its reason.
        """
        reactor = MemoryReactor()
        methods, _ = loadPlugins()
        _, login = connectBackend(
            reactor, SERVER, ("db", "alice"), "secret", list(methods.values())
        )
        reactor.tcpClients[0][2].clientConnectionFailed(
            reactor.connectors[0], Failure(ConnectionRefusedError())
        )
        self.failureResultOf(login, ConnectionRefusedError)
