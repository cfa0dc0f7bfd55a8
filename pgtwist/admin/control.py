# -*- test-case-name: tests.unit.test_admin_control,tests.unit.test_admin_console -*-
"""
The console's control commands (PAUSE, RESUME, KILL, RELOAD, SET, SHUTDOWN,
...), thin layers over L{pgtwist.admin.management.Management} that answer with
PgBouncer's tags and error texts (C{src/admin.c}).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from pgtwist.admin.management import FLUSH_MODES
from pgtwist.admin.results import Completion, ConsoleCommandError, Notice, Reply
from pgtwist.config.errors import ConfigError
from pgtwist.config.restart import restartNotice
from pgtwist.net.startup import CONSOLE_DATABASES

if TYPE_CHECKING:
    from pgtwist.admin.context import ConsoleContext as Console


class InvalidCommand(ConsoleCommandError):
    """
    The arguments do not fit the command; the dispatcher answers with
    PgBouncer's C{invalid command '...', use SHOW HELP;}.
    """

    def __init__(self) -> None:
        super().__init__("invalid command")


#: Settings drivers set or show on connect; the console fakes them as
#: PgBouncer does (C{fake_param_list}): SHOW answers, SET is ignored.
FAKE_PARAMETERS = {
    "client_encoding": "UTF-8",
    "default_transaction_isolation": "read committed",
    "standard_conforming_strings": "on",
    "datestyle": "ISO",
    "timezone": "GMT",
    "extra_float_digits": "2",
}


def _database(args: Sequence[str]) -> str | None:
    return args[0] if args else None


def _notAdminDatabase(database: str | None, verb: str) -> None:
    if database in CONSOLE_DATABASES:
        raise ConsoleCommandError(f"cannot {verb} admin db: {database}")


def pause(console: Console, args: Sequence[str]) -> Deferred[Reply]:
    """
    PAUSE [db]: answered once the backends in use were given back.
    """
    pausedAll, _ = console.service.management.paused()
    if pausedAll:
        raise ConsoleCommandError("already suspended/paused")
    database = _database(args)
    _notAdminDatabase(database, "pause")
    return console.service.management.pause(database).addCallback(lambda _: Completion("PAUSE"))


def resume(console: Console, args: Sequence[str]) -> Reply:
    """
    RESUME [db]. Without a database it lifts every pause, global and per
    database (PgBouncer lifts only the global one).
    """
    management = console.service.management
    pausedAll, pausedDatabases = management.paused()
    database = _database(args)
    if database is None:
        if management.state == "gracefully" and pausedAll:
            raise ConsoleCommandError("pooler is shutting down")
        if not pausedAll and not pausedDatabases:
            raise ConsoleCommandError("pooler is not paused/suspended")
    elif database not in pausedDatabases:
        raise ConsoleCommandError(f"database {database} is not paused")
    management.resume(database)
    return Completion("RESUME")


def suspend(console: Console, args: Sequence[str]) -> Deferred[Reply]:
    """
    SUSPEND: answered once what pgtwist had to write has been written.
    """
    management = console.service.management
    pausedAll, pausedDatabases = management.paused()
    if pausedAll or management.suspended:
        raise ConsoleCommandError("already suspended/paused")
    if pausedDatabases:
        raise ConsoleCommandError("cannot suspend with paused databases")
    return management.suspend().addCallback(lambda _: Completion("SUSPEND"))


def waitClose(console: Console, args: Sequence[str]) -> Deferred[Reply]:
    """
    WAIT_CLOSE [db]: answered once no backend (of C{db}) waits to be
    closed after RECONNECT.
    """
    database = _database(args)
    if database in CONSOLE_DATABASES:
        raise ConsoleCommandError(f"cannot wait in admin db: {database}")
    return console.service.management.waitClose(database).addCallback(
        lambda _: Completion("WAIT_CLOSE")
    )


def disable(console: Console, args: Sequence[str]) -> Reply:
    """
    DISABLE db: refuse new clients of C{db} (C{*}: of every database).
    """
    database = _database(args)
    if database is None:
        raise ConsoleCommandError("a database is required")
    _notAdminDatabase(database, "disable")
    console.service.management.disable(database)
    return Completion("DISABLE")


def enable(console: Console, args: Sequence[str]) -> Reply:
    """
    ENABLE db: accept new clients of C{db} (C{*}: every database) again.
    """
    database = _database(args)
    if database is None:
        raise ConsoleCommandError("a database is required")
    _notAdminDatabase(database, "enable")
    console.service.management.enable(database)
    return Completion("ENABLE")


def reconnect(console: Console, args: Sequence[str]) -> Reply:
    """
    RECONNECT [db]: close backends as they are given back.
    """
    database = _database(args)
    _notAdminDatabase(database, "reconnect")
    console.service.management.reconnect(database)
    return Completion("RECONNECT")


def kill(console: Console, args: Sequence[str]) -> Reply:
    """
    KILL [db]: drop clients and backends now; the database stays paused.
    """
    pausedAll, _ = console.service.management.paused()
    if pausedAll:
        raise ConsoleCommandError("already suspended/paused")
    database = _database(args)
    _notAdminDatabase(database, "kill")
    console.service.management.kill(database)
    return Completion("KILL")


def killClient(console: Console, args: Sequence[str]) -> Reply:
    """
    KILL_CLIENT id: drop one client (ids from SHOW CLIENTS).
    """
    try:
        clientId = int(args[0])
    except ValueError:
        raise ConsoleCommandError("invalid client pointer supplied") from None
    if not console.service.management.killClient(clientId):
        raise ConsoleCommandError("client not found")
    return Completion("KILL_CLIENT")


def reload(console: Console, args: Sequence[str]) -> Reply:
    """
    RELOAD: re-read every configuration file.
    """
    applied, restart = console.service.management.reload()
    if not applied:
        raise ConsoleCommandError("RELOAD failed, see logs for additional details", "F0000")
    notices: tuple[Notice, ...] = ()
    if restart:
        notices = (Notice(restartNotice(restart)),)
    return Completion("RELOAD", notices)


def shutdown(console: Console, args: Sequence[str]) -> Reply:
    """
    SHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS|GRACEFULLY|IMMEDIATE|CANCEL]:
    plain SHUTDOWN is immediate; WAIT_FOR_CLIENTS is pgagroal's graceful
    shutdown; WAIT_FOR_SERVERS pauses everything and exits once every
    backend was given back. The reply comes at once.
    """
    management = console.service.management
    mode = args[0].lower() if args else "immediate"
    if mode == "wait_for_servers":
        management.shutdownWaitForServers()
    elif mode == "wait_for_clients":
        management.shutdown("gracefully")
    elif mode in ("gracefully", "immediate", "cancel"):
        management.shutdown(mode)
    else:
        raise InvalidCommand()
    return Completion("SHUTDOWN")


def upgrade(console: Console, args: Sequence[str]) -> Deferred[Reply]:
    """
    UPGRADE: start the pgtwist installed now and hand it the listeners;
    the answer comes once it took them (this process then drains), or
    says why it did not (this process goes on).
    """
    try:
        started = console.service.management.upgrade()
    except Exception as e:  # noqa: BLE001 - the reason goes to the admin
        raise ConsoleCommandError(f"UPGRADE failed: {e}", "55000") from None

    def answer(tookOver: bool) -> Reply:
        if not tookOver:
            raise ConsoleCommandError(
                "UPGRADE failed: the new process did not take over, see logs", "55000"
            )
        return Completion("UPGRADE")

    return started.addCallback(answer)


def setting(console: Console, args: Sequence[str]) -> Reply:
    """
    SET key = value: change a main-section key at runtime (not in the
    file: the next RELOAD reads the file again). A value the file would be
    refused for is refused with the same message, in the DETAIL.
    """
    key, value = args[0].lower(), args[1]
    try:
        console.service.management.configure(key, value)
    except ConfigError as e:
        raise ConsoleCommandError("SET failed", detail=e.message) from None
    return Completion(f"SET {key}={value}")


def flush(console: Console, args: Sequence[str]) -> Reply:
    """
    FLUSH [IDLE|GRACEFULLY|ALL] [db|*] (pgagroal's flush).
    """
    mode = "gracefully"
    rest = list(args)
    if rest and rest[0].lower() in FLUSH_MODES:
        mode = rest.pop(0).lower()
    if len(rest) > 1:
        raise InvalidCommand()
    console.service.management.flush(mode, rest[0] if rest else None)
    return Completion("FLUSH")


def switchTo(console: Console, args: Sequence[str]) -> Reply:
    """
    SWITCH_TO server: make a server section the primary.
    """
    if not console.service.management.switchTo(args[0]):
        raise ConsoleCommandError(f"no such server: {args[0]}")
    return Completion("SWITCH_TO")


def clearServer(console: Console, args: Sequence[str]) -> Reply:
    """
    CLEAR SERVER server: forget that a server failed.
    """
    if not console.service.management.clearServer(args[0]):
        raise ConsoleCommandError(f"no such server: {args[0]}")
    return Completion("CLEAR")


def clearPrometheus(console: Console, args: Sequence[str]) -> Reply:
    """
    CLEAR PROMETHEUS: zero every pool's statistics (and the averages).
    """
    console.clearStatistics()
    return Completion("CLEAR")
