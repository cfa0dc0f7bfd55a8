# -*- test-case-name: tests.contract.test_pipeline_contract,tests.contract.test_auth_contract -*-
"""
Every zope.interface of pgtwist: the seams between the Twisted shell, the
pooling policy (pipelines) and authentication (auth methods).

Pipelines and auth methods are plugins: module-level instances providing
L{twisted.plugin.IPlugin} and L{IPipeline} or L{IAuthMethod}, found with
C{getPlugins(I..., pgtwist.plugins)}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

    from pgtwist.auth.steps import AuthStep
    from pgtwist.config.model import Configuration, PoolKey, UserEntry
    from pgtwist.wire.messages import AuthenticationRequest, ErrorResponse, Message


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
    """

    name = Attribute("HBA keyword: 'trust', 'reject', 'password', 'md5', 'scram-sha-256'. Unique.")
    backendRequestCodes = Attribute(
        "frozenset[int] of AuthenticationRequest codes (AUTH_*) this method answers for PostgreSQL."
    )

    def frontendExchange(user: UserEntry, channelBinding: bytes | None) -> IAuthExchange:
        """
        Start verifying a client. pgtwist plays the server.

        @param user: The L{pgtwist.config.model.UserEntry}, already looked up.
        @param channelBinding: TLS channel-binding data, or C{None} without TLS.
        """

    def backendExchange(
        user: str, password: str | None, request: AuthenticationRequest
    ) -> IAuthExchange:
        """
        Start proving identity to PostgreSQL. pgtwist plays the client.

        @param request: The L{pgtwist.wire.messages.AuthenticationRequest} received.
        """


class IFrontendLink(Interface):
    """
    What a pipeline may do to its client connection.
    """

    key = Attribute("The (database, user) pool key the client logged in for.")
    configuration = Attribute("The Configuration in force when the client connected.")
    startupParameters = Attribute("Mapping[str, str]: the StartupMessage parameters.")

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

    prepared = Attribute(
        "OrderedDict[str, object]: server-side prepared statements, least recently used first."
    )
    applied = Attribute("dict[str, str]: unreported settings applied with SET, by lowercase name.")
    settingsFingerprint = Attribute("Which client settings were last synced onto this backend.")

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


class IBackendPool(Interface):
    """
    Backends by pool key, bounded by the configured limits.
    """

    def acquire(key: PoolKey, parameters: Mapping[str, str] | None) -> Deferred[IBackendLink]:
        """
        Get a backend for C{key} with the client's startup parameters in effect
        (C{None}: as it is; the pipeline applies settings itself).

        @return: A cancellable C{Deferred[IBackendLink]}; fails with
            L{pgtwist.pool.poolset.PoolTimeout} after C{blocking_timeout}, or with
            L{pgtwist.pool.poolset.BackendError} carrying PostgreSQL's ErrorResponse.
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

    def newSession(frontend: IFrontendLink, pool: IBackendPool, clock: Any) -> IPipelineSession:
        """
        Create the policy object for one authenticated client.
        """


class IUserDirectory(Interface):
    """
    Where client and backend credentials come from.
    """

    def lookup(user: str) -> UserEntry | None:
        """
        The L{pgtwist.config.model.UserEntry} for C{user}, or C{None}.
        """
