# -*- test-case-name: tests.unit.test_admin_console -*-
"""
What admin console commands answer, and how it goes on the wire.

Column types use PgBouncer's letters (C{pktbuf_write_RowDescription} in its
C{src/pktbuf.c}), so a result set can be written as PgBouncer's
C{admin.c} writes it: C{s} text, C{i} int4, C{q} int8, C{N} numeric (an
integer rendered as text), C{T} a timestamp rendered as text.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

from pgtwist._compat import SLOTS
from pgtwist.wire import codec, constants, errors
from pgtwist.wire.messages import (
    CommandComplete,
    DataRow,
    ErrorResponse,
    FieldDescription,
    Message,
    NoticeResponse,
    RowDescription,
)

TEXT_OID = 25
INT4_OID = 23
INT8_OID = 20
NUMERIC_OID = 1700

#: PgBouncer's type letter -> (type OID, type size).
COLUMN_TYPES: dict[str, tuple[int, int]] = {
    "s": (TEXT_OID, -1),
    "i": (INT4_OID, 4),
    "q": (INT8_OID, 8),
    "N": (NUMERIC_OID, -1),
    "T": (TEXT_OID, -1),
}

#: The SQLSTATE PgBouncer's console uses for its errors (C{send_pooler_error}).
CONSOLE_SQLSTATE = constants.SQLSTATE_PROTOCOL_VIOLATION

Value = Union[str, int, float, None]


@dataclass(frozen=True, **SLOTS)
class Notice:
    """
    A NoticeResponse sent before a command's result.
    """

    message: str
    detail: str | None = None


@dataclass(frozen=True, **SLOTS)
class ResultSet:
    """
    Rows for the client: C{types} has one PgBouncer type letter per column.
    """

    types: str
    names: tuple[str, ...]
    rows: Sequence[Sequence[Value]] = ()
    tag: str = "SHOW"
    notices: tuple[Notice, ...] = ()

    def __post_init__(self) -> None:
        if len(self.types) != len(self.names):
            raise ValueError(f"{len(self.types)} types for {len(self.names)} columns")


@dataclass(frozen=True, **SLOTS)
class Completion:
    """
    A command without rows: its CommandComplete tag and any notices.
    """

    tag: str
    notices: tuple[Notice, ...] = field(default=())


Reply = Union[ResultSet, Completion]


class ConsoleCommandError(Exception):
    """
    A command failed: the client gets an ERROR (the session goes on).

    @ivar message: The primary message, worded as PgBouncer words it.
    @ivar sqlstate: The SQLSTATE (PgBouncer's console uses C{08P01}).
    @ivar detail: An optional DETAIL field.
    """

    def __init__(
        self, message: str, sqlstate: str = CONSOLE_SQLSTATE, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.detail = detail

    def toErrorResponse(self) -> ErrorResponse:
        """
        The ErrorResponse to send.
        """
        return errors.error(self.sqlstate, self.message, self.detail)


def formatTime(seconds: float | None) -> str | None:
    """
    A timestamp as PgBouncer's C{format_time_s} writes it (local time).
    """
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(seconds))


def _render(letter: str, value: Value) -> bytes | None:
    if value is None:
        return None
    if letter == "T":
        text = formatTime(float(value))
        return None if text is None else text.encode()
    if letter in "iqN":
        return str(int(value)).encode()
    return str(value).encode("utf-8", "surrogateescape")


def noticeMessage(notice: Notice) -> NoticeResponse:
    """
    The NoticeResponse for C{notice}, with PgBouncer's fields.
    """
    fields: list[tuple[bytes, str]] = [
        (constants.FIELD_SEVERITY, constants.SEVERITY_NOTICE),
        (constants.FIELD_CODE, "00000"),
        (constants.FIELD_MESSAGE, notice.message),
    ]
    if notice.detail is not None:
        fields.append((constants.FIELD_DETAIL, notice.detail))
    return NoticeResponse(tuple(fields))


def replyMessages(reply: Reply) -> list[Message]:
    """
    The messages answering one statement: notices, then RowDescription and
    DataRows for a result set, then CommandComplete.
    """
    messages: list[Message] = [noticeMessage(n) for n in reply.notices]
    if isinstance(reply, ResultSet):
        messages.append(
            RowDescription(
                tuple(
                    FieldDescription(
                        name, typeOid=COLUMN_TYPES[letter][0], typeSize=COLUMN_TYPES[letter][1]
                    )
                    for letter, name in zip(reply.types, reply.names)
                )
            )
        )
        for row in reply.rows:
            messages.append(
                DataRow(tuple(_render(letter, value) for letter, value in zip(reply.types, row)))
            )
    messages.append(CommandComplete(reply.tag))
    return messages


def encodeReply(reply: Reply) -> bytes:
    """
    L{replyMessages} encoded.
    """
    return codec.encodeAll(replyMessages(reply))
