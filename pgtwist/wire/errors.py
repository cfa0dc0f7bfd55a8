# -*- test-case-name: tests.unit.test_wire_codec -*-
"""
Protocol errors and builders for the ErrorResponse messages pgtwist sends itself.
"""

from __future__ import annotations

from pgtwist.wire import constants
from pgtwist.wire.messages import ErrorResponse


class ProtocolViolation(Exception):
    """
    The peer broke the protocol; the connection cannot continue.

    @ivar sqlstate: The SQLSTATE PostgreSQL would report for the same input.
    @ivar message: The primary message, worded as PostgreSQL words it.
    """

    def __init__(self, message: str, sqlstate: str = constants.SQLSTATE_PROTOCOL_VIOLATION) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate

    def toErrorResponse(self) -> ErrorResponse:
        """
        The FATAL ErrorResponse to send before closing the connection.
        """
        return fatal(self.sqlstate, self.message)


def errorResponse(
    severity: str,
    sqlstate: str,
    message: str,
    detail: str | None = None,
    hint: str | None = None,
) -> ErrorResponse:
    """
    Build an ErrorResponse with the fields PostgreSQL always sends (S, V, C, M)
    plus optional detail and hint.
    """
    fields: list[tuple[bytes, str]] = [
        (constants.FIELD_SEVERITY, severity),
        (constants.FIELD_SEVERITY_NONLOCALIZED, severity),
        (constants.FIELD_CODE, sqlstate),
        (constants.FIELD_MESSAGE, message),
    ]
    if detail is not None:
        fields.append((constants.FIELD_DETAIL, detail))
    if hint is not None:
        fields.append((constants.FIELD_HINT, hint))
    return ErrorResponse(tuple(fields))


def asFatal(error: ErrorResponse) -> ErrorResponse:
    """
    C{error} with its severity raised to FATAL: a setting PostgreSQL refuses
    in a SET is an ERROR, but the same setting in a StartupMessage is FATAL,
    and that is what a client whose settings are applied at login must see.
    """
    severity = (constants.FIELD_SEVERITY, constants.FIELD_SEVERITY_NONLOCALIZED)
    return ErrorResponse(
        tuple(
            (code, constants.SEVERITY_FATAL if code in severity else value)
            for code, value in error.fields
        )
    )


def fatal(
    sqlstate: str, message: str, detail: str | None = None, hint: str | None = None
) -> ErrorResponse:
    """
    A FATAL ErrorResponse: the connection closes after it.
    """
    return errorResponse(constants.SEVERITY_FATAL, sqlstate, message, detail, hint)


def error(
    sqlstate: str, message: str, detail: str | None = None, hint: str | None = None
) -> ErrorResponse:
    """
    An ERROR-level ErrorResponse: the current statement fails, the session goes on.
    """
    return errorResponse(constants.SEVERITY_ERROR, sqlstate, message, detail, hint)
