# -*- test-case-name: tests.unit.test_config_files -*-
"""
Helpers every configuration file reader shares: the error type printed as
C{path:line: message}, reading a file, cutting comments.
"""

from __future__ import annotations

from collections.abc import Callable

#: Where warnings go (unknown keys, corrected values).
Warn = Callable[[str], None]


class ConfigError(Exception):
    """
    The configuration cannot be used. Printed as C{path:line: message}
    (or C{path: message} when no single line is at fault).

    @ivar message: What is wrong, naming the key and the expected form.
    @ivar path: The file at fault.
    @ivar line: The 1-based line number, or C{None}.
    @ivar key: The configuration key at fault, or C{None}.
    """

    def __init__(
        self, message: str, path: str, line: int | None = None, key: str | None = None
    ) -> None:
        super().__init__(message, path, line, key)
        self.message = message
        self.path = path
        self.line = line
        self.key = key

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"


def readText(path: str) -> list[str]:
    """
    Read a whole file as lines, turning I/O errors into L{ConfigError}.
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as e:
        raise ConfigError(f"not valid UTF-8 ({e.reason})", path) from e
    except OSError as e:
        raise ConfigError(f"cannot read the file: {e.strerror}", path) from e


def stripComment(text: str, markers: str) -> str:
    """
    Cut a line at the first comment marker.
    """
    for index, char in enumerate(text):
        if char in markers:
            return text[:index]
    return text
