# -*- test-case-name: tests.unit.test_frontend,tests.unit.test_frontend_login,tests.unit.test_net_startup -*-
"""
The client-facing side: startup, TLS, HBA and authentication, then
hand-over to a pipeline session.

The startup phase mirrors PostgreSQL's C{ProcessStartupPacket} and
C{ClientAuthentication}: same SQLSTATEs, same messages, so drivers and
operators see what they would see talking to PostgreSQL itself. The
negotiation before the StartupMessage and the routing it implies are
sans-IO, in L{pgtwist.net.startup}; this module applies them to a transport.

TLS (L{pgtwist.net.tls}) is Twisted's: C{transport.startTLS} puts a TLS layer
under this protocol, which then reads and writes plaintext as before. Only
L{FrontendProtocol.write} changes for a TLS client (an instance attribute
replacing the method: L{eagerWrite} would bypass the TLS layer; it becomes
the TLS layer's unbuffered write, whose records L{pgtwist.net.tls.eagerTLS}
sends as eagerly), so the relay path of a plaintext client runs exactly the
same code as without TLS.
"""

from __future__ import annotations

import enum
import functools
import os
import pwd
import socket
import struct
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pgtwist.auth.hba import RoleMembership, RolesUnknown, matchHba
from pgtwist.auth.methods import (
    Md5AuthMethod,
    certificateNameMatches,
    certificateRequired,
    tlsServerEndPoint,
)
from pgtwist.auth.steps import AuthStep, Outcome, passwordAuthenticationFailed
from pgtwist.config.authquery import AuthQuerySettings, authQueryFor
from pgtwist.config.errors import ConfigError
from pgtwist.config.limits import clientLimits, pipelineName, resolveAlias
from pgtwist.config.model import Configuration, HbaRule, PoolKey, UserEntry
from pgtwist.config.verifiers import BackendCredential, Md5Verifier, ScramSecret, Verifier
from pgtwist.interfaces import (
    IAuthExchange,
    IAuthMethod,
    IBackendLink,
    IBackendPool,
    IFrontendLink,
    IPipeline,
    IPipelineSession,
    PoolTimeout,
)
from pgtwist.net.access import DatabaseAccess
from pgtwist.net.authquery import AuthQueryFailed, Found, UserLookup
from pgtwist.net.backend import BackendError
from pgtwist.net.cancel import CancelRegistry
from pgtwist.net.eager import eagerWrite
from pgtwist.net.roles import lookupRoles
from pgtwist.net.startup import (
    Cancel,
    Refused,
    Reject,
    Reply,
    StartTLS,
    StartupNegotiation,
    ToConsole,
    negotiateProtocol,
    routeStartup,
)
from pgtwist.net.tls import ClientTLS, alpnNegotiated, clientTLS, describeConnection, eagerTLS
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    AuthenticationRequest,
    BackendKeyData,
    ErrorResponse,
    Message,
    NoticeResponse,
    ParameterStatus,
    ReadyForQuery,
    StartupMessage,
)

#: HBA method C{all}: what PostgreSQL asked pgtwist for at an earlier login
#: of the pool (an AuthenticationRequest code) -> the method the client is
#: asked for. Anything else, PostgreSQL's C{trust} and a pool never logged
#: into included, is SCRAM-SHA-256: the client always proves the password
#: pgtwist holds for the user (see L{FrontendProtocol._methodForAll}).
_METHOD_FOR_CODE = {
    constants.AUTH_CLEARTEXT_PASSWORD: "password",
    constants.AUTH_MD5_PASSWORD: "md5",
}

#: The HBA methods that check a password, so that a user found by
#: auth_query can log in by them (C{all} resolves to one of them).
_PASSWORD_METHODS = frozenset({"password", "md5", "scram-sha-256", "all"})

_T = TypeVar("_T")


def findUser(config: Configuration, name: str) -> UserEntry | None:
    """
    The user C{name} as pgtwist's files know it, in their order of
    precedence (L{Configuration.lookupUser}: the frontend users, the
    vault, C{auth_file}); auth_query (L{pgtwist.net.authquery}) is asked
    only for a name none of them holds.
    """
    return config.lookupUser(name)


def peerUid(transport: Any) -> int | None:
    """
    The uid of the process at the other end of a unix socket connection
    (C{SO_PEERCRED}), or C{None} for other transports or systems.
    """
    option = getattr(socket, "SO_PEERCRED", None)
    getHandle = getattr(transport, "getHandle", None)
    if option is None or getHandle is None:
        return None
    try:
        handle = getHandle()
        if handle.family != socket.AF_UNIX:
            return None
        credentials = handle.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    _, uid, _ = struct.unpack("3i", credentials)
    return int(uid)


def peerUser(transport: Any) -> tuple[int, str] | None:
    """
    The uid and OS user name of the process at the other end of a unix
    socket (what PostgreSQL's C{peer} method compares with the user asked
    for), or C{None} when that cannot be known.
    """
    uid = peerUid(transport)
    if uid is None:
        return None
    try:
        return uid, pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


class FrontendState(enum.Enum):
    """
    Where a client connection is in its life.
    """

    STARTUP = "startup"
    AUTHENTICATING = "authenticating"
    LOGGING_IN = "logging in"  # authenticated, the pipeline is finishing the login
    READY = "ready"
    CLOSED = "closed"


_AUTH_OK = codec.encode(AuthenticationRequest(constants.AUTH_OK))
_READY = codec.encode(ReadyForQuery(constants.TRANSACTION_IDLE))
#: Seconds a connection pgtwist ended may take to close: the client reads
#: the error (and, over TLS, answers the close_notify) by then, or it is
#: cut, so that a peer that keeps its socket open holds nothing here.
CLOSE_GRACE = 10.0


@functools.lru_cache(maxsize=256)
def _parameterStatuses(parameters: tuple[tuple[str, str], ...]) -> bytes:
    """
    The ParameterStatus messages of a login, encoded once per distinct set
    (clients of one pool mostly log in with the same few sets).
    """
    return codec.encodeAll([ParameterStatus(name, value) for name, value in parameters])


@implementer(IFrontendLink, IHandshakeListener)
class FrontendProtocol(Protocol):
    """
    One client connection.
    """

    log = Logger()

    def __init__(self, factory: FrontendFactory, address: IAddress | None) -> None:
        self.factory = factory
        self.address = address
        self.state = FrontendState.STARTUP
        #: A small number naming this client in SHOW CLIENTS and KILL_CLIENT.
        self.id = factory.nextId()
        self.connectedAt = factory.clock.seconds()
        #: Only the admin console may be opened (the management listener).
        self.consoleOnly = False
        #: Once routed to the admin console: C{""} until authenticated, then
        #: C{"admin"} (every command) or C{"stats"} (SHOW only), PgBouncer's
        #: C{admin_users}/C{stats_users}.
        self.consoleRole: str | None = None
        self.key: PoolKey = ("", "")
        #: The database as the client asked for it, before aliases: what
        #: HBA rules match.
        self.requestedDatabase = ""
        #: The configuration in force when this client connected.
        self.configuration = factory.config
        self.startupParameters: Mapping[str, str] = {}
        self.session: IPipelineSession | None = None
        self.backend: IBackendLink | None = None
        self.processId = 0
        self.secretKey = 0
        #: TLS as configured when this client connected; C{None} when off,
        #: and always for unix-socket clients (as in PostgreSQL).
        self.clientTLS: ClientTLS | None = (
            factory.tls if isinstance(address, (IPv4Address, IPv6Address)) else None
        )
        #: Whether the TLS handshake completed: what C{hostssl} rules and a
        #: C{require} mode look at.
        self.encrypted = False
        #: SHOW CLIENTS' C{tls}: protocol and cipher, once encrypted.
        self.tlsDescription = ""
        #: The client's certificate once encrypted (a C{cryptography} X.509
        #: certificate, verified against C{tls_ca_file}), or C{None}.
        self.peerCertificate: Any = None
        self._tlsStarted = False
        self._directTLS = False
        self._negotiation: StartupNegotiation | None = StartupNegotiation(
            self.clientTLS is not None
        )
        self._framer: MessageFramer | None = None
        self._exchange: IAuthExchange | None = None
        #: The HBA rule and method the client is being authenticated by:
        #: what C{clientcert=verify-full} checks once the method succeeds.
        self._hbaRule: HbaRule | None = None
        self._methodName = ""
        self._authTimer: Any = None
        self._pending = b""
        #: What auth_query found for this client's user (none: C{None}),
        #: and, for an answer from the cache, what a failed exchange needs
        #: to check the client again against a fresh one (L{_recheck}).
        self._queriedUser: UserEntry | None = None
        self._authQuery: AuthQuerySettings | None = None
        self._fromCache = False
        #: A lookup (L{_lookUp}) is under way; C{"held"} once the client
        #: sent something meanwhile and was paused.
        self._lookingUp: str | None = None
        self._firstStep: AuthStep | None = None
        self._clientMessages: list[Message] | None = None
        #: AuthenticationOk, held back to go out in one write with the rest
        #: of the login (see L{_authenticated}).
        self._loginReply = b""
        self.lastActivity = factory.clock.seconds()
        #: The C{lastActivity} of the wait for a backend the janitor told
        #: this client it is queued in (PgBouncer's C{query_wait_notify}):
        #: a new wait starts with a new request, so it is told again.
        self.waitNotified = -1.0

    # -- Protocol -------------------------------------------------------------

    def connectionMade(self) -> None:
        """
        Start the authentication timer.
        """
        self.factory.clients.add(self)
        transport: Any = self.transport
        # write() without its own call: eagerWrite on this transport (TLS,
        # once started, puts its own writer here).
        self.write = partial(eagerWrite, transport)  # type: ignore[method-assign]
        if hasattr(transport, "setTcpNoDelay"):
            try:
                transport.setTcpNoDelay(self.factory.config.main.nodelay)
                transport.setTcpKeepAlive(self.factory.config.main.keepAlive)
            except OSError:
                pass
        timeout = self.factory.config.main.authenticationTimeout
        if timeout > 0:
            self._authTimer = self.factory.clock.callLater(timeout, self._authenticationTimedOut)

    def dataReceived(self, data: bytes) -> None:
        """
        Route bytes by state; after login they go straight to the session.
        """
        self.lastActivity = self.factory.clock.seconds()
        if self.state is FrontendState.READY:
            self.session.frontendDataReceived(data)  # type: ignore[union-attr]
            return
        try:
            if self.state is FrontendState.STARTUP:
                self._startupData(data)
            elif self.state is FrontendState.AUTHENTICATING:
                self._authenticationData(data)
            elif self.state is FrontendState.LOGGING_IN:
                self._pending += data
        except errors.ProtocolViolation as e:
            self.log.warn(
                "Protocol violation from {clientAddress}: {message}",
                clientAddress=self._peer(),
                message=e.message,
            )
            self.fail(e.toErrorResponse())

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        """
        Release everything this client held.
        """
        previous = self.state
        self.state = FrontendState.CLOSED
        self.factory.clients.discard(self)
        self.factory.consoles.discard(self)
        self._cancelAuthTimer()
        if self.secretKey:
            self.factory.cancels.unregister(self.processId, self.secretKey)
        session, self.session = self.session, None
        if session is not None:
            session.frontendLost(reason)
        if self._tlsStarted and not self.encrypted:
            self.log.info(
                "TLS handshake with {clientAddress} failed: {reason}",
                clientAddress=self._peer(),
                reason=reason.getErrorMessage(),
            )
        # processId is set once login completed (a Terminate closes via fail()).
        loggedIn = previous is FrontendState.READY or self.processId != 0
        if loggedIn and self.factory.config.main.logDisconnections:
            self.log.info(
                "Client {clientAddress} of {poolKey} disconnected",
                clientAddress=self._peer(),
                poolKey=self.key,
            )

    # -- startup phase ----------------------------------------------------------

    def _startupData(self, data: bytes) -> None:
        assert self._negotiation is not None
        for event in self._negotiation.receiveData(data):
            if isinstance(event, Reply):
                self.write(event.data)
            elif isinstance(event, StartTLS):
                self._startTLS(event)
            elif isinstance(event, Reject):
                self._negotiation = None
                self.log.warn(
                    "Refused {clientAddress}: {reason}",
                    clientAddress=self._peer(),
                    reason=event.reason,
                )
                self.state = FrontendState.CLOSED
                self.transport.loseConnection()  # type: ignore[union-attr]
            elif isinstance(event, Cancel):
                self._negotiation = None
                self.factory.cancels.cancel(event.request)
                self.state = FrontendState.CLOSED
                self.transport.loseConnection()  # type: ignore[union-attr]
            else:
                self._negotiation = None
                self._startup(event.message, event.rest)

    def _startTLS(self, event: StartTLS) -> None:
        """
        Put TLS under this connection (the C{S} already written, or the
        client's ClientHello in C{event.data}); the authentication timer
        keeps running, so a handshake that never completes is closed.
        """
        transport: Any = self.transport
        self._tlsStarted = True
        self._directTLS = event.direct
        transport.startTLS(self.clientTLS)
        # From now on writes go through the TLS layer, sent at once.
        self.write = eagerTLS(transport)  # type: ignore[method-assign,assignment]
        if event.data:
            transport.protocol.dataReceived(event.data)

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake is done (Twisted's L{IHandshakeListener}): a
        direct-TLS client must have agreed on ALPN C{postgresql}, as
        PostgreSQL 17 requires (it closes without a message too).
        """
        transport: Any = self.transport
        handle = transport.getHandle()
        if self._directTLS and not alpnNegotiated(handle):
            self.log.warn(
                "Refused {clientAddress}: direct TLS connection without ALPN protocol "
                "negotiation (postgresql)",
                clientAddress=self._peer(),
            )
            self._tlsStarted = False  # the handshake itself did not fail
            self.state = FrontendState.CLOSED
            transport.loseConnection()
            return
        self.encrypted = True
        self.tlsDescription = describeConnection(handle)
        self.peerCertificate = handle.get_peer_certificate(as_cryptography=True)

    def _channelBinding(self) -> bytes | None:
        """
        The C{tls-server-end-point} channel-binding data of this connection
        (from the certificate pgtwist presented on it, which a reload does
        not change), for SCRAM-SHA-256-PLUS; C{None} without TLS, or when
        that certificate's signature names no hash (Ed25519), in which case
        PLUS is not offered.
        """
        if not self.encrypted:
            return None
        transport: Any = self.transport
        certificate = transport.getHandle().get_certificate(as_cryptography=True)
        if certificate is None:
            return None
        try:
            return tlsServerEndPoint(certificate.public_bytes(Encoding.DER))
        except ValueError:
            return None

    def _encryption(self) -> str:
        """
        How the client connected, as PostgreSQL's HBA messages say it.
        """
        return "SSL encryption" if self.encrypted else "no encryption"

    def _startup(self, message: StartupMessage, rest: bytes) -> None:
        message, negotiation = negotiateProtocol(message)
        if negotiation is not None:
            # First, as PostgreSQL sends it: before any error or login.
            self.write(codec.encode(negotiation))
        tls = self.clientTLS
        if tls is not None and tls.required and not self.encrypted:
            # PgBouncer's words for client_tls_sslmode = require; the SQLSTATE
            # is PostgreSQL's for a connection HBA does not allow.
            self.log.warn(
                "Refused {clientAddress}: SSL required (client_tls_sslmode {mode})",
                clientAddress=self._peer(),
                mode=tls.mode,
            )
            self.fail(
                errors.fatal(
                    constants.SQLSTATE_INVALID_AUTHORIZATION,
                    "SSL required",
                    hint="Connect with sslmode=require or stronger.",
                )
            )
            return
        route = routeStartup(message, self.consoleOnly)
        if isinstance(route, Refused):
            self.fail(route.error)
            return
        parameters = message.parameters
        if isinstance(route, ToConsole):
            self._startConsole(route.database, route.user, parameters, rest)
            return
        if not self.factory.accepting:
            self.fail(
                errors.fatal(
                    constants.SQLSTATE_CANNOT_CONNECT_NOW, "the database system is shutting down"
                )
            )
            return
        if self.factory.tooManyClients():
            self.log.warn(
                "Refused {clientAddress}: no more connections allowed (max_client_conn)",
                clientAddress=self._peer(),
            )
            self.fail(
                errors.fatal(
                    constants.SQLSTATE_TOO_MANY_CONNECTIONS,
                    "no more connections allowed (max_client_conn)",
                )
            )
            return
        database = resolveAlias(self.factory.config.limits, route.database)
        self.requestedDatabase = route.database
        self.key = (database, route.user)
        exceeded = self.factory.clientLimitExceeded(self.key)
        if exceeded is not None:
            self.log.warn(
                "Refused {clientAddress} for {poolKey}: client connections exceeded ({limit})",
                clientAddress=self._peer(),
                poolKey=self.key,
                limit=exceeded,
            )
            # PgBouncer's words and SQLSTATE (its pooler errors are 08P01).
            self.fail(
                errors.fatal(
                    constants.SQLSTATE_PROTOCOL_VIOLATION,
                    f"client connections exceeded ({exceeded})",
                )
            )
            return
        self.startupParameters = parameters
        self.state = FrontendState.AUTHENTICATING
        self._framer = MessageFramer(constants.MAX_AUTH_TOKEN_LENGTH)
        self._pending = rest
        if self.factory.config.main.logConnections:
            self.log.info(
                "Connection from {clientAddress} for {poolKey}",
                clientAddress=self._peer(),
                poolKey=self.key,
            )
        self._whenRolesKnown(self._chooseMethod)

    def _whenRolesKnown(self, then: Callable[[], None]) -> None:
        """
        Call C{then} (which matches HBA rules) at once, or, while the role
        membership C{+group} rules need is being read from PostgreSQL for
        the first time, once it has been (the client paused meanwhile).
        """
        roles = self.factory.roles
        waiting = roles.ready() if roles is not None else None
        if waiting is None:
            then()
            return
        self.transport.pauseProducing()  # type: ignore[union-attr]

        def known(_: object) -> None:
            if self.state is FrontendState.CLOSED:
                return
            self.transport.resumeProducing()  # type: ignore[union-attr]
            # A reload meanwhile may have replaced the membership: ask again.
            self._whenRolesKnown(then)

        waiting.addCallback(known)

    def _matchHba(self) -> HbaRule | None:
        """
        The HBA rule for this client, matched on the database it asked for.

        @raise RolesUnknown: see L{matchHba}.
        """
        return matchHba(
            self.factory.config.hba,
            self._hbaAddress(),
            self.requestedDatabase,
            self.key[1],
            self.encrypted,
            self.factory.roles,
        )

    def _refuseByHba(self, rule: HbaRule | None, database: str, user: str) -> None:
        """
        Refuse a client no rule admits (C{rule} is C{None}) or a C{reject}
        rule stops, in PostgreSQL's words; the log names the rule.
        """
        verb = "no pg_hba.conf entry" if rule is None else "pg_hba.conf rejects connection"
        self._authFailed(
            errors.fatal(
                constants.SQLSTATE_INVALID_AUTHORIZATION,
                f'{verb} for host "{self._peer()}", user "{user}", '
                f'database "{database}", {self._encryption()}',
            ),
            "no HBA entry" if rule is None else f"rejected by {rule.path}:{rule.line}",
        )

    def _rolesUnknown(self, e: RolesUnknown) -> None:
        """
        Refuse a client whose HBA rule cannot be decided: failing closed,
        not skipping the rule.
        """
        self._authFailed(
            errors.fatal(
                constants.SQLSTATE_INVALID_AUTHORIZATION,
                f'cannot check role membership for pg_hba.conf for host "{self._peer()}", '
                f'user "{self.key[1]}", database "{self.requestedDatabase}"',
                hint="pgtwist could not read role membership from PostgreSQL; see its log.",
            ),
            f"role membership unknown for {e.rule.path}:{e.rule.line}",
        )

    def _startConsole(
        self, database: str, user: str, parameters: Mapping[str, str], rest: bytes
    ) -> None:
        """
        Route to the admin console: pools do not apply, HBA does (rules for
        the console's database name, C{reject} refusing). Every name gets
        the same SCRAM-SHA-256 exchange, a mock one for a name that is
        neither an admin nor a stats user, so that the refusal does not
        tell which names are admins; rights are checked once authenticated
        (L{_consoleAuthenticated}). A unix-socket peer whose OS user is the
        user it names is trusted without a password (PostgreSQL's C{peer}).
        """
        self.factory.clients.discard(self)
        self.factory.consoles.add(self)
        self.key = (database, user)
        self.requestedDatabase = database
        self.consoleRole = ""
        self.startupParameters = parameters
        self.state = FrontendState.AUTHENTICATING
        self._framer = MessageFramer(constants.MAX_AUTH_TOKEN_LENGTH)
        self._pending = rest
        if self.factory.config.main.logConnections:
            self.log.info(
                "Admin console connection from {clientAddress} for {user!r}",
                clientAddress=self._peer(),
                user=user,
            )
        self._whenRolesKnown(self._consoleExchange)

    def _consoleExchange(self) -> None:
        """
        Apply HBA to a console client, then trust its unix peer or start
        the password exchange.
        """
        database, user = self.key
        try:
            rule = self._matchHba()
        except RolesUnknown as e:
            self._rolesUnknown(e)
            return
        if rule is None or rule.method == "reject":
            self._refuseByHba(rule, database, user)
            return
        if not self._certificatePresent(rule):
            return
        self._methodName = "scram-sha-256"
        if not isinstance(self.address, (IPv4Address, IPv6Address)):
            peer = peerUser(self.transport)
            if peer is not None and peer[1] == user and self._consoleRights(peer[0]) is not None:
                self._authenticated()
                return
        config = self.factory.config
        entry: UserEntry | None = config.admins.get(user)
        if entry is None and user in config.main.statsUsers:
            entry = config.users.get(user)
        if entry is None:
            # A mock exchange, failing as a wrong password does.
            entry = UserEntry(user, None)
        method = self.factory.authMethods["scram-sha-256"]
        self._exchange = method.frontendExchange(entry, self._channelBinding())
        self._step(self._exchange.start())

    def _consoleRights(self, peerUid: int | None = None) -> str | None:
        """
        What an authenticated console user may do: C{"admin"} for the
        admins file's users (and a unix peer running as pgtwist's own OS
        user, who can do anything to it anyway), C{"stats"} for
        C{stats_users}, else C{None}.
        """
        user = self.key[1]
        config = self.factory.config
        if user in config.admins or peerUid == os.getuid():
            return "admin"
        if user in config.main.statsUsers:
            return "stats"
        return None

    def peer(self) -> str:
        """
        The client's address as PostgreSQL's messages show it.
        """
        return self._peer()

    def busy(self) -> bool:
        """
        Whether the client has a request running on a backend.
        """
        return self.session is not None and self.session.busy()

    def _peer(self) -> str:
        if isinstance(self.address, (IPv4Address, IPv6Address)):
            return self.address.host
        return "[local]"

    def _hbaAddress(self) -> str | None:
        if isinstance(self.address, (IPv4Address, IPv6Address)):
            return self.address.host
        return None

    def _chooseMethod(self) -> None:
        database, user = self.requestedDatabase, self.key[1]
        try:
            rule = self._matchHba()
        except RolesUnknown as e:
            self._rolesUnknown(e)
            return
        if rule is None or rule.method == "reject":
            self._refuseByHba(rule, database, user)
            return
        if not self._certificatePresent(rule):
            return
        settings = self._authQueryFor(rule.method)
        if settings is not None:
            self._lookUp(settings, rule)
            return
        self._methodChosen(rule)

    def _methodChosen(self, rule: HbaRule) -> None:
        """
        Start the exchange of C{rule}'s method, once the user is known.
        """
        if rule.method == "all":
            self._startExchange(self._methodForAll())
            return
        self._startExchange(rule.method)

    def _authQueryFor(self, methodName: str) -> AuthQuerySettings | None:
        """
        The auth_query to look this client's user up with, or C{None}: it
        applies to a user in none of pgtwist's files (L{findUser}), with
        C{allow_unknown_users} on, for a method that checks a password, on
        a pool where auth_query is configured.
        """
        config = self.factory.config
        user = self.key[1]
        if (
            self.factory.userLookup is None
            or methodName not in _PASSWORD_METHODS
            or not config.main.allowUnknownUsers
            or findUser(config, user) is not None
        ):
            return None
        return authQueryFor(config, self.key[0], user)

    def _lookUp(self, settings: AuthQuerySettings, rule: HbaRule) -> None:
        """
        Read the user's verifier with auth_query, then start C{rule}'s
        method (L{_methodChosen}). What
        the client sends meanwhile is kept in C{_pending}, and the client
        is paused once it sent anything (L{_holdDuringLookup}): a client
        that waits for its authentication request, as every driver does,
        costs no pause and resume. No verifier gives the mock exchange of
        an unknown user, so the client cannot tell a name PostgreSQL does
        not know from a wrong password; a lookup that fails fails the
        login with L{AuthQueryFailed}'s error.
        """
        lookup = self.factory.userLookup
        assert lookup is not None
        user = self.key[1]
        self._authQuery = settings
        self._lookingUp = "waiting"

        def found(outcome: Found | Failure) -> None:
            if self.state is FrontendState.CLOSED:
                return
            # The lookup ended: resume the client if it was paused.
            held, self._lookingUp = self._lookingUp, None
            if held == "held":
                self.transport.resumeProducing()  # type: ignore[union-attr]
            if isinstance(outcome, Failure):
                self._lookupFailed(outcome)
                return
            verifier, self._fromCache = outcome
            self._queriedUser = None if verifier is None else UserEntry(user, verifier=verifier)
            if self._fromCache:
                self._clientMessages = []
            # L{_resumeWith}, inlined: this runs at every auth_query login.
            try:
                self._methodChosen(rule)
            except errors.ProtocolViolation as e:
                self._violated(e)

        lookup.find(self.factory.config, settings, user, found)

    def _lookupFailed(self, reason: Failure) -> None:
        """
        auth_query could not answer: fail the login with its error.
        """
        error = reason.value
        if not isinstance(error, AuthQueryFailed):
            error = AuthQueryFailed(
                errors.fatal(
                    constants.SQLSTATE_CONNECTION_FAILURE,
                    f'could not look up user "{self.key[1]}" for authentication',
                ),
                reason.getErrorMessage(),
            )
        self._authFailed(error.error, f"auth_query failed: {error.reason}")

    def _holdDuringLookup(self) -> None:
        """
        The client sent something while its user is looked up: pause it
        until the lookup ends, so what it sends meanwhile stays bounded.
        """
        if self._lookingUp == "waiting":
            self._lookingUp = "held"
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def _stepFailed(self, step: AuthStep) -> None:
        """
        Refuse the client as the failed exchange says.
        """
        error = step.error or errors.fatal(
            constants.SQLSTATE_INVALID_PASSWORD,
            f'password authentication failed for user "{self.key[1]}"',
        )
        self._authFailed(error, step.reason)

    def _recheck(self, failure: AuthStep) -> None:
        """
        The client failed against a verifier auth_query's cache held: drop
        it and ask PostgreSQL again (the password may have changed since).
        With C{password} and C{md5}, the client's response is checked again
        at once against a fresh verifier that differs, so a new password
        works at this very login; with SCRAM, whose proof is bound to the
        old salt, the fresh verifier serves the next attempt. Otherwise
        the client gets C{failure}'s error, as without a cache.
        """
        lookup = self.factory.userLookup
        settings = self._authQuery
        old = self._queriedUser
        assert lookup is not None and settings is not None and old is not None
        user = self.key[1]
        self._fromCache = False
        messages, self._clientMessages = self._clientMessages or [], None
        first, self._firstStep = self._firstStep, None
        lookup.forget(user)
        self.transport.pauseProducing()  # type: ignore[union-attr]

        def found(outcome: Found | Failure) -> None:
            if self.state is FrontendState.CLOSED:
                return
            if isinstance(outcome, Failure):
                self._stepFailed(failure)
                return
            self.transport.resumeProducing()  # type: ignore[union-attr]
            verifier = outcome[0]
            self._queriedUser = None if verifier is None else UserEntry(user, verifier=verifier)
            step = None
            if verifier is not None and verifier != old.verifier and first is not None:
                step = self._replay(verifier, first, messages)
            if step is None or step.outcome is not Outcome.SUCCEEDED:
                self._stepFailed(failure)
            else:
                self._resumeWith(self._step, step)

        lookup.find(self.factory.config, settings, user, found)

    def _resumeWith(self, then: Callable[[_T], None], argument: _T) -> None:
        """
        Go on with the login after a lookup: C{then(argument)} may feed the
        messages kept meanwhile to the exchange, so a protocol violation in
        them is answered here, as L{dataReceived} would.
        """
        try:
            then(argument)
        except errors.ProtocolViolation as e:
            self._violated(e)

    def _violated(self, e: errors.ProtocolViolation) -> None:
        """
        The client broke the protocol in messages kept during a lookup.
        """
        self.log.warn(
            "Protocol violation from {clientAddress}: {message}",
            clientAddress=self._peer(),
            message=e.message,
        )
        self.fail(e.toErrorResponse())

    def _replay(
        self, verifier: Verifier, first: AuthStep, messages: list[Message]
    ) -> AuthStep | None:
        """
        Check the client's responses again, against C{verifier}, with a new
        exchange of the same method that asks exactly what the client was
        asked (C{first}'s messages: the same md5 salt); C{None} when the
        method cannot be replayed (SCRAM: the client proved against the old
        salt and nonces).
        """
        method: Any = self.factory.authMethods.get(self._methodName)
        if self._methodName == "md5" and isinstance(method, Md5AuthMethod):
            request = first.messages[0] if first.messages else None
            if not isinstance(request, AuthenticationRequest):
                return None
            salt = request.data
            method = type(method)(lambda _: salt)
        elif self._methodName != "password" or method is None:
            return None
        if isinstance(verifier, ScramSecret) and self._methodName == "md5":
            return None
        exchange = method.frontendExchange(UserEntry(self.key[1], verifier=verifier), None)
        step: AuthStep = exchange.start()
        if step.messages != first.messages:
            return None
        for message in messages:
            step = exchange.receive(message)
            if step.final:
                break
        self._exchange = exchange
        return step

    def _certificatePresent(self, rule: HbaRule) -> bool:
        """
        Remember C{rule}; if it needs a client certificate (method C{cert}
        or C{clientcert}), refuse a client that sent no verified one, before
        any method runs, as PostgreSQL does; then C{False}.
        """
        self._hbaRule = rule
        if not rule.clientcert or self.peerCertificate is not None:
            return True
        self._authFailed(
            certificateRequired(),
            f"no valid client certificate for {rule.path}:{rule.line} "
            f"(clientcert={rule.clientcert})",
        )
        return False

    def _certificateNamesUser(self) -> bool:
        """
        After the method succeeded: under C{clientcert=verify-full}, refuse a
        client whose certificate's CN is not its user name, with the
        method's failure as PostgreSQL does (the password step ran first).
        Method C{cert} checked the name itself.
        """
        rule = self._hbaRule
        method = self._methodName
        if rule is None or rule.clientcert != "verify-full" or method == "cert":
            return True
        user = self.key[1]
        if certificateNameMatches(self.peerCertificate, user):
            return True
        if method in ("password", "md5", "scram-sha-256"):
            error = passwordAuthenticationFailed(user)
        elif method == "trust":
            error = errors.fatal(
                constants.SQLSTATE_INVALID_AUTHORIZATION,
                f'"trust" authentication failed for user "{user}"',
            )
        else:
            error = errors.fatal(
                constants.SQLSTATE_INVALID_AUTHORIZATION, f'authentication failed for user "{user}"'
            )
        self._authFailed(
            error,
            f"certificate validation (clientcert=verify-full) failed: CN mismatch "
            f"({rule.path}:{rule.line})",
        )
        return False

    def _methodForAll(self) -> str:
        """
        HBA method C{all} (pgagroal's: use what PostgreSQL asks for), without
        asking PostgreSQL anything before the client has proven the password
        pgtwist holds for the user (vault or frontend users): PostgreSQL's
        answer is for pgtwist's address and the vault's password, not for
        the client. So the client runs SCRAM-SHA-256, unless an earlier
        login of this pool (a pool exists only for pairs that authenticated
        or are configured) found that PostgreSQL asks for md5 or a cleartext
        password: then the client is asked the same, so that old clients
        keep working. A user pgtwist has no password for runs the same
        SCRAM exchange with a mock secret and gets the 28P01 of a wrong
        password, whatever the database, so names cannot be probed by the
        answer (only the method asked tells a pool known to use md5 or
        cleartext apart: docs/security.rst, Known gaps). A user known by a
        verifier only is asked what the verifier checks: md5 for an md5
        hash, else SCRAM-SHA-256.
        """
        entry = self._lookupUser()
        if entry is None:
            return "scram-sha-256"
        if entry.password is None and entry.verifier is not None:
            # A verifier checks the method it was made for (auth_query).
            return "md5" if isinstance(entry.verifier, Md5Verifier) else "scram-sha-256"
        code = self.factory.pool.authRequestCode(self.key)
        if code is None:
            return "scram-sha-256"
        return _METHOD_FOR_CODE.get(code, "scram-sha-256")

    def _lookupUser(self) -> UserEntry | None:
        """
        The client's user: from pgtwist's files (L{findUser}), else what
        auth_query found, else C{None}.
        """
        return findUser(self.factory.config, self.key[1]) or self._queriedUser

    def _startExchange(self, methodName: str) -> None:
        method = self.factory.authMethods.get(methodName)
        if method is None:
            self._authFailed(
                errors.fatal(
                    constants.SQLSTATE_INVALID_AUTHORIZATION,
                    f'authentication method "{methodName}" is not available',
                ),
                "unknown method",
            )
            return
        user = self._lookupUser()
        if user is None:
            if not self.factory.config.main.allowUnknownUsers and methodName in ("trust", "cert"):
                self._authFailed(
                    errors.fatal(
                        constants.SQLSTATE_INVALID_AUTHORIZATION,
                        f'role "{self.key[1]}" does not exist',
                    ),
                    "unknown user",
                )
                return
            user = UserEntry(self.key[1], None)
        self._methodName = methodName
        certificateExchange = getattr(method, "certificateExchange", None)
        if certificateExchange is not None:
            # Method cert: it is given the certificate verified in the handshake.
            self._exchange = certificateExchange(user, self.peerCertificate)
        else:
            self._exchange = method.frontendExchange(user, self._channelBinding())
        step = self._exchange.start()
        if self._clientMessages is not None:
            self._firstStep = step
        self._step(step)

    def _step(self, step: AuthStep) -> None:
        if step.outcome is Outcome.FAILED:
            if self._fromCache and self._queriedUser is not None:
                self._recheck(step)
                return
            self._stepFailed(step)
            return
        if step.messages:
            self.write(codec.encodeAll(step.messages))
        if step.outcome is Outcome.SUCCEEDED:
            if self._certificateNamesUser():
                self._authenticated(step.credential)
        elif self._pending:
            pending, self._pending = self._pending, b""
            self._authenticationData(pending)

    def _authenticationData(self, data: bytes) -> None:
        """
        Frame the client's authentication messages one at a time, each at
        most L{constants.MAX_AUTH_TOKEN_LENGTH} bytes (PostgreSQL's limit
        for a client that has not logged in): a longer length word is
        refused with 08P01 before its body is kept. Once authentication
        ends, the bytes behind the last message go to the session unframed,
        so a large query pipelined behind the password is not held to the
        limit.
        """
        framer = self._framer
        assert framer is not None
        frame = framer.feedOne(data)
        while frame is not None:
            type, body = frame
            if self._exchange is None:
                # Before the exchange starts: kept for it.
                self._pending += codec.frame(type, body)
                if self._lookingUp is not None:
                    self._holdDuringLookup()
            else:
                if type != constants.PASSWORD_MESSAGE:
                    raise errors.ProtocolViolation(
                        f"expected password response, got message type {type[0]}"
                    )
                message = codec.decodeFrontend(type, body)
                if self._clientMessages is not None:
                    self._clientMessages.append(message)
                self._step(self._exchange.receive(message))
            if self.state is not FrontendState.AUTHENTICATING:
                break
            frame = framer.feedOne(b"")
        if self.state is not FrontendState.AUTHENTICATING:
            self._pending += framer.takeRemainder()
            if self.state is FrontendState.READY and self._pending:
                # The pipeline finished the login synchronously.
                pending, self._pending = self._pending, b""
                self.session.frontendDataReceived(pending)  # type: ignore[union-attr]

    def _authFailed(self, error: ErrorResponse, reason: str) -> None:
        database, user = self.key
        self.log.warn(
            "Authentication of {user!r} for {database!r} from {clientAddress} failed: {reason}",
            user=user,
            database=database,
            clientAddress=self._peer(),
            reason=reason,
        )
        if self.consoleRole is None:
            # Counted without creating anything keyed by names the client
            # chose (they may be random): see L{IBackendPool.countAuthFailure}.
            self.factory.pool.countAuthFailure(self.key)
        self.fail(error)

    def _authenticated(self, credential: BackendCredential | None = None) -> None:
        """
        The client proved who it is; C{credential} is what its exchange
        left for logging into PostgreSQL by pass-through, if anything.
        """
        self._cancelAuthTimer()
        self._exchange = None
        if self.consoleRole is not None:
            self._consoleAuthenticated()
            return
        stats = self.factory.pool.statsFor(self.key)
        stats.authSuccess += 1
        stats.clientLoginCount += 1
        database = self.key[0]
        if not self.factory.access.isEnabled(database):
            self.fail(
                errors.fatal(
                    "55000",
                    f'database "{database}" is not currently accepting connections',
                    detail="pgtwist disabled this database (enable it again to allow connections).",
                )
            )
            return
        if credential is not None:
            self.factory.pool.rememberCredential(self.key, credential)
        self.state = FrontendState.LOGGING_IN
        # A pipeline that logs the client in at once (the transaction
        # pipeline's login cache) sends AuthenticationOk, the parameters and
        # ReadyForQuery in one write, without pausing the client.
        self._loginReply = _AUTH_OK
        pipeline = self.factory.pipelineFor(self.key)
        self.session = pipeline.newSession(self, self.factory.pool, self.factory.clock)
        self.session.begin()
        if self.state is FrontendState.LOGGING_IN:
            reply, self._loginReply = self._loginReply, b""
            self.write(reply)
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def _consoleAuthenticated(self) -> None:
        console = self.factory.console
        if console is None:
            self.fail(
                errors.fatal(
                    constants.SQLSTATE_FEATURE_NOT_SUPPORTED, "the admin console is not available"
                )
            )
            return
        role = self._consoleRights(self._verifiedPeerUid())
        if role is None:
            # Unreachable through the mock exchange; never grant regardless.
            self.fail(
                errors.fatal(
                    constants.SQLSTATE_INVALID_PASSWORD,
                    f'password authentication failed for user "{self.key[1]}"',
                )
            )
            return
        self.consoleRole = role
        self.state = FrontendState.LOGGING_IN
        self.transport.write(codec.encode(AuthenticationRequest(constants.AUTH_OK)))  # type: ignore[union-attr]
        self.transport.pauseProducing()  # type: ignore[union-attr]
        self.session = console(self, self.consoleRole)
        self.session.begin()

    def _verifiedPeerUid(self) -> int | None:
        """
        The uid of a unix-socket peer whose OS user is the user it named,
        else C{None}.
        """
        if isinstance(self.address, (IPv4Address, IPv6Address)):
            return None
        peer = peerUser(self.transport)
        if peer is None or peer[1] != self.key[1]:
            return None
        return peer[0]

    def _failFromPool(self, reason: Failure) -> None:
        if isinstance(reason.value, BackendError):
            self.fail(reason.value.error)
        elif isinstance(reason.value, PoolTimeout) and reason.value.setting == "query_wait_timeout":
            # PgBouncer's ending: its reason as a FATAL, SQLSTATE 08P01.
            self.fail(errors.fatal(constants.SQLSTATE_PROTOCOL_VIOLATION, "query_wait_timeout"))
        elif isinstance(reason.value, PoolTimeout):
            self.fail(
                errors.fatal(
                    constants.SQLSTATE_TOO_MANY_CONNECTIONS,
                    "connection pool exhausted: no backend became available within "
                    f"blocking_timeout ({self.factory.config.main.blockingTimeout:g}s)",
                    hint="Raise max_connections or blocking_timeout, or use fewer client sessions.",
                )
            )
        else:
            self.fail(errors.fatal(constants.SQLSTATE_CONNECTION_FAILURE, reason.getErrorMessage()))

    def _authenticationTimedOut(self) -> None:
        self._authTimer = None
        if self.state in (FrontendState.STARTUP, FrontendState.AUTHENTICATING):
            self.log.info(
                "Client {clientAddress} did not authenticate within {timeout}s",
                clientAddress=self._peer(),
                timeout=self.factory.config.main.authenticationTimeout,
            )
            # PostgreSQL closes without a word (the client may not even speak the protocol).
            self.state = FrontendState.CLOSED
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _cancelAuthTimer(self) -> None:
        if self._authTimer is not None and self._authTimer.active():
            self._authTimer.cancel()
        self._authTimer = None

    # -- IFrontendLink ------------------------------------------------------------

    def completeLogin(self, parameters: Mapping[str, str], processId: int) -> None:
        """
        See L{IFrontendLink.completeLogin}.
        """
        if self.state is not FrontendState.LOGGING_IN:
            return
        self.processId = processId
        self.secretKey = self.factory.cancels.register(processId, self._cancelTarget)
        key = codec.encode(BackendKeyData(processId, self.secretKey))
        reply, self._loginReply = self._loginReply, b""
        self.state = FrontendState.READY
        self.write(reply + _parameterStatuses(tuple(parameters.items())) + key + _READY)
        # The pipeline or _authenticated may have paused the client (a
        # resume of a client never paused makes no system call).
        self.transport.resumeProducing()  # type: ignore[union-attr]
        if self._pending:
            pending, self._pending = self._pending, b""
            self.session.frontendDataReceived(pending)  # type: ignore[union-attr]

    def _cancelTarget(self) -> Any:
        backend = self.backend
        if backend is None:
            return None
        return (backend.server, backend.processId, backend.secretKey)

    def setCancelTarget(self, backend: IBackendLink | None) -> None:
        """
        See L{IFrontendLink.setCancelTarget}.
        """
        self.backend = backend

    def write(self, data: bytes) -> None:
        """
        See L{IFrontendLink.write}.
        """
        eagerWrite(self.transport, data)

    def pauseReading(self) -> None:
        """
        See L{IFrontendLink.pauseReading}.
        """
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeReading(self) -> None:
        """
        See L{IFrontendLink.resumeReading}.
        """
        self.transport.resumeProducing()  # type: ignore[union-attr]

    @property
    def ended(self) -> bool:
        """
        Whether pgtwist ended this connection (L{fail}) and only its close
        is awaited.
        """
        return self.state is FrontendState.CLOSED

    def fail(self, error: ErrorResponse | None) -> None:
        """
        See L{IFrontendLink.fail}.
        """
        if self.state is FrontendState.CLOSED:
            return
        self.state = FrontendState.CLOSED
        self._cancelAuthTimer()
        # AuthenticationOk comes first, as from PostgreSQL, when the login
        # failed after authentication (database disabled, no backend).
        reply, self._loginReply = self._loginReply, b""
        if self.transport is not None:
            if error is not None:
                reply += codec.encode(error)
            if reply:
                self.transport.write(reply)
            if self._tlsStarted:
                # Twisted's TLS layer holds the close back while a producer
                # (the backend's throttle) is registered with it.
                self.transport.unregisterProducer()  # type: ignore[attr-defined]
            self.transport.loseConnection()
            # The auth timer's slot (cancelled above, and by connectionLost).
            self._authTimer = self.factory.clock.callLater(CLOSE_GRACE, self._closeOverdue)

    def _closeOverdue(self) -> None:
        """
        The connection L{fail} ended is still open after L{CLOSE_GRACE}: the
        peer neither read what was left nor answered the TLS close_notify.
        """
        self._authTimer = None
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def notice(self, message: str) -> None:
        """
        Send a NOTICE with SQLSTATE 00000, in PgBouncer's shape (severity,
        code, message): only between messages, as when the client waits
        for a backend.
        """
        if self.state is FrontendState.CLOSED or self.transport is None:
            return
        fields = (
            (constants.FIELD_SEVERITY, "NOTICE"),
            (constants.FIELD_CODE, "00000"),
            (constants.FIELD_MESSAGE, message),
        )
        self.transport.write(codec.encode(NoticeResponse(fields)))

    def failFromPool(self, reason: Failure) -> None:
        """
        Refuse the login because the pool could not provide a backend.
        """
        self._failFromPool(reason)


class FrontendFactory(Factory):
    """
    Builds L{FrontendProtocol}s sharing the configuration, the pool, the
    cancel keys and the plugins.
    """

    log = Logger()
    noisy = False

    def __init__(
        self,
        config: Configuration,
        pool: IBackendPool,
        clock: Any,
        authMethods: Mapping[str, IAuthMethod],
        pipelines: Mapping[str, IPipeline],
        cancels: CancelRegistry,
    ) -> None:
        self.config = config
        self.pool = pool
        self.clock = clock
        self.authMethods = authMethods
        self.pipelines = pipelines
        self.cancels = cancels
        self.clients: set[FrontendProtocol] = set()
        #: Admin console sessions (not counted as clients: a graceful
        #: shutdown does not wait for them).
        self.consoles: set[FrontendProtocol] = set()
        #: Builds the admin console session for a client and its role
        #: (set by the service; C{None}: no console).
        self.console: Callable[[FrontendProtocol, str], IPipelineSession] | None = None
        #: auth_query's lookups (set by the service; C{None}: never asked).
        self.userLookup: UserLookup | None = None
        #: False while shutting down: only the admin console is served.
        self.accepting = True
        self._lastId = 0
        #: Which databases accept new clients (ENABLE / DISABLE).
        self.access = DatabaseAccess()
        #: Role membership for C{+group} and C{samerole} HBA rules (C{None}
        #: when no rule needs it); rebuilt, so read again, on each reload.
        self.roles: RoleMembership | None = self._roleMembership(config)
        #: TLS for new clients (C{None}: off); read again on each reload.
        self.tls: ClientTLS | None = clientTLS(config.main, self._configPath(config))

    def reconfigure(self, config: Configuration) -> None:
        """
        Use C{config} for new clients. The TLS files are read again (a
        renewed certificate at the same path is taken); if they cannot be
        used, new clients keep the TLS of the previous configuration and
        the log says why. Connected clients keep theirs either way.
        """
        self.config = config
        self.roles = self._roleMembership(config)
        try:
            self.tls = clientTLS(config.main, self._configPath(config))
        except ConfigError as e:
            self.log.error(
                "TLS for clients unchanged, the new files cannot be used: {error}", error=str(e)
            )

    @staticmethod
    def _configPath(config: Configuration) -> str:
        return config.paths.config or "pgtwist.conf"

    def _roleMembership(self, config: Configuration) -> RoleMembership | None:
        """
        The membership C{config}'s HBA rules need, read as its superuser
        (the loader refuses such rules without one).
        """
        rules = [rule for rule in config.hba if rule.needsRoles]
        superuser = config.superuser
        if not rules or superuser is None or not config.servers:
            return None
        samerole = any(item.kind == "samerole" for rule in rules for item in rule.databases)
        groups = None if samerole else frozenset().union(*(rule.groups for rule in rules))
        server = config.primary
        methods = list(self.authMethods.values())
        return RoleMembership(
            groups,
            lambda wanted: lookupRoles(self.clock, server, superuser, methods, wanted),
            self.clock,
        )

    def tooManyClients(self) -> bool:
        """
        Whether the client connections now open, this one included, are
        more than C{max_client_conn}. Every connection counts, the admin
        console's and those still in startup too, as in PgBouncer; the
        caller refuses pool clients only, so an admin can always get in
        to see what is going on (PgBouncer does not limit its admin
        database either).
        """
        return len(self.clients) + len(self.consoles) > self.config.main.maxClientConn

    def clientLimitExceeded(self, key: PoolKey) -> str | None:
        """
        The name of the limit a new client of C{key} (already counted in
        L{clients}) goes beyond: PgBouncer's C{max_db_client_connections}
        (clients of the database, whatever their user) or
        C{max_user_client_connections} (clients of the user, whatever the
        database); C{None} when within both. The clients are only counted
        when a limit is set.
        """
        limits = clientLimits(self.config, key)
        database, user = key
        if limits.maxDbClientConnections:
            count = sum(1 for client in self.clients if client.key[0] == database)
            if count > limits.maxDbClientConnections:
                return "max_db_client_connections"
        if limits.maxUserClientConnections:
            count = sum(1 for client in self.clients if client.key[1] == user)
            if count > limits.maxUserClientConnections:
                return "max_user_client_connections"
        return None

    def nextId(self) -> int:
        """
        A new small integer id (clients and backends share the sequence, as
        PgBouncer's socket ids do).
        """
        self._lastId += 1
        return self._lastId

    def pipelineFor(self, key: PoolKey) -> IPipeline:
        """
        The pipeline for a pool (L{pipelineName}); C{session} if that one is
        not installed, which validation refuses before it can happen.
        """
        pipeline = self.pipelines.get(pipelineName(self.config, key))
        return pipeline if pipeline is not None else self.pipelines["session"]

    def buildProtocol(self, addr: IAddress | None) -> FrontendProtocol:
        """
        A new client.
        """
        protocol = FrontendProtocol(self, addr)
        return protocol


class ConsoleOnlyFactory(Factory):
    """
    The management listener's factory: clients of a L{FrontendFactory} that
    get the admin console whatever database they name.
    """

    noisy = False

    def __init__(self, frontends: FrontendFactory) -> None:
        self.frontends = frontends

    def buildProtocol(self, addr: IAddress | None) -> FrontendProtocol:
        """
        A new console-only client.
        """
        protocol = self.frontends.buildProtocol(addr)
        protocol.consoleOnly = True
        return protocol
