# -*- test-case-name: tests.unit.test_backend -*-
"""
The PostgreSQL-facing side: one L{BackendProtocol} per server connection.

A backend is I{owned} by the pool while it logs in, idles, resets or
validates; then it decodes every message itself. While I{attached} to a
pipeline session it hands each received chunk to the session untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from OpenSSL.SSL import Error as SSLError
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pgtwist.auth._scram import SCRAM_SHA_256_PLUS
from pgtwist.auth.methods import backendMethodFor, tlsServerEndPoint
from pgtwist.auth.steps import Outcome
from pgtwist.config.model import PoolKey, ServerSettings
from pgtwist.config.servertls import strongerThanPrefer
from pgtwist.config.verifiers import BackendCredential
from pgtwist.interfaces import (
    IAuthExchange,
    IAuthMethod,
    IFrontendLink,
    IPipelineSession,
    IPooledConnection,
)
from pgtwist.net import servertls
from pgtwist.net.eager import eagerWrite
from pgtwist.net.endpoints import connectServer, releaseConnector
from pgtwist.net.throttle import Throttle
from pgtwist.net.tls import eagerTLS
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.codec import HEADER, INT16, INT32
from pgtwist.wire.messages import (
    AuthenticationRequest,
    BackendKeyData,
    Bind,
    Close,
    ErrorResponse,
    Execute,
    Message,
    ParameterStatus,
    Parse,
    Query,
    ReadyForQuery,
    StartupMessage,
    Sync,
    Terminate,
)
from pgtwist.wire.walker import MessageWalker, invalidLength

#: Messages an owned query (L{BackendProtocol.simpleQuery},
#: L{BackendProtocol.queryParameters}) has no use for: skipped undecoded.
_IGNORED_WHEN_OWNED = frozenset(
    {
        constants.PARSE_COMPLETE,
        constants.BIND_COMPLETE,
        constants.CLOSE_COMPLETE,
        constants.COMMAND_COMPLETE,
        constants.ROW_DESCRIPTION,
        constants.NO_DATA,
        constants.NOTICE_RESPONSE,
        constants.EMPTY_QUERY_RESPONSE,
    }
)

#: What follows the Bind of every L{BackendProtocol.queryPrepared}: run the
#: unnamed portal to the end, then Sync.
_EXECUTE_SYNC = codec.encodeAll([Execute("", 0), Sync()])
#: A Bind's count of parameter (or result) formats when all are text.
_NO_FORMATS = INT16.pack(0)
#: A Bind's NULL value: the length -1.
_NULL_VALUE = INT32.pack(-1)

#: libpq's words (fe-auth.c) for a login C{channel_binding=require} refuses:
#: AuthenticationOk without a channel-bound exchange, a request other than
#: SASL, SASL without TLS, and SASL without C{SCRAM-SHA-256-PLUS}.
CB_NOT_BOUND = "channel binding required, but server authenticated client without channel binding"
CB_NOT_SUPPORTED = "channel binding required but not supported by server's authentication request"
CB_NO_TLS = "channel binding required, but SSL not in use"
CB_NOT_OFFERED = (
    "channel binding is required, but server did not offer an authentication method that "
    "supports channel binding"
)


class BackendError(Exception):
    """
    PostgreSQL refused something pgtwist asked of a backend.

    @ivar error: PostgreSQL's ErrorResponse, to be shown to the client.
    """

    def __init__(self, error: ErrorResponse) -> None:
        super().__init__(f"{error.severity} {error.code} {error.message}")
        self.error = error


class BackendGone(Exception):
    """
    The connection closed before the operation finished.
    """


@implementer(IPooledConnection)
class BackendProtocol(Protocol):
    """
    One connection to PostgreSQL.

    @ivar processId: The backend pid (from BackendKeyData).
    @ivar secretKey: The backend's cancel secret.
    @ivar parameters: Latest ParameterStatus values, by name as reported.
    @ivar transactionStatus: From the last ReadyForQuery.
    @ivar clean: Set by the attached session: no request in flight.
    @ivar authRequestCode: The first AuthenticationRequest code PostgreSQL sent
        (what the HBA method C{all} resolves to).
    @ivar sessionResets: How many times L{resetSession} ran C{DISCARD ALL}.
    @ivar tls: Whether the connection to PostgreSQL is encrypted.
    @ivar channelBound: Whether the login used C{SCRAM-SHA-256-PLUS}, bound
        to the server's TLS certificate.

    The pool's bookkeeping of a backend lives in L{pgtwist.pool.state}, and
    what the transaction pipeline remembers of its session (prepared
    statements, settings) in that pipeline.
    """

    log = Logger()

    def __init__(
        self,
        key: PoolKey,
        server: ServerSettings,
        password: BackendCredential | None,
        authMethods: Sequence[IAuthMethod],
        clock: IReactorTime,
    ) -> None:
        self.key = key
        #: The database logged into: the pool's, or its line's C{dbname}.
        self.database = key[0]
        self.server = server
        self._password = password
        self._authMethods = authMethods
        self._clock = clock
        self.processId = 0
        self.secretKey = 0
        self.parameters: dict[str, str] = {}
        self.transactionStatus = constants.TRANSACTION_IDLE
        self.clean = True
        self.authRequestCode: int | None = None
        self.sessionResets = 0
        self.connected = False
        self.closing = False
        self._walker = MessageWalker()
        self._session: IPipelineSession | None = None
        self._frontend: IFrontendLink | None = None
        #: The throttles pointed at while attached (see L{pgtwist.net.throttle}).
        self._ownThrottle: Throttle | None = None
        self._peerThrottle: Throttle | None = None
        self._exchange: IAuthExchange | None = None
        self._login: Deferred[BackendProtocol] | None = Deferred()
        self._loginError: ErrorResponse | None = None
        self._queries: list[_PendingQuery] = []
        #: The SQL of each statement L{queryPrepared} prepared here, by name.
        self._prepared: dict[str, str] = {}
        self.lostCallback: Callable[[BackendProtocol, Failure], None] | None = None
        #: Called with the body of each NotificationResponse heard while no
        #: session is attached (a listener backend's).
        self.notificationCallback: Callable[[bytes], None] | None = None
        self.tls = False
        self.channelBound = False
        #: Waiting for the answer to our SSLRequest (see L{servertls}).
        self._sslPending = False
        self._tlsReport: servertls.TlsReport | None = None

    def __repr__(self) -> str:
        return f"<BackendProtocol {self.server.name} pid={self.processId} {self.key}>"

    # -- login ----------------------------------------------------------------

    def whenLoggedIn(self) -> Deferred[BackendProtocol]:
        """
        Fires with this protocol once PostgreSQL sent ReadyForQuery after
        login; fails with L{BackendError} or the connection failure.
        """
        assert self._login is not None
        return self._login

    def connectionMade(self) -> None:
        """
        Send an SSLRequest when the server's C{sslmode} asks for TLS, else
        the StartupMessage.
        """
        self.connected = True
        transport: Any = self.transport
        # write() without its own call: eagerWrite on this transport (TLS,
        # once started, puts its own writer here).
        self.write = partial(eagerWrite, transport)  # type: ignore[method-assign]
        if hasattr(transport, "setTcpNoDelay"):
            transport.setTcpNoDelay(True)
        if self._login is None:
            # Logged in by the process this one took over from (L{resume}).
            return
        if servertls.usesTls(self.server):
            self._sslPending = True
            transport.write(servertls.SSL_REQUEST)
            return
        self._sendStartup()

    def resume(
        self,
        processId: int,
        secretKey: int,
        parameters: dict[str, str],
        transactionStatus: bytes,
        prepared: dict[str, str],
    ) -> None:
        """
        Go on with a connection another pgtwist process logged in (an
        upgrade hands it over): before it is adopted, so that
        L{connectionMade} sends no startup.
        """
        self._login = None
        self.processId = processId
        self.secretKey = secretKey
        self.parameters = dict(parameters)
        self.transactionStatus = transactionStatus
        self._prepared = dict(prepared)

    def handOverState(self) -> dict[str, Any] | None:
        """
        What L{resume} needs in another process, when nothing is under way
        on this connection (no query of pgtwist's, nothing half read, no
        TLS, whose state lives here); else C{None}.
        """
        transport: Any = self.transport
        if (
            self.tls
            or not self.connected
            or self.closing
            or self._login is not None
            or self._queries
            or not self._walker.atBoundary
            or transport is None
            or transport.dataBuffer
            or transport._tempDataLen
        ):
            return None
        return {
            "processId": self.processId,
            "secretKey": self.secretKey,
            "parameters": dict(self.parameters),
            "transactionStatus": self.transactionStatus.decode("ascii"),
            "prepared": dict(self._prepared),
        }

    def _sendStartup(self) -> None:
        """
        Send the StartupMessage: only user and database, so that every client
        setting applied later is undone by C{DISCARD ALL}.
        """
        startup = StartupMessage({"user": self.key[1], "database": self.database})
        self.transport.write(codec.encode(startup))  # type: ignore[union-attr]

    @property
    def serverCertificate(self) -> bytes | None:
        """
        The server's certificate (DER) when the connection is encrypted, for
        the C{tls-server-end-point} channel binding; else C{None}.
        """
        return servertls.peerCertificate(self.transport) if self.tls else None

    def _channelBinding(self, request: AuthenticationRequest) -> bytes | None:
        """
        The C{tls-server-end-point} channel-binding data for SCRAM over TLS
        (computed for SASL requests only, the one use), or C{None}: without
        TLS, with the server's C{channel_binding = disable}, or when the
        certificate's signature names no hash, in which case SCRAM goes on
        without binding, as libpq's C{channel_binding=prefer} would after
        the server offered no PLUS.
        """
        if request.code != constants.AUTH_SASL or self.server.channelBinding == "disable":
            return None
        certificate = self.serverCertificate
        if certificate is None:
            return None
        try:
            return tlsServerEndPoint(certificate)
        except ValueError as e:
            self.log.warn(
                "No SCRAM channel binding with {server}: {reason}",
                server=self.server.name,
                reason=str(e),
            )
            return None

    def _requiredBinding(self, request: AuthenticationRequest) -> bytes | None:
        """
        With C{channel_binding = require}, before answering PostgreSQL's
        first request (so that no password, not even a hash of it, goes to
        a server that is not proven to hold the certificate): the
        C{tls-server-end-point} data that C{SCRAM-SHA-256-PLUS} will bind
        to, or C{None} after refusing the login with libpq's words (no
        SASL, no TLS, no PLUS offered, or a certificate whose signature
        names no hash).
        """
        reason = None
        if request.code != constants.AUTH_SASL:
            reason = CB_NOT_SUPPORTED
        elif not self.tls:
            reason = CB_NO_TLS
        elif SCRAM_SHA_256_PLUS not in codec.parseSASLMechanisms(request.data):
            reason = CB_NOT_OFFERED
        else:
            certificate = self.serverCertificate
            if certificate is None:
                reason = CB_NO_TLS
            else:
                try:
                    return tlsServerEndPoint(certificate)
                except ValueError as e:
                    reason = f"channel binding required, but {e}"
        self._refuse(constants.SQLSTATE_CONNECTION_FAILURE, reason)
        return None

    def _sslAnswer(self, data: bytes) -> None:
        """
        PostgreSQL's one-byte answer to our SSLRequest: C{S} starts TLS,
        C{N} goes on in plaintext if the mode allows it. Bytes after the
        answer are refused: the server sends nothing more before our
        StartupMessage, so they can only have been put there by someone on
        the path (CVE-2021-23222).
        """
        self._sslPending = False
        server = self.server
        answer = data[:1]
        if len(data) > 1:
            self._refuse(
                constants.SQLSTATE_PROTOCOL_VIOLATION,
                f"server sent {len(data) - 1} unexpected bytes after its answer to SSLRequest",
            )
        elif answer == b"S":
            try:
                context = servertls.contexts.contextFor(server)
            except ValueError as e:
                self._refuse(constants.SQLSTATE_CONNECTION_FAILURE, f"cannot set up TLS: {e}")
                return
            report = self._tlsReport = servertls.TlsReport()
            transport: Any = self.transport
            transport.startTLS(context.creator(report))
            self.tls = True
            # Writes must now go through the TLS layer, never straight to
            # the socket as eagerWrite does for plaintext transports; the
            # records it makes are sent as eagerly.
            self.write = eagerTLS(transport)  # type: ignore[method-assign,assignment]
            self._sendStartup()
        elif answer == b"N" and not strongerThanPrefer(server.sslmode):
            self._sendStartup()
        elif answer == b"N":
            self._refuse(
                constants.SQLSTATE_CONNECTION_FAILURE,
                f"server does not support SSL, but SSL was required (sslmode={server.sslmode})",
            )
        else:
            self._refuse(
                constants.SQLSTATE_PROTOCOL_VIOLATION,
                f"received invalid response to SSL negotiation: {answer!r}",
            )

    def _refuse(self, sqlstate: str, reason: str) -> None:
        """
        Give up on this server before logging in: the waiting client hears
        C{could not connect to server "name": reason}.
        """
        self.log.warn(
            "Cannot connect to {server}: {reason}", server=self.server.name, reason=reason
        )
        error = errors.fatal(
            sqlstate, f'could not connect to server "{self.server.name}": {reason}'
        )
        self._failLogin(BackendError(error))

    def _loginFrame(self, message: Message) -> None:
        if isinstance(message, AuthenticationRequest):
            self._authenticate(message)
        elif isinstance(message, ParameterStatus):
            self.parameters[message.name] = message.value
        elif isinstance(message, BackendKeyData):
            self.processId = message.processId
            self.secretKey = message.secretKey
        elif isinstance(message, ReadyForQuery):
            self.transactionStatus = message.status
            login, self._login = self._login, None
            assert login is not None
            login.callback(self)
        elif isinstance(message, ErrorResponse):
            self._loginError = message
            self._failLogin(BackendError(message))

    def _authenticate(self, request: AuthenticationRequest) -> None:
        if self.authRequestCode is None:
            self.authRequestCode = request.code
        required = self.server.channelBinding == "require"
        if request.code == constants.AUTH_OK and required and not self.channelBound:
            # Trust (or cert), or a server that ended SASL without PLUS.
            self._refuse(constants.SQLSTATE_CONNECTION_FAILURE, CB_NOT_BOUND)
            return
        if self._exchange is None:
            if request.code == constants.AUTH_OK:
                return
            if required:
                binding = self._requiredBinding(request)
                if binding is None:
                    return
            else:
                binding = self._channelBinding(request)
            method = backendMethodFor(request, self._authMethods)
            if method is None:
                self._failLogin(
                    BackendError(
                        errors.fatal(
                            constants.SQLSTATE_FEATURE_NOT_SUPPORTED,
                            f"authentication method {request.code} requested by the server is "
                            "not supported by pgtwist",
                        )
                    )
                )
                return
            self._exchange = method.backendExchange(self.key[1], self._password, request, binding)
            # _ScramBackend picks PLUS whenever it has the data and it is
            # offered (the one way it is, under require).
            self.channelBound = (
                binding is not None
                and SCRAM_SHA_256_PLUS in codec.parseSASLMechanisms(request.data)
            )
            step = self._exchange.start()
        else:
            step = self._exchange.receive(request)
        if step.messages:
            self.transport.write(codec.encodeAll(step.messages))  # type: ignore[union-attr]
        if step.outcome is Outcome.FAILED:
            self.log.warn(
                "Cannot log into {server} as {user!r}: {reason}",
                server=self.server.name,
                user=self.key[1],
                reason=step.reason,
            )
            # The reason (no vault password, a SCRAM server that failed to
            # prove itself...) is logged above and stays out of the error,
            # which reaches the client: vault details are for operators.
            error = step.error or errors.fatal(
                constants.SQLSTATE_INVALID_PASSWORD,
                f'password authentication failed for user "{self.key[1]}"',
            )
            self._failLogin(BackendError(error))

    def _failLogin(self, reason: Exception) -> None:
        login, self._login = self._login, None
        if login is not None:
            self.closing = True
            self.transport.loseConnection()  # type: ignore[union-attr]
            login.errback(reason)

    # -- owned mode: simple queries pgtwist runs itself -----------------------

    def simpleQuery(self, sql: str) -> Deferred[ErrorResponse | None]:
        """
        Run C{sql} (one Query message) and fire with the first ErrorResponse
        PostgreSQL sent, or C{None}; ParameterStatus changes are recorded.
        Several calls may be pipelined.
        """
        d: Deferred[ErrorResponse | None] = Deferred()
        self._queries.append(_PendingQuery(d))
        self.write(codec.encode(Query(sql)))
        return d

    def queryRows(self, sql: str) -> Deferred[list[tuple[bytes | None, ...]]]:
        """
        Run C{sql} as L{simpleQuery} and fire with the rows it returned
        (text values); fail with L{BackendError} if PostgreSQL refused it.
        For pgtwist's own lookups (L{pgtwist.net.roles}), never on a
        client's behalf.
        """
        d: Deferred[ErrorResponse | None] = Deferred()
        pending = _PendingQuery(d)
        rows: list[tuple[bytes | None, ...]] = []
        pending.rows = rows
        self._queries.append(pending)
        self.write(codec.encode(Query(sql)))

        def done(error: ErrorResponse | None) -> list[tuple[bytes | None, ...]]:
            if error is not None:
                raise BackendError(error)
            return rows

        return d.addCallback(done)

    def queryParameters(
        self, sql: str, parameters: Sequence[str | None]
    ) -> Deferred[list[tuple[bytes | None, ...]]]:
        """
        Run C{sql} with C{parameters} bound as text values (C{$1}, C{$2}...;
        C{None} is SQL NULL) through the extended protocol (Parse, Bind,
        Execute, Sync on the unnamed statement and portal; no Describe:
        the rows come as text), and
        fire with the rows (text values, C{None} for NULL); fail with
        L{BackendError} if PostgreSQL refused it. A parameter is never part
        of the SQL text, so no quoting in it can change the statement (what
        C{auth_query}'s user name needs). Pipelined with the other owned
        queries; for pgtwist's own lookups, never on a client's behalf.
        """
        d: Deferred[ErrorResponse | None] = Deferred()
        pending = _PendingQuery(d)
        rows: list[tuple[bytes | None, ...]] = []
        pending.rows = rows
        self._queries.append(pending)
        values = tuple(None if value is None else value.encode("utf-8") for value in parameters)
        self.write(
            codec.encodeAll(
                [
                    Parse("", sql),
                    Bind("", "", (), values, ()),
                    Execute("", 0),
                    Sync(),
                ]
            )
        )

        def done(error: ErrorResponse | None) -> list[tuple[bytes | None, ...]]:
            if error is not None:
                raise BackendError(error)
            return rows

        return d.addCallback(done)

    def queryPrepared(
        self, statement: str, sql: str, parameters: Sequence[str | None]
    ) -> Deferred[list[tuple[bytes | None, ...]]]:
        """
        L{queryPreparedThen}, answered by a Deferred: fires with the rows,
        fails with L{BackendError} or L{BackendGone}.
        """
        d: Deferred[list[tuple[bytes | None, ...]]] = Deferred()

        def answered(outcome: list[tuple[bytes | None, ...]] | Failure) -> None:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)

        self.queryPreparedThen(statement, sql, parameters, answered)
        return d

    def queryPreparedThen(
        self,
        statement: str,
        sql: str,
        parameters: Sequence[str | None],
        then: Callable[[list[tuple[bytes | None, ...]] | Failure], None],
    ) -> None:
        """
        Run C{sql} as L{queryParameters} does (C{parameters} bound as text,
        never part of the SQL), as the named statement C{statement},
        prepared on this connection once: the first call, and the first
        after PostgreSQL refused a call of it (the statement may be gone or
        its plan invalid) or after C{sql} changed, sends Close, Parse, Bind,
        Execute and Sync; the others only Bind, Execute and Sync, written
        at once, so PostgreSQL parses and plans the SQL once per connection
        rather than per call (auth_query's lookups at every login). For
        pgtwist's own connections only: a client never sees the statement.

        The answer goes to C{then}, called once, with no Deferred between
        (a lookup at every login): the rows (text values, C{None} for
        NULL), or a L{Failure} of L{BackendError} (PostgreSQL refused it)
        or L{BackendGone} (the connection was lost first).
        """
        pending = _PendingQuery(None, then)
        pending.rows = []
        self._queries.append(pending)
        # Bind: unnamed portal, the statement, no parameter formats (text),
        # the values, no result formats (text); framed here, in one join.
        name = statement.encode("utf-8")
        body = [b"", b"\x00", name, b"\x00", _NO_FORMATS, INT16.pack(len(parameters))]
        # Length word, portal, name, formats, count; the result formats below.
        length = 4 + 1 + len(name) + 1 + 2 + 2 + 2
        for value in parameters:
            if value is None:
                body.append(_NULL_VALUE)
                length += 4
            else:
                encoded = value.encode("utf-8")
                body += (INT32.pack(len(encoded)), encoded)
                length += 4 + len(encoded)
        body += (_NO_FORMATS, _EXECUTE_SYNC)
        body[0] = constants.BIND + INT32.pack(length)
        prepared = self._prepared
        if prepared.get(statement) != sql:
            # Close first: Parse refuses a name in use (a statement of an
            # older SQL, or one whose call failed but which still exists).
            prepared[statement] = sql
            body[0] = codec.encodeAll([Close(b"S", statement), Parse(statement, sql)]) + body[0]
        pending.statement = (statement, sql)
        eagerWrite(self.transport, b"".join(body))

    def resetSession(self) -> Deferred[ErrorResponse | None]:
        """
        See L{IPooledConnection.resetSession}.
        """
        self.sessionResets += 1
        return self.simpleQuery("DISCARD ALL")

    def _queryFrame(self, message: Message) -> None:
        if isinstance(message, ParameterStatus):
            self.parameters[message.name] = message.value
            return
        if not self._queries:
            if isinstance(message, ErrorResponse):
                # An idle backend told something, typically a FATAL before
                # closing (pg_terminate_backend, shutdown).
                self.log.info(
                    "Idle backend {backendPid} on {server}: {sqlstate} {message}",
                    backendPid=self.processId,
                    server=self.server.name,
                    sqlstate=message.code,
                    message=message.message,
                )
                self.closing = True
            return
        pending = self._queries[0]
        if isinstance(message, ErrorResponse) and pending.error is None:
            pending.error = message

    def _ready(self, status: bytes) -> None:
        """
        ReadyForQuery (read in place by L{_ownedScan}): the oldest owned
        query is answered.
        """
        queries = self._queries
        if queries:
            self.transactionStatus = status
            pending = queries.pop(0)
            then = pending.then
            if then is None:
                pending.deferred.callback(pending.error)  # type: ignore[union-attr]
            elif pending.error is None:
                then(pending.rows)  # type: ignore[arg-type]
            else:
                self._preparedRefused(pending, then)

    def _preparedRefused(
        self,
        pending: _PendingQuery,
        then: Callable[[list[tuple[bytes | None, ...]] | Failure], None],
    ) -> None:
        """
        PostgreSQL refused a call of a prepared statement
        (L{queryPreparedThen}): prepare it again at the next call, since it
        may be gone or its plan invalid.
        """
        statement = pending.statement
        error = pending.error
        assert statement is not None and error is not None
        name, sql = statement
        if self._prepared.get(name) == sql:
            del self._prepared[name]
        then(Failure(BackendError(error)))

    # -- attached mode --------------------------------------------------------

    def attach(self, session: IPipelineSession, frontend: IFrontendLink) -> None:
        """
        See L{IBackendLink.attach}.
        """
        assert self._walker.atBoundary and not self._queries, "backend attached mid-message"
        self._session = session
        self._frontend = frontend
        self.clean = True
        peer = frontend.transport
        transport = self.transport
        # PostgreSQL's bytes go straight to the session, without a call
        # through dataReceived (detach puts the method back).
        self.dataReceived = session.backendDataReceived  # type: ignore[method-assign]
        if peer is not None and transport is not None:
            # A full buffer towards PostgreSQL stops reading the client, and
            # one towards the client stops reading PostgreSQL. Throttle.of
            # and Throttle.follow, inlined: this runs once per transaction.
            own = self._ownThrottle
            if own is None:
                own = self._ownThrottle = Throttle.of(transport)
            if own is not None:
                own.peer = peer
                if own.paused:
                    peer.pauseProducing()
            theirs = getattr(peer, "producer", None)
            if not isinstance(theirs, Throttle):
                theirs = Throttle.of(peer)
            self._peerThrottle = theirs
            if theirs is not None:
                theirs.peer = transport
                if theirs.paused:
                    transport.pauseProducing()  # type: ignore[attr-defined]

    def detach(self) -> None:
        """
        See L{IBackendLink.detach}.
        """
        self._frontend = None
        self._session = None
        self.__dict__.pop("dataReceived", None)
        own = self._ownThrottle
        if own is not None:
            # Throttle.release, inlined.
            client, own.peer = own.peer, None
            if own.paused and client is not None:
                # Paused because PostgreSQL was not reading: that pause was
                # this link's, and the client is no longer behind this backend.
                client.resumeProducing()
        theirs, self._peerThrottle = self._peerThrottle, None
        if theirs is None or theirs.peer is not self.transport:
            return
        theirs.peer = None
        if theirs.paused:
            # Paused by the client's full buffer: a pooled backend must read
            # again now that it is ours.
            transport: Any = self.transport
            if getattr(transport, "connected", False):
                transport.resumeProducing()

    def write(self, data: bytes) -> None:
        """
        See L{IBackendLink.write}.
        """
        eagerWrite(self.transport, data)

    # -- Protocol -------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Hand data to the attached session, or decode it ourselves.
        """
        session = self._session
        if session is not None:
            session.backendDataReceived(data)
            return
        if self._sslPending:
            self._sslAnswer(data)
            return
        try:
            self._walker.walk(data, self._ownedScan, [])
        except errors.ProtocolViolation as e:
            self.log.error(
                "Backend {server} broke the protocol: {message}",
                server=self.server.name,
                message=e.message,
            )
            self.closing = True
            self.transport.loseConnection()  # type: ignore[union-attr]

    def _ownedScan(self, data: bytes, offset: int, out: list[bytes]) -> int:
        """
        Decode the whole messages of C{data} from C{offset} (a
        L{MessageWalker.walk} scan); once a callback attached a session, the
        rest is the session's.
        """
        size = len(data)
        limit = self._walker.maxMessageLength
        while size - offset >= 5:
            if self._session is not None:
                break
            type, length = HEADER.unpack_from(data, offset)
            if length < 4 or length > limit:
                raise invalidLength()
            end = offset + 1 + length
            if end > size:
                return offset
            if type == constants.NOTIFICATION_RESPONSE:
                # A listener backend's (pgtwist.pipelines._notify).
                if self.notificationCallback is not None:
                    self.notificationCallback(data[offset + 5 : end])
                offset = end
                continue
            if self._login is not None:
                self._loginFrame(codec.decodeBackend(type, data[offset + 5 : end]))
            elif type == constants.DATA_ROW:
                self._dataRow(data, offset + 5, end)
            elif type == constants.READY_FOR_QUERY:
                # The end of every owned query: read in place, not decoded.
                if length != 5:
                    raise errors.ProtocolViolation("invalid message format")
                self._ready(data[offset + 5 : end])
            elif type not in _IGNORED_WHEN_OWNED:
                self._queryFrame(codec.decodeBackend(type, data[offset + 5 : end]))
            offset = end
        if self._session is not None and offset < size:
            # Attached by a callback of a message just decoded.
            self._session.backendDataReceived(data[offset:])
            return size
        return offset

    def _dataRow(self, data: bytes, start: int, end: int) -> None:
        """
        Keep the values of the DataRow in C{data[start:end]} for the oldest
        owned query that wants rows, read in place rather than decoded as a
        L{DataRow} (auth_query's answer at every login).

        @raise ProtocolViolation: The values do not fill the body exactly.
        """
        queries = self._queries
        if not queries or queries[0].rows is None:
            return
        if end - start < 2:
            raise errors.ProtocolViolation("invalid message format")
        (count,) = INT16.unpack_from(data, start)
        offset = start + 2
        values: list[bytes | None] = []
        for _ in range(count):
            if end - offset < 4:
                raise errors.ProtocolViolation("invalid message format")
            (length,) = INT32.unpack_from(data, offset)
            offset += 4
            if length == -1:
                values.append(None)
                continue
            if length < 0 or end - offset < length:
                raise errors.ProtocolViolation("invalid message format")
            values.append(data[offset : offset + length])
            offset += length
        if offset != end:
            raise errors.ProtocolViolation("invalid message format")
        queries[0].rows.append(tuple(values))

    def close(self) -> None:
        """
        Say goodbye to PostgreSQL (Terminate) and close.
        """
        if self.closing or not self.connected:
            self.closing = True
            if self.transport is not None:
                self.transport.loseConnection()
            return
        self.closing = True
        self.transport.write(codec.encode(Terminate()))  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(BackendGone())) -> None:  # noqa: B008
        """
        Tell whoever depends on this backend.
        """
        self.connected = False
        self.closing = True
        if self._login is not None:
            login, self._login = self._login, None
            report = self._tlsReport
            if report is not None and (
                report.problem is not None or isinstance(reason.value, SSLError)
            ):
                error = servertls.handshakeError(self.server, report, reason.value)
                self.log.warn(
                    "TLS to {server} ({host}:{port}, sslmode={sslmode}) failed: {message}; "
                    "OpenSSL says: {reason}",
                    server=self.server.name,
                    host=self.server.host,
                    port=self.server.port,
                    sslmode=self.server.sslmode,
                    message=error.message,
                    reason=reason.getErrorMessage(),
                )
                reason = Failure(BackendError(error))
            login.errback(reason)
        queries, self._queries = self._queries, []
        for pending in queries:
            gone = Failure(BackendGone(str(reason.value)))
            if pending.then is None:
                pending.deferred.errback(gone)  # type: ignore[union-attr]
            else:
                pending.then(gone)
        session, self._session = self._session, None
        self.__dict__.pop("dataReceived", None)
        if session is not None:
            session.backendLost(reason)
        if self.lostCallback is not None:
            self.lostCallback(self, reason)


class _PendingQuery:
    """
    A query pgtwist sent itself and its first error.
    """

    __slots__ = ("deferred", "error", "rows", "statement", "then")

    def __init__(
        self,
        deferred: Deferred[ErrorResponse | None] | None,
        then: Callable[[list[tuple[bytes | None, ...]] | Failure], None] | None = None,
    ) -> None:
        """
        @param deferred: Fired with the first error (or C{None}) at
            ReadyForQuery; C{None} when C{then} answers instead.
        @param then: Called with the rows, or a failure, at ReadyForQuery
            (L{BackendProtocol.queryPreparedThen}).
        """
        self.deferred = deferred
        self.then = then
        self.error: ErrorResponse | None = None
        #: Where L{BackendProtocol.queryRows} collects DataRows; C{None}
        #: for queries whose rows nobody wants.
        self.rows: list[tuple[bytes | None, ...]] | None = None
        #: The (name, SQL) of a prepared statement's call.
        self.statement: tuple[str, str] | None = None


class _BackendFactory(ClientFactory):
    """
    Builds exactly one protocol and reports connection failures to it.
    """

    noisy = False

    def __init__(self, protocol: BackendProtocol) -> None:
        self.protocol_: BackendProtocol | None = protocol

    def buildProtocol(self, addr: IAddress | None) -> BackendProtocol:
        """
        The protocol given at construction.
        """
        assert self.protocol_ is not None
        return self.protocol_

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        """
        Let go of the connection once it is over. The transport refers to
        its connector, the connector to this factory, the factory to the
        protocol and the protocol to the transport: left so, the backend and
        everything it served would be freed only by Python's cyclic
        collector, in bulk and late (see L{releaseConnector}).
        """
        self.protocol_ = None
        releaseConnector(connector)

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        """
        Fail the login.
        """
        protocol = self.protocol_
        if protocol is not None and protocol._login is not None:
            login, protocol._login = protocol._login, None
            login.errback(reason)


def connectBackend(
    reactor: Any,
    server: ServerSettings,
    key: PoolKey,
    password: BackendCredential | None,
    authMethods: Sequence[IAuthMethod],
    timeout: float = 15.0,
    database: str | None = None,
) -> tuple[BackendProtocol, Deferred[BackendProtocol]]:
    """
    Open a connection to C{server} and log in as C{key}'s user.

    @param password: The vault's password, or a pass-through credential
        (see L{pgtwist.interfaces.IAuthMethod.backendExchange}).
    @param database: The database to log into (default: C{key}'s).

    @return: The protocol (so its state can be tracked at once) and a
        Deferred that fires with it once it is ready for queries.
    """
    protocol = BackendProtocol(key, server, password, authMethods, reactor)
    if database is not None:
        protocol.database = database
    factory = _BackendFactory(protocol)
    connectServer(reactor, server, factory, timeout)
    return protocol, protocol.whenLoggedIn()
