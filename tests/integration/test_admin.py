"""
The admin console end to end (issue 5): the real C{pgtwist} process, reached
with psql and psycopg over TCP (SCRAM against the admins file), over its
unix socket (trusted: same uid) and over the C{management} port; every
command, and the shapes prometheus-community's pgbouncer_exporter reads.
"""

from __future__ import annotations

import csv
import io
import os
import pwd
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from tests.integration.clients import adminConnect, backendsOf, waitFor
from tests.integration.pooler import Pooler, freePort

#: The unix-socket console trusts pgtwist's own OS user under that name.
OS_USER = pwd.getpwuid(os.getuid()).pw_name

ADMIN, ADMIN_PASSWORD = "root", "console-secret"
STATS_USER, STATS_PASSWORD = "watcher", "watch-secret"
USER, PASSWORD = "pgt_scram", "scram-secret"
SHARED = "pgtwist_test"

#: numeric, int4, int8, text.
NUMERIC, INT4, TEXT = 1700, 23, 25


@contextmanager
def consolePooler(
    directory: Path,
    cluster: PostgresCluster,
    main: Mapping[str, object] | None = None,
    serverSections: str | None = None,
) -> Iterator[Pooler]:
    """
    A running pgtwist with an admins file, a stats user and session pooling;
    its log is printed when the test fails.
    """
    settings: dict[str, object] = {"pipeline": "session", "stats_users": STATS_USER}
    settings.update(main or {})
    pooler = Pooler(
        directory,
        cluster,
        main=settings,
        hba=("host all all all scram-sha-256",),
        users={USER: PASSWORD, STATS_USER: STATS_PASSWORD},
        admins={ADMIN: ADMIN_PASSWORD},
        serverSections=serverSections,
    ).start()
    try:
        yield pooler
    except BaseException:
        print("---- pgtwist log ----")
        print(pooler.log())
        raise
    finally:
        pooler.stop()


@pytest.fixture
def pooler(tmp_path: Path, pgCluster: PostgresCluster) -> Iterator[Pooler]:
    """
    The usual console pooler.
    """
    with consolePooler(tmp_path, pgCluster) as running:
        yield running


def psql(
    pooler: Pooler,
    sql: str,
    user: str = ADMIN,
    password: str | None = ADMIN_PASSWORD,
    unix: bool = False,
    port: int | None = None,
    database: str = "pgbouncer",
) -> subprocess.CompletedProcess[str]:
    """
    Run C{psql -c} against pgtwist (CSV output).
    """
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    if password is not None:
        env["PGPASSWORD"] = password
    host = pooler.socketDir if unix else "127.0.0.1"
    command = [
        pooler.cluster.program("psql"),
        "-X",
        "--csv",
        "-h",
        host,
        "-p",
        str(port or pooler.port),
        "-U",
        user,
        "-d",
        database,
        "-c",
        sql,
    ]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )


def rows(result: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    """
    psql's CSV output as dictionaries (failing the test on a psql error).
    """
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


def console(
    pooler: Pooler, user: str = ADMIN, password: str = ADMIN_PASSWORD
) -> psycopg.Connection:
    """
    A psycopg connection to the console (simple protocol for parameterless queries).
    """
    return psycopg.connect(pooler.dsn(user, password, "pgbouncer"), autocommit=True)


def client(pooler: Pooler, name: str = "test") -> psycopg.Connection:
    """
    A pool client of the shared database.
    """
    return psycopg.connect(
        pooler.dsn(USER, PASSWORD, SHARED, application_name=name), autocommit=True
    )


def showDict(conn: psycopg.Connection, sql: str) -> dict[str, Any]:
    """
    A two-column SHOW as a mapping.
    """
    return {row[0]: row[1] for row in conn.execute(sql).fetchall()}


def poolRow(conn: psycopg.Connection, database: str = SHARED) -> dict[str, Any]:
    """
    SHOW POOLS' row for C{database} and the test user.
    """
    cursor = conn.execute("SHOW POOLS")
    names = [d.name for d in cursor.description or ()]
    for row in cursor.fetchall():
        record = dict(zip(names, row, strict=True))
        if (record["database"], record["user"]) == (database, USER):
            return record
    return {}


class Background:
    """
    Run a blocking call in a thread; remember its result or exception.
    """

    def __init__(self, function: Any, *args: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(function, *args), daemon=True)
        self.thread.start()

    def _run(self, function: Any, *args: Any) -> None:
        try:
            self.result = function(*args)
        except BaseException as e:
            self.error = e

    def done(self) -> bool:
        """
        Whether the call returned.
        """
        return not self.thread.is_alive()

    def wait(self, timeout: float = 15.0) -> Any:
        """
        Its result, once it returned.
        """
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "still running"
        if self.error is not None:
            raise self.error
        return self.result


# -- access --------------------------------------------------------------------


def test_psqlOverTcp(pooler: Pooler) -> None:
    """
    psql logs in over TCP with the admin's SCRAM password; SHOW POOLS,
    SHOW HELP and an unknown command answer as PgBouncer's console does.
    """
    pools = rows(psql(pooler, "SHOW POOLS"))
    assert list(pools[0]) == [
        "database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req",
        "cl_waiting_cancel_req", "sv_active", "sv_active_cancel", "sv_being_canceled",
        "sv_idle", "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode",
        "load_balance_hosts", "target_session_attrs", "servers",
    ]  # fmt: skip
    assert ("pgbouncer", "pgbouncer") in [(p["database"], p["user"]) for p in pools]
    help = psql(pooler, "SHOW HELP")
    assert help.returncode == 0
    assert "Console usage" in help.stderr and "SHOW HELP|CONFIG|DATABASES" in help.stderr
    unknown = psql(pooler, "FROB")
    assert unknown.returncode != 0
    assert "invalid command 'FROB', use SHOW HELP;" in unknown.stderr


def test_psqlOverUnixSocket(pooler: Pooler) -> None:
    """
    Over the unix socket a peer needs no password under its own OS user's
    name (PostgreSQL's C{peer}), and pgtwist's own OS user is an admin;
    under any other name it gets the password step (issue 11, finding 7).
    """
    me = OS_USER
    state = rows(psql(pooler, "SHOW STATE", user=me, password=None, unix=True))
    assert {r["key"]: r["value"] for r in state} == {
        "active": "yes",
        "paused": "no",
        "suspended": "no",
    }
    assert rows(psql(pooler, "SHOW VERSION", user=me, password=None, unix=True, database="pgtwist"))
    other = psql(pooler, "SHOW STATE", user="anyone", password=None, unix=True)
    assert other.returncode != 0 and "no password supplied" in other.stderr


def test_refused(pooler: Pooler) -> None:
    """
    A pool user gets the password step and the same refusal as a wrong
    admin password: the answer does not tell admins from others.
    """
    refused = psql(pooler, "SHOW POOLS", user=USER, password=PASSWORD)
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        console(pooler, USER, PASSWORD)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        console(pooler, ADMIN, "wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        console(pooler, "nobody-at-all", "guess")


def test_statsUser(pooler: Pooler) -> None:
    """
    A stats user may SHOW but not control: KILL_CLIENT of a connected
    client's id, SUSPEND, WAIT_CLOSE and the rest get "admin access
    needed", and the client keeps working.
    """
    with client(pooler) as victim, console(pooler) as admin:
        assert victim.execute("SELECT 1").fetchone() == (1,)
        cursor = admin.execute("SHOW CLIENTS")
        names = [d.name for d in cursor.description or ()]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        ids = [row["id"] for row in rows if (row["user"], row["database"]) == (USER, SHARED)]
        assert len(ids) == 1
        with console(pooler, STATS_USER, STATS_PASSWORD) as conn:
            assert conn.execute("SHOW STATS").fetchall()
            for command in (
                "PAUSE",
                "RELOAD",
                f"KILL_CLIENT {ids[0]}",
                "SUSPEND",
                "WAIT_CLOSE",
                "SHUTDOWN",
            ):
                with pytest.raises(psycopg.Error, match="admin access needed"):
                    conn.execute(command)
        assert victim.execute("SELECT 1").fetchone() == (1,)
    assert pooler.process is not None and pooler.process.poll() is None


def test_suspendAndWaitClose(pooler: Pooler) -> None:
    """
    SUSPEND answers and SHOW STATE says suspended until RESUME, after
    which a client's query goes through; WAIT_CLOSE answers once the
    backends RECONNECT marked are gone.
    """
    with client(pooler) as c, console(pooler) as conn:
        assert c.execute("SELECT 1").fetchone() == (1,)
        conn.execute("SUSPEND")
        assert showDict(conn, "SHOW STATE")["suspended"] == "yes"
        conn.execute("RESUME")
        assert showDict(conn, "SHOW STATE")["active"] == "yes"
        assert c.execute("SELECT 2").fetchone() == (2,)
        conn.execute("RECONNECT")
    with console(pooler) as conn:
        conn.execute("WAIT_CLOSE")
        assert poolRow(conn)["sv_idle"] == 0


def test_extendedProtocolRefused(pooler: Pooler) -> None:
    """
    The extended protocol gets a clear error; the session stays usable.
    """
    with console(pooler) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="only the simple query"):
            conn.cursor(binary=True).execute("SHOW POOLS")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("SHOW %s", ["POOLS"])
        assert conn.execute("SHOW VERSION").fetchone()[0].startswith("pgtwist ")  # type: ignore[index]


def test_managementPort(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    The C{management} port serves only the console, whatever the database.
    """
    management = freePort()
    with consolePooler(tmp_path, pgCluster, main={"management": management}) as pooler:
        result = rows(psql(pooler, "SHOW LISTS", port=management, database=SHARED))
        assert [r["list"] for r in result][:3] == ["databases", "users", "pools"]
        refused = psql(pooler, "SHOW LISTS", user=USER, password=PASSWORD, port=management)
        assert "password authentication failed" in refused.stderr


# -- shapes ----------------------------------------------------------------------


def test_exporterShapes(pooler: Pooler) -> None:
    """
    What pgbouncer_exporter reads: STATS_TOTALS, POOLS and DATABASES by
    column name, LISTS with exactly 2 columns, CONFIG with 4, VERSION.
    """
    with client(pooler) as c:
        c.execute("SELECT 1")
    with console(pooler) as conn:
        cursor = conn.execute("SHOW STATS_TOTALS;")
        names = [d.name for d in cursor.description or ()]
        assert names[0] == "database"
        for name in ("query_count", "query_time", "bytes_received", "bytes_sent", "wait_time",
                     "xact_count", "xact_time", "client_parse_count", "server_parse_count",
                     "bind_count"):  # fmt: skip
            assert name in names
        assert {d.type_code for d in (cursor.description or ())[1:]} == {NUMERIC}
        totals = {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
        assert totals[SHARED]["client_login_count"] >= 1
        cursor = conn.execute("SHOW POOLS;")
        names = [d.name for d in cursor.description or ()]
        assert {"cl_active", "cl_waiting", "sv_active", "sv_idle", "maxwait"} <= set(names)
        assert cursor.description[2].type_code == INT4  # type: ignore[index]
        cursor = conn.execute("SHOW DATABASES;")
        names = [d.name for d in cursor.description or ()]
        assert {
            "name",
            "host",
            "port",
            "pool_size",
            "max_connections",
            "paused",
            "disabled",
        } <= set(names)
        cursor = conn.execute("SHOW LISTS;")
        assert len(cursor.description or ()) == 2
        assert all(isinstance(items, int) for _, items in cursor.fetchall())
        cursor = conn.execute("SHOW CONFIG;")
        assert [d.name for d in cursor.description or ()] == [
            "key",
            "value",
            "default",
            "changeable",
        ]
        cursor = conn.execute("SHOW VERSION;")
        assert [d.name for d in cursor.description or ()] == ["version"]
        assert [d.type_code for d in cursor.description or ()] == [TEXT]


def test_queryTimeInTransactionPooling(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    In transaction pooling, SHOW STATS times queries as well as counting
    them: C{total_query_time} covers a C{pg_sleep} (C{avg_query_time} is
    the same counter over C{stats_period}).
    """
    with consolePooler(tmp_path, pgCluster, main={"pipeline": "transaction"}) as pooler:
        with client(pooler) as c:
            c.execute("SELECT pg_sleep(0.2)")
            c.execute("SELECT 1")
        with console(pooler) as conn:
            cursor = conn.execute("SHOW STATS")
            names = [d.name for d in cursor.description or ()]
            stats = {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}
        shared = stats[SHARED]
        assert shared["total_query_count"] >= 2
        assert shared["total_query_time"] >= 200_000
        assert shared["total_query_time"] < 5_000_000


def test_everyShow(pooler: Pooler) -> None:
    """
    Every SHOW of SHOW HELP answers through psycopg.
    """
    from pgtwist.admin.commands import COMMANDS

    with client(pooler) as c, console(pooler) as conn:
        c.execute("SELECT 1")
        for command in COMMANDS:
            if command.verb == "SHOW" and command.subject != "HELP":
                cursor = conn.execute(command.name)
                assert cursor.statusmessage == "SHOW", command.name
        clients = conn.execute("SHOW CLIENTS").fetchall()
        assert "test" in [row[18] for row in clients]
        servers = conn.execute("SHOW SERVERS").fetchall()
        assert [row[4] for row in servers] == ["active"]


# -- control commands --------------------------------------------------------------


def test_pauseResume(pooler: Pooler) -> None:
    """
    PAUSE db waits for the session client holding a backend, closes the
    backends; a client arriving meanwhile waits until RESUME db.
    """
    with console(pooler) as conn:
        holder = client(pooler, "holder")
        holder.execute("SELECT 1")
        paused = Background(conn.execute, f"PAUSE {SHARED}")
        time.sleep(0.5)
        assert not paused.done()
        holder.close()
        assert paused.wait().statusmessage == "PAUSE"
        with console(pooler) as other:
            assert poolRow(other)["sv_active"] == 0
            waiting = Background(lambda: client(pooler, "waiter").execute("SELECT 42").fetchone())
            waitFor(lambda: poolRow(other).get("cl_waiting") == 1)
            databases = {r[0]: r for r in other.execute("SHOW DATABASES").fetchall()}
            assert databases[SHARED][15] == 1
            assert not waiting.done()
        assert conn.execute(f"RESUME {SHARED}").statusmessage == "RESUME"
        assert waiting.wait() == (42,)
        with pytest.raises(psycopg.Error, match="is not paused"):
            conn.execute(f"RESUME {SHARED}")


def test_pauseAll(pooler: Pooler) -> None:
    """
    PAUSE without a database pauses everything (SHOW STATE) until RESUME.
    """
    with console(pooler) as conn:
        assert conn.execute("PAUSE").statusmessage == "PAUSE"
        assert showDict(conn, "SHOW STATE")["paused"] == "yes"
        with pytest.raises(psycopg.Error, match="already suspended/paused"):
            conn.execute("PAUSE")
        conn.execute("RESUME")
        with client(pooler) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)


def test_disableEnable(pooler: Pooler) -> None:
    """
    DISABLE refuses new clients of a database; ENABLE lets them in again.
    """
    with console(pooler) as conn:
        assert conn.execute(f"DISABLE {SHARED}").statusmessage == "DISABLE"
        with pytest.raises(psycopg.OperationalError, match="not currently accepting connections"):
            client(pooler)
        assert conn.execute(f"ENABLE {SHARED}").statusmessage == "ENABLE"
        with client(pooler) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)


def test_reconnectAndFlush(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    RECONNECT closes idle backends (the next client gets a new one); FLUSH
    IDLE does the same, pgagroal-style.
    """
    with adminConnect(pgCluster) as cluster, console(pooler) as conn:
        for command in (f"RECONNECT {SHARED}", "FLUSH IDLE *"):
            with client(pooler) as c:
                pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            waitFor(lambda: poolRow(conn).get("sv_idle") == 1)
            assert conn.execute(command).statusmessage == command.split()[0]
            waitFor(lambda p=pid: p not in [b[0] for b in backendsOf(cluster, USER, SHARED)])  # type: ignore[misc]
            with client(pooler) as c:
                assert c.execute("SELECT pg_backend_pid()").fetchone()[0] != pid  # type: ignore[index]


def test_kill(pooler: Pooler) -> None:
    """
    KILL db drops its clients; the database stays paused until RESUME.
    """
    with console(pooler) as conn:
        victim = client(pooler)
        victim.execute("SELECT 1")
        assert conn.execute(f"KILL {SHARED}").statusmessage == "KILL"
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
        assert showDict(conn, "SHOW STATUS")["clients"] == "0"
        conn.execute(f"RESUME {SHARED}")
        with client(pooler) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)


def test_killClient(pooler: Pooler) -> None:
    """
    KILL_CLIENT drops the client with the id SHOW CLIENTS gives.
    """
    with (
        console(pooler) as conn,
        client(pooler, "victim") as victim,
        client(pooler, "bystander") as other,
    ):
        victim.execute("SELECT 1")
        other.execute("SELECT 1")
        clients = {row[18]: row[20] for row in conn.execute("SHOW CLIENTS").fetchall()}
        assert conn.execute(f"KILL_CLIENT {clients['victim']}").statusmessage == "KILL_CLIENT"
        with pytest.raises(psycopg.OperationalError, match="admin forced disconnect"):
            victim.execute("SELECT 1")
        assert other.execute("SELECT 2").fetchone() == (2,)
        with pytest.raises(psycopg.Error, match="client not found"):
            conn.execute("KILL_CLIENT 99999")


def test_reloadAndSet(pooler: Pooler) -> None:
    """
    RELOAD re-reads the files; SET changes a setting at runtime; both show
    in SHOW CONFIG.
    """
    with console(pooler) as conn:
        assert showDict(conn, "SHOW CONFIG")["max_connections"] == "10"
        text = pooler.configPath.read_text().replace("max_connections = 10", "max_connections = 8")
        pooler.configPath.write_text(text)
        assert conn.execute("RELOAD").statusmessage == "RELOAD"
        assert showDict(conn, "SHOW CONFIG")["max_connections"] == "8"
        assert conn.execute("SET max_connections = 6").statusmessage == "SET max_connections=6"
        assert showDict(conn, "SHOW CONFIG")["max_connections"] == "6"
        with pytest.raises(psycopg.Error, match="SET failed"):
            conn.execute("SET port = 1")
        pooler.configPath.write_text("[pgtwist]\nport = nonsense\n")
        with pytest.raises(psycopg.Error, match="RELOAD failed"):
            conn.execute("RELOAD")


def test_switchToAndClear(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    SWITCH_TO moves to the other server section; CLEAR SERVER forgets the
    old one's failure; CLEAR PROMETHEUS zeroes the statistics.
    """
    servers = (
        f"[primary]\nhost = {pgCluster.host}\nport = {pgCluster.port}\nprimary = on\n\n"
        f"[replica]\nhost = localhost\nport = {pgCluster.port}\n"
    )
    with consolePooler(tmp_path, pgCluster, serverSections=servers) as pooler:
        with console(pooler) as conn:
            with client(pooler) as c:
                c.execute("SELECT 1")
            assert conn.execute("SWITCH_TO replica").statusmessage == "SWITCH_TO"
            status = showDict(conn, "SHOW STATUS")
            assert status["server.replica"].startswith("primary ")
            assert status["server.primary"].startswith("failed ")
            with client(pooler) as c:
                assert c.execute("SELECT 1").fetchone() == (1,)
            with pytest.raises(psycopg.Error, match="no such server"):
                conn.execute("SWITCH_TO nowhere")
            assert conn.execute("CLEAR SERVER primary").statusmessage == "CLEAR"
            assert showDict(conn, "SHOW STATUS")["server.primary"].startswith("standby ")
            assert conn.execute("CLEAR PROMETHEUS").statusmessage == "CLEAR"
            totals = {r[0]: r for r in conn.execute("SHOW STATS_TOTALS").fetchall()}
            assert totals[SHARED][3] == 0


def _exited(pooler: Pooler, timeout: float = 15.0) -> int:
    assert pooler.process is not None
    return pooler.process.wait(timeout)


def test_shutdownImmediate(pooler: Pooler) -> None:
    """
    SHUTDOWN answers, then pgtwist exits.
    """
    with console(pooler) as conn:
        assert conn.execute("SHUTDOWN").statusmessage == "SHUTDOWN"
    assert _exited(pooler) == 0


def test_shutdownWaitForClients(pooler: Pooler) -> None:
    """
    SHUTDOWN WAIT_FOR_CLIENTS stops accepting clients over TCP but keeps
    the console on the unix socket, and exits when the last client leaves.
    """
    c = client(pooler)
    c.execute("SELECT 1")
    with console(pooler) as conn:
        assert conn.execute("SHUTDOWN WAIT_FOR_CLIENTS").statusmessage == "SHUTDOWN"
    status = {
        r["key"]: r["value"] for r in rows(psql(pooler, "SHOW STATUS", OS_USER, None, unix=True))
    }
    assert status["status"] == "gracefully"
    with pytest.raises(psycopg.OperationalError):
        client(pooler)
    time.sleep(0.3)
    assert pooler.process is not None and pooler.process.poll() is None
    assert c.execute("SELECT 2").fetchone() == (2,)
    c.close()
    assert _exited(pooler) == 0


def test_shutdownGracefullyCancelled(pooler: Pooler) -> None:
    """
    SHUTDOWN GRACEFULLY then SHUTDOWN CANCEL (over the unix socket) accepts clients again.
    """
    c = client(pooler)
    assert rows(psql(pooler, "SHUTDOWN GRACEFULLY", OS_USER, None, unix=True)) == []
    assert rows(psql(pooler, "SHUTDOWN CANCEL", OS_USER, None, unix=True)) == []
    with client(pooler) as other:
        assert other.execute("SELECT 1").fetchone() == (1,)
    c.close()
    time.sleep(0.3)
    assert pooler.process is not None and pooler.process.poll() is None


def test_shutdownWaitForServers(pooler: Pooler) -> None:
    """
    SHUTDOWN WAIT_FOR_SERVERS answers at once and exits once the session
    client holding a backend gives it back.
    """
    holder = client(pooler)
    holder.execute("SELECT 1")
    with console(pooler) as conn:
        assert conn.execute("SHUTDOWN WAIT_FOR_SERVERS").statusmessage == "SHUTDOWN"
    time.sleep(0.5)
    assert pooler.process is not None and pooler.process.poll() is None
    holder.close()
    assert _exited(pooler) == 0
