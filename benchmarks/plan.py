# -*- test-case-name: tests.unit.test_bench -*-
"""
What a benchmark run measures: the workloads, the targets each workload runs
against, the pool sizes and pgbench arguments, and the interleaved order.

Everything here is pure data and arithmetic, so that the schedule can be
tested without running anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

#: The pool size of the issue's matrix (PgBouncer C{default_pool_size},
#: pgtwist C{max_connections}).
POOL_SIZE = 20
#: Cores the harness assumes pgbench may use; C{-j} never exceeds it.
PGBENCH_THREADS = 2

DIRECT = "direct"
PGBOUNCER = "pgbouncer"
PGTWIST = "pgtwist"
#: The relay floor (L{benchmarks.floor}): an empty relay on pgtwist's
#: reactor and eager writes, the least a relay costs on a runtime.
FLOOR = "floor"
SESSION = "session"
TRANSACTION = "transaction"

#: How pgtwist runs in a benchmark: on CPython with its own reactor, on
#: PyPy, or on CPython with Twisted's asyncio reactor on uvloop.
CPYTHON = "cpython"
PYPY = "pypy"
UVLOOP = "uvloop"

#: How the table abbreviates pgbench's C{-M} query modes.
_SHORT_MODES = {"simple": "simple", "extended": "ext", "prepared": "prep"}

#: Workload kinds: which target of the issue each one serves.
SELECT = "select"
TPCB = "tpcb"
CONNECT = "connect"
LATENCY = "latency"


@dataclass(frozen=True)
class Workload:
    """
    One pgbench workload.

    @ivar name: Short name used in the table and the JSON (C{S-simple-c10}).
    @ivar options: pgbench options besides clients, threads and duration.
    @ivar clients: pgbench C{-c}.
    @ivar kind: L{SELECT}, L{TPCB}, L{CONNECT} or L{LATENCY}.
    @ivar pipelines: The pooling modes the poolers run it in.
    @ivar pgbouncerPipelines: The subset PgBouncer can serve (PgBouncer 1.18
        has no prepared statements in transaction mode).
    @ivar workersPipelines: The pipelines in which a multi-worker pgtwist
        also runs it (when C{--workers} is above 1).
    @ivar tls: pgbench connects to the poolers over TLS
        (C{sslmode=require}), and both poolers demand it
        (C{client_tls_sslmode = require}). Direct PostgreSQL is left out
        of such a workload: its plain counterpart (L{plainName}) has it.
    @ivar authQuery: Neither pooler holds the role's password or secret:
        both look it up with C{auth_query} as another role (C{auth_user})
        and log into PostgreSQL by SCRAM pass-through. Direct PostgreSQL is
        left out: its counterpart (L{plainName}) has it.
    """

    name: str
    options: tuple[str, ...]
    clients: int
    kind: str
    pipelines: tuple[str, ...] = (SESSION, TRANSACTION)
    pgbouncerPipelines: tuple[str, ...] = (SESSION, TRANSACTION)
    workersPipelines: tuple[str, ...] = ()
    tls: bool = False
    authQuery: bool = False

    @property
    def variant(self) -> bool:
        """
        Whether this workload varies a plain one (L{tls}, L{authQuery}):
        it then runs only against the poolers.
        """
        return self.tls or self.authQuery

    @property
    def floor(self) -> bool:
        """
        Whether the relay floor runs it: every plain C{-S} workload (a
        variant's plain counterpart has it, as it has direct).
        """
        return "-S" in self.options and not self.variant


#: What a TLS workload's name adds to its plain counterpart's.
TLS_SUFFIX = "-tls"
#: What an auth_query workload's name adds to its plain counterpart's.
AUTH_QUERY_SUFFIX = "-authquery"


def queryMode(workload: Workload) -> str | None:
    """
    The pgbench query mode (C{-M}) of C{workload}: C{simple}, C{extended},
    C{prepared}, or C{None} when it gives none (pgbench's default, simple).
    """
    options = workload.options
    for index, option in enumerate(options[:-1]):
        if option == "-M":
            return options[index + 1]
    return None


def withTLS(workload: Workload) -> Workload:
    """
    The TLS variant of C{workload}: the same pgbench options, clients and
    pipelines, named C{<name>-tls}, without multi-worker runs (the
    comparison it serves is with PgBouncer over TLS, one process each).
    """
    return replace(workload, name=workload.name + TLS_SUFFIX, tls=True, workersPipelines=())


def withAuthQuery(workload: Workload) -> Workload:
    """
    The auth_query variant of C{workload} (L{Workload.authQuery}), named
    C{<name>-authquery}, without multi-worker runs.
    """
    return replace(
        workload, name=workload.name + AUTH_QUERY_SUFFIX, authQuery=True, workersPipelines=()
    )


def plainName(workload: Workload) -> str | None:
    """
    The name of the plain workload a TLS or auth_query workload is compared
    with, or C{None} for a plain workload.
    """
    if workload.tls:
        return workload.name.removesuffix(TLS_SUFFIX)
    if workload.authQuery:
        return workload.name.removesuffix(AUTH_QUERY_SUFFIX)
    return None


@dataclass(frozen=True)
class Target:
    """
    Where pgbench connects: PostgreSQL itself or a pooler in one pipeline.

    @ivar pooler: L{DIRECT}, L{PGBOUNCER}, L{PGTWIST} or L{FLOOR}.
    @ivar pipeline: C{None} for direct and the floor (neither pools), else
        L{SESSION} or L{TRANSACTION}.
    @ivar workers: pgtwist's C{workers} setting (1 for the others).
    @ivar runtime: How pgtwist or the floor runs: L{CPYTHON}, L{PYPY} or
        L{UVLOOP}.
    """

    pooler: str
    pipeline: str | None = None
    workers: int = 1
    runtime: str = CPYTHON

    @property
    def name(self) -> str:
        """
        The label in the table and the JSON: C{direct}, C{pgbouncer/session},
        C{pgtwist/transaction}, C{pgtwist-w2/session}, C{pgtwist-pypy/session},
        C{floor}, C{floor-pypy}.
        """
        pooler = self.pooler if self.runtime == CPYTHON else f"{self.pooler}-{self.runtime}"
        if self.pipeline is None:
            return pooler
        if self.workers != 1:
            pooler += f"-w{self.workers}"
        return f"{pooler}/{self.pipeline}"


def defaultWorkloads() -> list[Workload]:
    """
    The issue's matrix: C{-S} in the three query modes at 10 and 100 clients,
    the TPC-B-like script at 10 clients, C{-C} at 10 clients, and one client
    C{-S} for latency; and the TLS variants (L{withTLS}) of simple C{-S} at
    10 and 100 clients and of C{-C}, each right after its plain workload so
    that the two run close together in every round; and the auth_query
    variant of C{-C} (L{withAuthQuery}) after those.
    """
    workloads: list[Workload] = []
    for mode in ("simple", "extended", "prepared"):
        for clients in (10, 100):
            pgbouncer = (SESSION,) if mode == "prepared" else (SESSION, TRANSACTION)
            workers = (SESSION, TRANSACTION) if mode == "simple" and clients == 100 else ()
            workload = Workload(
                name=f"S-{_SHORT_MODES[mode]}-c{clients}",
                options=("-S", "-M", mode),
                clients=clients,
                kind=SELECT,
                pgbouncerPipelines=pgbouncer,
                workersPipelines=workers,
            )
            workloads.append(workload)
            if mode == "simple":
                workloads.append(withTLS(workload))
    workloads.append(Workload("tpcb-c10", (), 10, TPCB))
    connect = Workload("S-simple-c10-C", ("-S", "-M", "simple", "-C"), 10, CONNECT)
    workloads += [connect, withTLS(connect), withAuthQuery(connect)]
    workloads.append(Workload("S-simple-c1", ("-S", "-M", "simple"), 1, LATENCY))
    return workloads


def targetsFor(
    workload: Workload, workers: int, pypy: bool = False, uvloop: bool = False
) -> list[Target]:
    """
    The targets C{workload} runs against, in the order of one round: direct
    first (not for a TLS or auth_query workload), the relay floor on
    CPython and (with C{pypy}) on PyPy for a C{-S} workload
    (L{Workload.floor}), then per pipeline PgBouncer, pgtwist,
    pgtwist on PyPy (with C{pypy}), pgtwist on uvloop (with C{uvloop}) and
    (when C{workers > 1} and the workload asks for it) pgtwist with
    C{workers}.

    The floor pools nothing, so like direct it runs once per workload and
    round and serves both pipelines.
    """
    targets = [] if workload.variant else [Target(DIRECT)]
    if workload.floor:
        targets.append(Target(FLOOR))
        if pypy:
            targets.append(Target(FLOOR, runtime=PYPY))
    for pipeline in workload.pipelines:
        if pipeline in workload.pgbouncerPipelines:
            targets.append(Target(PGBOUNCER, pipeline))
        targets.append(Target(PGTWIST, pipeline))
        if pypy:
            targets.append(Target(PGTWIST, pipeline, runtime=PYPY))
        if uvloop:
            targets.append(Target(PGTWIST, pipeline, runtime=UVLOOP))
        if workers > 1 and pipeline in workload.workersPipelines:
            targets.append(Target(PGTWIST, pipeline, workers))
    return targets


def rotated(items: Sequence[Target], offset: int) -> list[Target]:
    """
    C{items} rotated left by C{offset}, so that no target always runs first
    (or always right after another) in every round.
    """
    if not items:
        return []
    offset %= len(items)
    return [*items[offset:], *items[:offset]]


@dataclass(frozen=True)
class Step:
    """
    One pgbench run of the schedule.
    """

    round: int
    workload: Workload
    target: Target


def schedule(
    workloads: Sequence[Workload],
    rounds: int,
    workers: int,
    pypy: bool = False,
    uvloop: bool = False,
) -> list[Step]:
    """
    The interleaved order: for each round, for each workload, every target
    back to back (rotated by the round number).
    """
    steps: list[Step] = []
    for round in range(rounds):
        for workload in workloads:
            for target in rotated(targetsFor(workload, workers, pypy, uvloop), round):
                steps.append(Step(round, workload, target))
    return steps


def poolSize(workload: Workload, target: Target, base: int = POOL_SIZE) -> int:
    """
    The backends a pooler may open for a run.

    Transaction pooling shares C{base} backends among all clients. Session
    pooling gives each client a backend for its whole session, so with more
    clients than C{base} the extra clients would wait for ever; there the
    pool is as large as the client count, for PgBouncer and pgtwist alike.

    A pgtwist with C{workers = N} splits C{max_connections} among its
    workers, and the kernel spreads clients over them unevenly; in session
    pooling each worker must be able to hold every client, so the setting
    is N times the pool (the backends opened still never exceed the
    clients). In transaction pooling the N workers share C{base}.
    """
    if target.pipeline == SESSION:
        return max(base, workload.clients) * target.workers
    return base


def threadsFor(clients: int, cores: int = PGBENCH_THREADS) -> int:
    """
    pgbench C{-j}: one thread per core, never more threads than clients.
    """
    return max(1, min(clients, cores))


def pgbenchArguments(
    workload: Workload, duration: int, host: str, port: int, user: str, database: str
) -> list[str]:
    """
    pgbench's arguments after the program name, for one run of C{workload}
    against C{host:port}; C{-n} because the tables were vacuumed at init.
    """
    return [
        *workload.options,
        "-n",
        "-c",
        str(workload.clients),
        "-j",
        str(threadsFor(workload.clients)),
        "-T",
        str(duration),
        "-h",
        host,
        "-p",
        str(port),
        "-U",
        user,
        database,
    ]
