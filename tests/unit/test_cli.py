"""
Tests for C{pgtwist-cli}: L{pgtwist.cli.control}, L{pgtwist.cli._commands}
and the console client L{pgtwist.cli._client}, run in-process against
L{FakeConsole}, an in-memory socket that plays pgtwist's admin console with
L{pgtwist.wire} (no network, no threads).
"""

from __future__ import annotations

import getpass
import io
import json
import os
import pwd
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from pgtwist import __version__
from pgtwist.auth._md5 import md5Response
from pgtwist.auth._scram import ScramServer, makeSecret
from pgtwist.cli import _client
from pgtwist.cli import control as cli
from pgtwist.cli._client import AuthRequirement, CommandFailed, ConsoleClient, ConsoleUnavailable
from pgtwist.cli._commands import (
    ALIASES,
    Request,
    UsageError,
    formatTable,
    parseCommand,
    quoteName,
    sameValue,
)
from pgtwist.wire import codec, constants
from pgtwist.wire.framing import MessageFramer, StartupFramer
from pgtwist.wire.messages import (
    AuthenticationRequest,
    BackendKeyData,
    CommandComplete,
    DataRow,
    ErrorResponse,
    FieldDescription,
    Message,
    NoticeResponse,
    ParameterStatus,
    PasswordMessage,
    Query,
    ReadyForQuery,
    RowDescription,
    SSLRequest,
    StartupMessage,
    Terminate,
)
from tests.unit._tempdir import temporaryDirectory

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.9 and 3.10 (PyPy): tomli, what became tomllib
    import tomli as tomllib

#: Type OIDs for L{resultSet}.
TEXT, INT4, INT8, NUMERIC = 25, 23, 20, 1700

#: An answer that makes the fake close the connection instead of replying.
HANG_UP: list[Message] = []


def resultSet(
    columns: Sequence[str | tuple[str, int]], rows: Iterable[Sequence[object]], tag: str = "SHOW"
) -> list[Message]:
    """
    A result set's messages: RowDescription, a DataRow per row, CommandComplete.
    Columns are names (text) or (name, type OID); C{None} values are NULL.
    """
    fields = tuple(
        FieldDescription(c) if isinstance(c, str) else FieldDescription(c[0], typeOid=c[1])
        for c in columns
    )
    messages: list[Message] = [RowDescription(fields)]
    for row in rows:
        messages.append(DataRow(tuple(None if v is None else str(v).encode() for v in row)))
    messages.append(CommandComplete(tag))
    return messages


def error(message: str, code: str = "08P01") -> ErrorResponse:
    """
    An ERROR-level ErrorResponse.
    """
    return ErrorResponse(((b"S", "ERROR"), (b"V", "ERROR"), (b"C", code), (b"M", message)))


def notice(message: str, detail: str = "") -> NoticeResponse:
    """
    A NOTICE, optionally with a detail.
    """
    fields: tuple[tuple[bytes, str], ...] = ((b"S", "NOTICE"), (b"M", message))
    if detail:
        fields += ((b"D", detail),)
    return NoticeResponse(fields)


STATUS_ROWS = [
    ("status", "running"),
    ("active_connections", "1"),
    ("total_connections", "3"),
    ("max_connections", "10"),
    ("clients", "2"),
    ("server.primary", "primary 127.0.0.1:5432"),
    ("server.replica", "standby /tmp:5433"),
]

CONFIG_ROWS = [
    ("max_connections", "10", "100", "no"),
    ("idle_timeout", "0", "0", "yes"),
    ("log_connections", "off", "off", "yes"),
]


def defaultAnswers() -> dict[str, list[Message]]:
    """
    The console's answers to the queries the CLI sends, as pgtwist would.
    """
    return {
        "SHOW VERSION": resultSet(["version"], [("pgtwist 0.1.0",)]),
        "SHOW STATUS": resultSet(["key", "value"], STATUS_ROWS),
        "SHOW FILES": resultSet(
            ["name", "path"],
            [("config", "/etc/pgtwist/pgtwist.conf"), ("hba", "/etc/pgtwist/hba"), ("users", "")],
        ),
        "SHOW CONFIG": resultSet(["key", "value", "default", "changeable"], CONFIG_ROWS),
        "SHOW POOLS": resultSet(
            ["database", "user", ("cl_active", INT4), ("maxwait", INT4), "pool_mode"],
            [("app", "alice", 1, 0, "transaction")],
        ),
        "SHOW SERVERS": resultSet(["type", "user", "database", ("port", INT4)], []),
        "SHOW CLIENTS": resultSet(
            ["type", "user", "database", ("port", INT4)], [("C", "alice", "app", 40000)]
        ),
    }


#: The salt L{FakeConsole} sends with an md5 request.
MD5_SALT = b"salt"


class FakeConsole:
    """
    An in-memory socket playing pgtwist's admin console: it frames what the
    client sends, answers the startup (trust, or when C{password} is set the
    authentication C{method} asks for) and each query from C{answers}
    (unknown ones get PgBouncer's error), and records everything.

    @ivar startup: The client's StartupMessage.
    @ivar queries: The SQL of every Query, in order.
    @ivar passwords: The body of every PasswordMessage (SASL and password
        answers), in order: what a hostile server would have learnt.
    @ivar chunk: The most bytes one C{recv} returns (1: a byte at a time).
    @ivar sslRequests: How many SSLRequests came before the startup; each
        is answered L{sslAnswer} (C{N}: no TLS, as a pgtwist without it).
    @ivar method: What a password login asks for: C{"scram-sha-256"},
        C{"password"} (cleartext) or C{"md5"}, libpq's C{require_auth}
        words.
    """

    def __init__(
        self,
        answers: dict[str, list[Message]] | None = None,
        password: str | None = None,
        chunk: int = 65536,
        method: str = "scram-sha-256",
    ) -> None:
        self.answers = defaultAnswers()
        self.answers.update(answers or {})
        self.password = password
        self.chunk = chunk
        self.method = method
        self.passwords: list[bytes] = []
        self.startup: StartupMessage | None = None
        self.queries: list[str] = []
        self.terminated = False
        self.closed = False
        self.hungUp = False
        self.forgeSignature = False
        self.sslRequests = 0
        self.sslAnswer = b"N"
        self._startupFramer: StartupFramer | None = StartupFramer()
        self._framer = MessageFramer()
        self._out = bytearray()
        self._scram: ScramServer | None = None

    def _reply(self, *messages: Message) -> None:
        self._out += codec.encodeAll(messages)

    def _welcome(self) -> None:
        self._reply(
            AuthenticationRequest(constants.AUTH_OK),
            ParameterStatus("server_version", "15.0"),
            BackendKeyData(1, 2),
            ReadyForQuery(),
        )

    def sendall(self, data: bytes) -> None:
        """
        Take the client's bytes and queue the answers.
        """
        if self._startupFramer is not None:
            frames = self._startupFramer.feed(data)
            if not frames:
                return
            message = codec.decodeStartupPacket(frames[0].body)
            if isinstance(message, SSLRequest):
                self.sslRequests += 1
                self._out += self.sslAnswer
                remainder = self._startupFramer.takeRemainder()
                self._startupFramer = StartupFramer()
                if remainder:
                    self.sendall(remainder)
                return
            assert isinstance(message, StartupMessage)
            self.startup = message
            data = self._startupFramer.takeRemainder()
            self._startupFramer = None
            if self.password is None:
                self._welcome()
            elif self.method == "password":
                self._reply(AuthenticationRequest(constants.AUTH_CLEARTEXT_PASSWORD))
            elif self.method == "md5":
                self._reply(AuthenticationRequest(constants.AUTH_MD5_PASSWORD, MD5_SALT))
            else:
                mechanisms = codec.encodeSASLMechanisms(["SCRAM-SHA-256"])
                self._reply(AuthenticationRequest(constants.AUTH_SASL, mechanisms))
        for frame in self._framer.feed(data):
            self._received(codec.decodeFrontend(frame.type, frame.body))

    def _received(self, message: Message) -> None:
        if isinstance(message, PasswordMessage):
            self._authenticate(message.data)
        elif isinstance(message, Terminate):
            self.terminated = True
        elif isinstance(message, Query):
            self.queries.append(message.sql)
            answer = self.answers.get(message.sql)
            if answer is HANG_UP:
                self.hungUp = True
                return
            if answer is None:
                answer = [error(f"invalid command '{message.sql}', use SHOW HELP;")]
            self._reply(*answer, ReadyForQuery())

    def _authenticate(self, data: bytes) -> None:
        assert self.password is not None
        self.passwords.append(data)
        if self.method in ("password", "md5"):
            expected = self.password
            if self.method == "md5":
                user = self.startup.parameters["user"] if self.startup else ""
                expected = md5Response(self.password, user, MD5_SALT)
            if data == codec.encodeString(expected):
                self._welcome()
            else:
                self._reply(error('password authentication failed for user "admin"', "28P01"))
                self.hungUp = True
            return
        if self._scram is None:
            mechanism, payload = codec.parseSASLInitialResponse(data)
            assert mechanism == "SCRAM-SHA-256" and payload is not None
            self._scram = ScramServer(makeSecret(self.password, b"0123456789abcdef"), "srvnonce")
            first = self._scram.clientFirst(payload)
            self._reply(AuthenticationRequest(constants.AUTH_SASL_CONTINUE, first))
            return
        final = self._scram.clientFinal(data)
        if final is None:
            self._reply(error('password authentication failed for user "admin"', "28P01"))
            self.hungUp = True
            return
        if self.forgeSignature:
            final = b"v=" + b"A" * 44
        self._reply(AuthenticationRequest(constants.AUTH_SASL_FINAL, final))
        self._welcome()

    def recv(self, size: int) -> bytes:
        """
        Up to C{size} (and L{chunk}) queued bytes; C{b""} after a hang-up;
        a timeout when the client waits for an answer that never comes.
        """
        if not self._out:
            if self.hungUp:
                return b""
            raise TimeoutError("timed out")
        data = bytes(self._out[: min(size, self.chunk)])
        del self._out[: len(data)]
        return data

    def close(self) -> None:
        """
        The client closed its socket.
        """
        self.closed = True


class ConsoleClientTests(SynchronousTestCase):
    """
    Tests for L{ConsoleClient}: login and the simple query protocol.
    """

    def test_trustedLogin(self) -> None:
        """
        The startup names the user, the database and the application; a
        trusted login ends at ReadyForQuery without a password.
        """
        console = FakeConsole()
        client = ConsoleClient(console)
        client.login("alice", "pgtwist")
        assert console.startup is not None
        self.assertEqual(console.startup.parameters["user"], "alice")
        self.assertEqual(console.startup.parameters["database"], "pgtwist")
        self.assertEqual(console.startup.parameters["application_name"], "pgtwist-cli")

    def test_byteAtATime(self) -> None:
        """
        Replies that arrive one byte per C{recv} are framed all the same.
        """
        client = ConsoleClient(FakeConsole(chunk=1))
        client.login("alice", "pgtwist")
        reply = client.query("SHOW STATUS")
        self.assertEqual(reply.tag, "SHOW")
        self.assertEqual(reply.resultSet.texts(), STATUS_ROWS)

    def test_scramLogin(self) -> None:
        """
        A SCRAM-SHA-256 login with the right password succeeds and the
        server's signature is checked.
        """
        console = FakeConsole(password="s3cret")
        client = ConsoleClient(console)
        client.login("admin", "pgtwist", "s3cret", nonce=lambda: "clientnonce")
        self.assertEqual(client.query("SHOW VERSION").resultSet.texts(), [("pgtwist 0.1.0",)])

    def test_scramWrongPassword(self) -> None:
        """
        A wrong password is an authentication failure with the server's text.
        """
        client = ConsoleClient(FakeConsole(password="s3cret"))
        e = self.assertRaises(ConsoleUnavailable, client.login, "admin", "pgtwist", "nope")
        self.assertTrue(e.authentication)
        self.assertIn("password authentication failed", str(e))

    def test_forgedServerSignature(self) -> None:
        """
        A server that cannot prove it knows the password is refused.
        """
        console = FakeConsole(password="s3cret")
        console.forgeSignature = True
        client = ConsoleClient(console)
        e = self.assertRaises(ConsoleUnavailable, client.login, "admin", "pgtwist", "s3cret")
        self.assertIn("incorrect server signature", str(e))

    def test_okBeforeScramFinal(self) -> None:
        """
        AuthenticationOk in the middle of SCRAM (before the server's proof)
        is refused.
        """
        console = FakeConsole()
        console.sendall = [].append  # type: ignore[method-assign]
        client = ConsoleClient(console)
        mechanisms = codec.encodeSASLMechanisms(["SCRAM-SHA-256"])
        scram = client._authenticate(
            AuthenticationRequest(constants.AUTH_SASL, mechanisms), "u", "p", None, lambda: "n"
        )
        self.assertRaises(
            ConsoleUnavailable,
            client._authenticate,
            AuthenticationRequest(constants.AUTH_OK),
            "u",
            "p",
            scram,
            lambda: "n",
        )

    def test_passwordNeeded(self) -> None:
        """
        A password request without a password is an authentication failure
        that says how to log in.
        """
        client = ConsoleClient(FakeConsole(password="s3cret"))
        e = self.assertRaises(ConsoleUnavailable, client.login, "admin", "pgtwist")
        self.assertTrue(e.authentication)
        self.assertIn("-P", str(e))

    def test_cleartextRefused(self) -> None:
        """
        With a password, a server that asks for it in cleartext is refused
        by default, in libpq's words, and never gets it.
        """
        console = FakeConsole(password="s3cret", method="password")
        e = self.assertRaises(
            ConsoleUnavailable, ConsoleClient(console).login, "admin", "pgtwist", "s3cret"
        )
        self.assertEqual(
            str(e),
            'authentication method requirement "scram-sha-256" failed: '
            "server requested a cleartext password",
        )
        self.assertFalse(e.authentication)
        self.assertEqual(console.passwords, [])

    def test_md5Refused(self) -> None:
        """
        With a password, a server that asks for an md5 hash of it is
        refused by default and gets nothing.
        """
        console = FakeConsole(password="s3cret", method="md5")
        e = self.assertRaises(
            ConsoleUnavailable, ConsoleClient(console).login, "admin", "pgtwist", "s3cret"
        )
        self.assertIn("server requested a hashed password", str(e))
        self.assertEqual(console.passwords, [])

    def test_trustRefusedWithPassword(self) -> None:
        """
        With a password, a server that lets the client in without any
        authentication is refused by default: it has not proven it knows
        the password, so it may not be pgtwist.
        """
        console = FakeConsole()
        e = self.assertRaises(
            ConsoleUnavailable, ConsoleClient(console).login, "admin", "pgtwist", "s3cret"
        )
        self.assertEqual(
            str(e),
            'authentication method requirement "scram-sha-256" failed: '
            "server did not complete authentication",
        )
        self.assertEqual(console.queries, [])

    def test_scramRefused(self) -> None:
        """
        A requirement that leaves out SCRAM refuses a SCRAM request too.
        """
        console = FakeConsole(password="s3cret")
        requirement = AuthRequirement.parse("md5")
        e = self.assertRaises(
            ConsoleUnavailable,
            ConsoleClient(console).login,
            "admin",
            "pgtwist",
            "s3cret",
            requireAuth=requirement,
        )
        self.assertIn('"md5" failed: server requested SASL authentication', str(e))
        self.assertEqual(console.passwords, [])

    def test_cleartextAndMd5Allowed(self) -> None:
        """
        Cleartext and md5 requests are answered as libpq does when the
        requirement allows them.
        """
        requirement = AuthRequirement.parse("password,md5")
        cleartext = FakeConsole(password="pw", method="password")
        ConsoleClient(cleartext).login("u", "pgtwist", "pw", requireAuth=requirement)
        self.assertEqual(cleartext.passwords, [b"pw\x00"])
        md5 = FakeConsole(password="pw", method="md5")
        ConsoleClient(md5).login("u", "pgtwist", "pw", requireAuth=requirement)
        self.assertEqual(md5.passwords, [codec.encodeString(md5Response("pw", "u", MD5_SALT))])

    def test_negatedRequirement(self) -> None:
        """
        C{!method} forbids that method and allows every other, C{none}
        included.
        """
        requirement = AuthRequirement.parse("!password")
        ConsoleClient(FakeConsole(password="pw", method="md5")).login(
            "u", "pgtwist", "pw", requireAuth=requirement
        )
        ConsoleClient(FakeConsole()).login("u", "pgtwist", "pw", requireAuth=requirement)
        console = FakeConsole(password="pw", method="password")
        e = self.assertRaises(
            ConsoleUnavailable,
            ConsoleClient(console).login,
            "u",
            "pgtwist",
            "pw",
            requireAuth=requirement,
        )
        self.assertIn('"!password" failed: server requested a cleartext password', str(e))
        self.assertEqual(console.passwords, [])

    def test_unknownMethodRefused(self) -> None:
        """
        A method this client does not speak (GSSAPI) is refused by name.
        """
        console = FakeConsole()
        console.sendall = [].append  # type: ignore[method-assign]
        client = ConsoleClient(console)
        e = self.assertRaises(
            ConsoleUnavailable,
            client._authenticate,
            AuthenticationRequest(constants.AUTH_GSS),
            "u",
            "p",
            None,
            str,
        )
        self.assertIn("server requested GSSAPI authentication", str(e))

    def test_parseRequirement(self) -> None:
        """
        L{AuthRequirement.parse} reads libpq's lists and refuses unknown
        names, repeats and a mix of C{!} and plain names.
        """
        requirement = AuthRequirement.parse("md5, scram-sha-256")
        self.assertEqual(requirement.methods, frozenset({"md5", "scram-sha-256"}))
        self.assertTrue(requirement.allows("md5"))
        self.assertFalse(requirement.allows("password"))
        self.assertFalse(requirement.allows("none"))
        negated = AuthRequirement.parse("!none")
        self.assertTrue(negated.negated)
        self.assertFalse(negated.allows("none"))
        self.assertTrue(negated.allows("scram-sha-256"))
        for spec, fragment in (
            ("gss", 'invalid require_auth method "gss"'),
            ("", 'invalid require_auth method ""'),
            ("md5,md5", "more than once"),
            ("!md5,password", "cannot be mixed"),
        ):
            e = self.assertRaises(ValueError, AuthRequirement.parse, spec)
            self.assertIn(fragment, str(e))

    def test_loginRefused(self) -> None:
        """
        An ErrorResponse during login is a connection error with its text.
        """
        console = FakeConsole()
        console._welcome = lambda: console._reply(error("no such user", "28000"))  # type: ignore[method-assign]
        console.hungUp = True
        e = self.assertRaises(ConsoleUnavailable, ConsoleClient(console).login, "x", "pgtwist")
        self.assertEqual(str(e), "no such user")
        self.assertTrue(e.authentication)

    def test_multipleResultsAndNotices(self) -> None:
        """
        Every statement's result and every notice of one query are kept;
        typed columns become Python numbers.
        """
        console = FakeConsole(
            {
                "SHOW POOLS": [
                    notice("first"),
                    *resultSet([("n", INT8), ("x", NUMERIC), "s"], [(1, "2.5", None)]),
                    *resultSet([], [], tag="RELOAD"),
                ]
            }
        )
        client = ConsoleClient(console)
        client.login("alice", "pgtwist")
        reply = client.query("SHOW POOLS")
        self.assertEqual(len(reply.results), 2)
        self.assertEqual(reply.tag, "RELOAD")
        self.assertEqual(reply.resultSet.records(), [{"n": 1, "x": 2.5, "s": None}])
        self.assertEqual([dict(n.fields)[b"M"] for n in reply.notices], ["first"])

    def test_errorLeavesConnectionUsable(self) -> None:
        """
        An ErrorResponse raises L{CommandFailed} after ReadyForQuery, so the
        next query works.
        """
        client = ConsoleClient(FakeConsole())
        client.login("alice", "pgtwist")
        e = self.assertRaises(CommandFailed, client.query, "BOGUS")
        self.assertEqual(e.error.code, "08P01")
        self.assertIn("invalid command", str(e))
        self.assertEqual(client.query("SHOW VERSION").tag, "SHOW")

    def test_hangUp(self) -> None:
        """
        A connection closed before ReadyForQuery is L{ConsoleUnavailable}.
        """
        client = ConsoleClient(FakeConsole({"SHUTDOWN": HANG_UP}))
        client.login("alice", "pgtwist")
        e = self.assertRaises(ConsoleUnavailable, client.query, "SHUTDOWN")
        self.assertEqual(str(e), "pgtwist closed the connection")

    def test_timeout(self) -> None:
        """
        A reply that never comes is reported as a timeout.
        """
        console = FakeConsole()
        client = ConsoleClient(console)
        client.login("alice", "pgtwist")
        console.answers["SLOW"] = []
        console._reply = lambda *messages: None  # type: ignore[method-assign]
        e = self.assertRaises(ConsoleUnavailable, client.query, "SLOW")
        self.assertIn("timed out", str(e))

    def test_garbage(self) -> None:
        """
        Bytes that are not the protocol are a connection error.
        """
        console = FakeConsole()
        client = ConsoleClient(console)
        console._out += b"Z\x00\x00\x00\x02"
        self.assertRaises(ConsoleUnavailable, client._receive)

    def test_close(self) -> None:
        """
        L{ConsoleClient.close} sends Terminate and closes the socket.
        """
        console = FakeConsole()
        client = ConsoleClient(console)
        client.login("alice", "pgtwist")
        client.close()
        self.assertTrue(console.terminated)
        self.assertTrue(console.closed)


class ParseCommandTests(SynchronousTestCase):
    """
    Tests for L{parseCommand}: pgagroal-cli's commands, defaults and aliases.
    """

    def assertParses(self, words: str, name: str, *arguments: str) -> None:
        """
        C{words} parse to the request C{name} with C{arguments}.
        """
        self.assertEqual(parseCommand(words.split()), Request(name, arguments))

    def test_flush(self) -> None:
        """
        C{flush [gracefully|idle|all] [*|db]} defaults to gracefully and all
        databases; a lone word that is no mode is a database.
        """
        self.assertParses("flush", "flush", "gracefully", "*")
        self.assertParses("flush idle", "flush", "idle", "*")
        self.assertParses("flush all app", "flush", "all", "app")
        self.assertParses("flush app", "flush", "gracefully", "app")
        self.assertParses("flush gracefully *", "flush", "gracefully", "*")
        self.assertRaises(UsageError, parseCommand, ["flush", "idle", "a", "b"])

    def test_simpleCommands(self) -> None:
        """
        C{ping}, C{enable}, C{disable}, C{shutdown}, C{status}, C{switch-to}.
        """
        self.assertParses("ping", "ping")
        self.assertParses("enable", "enable", "*")
        self.assertParses("disable app", "disable", "app")
        self.assertParses("shutdown", "shutdown", "gracefully")
        self.assertParses("shutdown immediate", "shutdown", "immediate")
        self.assertParses("shutdown cancel", "shutdown", "cancel")
        self.assertParses("status", "status")
        self.assertParses("status details", "status details")
        self.assertParses("switch-to replica", "switch-to", "replica")

    def test_confAndClear(self) -> None:
        """
        C{conf reload|ls|get [key]|set key value} and C{clear prometheus|
        [server] name}.
        """
        self.assertParses("conf reload", "conf reload")
        self.assertParses("conf ls", "conf ls")
        self.assertParses("conf get", "conf get")
        self.assertParses("conf get max_connections", "conf get", "max_connections")
        self.assertParses("conf set idle_timeout 5", "conf set", "idle_timeout", "5")
        self.assertParses("clear prometheus", "clear prometheus")
        self.assertParses("clear server primary", "clear server", "primary")
        self.assertParses("clear primary", "clear server", "primary")

    def test_aliases(self) -> None:
        """
        pgagroal's older names stand for the new commands, arguments kept.
        """
        self.assertParses("flush-idle", "flush", "idle", "*")
        self.assertParses("flush-gracefully app", "flush", "gracefully", "app")
        self.assertParses("flush-all", "flush", "all", "*")
        self.assertParses("is-alive", "ping")
        self.assertParses("enabledb app", "enable", "app")
        self.assertParses("disabledb", "disable", "*")
        self.assertParses("gracefully", "shutdown", "gracefully")
        self.assertParses("stop", "shutdown", "immediate")
        self.assertParses("cancel-shutdown", "shutdown", "cancel")
        self.assertParses("details", "status details")
        self.assertParses("reload", "conf reload")
        self.assertParses("reset", "clear prometheus")
        self.assertParses("reset-server primary", "clear server", "primary")
        self.assertParses("config-get port", "conf get", "port")
        self.assertParses("config-set port 1", "conf set", "port", "1")
        for alias in ALIASES:
            self.assertNotIn(alias, ("flush", "ping", "status", "conf", "clear"))

    def test_errors(self) -> None:
        """
        Unknown commands, modes and wrong argument counts are usage errors.
        """
        for words in (
            [],
            ["bogus"],
            ["ping", "x"],
            ["shutdown", "now"],
            ["status", "more"],
            ["switch-to"],
            ["conf"],
            ["conf", "edit"],
            ["conf", "set", "key"],
            ["conf", "ls", "x"],
            ["clear"],
            ["clear", "server"],
            ["enable", "a", "b"],
        ):
            self.assertRaises(UsageError, parseCommand, words)


class HelperTests(SynchronousTestCase):
    """
    Tests for quoting, value comparison and table drawing.
    """

    def test_quoteName(self) -> None:
        """
        Plain lowercase words and C{*} stay bare; anything else is
        double-quoted with inner quotes doubled (PgBouncer's C{WORD}).
        """
        self.assertEqual(quoteName("app_1"), "app_1")
        self.assertEqual(quoteName("*"), "*")
        self.assertEqual(quoteName("My-DB"), '"My-DB"')
        self.assertEqual(quoteName('a"b'), '"a""b"')

    def test_sameValue(self) -> None:
        """
        Values compare by meaning: case, booleans, numbers, durations, sizes.
        """
        self.assertTrue(sameValue("Debug", "debug"))
        self.assertTrue(sameValue("on", "true"))
        self.assertTrue(sameValue("60", "1m"))
        self.assertTrue(sameValue("5", "5.0"))
        self.assertTrue(sameValue("1048576", "1MB"))
        self.assertFalse(sameValue("10", "20"))
        self.assertFalse(sameValue("info", "debug"))

    def test_formatTable(self) -> None:
        """
        Columns are aligned under a centred header and a rule, psql-style,
        with the row count last.
        """
        self.assertEqual(
            formatTable(["name", "n"], [("alpha", 1), ("b", None)]),
            [" name  | n", "-------+---", " alpha | 1", " b     |", "(2 rows)"],
        )
        self.assertEqual(formatTable(["x"], []), [" x", "---", "(0 rows)"])


class _CliTestCase(SynchronousTestCase):
    """
    Runs C{pgtwist-cli} in-process with captured streams, a configuration
    file in a temporary directory, and the connect functions patched to hand
    out a L{FakeConsole}.

    @ivar console: The fake the next connection gets.
    @ivar connections: (kind, address) of each connection made.
    """

    def setUp(self) -> None:
        self.directory = temporaryDirectory(self)
        self.config = self.directory / "pgtwist.conf"
        self.config.write_text(
            "[pgtwist]\nhost = 127.0.0.1\nport = 6543\n"
            f"unix_socket_dir = {self.directory}\n\n[primary]\nhost = 127.0.0.1\nport = 5432\n"
        )
        self.console = FakeConsole()
        self.connections: list[tuple[str, object]] = []

        def connectUnix(path: str, timeout: float) -> FakeConsole:
            self.connections.append(("unix", path))
            return self.nextConsole()

        def connectTcp(host: str, port: int, timeout: float) -> FakeConsole:
            self.connections.append(("tcp", (host, port)))
            return self.nextConsole()

        self.patch(_client, "connectUnix", connectUnix)
        self.patch(_client, "connectTcp", connectTcp)
        #: The environment without libpq's TLS variables, which would
        #: change what the tests run (see L{cli.TLS_ENVIRONMENT}).
        self.environ = {
            k: v for k, v in os.environ.items() if k not in dict(cli.TLS_ENVIRONMENT).values()
        }
        self.patch(os, "environ", self.environ)

    def nextConsole(self) -> FakeConsole:
        """
        L{console} for a new connection: as it is if unused, else a fresh
        fake with the same answers and password (one process per connection).
        """
        if self.console.startup is not None:
            used = self.console
            self.console = FakeConsole(used.answers, used.password, method=used.method)
        return self.console

    def invoke(self, *argv: str, local: bool = True) -> tuple[int, str, str]:
        """
        Run C{pgtwist-cli argv...} (with C{-c} for the test's configuration
        when C{local}).

        @return: The exit status, standard output and standard error.
        """
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        arguments = ["-c", str(self.config), *argv] if local else list(argv)
        status = cli.main(arguments)
        return status, out.getvalue(), err.getvalue()

    def invokeJson(self, *argv: str, status: int = 0) -> dict[str, object]:
        """
        Run with C{-F json}, check the exit status and the document's
        wrapper, and return its C{command} object.
        """
        code, out, err = self.invoke("-F", "json", *argv)
        self.assertEqual(code, status, out + err)
        document = json.loads(out)
        self.assertEqual(document["application"], cli.applicationInfo())
        command: dict[str, object] = document["command"]
        self.assertEqual(command["exit-status"], status)
        self.assertEqual(command["error"], 0 if status == 0 else 1)
        return command


class OptionsTests(_CliTestCase):
    """
    Tests for the options and their combinations.
    """

    def test_version(self) -> None:
        """
        C{-V} prints the program and version.
        """
        self.assertEqual(self.invoke("-V", local=False), (0, f"pgtwist-cli {__version__}\n", ""))

    def test_consoleScript(self) -> None:
        """
        The package installs C{pgtwist-cli} as this module's C{main}.
        """
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        with pyproject.open("rb") as f:
            scripts = tomllib.load(f)["project"]["scripts"]
        self.assertEqual(scripts["pgtwist-cli"], "pgtwist.cli.control:main")

    def test_help(self) -> None:
        """
        C{-?} and C{--help} print the usage, which lists every command and
        alias.
        """
        for flag in ("-?", "--help"):
            status, out, err = self.invoke(flag, local=False)
            self.assertEqual((status, err), (0, ""))
            self.assertIn("switch-to <server>", out)
            for alias in ALIASES:
                self.assertIn(alias, out)

    def test_noCommand(self) -> None:
        """
        Without a command the usage is printed and the exit status is 1,
        as pgagroal-cli does.
        """
        status, out, err = self.invoke()
        self.assertEqual(status, 1)
        self.assertIn("Usage:", out)
        self.assertEqual(self.connections, [])

    def test_usageErrors(self) -> None:
        """
        Unknown commands and contradictory options exit 1 with one line on
        standard error, before connecting.
        """
        for argv, fragment in (
            (["bogus"], "unknown command 'bogus'"),
            (["-h", "localhost", "ping"], "both -h and -p"),
            (["-p", "6543", "ping"], "both -h and -p"),
            (["-U", "admin", "ping"], "also -h and -p"),
            (["-c", "x.conf", "-h", "h", "-p", "1", "ping"], "either -c or -h/-p"),
            (["-h", "h", "-p", "http", "ping"], "out of range"),
            (["-F", "xml", "ping"], "invalid choice"),
        ):
            status, out, err = self.invoke(*argv, local=False)
            self.assertEqual((status, out), (1, ""), argv)
            self.assertEqual(err.count("\n"), 1, err)
            self.assertIn(fragment, err)
        self.assertEqual(self.connections, [])

    def test_optionsAnywhere(self) -> None:
        """
        Options may follow the command, long forms included.
        """
        status, out, err = self.invoke("ping", "--format=json", "--verbose")
        self.assertEqual(status, 0, err)
        self.assertEqual(json.loads(out)["command"]["name"], "ping")

    def test_verbose(self) -> None:
        """
        C{-v} reports success or the error and its exit status on standard
        error, as pgagroal-cli's C{warnx}.
        """
        self.assertEqual(self.invoke("-v", "ping"), (0, "", "pgtwist-cli: Success (0)\n"))
        status, out, err = self.invoke("-v", "switch-to", "nowhere")
        self.assertEqual(status, 2)
        self.assertTrue(err.endswith("pgtwist-cli: Error (2)\n"), err)

    def test_logFile(self) -> None:
        """
        C{-L} appends each outcome to a log file, errors with their reason.
        """
        log = self.directory / "cli.log"
        self.invoke("-L", str(log), "ping")
        self.invoke("-L", str(log), "switch-to", "nowhere")
        text = log.read_text()
        self.assertIn("ping: OK", text)
        self.assertIn("switch-to failed (2): invalid command", text)

    def test_logFileUnwritable(self) -> None:
        """
        A log file that cannot be opened is a usage error.
        """
        status, out, err = self.invoke("-L", str(self.directory / "no" / "log"), "ping")
        self.assertEqual(status, 1)
        self.assertIn("cannot open the log file", err)


class LocalModeTests(_CliTestCase):
    """
    Tests for local mode: the unix socket from the configuration, as the
    current OS user.
    """

    def test_socketAndUser(self) -> None:
        """
        The CLI connects to C{<unix_socket_dir>/.s.PGSQL.<port>} and logs in
        to database C{pgtwist} as the OS user, then says goodbye.
        """
        status, out, err = self.invoke("ping")
        self.assertEqual((status, out, err), (0, "", ""))
        self.assertEqual(self.connections, [("unix", f"{self.directory}/.s.PGSQL.6543")])
        assert self.console.startup is not None
        self.assertEqual(self.console.startup.parameters["user"], pwd.getpwuid(os.getuid()).pw_name)
        self.assertEqual(self.console.startup.parameters["database"], "pgtwist")
        self.assertEqual(self.console.queries, ["SHOW VERSION"])
        self.assertTrue(self.console.terminated)

    def test_configDirectoryVariable(self) -> None:
        """
        Without C{-c}, C{pgagroal.conf} in C{$PGTWIST_CONFIG_DIR} is used.
        """
        self.config.rename(self.directory / "pgagroal.conf")
        self.patch(os, "environ", dict(os.environ, PGTWIST_CONFIG_DIR=str(self.directory)))
        status, out, err = self.invoke("ping", local=False)
        self.assertEqual(status, 0, err)
        self.assertEqual(len(self.connections), 1)

    def test_noConfiguration(self) -> None:
        """
        Without C{-c} and no file in the usual places, exit 1 saying so.
        """
        self.patch(cli, "CONFIG_DIRECTORY", str(self.directory / "none"))
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if "PGTWIST" not in k})
        status, out, err = self.invoke("ping", local=False)
        self.assertEqual(status, 1)
        self.assertIn("no configuration file", err)

    def test_badConfiguration(self) -> None:
        """
        An unreadable configuration is a connection error naming the file.
        """
        self.config.write_text("[pgtwist]\nport = x\n")
        status, out, err = self.invoke("ping")
        self.assertEqual(status, 1)
        self.assertIn(str(self.config), err)

    def test_noUnixSocket(self) -> None:
        """
        A configuration without C{unix_socket_dir} cannot be reached locally.
        """
        self.config.write_text("[pgtwist]\nhost = *\nport = 1\n\n[s]\nhost = h\nport = 2\n")
        status, out, err = self.invoke("ping")
        self.assertEqual(status, 1)
        self.assertIn("unix_socket_dir", err)
        self.assertEqual(self.connections, [])

    def test_notRunning(self) -> None:
        """
        When nothing listens, C{ping} exits 1 (and says why; JSON too).
        """

        def refuse(path: str, timeout: float) -> FakeConsole:
            raise ConsoleUnavailable(f"cannot connect to {path}: Connection refused")

        self.patch(_client, "connectUnix", refuse)
        status, out, err = self.invoke("ping")
        self.assertEqual((status, out), (1, ""))
        self.assertIn("Connection refused", err)
        command = self.invokeJson("ping", status=1)
        self.assertIn("Connection refused", str(command["status"]))

    def test_loginRefused(self) -> None:
        """
        A peer the console does not trust gets the hint to log in remotely.
        """
        self.console.password = "secret"
        status, out, err = self.invoke("status")
        self.assertEqual(status, 1)
        self.assertIn("asks for a password", err)
        self.assertTrue(self.console.closed)


class RemoteModeTests(_CliTestCase):
    """
    Tests for remote mode: TCP to C{-h}/C{-p} and a SCRAM login.
    """

    def test_login(self) -> None:
        """
        C{-h -p -U -P} connect over TCP and log in with SCRAM.
        """
        self.console.password = "s3cret"
        argv = ["-h", "127.0.0.1", "-p", "6544", "-U", "admin", "-P", "s3cret", "status"]
        status, out, err = self.invoke(*argv, local=False)
        self.assertEqual(status, 0, err)
        self.assertEqual(self.connections, [("tcp", ("127.0.0.1", 6544))])
        assert self.console.startup is not None
        self.assertEqual(self.console.startup.parameters["user"], "admin")
        self.assertEqual(self.console.queries, ["SHOW STATUS"])

    def test_downgradeRefused(self) -> None:
        """
        A server that asks for a cleartext or md5 password makes the CLI
        exit 1 with one line naming what it asked for; the password is
        never sent and no command runs.
        """
        for method, asked in (
            ("password", "a cleartext password"),
            ("md5", "a hashed password"),
        ):
            self.console = FakeConsole(password="s3cret", method=method)
            argv = ["-h", "127.0.0.1", "-p", "6544", "-U", "admin", "-P", "s3cret", "status"]
            status, out, err = self.invoke(*argv, local=False)
            self.assertEqual((status, out), (1, ""), method)
            self.assertEqual(
                err,
                'pgtwist-cli: authentication method requirement "scram-sha-256" failed: '
                f"server requested {asked}\n",
            )
            self.assertEqual(self.console.passwords, [])
            self.assertEqual(self.console.queries, [])
            self.assertTrue(self.console.closed)

    def test_requireAuthAllowsMd5(self) -> None:
        """
        C{--require-auth md5} (or a list with it) lets an md5 server in,
        and still refuses cleartext.
        """
        self.console = FakeConsole(password="s3cret", method="md5")
        argv = ["-h", "127.0.0.1", "-p", "6544", "-U", "admin", "-P", "s3cret"]
        status, out, err = self.invoke(
            *argv, "--require-auth", "scram-sha-256,md5", "ping", local=False
        )
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(len(self.console.passwords), 1)
        self.assertEqual(self.console.queries, ["SHOW VERSION"])
        self.console = FakeConsole(password="s3cret", method="password")
        status, out, err = self.invoke(*argv, "--require-auth=md5", "ping", local=False)
        self.assertEqual(status, 1)
        self.assertIn('requirement "md5" failed: server requested a cleartext password', err)
        self.assertEqual(self.console.passwords, [])

    def test_requireAuthUsage(self) -> None:
        """
        An invalid C{--require-auth} list, or the option in local mode, is a
        usage error before connecting.
        """
        remote = ["-h", "h", "-p", "1", "-U", "u", "-P", "p"]
        status, out, err = self.invoke(*remote, "--require-auth", "kerberos", "ping", local=False)
        self.assertEqual(status, 1)
        self.assertIn('--require-auth: invalid require_auth method "kerberos"', err)
        status, out, err = self.invoke("--require-auth", "md5", "ping")
        self.assertEqual(status, 1)
        self.assertIn("also -h and -p", err)
        self.assertEqual(self.connections, [])

    def test_badCredentials(self) -> None:
        """
        A wrong password exits 1 with pgagroal's "Bad credentials".
        """
        self.console.password = "s3cret"
        argv = ["-h", "127.0.0.1", "-p", "6544", "-U", "admin", "-P", "bad", "ping"]
        status, out, err = self.invoke(*argv, local=False)
        self.assertEqual(status, 1)
        self.assertIn("Bad credentials for admin", err)
        self.assertEqual(self.console.queries, [])

    def test_prompts(self) -> None:
        """
        Without C{-U} and C{-P} the user name and the password are asked for
        (the prompts go to standard error, keeping standard output clean).
        """
        self.console.password = "s3cret"
        prompts: list[str] = []

        def fakeGetpass(prompt: str = "") -> str:
            prompts.append(prompt)
            return "s3cret"

        self.patch(getpass, "getpass", fakeGetpass)
        self.patch(sys, "stdin", io.StringIO("\nadmin\n"))
        status, out, err = self.invoke("-h", "::1", "-p", "6544", "ping", local=False)
        self.assertEqual((status, out), (0, ""), err)
        self.assertEqual(err, "User name: User name: ")
        self.assertEqual(prompts, ["Password : "])

    def test_noUserName(self) -> None:
        """
        End of input at the user name prompt gives up with exit status 1.
        """
        self.patch(sys, "stdin", io.StringIO(""))
        status, out, err = self.invoke("-h", "h", "-p", "1", "ping", local=False)
        self.assertEqual(status, 1)
        self.assertIn("no user name", err)


class CommandTests(_CliTestCase):
    """
    Tests for what each command asks the console and what it prints.
    """

    def assertSends(self, argv: Sequence[str], *queries: str, tag: str = "OK") -> str:
        """
        Running C{argv} sends exactly C{queries} and succeeds.

        @return: Standard output.
        """
        for sql in queries:
            self.console.answers.setdefault(sql, [CommandComplete(tag)])
        status, out, err = self.invoke(*argv)
        self.assertEqual(status, 0, err)
        self.assertEqual(self.console.queries, list(queries))
        self.console = FakeConsole()
        return out

    def test_controlCommands(self) -> None:
        """
        Each control command is one console statement.
        """
        self.assertSends(["flush"], "FLUSH GRACEFULLY")
        self.assertSends(["flush", "idle", "app"], "FLUSH IDLE app")
        self.assertSends(["flush-all", "My-DB"], 'FLUSH ALL "My-DB"')
        self.assertSends(["enable"], "ENABLE *")
        self.assertSends(["disable", "app"], "DISABLE app")
        self.assertSends(["disabledb"], "DISABLE *")
        self.assertSends(["shutdown"], "SHUTDOWN GRACEFULLY")
        self.assertSends(["stop"], "SHUTDOWN IMMEDIATE")
        self.assertSends(["shutdown", "cancel"], "SHUTDOWN CANCEL")
        self.assertSends(["switch-to", "replica"], "SWITCH_TO replica")
        self.assertSends(["clear", "prometheus"], "CLEAR PROMETHEUS")
        self.assertSends(["reset-server", "primary"], "CLEAR SERVER primary")
        self.assertSends(["conf", "reload"], "RELOAD")

    def test_controlOutput(self) -> None:
        """
        A control command prints only the console's notices in text, and
        its arguments and tag in JSON.
        """
        self.console.answers["RELOAD"] = [
            notice("Configuration reloaded", "port needs a restart"),
            CommandComplete("RELOAD"),
        ]
        self.assertEqual(
            self.invoke("reload"), (0, "Configuration reloaded\nport needs a restart\n", "")
        )
        self.console.answers["FLUSH IDLE app"] = [CommandComplete("FLUSH")]
        command = self.invokeJson("flush", "idle", "app")
        self.assertEqual(command["name"], "flush")
        self.assertEqual(command["status"], "OK")
        self.assertEqual(command["output"], {"mode": "idle", "database": "app", "tag": "FLUSH"})

    def test_refused(self) -> None:
        """
        A command the console refuses exits 2 (pgagroal's data error) with
        the console's message, in JSON as the command's status.
        """
        self.console.answers["SWITCH_TO nowhere"] = [error("unknown server 'nowhere'")]
        status, out, err = self.invoke("switch-to", "nowhere")
        self.assertEqual((status, out), (2, ""))
        self.assertEqual(err, "pgtwist-cli: unknown server 'nowhere'\n")
        command = self.invokeJson("switch-to", "nowhere", status=2)
        self.assertEqual(command["status"], "unknown server 'nowhere'")
        self.assertEqual(
            command["output"], {"sqlstate": "08P01", "message": "unknown server 'nowhere'"}
        )

    def test_shutdownHangUp(self) -> None:
        """
        pgtwist closing the connection on a shutdown is success; on a cancel
        it is a connection error.
        """
        self.console.answers["SHUTDOWN IMMEDIATE"] = HANG_UP
        self.assertEqual(self.invoke("shutdown", "immediate"), (0, "", ""))
        self.console = FakeConsole({"SHUTDOWN CANCEL": HANG_UP})
        self.assertEqual(self.invoke("shutdown", "cancel")[0], 1)

    def test_ping(self) -> None:
        """
        C{ping} asks C{SHOW VERSION}; JSON says it is running, as pgagroal.
        """
        command = self.invokeJson("is-alive")
        self.assertEqual(command["name"], "ping")
        self.assertEqual(
            command["output"], {"status": 1, "message": "running", "version": "pgtwist 0.1.0"}
        )

    def test_statusText(self) -> None:
        """
        C{status} prints labelled counts and the servers.
        """
        status, out, err = self.invoke("status")
        self.assertEqual(status, 0, err)
        self.assertEqual(
            out.splitlines(),
            [
                "Status:              Running",
                "Active connections:  1",
                "Total connections:   3",
                "Max connections:     10",
                "Clients:             2",
                "Servers:",
                "  primary  primary 127.0.0.1:5432",
                "  replica  standby /tmp:5433",
            ],
        )

    def test_statusJson(self) -> None:
        """
        C{status} JSON follows pgagroal's shape: status, connections, and a
        list with its count; keys pgtwist adds later are kept.
        """
        self.console.answers["SHOW STATUS"] = resultSet(
            ["key", "value"], [*STATUS_ROWS, ("uptime", "12")]
        )
        command = self.invokeJson("status")
        self.assertEqual(
            command["output"],
            {
                "status": {"message": "Running", "status": 1},
                "connections": {"active": 1, "total": 3, "max": 10, "clients": 2},
                "uptime": 12,
                "servers": {
                    "list": [
                        {"name": "primary", "state": "primary", "address": "127.0.0.1:5432"},
                        {"name": "replica", "state": "standby", "address": "/tmp:5433"},
                    ],
                    "count": 2,
                },
            },
        )

    def test_statusGracefully(self) -> None:
        """
        During a graceful shutdown the status says so.
        """
        self.console.answers["SHOW STATUS"] = resultSet(
            ["key", "value"], [("status", "gracefully")]
        )
        output = self.invokeJson("status")["output"]
        assert isinstance(output, dict)
        self.assertEqual(output["status"], {"message": "Graceful shutdown", "status": 2})

    def test_statusDetails(self) -> None:
        """
        C{status details} adds pools, server and client connections: tables
        in text, typed lists in JSON.
        """
        out = self.assertSends(
            ["status", "details"], "SHOW STATUS", "SHOW POOLS", "SHOW SERVERS", "SHOW CLIENTS"
        )
        self.assertIn("Pools:", out)
        self.assertIn(" app      | alice |         1 |       0 | transaction", out)
        self.assertIn("Server connections:", out)
        self.assertIn("(0 rows)", out)
        output = self.invokeJson("details")["output"]
        assert isinstance(output, dict)
        self.assertEqual(
            output["pools"],
            {
                "list": [
                    {
                        "database": "app",
                        "user": "alice",
                        "cl_active": 1,
                        "maxwait": 0,
                        "pool_mode": "transaction",
                    }
                ],
                "count": 1,
            },
        )
        self.assertEqual(output["server_connections"], {"list": [], "count": 0})
        self.assertEqual(output["client_connections"]["count"], 1)  # type: ignore[index]

    def test_confLs(self) -> None:
        """
        C{conf ls} prints pgagroal's file descriptions and paths.
        """
        status, out, err = self.invoke("conf", "ls")
        self.assertEqual(
            out.splitlines(),
            [
                "Main Configuration file:   /etc/pgtwist/pgtwist.conf",
                "HBA file:                  /etc/pgtwist/hba",
                "Users file:",
            ],
        )
        output = self.invokeJson("conf", "ls")["output"]
        self.assertEqual(
            output["files"]["list"][0],  # type: ignore[index]
            {
                "name": "config",
                "description": "Main Configuration file",
                "path": "/etc/pgtwist/pgtwist.conf",
            },
        )

    def test_confGet(self) -> None:
        """
        C{conf get key} prints the value (C{key = value} with C{-v});
        pgagroal's C{pgagroal.} namespace is accepted.
        """
        self.assertEqual(self.invoke("conf", "get", "max_connections"), (0, "10\n", ""))
        self.assertEqual(self.invoke("config-get", "pgagroal.idle_timeout")[1], "0\n")
        self.assertEqual(
            self.invoke("conf", "get", "log_connections", "-v")[1], "log_connections = off\n"
        )
        command = self.invokeJson("conf", "get", "max_connections")
        self.assertEqual(
            command["output"],
            {"key": "max_connections", "value": "10", "default": "100", "changeable": "no"},
        )

    def test_confGetAll(self) -> None:
        """
        C{conf get} alone prints every setting.
        """
        status, out, err = self.invoke("conf", "get")
        self.assertEqual(
            out.splitlines(), ["max_connections = 10", "idle_timeout = 0", "log_connections = off"]
        )
        self.assertEqual(self.invokeJson("conf", "get")["output"]["count"], 3)  # type: ignore[index]

    def test_confGetUnknown(self) -> None:
        """
        An unknown key, or one of another namespace, prints nothing and exits 2.
        """
        for key in ("nope", "server.primary.port", "limit.app.max_size"):
            status, out, err = self.invoke("conf", "get", key)
            self.assertEqual((status, out), (2, ""), key)
            self.assertTrue(err.startswith("pgtwist-cli: "), err)

    def _settable(self, key: str, applied: bool) -> None:
        """
        Make the fake answer C{SET key = '5'} and show the new value only
        when C{applied}.
        """
        self.console.answers[f"SET {key} = '5'"] = [CommandComplete("SET")]
        original = self.console._received

        def received(message: Message) -> None:
            if applied and isinstance(message, Query) and message.sql.startswith("SET"):
                rows = [(k, "5" if k == key else v, d, c) for k, v, d, c in CONFIG_ROWS]
                self.console.answers["SHOW CONFIG"] = resultSet(
                    ["key", "value", "default", "changeable"], rows
                )
            original(message)

        self.console._received = received  # type: ignore[method-assign]

    def test_confSetApplied(self) -> None:
        """
        C{conf set} sends C{SET key = 'value'} between two C{SHOW CONFIG}s and
        reports the change.
        """
        self._settable("idle_timeout", applied=True)
        status, out, err = self.invoke("conf", "set", "idle_timeout", "5")
        self.assertEqual(status, 0, err)
        self.assertEqual(
            self.console.queries, ["SHOW CONFIG", "SET idle_timeout = '5'", "SHOW CONFIG"]
        )
        self.assertEqual(
            out.splitlines(),
            [
                "Configuration change applied successfully",
                "   Parameter: idle_timeout",
                "   Old value: 0",
                "   New value: 5",
                "   Status: Active (applied to running instance)",
            ],
        )

    def test_confSetNeedsRestart(self) -> None:
        """
        A value the running pgtwist did not take exits 2 with pgagroal's
        status text, and says a restart is needed.
        """
        self._settable("max_connections", applied=False)
        status, out, err = self.invoke("conf", "set", "max_connections", "5")
        self.assertEqual(status, 2)
        self.assertIn("Configuration change requires manual restart", out)
        self.assertIn("Current and expected values are different", err)
        self.console = FakeConsole()
        self._settable("max_connections", applied=False)
        command = self.invokeJson("conf", "set", "max_connections", "5", status=2)
        self.assertEqual(command["status"], "Current and expected values are different")
        self.assertEqual(
            command["output"],
            {
                "key": "max_connections",
                "value": "10",
                "expected": "5",
                "previous": "10",
                "applied": False,
                "restart_required": True,
            },
        )

    def test_confSetRefused(self) -> None:
        """
        A SET the console refuses exits 2 with its message and detail.
        """
        refusal = ErrorResponse(
            (*error("SET failed").fields, (b"D", "unknown parameter: bogus_key"))
        )
        self.console.answers["SET bogus_key = '1'"] = [refusal]
        status, out, err = self.invoke("conf", "set", "bogus_key", "1")
        self.assertEqual(status, 2)
        self.assertEqual(
            out, "Configuration change failed\n   SET failed: unknown parameter: bogus_key\n"
        )
        self.assertEqual(err, "pgtwist-cli: SET failed: unknown parameter: bogus_key\n")
