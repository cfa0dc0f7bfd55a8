# -*- test-case-name: tests.unit.test_config_validate -*-
"""
Checks of a whole L{Configuration} that no single file can make alone, and
the console's C{SET} of one main-section key.

Pure: the installed pipelines are passed in as their
C{IPipeline.checkConfiguration} callables, by name, so that this module
needs nothing of the plugin machinery. L{pgtwist.app.bootstrap.validate}
is how the rest of pgtwist calls it: after reading the files (start,
reload, C{make run}, a worker) and before swapping in a configuration
changed at runtime (C{SET}, the management API). Every source gets the
same L{ConfigError}, so a value is refused with the same words wherever it
comes from.

A console admin is trusted with pgtwist's operation, not with the host:
keys that name a program or a path (L{FILE_KEYS}) come from the files
only, so that C{SET} cannot make pgtwist run a program, or write, read or
listen where the operator did not say.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping

from pgtwist.config.errors import ConfigError
from pgtwist.config.loader import _mainParsers
from pgtwist.config.model import Configuration
from pgtwist.config.restart import RESTART_KEYS
from pgtwist.config.tlsfiles import checkClientTls

__all__ = ["FILE_KEYS", "PipelineCheck", "changeSetting", "validateConfiguration"]

#: A pipeline's C{checkConfiguration}: the problems it has with a configuration.
PipelineCheck = Callable[[Configuration], list[str]]

#: Main-section keys that name a program or a path, and what they name:
#: L{changeSetting} refuses them whether or not a restart would apply them.
#: Endpoints are here because one may be a unix socket path
#: (C{unix:/path:mode=666}).
FILE_KEYS = {
    "failover_script": "a program",
    "auth_file": "a file",
    "log_path": "a file",
    "unix_socket_dir": "a directory",
    "manhole_keys_dir": "a directory",
    "listen": "listening endpoints",
    "metrics": "a listening endpoint",
    "metrics_cert_file": "a file",
    "metrics_key_file": "a file",
    "metrics_ca_file": "a file",
    "manhole": "a listening endpoint",
    "server_tls_ca_file": "a file",
    "server_tls_cert_file": "a file",
    "server_tls_key_file": "a file",
    # Read into each server section's settings with the files: a console
    # SET of the main default would not reach the sections.
    "server_tls_sslmode": "the servers' TLS",
    "server_tls_protocols": "the servers' TLS",
    "server_tls_ciphers": "the servers' TLS",
    "tls_cert_file": "a file",
    "tls_key_file": "a file",
    "tls_ca_file": "a file",
    # auth_query: SQL run as a PostgreSQL role (the superuser, in
    # pgagroal's form), which could reach the database host itself.
    "auth_query": "SQL run as a PostgreSQL role",
    "auth_user": "the PostgreSQL role auth_query runs as",
    "auth_dbname": "the database auth_query runs in",
}

#: What L{ConfigError.path} says for a configuration not read from a file.
_NO_FILE = "pgtwist.conf"


def _mainPath(config: Configuration) -> str:
    return config.paths.config or _NO_FILE


def validateConfiguration(
    config: Configuration, pipelines: Mapping[str, PipelineCheck]
) -> Configuration:
    """
    Check C{config} as a whole against the installed pipelines: the main
    C{pipeline} and every databases-file C{PIPELINE} name an installed
    pipeline (or C{auto}), and each pipeline named accepts the rest of the
    configuration (the performance pipeline refuses C{failover}, C{tls} and
    C{disconnect_client}), and the client TLS keys hold together
    (L{checkClientTls}: files present, the key file private).

    @param pipelines: Each installed pipeline's C{checkConfiguration}, by name.
    @return: C{config}, unchanged.
    @raise ConfigError: For the first problem, naming the file (and line
        for a databases-file entry) the value would come from.
    """
    names = {*pipelines, "auto"}
    main = config.main
    checkClientTls(main, _mainPath(config))
    if main.pipeline not in names:
        raise ConfigError(
            f"pipeline: unknown pipeline {main.pipeline!r} (known: {', '.join(sorted(names))})",
            _mainPath(config),
            key="pipeline",
        )
    for limit in config.limits:
        if limit.pipeline and limit.pipeline not in names:
            raise ConfigError(f"unknown pipeline {limit.pipeline!r}", limit.path, limit.line)
    inUse: list[tuple[str, str, int | None]] = [(main.pipeline, _mainPath(config), None)]
    inUse += [(limit.pipeline, limit.path, limit.line) for limit in config.limits if limit.pipeline]
    for name, path, line in inUse:
        check = pipelines.get(name)
        problems = check(config) if check is not None else []
        if problems:
            raise ConfigError("; ".join(problems), path, line)
    return config


def changeSetting(
    config: Configuration,
    key: str,
    value: str,
    environ: Mapping[str, str] | None = None,
) -> Configuration:
    """
    C{config} with the main-section C{key} set to C{value}, parsed as the
    file's value would be (the console's C{SET key = value}). The result
    still has to pass L{validateConfiguration} before it is used.

    @raise ConfigError: For an unknown key, a key that names a program or
        a path (L{FILE_KEYS}: only the file sets those), a key only a
        restart can change, or a value the file would refuse (with the
        loader's words).
    """
    key = key.lower()
    parsers = _mainParsers(os.environ if environ is None else environ)
    path = _mainPath(config)
    if key not in parsers:
        raise ConfigError(f"unknown parameter: {key}", path, key=key)
    field, parse = parsers[key]
    if key in FILE_KEYS:
        then = "restart" if field in RESTART_KEYS else "RELOAD"
        raise ConfigError(
            f"{key} names {FILE_KEYS[key]} and cannot be changed from the console; "
            f"edit the file and {then}",
            path,
            key=key,
        )
    if field in RESTART_KEYS:
        raise ConfigError(
            f"{key} cannot be changed at runtime; edit the file and restart", path, key=key
        )
    try:
        parsed = parse(value)
    except ValueError as e:
        raise ConfigError(f"{key}: {e}", path, key=key) from None
    return dataclasses.replace(config, main=dataclasses.replace(config.main, **{field: parsed}))
