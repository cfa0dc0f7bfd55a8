# -*- test-case-name: tests.unit.test_config_values -*-
"""
Typed parsers for configuration values, one per kind of value.

Each parser takes the text of a value (already stripped of its quotes by
L{stripQuotes}) and either returns the typed value or raises L{ValueError}
with a short message of the form C{expected <what>, got '<text>'}. The
loader prefixes that message with the file, the line and the key, so the
messages here never repeat them.

The accepted forms are pgagroal's (C{doc/CONFIGURATION.md}), so a
C{pgagroal.conf} reads unchanged; the few extensions are noted on each
parser.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

from pgtwist.config.model import Network

__all__ = [
    "LOG_LEVELS",
    "expandVariables",
    "parseBool",
    "parseByteSize",
    "parseChoice",
    "parseDuration",
    "parseEndpoint",
    "parseEndpointList",
    "parseHost",
    "parseInt",
    "parseLogLevel",
    "parseName",
    "parseNetwork",
    "stripQuotes",
]

_TRUE = frozenset({"on", "yes", "1", "true"})
_FALSE = frozenset({"off", "no", "0", "false"})

#: Seconds per duration suffix; a plain number is seconds.
_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?", re.IGNORECASE)

#: Bytes per size suffix (binary multiples, as pgagroal uses); a plain number is bytes.
_SIZE_UNITS = {
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
}
_SIZE = re.compile(r"(\d+)\s*(b|kb?|mb?|gb?)?", re.IGNORECASE)

#: The log levels pgagroal accepts, lowercase, most severe first. C{trace}
#: is pgagroal's name for C{debug5}.
LOG_LEVELS = (
    "fatal",
    "error",
    "warn",
    "info",
    "debug",
    "debug1",
    "debug2",
    "debug3",
    "debug4",
    "debug5",
    "trace",
)

#: A strports description starts with an endpoint type and a colon.
_ENDPOINT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S")

_VARIABLE = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")


def stripQuotes(value: str) -> str:
    """
    Remove the surrounding whitespace and one pair of matching quotes.

    pgagroal lets any value be quoted with C{"} or C{'} (needed when it has
    spaces or comment characters); the quotes must be the same at both ends,
    and the other kind may appear inside: C{"it's"} gives C{it's}. A value
    with unmatched quotes is returned as it is (stripped of whitespace).

    @param value: The raw text after the C{=}.
    @return: The value without its quotes.
    """
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parseBool(value: str) -> bool:
    """
    Parse a boolean: C{on}, C{yes}, C{1}, C{true} or C{off}, C{no}, C{0},
    C{false}, in any case.

    @raise ValueError: For anything else.
    """
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected on/off (or yes/no, true/false, 1/0), got {value!r}")


def parseDuration(value: str) -> float:
    """
    Parse a duration into seconds.

    Formats (case-insensitive, no sign):
        - C{600}: a plain number is seconds, as in pgagroal;
        - C{30s}, C{5m}, C{2h}, C{1d}, C{1w}: seconds, minutes, hours, days, weeks;
        - C{500ms}: milliseconds (a pgtwist extension);
        - C{1.5s}: a decimal number is allowed with any unit.

    @return: The duration in seconds; C{0.0} means "off" where pgagroal says so.
    @raise ValueError: For a negative, empty or malformed value.
    """
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"expected a duration such as 30, 30s, 5m, 2h, 1d or 500ms, got {value!r}")
    number, unit = match.groups()
    return float(number) * _DURATION_UNITS[(unit or "s").lower()]


def parseByteSize(value: str) -> int:
    """
    Parse a size into bytes.

    Formats (case-insensitive): a plain number is bytes; the suffixes C{B},
    C{K}/C{KB}, C{M}/C{MB} and C{G}/C{GB} multiply by 1, 1024, 1024**2 and
    1024**3, as pgagroal does (C{256k} is 262144).

    @raise ValueError: For a negative, fractional, empty or malformed value.
    """
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"expected a size such as 512, 256K, 8MB or 1G, got {value!r}")
    number, unit = match.groups()
    return int(number) * _SIZE_UNITS[(unit or "b").lower()]


def parseInt(value: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """
    Parse a decimal integer, optionally bounded (bounds are inclusive).

    @raise ValueError: When the value is not an integer or is out of bounds;
        the message states the bounds.
    """
    if minimum is not None and maximum is not None:
        expected = f"an integer between {minimum} and {maximum}"
    elif minimum is not None:
        expected = f"an integer >= {minimum}"
    elif maximum is not None:
        expected = f"an integer <= {maximum}"
    else:
        expected = "an integer"
    text = value.strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(f"expected {expected}, got {value!r}")
    number = int(text)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(f"expected {expected}, got {value!r}")
    return number


def parseFileMode(value: str) -> int:
    """
    Parse permission bits in octal, as PostgreSQL's C{log_file_mode}
    (C{0600}, C{0640}).

    @raise ValueError: When the value is not three octal digits.
    """
    text = value.strip()
    if not re.fullmatch(r"0?[0-7]{3}", text):
        raise ValueError(f"expected permissions in octal such as 0600 or 0640, got {value!r}")
    return int(text, 8)


def parseChoice(value: str, choices: Iterable[str]) -> str:
    """
    Parse one of a fixed set of keywords, case-insensitively.

    @param choices: The accepted keywords, as they should be returned.
    @return: The matching entry of C{choices}.
    @raise ValueError: When C{value} is none of them; the message lists them.
    """
    options = tuple(choices)
    text = value.strip().lower()
    for choice in options:
        if choice.lower() == text:
            return choice
    raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")


def parseLogLevel(value: str) -> str:
    """
    Parse a pgagroal log level: C{FATAL}, C{ERROR}, C{WARN}, C{INFO},
    C{DEBUG}, C{DEBUG1} to C{DEBUG5} or C{TRACE}, in any case.

    @return: The level in lowercase, one of L{LOG_LEVELS}; C{trace} is kept
        as C{trace} (pgagroal treats it as C{debug5}).
    @raise ValueError: For any other name.
    """
    return parseChoice(value, LOG_LEVELS)


def parseEndpoint(value: str) -> str | None:
    """
    Parse a listening address for C{metrics}, C{manhole} and C{listen}.

    Formats:
        - empty, C{0} or C{off}: disabled (C{None}), as pgagroal's
          C{metrics = 0};
        - a port number C{N} (1 to 65535): C{"tcp:N"}, as pgagroal's
          C{metrics = 2346};
        - anything of the form C{type:...}: a Twisted strports description
          (C{tcp:6432:interface=127.0.0.1}, C{unix:/run/pgtwist/.s.PGSQL.6432}),
          returned unchanged; Twisted checks the rest when it listens.

    @raise ValueError: For anything else (a bad port, a bare host name).
    """
    text = value.strip()
    if text.lower() in ("", "0", "off"):
        return None
    if text.isdigit():
        port = parseInt(text, 0, 65535)
        return f"tcp:{port}"
    if _ENDPOINT.match(text) is None:
        raise ValueError(
            f"expected a port number or an endpoint such as tcp:6432:interface=127.0.0.1, "
            f"got {value!r}"
        )
    return text


def parseEndpointList(value: str) -> tuple[str, ...]:
    """
    Parse a comma-separated list of L{parseEndpoint} values (pgtwist's
    C{listen}); empty and disabled items are skipped.

    @raise ValueError: For any item L{parseEndpoint} refuses.
    """
    endpoints = (parseEndpoint(item) for item in value.split(","))
    return tuple(endpoint for endpoint in endpoints if endpoint is not None)


def parseHost(value: str) -> str:
    """
    Parse a host name or address; C{*} (all interfaces) is kept as it is,
    and a name starting with C{/} is a unix socket directory.

    @raise ValueError: For an empty value or one with spaces.
    """
    text = value.strip()
    if not text or any(char.isspace() for char in text):
        raise ValueError(f"expected a host name, an address or *, got {value!r}")
    return text


def parseName(value: str) -> str:
    """
    Parse a plugin name such as a pipeline's: a letter, then letters,
    digits, C{_} or C{-}. Whether a plugin has that name is checked later,
    once the plugins are loaded.

    @return: The name in lowercase.
    @raise ValueError: For anything else.
    """
    text = value.strip()
    if _NAME.fullmatch(text) is None:
        raise ValueError(
            f"expected a pipeline name such as auto, session, transaction or performance, "
            f"got {value!r}"
        )
    return text.lower()


def parseNetwork(value: str) -> Network:
    """
    Parse an IPv4 or IPv6 network as HBA files write it: C{10.0.0.0/8},
    C{::1/128}, or a bare address taken as C{/32} or C{/128}. Host bits are
    masked as PostgreSQL does (C{10.1.2.3/8} is C{10.0.0.0/8}).

    @raise ValueError: For anything else (host names, C{samenet}, bad masks).
    """
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"expected all, an IP address or a network such as 127.0.0.1/32 or ::1/128, "
            f"got {value!r}"
        ) from None


def expandVariables(value: str, environ: Mapping[str, str]) -> str:
    """
    Replace C{$VAR} and C{${VAR}} with their values in C{environ}, as
    pgagroal does in paths (C{log_path = $HOME/pgagroal.log}).

    @raise ValueError: When a variable is not set.
    """

    def replace(match: re.Match[str]) -> str:
        """The value of the variable C{match} names."""
        name = match.group(1) if match.group(1) is not None else match.group(2)
        if name not in environ:
            raise ValueError(f"environment variable {name!r} is not set")
        return environ[name]

    return _VARIABLE.sub(replace, value)
