# -*- test-case-name: tests.unit.test_auth_methods -*-
"""
The steps of a sans-IO authentication exchange.

An L{pgtwist.interfaces.IAuthExchange} answers every call with an L{AuthStep}:
the messages the caller must send to the peer now, and whether the exchange
goes on, succeeded or failed. The caller owns the transport; the exchange
never sees one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pgtwist._compat import SLOTS
from pgtwist.config.verifiers import BackendCredential
from pgtwist.wire import constants
from pgtwist.wire.errors import fatal
from pgtwist.wire.messages import ErrorResponse, Message


class Outcome(enum.Enum):
    """
    Where an exchange stands after a step.
    """

    #: Send the step's messages and feed the peer's reply to C{receive}.
    CONTINUE = "continue"
    #: The peer proved its identity (or, as a client, PostgreSQL accepted us).
    SUCCEEDED = "succeeded"
    #: The peer failed to prove its identity, or we could not prove ours.
    FAILED = "failed"


@dataclass(frozen=True, **SLOTS)
class AuthStep:
    """
    One step of an authentication exchange.

    @ivar messages: What to send to the peer now, in order. For a successful
        frontend exchange these come I{before} the AuthenticationOk the caller
        sends itself (for SCRAM: the AuthenticationSASLFinal).
    @ivar outcome: Whether the exchange goes on or is over.
    @ivar reason: For logs: why the exchange failed. Never contains a secret
        (password, hash, proof), so it is safe to log as is.
    @ivar error: The ErrorResponse to send the client when the exchange knows
        better than the caller's default (e.g. FATAL 28P01 for a wrong password);
        for a backend exchange, PostgreSQL's own ErrorResponse when it sent one.
    @ivar credential: For a frontend exchange that succeeded against a
        verifier (no plaintext password known): what pgtwist can log into
        PostgreSQL with on the client's behalf (pass-through): the SCRAM
        C{ClientKey} recovered from the proof, the md5 hash, or the
        cleartext password the client gave. A password equivalent: never
        log it.
    """

    messages: tuple[Message, ...]
    outcome: Outcome
    reason: str = ""
    error: ErrorResponse | None = None
    credential: BackendCredential | None = field(default=None, repr=False)

    @property
    def final(self) -> bool:
        """
        Whether the exchange is over (succeeded or failed).
        """
        return self.outcome is not Outcome.CONTINUE


def continued(*messages: Message) -> AuthStep:
    """
    A step that sends C{messages} and waits for the peer's reply.
    """
    return AuthStep(messages, Outcome.CONTINUE)


def succeeded(*messages: Message, credential: BackendCredential | None = None) -> AuthStep:
    """
    The final step of a successful exchange, sending C{messages} first.

    @param credential: See L{AuthStep.credential}.
    """
    return AuthStep(messages, Outcome.SUCCEEDED, credential=credential)


def failed(reason: str, error: ErrorResponse | None = None, *messages: Message) -> AuthStep:
    """
    The final step of a failed exchange.

    @param reason: A log-safe explanation (no secrets).
    @param error: The ErrorResponse to send the client, or C{None} to let the
        caller word it.
    @param messages: Anything to send before the error (rarely needed).
    """
    return AuthStep(messages, Outcome.FAILED, reason, error)


def passwordAuthenticationFailed(userName: str) -> ErrorResponse:
    """
    The FATAL error PostgreSQL sends for a wrong password, whatever the
    password-based method, and also for an unknown user (so as not to reveal
    which users exist).
    """
    return fatal(
        constants.SQLSTATE_INVALID_PASSWORD,
        f'password authentication failed for user "{userName}"',
    )
