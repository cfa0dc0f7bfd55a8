# -*- test-case-name: tests.unit.test_bench_upgrade -*-
"""
The upgrade step (issue 17): how long a pgtwist holding N idle clients
takes to hand its listeners to a new process after SIGUSR2, and what a
client connecting meanwhile sees.

For each N, pgtwist (transaction pooling) is started, N clients log in and
stay idle, and a prober connects, runs nothing and disconnects in a loop.
After a second of that, the process gets SIGUSR2; the hand-over time runs
from the signal until the old process closed its copy of the listening
socket (the new one has adopted it; starting the new Python process is
most of it). The prober's connection times (TCP connect to ReadyForQuery)
before the signal and from the signal until a second after the hand-over
give the client-visible spike; a failed probe is counted. Then the idle
clients are handed over one by one (and the idle backends with them): the
client hand-over time runs from the end of the listeners' hand-over until
the old process exited, which it does once it holds no client. A sample of the idle clients then
runs a query, which the new process answers; a client that cannot is
counted as lost.

With C{--pgbench}, the latency a loaded client sees is measured too:
C{pgbench -c 50 -S} (connections held) runs against pgtwist, which gets
SIGUSR2 a few seconds in; each transaction's latency, from pgbench's
per-transaction log, falls before the signal or between it and the old
process's exit (every client handed over), and the table gives the median,
99th percentile and worst of each window, and pgbench's failures.

Run alone with C{python -m benchmarks.upgrade [--clients 100,1000]
[--pgbench]} (it starts its own PostgreSQL and pgtwist); not part of
C{make bench}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks import servers
from benchmarks.client import LoginError, _close, login, query


@dataclass(frozen=True)
class UpgradeResult:
    """
    One N: the hand-over time and the prober's connection times (seconds).
    """

    clients: int
    handover: float
    before: list[float]
    during: list[float]
    failed: int
    #: From the listeners' hand-over until the old process exited, every
    #: idle client handed over (C{nan}: it did not exit within two minutes).
    clientsMoved: float = float("nan")
    #: Idle clients of the sample that could not query after the upgrade.
    lost: int = 0


def listeningInode(port: int, procRoot: str = "/proc") -> str | None:
    """
    The inode of the TCP socket listening on C{port} (IPv4), from
    C{/proc/net/tcp}.
    """
    text = servers._readProc(os.path.join(procRoot, "net", "tcp")) or ""
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
            return fields[9]
    return None


def holds(pid: int, inode: str, procRoot: str = "/proc") -> bool:
    """
    Whether process C{pid} has a descriptor for socket C{inode}.
    """
    directory = os.path.join(procRoot, str(pid), "fd")
    try:
        names = os.listdir(directory)
    except OSError:
        return False
    wanted = f"socket:[{inode}]"
    for name in names:
        try:
            if os.readlink(os.path.join(directory, name)) == wanted:
                return True
        except OSError:
            continue
    return False


async def _scenario(
    server: servers.RunningServer, credentials: servers.Credentials, n: int
) -> UpgradeResult:
    host, port = servers.LOOPBACK, server.port
    user, password, database = credentials.user, credentials.password, credentials.database
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for start in range(0, n, 50):
        batch = await asyncio.gather(
            *(login(host, port, user, password, database) for _ in range(min(50, n - start)))
        )
        idle.extend(batch)
    times: list[tuple[float, float]] = []
    failed = [0]
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                _, writer = await login(host, port, user, password, database)
            except (LoginError, OSError):
                failed[0] += 1
                continue
            times.append((began, time.monotonic() - began))
            await _close(writer)

    prober = asyncio.ensure_future(probe())
    await asyncio.sleep(1.0)
    inode = listeningInode(port)
    assert inode is not None, "pgtwist is not listening"
    exited: list[float] = []

    async def watchExit() -> None:
        deadline = time.monotonic() + 120
        while server.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if server.process.poll() is not None:
            exited.append(time.monotonic())

    signalled = time.monotonic()
    os.kill(server.pid, signal.SIGUSR2)
    watcher = asyncio.ensure_future(watchExit())
    while holds(server.pid, inode):
        await asyncio.sleep(0.005)
    handedOver = time.monotonic()
    successors = servers.childPids(server.pid)
    await asyncio.sleep(1.0)
    stop.set()
    await prober
    await watcher
    moved = exited[0] - handedOver if exited else float("nan")
    lost = 0
    for reader, writer in idle[:: max(1, n // 50)]:
        try:
            await asyncio.wait_for(query(reader, writer, "SELECT 1"), 10)
        except (OSError, LoginError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            lost += 1
    for _, writer in idle:
        await _close(writer)
    server.process.wait(30)
    for pid in successors:
        os.kill(pid, signal.SIGTERM)
    return UpgradeResult(
        n,
        handedOver - signalled,
        [t for began, t in times if began < signalled],
        [t for began, t in times if began >= signalled],
        failed[0],
        moved,
        lost,
    )


@dataclass(frozen=True)
class SpikeResult:
    """
    Transaction latencies (seconds) of a pgbench run before the upgrade
    and while it moved the clients, and pgbench's failed transactions.
    """

    before: list[float]
    during: list[float]
    failed: int


def readPgbenchLogs(directory: str) -> list[tuple[float, float]]:
    """
    (end time, latency) of every transaction in the per-transaction logs
    (C{pgbench -l}) under C{directory}: C{client transaction latency_us
    script epoch epoch_us} a line.
    """
    found = []
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 6 and fields[2].isdigit():
                    end = int(fields[4]) + int(fields[5]) / 1e6
                    found.append((end, int(fields[2]) / 1e6))
    return found


def spike(bench: Any, server: servers.RunningServer, seconds: int = 14) -> SpikeResult:
    """
    Run C{pgbench -c 50 -S} against C{server}, upgrade it a few seconds
    in, and sort the transactions' latencies by window.
    """
    credentials = bench.credentials
    logs = tempfile.mkdtemp(prefix="pgtwist-bench-spike-")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(PGPASSWORD=credentials.password, PGSSLMODE="disable", PGGSSENCMODE="disable")
    command = [bench.cluster.pgbench, "-n", "-S", "-c", "50", "-j", "4", "-T", str(seconds)]
    command += ["-l", f"--log-prefix={logs}/pgbench_log", "-h", servers.LOOPBACK]
    command += ["-p", str(server.port), "-U", credentials.user, credentials.database]
    run = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=logs
    )
    time.sleep(4)
    signalled = time.time()
    successors: list[int] = []
    os.kill(server.pid, signal.SIGUSR2)
    exited = float("inf")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            exited = time.time()
            break
        if not successors:
            # The new process is the old one's child until the old one exits.
            successors = servers.childPids(server.pid)
        time.sleep(0.02)
    output, _ = run.communicate(timeout=seconds + 60)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    transactions = readPgbenchLogs(logs)
    for pid in successors:
        os.kill(pid, signal.SIGTERM)
    return SpikeResult(
        [latency for end, latency in transactions if end < signalled],
        [latency for end, latency in transactions if signalled <= end <= exited],
        int(failed.group(1)) if failed else -1,
    )


def formatSpike(result: SpikeResult) -> str:
    """
    Median, 99th percentile and worst latency before and during.
    """

    def row(name: str, latencies: list[float]) -> str:
        if not latencies:
            return f"{name:>8}  {'-':>8}  {'-':>8}  {'-':>8}  {0:>7}"
        ordered = sorted(latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (
            f"{name:>8}  {statistics.median(ordered) * 1000:>6.1f}ms  {p99 * 1000:>6.1f}ms  "
            f"{ordered[-1] * 1000:>6.1f}ms  {len(ordered):>7}"
        )

    return "\n".join(
        [
            f"{'window':>8}  {'p50':>8}  {'p99':>8}  {'max':>8}  {'count':>7}",
            row("before", result.before),
            row("during", result.during),
            f"pgbench failed transactions: {result.failed}",
        ]
    )


def formatResults(results: Sequence[UpgradeResult]) -> str:
    """
    One row per N: hand-over time, the probe's median before, median and
    maximum during, failures, the time until every idle client was handed
    over, and how many of the sample could not query after.
    """
    lines = [
        f"{'idle clients':>12}  {'hand-over':>9}  {'connect p50':>11}  "
        f"{'during p50':>10}  {'during max':>10}  {'failed':>6}  {'clients moved':>13}  "
        f"{'lost':>4}"
    ]
    for r in results:
        before = statistics.median(r.before) * 1000 if r.before else float("nan")
        during = statistics.median(r.during) * 1000 if r.during else float("nan")
        worst = max(r.during) * 1000 if r.during else float("nan")
        lines.append(
            f"{r.clients:>12,}  {r.handover:>8.2f}s  {before:>9.1f}ms  "
            f"{during:>8.1f}ms  {worst:>8.1f}ms  {r.failed:>6}  {r.clientsMoved:>12.2f}s  "
            f"{r.lost:>4}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Start PostgreSQL, measure each N, print the table.
    """
    from benchmarks import run

    parser = argparse.ArgumentParser(prog="python -m benchmarks.upgrade")
    parser.add_argument("--clients", default="100,1000", help="comma-separated N")
    parser.add_argument("--pgbench", action="store_true", help="measure pgbench's latency too")
    options, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    bench = run.Bench(run.parseArguments(["--quick", *rest]))
    results = []
    spiked = None
    try:
        bench.setUp()
        assert bench.credentials is not None
        for n in (int(item) for item in options.clients.split(",") if item):
            server = servers.startPgtwist(
                bench.credentials, bench.cluster.port, "transaction", 10, code=bench.code
            )
            try:
                results.append(asyncio.run(_scenario(server, bench.credentials, n)))
            finally:
                server.stop()
        if options.pgbench:
            server = servers.startPgtwist(
                bench.credentials, bench.cluster.port, "transaction", 10, code=bench.code
            )
            try:
                spiked = spike(bench, server)
            finally:
                server.stop()
    finally:
        bench.close()
    if results:
        print(formatResults(results))
    if spiked is not None:
        print(formatSpike(spiked))
    return 0


if __name__ == "__main__":
    sys.exit(main())
