"""
Tests for the limits L{pgtwist.net.frontend.FrontendProtocol} puts on a
client before it has logged in: PostgreSQL's length limits on the
authentication messages, for pool clients and the admin console, and
PgBouncer's C{max_client_conn}, and the warning when
C{authentication_timeout} switches the time limit off.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

from twisted.internet.address import IPv4Address
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.app.service import PoolerService, buildService
from pgtwist.config.errors import ConfigError
from pgtwist.config.loader import loadConfiguration
from pgtwist.config.model import Configuration, HbaRule, MainSettings, UserEntry
from pgtwist.config.restart import RESTART_KEYS
from pgtwist.net.frontend import FrontendState
from pgtwist.wire import codec, constants
from pgtwist.wire.messages import AuthenticationRequest, PasswordMessage, Query, StartupMessage
from tests.unit._console import ConsoleTestCase
from tests.unit.test_frontend import FrontendTestCase, makeConfiguration

#: The longest authentication message PostgreSQL reads (length word included).
LIMIT = constants.MAX_AUTH_TOKEN_LENGTH


def saslInitialResponse(length: int) -> bytes:
    """
    An encoded SCRAM-SHA-256 SASLInitialResponse whose length word is
    C{length}, the client nonce padded to fill it.
    """
    header = b"n,,n=,r="
    overhead = 4 + len(b"SCRAM-SHA-256\x00") + 4 + len(header)
    payload = header + b"a" * (length - overhead)
    data = codec.encode(codec.encodeSASLInitialResponse("SCRAM-SHA-256", payload))
    assert codec.INT32.unpack_from(data, 1)[0] == length
    return data


class PasswordLengthTests(FrontendTestCase):
    """
    A password message over PostgreSQL's C{PG_MAX_AUTH_TOKEN_LENGTH}.
    """

    def test_hugeLengthRefusedAtTheHeader(self) -> None:
        """
        A password message announcing 0x3FFFFFFF bytes, sent byte by byte,
        is refused with FATAL 08P01 as soon as its header is complete, and
        nothing of it stays buffered.
        """
        self.startup()
        self.replies()
        header = b"p" + codec.INT32.pack(0x3FFFFFFF)
        for i in range(4):
            self.protocol.dataReceived(header[i : i + 1])
            self.assertEqual(self.transport.value(), b"")
            self.assertFalse(self.transport.disconnecting)
        self.protocol.dataReceived(header[4:])
        self.assertFatal("08P01", "invalid message length")
        assert self.protocol._framer is not None
        self.assertEqual(self.protocol._framer.pending, 0)
        self.assertIs(self.protocol.state, FrontendState.CLOSED)
        # What the client streams after the refusal is not kept.
        self.protocol.dataReceived(b"x" * 100000)
        self.assertEqual(self.protocol._framer.pending, 0)
        self.assertEqual(self.transport.value(), b"")

    def test_oneOverTheLimitRefused(self) -> None:
        """
        A password message of 65,536 bytes is refused.
        """
        self.startup()
        self.replies()
        self.protocol.dataReceived(b"p" + codec.INT32.pack(LIMIT + 1))
        self.assertFatal("08P01", "invalid message length")

    def test_atTheLimitChecked(self) -> None:
        """
        A password message of exactly 65,535 bytes is read and checked like
        any other password (here, a wrong one).
        """
        self.startup()
        self.replies()
        message = codec.encode(PasswordMessage(b"x" * (LIMIT - 5) + b"\x00"))
        self.assertEqual(codec.INT32.unpack_from(message, 1)[0], LIMIT)
        self.protocol.dataReceived(message)
        self.assertFatal("28P01", 'password authentication failed for user "alice"')

    def test_largeQueryPipelinedAfterPassword(self) -> None:
        """
        The limit is for authentication messages only: a query longer than
        it, pipelined right behind the password, reaches the backend.
        """
        self.startup()
        self.replies()
        query = codec.encode(Query("SELECT '" + "x" * (2 * LIMIT) + "'"))
        data = codec.encode(PasswordMessage(b"wonderland\x00")) + query
        for i in range(0, len(data), 1000):
            self.protocol.dataReceived(data[i : i + 1000])
        self.assertIs(self.protocol.state, FrontendState.READY)
        self.assertEqual(bytes(self.pool.backend.written), query)


class SASLLengthTests(FrontendTestCase):
    """
    SASL messages (SCRAM-SHA-256) under the same limit.
    """

    method = "scram-sha-256"

    def test_atTheLimitAccepted(self) -> None:
        """
        A SASLInitialResponse of exactly 65,535 bytes, sent byte by byte, is
        still accepted: the server-first message comes back.
        """
        self.startup()
        reply = self.replies()[0]
        assert isinstance(reply, AuthenticationRequest)
        self.assertEqual(reply.code, constants.AUTH_SASL)
        data = saslInitialResponse(LIMIT)
        for i in range(len(data)):
            self.protocol.dataReceived(data[i : i + 1])
        replies = self.replies()
        self.assertEqual(len(replies), 1, replies)
        reply = replies[0]
        assert isinstance(reply, AuthenticationRequest)
        self.assertEqual(reply.code, constants.AUTH_SASL_CONTINUE)
        self.assertFalse(self.transport.disconnecting)

    def test_overTheLimitRefused(self) -> None:
        """
        A SASLInitialResponse of 65,536 bytes is refused with 08P01.
        """
        self.startup()
        self.replies()
        self.protocol.dataReceived(saslInitialResponse(LIMIT + 1))
        self.assertFatal("08P01", "invalid message length")

    def test_hugeSASLResponseRefused(self) -> None:
        """
        A huge SASLResponse after the server-first message is refused at
        its header, byte by byte, with nothing buffered.
        """
        self.startup()
        self.replies()
        self.protocol.dataReceived(saslInitialResponse(100))
        self.replies()
        header = b"p" + codec.INT32.pack(0x3FFFFFFF)
        for byte in header:
            self.protocol.dataReceived(bytes([byte]))
        self.assertFatal("08P01", "invalid message length")
        assert self.protocol._framer is not None
        self.assertEqual(self.protocol._framer.pending, 0)


class ConsoleLengthTests(FrontendTestCase):
    """
    The admin console's login has the same limit.
    """

    def setUp(self) -> None:
        super().setUp()
        base = makeConfiguration()
        self.factory.config = Configuration(
            main=base.main,
            servers=base.servers,
            hba=base.hba,
            users=base.users,
            admins={"root": UserEntry("root", "rootpw")},
        )
        self.protocol = self.connect(IPv4Address("TCP", "127.0.0.1", 50001))

    def test_hugeLengthRefused(self) -> None:
        """
        A console login answering the SCRAM challenge with a 0x3FFFFFFF
        length is refused at the header with 08P01.
        """
        self.startup(user="root", database="pgbouncer")
        reply = self.replies()[0]
        assert isinstance(reply, AuthenticationRequest)
        self.assertEqual(reply.code, constants.AUTH_SASL)
        for byte in b"p" + codec.INT32.pack(0x3FFFFFFF):
            self.protocol.dataReceived(bytes([byte]))
        self.assertFatal("08P01", "invalid message length")
        assert self.protocol._framer is not None
        self.assertEqual(self.protocol._framer.pending, 0)

    def test_atTheLimitAccepted(self) -> None:
        """
        A 65,535-byte SASLInitialResponse to the console is accepted.
        """
        self.startup(user="root", database="pgbouncer")
        self.replies()
        self.protocol.dataReceived(saslInitialResponse(LIMIT))
        reply = self.replies()[0]
        assert isinstance(reply, AuthenticationRequest)
        self.assertEqual(reply.code, constants.AUTH_SASL_CONTINUE)


class MaxClientConnTests(FrontendTestCase):
    """
    C{max_client_conn}: PgBouncer's limit on client connections, answered
    at startup with FATAL 53300.
    """

    def setUp(self) -> None:
        super().setUp()
        self.factory.config = makeConfiguration(maxClientConn=2)
        self.first = self.protocol
        self.firstTransport = self.transport

    def test_defaultAndKey(self) -> None:
        """
        The default is 1000; C{max_client_conn} in the file sets it, and
        values below 1 are refused.
        """
        self.assertEqual(MainSettings().maxClientConn, 1000)
        self.assertEqual(mainFrom("max_client_conn = 5").maxClientConn, 5)
        self.assertRaises(ConfigError, mainFrom, "max_client_conn = 0")

    def test_refusedAtStartup(self) -> None:
        """
        Past the limit, a client is refused after its StartupMessage (not
        before: it gets PostgreSQL's FATAL framing) with PgBouncer's text
        and SQLSTATE 53300, and closed; those already in stay.
        """
        self.protocol = self.connect()
        self.startup()
        self.replies()
        self.protocol = self.connect()
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.disconnecting)
        self.startup()
        self.assertFatal("53300", "no more connections allowed (max_client_conn)")
        self.assertIs(self.protocol.state, FrontendState.CLOSED)
        self.assertFalse(self.firstTransport.disconnecting)
        self.assertEqual(self.pool.acquired, [])

    def test_roomAfterDisconnect(self) -> None:
        """
        Once a client leaves, the next one gets in.
        """
        second = self.connect()
        second.connectionLost()
        self.protocol = self.connect()
        self.startup()
        reply = self.replies()[0]
        assert isinstance(reply, AuthenticationRequest)

    def test_consolesCountButAreNotRefused(self) -> None:
        """
        Admin console connections count against the limit, as in
        PgBouncer, but are never refused by it, so an admin can still see
        what is going on; a pool client past the limit is refused.
        """
        self.factory.config = Configuration(
            main=MainSettings(maxClientConn=2),
            servers=self.factory.config.servers,
            hba=self.factory.config.hba,
            users=self.factory.config.users,
            admins={"root": UserEntry("root", "rootpw")},
        )
        self.startup(user="root", database="pgbouncer")
        self.assertEqual(len(self.factory.consoles), 1)
        self.connect()
        self.protocol = self.connect()
        self.startup(user="root", database="pgbouncer")
        reply = self.replies()[0]
        assert isinstance(reply, AuthenticationRequest)
        self.assertEqual(reply.code, constants.AUTH_SASL)
        self.assertEqual(len(self.factory.consoles), 2)
        self.protocol = self.connect()
        self.startup()
        self.assertFatal("53300", "no more connections allowed (max_client_conn)")

    def test_reconfigure(self) -> None:
        """
        A new configuration (RELOAD, SET) applies to the next startup.
        """
        self.factory.reconfigure(makeConfiguration(maxClientConn=1))
        self.protocol = self.connect()
        self.startup()
        self.assertFatal("53300", "no more connections allowed (max_client_conn)")


class MaxClientConnConsoleTests(ConsoleTestCase):
    """
    C{max_client_conn} from the admin console.
    """

    def test_set(self) -> None:
        """
        C{SET max_client_conn} changes the limit at runtime (it is not
        restart-only) and new clients past it are refused.
        """
        config = self.service.config
        trust = HbaRule("host", "all", "all", None, "trust", "hba.conf", 1)
        self.service.reconfigure(dataclasses.replace(config, hba=(trust,)))
        result = self.one("SET max_client_conn = 1")
        self.assertEqual(result.tag, "SET max_client_conn=1")
        self.assertEqual(self.service.factory.config.main.maxClientConn, 1)
        self.assertEqual(self.one("SHOW CONFIG").asDict()["max_client_conn"], "1")
        transports = []
        for port in (50001, 50002):
            address = IPv4Address("TCP", "127.0.0.1", port)
            protocol = self.service.factory.buildProtocol(address)
            transport = StringTransport(peerAddress=address)
            protocol.makeConnection(transport)
            protocol.dataReceived(codec.encode(StartupMessage({"user": "alice", "database": "db"})))
            transports.append(transport)
        self.assertFalse(transports[0].disconnecting)
        self.assertNotIn(b"max_client_conn", transports[0].value())
        self.assertTrue(transports[1].disconnecting)
        self.assertIn(b"no more connections allowed (max_client_conn)", transports[1].value())
        self.assertNotIn("max_client_conn", RESTART_KEYS.values())

    def test_setRefused(self) -> None:
        """
        A value the file would refuse is refused by SET.
        """
        result = self.one("SET max_client_conn = 0")
        assert result.error is not None
        self.assertIn("max_client_conn:", result.error.get(b"D"))
        self.assertEqual(self.service.factory.config.main.maxClientConn, 1000)

    def test_reload(self) -> None:
        """
        RELOAD applies a changed C{max_client_conn}.
        """
        config = self.service.config
        self.nextConfiguration = dataclasses.replace(
            config, main=dataclasses.replace(config.main, maxClientConn=7)
        )
        self.assertIsNone(self.one("RELOAD").error)
        self.assertEqual(self.service.factory.config.main.maxClientConn, 7)


def mainFrom(text: str) -> MainSettings:
    """
    The main settings of a configuration file holding C{text}.
    """
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "pgtwist.conf")
        with open(path, "w") as f:
            f.write(
                f"[pgtwist]\nhost = localhost\nport = 2345\n{text}\n[primary]\nhost = db\nport = 5432\n"
            )
        return loadConfiguration(path, warn=lambda message: None).main


class AuthenticationTimeoutWarningTests(SynchronousTestCase):
    """
    C{authentication_timeout = 0} switches off the limit on clients that
    never authenticate: pgtwist says so in one warning at start and each
    time such a configuration is applied.
    """

    def makeService(self, timeout: float) -> PoolerService:
        """
        A service over a MemoryReactor whose reload reads C{self.next}.
        """
        self.next = self.configuration(timeout)
        service = buildService(
            self.configuration(timeout), MemoryReactorClock(), reloadConfiguration=lambda: self.next
        )
        self.addCleanup(service.stopService)
        return service

    def configuration(self, timeout: float) -> Configuration:
        """
        A configuration with C{authentication_timeout} set to C{timeout}.
        """
        return Configuration(
            main=MainSettings(host="127.0.0.1", port=0, authenticationTimeout=timeout),
            servers=makeConfiguration().servers,
        )

    def warnings(self, events: EventLoggingObserver) -> list[str]:
        """
        The warnings logged about C{authentication_timeout}.
        """
        return [
            formatEvent(e)
            for e in events
            if e["log_level"] is LogLevel.warn and "authentication_timeout" in e["log_format"]
        ]

    def test_warnedAtStartAndReload(self) -> None:
        """
        Starting with C{authentication_timeout = 0} logs one warning line;
        each reload that keeps it at 0 logs it again, one that sets a
        timeout does not.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        service = self.makeService(0.0)
        service.startService()
        warnings = self.warnings(events)
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("authentication_timeout = 0", warnings[0])
        self.assertIn("never authenticate", warnings[0])
        self.assertEqual(service.reload()[0], True)
        self.assertEqual(len(self.warnings(events)), 2)
        self.next = self.configuration(5.0)
        self.assertEqual(service.reload()[0], True)
        self.assertEqual(len(self.warnings(events)), 2)

    def test_silentWithATimeout(self) -> None:
        """
        With a timeout (the default 5 seconds), nothing is said; a reload
        that switches it off is warned about.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        service = self.makeService(5.0)
        service.startService()
        self.assertEqual(self.warnings(events), [])
        self.next = self.configuration(0.0)
        service.reload()
        self.assertEqual(len(self.warnings(events)), 1)
