# -*- test-case-name: tests.unit.test_wire_startupsettings -*-
"""
A client's startup settings: the run-time parameters its StartupMessage
asks for, with C{options} expanded the way PostgreSQL's C{pg_split_opts}
and C{process_postgres_switches} expand it, and the C{SET} statements that
give a pooled backend the same settings. Pure, so the pools and the
pipelines share one reading of it.
"""

from __future__ import annotations

from collections.abc import Mapping

from pgtwist.wire.sql import setConfig

__all__ = ["NOT_SETTINGS", "effectiveParameters", "parseOptions", "setStatements", "splitOptions"]


def setStatements(parameters: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """
    The statements that make a reused backend look as if the client had
    sent C{parameters} in its own StartupMessage (L{setConfig}, which reads
    a value as the StartupMessage does). Values already in effect (same
    spelling as PostgreSQL reported) are skipped.
    """
    currentLower = {name.lower(): value for name, value in current.items()}
    statements = []
    for name, value in effectiveParameters(parameters):
        if currentLower.get(name.lower()) == value:
            continue
        statements.append(setConfig(name, value))
    return statements


#: Startup parameters that are not run-time settings.
NOT_SETTINGS = frozenset({"user", "database", "options", "replication"})


def effectiveParameters(parameters: Mapping[str, str]) -> list[tuple[str, str]]:
    """
    The settings a StartupMessage asks for, C{options} (C{-c name=value},
    C{--name=value}) expanded the way PostgreSQL expands it, later ones winning.
    """
    result: dict[str, tuple[str, str]] = {}
    for name, value in parameters.items():
        if name in NOT_SETTINGS or name.startswith("_pq_."):
            continue
        result[name.lower()] = (name, value)
    for name, value in parseOptions(parameters.get("options", "")):
        result[name.lower()] = (name, value)
    return list(result.values())


def splitOptions(options: str) -> list[str]:
    """
    Split C{options} on whitespace, honouring backslash escapes
    (PostgreSQL's C{pg_split_opts}).
    """
    words: list[str] = []
    current: list[str] = []
    inWord = False
    escaped = False
    for char in options:
        if escaped:
            current.append(char)
            escaped = False
            inWord = True
        elif char == "\\":
            escaped = True
            inWord = True
        elif char.isspace():
            if inWord:
                words.append("".join(current))
                current = []
                inWord = False
        else:
            current.append(char)
            inWord = True
    if inWord:
        words.append("".join(current))
    return words


def parseOptions(options: str) -> list[tuple[str, str]]:
    """
    The C{name=value} settings in a StartupMessage C{options} string.

    @raise ValueError: With PostgreSQL's wording, for switches pgtwist cannot
        apply (anything but C{-c} and C{--name=value}).
    """
    settings: list[tuple[str, str]] = []
    words = splitOptions(options)
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            assignment = words[i + 1]
            i += 2
        elif word.startswith("-c") and len(word) > 2:
            assignment = word[2:]
            i += 1
        elif word.startswith("--") and "=" in word:
            assignment = word[2:]
            i += 1
        else:
            raise ValueError(f'invalid command-line argument for server process: "{word}"')
        name, sep, value = assignment.partition("=")
        if not sep:
            raise ValueError(f"--{name} requires a value")
        settings.append((name.replace("-", "_"), value))
    return settings
