# -*- test-case-name: tests.unit.test_manhole -*-
"""
An SSH manhole: a Python prompt inside the running pgtwist, for the admins
of C{pgtwist_admins.conf}.

Off unless C{manhole = <endpoint>} is set. The loader accepts only a unix
socket or a loopback TCP address (L{pgtwist.config.loader.checkManholeEndpoint}),
because whoever logs in controls the process. Only SSH is offered (Twisted's
C{manhole_ssh}, as Synapse's manhole): never telnet, never a password in
clear on the wire.

The SSH host key is generated on first start in C{manhole_keys_dir}
(default C{~/.pgtwist/manhole}, mode 0700; the key file 0600) and reused
after; no key ships with pgtwist.

The namespace holds C{service} (the root L{pgtwist.app.service.PoolerService}),
C{pools} (its L{pgtwist.pool.poolset.PoolSet}) and C{config} (the configuration in
force when the session opened). A Deferred (or a coroutine, made a
Deferred) typed at the prompt is shown as C{<Deferred #n>}, then its result
once it fires.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import os
import stat
from collections.abc import Callable, Mapping
from typing import Any, Union

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch import manhole, manhole_ssh
from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser
from twisted.conch.ssh.keys import Key
from twisted.conch.ssh.transport import DISCONNECT_BY_APPLICATION, SSHServerTransport
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from pgtwist.config.loader import checkManholeEndpoint
from pgtwist.config.model import Configuration, UserEntry
from pgtwist.net.listeners import ListenerService

#: The host key's file name in the keys directory (the public key adds C{.pub}).
HOST_KEY_FILE = "ssh_host_ed25519_key"

Namespace = Union[Mapping[str, object], Callable[[], Mapping[str, object]]]


def defaultKeysDirectory() -> str:
    """
    Where host keys go when C{manhole_keys_dir} is not set:
    C{~/.pgtwist/manhole}, beside the vault's master key.
    """
    return os.path.join(os.path.expanduser("~"), ".pgtwist", "manhole")


class HostKeyError(Exception):
    """
    The host key cannot be read or created.
    """


def loadOrCreateHostKey(directory: str) -> Key:
    """
    The manhole's SSH host key, read from C{directory}, or generated there
    (Ed25519) on first use: the directory is created with mode 0700, the
    private key written with mode 0600 and the public key beside it.

    @raise HostKeyError: The key exists but cannot be read or parsed, or
        cannot be written.
    """
    log = Logger(namespace="pgtwist.admin.manhole")
    path = os.path.join(directory, HOST_KEY_FILE)
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700, exist_ok=True)
            os.chmod(directory, 0o700)
        key = Key(ed25519.Ed25519PrivateKey.generate())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as e:
        raise HostKeyError(f"cannot create the manhole host key {path}: {e.strerror}") from e
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(key.toString("openssh"))
        with open(path + ".pub", "wb") as f:
            f.write(key.public().toString("openssh") + b"\n")
        log.info(
            "Generated the manhole SSH host key {path} ({fingerprint})",
            path=path,
            fingerprint=key.fingerprint(),
        )
        return key
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        with open(path, "rb") as f:
            data = f.read()
        loaded: Key = Key.fromString(data)
    except OSError as e:
        raise HostKeyError(f"cannot read the manhole host key {path}: {e.strerror}") from e
    except Exception as e:
        raise HostKeyError(f"{path} is not an SSH private key: {e}") from e
    if mode & 0o077:
        log.warn(
            "The manhole host key {path} is readable by others (mode {mode:o}); chmod 600 it",
            path=path,
            mode=mode,
        )
    return loaded


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


@implementer(ICredentialsChecker)
class AdminChecker:
    """
    Username and password against C{pgtwist_admins.conf}, compared in
    constant time (an unknown user costs the same as a wrong password).

    @ivar admins: Returns the admins in force now (so a reload applies).
    """

    credentialInterfaces = (IUsernamePassword,)
    log = Logger()

    def __init__(self, admins: Callable[[], Mapping[str, UserEntry]]) -> None:
        self.admins = admins
        self._dummy = _digest(os.urandom(32))

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        """
        Fires with the user name (bytes) when the password matches; fails
        with L{UnauthorizedLogin} otherwise.
        """
        username: bytes = credentials.username
        password: bytes = credentials.password
        name = username.decode("utf-8", "replace")
        entry = self.admins().get(name)
        expected = (
            _digest(entry.password.encode("utf-8"))
            if entry is not None and entry.password is not None
            else self._dummy
        )
        if hmac.compare_digest(_digest(password), expected) and expected is not self._dummy:
            self.log.info("Manhole login by {user!r}", user=name)
            return succeed(username)
        self.log.warn("Manhole login refused for {user!r}", user=name)
        return fail(UnauthorizedLogin("bad user name or password"))


class ManholeInterpreter(manhole.ManholeInterpreter):
    """
    Shows coroutines as the Deferreds they become (Synapse's displayhook),
    so C{await}-style methods can be called at the prompt.
    """

    def displayhook(self, obj: object) -> None:
        """
        Wrap a coroutine in a Deferred; the base class shows Deferreds as
        C{<Deferred #n>} and their results when they fire.
        """
        if inspect.iscoroutine(obj):
            obj = Deferred.fromCoroutine(obj)
        super().displayhook(obj)


class PgtwistManhole(manhole.ColoredManhole):
    """
    The prompt: Twisted's coloured manhole with L{ManholeInterpreter}.
    """

    def connectionMade(self) -> None:
        """
        Replace the interpreter the base class made.
        """
        super().connectionMade()
        self.interpreter = ManholeInterpreter(self, self.namespace)


class ServerTransport(SSHServerTransport):
    """
    conch's SSH server, without an C{error} log line each time a client
    logs out (conch logs every disconnect message the client sends as an
    error, the ordinary "disconnected by user" included).
    """

    def receiveError(self, reasonCode: int, description: bytes) -> None:
        """
        Ignore an ordinary logout; report anything else as conch does.
        """
        if reasonCode == DISCONNECT_BY_APPLICATION:
            return
        super().receiveError(reasonCode, description)


class TerminalSession(manhole_ssh.TerminalSession):
    """
    conch's terminal session, completed: a resized window reaches the
    prompt, and the end of the client's input ends the session (conch's
    raises C{NotImplementedError} for both, a traceback in the log each time
    a user resizes a window).
    """

    _terminal: Any = None

    def openShell(self, proto: Any) -> None:
        """
        Start the prompt, keeping its transport for L{windowChanged}.
        """
        self._terminal = self.transportFactory(
            proto,
            self.chainedProtocolFactory(),
            IConchUser(self.original),
            self.width,
            self.height,
        )

    def windowChanged(self, newWindowSize: tuple[int, int, int, int]) -> None:
        """
        Tell the prompt its new size (rows, columns, ...).
        """
        rows, columns = newWindowSize[:2]
        if self._terminal is not None:
            self._terminal.chainedProtocol.terminalProtocol.terminalSize(columns, rows)

    def eofReceived(self) -> None:
        """
        The client's input ended (C{ssh} reading from a pipe): close the
        session once what is written has been sent.
        """
        if self._terminal is not None:
            self._terminal.proto.loseConnection()


def manholeFactory(
    key: Key, checker: ICredentialsChecker, namespace: Namespace
) -> manhole_ssh.ConchFactory:
    """
    The SSH server factory: C{key} as host key, C{checker} for logins, a
    fresh copy of C{namespace} (or of what it returns, when callable) for
    each session.
    """
    # conch's annotations predate typed realms and key dictionaries.
    realm: Any = manhole_ssh.TerminalRealm()
    realm.sessionFactory = TerminalSession

    def chainedProtocol() -> insults.ServerProtocol:
        names = dict(namespace() if callable(namespace) else namespace)
        return insults.ServerProtocol(PgtwistManhole, names)

    realm.chainedProtocolFactory = chainedProtocol
    factory: Any = manhole_ssh.ConchFactory(Portal(realm, [checker]))
    factory.publicKeys = {key.sshType(): key.public()}
    factory.privateKeys = {key.sshType(): key}
    factory.protocol = ServerTransport
    factory.noisy = False
    result: manhole_ssh.ConchFactory = factory
    return result


def makeManholeService(
    config: Configuration,
    namespace: Namespace,
    reactor: Any,
    admins: Callable[[], Mapping[str, UserEntry]] | None = None,
) -> ListenerService:
    """
    The C{manhole} child service: SSH on C{config.main.manhole}.

    @param namespace: The prompt's names, or a callable returning them for
        each new session (so C{config} is the one in force then).
    @param admins: Returns the admins allowed in (default: C{config.admins}).
    @raise ValueError: The endpoint is not a unix socket or loopback.
    @raise HostKeyError: The host key cannot be read or created.
    """
    main = config.main
    assert main.manhole is not None, "manhole is off"
    checkManholeEndpoint(main.manhole)
    key = loadOrCreateHostKey(main.manholeKeysDir or defaultKeysDirectory())
    checker = AdminChecker(admins or (lambda: config.admins))
    return ListenerService(
        reactor, main.manhole, manholeFactory(key, checker, namespace), name="manhole"
    )
