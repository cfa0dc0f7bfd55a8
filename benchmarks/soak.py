# -*- test-case-name: tests.unit.test_soak -*-
"""
The chaos soak (issue 16): real clients through a running pgtwist in front
of a throwaway PostgreSQL, for a bounded time, every pipeline at once,
with faults arriving on a seeded schedule while invariants are checked
all the time.

Run it with C{make soak} (ten minutes) or
C{python -m benchmarks.soak --minutes N --seed S}; the test suite runs one
minute of it (C{tests/integration/test_soak.py}).

What runs (one pgtwist, three databases, one per pipeline, two PostgreSQL
servers):

    - psycopg clients that keep their connection, each speaking one
      protocol (simple, extended, prepared), and clients that connect for
      one transaction only; their transactions are short or long, COPY in
      or out, or a pipeline of statements;
    - asyncpg clients (prepared statements, the extended protocol);
    - pgbench in bursts on the transaction-pooling database;
    - clients that send a query with a large answer and stop reading for a
      while (backpressure through pgtwist);
    - more clients than backends on the transaction-pooling database.

The faults (L{FAULTS}), each kind once per cycle in a seeded order:
C{pg_terminate_backend} of random backends, PostgreSQL fast and immediate
restarts, SIGHUP reloads that change pool limits, clients killed in the
middle of a transaction, of a COPY or of a pipeline, and, through a
L{FaultProxy} between pgtwist and PostgreSQL, network latency, stalls and
resets. Once, in the middle of the run, a failover (L{FAILOVER}): the
primary becomes unreachable for good and pgtwist is switched to the
second server, which has the same databases; the faults after it strike
the second server.

The invariants (a breach of any makes the run fail, naming the first):

    - every transaction a client saw committed is in its ledger table at
      the end, on the server it was committed on (commits before the
      failover on the old primary, after it on the new one), and no
      transaction a client never committed is, on either server;
    - a client never sees another client's session state: its
      C{application_name}, its C{soak.client} setting, its SQL prepared
      statements and temporary tables (in transaction pooling, no
      C{SET LOCAL} value of another client);
    - a backend handed to a client is never inside a transaction: at the
      first statement no transaction id is assigned, C{now()} is not older
      than the client's C{BEGIN}, and no C{25001} warning arrives;
    - no client operation lasts longer than the configured timeouts allow
      (L{HUNG_AFTER});
    - errors come only around faults (L{BEFORE_FAULT}, L{AFTER_FAULT}) and
      carry the SQLSTATEs pgtwist documents for them (L{ALLOWED_ERRORS});
    - after the load, pgtwist's RSS is within 5% of its level after
      warm-up, its open descriptors are back to their level before the
      load, its log holds no traceback, and it is still running.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import asyncpg
import psycopg

from benchmarks.client import LoginError, _close, login
from benchmarks.faultproxy import FaultProxy
from benchmarks.results import parseVmRssKiB
from benchmarks.servers import pgtwistCommand, pickLowPort, waitForPort
from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire import codec, constants
from pgtwist.wire.errors import ProtocolViolation
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import Query

#: The role every client logs in as (trust, through pgtwist and to PostgreSQL).
USER = "soak"
#: Each database and the pipeline its pool uses.
DATABASES = {"soak_session": "session", "soak_tx": "transaction", "soak_perf": "performance"}
#: pgtwist's C{blocking_timeout}: the longest a client waits for a backend.
BLOCKING_TIMEOUT = 10
#: How long pgtwist waits for PostgreSQL to accept a connection (fixed).
SERVER_CONNECT_TIMEOUT = 15
#: The longest a stall of the network between pgtwist and PostgreSQL lasts.
MAX_STALL = 3.0
#: A client operation lasting longer than this is hung: waiting for a
#: backend (C{blocking_timeout}), for PostgreSQL to accept one (the connect
#: timeout), across the longest stall, plus a long transaction and slack
#: for a crowded machine.
HUNG_AFTER = BLOCKING_TIMEOUT + SERVER_CONNECT_TIMEOUT + MAX_STALL + 5.0
#: An error is "around a fault" when the operation that met it overlaps a
#: fault's window widened by these many seconds before and after.
BEFORE_FAULT = 1.0
AFTER_FAULT = 5.0
#: The SQLSTATEs a client may meet around a fault: connection exceptions
#: (not 08P01: no client here breaks the protocol), PostgreSQL shutting down or
#: starting, the pool exhausted while PostgreSQL is away, serialization
#: failures and deadlocks; C{conn-lost} is a connection that broke without
#: an error message (the driver's own error), C{pgbench-abort} a pgbench
#: run that lost clients.
ALLOWED_ERRORS = frozenset(
    {"08000", "08001", "08003", "08006", "57P01", "57P02", "57P03", "53300", "40001", "40P01"}
    | {"conn-lost", "pgbench-abort"}
)
#: Every kind of fault that comes once per cycle, in the order of the report.
FAULTS = (
    "terminate",
    "restart-fast",
    "restart-immediate",
    "reload",
    "kill-mid-transaction",
    "kill-mid-copy",
    "kill-mid-pipeline",
    "net-latency",
    "net-stall",
    "net-reset",
)
#: The fault that comes once, in the middle of the run: the primary becomes
#: unreachable for good (L{FaultProxy.cut}), and pgtwist is switched to the
#: standby the way an operator or a failover manager does it, with the
#: console's C{SWITCH_TO} (L{pgtwist.pool.servers.ServerSet.switchTo}).
#: pgtwist's own C{failover = on} cannot be used here: the performance
#: pipeline refuses it (pgagroal's rule), and the soak runs every pipeline;
#: C{tests/integration/test_pool_operations.py} tests it.
FAILOVER = "failover"
#: The servers, in failover order: pgtwist's section names.
SERVERS = ("primary", "standby")
#: The pool limits a reload switches between: C{max_connections} and each
#: database's MAX_SIZE. The transaction-pooling database always has fewer
#: backends than clients.
LIMITS = (
    {"max_connections": 26, "soak_session": 7, "soak_tx": 4, "soak_perf": 7},
    {"max_connections": 24, "soak_session": 7, "soak_tx": 3, "soak_perf": 7},
)
#: What every transaction runs first: who the backend is, whether it is
#: already inside a transaction, and which session state it shows.
CHECK_SQL = (
    "SELECT pg_backend_pid(), pg_current_xact_id_if_assigned()::text,"
    " extract(epoch FROM now())::float8,"
    " current_setting('application_name'), current_setting('soak.client', true),"
    " (SELECT string_agg(name, ',') FROM pg_prepared_statements WHERE name LIKE 'soak%'),"
    " (SELECT string_agg(relname, ',') FROM pg_class"
    "  WHERE relnamespace = pg_my_temp_schema() AND relname LIKE 'soak%'),"
    " inet_server_port()"
)
#: The rows of the big answer the slow readers do not read for a while
#: (about 6.5 MB: more than a socket's largest send buffer, 4 MiB, and
#: the receive buffer of a socket that does not read, which does not
#: grow, so that the answer backs up into pgtwist).
SLOW_ROWS = 30000
#: The rows a COPY out sends.
COPY_OUT_ROWS = 2000
#: The slack between the client's clock and PostgreSQL's C{now()}.
CLOCK_SLACK = 0.5


def sqlstateOf(error: BaseException) -> str:
    """
    The SQLSTATE a driver error carries, or C{conn-lost} for a connection
    that broke without one.
    """
    state = getattr(error, "sqlstate", None)
    if isinstance(state, str) and state:
        return state
    text = str(error)
    match = re.match(r"([0-9A-Z]{5}) ", text)
    if isinstance(error, LoginError) and match:
        return match.group(1)
    if "connection pool exhausted" in text:
        return "53300"
    if isinstance(error, asyncpg.InternalClientError) and "another operation (2)" in text:
        # asyncpg meets a message it did not ask for (a FATAL ErrorResponse
        # sent to an idle connection, as PostgreSQL sends one when a
        # backend is terminated) by waiting for a ReadyForQuery that never
        # comes: its next call fails with this, not with the FATAL.
        return "conn-lost"
    broken = (psycopg.OperationalError, psycopg.InterfaceError, asyncpg.InterfaceError)
    if isinstance(error, (*broken, LoginError, OSError)):
        return "conn-lost"
    # Anything else is no connection failure: named, it is never allowed.
    return type(error).__name__


def allowedError(sqlstate: str) -> bool:
    """
    Whether C{sqlstate} is one pgtwist documents for a fault.
    """
    return sqlstate in ALLOWED_ERRORS


def faultSchedule(seed: int, start: float, end: float, interval: float) -> list[tuple[float, str]]:
    """
    When each fault happens, seconds from the start of the load: every kind
    of L{FAULTS} once per cycle, in an order shuffled by C{seed}, about
    C{interval} seconds apart, between C{start} and C{end}.
    """
    rng = random.Random(seed)
    schedule: list[tuple[float, str]] = []
    at = start
    while True:
        kinds = list(FAULTS)
        rng.shuffle(kinds)
        for kind in kinds:
            if at >= end:
                return schedule
            schedule.append((round(at, 2), kind))
            at += interval * rng.uniform(0.7, 1.3)


def withFailover(schedule: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """
    C{schedule} with one L{FAILOVER} in its middle, halfway between the two
    faults around it.
    """
    if not schedule:
        return schedule
    middle = len(schedule) // 2
    before = schedule[middle - 1][0] if middle else schedule[0][0] - 4.0
    return [*schedule[:middle], (round((before + schedule[middle][0]) / 2, 2), FAILOVER),
            *schedule[middle:]]  # fmt: skip


def checkState(row: Sequence[Any], tag: str, pipeline: str, began: float) -> str | None:
    """
    What is wrong with L{CHECK_SQL}'s answer at the start of a transaction
    by the client whose sentinel is C{tag}, begun at C{began} (epoch
    seconds); C{None} if nothing.
    """
    _, xid, startedAt, applicationName, sentinel, prepared, temporary = row[:7]
    if xid is not None:
        return f"backend handed out inside a transaction (xid {xid} already assigned)"
    if startedAt < began - CLOCK_SLACK:
        return (
            f"backend handed out inside a transaction begun {began - startedAt:.3f}s "
            "before the client's BEGIN"
        )
    if applicationName != f"soak-{tag}":
        return f"application_name is {applicationName!r}, the client's is 'soak-{tag}'"
    expected = (None, "") if pipeline == "transaction" else (tag,)
    if sentinel not in expected:
        return f"soak.client is {sentinel!r}, expected one of {expected!r}"
    for found, prefix in ((prepared, "soak_"), (temporary, "soak_tmp_")):
        for name in (found or "").split(","):
            if name and name != f"{prefix}{tag}":
                return f"sees another client's {name!r}"
    return None


# -- the record -------------------------------------------------------------


@dataclass
class Breach:
    """
    One broken invariant: when (seconds into the load), by whom, on which
    backend, and what.
    """

    at: float
    client: str
    backend: int | None
    what: str

    def describe(self, seed: int) -> str:
        """
        One line with what it takes to replay it.
        """
        backend = "-" if self.backend is None else str(self.backend)
        return f"seed={seed} t={self.at:.2f}s client={self.client} backend={backend}: {self.what}"


@dataclass
class Recorder:
    """
    Everything the run saw, shared by every client thread (under L{lock}).
    """

    seed: int
    #: The clock, and the sleep between two looks at the fault windows
    #: (replaced in tests).
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    transactions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    windows: list[tuple[float, float, str]] = field(default_factory=list)
    committed: dict[str, set[tuple[str, int]]] = field(default_factory=dict)
    #: The server (PostgreSQL's port) each committed row was committed on.
    committedOn: dict[tuple[str, str, int], int] = field(default_factory=dict)
    neverCommitted: dict[str, set[tuple[str, int]]] = field(default_factory=dict)
    inFlight: dict[str, tuple[float, str]] = field(default_factory=dict)
    hung: set[str] = field(default_factory=set)
    breaches: list[Breach] = field(default_factory=list)
    #: The first error of each SQLSTATE, as "t=..s client: message".
    examples: dict[str, str] = field(default_factory=dict)
    #: pgtwist's RSS in KiB, sampled during the load: (seconds, KiB).
    rssSamples: list[tuple[float, int]] = field(default_factory=list)

    def now(self) -> float:
        """
        Seconds since the load started.
        """
        return self.clock() - self.started

    def breach(self, client: str, backend: int | None, what: str) -> None:
        """
        Record a broken invariant.
        """
        with self.lock:
            self.breaches.append(Breach(self.now(), client, backend, what))

    def begin(self, client: str, what: str) -> float:
        """
        Note that C{client} started an operation; return the time.
        """
        now = self.now()
        with self.lock:
            self.inFlight[client] = (now, what)
        return now

    def end(self, client: str) -> None:
        """
        Note that C{client}'s operation is over.
        """
        with self.lock:
            self.inFlight.pop(client, None)

    def transaction(self, pipeline: str) -> None:
        """
        Count one successful transaction.
        """
        with self.lock:
            self.transactions[pipeline] += 1

    def commit(
        self, database: str, rows: Sequence[tuple[str, int]], server: int | None = None
    ) -> None:
        """
        Rows a client saw committed, on C{server} (PostgreSQL's port).
        """
        with self.lock:
            self.committed.setdefault(database, set()).update(rows)
            if server is not None:
                for client, seq in rows:
                    self.committedOn[(database, client, seq)] = server

    def uncommitted(self, database: str, rows: Sequence[tuple[str, int]]) -> None:
        """
        Rows of a transaction that never sent COMMIT: they must not be there.
        """
        with self.lock:
            self.neverCommitted.setdefault(database, set()).update(rows)

    @contextmanager
    def fault(self, kind: str, extra: float = 0.0) -> Iterator[None]:
        """
        Record a fault's window around the block (plus C{extra} seconds).
        """
        start = self.now()
        with self.lock:
            self.faults[kind] += 1
            # Open until the fault is over: errors during it are around it.
            index = len(self.windows)
            self.windows.append((start, float("inf"), kind))
        try:
            yield
        finally:
            with self.lock:
                self.windows[index] = (start, self.now() + extra, kind)

    def nearFault(self, start: float, end: float) -> bool:
        """
        Whether an operation from C{start} to C{end} overlaps a fault,
        including one still going on.
        """
        with self.lock:
            windows = list(self.windows)
        for faultStart, faultEnd, _ in windows:
            if start <= faultEnd + AFTER_FAULT and end >= faultStart - BEFORE_FAULT:
                return True
        return False

    def error(
        self, client: str, backend: int | None, sqlstate: str, text: str, start: float
    ) -> None:
        """
        Record an error a client met in an operation begun at C{start}; a
        breach unless it is allowed and around a fault.
        """
        detail = f"{sqlstate} {text.strip().splitlines()[0] if text.strip() else ''}"
        with self.lock:
            self.errors[sqlstate] += 1
            self.examples.setdefault(sqlstate, f"t={self.now():.2f}s {client}: {detail}")
        if not allowedError(sqlstate):
            self.breach(client, backend, f"undocumented error {detail}")
        elif not self.nearFault(start, self.now()):
            # A client may see a fault a moment before the injector
            # records it: look again.
            self.sleep(0.2)
            if not self.nearFault(start, self.now()):
                self.breach(client, backend, f"error away from any fault: {detail}")

    def watch(self) -> None:
        """
        Mark the operations older than L{HUNG_AFTER} as hung (once each).
        """
        now = self.now()
        with self.lock:
            late = [
                (client, began, what)
                for client, (began, what) in self.inFlight.items()
                if now - began > HUNG_AFTER and f"{client}@{began:.2f}" not in self.hung
            ]
        for client, began, what in late:
            with self.lock:
                self.hung.add(f"{client}@{began:.2f}")
            self.breach(client, None, f"hung: {what} started at t={began:.2f}s still waits")


# -- the clients ------------------------------------------------------------


@dataclass
class Server:
    """
    One PostgreSQL server pgtwist knows (its section C{name}), and the
    fault proxy pgtwist reaches it through.
    """

    name: str
    cluster: PostgresCluster
    proxy: FaultProxy


def adminConnect(cluster: PostgresCluster, database: str = "postgres") -> psycopg.Connection[Any]:
    """
    An autocommit superuser connection straight to C{cluster} (its unix
    socket), around pgtwist and the proxy.
    """
    return psycopg.connect(
        host=cluster.socketDir, port=cluster.port, user=cluster.superuser,
        dbname=database, autocommit=True, connect_timeout=30,
    )  # fmt: skip


@dataclass
class Target:
    """
    Where clients connect: pgtwist's port; and PostgreSQL's for the checks
    (the server in use: the standby once failed over).
    """

    port: int
    cluster: PostgresCluster

    def psycopgConnect(self, database: str, tag: str, protocol: str) -> psycopg.Connection[Any]:
        """
        A psycopg connection through pgtwist, speaking C{protocol}
        (C{simple}, C{extended} or C{prepared}), named C{soak-<tag>}.
        """
        extra: dict[str, Any] = {}
        if protocol == "simple":
            extra["cursor_factory"] = psycopg.ClientCursor
        conn = psycopg.connect(
            host="127.0.0.1", port=self.port, user=USER, dbname=database, sslmode="disable",
            application_name=f"soak-{tag}", connect_timeout=int(HUNG_AFTER), **extra,
        )  # fmt: skip
        conn.prepare_threshold = 0 if protocol == "prepared" else None
        return conn

    def admin(self, database: str = "postgres") -> psycopg.Connection[Any]:
        """
        An autocommit superuser connection straight to the PostgreSQL in
        use (its unix socket), around pgtwist and the proxy.
        """
        return adminConnect(self.cluster, database)


@dataclass
class Context:
    """
    What every client and the fault injector share.
    """

    target: Target
    recorder: Recorder
    seed: int
    stopping: threading.Event = field(default_factory=threading.Event)
    victims: int = 0
    #: Every server, in failover order, and the index of the one in use.
    servers: list[Server] = field(default_factory=list)
    current: int = 0

    @property
    def server(self) -> Server:
        """
        The server pgtwist uses now: where the faults strike.
        """
        return self.servers[self.current]


def onNotice(context: Context, client: str) -> Callable[[psycopg.errors.Diagnostic], None]:
    """
    A notice handler that makes a C{25001} warning (BEGIN inside a
    transaction: the backend was handed out inside one) a breach.
    """

    def handler(diagnostic: psycopg.errors.Diagnostic) -> None:
        """
        Check one notice.
        """
        if diagnostic.sqlstate == "25001":
            context.recorder.breach(
                client,
                None,
                f"backend handed out inside a transaction: {diagnostic.message_primary}",
            )

    return handler


def psycopgClient(
    context: Context, client: str, database: str, protocol: str, perTransaction: bool
) -> None:
    """
    One psycopg client: transactions of random kinds until the run stops,
    its connection kept (or one per transaction), reconnecting after an
    error.
    """
    recorder = context.recorder
    pipeline = DATABASES[database]
    rng = random.Random(f"{context.seed}:{client}")
    conn: psycopg.Connection[Any] | None = None
    generation = 0
    sequence = 0
    tag = client
    kinds = ["short"] * 6 + ["long", "copy-in", "copy-out", "pipeline"]
    rows: list[tuple[str, int]] = []

    def nextRow() -> tuple[str, int]:
        """
        The next ledger row of this client, noted in the transaction's rows.
        """
        nonlocal sequence
        sequence += 1
        rows.append((client, sequence))
        return (client, sequence)

    while not context.stopping.is_set():
        backend: int | None = None
        started = recorder.begin(client, "connect" if conn is None else "transaction")
        rows.clear()
        committing = False
        try:
            if conn is None:
                generation += 1
                tag = f"{client}_g{generation}"
                conn = context.target.psycopgConnect(database, tag, protocol)
                conn.add_notice_handler(onNotice(context, client))
                if pipeline != "transaction":
                    conn.execute(f"SET soak.client = '{tag}'")
                    if rng.random() < 0.5:
                        conn.execute(f"PREPARE soak_{tag} AS SELECT 1")
                        conn.execute(f"CREATE TEMP TABLE soak_tmp_{tag} (x int)")
                    conn.commit()
                recorder.begin(client, "transaction")
            kind = rng.choice(kinds)
            began = time.time()
            cur = conn.cursor()
            row = cur.execute(CHECK_SQL).fetchone()
            assert row is not None
            backend, server = row[0], row[7]
            problem = checkState(row, tag, pipeline, began)
            if problem is not None:
                recorder.breach(client, backend, problem)
            if pipeline == "transaction":
                local = cur.execute("SELECT set_config('soak.client', %s, true)", (tag,))
                assert local.fetchone() == (tag,)
            insert = "INSERT INTO ledger (client, seq, kind) VALUES (%s, %s, %s)"

            if kind == "short":
                cur.execute(insert, (*nextRow(), kind))
            elif kind == "long":
                cur.execute(insert, (*nextRow(), kind))
                time.sleep(rng.uniform(0.3, 1.5))
                cur.execute(insert, (*nextRow(), kind))
            elif kind == "copy-in":
                with cur.copy("COPY ledger (client, seq, kind) FROM STDIN") as copy:
                    for _ in range(rng.randint(5, 50)):
                        copy.write_row((*nextRow(), kind))
            elif kind == "copy-out":
                received = 0
                with cur.copy(
                    f"COPY (SELECT g FROM generate_series(1, {COPY_OUT_ROWS}) g) TO STDOUT"
                ) as copy:
                    for _ in copy.rows():
                        received += 1
                if received != COPY_OUT_ROWS:
                    recorder.breach(client, backend, f"COPY out gave {received} rows")
                cur.execute(insert, (*nextRow(), kind))
            else:
                with conn.pipeline():
                    for _ in range(3):
                        cur.execute(insert, (*nextRow(), kind))
                    check = cur.execute("SELECT current_setting('application_name')")
                if check.fetchone() != (f"soak-{tag}",):
                    recorder.breach(client, backend, "pipeline saw another application_name")
            committing = True
            conn.commit()
            recorder.commit(database, rows, server)
            recorder.transaction(pipeline)
        except psycopg.Error as e:
            if not committing and rows:
                recorder.uncommitted(database, rows)
            recorder.error(client, backend, sqlstateOf(e), str(e), started)
            if conn is not None:
                conn.close()
            conn = None
        finally:
            recorder.end(client)
        if perTransaction and conn is not None:
            conn.close()
            conn = None
        context.stopping.wait(rng.uniform(0.01, 0.15))
    if conn is not None:
        conn.close()


async def asyncpgClient(context: Context, client: str, database: str) -> None:
    """
    One asyncpg client (prepared statements over the extended protocol),
    as L{psycopgClient} with short transactions.
    """
    recorder = context.recorder
    pipeline = DATABASES[database]
    rng = random.Random(f"{context.seed}:{client}")
    conn: Any = None
    generation = 0
    sequence = 0
    tag = client
    while not context.stopping.is_set():
        backend: int | None = None
        started = recorder.begin(client, "connect" if conn is None else "transaction")
        rows: list[tuple[str, int]] = []
        committing = False
        try:
            if conn is None:
                generation += 1
                tag = f"{client}_g{generation}"
                conn = await asyncpg.connect(
                    host="127.0.0.1", port=context.target.port, user=USER, database=database,
                    ssl=False, timeout=HUNG_AFTER,
                    server_settings={"application_name": f"soak-{tag}"},
                )  # fmt: skip
                if pipeline != "transaction":
                    await conn.execute(f"SET soak.client = '{tag}'")
                recorder.begin(client, "transaction")
            transaction = conn.transaction()
            began = time.time()
            await transaction.start()
            row = await conn.fetchrow(CHECK_SQL)
            backend, server = row[0], row[7]
            problem = checkState(tuple(row), tag, pipeline, began)
            if problem is not None:
                recorder.breach(client, backend, problem)
            if pipeline == "transaction":
                await conn.execute("SELECT set_config('soak.client', $1, true)", tag)
            for _ in range(rng.randint(1, 3)):
                sequence += 1
                rows.append((client, sequence))
                await conn.execute(
                    "INSERT INTO ledger (client, seq, kind) VALUES ($1, $2, 'asyncpg')",
                    client, sequence,
                )  # fmt: skip
            committing = True
            await transaction.commit()
            recorder.commit(database, rows, server)
            recorder.transaction(pipeline)
        except Exception as e:
            if not committing and rows:
                recorder.uncommitted(database, rows)
            recorder.error(client, backend, sqlstateOf(e), str(e), started)
            if conn is not None:
                conn.terminate()
            conn = None
        finally:
            recorder.end(client)
        await asyncio.sleep(rng.uniform(0.01, 0.15))
    if conn is not None:
        conn.terminate()


async def slowReader(context: Context, client: str, database: str) -> None:
    """
    A client that asks for a large answer and stops reading for a while
    (its socket buffers fill, pgtwist must hold the backend's output back),
    then reads it all and checks that every row arrived.
    """
    recorder = context.recorder
    rng = random.Random(f"{context.seed}:{client}")
    sql = f"SELECT repeat('x', 200) FROM generate_series(1, {SLOW_ROWS})"
    while not context.stopping.is_set():
        started = recorder.begin(client, "slow read")
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await login("127.0.0.1", context.target.port, USER, "", database)
            writer.write(codec.encode(Query(sql)))
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            framer = MessageFramer()
            rows = 0
            failure: str | None = None
            done = False
            while not done:
                data = await reader.read(65536)
                if not data:
                    raise LoginError("the server closed the connection during a query")
                for frame in framer.feed(data):
                    if frame.type == constants.DATA_ROW:
                        rows += 1
                    elif frame.type == constants.ERROR_RESPONSE:
                        error = codec.decodeBackend(constants.ERROR_RESPONSE, frame.body)
                        failure = getattr(error, "code", "XX000")
                    elif frame.type == constants.READY_FOR_QUERY:
                        done = True
            if failure is not None:
                recorder.error(client, None, failure, "slow reader's query failed", started)
            elif rows != SLOW_ROWS:
                recorder.breach(client, None, f"slow reader got {rows} of {SLOW_ROWS} rows")
            else:
                recorder.transaction(DATABASES[database])
        except ProtocolViolation as e:
            recorder.breach(client, None, f"pgtwist's answer does not frame: {e}")
        except Exception as e:
            recorder.error(client, None, sqlstateOf(e), str(e), started)
        finally:
            recorder.end(client)
            if writer is not None:
                await _close(writer)
        await asyncio.sleep(rng.uniform(0.5, 2.0))


def pgbenchClient(context: Context, client: str, database: str, pgbench: str) -> None:
    """
    pgbench in bursts of a few seconds (two clients, a read-only script),
    the protocol changing each burst; its transactions are counted, and a
    run that aborted clients is an error that must come around a fault.
    """
    recorder = context.recorder
    modes = ("simple", "extended", "prepared")
    script = os.path.join(tempfile.mkdtemp(prefix="pgtwist-soak-pgbench-"), "select.sql")
    with open(script, "w") as f:
        f.write("\\set n random(1, 1000)\nSELECT :n, current_setting('application_name');\n")
    burst = 0
    while not context.stopping.is_set():
        mode = modes[burst % len(modes)]
        burst += 1
        started = recorder.begin(client, f"pgbench -M {mode}")
        try:
            result = subprocess.run(
                [pgbench, "-n", "-h", "127.0.0.1", "-p", str(context.target.port), "-U", USER,
                 "-c", "2", "-j", "1", "-T", "2", "-R", "200", "-M", mode, "-f", script, database],
                capture_output=True, text=True, timeout=HUNG_AFTER + 10,
                env=dict(os.environ, PGAPPNAME=f"soak-{client}", PGCONNECT_TIMEOUT="30"),
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            recorder.breach(client, None, "pgbench did not finish")
            continue
        finally:
            recorder.end(client)
        match = re.search(r"number of transactions actually processed: (\d+)", result.stdout)
        if match:
            with recorder.lock:
                recorder.transactions[DATABASES[database]] += int(match.group(1))
        if result.returncode != 0:
            recorder.error(client, None, "pgbench-abort", result.stderr[-300:], started)
        context.stopping.wait(0.5)
    shutil.rmtree(os.path.dirname(script), ignore_errors=True)


# -- the faults -------------------------------------------------------------


def abortSocket(conn: psycopg.Connection[Any]) -> None:
    """
    Cut C{conn}'s connection as a killed process's would end: both ways
    at once, whatever the driver was in the middle of.
    """
    duplicate = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        duplicate.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        duplicate.close()


def killClient(context: Context, kind: str, rng: random.Random) -> None:
    """
    A client through pgtwist that writes ledger rows, then dies in the
    middle of a transaction, a COPY or a pipeline. Its rows must never be
    committed.
    """
    database = rng.choice(sorted(DATABASES))
    context.victims += 1
    client = f"victim{context.victims}"
    rows = [(client, n) for n in range(1, 4)]
    context.recorder.uncommitted(database, rows)
    try:
        conn = context.target.psycopgConnect(database, client, "extended")
    except psycopg.Error:
        return
    insert = "INSERT INTO ledger (client, seq, kind) VALUES (%s, %s, 'victim')"
    try:
        cur = conn.cursor()
        if kind == "kill-mid-transaction":
            for row in rows:
                cur.execute(insert, row)
            abortSocket(conn)
        elif kind == "kill-mid-copy":
            with cur.copy("COPY ledger (client, seq, kind) FROM STDIN") as copy:
                for client_, seq in rows:
                    # More than psycopg buffers (32 KiB), so that rows reach pgtwist.
                    copy.write_row((client_, seq, "victim" + "x" * 20000))
                abortSocket(conn)
                raise ConnectionAbortedError
        else:
            with conn.pipeline():
                for row in rows:
                    cur.execute(insert, row)
                time.sleep(0.05)
                abortSocket(conn)
                raise ConnectionAbortedError
    except (psycopg.Error, ConnectionAbortedError, OSError):
        pass
    finally:
        try:
            conn.close()
        except psycopg.Error:
            pass


@dataclass
class Pgtwist:
    """
    The pgtwist process under test, its files and its limits.
    """

    directory: str
    port: int
    proxyPort: int
    #: The standby's proxy, the second server section (none without one).
    standbyPort: int | None = None
    process: subprocess.Popen[bytes] | None = None
    limits: int = 0
    output: IO[bytes] | None = None

    @property
    def logPath(self) -> str:
        """
        Where it logs.
        """
        return os.path.join(self.directory, "pgtwist.log")

    def writeConfiguration(self) -> None:
        """
        Write the main, HBA, users and databases files for the current
        L{limits}.
        """
        from pgtwist.config.vault import writeMasterKey, writeUsersFile

        limits = LIMITS[self.limits]
        main = (
            "[pgtwist]\n"
            f"host = 127.0.0.1\nport = {self.port}\n"
            f"log_type = file\nlog_path = {self.logPath}\nlog_level = info\n"
            f"max_connections = {limits['max_connections']}\n"
            f"blocking_timeout = {BLOCKING_TIMEOUT}\n"
            "max_client_conn = 1000\n"
            f"unix_socket_dir = {self.directory}\n"
            "\n[primary]\n"
            f"host = 127.0.0.1\nport = {self.proxyPort}\nprimary = on\n"
        )
        if self.standbyPort is not None:
            main += f"\n[standby]\nhost = 127.0.0.1\nport = {self.standbyPort}\n"
        databases = "".join(
            f"{name} {USER} {limits[name]} 0 0 {pipeline}\n" for name, pipeline in DATABASES.items()
        )
        for name, text in (
            ("pgtwist.conf", main),
            ("pgtwist_hba.conf", "local all all trust\nhost all all 127.0.0.1/32 trust\n"),
            ("pgtwist_databases.conf", databases),
        ):
            path = os.path.join(self.directory, name)
            with open(path + ".new", "w") as f:
                f.write(text)
            os.replace(path + ".new", path)
        keyPath = os.path.join(self.directory, ".pgtwist", "master.key")
        if not os.path.exists(keyPath):
            writeMasterKey(b"soak-master-key", keyPath)
            writeUsersFile(
                os.path.join(self.directory, "pgtwist_users.conf"), {}, masterKey=b"soak-master-key"
            )

    def start(self) -> None:
        """
        Start pgtwist in the foreground and wait until it listens.
        """
        self.writeConfiguration()
        files = [os.path.join(self.directory, name) for name in (
            "pgtwist.conf", "pgtwist_hba.conf", "pgtwist_users.conf", "pgtwist_databases.conf")]  # fmt: skip
        self.output = open(os.path.join(self.directory, "stdout.txt"), "wb")
        self.process = subprocess.Popen(
            [*pgtwistCommand(), "-c", files[0], "-a", files[1], "-u", files[2], "-l", files[3]],
            env=dict(os.environ, HOME=self.directory), stdout=self.output,
            stderr=subprocess.STDOUT, cwd=self.directory,
        )  # fmt: skip
        waitForPort(self.port, self.process, 60)

    def switchTo(self, server: str) -> None:
        """
        Make C{server} the primary with the console's C{SWITCH_TO}, as an
        operator or a failover manager would: over the unix socket, as
        pgtwist's own OS user (an admin without an admins file).
        """
        with psycopg.connect(
            host=self.directory, port=self.port, user=pwd.getpwuid(os.getuid()).pw_name,
            dbname="pgbouncer", autocommit=True, connect_timeout=30,
        ) as console:  # fmt: skip
            console.execute(f"SWITCH_TO {server}")

    def reload(self) -> None:
        """
        Switch to the other L{LIMITS} and send SIGHUP.
        """
        assert self.process is not None
        self.limits = (self.limits + 1) % len(LIMITS)
        self.writeConfiguration()
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """
        SIGTERM, SIGKILL after 15 s.
        """
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.output is not None:
            self.output.close()
            self.output = None

    def rssKiB(self) -> int:
        """
        Its resident memory.
        """
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/status") as f:
            return parseVmRssKiB(f.read()) or 0

    def descriptors(self) -> list[str]:
        """
        What its open file descriptors are (C{socket:[...]}, C{pipe:[...]},
        paths), one entry each.
        """
        assert self.process is not None
        directory = f"/proc/{self.process.pid}/fd"
        targets = []
        for name in os.listdir(directory):
            try:
                targets.append(os.readlink(os.path.join(directory, name)))
            except OSError:
                pass
        return targets

    def steadyDescriptors(self, timeout: float = 10.0) -> list[str]:
        """
        L{descriptors} once their number has not changed for a second
        (pgtwist opens a few after it starts listening).
        """
        deadline = time.monotonic() + timeout
        previous = self.descriptors()
        while time.monotonic() < deadline:
            time.sleep(1.0)
            current = self.descriptors()
            if len(current) == len(previous):
                return current
            previous = current
        return previous

    def tracebacks(self) -> list[str]:
        """
        The log lines that start a traceback or an unhandled error.
        """
        try:
            with open(self.logPath, errors="replace") as f:
                text = f.read()
        except OSError:
            return []
        return [line for line in text.splitlines() if "Traceback" in line or "Unhandled" in line]


def injectFault(context: Context, kind: str, rng: random.Random, pgtwist: Pgtwist) -> None:
    """
    Inject one fault of C{kind} on the server in use, recording its window.
    """
    recorder = context.recorder
    cluster = context.server.cluster
    proxy = context.server.proxy
    if kind == "terminate":
        with recorder.fault(kind):
            with context.target.admin() as admin:
                pids = [
                    pid
                    for (pid,) in admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE usename = %s ORDER BY pid", (USER,)
                    )
                ]
                for pid in rng.sample(pids, min(len(pids), rng.randint(1, 3))):
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    elif kind in ("restart-fast", "restart-immediate"):
        with recorder.fault(kind):
            cluster.restart(downFor=rng.uniform(0.2, 1.0), mode=kind.split("-")[1])
    elif kind == "reload":
        with recorder.fault(kind, extra=1.0):
            pgtwist.reload()
    elif kind.startswith("kill-"):
        with recorder.fault(kind):
            killClient(context, kind, rng)
    elif kind == "net-latency":
        with recorder.fault(kind):
            proxy.latency(rng.uniform(0.005, 0.05))
            time.sleep(rng.uniform(1.0, 3.0))
            proxy.latency(0)
    elif kind == "net-stall":
        with recorder.fault(kind):
            seconds = rng.uniform(1.0, MAX_STALL)
            proxy.stall(seconds)
            time.sleep(seconds)
    elif kind == "net-reset":
        with recorder.fault(kind):
            proxy.reset()
    elif kind == FAILOVER:
        if context.current + 1 >= len(context.servers):
            return
        with recorder.fault(kind, extra=2.0):
            proxy.cut()
            # The time an operator or a failover manager takes to decide.
            time.sleep(rng.uniform(0.5, 2.0))
            new = context.servers[context.current + 1]
            pgtwist.switchTo(new.name)
            context.current += 1
            context.target.cluster = new.cluster
    else:
        raise ValueError(f"unknown fault {kind!r}")


# -- the run ------------------------------------------------------------------


@dataclass
class Outcome:
    """
    The figures of the final table.
    """

    lost: int = 0
    phantoms: int = 0
    leakedDescriptors: int = 0
    rssWarm: int = 0
    rssAfter: int = 0
    fdsBefore: int = 0
    fdsAfter: int = 0
    tracebacks: int = 0
    #: How many committed rows each server got, by section name.
    committedOn: Counter[str] = field(default_factory=Counter)
    #: Seconds spent setting up, under load (until every client stopped)
    #: and checking afterwards.
    phases: dict[str, float] = field(default_factory=dict)


def setUpCluster(cluster: PostgresCluster) -> None:
    """
    The role, the databases and their ledger tables; trust over loopback;
    C{synchronous_commit} on, so that an immediate restart loses nothing
    a client saw committed (the embedded cluster turns it off for speed).
    """
    cluster.psql(f"CREATE ROLE {USER} LOGIN;")
    cluster.setHba(["local all all trust", "host all all 127.0.0.1/32 trust"])
    for name in DATABASES:
        cluster.createDatabase(name, owner=USER)
        cluster.psql(
            "CREATE TABLE ledger (client text, seq int, kind text, PRIMARY KEY (client, seq));",
            user=USER,
            database=name,
        )
    cluster.psql("ALTER SYSTEM SET synchronous_commit = on;")
    cluster.psql("SELECT pg_reload_conf();")


def checkLedgers(context: Context, outcome: Outcome) -> None:
    """
    Compare every client's ledger with the tables of every server: a row a
    client saw committed must be on the server it was committed on (before
    the failover the old primary, after it the new one), and no row of a
    transaction never committed may be on any.
    """
    recorder = context.recorder
    names = {server.cluster.port: server.name for server in context.servers}
    outcome.committedOn = Counter(names.get(port, "?") for port in recorder.committedOn.values())
    for database in DATABASES:
        present: dict[int, set[tuple[str, int]]] = {}
        for server in context.servers:
            with adminConnect(server.cluster, database) as conn:
                present[server.cluster.port] = {
                    (client, seq) for client, seq in conn.execute("SELECT client, seq FROM ledger")
                }
        anywhere = set().union(*present.values())
        lost = sorted(
            row
            for row in recorder.committed.get(database, set())
            if row not in present.get(recorder.committedOn.get((database, *row), -1), anywhere)
        )
        phantoms = sorted(recorder.neverCommitted.get(database, set()) & anywhere)
        outcome.lost += len(lost)
        outcome.phantoms += len(phantoms)
        if lost:
            port = recorder.committedOn.get((database, *lost[0]))
            recorder.breach(
                lost[0][0], None,
                f"{len(lost)} committed rows missing in {database}, first {lost[0]}"
                f" (committed on {names.get(port, 'an unknown server') if port else 'an unknown server'})",
            )  # fmt: skip
        if phantoms:
            recorder.breach(
                phantoms[0][0], None,
                f"{len(phantoms)} rows of transactions never committed are in {database}, first {phantoms[0]}",
            )  # fmt: skip


def descriptorKind(target: str) -> str:
    """
    What a descriptor is, without its inode: C{socket}, C{pipe}, a path.
    """
    return re.sub(r":\[\d+\]$", "", target)


def settle(context: Context, pgtwist: Pgtwist, outcome: Outcome, before: list[str]) -> None:
    """
    After the load: close every backend pgtwist holds (through
    PostgreSQL), then wait for its descriptors to come back to their level
    before the load, and measure its memory.
    """
    deadline = time.monotonic() + 30
    after: list[str] = []
    carried = 0
    while time.monotonic() < deadline:
        for server in context.servers:
            with adminConnect(server.cluster) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (USER,),
                )
        time.sleep(0.5)
        after = pgtwist.descriptors()
        outcome.fdsAfter = len(after)
        carried = sum(server.proxy.connections for server in context.servers)
        if carried == 0 and outcome.fdsAfter <= outcome.fdsBefore:
            break
    outcome.rssAfter = pgtwist.rssKiB()
    outcome.leakedDescriptors = max(0, outcome.fdsAfter - outcome.fdsBefore)
    if outcome.leakedDescriptors:
        context.recorder.breach(
            "pgtwist", None,
            f"{outcome.leakedDescriptors} descriptors leaked ({outcome.fdsBefore} before, "
            f"{outcome.fdsAfter} after, {carried} backends still open): "
            f"{sorted((Counter(map(descriptorKind, after)) - Counter(map(descriptorKind, before))).elements())}",
        )  # fmt: skip
    if outcome.rssAfter > outcome.rssWarm * 1.05:
        context.recorder.breach(
            "pgtwist", None,
            f"RSS grew from {outcome.rssWarm} KiB after warm-up to {outcome.rssAfter} KiB",
        )  # fmt: skip


def report(context: Context, outcome: Outcome, arguments: str) -> str:
    """
    The final table.
    """
    recorder = context.recorder
    lines = [f"pgtwist soak: {arguments}", ""]

    def row(name: str, value: object) -> None:
        """
        One line of the table.
        """
        lines.append(f"  {name:<34} {value}")

    row("transactions", sum(recorder.transactions.values()))
    for pipeline, count in sorted(recorder.transactions.items()):
        row(f"  {pipeline}", count)
    row("faults injected", sum(recorder.faults.values()))
    for kind in (*FAULTS, FAILOVER):
        row(f"  {kind}", recorder.faults.get(kind, 0))
    row("errors, by SQLSTATE", sum(recorder.errors.values()))
    for state, count in sorted(recorder.errors.items()):
        row(f"  {state}", count)
    row(
        "committed rows, by server",
        " / ".join(f"{name} {outcome.committedOn.get(name, 0)}" for name in SERVERS),
    )
    row("lost commits", outcome.lost)
    row("uncommitted rows found", outcome.phantoms)
    row("leaked descriptors", outcome.leakedDescriptors)
    row("hung clients", len(recorder.hung))
    row("tracebacks in pgtwist's log", outcome.tracebacks)
    row("RSS after warm-up / after (KiB)", f"{outcome.rssWarm} / {outcome.rssAfter}")
    row("descriptors before / after", f"{outcome.fdsBefore} / {outcome.fdsAfter}")
    row("invariant breaches", len(recorder.breaches))
    samples = recorder.rssSamples
    if samples:
        step = max(1, len(samples) // 10)
        row("RSS during the load (KiB)", " ".join(str(kib) for _, kib in samples[::step]))
    row(
        "seconds: setup / load / checks",
        " / ".join(f"{outcome.phases.get(k, 0):.1f}" for k in ("setup", "load", "checks")),
    )
    if recorder.examples:
        lines += ["", "  the first error of each SQLSTATE:"]
        lines += [f"    {recorder.examples[state][:150]}" for state in sorted(recorder.examples)]
    return "\n".join(lines)


def run(minutes: float, seed: int, faultInterval: float | None = None) -> int:
    """
    Run the soak; print the table; return the exit status (1 when any
    invariant broke, naming the first breach).
    """
    duration = minutes * 60
    warmUp = max(8.0, duration * 0.03)
    coolDown = max(8.0, duration * 0.02)
    # Short runs pack the faults to fit every kind; long ones leave quiet
    # time between them, where any error is a breach.
    interval = faultInterval if faultInterval is not None else (4.0 if duration <= 120 else 8.0)
    arguments = f"--minutes {minutes:g} --seed {seed}"
    directory = tempfile.mkdtemp(prefix="pgtwist-soak-")
    clusters = [PostgresCluster() for _ in SERVERS]
    servers: list[Server] = []
    pgtwist: Pgtwist | None = None
    try:
        setupStarted = time.monotonic()
        for name, cluster in zip(SERVERS, clusters):
            cluster.start()
            setUpCluster(cluster)
            servers.append(Server(name, cluster, FaultProxy(cluster.host, cluster.port).start()))
        cluster = clusters[0]
        pgtwist = Pgtwist(directory, pickLowPort(), servers[0].proxy.port, servers[1].proxy.port)
        pgtwist.start()
        recorder = Recorder(seed)
        outcomePhases = {"setup": recorder.started - setupStarted}
        context = Context(Target(pgtwist.port, cluster), recorder, seed, servers=servers)
        before = pgtwist.steadyDescriptors()
        outcome = Outcome(fdsBefore=len(before))
        threads = startLoad(context, cluster)
        schedule = withFailover(faultSchedule(seed, warmUp, duration - coolDown, interval))
        rng = random.Random(seed + 1)
        watchdog = threading.Thread(target=watch, args=(context,), daemon=True)
        watchdog.start()
        warmMeasured = False
        for at, kind in schedule:
            while recorder.now() < at:
                time.sleep(min(0.2, at - recorder.now()))
            if not warmMeasured:
                outcome.rssWarm = pgtwist.rssKiB()
                warmMeasured = True
            recorder.rssSamples.append((recorder.now(), pgtwist.rssKiB()))
            print(f"t={recorder.now():7.2f}s fault {kind}", flush=True)
            injectFault(context, kind, rng, pgtwist)
        while recorder.now() < duration:
            time.sleep(0.2)
        if not warmMeasured:
            outcome.rssWarm = pgtwist.rssKiB()
        context.stopping.set()
        for thread in threads:
            thread.join(HUNG_AFTER)
        outcomePhases["load"] = recorder.now()
        recorder.watch()
        if pgtwist.process is None or pgtwist.process.poll() is not None:
            recorder.breach("pgtwist", None, "pgtwist exited during the run")
        else:
            settle(context, pgtwist, outcome, before)
        checkLedgers(context, outcome)
        tracebacks = pgtwist.tracebacks()
        outcome.tracebacks = len(tracebacks)
        if tracebacks:
            recorder.breach("pgtwist", None, f"traceback in its log: {tracebacks[0]}")
        outcome.phases = dict(outcomePhases, checks=recorder.now() - outcomePhases["load"])
        print(report(context, outcome, arguments))
        if recorder.breaches:
            first = sorted(recorder.breaches, key=lambda b: b.at)[0]
            print(f"\nFAILED: first breach: {first.describe(seed)}")
            for breach in sorted(recorder.breaches, key=lambda b: b.at)[1:10]:
                print(f"  then: {breach.describe(seed)}")
            print(f"  pgtwist's log: {pgtwist.logPath} (kept)")
            return 1
        print("\nOK: every invariant held")
        shutil.rmtree(directory, ignore_errors=True)
        return 0
    finally:
        if pgtwist is not None:
            pgtwist.stop()
        for server in servers:
            server.proxy.stop()
        for cluster in clusters:
            cluster.stop()


def watch(context: Context) -> None:
    """
    The watchdog: look for hung operations every second until the end.
    """
    while not context.stopping.wait(1.0):
        context.recorder.watch()


def startLoad(context: Context, cluster: PostgresCluster) -> list[threading.Thread]:
    """
    Start every client: psycopg and pgbench in threads, asyncpg and the
    slow readers on an asyncio loop in a thread of its own.
    """
    threads: list[threading.Thread] = []

    def spawn(target: Callable[..., None], *args: Any) -> None:
        """
        Start one client thread; a client that crashes is a breach.
        """

        def guarded() -> None:
            """
            Run the client, recording a crash.
            """
            try:
                target(context, *args)
            except Exception as e:
                context.recorder.breach(str(args[0]), None, f"client crashed: {e!r}")

        thread = threading.Thread(target=guarded, daemon=True)
        thread.start()
        threads.append(thread)

    for database, short in (("soak_session", "s"), ("soak_tx", "t"), ("soak_perf", "p")):
        for protocol in ("simple", "extended", "prepared"):
            spawn(psycopgClient, f"{short}_{protocol}", database, protocol, False)
        spawn(psycopgClient, f"{short}_pertx", database, "extended", True)
    # Transaction pooling: more clients than backends.
    for n in range(3):
        spawn(psycopgClient, f"t_extra{n}", "soak_tx", ("simple", "extended", "prepared")[n], False)
    if os.path.exists(cluster.pgbench):
        spawn(pgbenchClient, "t_pgbench", "soak_tx", cluster.pgbench)

    async def asyncClients() -> None:
        """
        The asyncpg clients and the slow readers; one that crashes is a
        breach.
        """
        results = await asyncio.gather(
            asyncpgClient(context, "s_asyncpg", "soak_session"),
            asyncpgClient(context, "p_asyncpg", "soak_perf"),
            *(asyncpgClient(context, f"t_asyncpg{n}", "soak_tx") for n in range(3)),
            slowReader(context, "s_slow", "soak_session"),
            slowReader(context, "t_slow", "soak_tx"),
            slowReader(context, "p_slow", "soak_perf"),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                context.recorder.breach("asyncio", None, f"client crashed: {result!r}")

    thread = threading.Thread(target=asyncio.run, args=(asyncClients(),), daemon=True)
    thread.start()
    threads.append(thread)
    return threads


def main(argv: Sequence[str] | None = None) -> int:
    """
    C{python -m benchmarks.soak --minutes N --seed S}.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument(
        "--seed", type=int, default=None, help="the fault schedule's seed (default: random)"
    )
    parser.add_argument("--fault-interval", type=float, default=None, help="seconds between faults")
    options = parser.parse_args(argv)
    seed = options.seed if options.seed is not None else random.randrange(1_000_000)
    return run(options.minutes, seed, options.fault_interval)


if __name__ == "__main__":
    sys.exit(main())
