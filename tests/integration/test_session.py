"""
Session pooling end to end: the real C{pgtwist} process in front of the
suite's PostgreSQL, driven by psycopg and by a raw L{pgtwist.wire} client,
with C{pg_stat_activity} read directly from the cluster to see what pgtwist
really did to its backends (issue 2, points 7 and 8).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire import constants
from pgtwist.wire.messages import DataRow, ErrorResponse, Query
from tests.integration.clients import (
    RawClient,
    RawError,
    adminConnect,
    backendsOf,
    runningPooler,
    sendCancel,
    waitFor,
    waitUntilGone,
    waitUntilPooled,
)
from tests.integration.pooler import Pooler

SCRAM = ("pgt_scram", "scram-secret")
"""
The role (and database) most tests use, and its password.
"""

TRUST_HBA = ["host all pgt_trust all trust", "host all all all scram-sha-256"]
"""
pgtwist HBA lines letting the raw client (trust only) in as C{pgt_trust}.
"""


@pytest.fixture
def admin(pgCluster: PostgresCluster) -> Iterator[psycopg.Connection]:
    """
    A superuser connection to the cluster itself, to watch its backends.
    """
    with adminConnect(pgCluster) as conn:
        yield conn


def connect(pooler: Pooler, **extra: str) -> psycopg.Connection:
    """
    A psycopg connection through C{pooler} as C{pgt_scram}, with extra
    libpq parameters.
    """
    return psycopg.connect(pooler.dsn(*SCRAM, **extra), autocommit=True)


def show(conn: psycopg.Connection, name: str) -> str:
    """
    What C{SHOW name} says on C{conn}.
    """
    row = conn.execute(f"SHOW {name}").fetchone()
    assert row is not None
    return str(row[0])


def backendPid(conn: psycopg.Connection) -> int:
    """
    C{pg_backend_pid()} on C{conn}.
    """
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def test_backendReused(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    Two successive clients of the same (database, user) share one backend:
    same pid, and PostgreSQL saw a single login (one backend, whose
    C{backend_start} did not change).
    """
    with runningPooler(tmp_path, pgCluster) as pooler:
        with connect(pooler) as first:
            pid = backendPid(first)
        waitUntilPooled(admin, pid)
        [(seenPid, started, _, _)] = backendsOf(admin, "pgt_scram")
        assert seenPid == pid
        with connect(pooler) as second:
            assert backendPid(second) == pid
            assert second.info.backend_pid == pid
            [(againPid, againStarted, _, _)] = backendsOf(admin, "pgt_scram")
        assert (againPid, againStarted) == (pid, started)


def test_backendKeyDataCarriesRealPid(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    The BackendKeyData a client receives names its backend's real pid, which
    C{pg_stat_activity} knows under the client's user; the secret is
    pgtwist's own, not PostgreSQL's, so it differs between two clients of
    the same backend. NOTIFY reports the same pid; Terminate closes the
    connection, as PostgreSQL does.
    """
    with runningPooler(tmp_path, pgCluster, hba=TRUST_HBA) as pooler:
        with connect(pooler) as conn:
            assert conn.info.backend_pid == backendPid(conn)
            assert [b[0] for b in backendsOf(admin, "pgt_scram")] == [conn.info.backend_pid]
            conn.execute("LISTEN pgtwist_channel")
            conn.execute("NOTIFY pgtwist_channel, 'hello'")
            [notify] = list(conn.notifies(timeout=5, stop_after=1))
            assert (notify.pid, notify.payload) == (conn.info.backend_pid, "hello")
        first = RawClient(pooler.port, "pgt_trust")
        pid = first.query("SELECT pg_backend_pid()")[0][0]
        assert first.processId == int(str(pid))
        secret = first.secretKey
        assert first.terminate(), "pgtwist did not close the connection after Terminate"
        waitUntilPooled(admin, first.processId)
        second = RawClient(pooler.port, "pgt_trust")
        try:
            assert second.processId == first.processId
            assert second.secretKey != secret
        finally:
            second.close()


def test_startupParametersOnReusedBackend(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    Startup parameters (C{application_name}, C{client_encoding},
    C{options=-c DateStyle=... -c client_min_messages=...}) take effect on a
    reused backend and are reported in ParameterStatus with PostgreSQL's
    spelling (C{utf-8} becomes C{UTF8}); the next client without them sees
    the defaults again, because C{DISCARD ALL} undid them.
    """
    with runningPooler(tmp_path, pgCluster) as pooler:
        names = ("application_name", "client_encoding", "DateStyle", "client_min_messages")
        with connect(pooler) as plain:
            pid = backendPid(plain)
            defaults = {name: show(plain, name) for name in names}
            defaultStatus = {n: plain.info.parameter_status(n) for n in names[:3]}
        assert defaults["client_min_messages"] == "notice"
        assert not defaults["DateStyle"].startswith("German")
        waitUntilPooled(admin, pid)

        notices: list[str | None] = []

        def onNotice(diagnostic: psycopg.errors.Diagnostic) -> None:
            # The diagnostic is only valid inside the callback.
            notices.append(diagnostic.message_primary)

        with connect(
            pooler,
            application_name="app-one",
            client_encoding="utf-8",
            options="-c DateStyle=German -c client_min_messages=warning",
        ) as tuned:
            assert backendPid(tuned) == pid
            tuned.add_notice_handler(onNotice)
            assert show(tuned, "application_name") == "app-one"
            assert tuned.info.parameter_status("application_name") == "app-one"
            activity = admin.execute(
                "SELECT application_name FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            assert activity == ("app-one",)
            assert show(tuned, "client_encoding") == "UTF8"
            assert tuned.info.parameter_status("client_encoding") == "UTF8"
            dateStyle = show(tuned, "DateStyle")
            assert dateStyle.startswith("German")
            assert tuned.info.parameter_status("DateStyle") == dateStyle
            assert show(tuned, "client_min_messages") == "warning"
            tuned.execute("DO $$ BEGIN RAISE NOTICE 'hidden'; END $$")
            assert notices == []
        waitUntilPooled(admin, pid)

        with connect(pooler, client_encoding="latin1") as latin:
            assert backendPid(latin) == pid
            assert show(latin, "client_encoding") == "LATIN1"
            assert latin.info.parameter_status("client_encoding") == "LATIN1"
        waitUntilPooled(admin, pid)

        with connect(pooler) as again:
            assert backendPid(again) == pid
            again.add_notice_handler(onNotice)
            assert {name: show(again, name) for name in names} == defaults
            assert {n: again.info.parameter_status(n) for n in names[:3]} == defaultStatus
            again.execute("DO $$ BEGIN RAISE NOTICE 'shown'; END $$")
            assert notices == ["shown"]


def test_startupListSettingOnReusedBackend(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    A list setting at startup (C{options=-c search_path=alpha,beta}) is two
    schemas on a reused backend, as PostgreSQL reads it from a
    StartupMessage (C{SHOW} gives the text as sent), not one schema named
    C{"alpha,beta"} (which C{SHOW} would give with its double quotes).
    """
    with runningPooler(tmp_path, pgCluster, hba=TRUST_HBA) as pooler:
        with connect(pooler) as plain:
            pid = backendPid(plain)
        waitUntilPooled(admin, pid)
        with connect(pooler, options="-c search_path=alpha,beta") as listed:
            assert backendPid(listed) == pid
            assert show(listed, "search_path") == "alpha,beta"


def test_invalidStartupSettingIsFatal(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    A startup setting PostgreSQL refuses ends the login with a FATAL worded
    as PostgreSQL's own; the backend is kept, clean, and pgtwist keeps
    serving other clients.
    """
    with runningPooler(tmp_path, pgCluster, hba=TRUST_HBA) as pooler:
        with connect(pooler) as plain:
            pid = backendPid(plain)
            defaultStyle = show(plain, "DateStyle")
        waitUntilPooled(admin, pid)
        with pytest.raises(psycopg.OperationalError) as caught:
            connect(pooler, options="-c DateStyle=nonsense")
        assert 'FATAL:  invalid value for parameter "DateStyle": "nonsense"' in str(caught.value)

        with pytest.raises(RawError) as rawCaught:
            RawClient(pooler.port, "pgt_trust", parameters={"DateStyle": "nonsense"})
        assert rawCaught.value.error.severity == "FATAL"
        assert rawCaught.value.error.code == "22023"
        assert (
            rawCaught.value.error.message == 'invalid value for parameter "DateStyle": "nonsense"'
        )

        waitUntilPooled(admin, pid)
        with connect(pooler) as after:
            assert backendPid(after) == pid
            assert show(after, "DateStyle") == defaultStyle


def test_poolExhausted(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    With C{max_connections = 1} and C{blocking_timeout = 1}, a second client
    (same pool or another) waits about a second, then gets FATAL 53300
    "connection pool exhausted"; once the first leaves, both kinds of client
    connect (the other pool by closing the idle backend).
    """
    main = {"max_connections": 1, "blocking_timeout": 1}
    with runningPooler(tmp_path, pgCluster, main=main, hba=TRUST_HBA) as pooler:
        holder = connect(pooler)
        pid = backendPid(holder)
        try:
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError, match="connection pool exhausted"):
                connect(pooler)
            elapsed = time.monotonic() - started
            assert 0.8 <= elapsed < 3.0, elapsed

            started = time.monotonic()
            with pytest.raises(RawError) as caught:
                RawClient(pooler.port, "pgt_trust")
            elapsed = time.monotonic() - started
            assert 0.8 <= elapsed < 3.0, elapsed
            assert caught.value.error.severity == "FATAL"
            assert caught.value.error.code == constants.SQLSTATE_TOO_MANY_CONNECTIONS
            assert "connection pool exhausted" in caught.value.error.message
        finally:
            holder.close()
        with connect(pooler) as later:
            assert backendPid(later) == pid
        other = RawClient(pooler.port, "pgt_trust")
        try:
            assert other.query("SELECT current_user") == [("pgt_trust",)]
        finally:
            other.close()


def test_waiterServedWhenBackendFreed(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    A client waiting for the only backend gets it as soon as its holder
    leaves, well before C{blocking_timeout}.
    """
    main = {"max_connections": 1, "blocking_timeout": 5}
    with runningPooler(tmp_path, pgCluster, main=main) as pooler:
        holder = connect(pooler)
        pid = backendPid(holder)
        leaver = threading.Timer(0.5, holder.close)
        started = time.monotonic()
        leaver.start()
        try:
            with connect(pooler) as waiter:
                elapsed = time.monotonic() - started
                assert backendPid(waiter) == pid
        finally:
            leaver.join()
        assert 0.4 <= elapsed < 4.0, elapsed


def test_idleTimeout(tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection) -> None:
    """
    With C{idle_timeout = 1} a backend left idle is closed: it is in the pool
    right after its client leaves, gone from C{pg_stat_activity} 2.5 s
    later, and the next client gets a new one.
    """
    with runningPooler(tmp_path, pgCluster, main={"idle_timeout": 1}) as pooler:
        with connect(pooler) as first:
            pid = backendPid(first)
        waitUntilPooled(admin, pid)
        time.sleep(2.5)
        assert [b[0] for b in backendsOf(admin, "pgt_scram")] == []
        with connect(pooler) as second:
            assert backendPid(second) != pid


def test_cancel(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    psycopg's C{cancel()} and C{cancel_safe()}, sent to pgtwist from another
    thread, cancel the running C{pg_sleep}; the connection stays usable.
    """
    with runningPooler(tmp_path, pgCluster) as pooler, connect(pooler) as conn:
        for method in (conn.cancel, conn.cancel_safe):
            canceller = threading.Timer(0.5, method)
            started = time.monotonic()
            canceller.start()
            try:
                with pytest.raises(psycopg.errors.QueryCanceled):
                    conn.execute("SELECT pg_sleep(10)")
            finally:
                canceller.join()
            assert time.monotonic() - started < 3.0
            assert conn.execute("SELECT 42").fetchone() == (42,)


def test_staleCancelKeyIgnored(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    A's key stops working when A leaves: B, who now has the very same
    backend (same pid), is not cancelled by A's old key nor by a made-up
    secret with its pid; B's own key does cancel.
    """
    with runningPooler(tmp_path, pgCluster, hba=TRUST_HBA) as pooler:
        first = RawClient(pooler.port, "pgt_trust")
        staleKey = (first.processId, first.secretKey)
        first.close()
        waitUntilPooled(admin, staleKey[0])
        second = RawClient(pooler.port, "pgt_trust")
        try:
            assert second.processId == staleKey[0]
            garbage = (second.secretKey ^ 0x2A2A2A2A) or 1
            assert garbage not in (second.secretKey, staleKey[1])

            second.send(Query("SELECT pg_sleep(2)"))
            waitFor(lambda: backendsOf(admin, "pgt_trust")[0][2] == "active")
            sendCancel(pooler.port, *staleKey)
            sendCancel(pooler.port, second.processId, garbage)
            results = second.results()
            assert not [m for m in results if isinstance(m, ErrorResponse)], results
            assert [m for m in results if isinstance(m, DataRow)] == [DataRow((b"",))]

            started = time.monotonic()
            second.send(Query("SELECT pg_sleep(10)"))
            waitFor(lambda: backendsOf(admin, "pgt_trust")[0][2] == "active")
            sendCancel(pooler.port, second.processId, second.secretKey)
            [error] = [m for m in second.results() if isinstance(m, ErrorResponse)]
            assert error.code == constants.SQLSTATE_QUERY_CANCELED
            assert time.monotonic() - started < 3.0
            assert second.query("SELECT 1") == [("1",)]
        finally:
            second.close()


def test_clientKilledMidQuery(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    A client that vanishes while its query runs does not leave its backend
    to the next client: with one backend allowed, the next client gets a new
    one at once, and the old one, once its query is cancelled, leaves
    C{pg_stat_activity} (pgtwist closed it rather than pooling it).
    """
    main = {"max_connections": 1, "blocking_timeout": 10}
    with runningPooler(tmp_path, pgCluster, main=main, hba=TRUST_HBA) as pooler:
        victim = RawClient(pooler.port, "pgt_trust")
        oldPid = victim.processId
        victim.send(Query("SELECT pg_sleep(5)"))
        waitFor(lambda: backendsOf(admin, "pgt_trust")[0][2] == "active")
        victim.kill()

        started = time.monotonic()
        successor = RawClient(pooler.port, "pgt_trust")
        try:
            assert time.monotonic() - started < 2.0
            assert successor.processId != oldPid
            assert successor.query("SELECT pg_backend_pid()") == [(str(successor.processId),)]
            admin.execute("SELECT pg_cancel_backend(%s)", (oldPid,))
            waitUntilGone(admin, oldPid, timeout=5)
        finally:
            successor.close()


def test_clientKilledInTransaction(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    A client that vanishes inside a transaction (with a temporary table)
    leaves nothing behind: the next client has a clean, idle session with no
    table C{t}, on another backend, and the old backend is closed. A client
    that closes politely inside a transaction is treated the same way.
    """
    main = {"max_connections": 1, "blocking_timeout": 10}
    with runningPooler(tmp_path, pgCluster, main=main, hba=TRUST_HBA) as pooler:
        victim = RawClient(pooler.port, "pgt_trust")
        oldPid = victim.processId
        assert victim.query("BEGIN; CREATE TEMP TABLE t(x int)") == []
        assert victim.transactionStatus == constants.TRANSACTION_IN_BLOCK
        victim.kill()

        successor = RawClient(pooler.port, "pgt_trust")
        try:
            assert successor.processId != oldPid
            rows = successor.query("SELECT to_regclass('t') IS NULL, txid_current_if_assigned()")
            assert rows == [("t", None)]
            assert successor.transactionStatus == constants.TRANSACTION_IDLE
            waitUntilGone(admin, oldPid, timeout=5)
            nextPid = successor.processId
        finally:
            successor.close()

        # The same when the client says goodbye politely mid-transaction, as
        # psycopg does when a non-autocommit connection is closed.
        polite = psycopg.connect(pooler.dsn("pgt_trust", None))
        assert backendPid(polite) == nextPid
        polite.execute("CREATE TEMP TABLE t2 (x int)")
        polite.close()
        with psycopg.connect(pooler.dsn("pgt_trust", None), autocommit=True) as after:
            assert backendPid(after) != nextPid
            assert after.execute("SELECT to_regclass('t2')").fetchone() == (None,)
            assert after.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_terminatedBackend(
    tmp_path: Path, pgCluster: PostgresCluster, admin: psycopg.Connection
) -> None:
    """
    C{pg_terminate_backend} on a client's backend ends that client with an
    error; its slot is freed, so with one backend allowed a new client still
    gets in.
    """
    main = {"max_connections": 1, "blocking_timeout": 2}
    with runningPooler(tmp_path, pgCluster, main=main) as pooler:
        victim = connect(pooler)
        try:
            pid = backendPid(victim)
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
            waitUntilGone(admin, pid)
            with pytest.raises(psycopg.OperationalError):
                victim.execute("SELECT 1")
        finally:
            victim.close()
        with connect(pooler) as survivor:
            assert backendPid(survivor) != pid
            assert survivor.execute("SELECT 1").fetchone() == (1,)
