"""
Tests for L{pgtwist.admin.manhole}: the admins checker, the host key made on
first start, the service, and a whole SSH session in memory (a conch client
on L{twisted.test.iosim}, no socket).

L{ManholeClient} is reused by C{tests/integration/test_manhole.py} over a
real socket.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from twisted.conch.ssh import session, userauth
from twisted.conch.ssh.channel import SSHChannel
from twisted.conch.ssh.connection import SSHConnection
from twisted.conch.ssh.keys import Key
from twisted.conch.ssh.transport import (
    DISCONNECT_BY_APPLICATION,
    DISCONNECT_PROTOCOL_ERROR,
    SSHClientTransport,
)
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.admin.manhole import (
    HOST_KEY_FILE,
    AdminChecker,
    HostKeyError,
    ManholeInterpreter,
    ServerTransport,
    defaultKeysDirectory,
    loadOrCreateHostKey,
    makeManholeService,
    manholeFactory,
)
from pgtwist.app.service import buildService
from pgtwist.config.model import Configuration, MainSettings, ServerSettings, UserEntry
from tests.unit._configfiles import FilesTestCase
from tests.unit._tempdir import temporaryDirectory

SERVERS = (ServerSettings("primary", "127.0.0.1", 5432, True),)
SERVER_SECTION = "[primary]\nhost = 127.0.0.1\nport = 5432\n"
ADMINS = {"admin": UserEntry("admin", "s3cret"), "nopass": UserEntry("nopass", None)}


class _SessionChannel(SSHChannel):
    """
    A C{session} channel asking for a pty and a shell, recording output.
    """

    name = b"session"

    def __init__(self, client: ManholeClient, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client

    def channelOpen(self, specificData: bytes) -> None:
        """
        Ask for a terminal and a shell, as C{ssh -t} does.
        """
        pty = session.packRequest_pty_req(b"xterm", (24, 80, 0, 0), b"")
        self.conn.sendRequest(self, b"pty-req", pty, wantReply=True)
        d = self.conn.sendRequest(self, b"shell", b"", wantReply=True)
        d.addCallback(lambda _: self.client.shellReady(self))

    def dataReceived(self, data: bytes) -> None:
        """
        Keep what the manhole prints.
        """
        self.client.output += data

    def closed(self) -> None:
        """
        The server closed the session.
        """
        self.client.channelClosed = True
        super().closed()


class _Connection(SSHConnection):
    """
    Opens one session channel once logged in.
    """

    def __init__(self, client: ManholeClient) -> None:
        super().__init__()
        self.client = client

    def serviceStarted(self) -> None:
        """
        Logged in: open the session.
        """
        super().serviceStarted()
        self.client.loggedIn = True
        self.openChannel(_SessionChannel(self.client, conn=self))


class _UserAuth(userauth.SSHUserAuthClient):
    """
    Password authentication only.
    """

    def __init__(self, client: ManholeClient, instance: SSHConnection) -> None:
        super().__init__(client.user.encode("utf-8"), instance)
        self.client = client

    def getPublicKey(self) -> None:
        """
        No key: go on to the password.
        """
        return None

    def getPassword(self, prompt: bytes | None = None) -> Deferred[bytes] | None:
        """
        The configured password, once (C{ssh} would ask again; giving up
        makes the server end the connection at once).
        """
        if self.client.passwordAttempts:
            return None
        self.client.passwordAttempts += 1
        return succeed(self.client.password.encode("utf-8"))


class ManholeClient(SSHClientTransport):
    """
    A scripted SSH client: logs in with a password, opens a shell, and
    collects what the manhole prints.

    @ivar hostKeys: The host keys the server offered.
    @ivar loggedIn: Whether the server accepted the password.
    @ivar output: Everything printed on the terminal.
    @ivar channel: The shell channel, once open.
    @ivar ready: Fires once the shell is open.
    @ivar lost: Fires when the connection is gone.
    """

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self.password = password
        self.passwordAttempts = 0
        self.hostKeys: list[Key] = []
        self.loggedIn = False
        self.channelClosed = False
        self.output = b""
        self.channel: _SessionChannel | None = None
        self.ready: Deferred[None] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Any = None) -> None:
        """
        Record the end of the connection.
        """
        super().connectionLost(reason)
        self.lost.callback(None)

    def verifyHostKey(self, hostKey: bytes, fingerprint: bytes) -> Deferred[bool]:
        """
        Accept (and remember) any host key.
        """
        self.hostKeys.append(Key.fromString(hostKey))
        return succeed(True)

    def connectionSecure(self) -> None:
        """
        Keys exchanged: authenticate.
        """
        self.requestService(_UserAuth(self, _Connection(self)))

    def shellReady(self, channel: _SessionChannel) -> None:
        """
        The shell is open.
        """
        self.channel = channel
        self.ready.callback(None)

    def type(self, text: str) -> None:
        """
        Type a line at the prompt.
        """
        assert self.channel is not None
        self.channel.write(text.encode("utf-8") + b"\r")


class CheckerTests(SynchronousTestCase):
    """
    L{AdminChecker} against the admins file.
    """

    def setUp(self) -> None:
        self.admins = dict(ADMINS)
        self.checker = AdminChecker(lambda: self.admins)

    def test_goodPassword(self) -> None:
        """
        The right password yields the user name.
        """
        self.assertEqual(
            self.successResultOf(
                self.checker.requestAvatarId(UsernamePassword(b"admin", b"s3cret"))
            ),
            b"admin",
        )

    def test_refused(self) -> None:
        """
        A wrong password, an unknown user and a user without a password are
        all refused the same way.
        """
        for user, password in (
            (b"admin", b"wrong"),
            (b"admin", b""),
            (b"nobody", b"s3cret"),
            (b"nopass", b""),
        ):
            self.failureResultOf(
                self.checker.requestAvatarId(UsernamePassword(user, password)),
                UnauthorizedLogin,
            )

    def test_followsReload(self) -> None:
        """
        The admins are read at each login, so a reload applies.
        """
        self.admins["admin"] = UserEntry("admin", "new")
        self.failureResultOf(
            self.checker.requestAvatarId(UsernamePassword(b"admin", b"s3cret")),
            UnauthorizedLogin,
        )
        self.successResultOf(self.checker.requestAvatarId(UsernamePassword(b"admin", b"new")))


class HostKeyTests(SynchronousTestCase):
    """
    The host key is made on first start and kept.
    """

    def test_generatedPrivate(self) -> None:
        """
        The directory is created 0700, the private key 0600 with the public
        key beside it.
        """
        directory = temporaryDirectory(self) / "keys" / "manhole"
        key = loadOrCreateHostKey(str(directory))
        self.assertTrue(key.isPublic() is False)
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)
        path = directory / HOST_KEY_FILE
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        public = Key.fromString((directory / (HOST_KEY_FILE + ".pub")).read_bytes())
        self.assertEqual(public.fingerprint(), key.fingerprint())

    def test_reused(self) -> None:
        """
        A second start reads the same key.
        """
        directory = str(temporaryDirectory(self) / "manhole")
        first = loadOrCreateHostKey(directory)
        second = loadOrCreateHostKey(directory)
        self.assertEqual(first.fingerprint(), second.fingerprint())

    def test_garbage(self) -> None:
        """
        A key file that is not a key is an error naming it.
        """
        directory = temporaryDirectory(self)
        (directory / HOST_KEY_FILE).write_bytes(b"not a key")
        error = self.assertRaises(HostKeyError, loadOrCreateHostKey, str(directory))
        self.assertIn(HOST_KEY_FILE, str(error))

    def test_defaultDirectory(self) -> None:
        """
        By default keys go in C{~/.pgtwist/manhole}.
        """
        self.patch(os.path, "expanduser", lambda path: path.replace("~", "/home/x"))
        self.assertEqual(defaultKeysDirectory(), "/home/x/.pgtwist/manhole")


class ServiceTests(SynchronousTestCase):
    """
    The manhole service and its place in the service tree.
    """

    def config(self, manhole: str | None, keys: str) -> Configuration:
        """
        A configuration with C{manhole} and keys under C{keys}.
        """
        return Configuration(
            main=MainSettings(host="127.0.0.1", port=0, manhole=manhole, manholeKeysDir=keys),
            servers=SERVERS,
            admins=ADMINS,
        )

    def test_unixSocket(self) -> None:
        """
        A C{manhole} child listens on the configured unix socket when the
        service starts, and stops with it.
        """
        keys = str(temporaryDirectory(self) / "keys")
        reactor = MemoryReactorClock()
        service = buildService(self.config("unix:/tmp/pgtwist-manhole.sock", keys), reactor)
        manhole = service.getServiceNamed("manhole")
        self.assertEqual(manhole.description, "unix:/tmp/pgtwist-manhole.sock")
        self.assertTrue(os.path.exists(os.path.join(keys, HOST_KEY_FILE)))
        service.startService()
        self.assertEqual(
            [server[0] for server in reactor.unixServers], ["/tmp/pgtwist-manhole.sock"]
        )
        self.successResultOf(manhole.whenListening())
        self.successResultOf(service.stopService())
        self.assertFalse(manhole.running)

    def test_offByDefault(self) -> None:
        """
        Without C{manhole} there is no manhole child and no key.
        """
        keys = temporaryDirectory(self) / "keys"
        service = buildService(self.config(None, str(keys)), MemoryReactorClock())
        self.assertNotIn("manhole", [child.name for child in service])
        self.assertFalse(keys.exists())

    def test_refusesRemote(self) -> None:
        """
        Even when built by hand, a manhole refuses a non-loopback endpoint.
        """
        keys = str(temporaryDirectory(self))
        for endpoint in ("tcp:2222", "tcp:2222:interface=0.0.0.0", "ssl:2222"):
            self.assertRaises(
                ValueError,
                makeManholeService,
                self.config(endpoint, keys),
                {},
                MemoryReactorClock(),
            )


class InterpreterTests(SynchronousTestCase):
    """
    The prompt shows coroutines as Deferreds.
    """

    def test_coroutineBecomesDeferred(self) -> None:
        """
        A coroutine reaching the display hook is run as a Deferred and its
        result shown when it fires.
        """
        written: list[str] = []

        class Handler:
            def addOutput(self, data: bytes, isAsync: bool = False) -> None:
                written.append(data.decode() if isinstance(data, bytes) else data)

        interpreter = ManholeInterpreter(Handler(), {})
        ready: Deferred[int] = Deferred()

        async def later() -> int:
            return await ready

        interpreter.displayhook(later())
        self.assertEqual(written, ["<Deferred #0>"])
        ready.callback(42)
        self.assertIn("Deferred #0 called back: 42", "".join(written))


class SessionTests(SynchronousTestCase):
    """
    A whole SSH session in memory: key exchange, login, a pty, a shell and
    Python at the prompt.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        # conch's login timeout and failed-password delay use the global
        # reactor unless told otherwise.
        self.patch(userauth.SSHUserAuthServer, "clock", self.clock)
        self.key = loadOrCreateHostKey(str(temporaryDirectory(self)))
        self.factory = manholeFactory(
            self.key,
            AdminChecker(lambda: ADMINS),
            lambda: {"answer": 42, "config": "the configuration"},
        )
        self.factory.doStart()
        self.addCleanup(self.factory.doStop)

    def connect(self, user: str, password: str) -> tuple[ManholeClient, iosim.IOPump]:
        """
        Connect a client to the manhole factory in memory.
        """
        server = self.factory.buildProtocol(None)
        client = ManholeClient(user, password)
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, isServer=True),
            client,
            iosim.FakeTransport(client, isServer=False),
        )
        return client, pump

    def test_login(self) -> None:
        """
        An admin logs in with the host key generated for the manhole, gets a
        prompt, and Python runs in the namespace.
        """
        client, pump = self.connect("admin", "s3cret")
        pump.flush()
        self.assertEqual([key.fingerprint() for key in client.hostKeys], [self.key.fingerprint()])
        self.assertTrue(client.loggedIn)
        self.successResultOf(client.ready)
        self.assertIn(b">>> ", client.output)
        client.type("answer * 1000")
        pump.flush()
        self.assertIn(b"42000", client.output)
        client.type("config.upper()")
        pump.flush()
        self.assertIn(b"THE CONFIGURATION", client.output)

    def test_resizeAndEndOfInput(self) -> None:
        """
        A resized window reaches the prompt, and the end of the client's
        input closes the session, both without an error in the log.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        client, pump = self.connect("admin", "s3cret")
        pump.flush()
        channel = client.channel
        assert channel is not None
        channel.conn.sendRequest(
            channel, b"window-change", session.packRequest_window_change((40, 132, 0, 0))
        )
        client.type("answer")
        pump.flush()
        self.assertIn(b"42", client.output)
        channel.conn.sendEOF(channel)
        pump.flush()
        self.assertTrue(client.channelClosed)
        self.assertEqual([e for e in events if e.get("log_failure") is not None], [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_logoutNotAnError(self) -> None:
        """
        A client's ordinary disconnect message is not logged as an error;
        other disconnect reasons still are.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        server = self.factory.buildProtocol(None)
        self.assertIsInstance(server, ServerTransport)
        server.receiveError(DISCONNECT_BY_APPLICATION, b"disconnected by user")
        self.assertEqual([e for e in events if e["log_level"] is LogLevel.error], [])
        server.receiveError(DISCONNECT_PROTOCOL_ERROR, b"bad packet")
        self.assertEqual(len([e for e in events if e["log_level"] is LogLevel.error]), 1)

    def test_badPassword(self) -> None:
        """
        A wrong password gets no session.
        """
        client, pump = self.connect("admin", "wrong")
        pump.flush()
        self.clock.advance(10)
        pump.flush()
        self.assertFalse(client.loggedIn)
        self.assertNoResult(client.ready)
        self.successResultOf(client.lost)
        self.assertEqual(client.passwordAttempts, 1)


class ConfigTests(FilesTestCase):
    """
    The loader accepts only manhole endpoints reachable from this machine.
    """

    def loadManhole(self, value: str) -> str | None:
        """
        Load a main file whose line 4 is C{manhole = value}.
        """
        config = self.load(f"[pgtwist]\nhost = *\nport = 1\nmanhole = {value}\n" + SERVER_SECTION)
        return config.main.manhole

    def test_accepted(self) -> None:
        """
        unix sockets and loopback TCP addresses are kept as given; a bare
        port means 127.0.0.1; empty is off.
        """
        for value in (
            "unix:/run/pgtwist/manhole.sock",
            "unix:/tmp/m.sock:mode=600",
            "tcp:2222:interface=127.0.0.1",
            "tcp:interface=127.0.0.1:port=2222",
            "tcp:2222:127.0.0.1",
            "tcp:2222:interface=localhost",
            "tcp6:2222:interface=\\:\\:1",
            "tcp:2222:backlog=5:interface=127.0.0.2",
        ):
            self.assertEqual(self.loadManhole(value), value)
        self.assertEqual(self.loadManhole("2222"), "tcp:2222:interface=127.0.0.1")
        self.assertIsNone(self.loadManhole(""))

    def test_refused(self) -> None:
        """
        Every address, a public one, another endpoint type, and a TCP
        endpoint without an interface are refused at load, naming file and line.
        """
        for value in (
            "tcp:2222",
            "tcp:2222:interface=0.0.0.0",
            "tcp6:2222:interface=\\:\\:",
            "tcp:2222:interface=192.0.2.1",
            "tcp:2222:interface=example.com",
            "ssl:2222:interface=127.0.0.1",
            "systemd:domain=INET:index=0",
        ):
            error = self.loadError(
                f"[pgtwist]\nhost = *\nport = 1\nmanhole = {value}\n" + SERVER_SECTION
            )
            self.assertEqual(error.line, 4, value)
            self.assertEqual(error.key, "manhole")
            self.assertIn(
                "pgtwist.conf:4: manhole: the manhole must listen on a unix socket", str(error)
            )
