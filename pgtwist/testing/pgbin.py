# -*- test-case-name: tests.unit.test_embedded -*-
"""
Finding PostgreSQL's server binaries: C{PGTWIST_PG_BIN}, then
C{pg_config --bindir}, then Debian's C{/usr/lib/postgresql/*/bin}, then the
C{pgserver} wheel.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from glob import glob
from typing import Any

#: The programs a directory must hold to be accepted as a PostgreSQL bin dir.
REQUIRED_PROGRAMS: tuple[str, ...] = ("initdb", "postgres", "pg_ctl")
#: Where Debian and Ubuntu install each major version's server binaries.
DEBIAN_PATTERN = "/usr/lib/postgresql/*/bin"


class PostgresNotFound(RuntimeError):
    """
    No usable PostgreSQL installation was found; the message lists every
    place that was tried and why it was not used.
    """


def _isExecutable(path: str) -> bool:
    """
    The real file-system check used by L{findPostgresBin}.
    """
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _runPgConfig(pgConfig: str) -> str | None:
    """
    Run C{pg_config --bindir}, returning its answer or C{None} on failure.
    """
    try:
        args = [pgConfig, "--bindir"]
        result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.decode().strip() or None


def pgConfigBindir(
    environ: Mapping[str, str],
    which: Callable[[str, str | None], str | None] | None = None,
    runPgConfig: Callable[[str], str | None] = _runPgConfig,
) -> str | None:
    """
    Ask the C{pg_config} on C{environ["PATH"]} for its C{--bindir}.

    @param which: C{(name, path)} look-up; C{shutil.which} when C{None}.
    @param runPgConfig: Runs a C{pg_config} path and returns its bindir.
    @return: The directory, or C{None} when there is no working C{pg_config}.
    """
    path = environ.get("PATH")
    pgConfig = which("pg_config", path) if which else shutil.which("pg_config", path=path)
    if pgConfig is None:
        return None
    return runPgConfig(pgConfig)


def _versionKey(binDir: str) -> tuple[int, tuple[int, ...], str]:
    """
    Sort key putting C{.../16/bin} before C{.../9.6/bin}, non-numeric last.
    """
    version = os.path.basename(os.path.dirname(binDir.rstrip("/")))
    if re.fullmatch(r"\d+(\.\d+)*", version):
        return (0, tuple(-int(part) for part in version.split(".")), version)
    return (1, (), version)


def debianBinDirs(globber: Callable[[str], Iterable[str]] = glob) -> list[str]:
    """
    Debian's per-version bin directories, highest version first.

    @param globber: C{glob.glob}-like function, injectable for tests.
    """
    return sorted(globber(DEBIAN_PATTERN), key=_versionKey)


def pgserverBinDir(findSpec: Callable[[str], Any] = importlib.util.find_spec) -> str | None:
    """
    Where the C{pgserver} wheel keeps its binaries (C{<package>/pginstall/bin}),
    or C{None}; found without importing the package, whose import runs code.

    @param findSpec: C{importlib.util.find_spec}-like, injectable for tests.
    """
    try:
        spec = findSpec("pgserver")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    packageDir = list(spec.submodule_search_locations)[0]
    return os.path.join(packageDir, "pginstall", "bin")


def _missingPrograms(binDir: str, isExecutable: Callable[[str], bool]) -> list[str]:
    """
    The names in L{REQUIRED_PROGRAMS} that C{binDir} lacks.
    """
    return [name for name in REQUIRED_PROGRAMS if not isExecutable(os.path.join(binDir, name))]


def findPostgresBin(
    environ: Mapping[str, str] = os.environ,
    *,
    isExecutable: Callable[[str], bool] = _isExecutable,
    pgConfig: Callable[[Mapping[str, str]], str | None] = pgConfigBindir,
    debian: Callable[[], Sequence[str]] = debianBinDirs,
    pgserver: Callable[[], str | None] = pgserverBinDir,
) -> str:
    """
    Find a directory holding C{initdb}, C{postgres} and C{pg_ctl}.

    The order is:
      1. C{$PGTWIST_PG_BIN}; if it is set but incomplete this is an error
         rather than a silent fall-through, because the user asked for it;
      2. C{pg_config --bindir} for the C{pg_config} on C{$PATH};
      3. Debian's C{/usr/lib/postgresql/*/bin}, highest version first;
      4. the C{pgserver} wheel's C{pginstall/bin}.

    The keyword arguments replace the system look-ups, so the order can be
    tested without touching the real machine.

    @param environ: The environment to read C{PGTWIST_PG_BIN} and C{PATH} from.
    @raise PostgresNotFound: Nothing usable was found; the message says where
        it looked.
    """
    explicit = environ.get("PGTWIST_PG_BIN")
    if explicit:
        missing = _missingPrograms(explicit, isExecutable)
        if missing:
            raise PostgresNotFound(
                f"PGTWIST_PG_BIN={explicit} lacks {', '.join(missing)}; "
                "point it at a directory holding initdb, postgres and pg_ctl"
            )
        return explicit

    tried: list[str] = ["$PGTWIST_PG_BIN: not set"]
    candidates: list[tuple[str, str | None]] = [("pg_config --bindir", pgConfig(environ))]
    candidates += [(DEBIAN_PATTERN, d) for d in debian()] or [(DEBIAN_PATTERN, None)]
    candidates.append(("pgserver wheel", pgserver()))

    for source, binDir in candidates:
        if binDir is None:
            tried.append(f"{source}: none found")
            continue
        missing = _missingPrograms(binDir, isExecutable)
        if not missing:
            return binDir
        tried.append(f"{source}: {binDir} lacks {', '.join(missing)}")
    raise PostgresNotFound(
        "No PostgreSQL server binaries found. Set PGTWIST_PG_BIN, install PostgreSQL, "
        "or `pip install pgserver`. Looked at:\n  " + "\n  ".join(tried)
    )


# --- running as an unprivileged user -------------------------------------
