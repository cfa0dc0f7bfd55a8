"""
Python function calls per transaction: a deterministic measure of the relay
path's work, where CPU timings on a shared machine are noise.

C{python -m benchmarks.calls} starts a throwaway PostgreSQL, runs pgtwist in
this process on its own reactor, and has C{pgbench -S -c 1} (simple and
extended protocol; C{--clients} for more, so that transaction pooling's
clients wait for its 10 backends) run transactions through it while
C{sys.setprofile} counts every Python function call the reactor thread
makes. C{--logins} measures a login instead (C{pgbench -S -C}: one
transaction per connection), for the role in the vault and for the same
role looked up with auth_query and logged into PostgreSQL by SCRAM
pass-through (issue 13's C{S-simple-c10-C-authquery} against
C{S-simple-c10-C}). C{--logins N --cpu R} measures the CPU time instead, without the profiler: R rounds,
each running C{pgbench -S -C -c 10} for N logins against one source then
the other, CPU taken from C{getrusage} of this process (pgbench and
PostgreSQL are other processes); it prints each round's ratio. Each workload
runs twice, with C{--transactions} and twice as many: the difference,
divided by the extra transactions, is the cost of one transaction without
the login, the pgbench start or the profiler's own switching. The counts are
split into pgtwist's own functions and Twisted's (everything else the
reactor thread calls is "other"), per pipeline and protocol; C{--top N}
also lists the N functions called most per transaction.

It needs no quiet machine and gives the same numbers run after run, within
a fraction of a call (timers and the pool's maintenance may fire during a
run).
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from benchmarks import servers

ROLE = "pgtwist_calls"
#: The role auth_query runs as in C{--logins} (a superuser: it reads
#: C{pg_authid}).
AUTH_ROLE = "pgtwist_calls_auth"
DATABASE = "pgtwist_calls"

#: The workloads: name and pgbench's protocol option.
PROTOCOLS = (("simple", "-Msimple"), ("extended", "-Mextended"))
PIPELINES = ("transaction", "session")
#: The users sources a C{--logins} run compares.
SOURCES = ("vault", "authquery")

_TWISTED = os.sep + "twisted" + os.sep
_PGTWIST = os.sep + "pgtwist" + os.sep


def category(fileName: str) -> str:
    """
    Whose code a function is: C{"pgtwist"}, C{"twisted"} or C{"other"}.
    """
    if _PGTWIST in fileName:
        return "pgtwist"
    if _TWISTED in fileName:
        return "twisted"
    return "other"


@dataclass
class CallCounter:
    """
    A C{sys.setprofile} hook counting Python function calls by function.

    @ivar counts: (category, file, line, name) to calls.
    """

    counts: collections.Counter[tuple[str, str, int, str]] = field(
        default_factory=collections.Counter
    )

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        """
        Count a Python C{call} event (C functions are not counted).
        """
        if event == "call":
            code = frame.f_code
            self.counts[
                (category(code.co_filename), code.co_filename, code.co_firstlineno, code.co_name)
            ] += 1


@dataclass
class Measure:
    """
    Calls per transaction of one workload.

    @ivar byFunction: (category, file, line, name) to calls per transaction.
    """

    pipeline: str
    protocol: str
    byFunction: dict[tuple[str, str, int, str], float]

    def total(self, kind: str | None = None) -> float:
        """
        All calls per transaction, or those of one category.
        """
        return sum(n for key, n in self.byFunction.items() if kind is None or key[0] == kind)


def difference(
    small: collections.Counter[tuple[str, str, int, str]],
    large: collections.Counter[tuple[str, str, int, str]],
    extra: int,
) -> dict[tuple[str, str, int, str], float]:
    """
    Per-transaction calls: what the larger run called more, per extra
    transaction.
    """
    keys = set(small) | set(large)
    return {key: (large[key] - small[key]) / extra for key in keys if large[key] != small[key]}


class Harness:
    """
    A throwaway PostgreSQL with pgbench's tables, and pgtwist services run
    on this process's reactor in front of it.
    """

    def __init__(self, directory: str) -> None:
        from pgtwist.testing.embedded import PostgresCluster, hbaForRoles

        self.directory = directory
        self.cluster = PostgresCluster()
        self.cluster.start()
        self.password = secrets.token_urlsafe(18)
        self.cluster.createRole(ROLE, self.password, "scram-sha-256")
        self.cluster.createDatabase(DATABASE, ROLE)
        self.authPassword = secrets.token_urlsafe(18)
        self.cluster.createRole(AUTH_ROLE, self.authPassword, "scram-sha-256")
        self.cluster.psql(f"ALTER ROLE {AUTH_ROLE} SUPERUSER;")
        self.cluster.setHba(hbaForRoles({ROLE: "scram-sha-256", AUTH_ROLE: "scram-sha-256"}))
        args = ["-i", "-q", "-s", "1", "-h", self.cluster.host, "-p", str(self.cluster.port)]
        result = self.pgbench([*args, "-U", ROLE, DATABASE])
        if result.returncode != 0:
            raise RuntimeError(f"pgbench -i failed:\n{result.stderr[-2000:]}")

    def pgbench(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """
        Run pgbench with the role's password, without TLS or GSS.
        """
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env.update(PGPASSWORD=self.password, PGSSLMODE="disable", PGGSSENCMODE="disable")
        return subprocess.run(
            [self.cluster.pgbench, *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip

    def service(self, pipeline: str, authQuery: bool = False) -> tuple[Any, int]:
        """
        A started pgtwist service for C{pipeline}, and its port.

        @param authQuery: The vault holds only the auth user's password,
            and the role is looked up with auth_query.
        """
        from pgtwist.app import tap
        from pgtwist.config.vault import writeMasterKey, writeUsersFile

        directory = tempfile.mkdtemp(prefix=pipeline + "-", dir=self.directory)
        port = servers.pickLowPort()
        paths = {name: os.path.join(directory, f"pgtwist{name}.conf") for name in ("", "_hba")}
        users = os.path.join(directory, "pgtwist_users.conf")
        with open(paths[""], "w") as f:
            authUser = AUTH_ROLE if authQuery else None
            f.write(servers.pgtwistConf(port, self.cluster.port, pipeline, 10, authUser=authUser))
        with open(paths["_hba"], "w") as f:
            f.write(servers.pgtwistHba())
        masterKey = secrets.token_hex(32).encode()
        # The vault's key is read from ~/.pgtwist/master.key: a HOME of our own.
        os.environ["HOME"] = directory
        writeMasterKey(masterKey, os.path.join(directory, ".pgtwist", "master.key"))
        vault = {AUTH_ROLE: self.authPassword} if authQuery else {ROLE: self.password}
        writeUsersFile(users, vault, masterKey=masterKey)
        options = tap.Options()
        options.parseOptions(["-c", paths[""], "-a", paths["_hba"], "-u", users])
        service = tap.makeService(options)
        service.startService()
        return service, port

    def close(self) -> None:
        """
        Stop PostgreSQL.
        """
        self.cluster.stop()


def onReactor(reactor: Any, function: Callable[[], object]) -> None:
    """
    Run C{function} in the reactor thread and wait until it has.
    """
    done = threading.Event()

    def call() -> None:
        try:
            function()
        finally:
            done.set()

    reactor.callFromThread(call)
    done.wait()


def profiled(
    reactor: Any, harness: Harness, args: list[str]
) -> collections.Counter[tuple[str, str, int, str]]:
    """
    The reactor thread's calls while pgbench runs with C{args}; called
    outside the reactor thread.
    """
    counter = CallCounter()
    onReactor(reactor, lambda: sys.setprofile(counter))
    result = harness.pgbench([*args, "-U", ROLE, DATABASE])
    onReactor(reactor, lambda: sys.setprofile(None))
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{result.stderr[-2000:]}")
    return counter.counts


def measure(
    reactor: Any, harness: Harness, pipeline: str, port: int, transactions: int, clients: int = 1
) -> list[Measure]:
    """
    Calls per transaction of every protocol through the pgtwist on C{port};
    called outside the reactor thread.

    @param clients: pgbench's C{-c}; above the pool's 10 backends, clients
        of the transaction pipeline wait for a backend, and the waiting is
        counted too.
    """
    results = []
    for protocol, option in PROTOCOLS:
        base = ["-S", "-n", option, "-c", str(clients), "-h", servers.LOOPBACK, "-p", str(port)]
        # pgbench's -t is per client.
        profiled(reactor, harness, [*base, "-t", str(transactions // clients)])  # warm up
        small = profiled(reactor, harness, [*base, "-t", str(transactions // clients)])
        large = profiled(reactor, harness, [*base, "-t", str(2 * transactions // clients)])
        results.append(Measure(pipeline, protocol, difference(small, large, transactions)))
    return results


def measureLogins(
    reactor: Any, harness: Harness, pipeline: str, source: str, port: int, logins: int
) -> Measure:
    """
    Calls per login (C{pgbench -S -M simple -C}: a connection, its login
    and one transaction) through the pgtwist on C{port}, whose users
    C{source} is one of L{SOURCES}; called outside the reactor thread.
    """
    base = ["-S", "-n", "-Msimple", "-C", "-c", "1", "-h", servers.LOOPBACK, "-p", str(port)]
    profiled(reactor, harness, [*base, "-t", str(logins)])  # warm up
    small = profiled(reactor, harness, [*base, "-t", str(logins)])
    large = profiled(reactor, harness, [*base, "-t", str(2 * logins)])
    return Measure(pipeline, "login-" + source, difference(small, large, logins))


def cpuPerLogin(reactor: Any, harness: Harness, port: int, logins: int, clients: int = 10) -> float:
    """
    The CPU seconds this process spent per login while C{pgbench -S -C}
    made C{logins} logins through the pgtwist on C{port}, C{clients} at a
    time; called outside the reactor thread.
    """
    perClient = max(1, logins // clients)
    args = ["-S", "-n", "-Msimple", "-C", "-c", str(clients), "-j", "1"]
    args += ["-t", str(perClient), "-h", servers.LOOPBACK, "-p", str(port)]
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = harness.pgbench([*args, "-U", ROLE, DATABASE])
    after = resource.getrusage(resource.RUSAGE_SELF)
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{result.stderr[-2000:]}")
    spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return spent / (perClient * clients)


def measureCpu(
    reactor: Any, harness: Harness, pipeline: str, ports: dict[str, int], logins: int, rounds: int
) -> str:
    """
    Rounds of L{cpuPerLogin}, each source in turn: a line per round with
    the microseconds per login of each and their ratio, and the median.
    """
    for port in ports.values():
        cpuPerLogin(reactor, harness, port, logins // 4)  # warm up
    lines = [f"{pipeline}: CPU µs per login (pgbench -S -C -c 10, {logins} logins a run)"]
    ratios = []
    for index in range(rounds):
        spent = {
            source: cpuPerLogin(reactor, harness, port, logins) for source, port in ports.items()
        }
        ratio = spent["authquery"] / spent["vault"]
        ratios.append(ratio)
        lines.append(
            f"  round {index + 1}: vault {spent['vault'] * 1e6:7.1f}  "
            f"auth_query {spent['authquery'] * 1e6:7.1f}  ratio {ratio:.3f}"
        )
    lines.append(f"  median ratio {statistics.median(ratios):.3f}")
    return "\n".join(lines)


def compare(results: Sequence[Measure], top: int) -> str:
    """
    Per pipeline, the functions an auth_query login calls more (or fewer)
    times than a vault login, the largest differences first.
    """
    lines = []
    byKey = {(m.pipeline, m.protocol): m for m in results}
    for pipeline in PIPELINES:
        vault = byKey.get((pipeline, "login-vault"))
        query = byKey.get((pipeline, "login-authquery"))
        if vault is None or query is None:
            continue
        lines.append(
            f"\n{pipeline}: auth_query / vault = {query.total() / vault.total():.3f}; "
            f"the {top} largest differences per login"
        )
        keys = set(vault.byFunction) | set(query.byFunction)
        deltas = {
            key: query.byFunction.get(key, 0.0) - vault.byFunction.get(key, 0.0) for key in keys
        }
        deltas = {key: n for key, n in deltas.items() if n}
        ranked = sorted(deltas.items(), key=lambda item: -abs(item[1]))[:top]
        for (kind, fileName, line, name), n in ranked:
            where = fileName.rsplit(os.sep + kind + os.sep, 1)[-1]
            lines.append(f"  {n:+7.2f}  {kind:<8} {name} ({where}:{line})")
    return "\n".join(lines)


def report(results: Sequence[Measure], top: int) -> str:
    """
    The table, and each workload's most called functions.
    """
    lines = [
        f"{'pipeline':<12} {'protocol':<15} {'pgtwist':>8} {'twisted':>8} {'other':>7} {'all':>7}",
    ]
    for m in results:
        lines.append(
            f"{m.pipeline:<12} {m.protocol:<15} {m.total('pgtwist'):8.1f} "
            f"{m.total('twisted'):8.1f} {m.total('other'):7.1f} {m.total():7.1f}"
        )
    if top:
        for m in results:
            lines.append(f"\n{m.pipeline} {m.protocol}: the {top} functions called most")
            ranked = sorted(m.byFunction.items(), key=lambda item: -item[1])[:top]
            for (kind, fileName, line, name), n in ranked:
                where = fileName.rsplit(os.sep + kind + os.sep, 1)[-1]
                lines.append(f"  {n:6.2f}  {kind:<8} {name} ({where}:{line})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Measure and print calls per transaction, or per login (C{--logins}).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calls", description=__doc__)
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument(
        "--logins",
        type=int,
        default=0,
        help="measure N logins (and 2N) per users source instead of transactions",
    )
    parser.add_argument(
        "--cpu",
        type=int,
        default=0,
        help="with --logins: R rounds of CPU time per login (no profiler) instead of calls",
    )
    parser.add_argument("--pipeline", action="append", choices=PIPELINES)
    parser.add_argument("--top", type=int, default=0, help="list the N most called functions")
    parser.add_argument(
        "--clients", type=int, default=1, help="pgbench clients (the pool has 10 backends)"
    )
    options = parser.parse_args(argv)

    from pgtwist.net import reactor as pgtwistReactor

    reactor: Any = pgtwistReactor.install()

    results: list[Measure] = []
    cpuReports: list[str] = []
    failure: list[BaseException] = []
    with tempfile.TemporaryDirectory(prefix="pgtwist-calls-") as directory:
        harness = Harness(directory)

        def cpuRounds(pipeline: str) -> str:
            started: dict[str, tuple[Any, int]] = {}

            def start() -> None:
                for source in SOURCES:
                    started[source] = harness.service(pipeline, source == "authquery")

            onReactor(reactor, start)
            try:
                ports = {source: port for source, (_, port) in started.items()}
                return measureCpu(reactor, harness, pipeline, ports, options.logins, options.cpu)
            finally:
                for service, _ in started.values():
                    onReactor(reactor, service.stopService)

        def drive() -> None:
            try:
                for pipeline in options.pipeline or PIPELINES:
                    if options.logins and options.cpu:
                        cpuReports.append(cpuRounds(pipeline))
                        continue
                    for source in SOURCES if options.logins else ("vault",):
                        started: list[tuple[Any, int]] = []

                        def start(
                            pipeline: str = pipeline,
                            started: list[Any] = started,
                            authQuery: bool = source == "authquery",
                        ) -> None:
                            started.append(harness.service(pipeline, authQuery))

                        onReactor(reactor, start)
                        service, port = started[0]
                        try:
                            if options.logins:
                                results.append(
                                    measureLogins(
                                        reactor, harness, pipeline, source, port, options.logins
                                    )
                                )
                            else:
                                results.extend(
                                    measure(
                                        reactor,
                                        harness,
                                        pipeline,
                                        port,
                                        options.transactions,
                                        options.clients,
                                    )
                                )
                        finally:
                            onReactor(reactor, service.stopService)
            except BaseException as e:
                failure.append(e)
            finally:
                reactor.callFromThread(reactor.stop)

        try:
            reactor.callWhenRunning(threading.Thread(target=drive, daemon=True).start)
            reactor.run(installSignalHandlers=False)
        finally:
            harness.close()
    if failure:
        raise failure[0]
    if cpuReports:
        print("\n".join(cpuReports))
        return 0
    print(report(results, options.top))
    if options.logins:
        print(compare(results, options.top or 40))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
