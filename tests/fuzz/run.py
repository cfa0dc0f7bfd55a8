"""
Run one fuzz target of L{tests.fuzz.targets} under atheris (libFuzzer),
coverage-guided over pgtwist's own code, for a bounded time::

    python -m tests.fuzz.run startup --seconds 60 [libFuzzer options]

The corpus grows in C{.fuzz/corpus/TARGET/} (not kept in the repository),
seeded with valid conversations (L{seeds}). An input that makes the target
raise is written to C{tests/fuzz_regressions/TARGET/} (libFuzzer's
C{crash-*} file) and the run stops, failing: commit the file, with the fix,
and C{tests/unit/test_fuzz_regressions.py} replays it for ever after.

atheris comes from the C{fuzz} extra (C{pip install -e '.[fuzz]'}): it has
wheels for CPython on Linux and macOS only, hence not in C{test}.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys

import atheris

with atheris.instrument_imports(include=["pgtwist"]):
    from pgtwist.wire import codec
    from pgtwist.wire.messages import (
        Bind,
        CancelRequest,
        CommandComplete,
        DataRow,
        Describe,
        Execute,
        GSSENCRequest,
        Parse,
        PasswordMessage,
        Query,
        ReadyForQuery,
        SSLRequest,
        StartupMessage,
        Sync,
        Terminate,
    )
    from tests.fuzz.targets import TARGETS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def seeds(target: str) -> list[bytes]:
    """
    Valid inputs to start the corpus of C{target} from.
    """
    login = codec.encode(StartupMessage({"user": "alice", "database": "db"}))
    if target == "startup":
        password = codec.encode(PasswordMessage(b"wonderland\x00"))
        scram = codec.encode(
            PasswordMessage(
                b"SCRAM-SHA-256\x00" + struct.pack("!i", 32) + b"n,,n=,r=abcdefghijklmnopqrstuvwx"
            )
        )
        query = codec.encode(Query("SELECT 1"))
        return [
            bytes([0, 0]) + login + password + query,
            bytes([1, 3]) + login + codec.encode(PasswordMessage(b"md5" + b"0" * 32 + b"\x00")),
            bytes([2, 0]) + login + scram,
            bytes([3, 1]) + codec.encode(SSLRequest()) + login + query,
            bytes([0, 0]) + codec.encode(GSSENCRequest()) + codec.encode(SSLRequest()) + login,
            bytes([3, 0]) + codec.encode(CancelRequest(1234, 777)),
            bytes([3, 5]) + login + codec.encode(Terminate()),
        ]
    return [
        bytes([0])
        + codec.encodeAll(
            [
                Parse("s", "SELECT $1", (23,)),
                Bind("", "s", (0,), (b"1", None), (1,)),
                Describe(b"P", ""),
                Execute("", 0),
                Sync(),
                Query("SELECT 1"),
            ]
        ),
        bytes([3])
        + codec.encodeAll(
            [DataRow((b"x", None)), CommandComplete("SELECT 1"), ReadyForQuery(b"I")]
        ),
        bytes([7]) + login,
    ]


def main(argv: list[str]) -> None:
    """
    Fuzz the target named in C{argv}; other options go to libFuzzer.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz")
    options, rest = parser.parse_known_args(argv[1:])
    corpus = os.path.join(ROOT, ".fuzz", "corpus", options.target)
    crashes = os.path.join(ROOT, "tests", "fuzz_regressions", options.target)
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(crashes, exist_ok=True)
    for number, seed in enumerate(seeds(options.target)):
        with open(os.path.join(corpus, f"seed-{number}"), "wb") as f:
            f.write(seed)
    target = TARGETS[options.target]
    atheris.Setup(
        [
            argv[0],
            f"-max_total_time={options.seconds}",
            "-timeout=20",
            f"-artifact_prefix={crashes}{os.sep}",
            *rest,
            corpus,
        ],
        target,
    )
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
