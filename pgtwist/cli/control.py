# -*- test-case-name: tests.unit.test_cli -*-
"""
C{pgtwist-cli}: steer a running pgtwist from the command line, after
pgagroal's C{pgagroal-cli}.

    pgtwist-cli [ -c CONFIG_FILE | -h HOST -p PORT [ -U USER ] [ -P PASSWORD ]
                [ --require-auth METHODS ] [ --sslmode MODE ] [ --sslrootcert FILE ]
                [ --sslcert FILE --sslkey FILE ] ] [ -F text|json ] [ -v ] [ -L LOGFILE ]
                COMMAND

Every command is one or a few queries to pgtwist's admin console (the
virtual database C{pgtwist}), sent with a small blocking client
(L{pgtwist.cli._client}):

    - locally, over the unix socket C{<unix_socket_dir>/.s.PGSQL.<port>}
      read from the configuration file (C{-c}, else C{pgtwist.conf} or
      C{pgagroal.conf} in C{$PGTWIST_CONFIG_DIR} or C{/etc/pgtwist}), as the
      current OS user, whom the console trusts as the same uid as pgtwist;
    - remotely, over TCP to C{-h}/C{-p} (pgtwist's C{management} port),
      logging in with SCRAM-SHA-256 as a user of the admins file.  A server
      that asks for another method is refused before the password is sent,
      unless C{--require-auth} (libpq's C{require_auth}) allows it. TLS
      first as libpq does it (L{pgtwist.cli._tls}): C{--sslmode} C{disable},
      C{prefer} (the default), C{require}, C{verify-ca} or C{verify-full},
      with C{--sslrootcert}, C{--sslcert} and C{--sslkey}, or libpq's
      C{PGSSLMODE}, C{PGSSLROOTCERT}, C{PGSSLCERT} and C{PGSSLKEY} where
      the option is not given (local mode ignores them).

Exit status, as pgagroal-cli's: 0 success; 1 a usage error, or pgtwist could
not be reached or refused the login (a connection error); 2 pgtwist refused
or could not carry out the command (a data error, such as an unknown server
or a setting that needs a restart).  With C{-F json} the outcome is printed
as pgagroal's document: C{{"command": {"name", "status", "error",
"exit-status", "output"}, "application": {"name", "major", "minor",
"patch", "version"}}}.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import pwd
import re
import socket
import sys
from collections.abc import Sequence
from typing import IO, NoReturn

from twisted.logger import ILogObserver, Logger, LogPublisher, textFileLogObserver

from pgtwist import __version__
from pgtwist.cli import _client, _tls
from pgtwist.cli._client import AuthRequirement, CommandFailed, ConsoleClient, ConsoleUnavailable
from pgtwist.cli._commands import (
    EXIT_CONNECTION_ERROR,
    EXIT_DATA_ERROR,
    EXIT_OK,
    PROGRAM,
    Outcome,
    Refused,
    Request,
    UsageError,
    commandFor,
    parseCommand,
)
from pgtwist.cli._tls import TlsOptions

__all__ = ["main"]

#: The console's database name (C{pgbouncer} works too).
CONSOLE_DATABASE = "pgtwist"
#: Seconds to wait for pgtwist to accept the connection and then for each reply.
TIMEOUT = 30.0
#: Where the main file is looked for when C{-c} is not given (C{tap.py}'s order).
CONFIG_DIRECTORY = "/etc/pgtwist"
CONFIG_DIRECTORY_VARIABLE = "PGTWIST_CONFIG_DIR"
CONFIG_NAMES = ("pgtwist.conf", "pgagroal.conf")

USAGE = f"""\
{PROGRAM} {__version__}
  Command line utility for pgtwist

Usage:
  {PROGRAM} [ OPTIONS ] [ COMMAND ]

Options:
  -c, --config CONFIG_FILE Set the path to the pgtwist.conf file
                           Default: {CONFIG_DIRECTORY}/pgtwist.conf
  -h, --host HOST          Set the host name
  -p, --port PORT          Set the port number
  -U, --user USERNAME      Set the user name
  -P, --password PASSWORD  Set the password
      --require-auth METHODS
                           Authentication methods the server may ask for
                           (remote mode): a comma list of password, md5,
                           scram-sha-256 and none, or of !method to forbid
                           Default: scram-sha-256
      --sslmode MODE       TLS in remote mode, as libpq's sslmode: disable,
                           prefer, require, verify-ca or verify-full
                           Default: prefer
      --sslrootcert FILE   The CAs pgtwist's certificate must lead to
                           (for verify-ca and verify-full), or 'system'
      --sslcert FILE       A client certificate to present
      --sslkey FILE        Its private key (mode 0600 or less)
                           Each --ssl* option not given is read from libpq's
                           PGSSLMODE, PGSSLROOTCERT, PGSSLCERT or PGSSLKEY
  -L, --logfile FILE       Set the log file
  -F, --format text|json   Set the output format
  -v, --verbose            Output text string of result
  -V, --version            Display version information
  -?, --help               Display help

Commands:
  flush [mode] [database]  Flush connections according to [mode].
                           Allowed modes are:
                           - 'gracefully' (default) to flush all connections gracefully
                           - 'idle' to flush only idle connections
                           - 'all' to flush all connections. USE WITH CAUTION!
                           If no [database] name is specified, applies to all databases.
  ping                     Verifies if pgtwist is up and running
  enable   [database]      Enables the specified databases (or all databases)
  disable  [database]      Disables the specified databases (or all databases)
  shutdown [mode]          Stops pgtwist. The [mode] can be:
                           - 'gracefully' (default) waits for active connections to quit
                           - 'immediate' forces connections to close and terminate
                           - 'cancel' avoid a previously issued 'shutdown gracefully'
  status [details]         Status of pgtwist, with optional details
  switch-to <server>       Switches to the specified primary server
  upgrade                  Starts the pgtwist installed now and hands it the listeners;
                           the running one exits once its clients left
  conf <action>            Manages the configuration; <action> can be:
                           - 'reload' to issue a configuration reload;
                           - 'get' to obtain a runtime configuration value (or all);
                                   conf get [parameter_name]
                           - 'set' to modify a configuration value;
                                   conf set <parameter_name> <parameter_value>
                           - 'ls'  lists the configuration files used.
  clear <what>             Resets either the Prometheus statistics or the specified server.
                           <what> can be
                           - 'server' followed by a server name
                           - a server name on its own
                           - 'prometheus' to reset the Prometheus metrics

Deprecated commands:
  flush-idle, flush-gracefully, flush-all, is-alive, enabledb, disabledb,
  gracefully, stop, cancel-shutdown, details, reload, config-get, config-set,
  reset, reset-server
"""


class _ArgumentParser(argparse.ArgumentParser):
    """
    An argument parser that raises L{UsageError} instead of exiting with 2.
    """

    def error(self, message: str) -> NoReturn:
        """
        Turn argparse's complaint into a L{UsageError}.
        """
        raise UsageError(message)


def _buildParser() -> _ArgumentParser:
    """
    The option parser.  C{-h} is pgagroal-cli's host, so help is only
    C{-?}/C{--help}, handled by hand.
    """
    parser = _ArgumentParser(prog=PROGRAM, add_help=False, allow_abbrev=False)
    parser.add_argument("-c", "--config", default=None)
    parser.add_argument("-h", "--host", default=None)
    parser.add_argument("-p", "--port", default=None)
    parser.add_argument("-U", "--user", default=None)
    parser.add_argument("-P", "--password", default=None)
    parser.add_argument("--require-auth", dest="requireAuth", default=None)
    parser.add_argument("--sslmode", default=None)
    parser.add_argument("--sslrootcert", default=None)
    parser.add_argument("--sslcert", default=None)
    parser.add_argument("--sslkey", default=None)
    parser.add_argument("-L", "--logfile", default=None)
    parser.add_argument("-F", "--format", choices=("text", "json"), default="text")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-V", "--version", action="store_true")
    parser.add_argument("-?", "--help", dest="help", action="store_true")
    parser.add_argument("command", nargs="*")
    return parser


# -- running --------------------------------------------------------------------


def applicationInfo() -> dict[str, object]:
    """
    pgagroal's C{application} object for this program.
    """
    numbers = [int(n) for n in re.findall(r"[0-9]+", __version__)[:3]]
    major, minor, patch = (numbers + [0, 0, 0])[:3]
    return {
        "name": PROGRAM,
        "major": major,
        "minor": minor,
        "patch": patch,
        "version": __version__,
    }


def jsonDocument(name: str, outcome: Outcome) -> dict[str, object]:
    """
    pgagroal-cli's JSON document for C{outcome} of command C{name}.
    """
    failed = outcome.exitStatus != EXIT_OK
    return {
        "command": {
            "name": name,
            "status": outcome.status,
            "error": 1 if failed else 0,
            "exit-status": outcome.exitStatus,
            "output": outcome.output,
        },
        "application": applicationInfo(),
    }


def findConfiguration(path: str | None) -> str:
    """
    The main configuration file: C{-c}, else C{pgtwist.conf} or
    C{pgagroal.conf} in C{$PGTWIST_CONFIG_DIR}, then C{/etc/pgtwist}.

    @raise UsageError: None was found.
    """
    if path is not None:
        return path
    directories = [os.environ.get(CONFIG_DIRECTORY_VARIABLE, ""), CONFIG_DIRECTORY]
    for directory in filter(None, directories):
        for name in CONFIG_NAMES:
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate):
                return candidate
    raise UsageError(
        f"no configuration file in {CONFIG_DIRECTORY}: give -c CONFIG_FILE, "
        "or -h and -p for a remote pgtwist"
    )


def localSocketPath(configPath: str) -> str:
    """
    pgtwist's unix socket, C{<unix_socket_dir>/.s.PGSQL.<port>}, from its
    main configuration file.

    @raise ConsoleUnavailable: The file cannot be read, or sets no
        C{unix_socket_dir}.
    """
    from pgtwist.config.loader import ConfigError, loadConfiguration
    from pgtwist.net.endpoints import socketPath

    try:
        main = loadConfiguration(configPath, warn=lambda message: None).main
    except ConfigError as e:
        raise ConsoleUnavailable(f"cannot read the configuration: {e}") from e
    if not main.unixSocketDir:
        raise ConsoleUnavailable(
            f"{configPath} sets no unix_socket_dir, so pgtwist has no local socket; "
            "use -h and -p with its management port"
        )
    return socketPath(main.unixSocketDir, main.port)


def _osUser() -> str:
    """
    The current OS user's name, which the console trusts over its unix
    socket when the uid is pgtwist's.
    """
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return getpass.getuser()


class _Invocation:
    """
    One run of the tool: the parsed options, the request, and the log.

    @ivar log: Where errors go: the C{-L} file, else nowhere.
    """

    log = Logger()

    def __init__(self, options: argparse.Namespace, request: Request, logFile: IO[str] | None):
        self.options = options
        self.request = request
        observer: ILogObserver = (
            textFileLogObserver(logFile) if logFile is not None else LogPublisher()
        )
        self.log = Logger(namespace=PROGRAM, observer=observer)

    def connect(self) -> ConsoleClient:
        """
        Connect and log in, locally or remotely.

        @raise ConsoleUnavailable: pgtwist cannot be reached or refused.
        """
        options = self.options
        if options.host is None:
            path = localSocketPath(findConfiguration(options.config))
            console = ConsoleClient(_client.connectUnix(path, TIMEOUT))
            try:
                console.login(_osUser(), CONSOLE_DATABASE)
            except ConsoleUnavailable:
                console.close()
                raise
            return console
        user = options.user
        while not user:
            sys.stderr.write("User name: ")
            sys.stderr.flush()
            line = sys.stdin.readline()
            if not line:
                raise ConsoleUnavailable("no user name given", authentication=True)
            user = line.strip()
        password = options.password
        if password is None:
            password = getpass.getpass("Password : ")
        requirement = _requirement(options.requireAuth)
        console = ConsoleClient(_connectTls(options))
        try:
            console.login(user, CONSOLE_DATABASE, password, requireAuth=requirement)
        except ConsoleUnavailable as e:
            console.close()
            if e.authentication:
                raise ConsoleUnavailable(f"Bad credentials for {user}: {e}", True) from e
            raise
        return console

    def run(self) -> Outcome:
        """
        Connect, run the command, and turn every failure into an L{Outcome}.
        """
        try:
            console = self.connect()
        except ConsoleUnavailable as e:
            return Outcome(status=str(e), exitStatus=EXIT_CONNECTION_ERROR)
        try:
            return commandFor(self.request, self.options.verbose)(console)
        except Refused as e:
            return Outcome(e.output, e.text, str(e), EXIT_DATA_ERROR)
        except CommandFailed as e:
            output: dict[str, object] = {"sqlstate": e.error.code, "message": str(e)}
            return Outcome(output, [], str(e), EXIT_DATA_ERROR)
        except ConsoleUnavailable as e:
            return Outcome(status=str(e), exitStatus=EXIT_CONNECTION_ERROR)
        finally:
            console.close()

    def report(self, outcome: Outcome) -> None:
        """
        Print the outcome (text or JSON), errors on standard error, and
        log it.
        """
        name = self.request.name
        if self.options.format == "json":
            print(json.dumps(jsonDocument(name, outcome), indent=2))
        else:
            for line in outcome.text:
                print(line)
        if outcome.exitStatus != EXIT_OK:
            print(f"{PROGRAM}: {outcome.status}", file=sys.stderr)
            self.log.error(
                "{command} failed ({exitStatus}): {status}",
                command=name,
                exitStatus=outcome.exitStatus,
                status=outcome.status,
            )
        else:
            self.log.info("{command}: OK", command=name)
        if self.options.verbose:
            word = "Success" if outcome.exitStatus == EXIT_OK else "Error"
            print(f"{PROGRAM}: {word} ({outcome.exitStatus})", file=sys.stderr)


#: libpq's environment variables for the C{--ssl*} options, by option.
TLS_ENVIRONMENT = (
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
)


def _tlsOptions(options: argparse.Namespace) -> TlsOptions:
    """
    The C{--ssl*} options, checked; as with libpq (psql), an option not
    given is taken from its environment variable (L{TLS_ENVIRONMENT}), and
    the command line wins over the environment.

    @raise UsageError: They contradict each other, or the key file may be
        read by others; the message names the variables used.
    """
    values: dict[str, str | None] = {}
    used: list[str] = []
    for name, variable in TLS_ENVIRONMENT:
        value = getattr(options, name)
        if value is None and os.environ.get(variable):
            value = os.environ[variable]
            used.append(variable)
        values[name] = value
    tls = TlsOptions(
        sslmode=(values["sslmode"] or "prefer").lower(),
        rootCert=values["sslrootcert"],
        cert=values["sslcert"],
        key=values["sslkey"],
    )
    try:
        tls.check()
    except ValueError as e:
        note = f" (from the environment: {', '.join(used)})" if used else ""
        raise UsageError(f"{e}{note}") from e
    return tls


def _connectTls(options: argparse.Namespace) -> socket.socket:
    """
    A TCP connection to C{-h}/C{-p}, upgraded to TLS as C{--sslmode} says.

    @raise ConsoleUnavailable: It cannot be made, or TLS cannot be set up
        as the mode requires.
    """
    tls = _tlsOptions(options)
    host, port = options.host, int(options.port)
    try:
        context = _tls.clientContext(tls) if tls.sslmode != "disable" else None
    except ValueError as e:
        raise UsageError(str(e)) from e
    sock = _client.connectTcp(host, port, TIMEOUT)
    try:
        if context is None or not _tls.negotiate(sock, tls.sslmode):
            return sock
        return _tls.startTls(sock, context, host)
    except _tls.TlsRefused as e:
        sock.close()
        raise ConsoleUnavailable(f"cannot connect to {host}:{port}: {e}") from e
    except OSError as e:
        sock.close()
        raise ConsoleUnavailable(f"cannot connect to {host}:{port}: {_tls.reason(e)}") from e


def _requirement(spec: str | None) -> AuthRequirement:
    """
    The C{--require-auth} methods: SCRAM-SHA-256 only unless the option
    says otherwise.

    @raise UsageError: The list is not valid.
    """
    if spec is None:
        return _client.SCRAM_ONLY
    try:
        return AuthRequirement.parse(spec)
    except ValueError as e:
        raise UsageError(f"--require-auth: {e}") from e


def _checkOptions(options: argparse.Namespace) -> None:
    """
    pgagroal-cli's rules for local and remote options.

    @raise UsageError: They contradict each other.
    """
    remote = options.host is not None or options.port is not None
    if remote and (options.host is None or options.port is None):
        raise UsageError("you need both -h and -p options to perform a remote connection")
    tlsGiven = any(
        value is not None
        for value in (options.sslmode, options.sslrootcert, options.sslcert, options.sslkey)
    )
    if not remote and (
        options.user is not None
        or options.password is not None
        or options.requireAuth is not None
        or tlsGiven
    ):
        raise UsageError("you need also -h and -p options to perform a remote connection")
    if remote and options.config is not None:
        raise UsageError("Use either -c or -h/-p to define endpoint")
    if remote and not (options.port.isdigit() and 0 < int(options.port) < 65536):
        raise UsageError(f"Specified port {options.port} out of range")
    _requirement(options.requireAuth)
    if remote:
        _tlsOptions(options)


def main(argv: Sequence[str] | None = None) -> int:
    """
    The C{pgtwist-cli} console script.

    @param argv: The arguments without the program name; C{sys.argv[1:]}
        when C{None}.
    @return: The exit status (see the module docstring).
    """
    if argv is None:
        argv = sys.argv[1:]
    try:
        options = _buildParser().parse_intermixed_args(list(argv))
        if options.help:
            sys.stdout.write(USAGE)
            return EXIT_OK
        if options.version:
            print(f"{PROGRAM} {__version__}")
            return EXIT_OK
        if not options.command:
            sys.stdout.write(USAGE)
            return EXIT_CONNECTION_ERROR
        _checkOptions(options)
        request = parseCommand(options.command)
    except UsageError as e:
        print(f"{PROGRAM}: {e}", file=sys.stderr)
        return EXIT_CONNECTION_ERROR
    logFile: IO[str] | None = None
    if options.logfile is not None:
        try:
            logFile = open(options.logfile, "a", encoding="utf-8")
        except OSError as e:
            print(f"{PROGRAM}: cannot open the log file {options.logfile}: {e}", file=sys.stderr)
            return EXIT_CONNECTION_ERROR
    try:
        invocation = _Invocation(options, request, logFile)
        try:
            outcome = invocation.run()
        except UsageError as e:
            outcome = Outcome(status=str(e), exitStatus=EXIT_CONNECTION_ERROR)
        except (EOFError, KeyboardInterrupt):
            outcome = Outcome(status="aborted", exitStatus=EXIT_CONNECTION_ERROR)
        invocation.report(outcome)
        return outcome.exitStatus
    finally:
        if logFile is not None:
            logFile.close()


if __name__ == "__main__":
    sys.exit(main())
