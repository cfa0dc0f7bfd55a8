# -*- test-case-name: tests.unit.test_wire_sql -*-
"""
Quoting names and values into SQL text: the one place pgtwist writes a
client's setting into a C{SET} statement, a role name into C{CREATE ROLE},
or a value into a console command.

Pure functions (nothing of Twisted, nothing else of pgtwist), so that
pipelines, the backend protocol, the command-line tools and the test
cluster all quote the same way.
"""

from __future__ import annotations

__all__ = ["quoteIdentifier", "quoteLiteral", "quoteStandardLiteral", "setConfig"]


def quoteIdentifier(name: str) -> str:
    """
    C{name} as a quoted SQL identifier: C{"..."} with inner double quotes
    doubled (PostgreSQL's C{quote_ident}, always quoting).
    """
    return '"' + name.replace('"', '""') + '"'


def quoteLiteral(value: str) -> str:
    """
    C{value} as an SQL string literal that means the same whatever the
    server's C{standard_conforming_strings} is (PostgreSQL's
    C{quote_literal}): C{'...'} with inner quotes doubled, or, when the value
    holds a backslash, C{E'...'} with backslashes doubled as well.
    """
    if "\\" in value:
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + value.replace("'", "''") + "'"


def quoteStandardLiteral(value: str) -> str:
    """
    C{value} as a standard SQL string literal, C{'...'} with inner quotes
    doubled and backslashes as they are: for a reader that knows no C{E''}
    form and takes backslashes literally, such as pgtwist's and PgBouncer's
    admin console.
    """
    return "'" + value.replace("'", "''") + "'"


def setConfig(name: str, value: str) -> str:
    """
    A statement that gives the session's run-time parameter C{name} the
    text C{value} as a StartupMessage, C{options} or the configuration
    file would: C{set_config} parses the text as the setting's own syntax,
    so a list such as C{search_path} given as C{a, b} stays two schemas.
    C{SET name = 'a, b'} would not: for list settings PostgreSQL takes one
    quoted literal as one element, a schema named C{"a, b"}.
    """
    return f"SELECT pg_catalog.set_config({quoteLiteral(name)}, {quoteLiteral(value)}, false)"
