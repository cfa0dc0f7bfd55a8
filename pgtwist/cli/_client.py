# -*- test-case-name: tests.unit.test_cli -*-
"""
A small synchronous client for pgtwist's admin console, for C{pgtwist-cli}.

A command-line tool sends a query or three and exits, so it needs no
reactor: this is a blocking L{socket} plus L{pgtwist.wire}'s framing and
codec, and L{pgtwist.auth._scram.ScramClient} for remote logins. It speaks
only what the console speaks: startup, authentication (trust, SCRAM-SHA-256,
and, only when an L{AuthRequirement} allows them, cleartext and md5), and the
simple query protocol.

Which authentication methods the server may ask for is the client's choice,
as libpq's C{require_auth}: by default a password is only ever used for
SCRAM-SHA-256, whose server signature proves the server knows the password,
so a server (or anything in between) that asks for a cleartext or md5
password is refused before the password leaves this process.

Failures are split by what the operator can do about them:
L{ConsoleUnavailable} (pgtwist cannot be reached or refused the login:
pgagroal-cli's connection error) and L{CommandFailed} (pgtwist answered the
command with an ErrorResponse: a data error).
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pgtwist._compat import SLOTS
from pgtwist.auth._md5 import md5Response
from pgtwist.auth._scram import SCRAM_SHA_256, ScramClient, ScramError, makeNonce
from pgtwist.wire import codec, constants
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    AuthenticationRequest,
    BackendKeyData,
    CommandComplete,
    DataRow,
    EmptyQueryResponse,
    ErrorResponse,
    FieldDescription,
    Message,
    NegotiateProtocolVersion,
    NoticeResponse,
    ParameterStatus,
    PasswordMessage,
    Query,
    ReadyForQuery,
    RowDescription,
    StartupMessage,
    Terminate,
)

__all__ = [
    "AuthRequirement",
    "CommandFailed",
    "ConsoleClient",
    "ConsoleError",
    "ConsoleUnavailable",
    "Reply",
    "ResultSet",
    "connectTcp",
    "connectUnix",
]

#: How many bytes one C{recv} asks for.
_RECEIVE_SIZE = 65536
#: Type OIDs whose text form becomes a Python C{int}: int2, int4, int8, oid.
_INTEGER_TYPES = frozenset({21, 23, 20, 26})
#: numeric: an C{int} when it has no fraction, else a C{float}.
_NUMERIC_TYPE = 1700
_BOOLEAN_TYPE = 16
#: SQLSTATEs that mean "wrong user or password".
_AUTHENTICATION_CODES = frozenset(
    {constants.SQLSTATE_INVALID_PASSWORD, constants.SQLSTATE_INVALID_AUTHORIZATION}
)


#: The methods an L{AuthRequirement} may name: libpq's C{require_auth} words
#: for what this client speaks (C{none} is a login without authentication).
AUTH_METHODS = ("password", "md5", "scram-sha-256", "none")

#: Why each authentication request breaks a requirement, in libpq's words.
_REQUESTED = {
    constants.AUTH_OK: "server did not complete authentication",
    constants.AUTH_CLEARTEXT_PASSWORD: "server requested a cleartext password",
    constants.AUTH_MD5_PASSWORD: "server requested a hashed password",
    constants.AUTH_SASL: "server requested SASL authentication",
    constants.AUTH_SASL_CONTINUE: "server requested SASL authentication",
    constants.AUTH_SASL_FINAL: "server requested SASL authentication",
    constants.AUTH_GSS: "server requested GSSAPI authentication",
    constants.AUTH_GSS_CONTINUE: "server requested GSSAPI authentication",
    constants.AUTH_SSPI: "server requested SSPI authentication",
}

#: The method (an L{AUTH_METHODS} word) each request asks for.
_METHOD_OF = {
    constants.AUTH_OK: "none",
    constants.AUTH_CLEARTEXT_PASSWORD: "password",
    constants.AUTH_MD5_PASSWORD: "md5",
    constants.AUTH_SASL: "scram-sha-256",
    constants.AUTH_SASL_CONTINUE: "scram-sha-256",
    constants.AUTH_SASL_FINAL: "scram-sha-256",
}


class ConsoleError(Exception):
    """
    Base of this module's errors; the message is fit for an operator.
    """


class ConsoleUnavailable(ConsoleError):
    """
    pgtwist could not be reached, broke the protocol, went away, or refused
    the login.

    @ivar authentication: Whether the login itself was refused (bad
        credentials), as opposed to a network or protocol failure.
    """

    def __init__(self, message: str, authentication: bool = False) -> None:
        super().__init__(message)
        self.authentication = authentication


class CommandFailed(ConsoleError):
    """
    The console answered a command with an ErrorResponse; the connection is
    still usable.  The message is the error's, then its detail if any.

    @ivar error: The ErrorResponse.
    @ivar notices: Notices that came before it.
    """

    def __init__(self, error: ErrorResponse, notices: tuple[NoticeResponse, ...] = ()) -> None:
        message = error.message or "command failed"
        detail = error.get(constants.FIELD_DETAIL)
        super().__init__(f"{message}: {detail}" if detail else message)
        self.error = error
        self.notices = notices


@dataclass(frozen=True, **SLOTS)
class AuthRequirement:
    """
    The authentication methods the client lets the server use, as libpq's
    C{require_auth}: a comma-separated list of L{AUTH_METHODS} the server
    must use one of, or, with every name prefixed by C{!}, a list it must
    not use.

    @ivar spec: The list as written, for error messages.
    @ivar methods: The names, without C{!}.
    @ivar negated: Whether C{methods} are the forbidden ones.
    """

    spec: str
    methods: frozenset[str]
    negated: bool = False

    @classmethod
    def parse(cls, spec: str) -> AuthRequirement:
        """
        Read a C{require_auth} list.

        @raise ValueError: An empty or unknown name, a name given twice, or
            C{!} on some names but not all; the message says which.
        """
        names = [name.strip() for name in spec.split(",")]
        negated = [name.startswith("!") for name in names]
        if any(negated) and not all(negated):
            raise ValueError(
                f'negative require_auth method "{spec}" cannot be mixed with non-negative methods'
            )
        methods: set[str] = set()
        for name in names:
            method = name[1:] if name.startswith("!") else name
            if method not in AUTH_METHODS:
                raise ValueError(
                    f'invalid require_auth method "{method}" (use {", ".join(AUTH_METHODS)})'
                )
            if method in methods:
                raise ValueError(f'require_auth method "{method}" is specified more than once')
            methods.add(method)
        return cls(spec, frozenset(methods), all(negated))

    def allows(self, method: str) -> bool:
        """
        Whether the server may use C{method} (an L{AUTH_METHODS} word).
        """
        return (method in self.methods) != self.negated


#: Only SCRAM-SHA-256: the default whenever a password is given.
SCRAM_ONLY = AuthRequirement("scram-sha-256", frozenset({"scram-sha-256"}))
#: Only a login without authentication (a trusted local peer).
NO_AUTHENTICATION = AuthRequirement("none", frozenset({"none"}))


class _Socket(Protocol):
    """
    What L{ConsoleClient} needs of a socket (tests pass an in-memory one).
    """

    def sendall(self, data: bytes, /) -> None:
        """
        Send all of C{data}.
        """

    def recv(self, size: int, /) -> bytes:
        """
        Up to C{size} bytes; C{b""} once the peer closed.
        """

    def close(self) -> None:
        """
        Release the socket.
        """


def _typedValue(field: FieldDescription, value: bytes | None) -> object:
    """
    A column value as a Python object, by its type OID: integers as C{int},
    numeric as C{int} or C{float}, booleans as C{bool}, the rest as C{str}.
    """
    if value is None:
        return None
    text = codec.decodeText(value)
    try:
        if field.typeOid in _INTEGER_TYPES:
            return int(text)
        if field.typeOid == _NUMERIC_TYPE:
            number = float(text)
            return int(number) if number.is_integer() and "." not in text else number
    except ValueError:
        return text
    if field.typeOid == _BOOLEAN_TYPE:
        return text in ("t", "true")
    return text


@dataclass(frozen=True, **SLOTS)
class ResultSet:
    """
    What one statement returned: its columns and rows (both empty for a
    command such as C{RELOAD}) and its CommandComplete tag.
    """

    columns: tuple[FieldDescription, ...]
    rows: tuple[tuple[bytes | None, ...], ...]
    tag: str

    @property
    def names(self) -> tuple[str, ...]:
        """
        The column names, in order.
        """
        return tuple(field.name for field in self.columns)

    def texts(self) -> list[tuple[str | None, ...]]:
        """
        The rows with every value as text (C{None} for NULL).
        """
        return [
            tuple(None if value is None else codec.decodeText(value) for value in row)
            for row in self.rows
        ]

    def records(self) -> list[dict[str, object]]:
        """
        The rows as column name to typed value (see L{_typedValue}).
        """
        return [
            {field.name: _typedValue(field, value) for field, value in zip(self.columns, row)}
            for row in self.rows
        ]


@dataclass(frozen=True, **SLOTS)
class Reply:
    """
    Everything the console sent for one query string: a L{ResultSet} per
    statement and the notices (PgBouncer's C{SHOW HELP} answers in one).
    """

    results: tuple[ResultSet, ...]
    notices: tuple[NoticeResponse, ...] = ()

    @property
    def tag(self) -> str:
        """
        The last statement's CommandComplete tag (C{""} if none).
        """
        return self.results[-1].tag if self.results else ""

    @property
    def resultSet(self) -> ResultSet:
        """
        The first statement's result.

        @raise ConsoleUnavailable: The console sent no result at all.
        """
        if not self.results:
            raise ConsoleUnavailable("pgtwist sent no result")
        return self.results[0]


class ConsoleClient:
    """
    One connection to the admin console over a connected socket.

    Use L{login} once, then L{query} as often as needed, then L{close}.
    """

    def __init__(self, sock: _Socket) -> None:
        self._socket = sock
        self._framer = MessageFramer()
        self._pending: deque[tuple[bytes, bytes]] = deque()
        self._requirement = SCRAM_ONLY
        #: The method the client answered, once it sent a password or
        #: started SCRAM (libpq's C{client_finished_auth}, roughly).
        self._answered: str | None = None

    # -- transport ---------------------------------------------------------------

    def _send(self, *messages: Message) -> None:
        """
        Write C{messages} in one call.

        @raise ConsoleUnavailable: The socket failed.
        """
        try:
            self._socket.sendall(codec.encodeAll(messages))
        except OSError as e:
            raise ConsoleUnavailable(f"lost the connection to pgtwist: {_reason(e)}") from e

    def _receive(self) -> Message:
        """
        The next message from pgtwist, reading from the socket as needed.

        @raise ConsoleUnavailable: The socket failed or closed, or the bytes
            are not the PostgreSQL protocol.
        """
        while not self._pending:
            try:
                data = self._socket.recv(_RECEIVE_SIZE)
            except OSError as e:
                raise ConsoleUnavailable(f"lost the connection to pgtwist: {_reason(e)}") from e
            if not data:
                raise ConsoleUnavailable("pgtwist closed the connection")
            try:
                self._pending.extend(self._framer.feed(data))
            except ProtocolViolation as e:
                raise ConsoleUnavailable(f"pgtwist broke the protocol: {e}") from e
        type, body = self._pending.popleft()
        try:
            return codec.decodeBackend(type, body)
        except ProtocolViolation as e:
            raise ConsoleUnavailable(f"pgtwist broke the protocol: {e}") from e

    # -- session -----------------------------------------------------------------

    def login(
        self,
        user: str,
        database: str,
        password: str | None = None,
        nonce: Callable[[], str] = makeNonce,
        requireAuth: AuthRequirement | None = None,
    ) -> None:
        """
        Send the startup packet and authenticate, up to ReadyForQuery.

        @param password: Needed when pgtwist asks for one (remote logins);
            a local same-uid peer is trusted without.
        @param nonce: Makes the SCRAM client nonce (injectable for tests).
        @param requireAuth: The methods the server may use; by default
            L{SCRAM_ONLY} with a password and L{NO_AUTHENTICATION} without
            (there is nothing to send).
        @raise ConsoleUnavailable: With C{authentication} set when the
            credentials are refused or missing; without it when the server
            asks for a method C{requireAuth} does not allow (the password
            is then never sent).
        """
        if requireAuth is None:
            requireAuth = NO_AUTHENTICATION if password is None else SCRAM_ONLY
        self._requirement = requireAuth
        self._answered = None
        self._send(
            StartupMessage({"user": user, "database": database, "application_name": "pgtwist-cli"})
        )
        scram: ScramClient | None = None
        while True:
            message = self._receive()
            if isinstance(message, AuthenticationRequest):
                scram = self._authenticate(message, user, password, scram, nonce)
            elif isinstance(message, ErrorResponse):
                raise ConsoleUnavailable(
                    message.message or "login refused",
                    authentication=message.code in _AUTHENTICATION_CODES,
                )
            elif isinstance(message, ReadyForQuery):
                return
            elif not isinstance(
                message, (ParameterStatus, BackendKeyData, NoticeResponse, NegotiateProtocolVersion)
            ):
                raise ConsoleUnavailable(
                    f"pgtwist sent an unexpected {type(message).__name__} during login"
                )

    def _authenticate(
        self,
        request: AuthenticationRequest,
        user: str,
        password: str | None,
        scram: ScramClient | None,
        nonce: Callable[[], str],
    ) -> ScramClient | None:
        """
        Answer one authentication request.

        @return: The SCRAM exchange under way, if any.
        """
        code = request.code
        if code == constants.AUTH_OK:
            if scram is not None and not scram.verified:
                # A server that cannot prove it knows the password is not pgtwist.
                raise ConsoleUnavailable("pgtwist ended SCRAM without proving its identity")
            if self._answered is None:
                self._check(code)
            return scram
        if code in (constants.AUTH_SASL_CONTINUE, constants.AUTH_SASL_FINAL):
            if scram is None:
                raise ConsoleUnavailable("pgtwist sent a SASL message out of order")
            try:
                if code == constants.AUTH_SASL_CONTINUE:
                    self._send(PasswordMessage(scram.serverFirst(request.data)))
                else:
                    scram.serverFinal(request.data)
            except ScramError as e:
                raise ConsoleUnavailable(f"SCRAM authentication failed: {e}", True) from e
            except ProtocolViolation as e:
                raise ConsoleUnavailable(f"pgtwist broke the SCRAM exchange: {e}") from e
            return scram
        if password is None:
            raise ConsoleUnavailable(
                "pgtwist asks for a password (log in remotely with -h, -p, -U and -P)", True
            )
        self._check(code)
        if code == constants.AUTH_SASL:
            mechanisms = codec.parseSASLMechanisms(request.data)
            if SCRAM_SHA_256 not in mechanisms:
                raise ConsoleUnavailable(f"no supported SASL mechanism in {mechanisms}")
            scram = ScramClient(password, nonce())
            self._answered = "scram-sha-256"
            self._send(codec.encodeSASLInitialResponse(SCRAM_SHA_256, scram.clientFirst()))
            return scram
        if code == constants.AUTH_CLEARTEXT_PASSWORD:
            self._answered = "password"
            self._send(PasswordMessage(codec.encodeString(password)))
            return None
        if code == constants.AUTH_MD5_PASSWORD:
            self._answered = "md5"
            response = md5Response(password, user, request.data)
            self._send(PasswordMessage(codec.encodeString(response)))
            return None
        raise ConsoleUnavailable(f"unsupported authentication request {code}")

    def _check(self, code: int) -> None:
        """
        Refuse an authentication request the requirement does not allow,
        before anything is sent (libpq's C{check_expected_areq}).

        @raise ConsoleUnavailable: It is not allowed, or not a method this
            client knows.
        """
        method = _METHOD_OF.get(code)
        if method is None or not self._requirement.allows(method):
            reason = _REQUESTED.get(code, "server requested an unknown authentication type")
            raise ConsoleUnavailable(
                f'authentication method requirement "{self._requirement.spec}" failed: {reason}'
            )

    def query(self, sql: str) -> Reply:
        """
        Run C{sql} with the simple query protocol and collect everything up
        to ReadyForQuery.

        @raise CommandFailed: The console answered with an ErrorResponse.
        @raise ConsoleUnavailable: The connection failed on the way.
        """
        self._send(Query(sql))
        results: list[ResultSet] = []
        notices: list[NoticeResponse] = []
        columns: tuple[FieldDescription, ...] = ()
        rows: list[tuple[bytes | None, ...]] = []
        error: ErrorResponse | None = None
        while True:
            message = self._receive()
            if isinstance(message, RowDescription):
                columns, rows = message.fields, []
            elif isinstance(message, DataRow):
                rows.append(message.values)
            elif isinstance(message, CommandComplete):
                results.append(ResultSet(columns, tuple(rows), message.tag))
                columns, rows = (), []
            elif isinstance(message, NoticeResponse):
                notices.append(message)
            elif isinstance(message, ErrorResponse):
                error = message
            elif isinstance(message, ReadyForQuery):
                break
            elif not isinstance(message, (EmptyQueryResponse, ParameterStatus)):
                raise ConsoleUnavailable(
                    f"pgtwist sent an unexpected {type(message).__name__} to a query"
                )
        if error is not None:
            raise CommandFailed(error, tuple(notices))
        return Reply(tuple(results), tuple(notices))

    def close(self) -> None:
        """
        Say goodbye (Terminate) and close the socket; never raises.
        """
        try:
            self._socket.sendall(codec.encode(Terminate()))
        except OSError:
            pass
        try:
            self._socket.close()
        except OSError:
            pass


def _reason(error: OSError) -> str:
    """
    The operator-facing reason of a socket error.
    """
    if isinstance(error, TimeoutError):
        return "timed out"
    return error.strerror or str(error) or type(error).__name__


def connectUnix(path: str, timeout: float) -> socket.socket:
    """
    A stream socket connected to the unix socket at C{path}.

    @raise ConsoleUnavailable: Nothing listens there.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise ConsoleUnavailable(f"cannot connect to {path}: {_reason(e)}") from e
    return sock


def connectTcp(host: str, port: int, timeout: float) -> socket.socket:
    """
    A TCP socket connected to C{host}:C{port}.

    @raise ConsoleUnavailable: The host cannot be reached or refuses.
    """
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise ConsoleUnavailable(f"cannot connect to {host}:{port}: {_reason(e)}") from e
    sock.settimeout(timeout)
    return sock
