# -*- test-case-name: tests.unit.test_bench -*-
"""
C{make bench} (C{python -m benchmarks.run}): pgtwist against PgBouncer and
direct PostgreSQL, interleaved, in one run.

It starts one throwaway PostgreSQL (L{pgtwist.testing.embedded.PostgresCluster},
C{max_connections} 300), creates the role C{bench} (SCRAM-SHA-256) and its
database, runs C{pgbench -i}, then for every round, workload and target
starts the pooler, runs pgbench, reads the pooler's CPU time from C{/proc}
and stops it. A memory step then holds many idle connections open on
pgtwist. Everything started is stopped at the end, also on errors and on
Ctrl-C. See C{benchmarks/README.rst}.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import datetime
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, NoReturn

from benchmarks import client, large, memory, plan, results, servers
from benchmarks.plan import DIRECT, FLOOR, PGBOUNCER, PGTWIST, TRANSACTION, Step
from benchmarks.results import RunRecord

if TYPE_CHECKING:
    from pgtwist.testing.certs import IssuedCertificate

ROLE = "bench"
#: The role the poolers run C{auth_query} as in auth_query workloads.
AUTH_ROLE = "bench_auth"
DATABASE = "bench"
#: PostgreSQL's max_connections for the run (the issue's setting).
PG_MAX_CONNECTIONS = 300
#: The checkout whose pgtwist is measured.
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The PyPy interpreter C{make pypy} prepares (pgtwist's dependencies only).
PYPY = os.path.join(CHECKOUT, ".venv-pypy", "bin", "python")


def parseArguments(argv: Sequence[str]) -> argparse.Namespace:
    """
    The command line; C{--quick} fills in shorter defaults for whatever was
    not given explicitly.
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="pgtwist vs PgBouncer vs direct PostgreSQL, interleaved pgbench rounds.",
    )
    parser.add_argument("--quick", action="store_true", help="1 round, 2 s runs, scale 1")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    parser.add_argument("--duration", type=int, help="pgbench -T seconds (default 5; quick 2)")
    parser.add_argument("--scale", type=int, help="pgbench -i -s (default 10; quick 1)")
    parser.add_argument(
        "--connections", type=int, help="idle connections for the memory step (10000; quick 2000)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="add pgtwist runs with workers = N (1: none)"
    )
    parser.add_argument("--json", metavar="FILE", help="write every result to FILE")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="REGEX",
        help="run only the workloads whose name matches (re.search; repeatable)",
    )
    parser.add_argument("--skip-memory", action="store_true", help="leave out the memory step")
    parser.add_argument(
        "--skip-large", action="store_true", help="leave out the large-message step"
    )
    parser.add_argument("--pgbouncer", default=servers.PGBOUNCER_BINARY, help="PgBouncer binary")
    parser.add_argument(
        "--notify",
        action="store_true",
        help="add the NOTIFY fan-out step (benchmarks/notify.py): 1 notifier, 100 listeners",
    )
    parser.add_argument(
        "--pypy",
        metavar="PYTHON",
        help="add pgtwist-pypy rows run by this PyPy (default without --quick: "
        ".venv-pypy/bin/python if present)",
    )
    parser.add_argument("--no-pypy", action="store_true", help="leave out the pgtwist-pypy rows")
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="add pgtwist-uvloop rows: pgtwist on Twisted's asyncio reactor on uvloop",
    )
    parser.add_argument(
        "--jit-warmup",
        type=int,
        metavar="S",
        help="pgbench seconds before each pgtwist-pypy run, not measured (default 3; quick 1)",
    )
    options = parser.parse_args(list(argv))
    quick = options.quick
    if options.no_pypy:
        options.pypy = None
    elif options.pypy is None and not quick and os.access(PYPY, os.X_OK):
        # --quick leaves PyPy out unless asked for: its rows and warm-ups
        # would take it past its 3 minutes.
        options.pypy = PYPY
    elif options.pypy is not None and os.sep in options.pypy:
        # The poolers start in their own directories: a relative path
        # would name nothing there.
        options.pypy = os.path.abspath(options.pypy)
    for name, full, short in (
        ("rounds", 3, 1),
        ("duration", 5, 2),
        ("scale", 10, 1),
        ("connections", 10_000, 2_000),
        ("jit_warmup", 3, 1),
    ):
        if getattr(options, name) is None:
            setattr(options, name, short if quick else full)
    if options.rounds < 1 or options.duration < 1 or options.scale < 1 or options.workers < 1:
        parser.error("--rounds, --duration, --scale and --workers must be at least 1")
    return options


def selectWorkloads(only: Sequence[str]) -> list[plan.Workload]:
    """
    The default workloads, or those whose name one of the regular
    expressions C{only} finds (C{re.search}: C{ext} or C{^S-simple-c1$}).
    """
    workloads = plan.defaultWorkloads()
    if only:
        workloads = [w for w in workloads if any(re.search(text, w.name) for text in only)]
    return workloads


def _firstLine(args: Sequence[str]) -> str:
    """
    The first line a version command prints, or why it could not run.
    """
    try:
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return f"unavailable ({e})"
    return (result.stdout or result.stderr).strip().splitlines()[0] if result.stdout else "?"


#: Prints the PyPy and Twisted versions of the pgtwist-pypy rows on one line.
_PYPY_VERSION = (
    "import sys, twisted; print(' '.join(sys.version.split()) + '; Twisted ' + twisted.__version__)"
)


def describeCommit(checkout: str = CHECKOUT) -> str:
    """
    The checkout's commit, noting uncommitted changes to pgtwist's code.
    """
    commit = _firstLine(["git", "-C", checkout, "rev-parse", "--short", "HEAD"])
    status = subprocess.run(
        ["git", "-C", checkout, "status", "--porcelain", "--", "pgtwist", "twisted"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if status.stdout.strip():
        commit += " + uncommitted changes to pgtwist"
    return commit


def machineDescription(
    pgBin: str, pgbouncer: str, commit: str, pypy: str | None = None
) -> dict[str, Any]:
    """
    Date, machine and versions, for the report and C{RESULTS.rst}.
    """
    import pgtwist
    import twisted

    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "loadavg": os.getloadavg(),
        "postgresql": _firstLine([os.path.join(pgBin, "postgres"), "--version"]),
        "pgbench": _firstLine([os.path.join(pgBin, "pgbench"), "--version"]),
        "pgbouncer": _firstLine([pgbouncer, "--version"]),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "twisted": twisted.__version__,
        "pgtwist": f"{pgtwist.__version__} ({commit})",
        "pypy": None if pypy is None else _firstLine([pypy, "-c", _PYPY_VERSION]),
    }


class Bench:
    """
    One benchmark run: the cluster, the servers it starts, and the records.
    """

    def __init__(self, options: argparse.Namespace) -> None:
        """
        @param options: The parsed command line.
        """
        self.options = options
        self.cluster: Any = None
        self.credentials: servers.Credentials | None = None
        self.live: set[servers.RunningServer] = set()
        self.records: list[RunRecord] = []
        #: The memory step's result per runtime label (C{pgtwist},
        #: C{pgtwist-pypy}).
        self.memory: dict[str, memory.MemoryResult] = {}
        #: The large-message step's result per pipeline.
        self.large: list[large.LargeResult] = []
        #: The copy of pgtwist every pooler run imports (see L{setUp}).
        self.code: str | None = None
        #: The commit the copy was taken from.
        self.commit = "?"
        #: The server certificate both poolers present in TLS workloads,
        #: made by L{setUp} when the run has any (C{None} otherwise).
        self.certificate: IssuedCertificate | None = None

    # -- setup and teardown --

    def setUp(self, tls: bool = False) -> None:
        """
        Start PostgreSQL, create the role and database, load pgbench's
        tables, and read the role's SCRAM secret for PgBouncer's auth_file.

        @param tls: Also make a throwaway CA and the server certificate
            (for C{localhost} and C{127.0.0.1}) the poolers present in TLS
            workloads; each pooler gets a copy in its private directory.
        """
        from pgtwist.testing.certs import CertificateAuthority
        from pgtwist.testing.embedded import PostgresCluster, hbaForRoles

        if tls:
            authority = CertificateAuthority("pgtwist bench CA")
            self.certificate = authority.issue("localhost", ["localhost", servers.LOOPBACK])
        self.commit = describeCommit()
        self.code = servers.snapshotCheckout(CHECKOUT)
        self.cluster = PostgresCluster(maxConnections=PG_MAX_CONNECTIONS)
        if not os.access(self.cluster.pgbench, os.X_OK):
            raise RuntimeError(f"pgbench not found at {self.cluster.pgbench}")
        self.cluster.start()
        password = secrets.token_urlsafe(18)
        self.cluster.createRole(ROLE, password, "scram-sha-256")
        self.cluster.createDatabase(DATABASE, ROLE)
        # auth_query reads pg_authid: a superuser here; docs/configuration.rst
        # recommends a SECURITY DEFINER function for production.
        authPassword = secrets.token_urlsafe(18)
        self.cluster.createRole(AUTH_ROLE, authPassword, "scram-sha-256")
        self.cluster.psql(f"ALTER ROLE {AUTH_ROLE} SUPERUSER;")
        self.cluster.setHba(hbaForRoles({ROLE: "scram-sha-256", AUTH_ROLE: "scram-sha-256"}))
        secret = self.cluster.psql(
            f"SELECT rolpassword FROM pg_authid WHERE rolname = '{ROLE}';"
        ).strip()
        runAs = self.cluster.runAs
        self.credentials = servers.Credentials(
            ROLE, password, DATABASE, secret,
            runAs.uid if runAs else None, runAs.gid if runAs else None,
            AUTH_ROLE, authPassword,
        )  # fmt: skip
        started = time.monotonic()
        args = ["-i", "-q", "-s", str(self.options.scale)]
        args += ["-h", self.cluster.host, "-p", str(self.cluster.port), "-U", ROLE, DATABASE]
        result = self.pgbench(args, timeout=1800)
        if result.returncode != 0:
            raise RuntimeError(f"pgbench -i failed:\n{result.stderr[-2000:]}")
        say(f"pgbench -i -s {self.options.scale}: {time.monotonic() - started:.1f}s")

    def close(self) -> None:
        """
        Stop every server still running, then PostgreSQL.
        """
        for server in list(self.live):
            self.stopServer(server)
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None
        if self.code is not None:
            shutil.rmtree(self.code, ignore_errors=True)
            self.code = None

    def pgbench(
        self, args: Sequence[str], timeout: float, tls: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """
        Run the cluster's pgbench with the role's password, without GSS
        negotiation, and without TLS (the same for every target) or, with
        C{tls}, with C{sslmode=require}.
        """
        assert self.credentials is not None
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env.update(
            PGPASSWORD=self.credentials.password,
            PGSSLMODE="require" if tls else "disable",
            PGGSSENCMODE="disable",
            PGCONNECT_TIMEOUT="30",
        )
        return subprocess.run(
            [self.cluster.pgbench, *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=timeout,
        )  # fmt: skip

    def startServer(
        self, target: plan.Target, poolSize: int, tls: bool = False, authQuery: bool = False
    ) -> servers.RunningServer:
        """
        Start the pooler C{target} names, with C{poolSize} backends, or
        the relay floor (L{benchmarks.floor}: no pool), and warm it up with
        one login and one query.

        @param tls: Have it demand TLS from clients, with L{certificate};
            the warm-up then logs in over TLS.
        @param authQuery: Have it look the role up with C{auth_query}
            instead of holding its password or secret.
        """
        assert self.credentials is not None
        certificate = self.certificate if tls else None
        if tls and certificate is None:
            raise servers.ServerError("a TLS workload needs Bench.setUp(tls=True)")
        if target.pooler == FLOOR:
            if tls or authQuery:
                raise servers.ServerError("the relay floor has no TLS and no auth_query")
            server = servers.startFloor(
                self.cluster.port, self.code, python=self._python(target.runtime)
            )
        elif target.pooler == PGBOUNCER:
            assert target.pipeline is not None
            server = servers.startPgBouncer(
                self.credentials, self.cluster.port, target.pipeline, poolSize,
                self.options.pgbouncer, certificate, authQuery,
            )  # fmt: skip
        else:
            assert target.pipeline is not None
            reactor = "uvloop" if target.runtime == plan.UVLOOP else None
            server = servers.startPgtwist(
                self.credentials, self.cluster.port, target.pipeline, poolSize, target.workers,
                self.code, python=self._python(target.runtime), reactor=reactor,
                certificate=certificate,
                authQuery=authQuery,
            )  # fmt: skip
        self.live.add(server)
        creds = self.credentials
        try:
            client.warmUp(
                servers.LOOPBACK, server.port, creds.user, creds.password, creds.database, tls
            )
        except (client.LoginError, OSError, TimeoutError) as e:
            tail = server.logTail(10)
            self.stopServer(server)
            raise servers.ServerError(f"{server.name} warm-up failed: {e}\n{tail}") from None
        return server

    def _python(self, runtime: str) -> str:
        """
        The interpreter pgtwist or the floor runs on for C{runtime}.
        """
        return self.options.pypy if runtime == plan.PYPY else sys.executable

    def stopServer(self, server: servers.RunningServer) -> None:
        """
        Stop C{server} and wait until PostgreSQL has let go of its backends,
        so the next run finds all connection slots free.
        """
        self.live.discard(server)
        server.stop()
        deadline = time.monotonic() + 10
        query = f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{ROLE}';"
        while self.cluster is not None and time.monotonic() < deadline:
            if self.cluster.psql(query).strip() == "0":
                return
            time.sleep(0.05)

    # -- one run --

    def runStep(self, step: Step) -> RunRecord:
        """
        Run pgbench once against C{step.target}, measuring the pooler's CPU
        ticks around it; errors become the record's C{error}.
        """
        target, workload = step.target, step.workload
        record = RunRecord(
            step.round, workload.name, target.name, target.pooler, target.pipeline, target.workers
        )
        started = time.monotonic()
        server = None
        try:
            if target.pooler != DIRECT:
                server = self.startServer(
                    target, plan.poolSize(workload, target), workload.tls, workload.authQuery
                )
                record.processes = len(servers.processTree(server.pid))
            port = server.port if server is not None else self.cluster.port
            if target.runtime == plan.PYPY and self.options.jit_warmup > 0:
                # PyPy compiles the hot path after a few thousand loops: a
                # long-running pooler runs compiled, so the run measures that.
                warmUp = plan.pgbenchArguments(
                    workload, self.options.jit_warmup, servers.LOOPBACK, port, ROLE, DATABASE
                )
                self.pgbench(warmUp, timeout=self.options.jit_warmup + 300, tls=workload.tls)
            args = plan.pgbenchArguments(
                workload, self.options.duration, servers.LOOPBACK, port, ROLE, DATABASE
            )
            before = servers.cpuTicks(server.pid) if server is not None else 0
            result = self.pgbench(args, timeout=self.options.duration + 300, tls=workload.tls)
            after = servers.cpuTicks(server.pid) if server is not None else 0
            try:
                parsed = results.parsePgbench(result.stdout)
            except ValueError:
                parsed = None
            if result.returncode != 0 or parsed is None:
                tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
                if server is not None:
                    tail += f"\n--- {server.name} log ---\n{server.logTail(10)}"
                record.error = f"pgbench exited with status {result.returncode}: {tail}"
            if parsed is not None:
                record.tps = parsed.tps
                record.latencyMs = parsed.latencyMs
                record.transactions = parsed.transactions
                record.failed = parsed.failed
                record.connectionMs = parsed.connectionMs
                if server is not None:
                    record.cpuMicros = results.microsPerTransaction(
                        after - before, servers.TICKS_PER_SECOND, parsed.transactions
                    )
        except (servers.ServerError, OSError, subprocess.SubprocessError) as e:
            record.error = str(e)
        finally:
            if server is not None:
                self.stopServer(server)
        record.seconds = time.monotonic() - started
        return record

    # -- memory --

    def memoryStep(self, runtime: str = plan.CPYTHON) -> memory.MemoryResult:
        """
        Hold C{--connections} idle logged-in connections on pgtwist
        (transaction pipeline, on C{runtime}) and measure its RSS growth.
        """
        assert self.credentials is not None
        count = self.options.connections
        limit = memory.raiseFileLimit(count + memory.SPARE_DESCRIPTORS)
        if limit < count + memory.SPARE_DESCRIPTORS:
            count = max(1, limit - memory.SPARE_DESCRIPTORS)
            say(f"RLIMIT_NOFILE is {limit}: the memory step opens {count} connections")
        target = plan.Target(PGTWIST, TRANSACTION, runtime=runtime)
        server = self.startServer(target, plan.POOL_SIZE)
        creds = self.credentials
        try:
            return asyncio.run(
                memory.measureIdleConnections(
                    count, servers.LOOPBACK, server.port, creds.user, creds.password,
                    creds.database, lambda: servers.rssKiB(server.pid),
                    lambda: server.process.poll() is None,
                )
            )  # fmt: skip
        except (client.LoginError, OSError, TimeoutError) as e:
            detail = f"{e}\n--- {server.name} log ---\n{server.logTail(10)}"
            return memory.MemoryResult(count, 0, 0, 0.0, None, detail)
        finally:
            self.stopServer(server)

    # -- large messages --

    def largeStep(self, pipeline: str) -> large.LargeResult:
        """
        Relay 16 and 64 MiB messages each way through pgtwist in
        C{pipeline} (or L{large.DIRECT}: straight to PostgreSQL), timing
        them and reading pgtwist's peak RSS growth.
        """
        assert self.credentials is not None
        creds = self.credentials
        repeats = large.repeatsFor(self.options.quick, self.options.rounds)
        if pipeline == large.DIRECT:
            address = (
                servers.LOOPBACK,
                self.cluster.port,
                creds.user,
                creds.password,
                creds.database,
            )
            try:
                return asyncio.run(large.measurePipeline(pipeline, address, lambda: 0, repeats))
            except (client.LoginError, OSError, TimeoutError, asyncio.TimeoutError) as e:
                return large.LargeResult(pipeline, error=repr(e))
        server = self.startServer(plan.Target(PGTWIST, pipeline), plan.POOL_SIZE)
        address = (servers.LOOPBACK, server.port, creds.user, creds.password, creds.database)
        try:
            return asyncio.run(
                large.measurePipeline(pipeline, address, lambda: large.peakKiB(server.pid), repeats)
            )
        except (client.LoginError, OSError, TimeoutError, asyncio.TimeoutError) as e:
            detail = f"{e!r}\n--- {server.name} log ---\n{server.logTail(10)}"
            return large.LargeResult(pipeline, error=detail)
        finally:
            self.stopServer(server)


def memoryRuntimes(options: argparse.Namespace) -> list[str]:
    """
    The runtimes the memory step measures: CPython, and PyPy when its rows
    are in the run.
    """
    return [plan.CPYTHON] + ([plan.PYPY] if options.pypy is not None else [])


def say(text: str) -> None:
    """
    Print a progress line at once.
    """
    print(text, flush=True)


def describeRecord(index: int, total: int, record: RunRecord) -> str:
    """
    The progress line for one run.
    """
    head = f"[{index}/{total} r{record.round + 1}] {record.workload} {record.target}:"
    if not record.ok:
        return f"{head} FAILED ({record.seconds:.1f}s): {record.error}"
    cpu = f", {record.cpuMicros:.1f} µs/txn" if record.cpuMicros is not None else ""
    latency = f", {record.latencyMs:.3f} ms" if record.latencyMs is not None else ""
    return f"{head} {record.tps:.0f} tps{latency}{cpu} ({record.seconds:.1f}s)"


def workersNote(records: Sequence[RunRecord], workers: int) -> str | None:
    """
    What the C{workers = N} rows mean: whether pgtwist actually ran more
    than one process for them.
    """
    runs = [r for r in records if r.workers > 1 and r.ok]
    if workers <= 1:
        return None
    if not runs:
        return f"workers = {workers}: no successful run."
    if all(r.processes <= 1 for r in runs):
        return (
            f"workers = {workers}: pgtwist ran as a single process (the setting has no effect "
            f"yet), so the pgtwist-w{workers} rows measure one worker."
        )
    most = max(r.processes for r in runs)
    return f"workers = {workers}: pgtwist ran {most} processes (supervisor and workers)."


def _load(loadavg: Sequence[float] | None) -> str:
    """
    A load average triple as C{1.00/0.50/0.20}.
    """
    if not loadavg:
        return "?"
    return "/".join(f"{value:.2f}" for value in loadavg)


def report(
    bench: Bench, workloads: Sequence[plan.Workload], meta: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """
    The printed report and the JSON document.
    """
    options = bench.options
    pypy = options.pypy is not None
    targets = {w.name: plan.targetsFor(w, options.workers, pypy, options.uvloop) for w in workloads}
    rows = results.summarize(bench.records, workloads, targets)
    latencies = results.latencyTable(bench.records, workloads)
    kib = {label: m.kibPerConnection for label, m in bench.memory.items()} or {PGTWIST: None}
    checks = results.checkTargets(rows, workloads, latencies, kib)
    checks += large.checkLarge(bench.large)
    floorChecks = results.checkFloorTargets(rows, workloads)
    parts = [
        f"{meta['date']}; {meta['nproc']} x {meta['cpu']}; {meta['postgresql']}; "
        f"{meta['pgbouncer']}; {meta['python']}; Twisted {meta['twisted']}; "
        f"pgtwist {meta['pgtwist']}",
        f"{options.rounds} round(s) x pgbench -T {options.duration}, scale {options.scale}; "
        "medians over rounds; ratios are medians of per-round ratios.",
        f"Load average {_load(meta.get('loadavg'))} at the start, "
        f"{_load(meta.get('loadavgEnd'))} at the end (other work on the machine skews results).",
    ]
    if meta.get("pypy"):
        parts.append(
            f"pgtwist-pypy rows: pgtwist on {meta['pypy']}; each run follows "
            f"{options.jit_warmup} s of the same workload, not measured, for the JIT."
        )
    parts += [
        "",
        results.renderRows(rows),
        "",
    ]
    if latencies:
        parts += [results.renderLatencies(latencies), ""]
    shares = results.tlsShares(rows, workloads)
    if shares:
        parts += [results.renderTlsShares(shares), ""]
    costs = results.authQueryCosts(rows, workloads)
    if costs:
        parts += [results.renderAuthQueryCosts(costs), ""]
    for label, m in bench.memory.items():
        if m.error is None:
            parts.append(
                f"Memory: {m.connections} idle connections on {label}: RSS {m.rssBeforeKiB} -> "
                f"{m.rssAfterKiB} KiB, {results.formatNumber(m.kibPerConnection)} KiB each "
                f"(logins took {m.loginSeconds:.1f}s)."
            )
        else:
            parts.append(f"Memory step on {label} failed: {m.error}")
    if bench.large:
        parts.append(large.renderLarge(bench.large))
    note = workersNote(bench.records, options.workers)
    if note:
        parts.append(note)
    if any(w.kind == plan.CONNECT for w in workloads):
        parts.append(
            "-C: every connection authenticates with SCRAM; libpq's client-side PBKDF2 costs "
            "every target the same and compresses the -C TPS ratios towards 1."
        )
    if any(w.authQuery for w in workloads):
        parts.append(
            "-authquery workloads: neither pooler holds the role's password or secret; both "
            "look it up with auth_query as a superuser role and log in by SCRAM pass-through; "
            "no direct target."
        )
    if any(w.tls for w in workloads):
        parts.append(
            "-tls workloads: pgbench with sslmode=require to poolers that demand TLS "
            "(client_tls_sslmode = require), plaintext to PostgreSQL; no direct target."
        )
    if any(w.floor for w in workloads):
        parts.append(
            "floor rows: an empty 1:1 relay on pgtwist's reactor and eager writes "
            "(benchmarks/floor.py), no pooling; CPU ÷floor is pgtwist's CPU per transaction "
            "over the floor's on the same runtime, per round (pgtwist-pypy over floor-pypy)."
        )
    parts += ["", results.renderChecks(checks)]
    if floorChecks:
        parts += ["", "Against the relay floor (issue 15):", results.renderChecks(floorChecks)]
    document = {
        "meta": meta,
        "options": {k: v for k, v in vars(options).items() if k != "json"},
        "runs": [asdict(r) for r in bench.records],
        "rows": [asdict(r) for r in rows],
        "addedLatencyMs": [asdict(x) | {"ratio": x.ratio} for x in latencies],
        "tls": [asdict(x) | {"share": x.share} for x in shares],
        "authQuery": [asdict(x) | {"ratio": x.ratio} for x in costs],
        "memory": {label: asdict(m) for label, m in bench.memory.items()},
        "large": [
            asdict(r) | {"seconds": {f"{o} {s}": t for (o, s), t in r.seconds.items()}}
            for r in bench.large
        ],
        "workers": note,
        "targets": [asdict(c) for c in checks],
        "floorTargets": [asdict(c) for c in floorChecks],
    }
    return "\n".join(parts), document


def _terminate(signum: int, frame: object) -> NoReturn:
    """
    SIGTERM/SIGHUP: unwind through the C{finally} blocks that stop servers.
    """
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the benchmark; the exit status is 0 when it ran (targets missed or
    not), 1 when it could not run at all.
    """
    options = parseArguments(sys.argv[1:] if argv is None else argv)
    if not os.access(options.pgbouncer, os.X_OK):
        say(f"PgBouncer not found at {options.pgbouncer} (apt-get install pgbouncer)")
        return 1
    workloads = selectWorkloads(options.only)
    steps = plan.schedule(
        workloads, options.rounds, options.workers, options.pypy is not None, options.uvloop
    )
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    memory.raiseFileLimit(options.connections + memory.SPARE_DESCRIPTORS)
    bench = Bench(options)
    atexit.register(bench.close)
    started = time.monotonic()
    try:
        say(f"Starting PostgreSQL (max_connections {PG_MAX_CONNECTIONS}) ...")
        bench.setUp(tls=any(w.tls for w in workloads))
        meta = machineDescription(
            bench.cluster.binDir, options.pgbouncer, bench.commit, options.pypy
        )
        say(f"{len(steps)} pgbench runs of {options.duration}s in {options.rounds} round(s).")
        for index, step in enumerate(steps, 1):
            record = bench.runStep(step)
            bench.records.append(record)
            say(describeRecord(index, len(steps), record))
        if not options.skip_memory:
            for runtime in memoryRuntimes(options):
                label = results.poolerLabel(plan.Target(PGTWIST, TRANSACTION, runtime=runtime).name)
                say(f"Memory step: {options.connections} idle connections on {label} ...")
                bench.memory[label] = bench.memoryStep(runtime)
        if not options.skip_large:
            for pipeline in (large.DIRECT, *large.PIPELINES):
                say(f"Large messages: 16 and 64 MiB each way, {pipeline} ...")
                bench.large.append(bench.largeStep(pipeline))
        if options.notify:
            from benchmarks import notify

            say(f"NOTIFY fan-out: 1 notifier, {notify.LISTENERS} listeners ...")
            fanOut = [notify.step(bench, t, options.duration) for t in notify.TARGETS]
    finally:
        bench.close()
        atexit.unregister(bench.close)
    meta["seconds"] = round(time.monotonic() - started, 1)
    meta["loadavgEnd"] = os.getloadavg()
    text, document = report(bench, workloads, meta)
    say("")
    say(text)
    if options.notify:
        say("")
        say(notify.formatResults(fanOut))
        document["notify"] = [asdict(result) for result in fanOut]
    say(f"\nTotal time {meta['seconds']:.0f}s.")
    if options.json:
        with open(options.json, "w") as f:
            json.dump(document, f, indent=2)
        say(f"Results written to {options.json}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
