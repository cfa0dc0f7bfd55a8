# -*- test-case-name: tests.unit.test_pipeline_databases -*-
"""
Statements PostgreSQL runs only while no other session is connected to a
database: C{DROP DATABASE x}, C{ALTER DATABASE x RENAME TO y}, C{ALTER
DATABASE x SET TABLESPACE t} and C{CREATE DATABASE y TEMPLATE x} (x is
C{template1} when no template is named). Anyone else connected to x makes
them fail with 55006 I{database "x" is being accessed by other users},
pgtwist's own idle pooled backends included; so before relaying one, a
pipeline asks the pool to close its idle backends to x
(L{pgtwist.interfaces.IBackendPool.closeIdleBackends}).

The recognizer reads only the start of a query, with PostgreSQL's lexical
rules for what can come there: blanks, C{--} and nested C{/* */} comments,
keywords in any case, unquoted names (folded to lower case, as PostgreSQL
folds them) and double-quoted ones (kept as written, C{""} an escaped
quote). These statements cannot run in a transaction block, so they are the
only statement of their query. A name pgtwist cannot read (C{U&""}) gives
C{None}: nothing is closed, and PostgreSQL answers as it would have.
"""

from __future__ import annotations

import re

#: The first bytes a statement recognized here may start with (its verb,
#: a blank or a comment): a relay looks at a query's first byte, and
#: searches for L{HINT} only when it is one of these (not for C{SELECT},
#: C{INSERT}, C{UPDATE}, C{BEGIN}, C{WITH}...).
STARTS = frozenset(bytes([c]) for c in b"dDaAcC \t\n\r\f\v-/")

#: The word every statement recognized here contains, looked for next: a
#: query without it costs one search.
HINT = re.compile(rb"[dD][aA][tT][aA][bB][aA][sS][eE]")

_TOKEN = re.compile(
    rb"""
      (?P<space>\s+)
    | (?P<line>--[^\n]*)
    | (?P<block>/\*)
    | (?P<quoted>"(?:[^"]|"")*")
    | (?P<string>'(?:[^']|'')*')
    | (?P<word>[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)

#: Tokens read at most: a CREATE DATABASE names its template among a few options.
_MAX_TOKENS = 64

_BLOCK = re.compile(rb"/\*|\*/")


def _skipBlock(sql: bytes, start: int) -> int:
    """
    The end of the (nested) block comment opening at C{start}, or the end of
    C{sql} when it is not closed.
    """
    depth = 0
    position = start
    while True:
        found = _BLOCK.search(sql, position)
        if found is None:
            return len(sql)
        depth += 1 if found.group() == b"/*" else -1
        position = found.end()
        if depth == 0:
            return position


def _tokens(sql: bytes) -> list[tuple[str, str]]:
    """
    The first tokens of C{sql} up to its first C{;}: C{("word", lowered)},
    C{("name", quoted name)}, C{("string", literal)} or C{("other", char)}.
    """
    tokens: list[tuple[str, str]] = []
    position = 0
    size = len(sql)
    while position < size and len(tokens) < _MAX_TOKENS:
        match = _TOKEN.match(sql, position)
        assert match is not None
        kind = match.lastgroup
        text = match.group()
        position = match.end()
        if kind == "space" or kind == "line":
            continue
        if kind == "block":
            position = _skipBlock(sql, match.start())
            continue
        if kind == "word":
            # PostgreSQL folds unquoted names to lower case (ASCII letters).
            tokens.append(("word", text.lower().decode("utf-8", "replace")))
        elif kind == "quoted":
            tokens.append(("name", text[1:-1].replace(b'""', b'"').decode("utf-8", "replace")))
        elif kind == "string":
            tokens.append(("string", text[1:-1].replace(b"''", b"'").decode("utf-8", "replace")))
        else:
            if text == b";":
                break
            tokens.append(("other", text.decode("latin-1")))
    return tokens


def _name(tokens: list[tuple[str, str]], index: int, strings: bool = False) -> str | None:
    """
    The database name at C{tokens[index]} (C{strings}: a string literal
    too, as option values may be), or C{None} when there is none that
    pgtwist can read.
    """
    if index >= len(tokens):
        return None
    kind, value = tokens[index]
    following = tokens[index + 1] if index + 1 < len(tokens) else None
    if kind == "word":
        if following == ("other", "&") or (following is not None and following[0] == "string"):
            # U&"..." or E'...': escapes pgtwist does not read.
            return None
        return value
    if kind == "name" or (strings and kind == "string"):
        return value
    return None


def exclusiveDatabase(sql: bytes) -> str | None:
    """
    The database that must have no other session for C{sql} (a query's
    text) to succeed, or C{None} when C{sql} is no such statement.
    """
    if HINT.search(sql) is None:
        return None
    tokens = _tokens(sql)
    if len(tokens) < 3 or tokens[1] != ("word", "database"):
        return None
    verb = tokens[0]
    if verb == ("word", "drop"):
        if tokens[2:4] == [("word", "if"), ("word", "exists")] and len(tokens) > 4:
            return _name(tokens, 4)
        return _name(tokens, 2)
    if verb == ("word", "alter"):
        name = _name(tokens, 2)
        action = tokens[3:5]
        if action == [("word", "rename"), ("word", "to")] or action == [
            ("word", "set"),
            ("word", "tablespace"),
        ]:
            return name
        return None
    if verb == ("word", "create"):
        if _name(tokens, 2) is None:
            return None
        for index in range(3, len(tokens) - 1):
            if tokens[index] == ("word", "template"):
                at = index + 2 if tokens[index + 1] == ("other", "=") else index + 1
                if tokens[at : at + 1] == [("word", "default")]:
                    return "template1"
                return _name(tokens, at, strings=True)
        return "template1"
    return None
