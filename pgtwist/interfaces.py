# -*- test-case-name: tests.contract.test_pipeline_contract,tests.contract.test_auth_contract -*-
"""
Every zope.interface of pgtwist: the seams between the Twisted shell, the
pooling policy (pipelines), the pools, their statistics and authentication
(auth methods). Whatever one of these layers uses of another is declared
here, so that a fake (L{pgtwist.testing}) or a plugin can stand in for it.

Pipelines and auth methods are plugins: module-level instances providing
L{twisted.plugin.IPlugin} and L{IPipeline} or L{IAuthMethod}, found with
C{getPlugins(I..., pgtwist.plugins)}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IReactorTime
    from twisted.python.failure import Failure

    from pgtwist.auth.steps import AuthStep
    from pgtwist.config.model import Configuration, PoolKey, UserEntry
    from pgtwist.config.verifiers import BackendCredential
    from pgtwist.wire.messages import AuthenticationRequest, ErrorResponse, Message


class PoolTimeout(Exception):
    """
    No backend became available within C{blocking_timeout}: how
    L{IBackendPool.acquire} fails when a client waited too long.

    @ivar setting: The key that set the wait: C{"blocking_timeout"}
        (pgagroal's) or C{"query_wait_timeout"} (PgBouncer's, which ends
        the client with PgBouncer's error).
    """

    def __init__(self, setting: str = "blocking_timeout") -> None:
        super().__init__(setting)
        self.setting = setting


class IAuthExchange(Interface):
    """
    One authentication conversation, sans-IO: no reactor, no transport, no
    blocking. The caller sends the messages of each returned step and feeds
    the peer's replies to L{receive} until a step is final.
    """

    def start() -> AuthStep:
        """
        The first step.

        @return: A L{pgtwist.auth.steps.AuthStep}.
        """

    def receive(message: Message) -> AuthStep:
        """
        Consume the peer's next message (a L{pgtwist.wire.messages.Message}).

        @return: The next L{pgtwist.auth.steps.AuthStep}.
        @raise pgtwist.wire.errors.ProtocolViolation: Out-of-order or malformed input.
        """


class IAuthMethod(Interface):
    """
    Plugin: one HBA method, both as a server (verifying clients) and, where
    PostgreSQL can ask for it, as a client (logging into PostgreSQL).

    A method may also have C{certificateExchange(user, certificate)}: the
    frontend then calls it instead of L{frontendExchange}, with the client
    certificate verified in the TLS handshake or C{None} (see
    L{pgtwist.auth.methods.CertAuthMethod}).
    """

    name = Attribute(
        "HBA keyword: 'trust', 'reject', 'password', 'md5', 'scram-sha-256', 'cert'. Unique."
    )
    backendRequestCodes = Attribute(
        "frozenset[int] of AuthenticationRequest codes (AUTH_*) this method answers for PostgreSQL."
    )

    def frontendExchange(user: UserEntry, channelBinding: bytes | None) -> IAuthExchange:
        """
        Start verifying a client. pgtwist plays the server.

        @param user: The L{pgtwist.config.model.UserEntry}, already looked up.
        @param channelBinding: TLS channel-binding data (C{tls-server-end-point}
            of the certificate pgtwist presented), or C{None} without TLS.
        """

    def backendExchange(
        user: str,
        password: BackendCredential | None,
        request: AuthenticationRequest,
        channelBinding: bytes | None = None,
    ) -> IAuthExchange:
        """
        Start proving identity to PostgreSQL. pgtwist plays the client.

        @param password: What to log in with: the vault's plaintext password,
            or a pass-through credential a client's login left behind (a
            L{pgtwist.config.verifiers.ScramPassThrough} answers SCRAM, an
            L{pgtwist.config.verifiers.Md5Verifier} answers md5, neither a
            cleartext request); C{None} when pgtwist has none.

        @param request: The L{pgtwist.wire.messages.AuthenticationRequest} received.
        @param channelBinding: TLS channel-binding data (C{tls-server-end-point}
            of PostgreSQL's certificate), or C{None} without TLS.
        """


class IFrontendLink(Interface):
    """
    What a pipeline may do to its client connection.
    """

    key = Attribute("The (database, user) pool key the client logged in for.")
    configuration = Attribute("The Configuration in force when the client connected.")
    startupParameters = Attribute("Mapping[str, str]: the StartupMessage parameters.")
    transport = Attribute(
        "The client connection's transport, or C{None} (a fake): L{IBackendLink.attach} links "
        "backpressure to it. Pipelines never use it."
    )

    def completeLogin(parameters: Mapping[str, str], processId: int) -> None:
        """
        Finish the login: send every ParameterStatus in C{parameters}, a
        BackendKeyData with C{processId} and a secret of pgtwist's own, and
        ReadyForQuery.
        """

    def write(data: bytes) -> None:
        """
        Send bytes to the client (sent at once when nothing is queued).
        """

    def pauseReading() -> None:
        """
        Stop delivering client data (for example while waiting for a backend).
        """

    def resumeReading() -> None:
        """
        Resume delivering client data.
        """

    def fail(error: ErrorResponse | None) -> None:
        """
        Send the L{pgtwist.wire.messages.ErrorResponse} (FATAL), then close.
        C{None} closes without a message (one was relayed already).
        """

    def failFromPool(reason: Failure) -> None:
        """
        Refuse the login with the right error for a failed
        L{IBackendPool.acquire} (a L{twisted.python.failure.Failure}).
        """

    def setCancelTarget(backend: IBackendLink | None) -> None:
        """
        Route this client's CancelRequests to C{backend} (C{None}: nowhere).
        """


class IBackendLink(Interface):
    """
    One PostgreSQL connection as pipelines see it.
    """

    processId = Attribute("int: the backend's pid from its BackendKeyData.")
    secretKey = Attribute("int: the backend's cancel secret.")
    server = Attribute("The L{pgtwist.config.model.ServerSettings} it is connected to.")
    parameters = Attribute("dict[str, str]: the latest ParameterStatus values.")
    transactionStatus = Attribute("b'I', b'T' or b'E' from the last ReadyForQuery seen.")
    clean = Attribute(
        "bool: the pipeline's verdict that no request is in flight (every Query/Sync answered "
        "by a ReadyForQuery, no partial message sent). A backend released unclean is closed."
    )
    sessionResets = Attribute(
        "int: how many times the pool reset this connection's session (C{DISCARD ALL}). "
        "What a pipeline remembers of a backend's session (prepared statements, settings) "
        "is void once this changes."
    )

    def attach(session: IPipelineSession, frontend: IFrontendLink) -> None:
        """
        Route this backend's data to C{session.backendDataReceived}, with
        backpressure both ways between this backend and C{frontend}'s
        connection (see L{pgtwist.net.throttle}).
        """

    def detach() -> None:
        """
        Stop routing data to the session, and end the backpressure link.
        """

    def write(data: bytes) -> None:
        """
        Send bytes to PostgreSQL (sent at once when nothing is queued).
        """

    def simpleQuery(sql: str) -> Deferred[ErrorResponse | None]:
        """
        Run C{sql} (one Query message) while no session is attached, and fire
        with the first L{pgtwist.wire.messages.ErrorResponse} PostgreSQL sent,
        or C{None}; ParameterStatus changes are recorded in C{parameters}.
        Several calls may be pipelined. Fails when the connection is lost.
        """


class IPooledConnection(IBackendLink):
    """
    What the pool needs of a backend beyond what pipelines use: its identity,
    whether it can still be lent, and closing it.
    """

    key = Attribute("The (database, user) pool key it logged in as.")
    connected = Attribute("bool: the connection is up (set once connected, cleared when lost).")
    closing = Attribute("bool: it is being closed, or PostgreSQL said it is going away.")
    authRequestCode = Attribute(
        "int or None: the first AuthenticationRequest code PostgreSQL sent at login."
    )
    transport = Attribute(
        "The connection's transport (C{None} until connected): SHOW SERVERS shows its addresses."
    )
    lostCallback = Attribute(
        "Callable[[IPooledConnection, Failure], None] or None: called when the connection "
        "is lost; the pool sets it to forget the backend."
    )

    def resetSession() -> Deferred[ErrorResponse | None]:
        """
        Run C{DISCARD ALL} (as L{simpleQuery}) and count it in C{sessionResets}.
        """

    def close() -> None:
        """
        Say goodbye to PostgreSQL (Terminate) and close the connection.
        """


class IPoolStats(Interface):
    """
    The counters of one pool that the pipelines and the frontend add to
    (SHOW STATS, the metrics). Plain integer attributes are added to in place.
    """

    bytesReceived = Attribute("int: bytes received from clients.")
    bytesSent = Attribute("int: bytes sent to clients.")
    queryCount = Attribute("int: requests answered.")
    clientParseCount = Attribute("int: Parse messages from clients.")
    serverParseCount = Attribute("int: Parse messages sent to PostgreSQL.")
    bindCount = Attribute("int: Bind messages relayed.")
    clientLoginCount = Attribute("int: clients that logged in.")
    authSuccess = Attribute("int: clients that authenticated.")
    authFailure = Attribute("int: clients that failed to authenticate.")

    def addQuery(seconds: float) -> None:
        """
        A request (Query, or an extended batch up to Sync) took C{seconds}.
        """

    def addTransaction(seconds: float) -> None:
        """
        A transaction (or an autocommit statement) took C{seconds}.
        """


class IBackendPool(Interface):
    """
    Backends by pool key, bounded by the configured limits.
    """

    def acquire(key: PoolKey, parameters: Mapping[str, str] | None) -> Deferred[IBackendLink]:
        """
        Get a backend for C{key} with the client's startup parameters in effect
        (C{None}: as it is; the pipeline applies settings itself).

        @return: A cancellable C{Deferred[IBackendLink]}; fails with
            L{PoolTimeout} after C{blocking_timeout}, or with
            L{pgtwist.net.backend.BackendError} carrying PostgreSQL's ErrorResponse.
        """

    def acquireIdle(key: PoolKey) -> IBackendLink | None:
        """
        An idle backend for C{key} lent at once, as it is, or C{None} when
        none is ready (no waiting, no connecting, no check): the per-transaction
        path of a pipeline that applies settings itself and falls back to
        L{acquire}.
        """

    def release(backend: IBackendLink, reset: bool = True) -> None:
        """
        Take a backend back: when it is clean and idle, reset it
        (C{DISCARD ALL}) for reuse, or with C{reset=False} keep its session
        state (prepared statements, settings) for the next transaction;
        close it otherwise.
        """

    def discard(backend: IBackendLink, reason: str) -> None:
        """
        Close a backend; never reuse it.
        """

    def abandon(backend: IBackendLink) -> None:
        """
        The client of C{backend} is gone while a request of its runs there:
        ask PostgreSQL to cancel that request (a CancelRequest with the
        backend's key, over a new connection) and close the backend; never
        reuse it. Only for a backend still lent to that client.
        """

    def closeIdleBackends(database: str) -> Deferred[None]:
        """
        Close the idle backends connected to C{database}, whatever their
        user, so that PostgreSQL sees no session of pgtwist's there (before
        a C{DROP DATABASE}); backends lent to clients are left alone.

        @return: Fires once their connections are closed (at once when
            there were none), or after a few seconds at the latest; never fails.
        """

    def statsFor(key: PoolKey) -> IPoolStats:
        """
        The statistics of C{key}'s pool, for the pipeline sessions and the
        clients of that pool to add to. The pool is created if there is
        none: only for clients that authenticated (a refused login uses
        L{countAuthFailure}).
        """

    def authRequestCode(key: PoolKey) -> int | None:
        """
        What PostgreSQL asked for when pgtwist last logged in for C{key}
        (an C{AUTH_*} code), or C{None} before the first login (or when
        C{key} has no pool): how the HBA method C{all} resolves. Never
        creates a pool.
        """

    def countAuthFailure(key: PoolKey) -> None:
        """
        A client asking for C{key} failed to authenticate: count it in the
        pool-independent total, and in C{key}'s pool's statistics only if
        that pool already exists. Nothing is created for C{key}: its names
        come from a client that proved nothing, and may be random.
        """

    def rememberCredential(key: PoolKey, credential: BackendCredential) -> None:
        """
        A client of C{key} authenticated against a verifier and left
        C{credential} (L{pgtwist.auth.steps.AuthStep.credential}): keep it
        on C{key}'s pool, so that backends for a user with no password in
        the vault log in by pass-through. Ignored when the vault has a
        password for the user. Call it only once the client authenticated:
        the pool's names must not come from one that proved nothing.
        """


#: What L{IPipelineSession.timeoutState} says a client is doing: nothing
#: (no transaction open), running a request on a backend, or idle inside
#: a transaction.
SESSION_IDLE = 0
SESSION_RUNNING = 1
SESSION_IDLE_IN_TRANSACTION = 2


class IPipelineSession(Interface):
    """
    The pooling policy for one authenticated client. It talks only to
    L{IFrontendLink}, L{IBackendPool} and L{IBackendLink}, never to a transport.
    """

    def begin() -> None:
        """
        The client authenticated: finish its login (L{IFrontendLink.completeLogin})
        or refuse it (L{IFrontendLink.fail}).
        """

    def frontendDataReceived(data: bytes) -> None:
        """
        The client sent bytes (whole messages or not).
        """

    def backendDataReceived(data: bytes) -> None:
        """
        The attached backend sent bytes.
        """

    def frontendLost(reason: Failure) -> None:
        """
        The client went away; release or discard the backend.
        """

    def backendLost(reason: Failure) -> None:
        """
        The attached backend went away; tell the client with an ErrorResponse.
        """

    def busy() -> bool:
        """
        Whether a request of the client is running on a backend (a client
        that is not busy may be disconnected as idle).
        """

    def waitingForBackend() -> bool:
        """
        Whether the session waits for the pool to lend it a backend
        (SHOW CLIENTS' C{waiting}).
        """

    def timeoutState() -> tuple[int, float, float]:
        """
        What PgBouncer's transaction timeouts look at, read by the janitor
        (never on the relay path): the phase (L{SESSION_IDLE},
        L{SESSION_RUNNING} or L{SESSION_IDLE_IN_TRANSACTION}), when the
        transaction began, and when the running request began or the
        session went idle in its transaction; a time is C{0.0} where the
        session does not know it (the janitor then uses what it saw).
        """


class IPipeline(Interface):
    """
    Plugin: a pooling mode (pgagroal's struct pipeline as an interface).
    """

    name = Attribute("Config keyword: 'session', 'transaction', 'performance'. Unique.")
    description = Attribute("One line for --list-plugins.")

    def checkConfiguration(config: Configuration) -> list[str]:
        """
        Problems this pipeline has with a L{pgtwist.config.model.Configuration};
        empty when it can run with it.
        """

    def newSession(
        frontend: IFrontendLink, pool: IBackendPool, clock: IReactorTime
    ) -> IPipelineSession:
        """
        Create the policy object for one authenticated client; C{clock} is
        the reactor, for timers and timings.
        """
