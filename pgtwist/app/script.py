# -*- test-case-name: tests.unit.test_script -*-
"""
The C{pgtwist} console script: pgagroal's command line, run by twistd.

C{pgtwist -c pgtwist.conf -a pgtwist_hba.conf [-d]} is
C{twistd [-n] pgtwist -c pgtwist.conf -a pgtwist_hba.conf}: twistd owns
daemonizing, the pidfile and logging.
"""

from __future__ import annotations

import argparse
import os
import select
import sys

from pgtwist import __version__

_USAGE = """pgtwist {version}
  A PostgreSQL connection pooler

Usage:
  pgtwist [ -c CONFIG_FILE ] [ -a HBA_FILE ] [ -d ]

Options:
  -c, --config CONFIG_FILE           Set the path to the pgtwist.conf file
  -a, --hba HBA_FILE                 Set the path to the pgtwist_hba.conf file
  -l, --limit LIMIT_FILE             Set the path to the pgtwist_databases.conf file
  -u, --users USERS_FILE             Set the path to the pgtwist_users.conf file
  -F, --frontend FRONTEND_USERS_FILE Set the path to the pgtwist_frontend_users.conf file
  -A, --admins ADMINS_FILE           Set the path to the pgtwist_admins.conf file
  -S, --superuser SUPERUSER_FILE     Set the path to the pgtwist_superuser.conf file
  -D, --directory DIRECTORY          Set the directory containing all configuration files
  -d, --daemon                       Run as a daemon
  -V, --version                      Display version information
  -?, --help                         Display help
      --list-plugins                 List the pipelines and auth methods found
      --reactor NAME                 Run on another Twisted reactor (twistd --help-reactors)

Also available as: twistd -n pgtwist -c CONFIG_FILE ...
(the pgtwist command adds --reactor=pgtwist, the epoll reactor without
per-event logging contexts, on Linux)
"""

_FLAGS = [
    ("-c", "--config"),
    ("-a", "--hba"),
    ("-l", "--limit"),
    ("-u", "--users"),
    ("-F", "--frontend"),
    ("-A", "--admins"),
    ("-S", "--superuser"),
    ("-D", "--directory"),
]


def twistdArguments(argv: list[str]) -> list[str] | None:
    """
    Translate pgagroal's command line into twistd's; C{None} when the
    command was C{-V} or C{-?} and is answered already.

    @raise SystemExit: On a usage error.
    """
    parser = argparse.ArgumentParser(prog="pgtwist", add_help=False)
    for short, long in _FLAGS:
        parser.add_argument(short, long)
    parser.add_argument("-d", "--daemon", action="store_true")
    parser.add_argument("-V", "--version", action="store_true")
    parser.add_argument("-?", "--help", action="store_true", dest="help")
    parser.add_argument("--list-plugins", action="store_true", dest="listPlugins")
    parser.add_argument("--reactor")
    options = parser.parse_args(argv)
    if options.help:
        print(_USAGE.format(version=__version__))
        return None
    if options.version:
        print(f"pgtwist {__version__}")
        return None
    arguments = ["twistd"]
    if options.reactor:
        arguments.append(f"--reactor={options.reactor}")
    elif hasattr(select, "epoll"):
        arguments.append("--reactor=pgtwist")
    if options.daemon:
        arguments.append(f"--pidfile={os.path.abspath('pgtwist.pid')}")
    else:
        arguments += ["--nodaemon", "--pidfile="]
    arguments.append("pgtwist")
    if options.listPlugins:
        arguments.append("--list-plugins")
    for _, long in _FLAGS:
        value = getattr(options, long[2:])
        if value is not None:
            arguments += [long, value]
    return arguments


def main(argv: list[str] | None = None) -> None:
    """
    Run pgtwist under twistd.
    """
    arguments = twistdArguments(sys.argv[1:] if argv is None else argv)
    if arguments is None:
        return
    from twisted.scripts.twistd import run

    sys.argv = arguments
    run()
