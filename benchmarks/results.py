# -*- test-case-name: tests.unit.test_bench -*-
"""
The arithmetic of a benchmark run, with no I/O: reading pgbench's report and
C{/proc}, medians of per-round ratios, the issue's targets, and the table.

Only ratios measured in the same round count: absolute TPS moves by tens of
percent between rounds on a shared 2-core machine (PERFORMANCE.md), so every
ratio is computed per round first and the median of those is reported.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from benchmarks.plan import (
    CONNECT,
    CPYTHON,
    DIRECT,
    FLOOR,
    LATENCY,
    PGBOUNCER,
    PGTWIST,
    PYPY,
    SELECT,
    SESSION,
    TRANSACTION,
    Target,
    Workload,
    plainName,
    queryMode,
)

#: The issue's limits.
MIN_TPS_RATIO = 1.0
MAX_CPU_RATIO = 1.5
MAX_ADDED_LATENCY_RATIO = 1.5
MAX_KIB_PER_CONNECTION = 10.0
#: A TLS workload's TPS ratio to PgBouncer (both over TLS) may be at most
#: 15% below its plain workload's (issue 12).
MIN_TLS_SHARE = 0.85
#: pgtwist's CPU per login with auth_query and pass-through may be at most
#: 1.2 times its CPU per login with the vault (issue 13).
MAX_AUTH_QUERY_CPU_RATIO = 1.2
#: Issue 15: pgtwist's CPU per transaction over the relay floor's on the
#: same runtime, on every select-only workload, by pipeline.
MAX_FLOOR_RATIO = {TRANSACTION: 1.5, SESSION: 1.2}
#: Issue 15: pgtwist on PyPy against PgBouncer's TPS on every select-only
#: workload, in both pipelines.
MIN_PYPY_TPS_RATIO = 0.95
#: Issue 15: pgtwist on CPython against PgBouncer's TPS in transaction
#: pooling on the select-only workloads, by query mode (what 1.5 times the
#: floor puts it at).
MIN_CPYTHON_TPS_RATIO = {"simple": 0.75, "extended": 0.70}


# -- pgbench and /proc ------------------------------------------------------


@dataclass(frozen=True)
class PgbenchResult:
    """
    What one pgbench run reported.

    @ivar tps: Transactions per second (without the initial connection time,
        or including reconnections with C{-C}).
    @ivar latencyMs: Average latency in milliseconds.
    @ivar transactions: Transactions processed.
    @ivar failed: Failed transactions.
    @ivar connectionMs: Initial connection time, or the average connection
        time with C{-C}, in milliseconds.
    """

    tps: float
    latencyMs: float | None
    transactions: int
    failed: int = 0
    connectionMs: float | None = None


_TPS = re.compile(r"^tps = ([0-9.]+)", re.M)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.M)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
_CONNECTION = re.compile(r"^(?:initial|average) connection time = ([0-9.]+) ms", re.M)


def parsePgbench(output: str) -> PgbenchResult:
    """
    Read pgbench's (PostgreSQL 12 to 17) end-of-run report.

    @raise ValueError: The report has no C{tps} or transaction count (the
        run failed before reporting).
    """
    tps = _TPS.search(output)
    processed = _PROCESSED.search(output)
    if tps is None or processed is None:
        raise ValueError("pgbench reported no tps")
    latency = _LATENCY.search(output)
    failed = _FAILED.search(output)
    connection = _CONNECTION.search(output)
    return PgbenchResult(
        tps=float(tps.group(1)),
        latencyMs=float(latency.group(1)) if latency else None,
        transactions=int(processed.group(1)),
        failed=int(failed.group(1)) if failed else 0,
        connectionMs=float(connection.group(1)) if connection else None,
    )


def parseCpuTicks(stat: str) -> int:
    """
    C{utime + stime + cutime + cstime} from a C{/proc/PID/stat} line, in
    clock ticks. The command name (field 2) may hold spaces and parentheses,
    so fields are counted after its last C{)}.
    """
    fields = stat[stat.rfind(")") + 2 :].split()
    # After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
    return sum(int(value) for value in fields[11:15])


def parseVmRssKiB(status: str) -> int | None:
    """
    C{VmRSS} from a C{/proc/PID/status} text, in KiB; C{None} when absent
    (a zombie or a kernel thread).
    """
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) if match else None


def microsPerTransaction(ticks: int, ticksPerSecond: int, transactions: int) -> float | None:
    """
    CPU microseconds per transaction, or C{None} without transactions.
    """
    if transactions <= 0:
        return None
    return ticks * 1_000_000 / ticksPerSecond / transactions


# -- records and summaries --------------------------------------------------


@dataclass
class RunRecord:
    """
    One pgbench run of the schedule, as written to the JSON file.

    @ivar cpuMicros: The pooler's CPU per transaction (C{None} for direct).
    @ivar error: Why the run gave no result, or C{None}.
    """

    round: int
    workload: str
    target: str
    pooler: str
    pipeline: str | None
    workers: int
    tps: float | None = None
    latencyMs: float | None = None
    transactions: int = 0
    failed: int = 0
    connectionMs: float | None = None
    cpuMicros: float | None = None
    processes: int = 1
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """
        Whether the run produced a usable result.
        """
        return self.error is None and self.tps is not None


def median(values: Iterable[float | None]) -> float | None:
    """
    The median of the values that are not C{None}, or C{None} when none is.
    """
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def _byRound(records: Sequence[RunRecord], workload: str, target: str) -> dict[int, RunRecord]:
    """
    C{target}'s successful runs of C{workload}, by round.
    """
    return {r.round: r for r in records if r.ok and r.workload == workload and r.target == target}


def roundRatios(
    records: Sequence[RunRecord], workload: str, numerator: str, denominator: str, key: str
) -> list[float]:
    """
    C{numerator / denominator} of attribute C{key} (C{tps}, C{cpuMicros},
    C{latencyMs}) for every round in which both targets have a result.
    """
    tops = _byRound(records, workload, numerator)
    bottoms = _byRound(records, workload, denominator)
    ratios = []
    for round in sorted(tops.keys() & bottoms.keys()):
        top = getattr(tops[round], key)
        bottom = getattr(bottoms[round], key)
        if top is not None and bottom:
            ratios.append(top / bottom)
    return ratios


@dataclass
class Row:
    """
    One line of the table: a target in a workload, medians over rounds.

    @ivar vsPgbouncer: Median per-round TPS ratio to PgBouncer in the same
        pipeline (pgtwist rows only).
    @ivar vsDirect: Median per-round TPS ratio to direct (pooler rows).
    @ivar cpuVsPgbouncer: Median per-round ratio of CPU per transaction to
        PgBouncer's (pgtwist rows only).
    @ivar cpuVsFloor: Median per-round ratio of CPU per transaction to the
        relay floor's on the same runtime (pgtwist rows only; L{floorFor}).
    """

    workload: str
    target: str
    pooler: str
    pipeline: str | None
    rounds: int
    tps: float | None
    latencyMs: float | None
    cpuMicros: float | None
    vsPgbouncer: float | None = None
    vsDirect: float | None = None
    cpuVsPgbouncer: float | None = None
    cpuVsFloor: float | None = None
    failures: int = 0


def floorFor(target: Target) -> Target:
    """
    The relay floor a pgtwist target is measured against: the floor on
    PyPy for pgtwist on PyPy, else the floor on CPython (pgtwist's uvloop
    rows run CPython too).
    """
    return Target(FLOOR, runtime=PYPY if target.runtime == PYPY else CPYTHON)


def summarize(
    records: Sequence[RunRecord], workloads: Sequence[Workload], targets: dict[str, list[Target]]
) -> list[Row]:
    """
    One L{Row} per workload and target, in schedule order.

    @param targets: Workload name to its targets, as L{benchmarks.plan.targetsFor}
        gave them.
    """
    rows = []
    for workload in workloads:
        for target in targets.get(workload.name, []):
            mine = [r for r in records if r.workload == workload.name and r.target == target.name]
            good = [r for r in mine if r.ok]
            row = Row(
                workload=workload.name,
                target=target.name,
                pooler=target.pooler,
                pipeline=target.pipeline,
                rounds=len(good),
                tps=median(r.tps for r in good),
                latencyMs=median(r.latencyMs for r in good),
                cpuMicros=median(r.cpuMicros for r in good),
                failures=len(mine) - len(good),
            )
            if target.pooler != DIRECT:
                row.vsDirect = median(
                    roundRatios(records, workload.name, target.name, DIRECT, "tps")
                )
            if target.pooler == PGTWIST and target.pipeline is not None:
                bouncer = Target(PGBOUNCER, target.pipeline).name
                row.vsPgbouncer = median(
                    roundRatios(records, workload.name, target.name, bouncer, "tps")
                )
                row.cpuVsPgbouncer = median(
                    roundRatios(records, workload.name, target.name, bouncer, "cpuMicros")
                )
                row.cpuVsFloor = median(
                    roundRatios(
                        records, workload.name, target.name, floorFor(target).name, "cpuMicros"
                    )
                )
            rows.append(row)
    return rows


def addedLatency(records: Sequence[RunRecord], workload: str, target: str) -> float | None:
    """
    The median over rounds of C{target}'s average latency minus direct's, in
    milliseconds.
    """
    mine = _byRound(records, workload, target)
    direct = _byRound(records, workload, DIRECT)
    added = []
    for round in sorted(mine.keys() & direct.keys()):
        latency, base = mine[round].latencyMs, direct[round].latencyMs
        if latency is not None and base is not None:
            added.append(latency - base)
    return median(added)


@dataclass(frozen=True)
class Check:
    """
    One of the issue's targets, judged: C{ok} is C{None} when it could not
    be measured.
    """

    name: str
    value: float | None
    limit: float
    ok: bool | None
    atLeast: bool = False


def _check(name: str, value: float | None, limit: float, atLeast: bool = False) -> Check:
    """
    Judge C{value} against C{limit}: at least (TPS ratios) or at most.
    """
    ok = None if value is None else (value >= limit if atLeast else value <= limit)
    return Check(name, value, limit, ok, atLeast)


@dataclass
class Latencies:
    """
    The 1-client latency over direct, per pipeline: PgBouncer's and
    pgtwist's median added milliseconds.
    """

    pipeline: str
    pgbouncer: float | None
    pgtwist: float | None
    #: Which pgtwist: C{pgtwist} (CPython) or C{pgtwist-pypy}.
    label: str = PGTWIST

    @property
    def ratio(self) -> float | None:
        """
        pgtwist's added latency over PgBouncer's (C{None} when either is
        missing or PgBouncer added nothing measurable).
        """
        if self.pgtwist is None or self.pgbouncer is None or self.pgbouncer <= 0:
            return None
        return self.pgtwist / self.pgbouncer


def poolerLabel(target: str) -> str:
    """
    Which pooler a target name stands for, without its pipeline:
    C{pgtwist}, C{pgtwist-pypy}.
    """
    return target.split("/")[0]


def latencyTable(records: Sequence[RunRecord], workloads: Sequence[Workload]) -> list[Latencies]:
    """
    L{Latencies} for every pipeline of the L{LATENCY} workloads, for pgtwist
    and for each other single-worker pgtwist the records hold (on PyPy).
    """
    found = []
    for workload in workloads:
        if workload.kind != LATENCY:
            continue
        for pipeline in workload.pipelines:
            main = Target(PGTWIST, pipeline).name
            others = sorted(
                {
                    r.target
                    for r in records
                    if r.workload == workload.name
                    and r.pooler == PGTWIST
                    and r.pipeline == pipeline
                    and r.workers == 1
                }
                - {main}
            )
            bouncer = addedLatency(records, workload.name, Target(PGBOUNCER, pipeline).name)
            for name in [main, *others]:
                found.append(
                    Latencies(
                        pipeline,
                        bouncer,
                        addedLatency(records, workload.name, name),
                        poolerLabel(name),
                    )
                )
    return found


@dataclass(frozen=True)
class TlsShare:
    """
    A pgtwist target's TPS ratio to PgBouncer in a TLS workload beside the
    same ratio in the plain workload it varies.

    @ivar workload: The TLS workload's name.
    @ivar target: The pgtwist target's name.
    @ivar plain: C{÷PgB} in the plain workload (C{None}: not measured).
    @ivar tls: C{÷PgB} in the TLS workload (C{None}: not measured).
    """

    workload: str
    target: str
    pipeline: str | None
    plain: float | None
    tls: float | None

    @property
    def share(self) -> float | None:
        """
        The TLS ratio over the plain ratio: 1.00 when TLS costs pgtwist as
        much as it costs PgBouncer, 0.85 when the ratio is 15% lower.
        """
        if self.plain is None or self.tls is None or self.plain <= 0:
            return None
        return self.tls / self.plain


def tlsShares(rows: Sequence[Row], workloads: Sequence[Workload]) -> list[TlsShare]:
    """
    A L{TlsShare} for each single-worker pgtwist row of every TLS workload
    whose plain workload is in the run (it is a ratio of the two medians
    the table shows, so that it can be read off the table).
    """
    plainOf = {w.name: plainName(w) for w in workloads if w.tls}
    return [
        TlsShare(row.workload, row.target, row.pipeline, plain, row.vsPgbouncer)
        for row, plain in _variantRows(rows, workloads, plainOf, "vsPgbouncer")
    ]


@dataclass(frozen=True)
class AuthQueryCost:
    """
    A pgtwist target's CPU per transaction in an auth_query C{-C} workload
    (every transaction a login looked up with C{auth_query} and logged in
    by pass-through) beside the same in its plain workload (the vault).

    @ivar vault: CPU µs per transaction in the plain workload.
    @ivar authQuery: CPU µs per transaction in the auth_query workload.
    """

    workload: str
    target: str
    pipeline: str | None
    vault: float | None
    authQuery: float | None

    @property
    def ratio(self) -> float | None:
        """
        The auth_query figure over the vault's.
        """
        if self.vault is None or self.authQuery is None or self.vault <= 0:
            return None
        return self.authQuery / self.vault


def authQueryCosts(rows: Sequence[Row], workloads: Sequence[Workload]) -> list[AuthQueryCost]:
    """
    An L{AuthQueryCost} for each single-worker pgtwist row of every
    auth_query workload whose plain workload is in the run.
    """
    plainOf = {w.name: plainName(w) for w in workloads if w.authQuery}
    return [
        AuthQueryCost(row.workload, row.target, row.pipeline, plain, row.cpuMicros)
        for row, plain in _variantRows(rows, workloads, plainOf, "cpuMicros")
    ]


def _variantRows(
    rows: Sequence[Row],
    workloads: Sequence[Workload],
    plainOf: Mapping[str, str | None],
    field: str,
) -> list[tuple[Row, float | None]]:
    """
    Each single-worker pgtwist row of a variant workload (a key of
    C{plainOf}) whose plain workload ran, with C{field} of the same
    target's row in the plain workload (C{None}: not measured).
    """
    names = {w.name for w in workloads}
    byName = {(row.workload, row.target): row for row in rows}
    found = []
    for row in rows:
        plain = plainOf.get(row.workload)
        if plain is None or plain not in names or row.pooler != PGTWIST or "-w" in row.target:
            continue
        other = byName.get((plain, row.target))
        found.append((row, getattr(other, field) if other is not None else None))
    return found


def checkTargets(
    rows: Sequence[Row],
    workloads: Sequence[Workload],
    latencies: Sequence[Latencies],
    memory: Mapping[str, float | None],
) -> list[Check]:
    """
    The issue's targets for a single-worker pgtwist: TPS ratio to PgBouncer
    on every select-only and C{-C} row, CPU per transaction on every row
    PgBouncer also ran, each TLS workload's ratio to PgBouncer against its
    plain workload's (L{tlsShares}), the 1-client added latency per
    pipeline, and memory per idle connection (C{memory}: KiB by
    L{poolerLabel}, C{None} where the step failed).
    """
    kinds = {w.name: w.kind for w in workloads}
    mine = [r for r in rows if r.pooler == PGTWIST and "-w" not in r.target]
    checks = [
        _check(
            f"TPS {poolerLabel(row.target)}/PgBouncer {row.workload} {row.pipeline}",
            row.vsPgbouncer,
            MIN_TPS_RATIO,
            atLeast=True,
        )
        for row in mine
        if kinds.get(row.workload) in (SELECT, CONNECT) and row.vsPgbouncer is not None
    ]
    checks += [
        _check(
            f"CPU/txn {poolerLabel(row.target)}/PgBouncer {row.workload} {row.pipeline}",
            row.cpuVsPgbouncer,
            MAX_CPU_RATIO,
        )
        for row in mine
        if row.cpuVsPgbouncer is not None
    ]
    checks += [
        _check(
            f"TLS ÷PgB over plain ÷PgB {poolerLabel(share.target)} {share.workload} "
            f"{share.pipeline}",
            share.share,
            MIN_TLS_SHARE,
            atLeast=True,
        )
        for share in tlsShares(rows, workloads)
    ]
    checks += [
        _check(
            f"login CPU auth_query/vault {poolerLabel(cost.target)} {cost.workload} "
            f"{cost.pipeline}",
            cost.ratio,
            MAX_AUTH_QUERY_CPU_RATIO,
        )
        for cost in authQueryCosts(rows, workloads)
    ]
    checks += [
        _check(
            f"1-client added latency {latency.label}/PgBouncer {latency.pipeline}",
            latency.ratio,
            MAX_ADDED_LATENCY_RATIO,
        )
        for latency in latencies
    ]
    checks += [
        _check(
            "memory KiB per idle client connection" + ("" if label == PGTWIST else f" ({label})"),
            kib,
            MAX_KIB_PER_CONNECTION,
        )
        for label, kib in memory.items()
    ]
    return checks


def checkFloorTargets(rows: Sequence[Row], workloads: Sequence[Workload]) -> list[Check]:
    """
    Issue 15's targets for a single-worker pgtwist on the select-only
    workloads: CPU per transaction at most L{MAX_FLOOR_RATIO} times the
    relay floor's on its runtime, in each pipeline; on PyPy, TPS at least
    L{MIN_PYPY_TPS_RATIO} of PgBouncer's in both pipelines; on CPython,
    TPS at least L{MIN_CPYTHON_TPS_RATIO} of PgBouncer's in transaction
    pooling for the simple and extended query modes.

    A row without the ratio (no floor or PgBouncer run beside it) is left
    out, as in L{checkTargets}.
    """
    modes = {w.name: queryMode(w) for w in workloads if w.kind == SELECT}
    mine = [r for r in rows if r.pooler == PGTWIST and "-w" not in r.target and r.workload in modes]
    pypy = {Target(PGTWIST, p, runtime=PYPY).name for p in (SESSION, TRANSACTION)}
    checks = [
        _check(
            f"CPU/txn {poolerLabel(row.target)}/floor {row.workload} {row.pipeline}",
            row.cpuVsFloor,
            MAX_FLOOR_RATIO[row.pipeline],
        )
        for row in mine
        if row.cpuVsFloor is not None and row.pipeline in MAX_FLOOR_RATIO
    ]
    checks += [
        _check(
            f"TPS {poolerLabel(row.target)}/PgBouncer {row.workload} {row.pipeline}",
            row.vsPgbouncer,
            MIN_PYPY_TPS_RATIO,
            atLeast=True,
        )
        for row in mine
        if row.target in pypy and row.vsPgbouncer is not None
    ]
    cpython = Target(PGTWIST, TRANSACTION).name
    checks += [
        _check(
            f"TPS {poolerLabel(row.target)}/PgBouncer {row.workload} {row.pipeline}",
            row.vsPgbouncer,
            MIN_CPYTHON_TPS_RATIO[modes[row.workload] or "simple"],
            atLeast=True,
        )
        for row in mine
        if row.target == cpython
        and (modes[row.workload] or "simple") in MIN_CPYTHON_TPS_RATIO
        and row.vsPgbouncer is not None
    ]
    return checks


# -- rendering ----------------------------------------------------------------


def formatNumber(value: float | None, digits: int = 2, width: int = 0) -> str:
    """
    C{value} with C{digits} decimals (none from 1000 up: C{55476}), C{-}
    for C{None}, right-justified to C{width}.
    """
    if value is None:
        text = "-"
    elif abs(value) >= 1000:
        text = f"{value:.0f}"
    else:
        text = f"{value:.{digits}f}"
    return text.rjust(width)


@dataclass
class Table:
    """
    A plain-text table rendered as a reStructuredText simple table, so the
    same text reads in a terminal and in C{RESULTS.rst}.
    """

    headers: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    #: How many leading columns are left-aligned (names); the rest are numbers.
    textColumns: int = 1

    def render(self) -> str:
        """
        The table: header, C{=} rules, rows (the L{textColumns} first
        columns left-aligned, the others right-aligned).
        """
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
        rule = "  ".join("=" * w for w in widths)

        def line(cells: Sequence[str]) -> str:
            """
            One row, padded to the column widths.
            """
            parts = [
                cell.ljust(w) if i < self.textColumns else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(parts).rstrip()

        return "\n".join([rule, line(self.headers), rule, *map(line, self.rows), rule])


def renderRows(rows: Sequence[Row]) -> str:
    """
    The main table: per workload and target, median TPS and latency, the
    median per-round ratios, and the pooler's CPU per transaction.
    """
    table = Table(
        [
            "workload",
            "target",
            "n",
            "TPS",
            "lat ms",
            "÷PgB",
            "÷direct",
            "CPU µs/txn",
            "CPU ÷PgB",
            "CPU ÷floor",
        ],
        textColumns=2,
    )
    for row in rows:
        table.rows.append(
            [
                row.workload,
                row.target,
                str(row.rounds) + (f"!{row.failures}" if row.failures else ""),
                formatNumber(row.tps, 0),
                formatNumber(row.latencyMs, 3),
                formatNumber(row.vsPgbouncer),
                formatNumber(row.vsDirect),
                formatNumber(row.cpuMicros, 1),
                formatNumber(row.cpuVsPgbouncer),
                formatNumber(row.cpuVsFloor),
            ]
        )
    return table.render()


def renderLatencies(latencies: Sequence[Latencies]) -> str:
    """
    The 1-client latency added over direct, per pipeline and pooler.
    """
    table = Table(["1 client -S", "PgBouncer +ms", "pgtwist +ms", "pgtwist ÷PgB"])
    for latency in latencies:
        where = latency.pipeline
        if latency.label != PGTWIST:
            where += f" ({latency.label})"
        table.rows.append(
            [
                where,
                formatNumber(latency.pgbouncer, 4),
                formatNumber(latency.pgtwist, 4),
                formatNumber(latency.ratio),
            ]
        )
    return table.render()


def renderTlsShares(shares: Sequence[TlsShare]) -> str:
    """
    Per TLS workload and pgtwist target: the plain workload's C{÷PgB}, the
    TLS workload's, and the second over the first.
    """
    table = Table(["TLS workload", "target", "plain ÷PgB", "TLS ÷PgB", "TLS/plain"], textColumns=2)
    for share in shares:
        table.rows.append(
            [
                share.workload,
                share.target,
                formatNumber(share.plain),
                formatNumber(share.tls),
                formatNumber(share.share),
            ]
        )
    return table.render()


def renderAuthQueryCosts(costs: Sequence[AuthQueryCost]) -> str:
    """
    Per auth_query workload and pgtwist target: CPU µs per transaction (a
    login each) with the vault and with auth_query, and their ratio.
    """
    table = Table(
        ["auth_query workload", "target", "vault µs", "auth_query µs", "ratio"], textColumns=2
    )
    for cost in costs:
        table.rows.append(
            [
                cost.workload,
                cost.target,
                formatNumber(cost.vault, 0),
                formatNumber(cost.authQuery, 0),
                formatNumber(cost.ratio),
            ]
        )
    return table.render()


def renderChecks(checks: Sequence[Check]) -> str:
    """
    One line per target: C{PASS}, C{FAIL} or C{n/a}, the value and the limit.
    """
    lines = []
    for check in checks:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[check.ok]
        sign = "≥" if check.atLeast else "≤"
        value = formatNumber(check.value)
        lines.append(f"{verdict}  {check.name}: {value} (target {sign} {check.limit:g})")
    passed = sum(1 for c in checks if c.ok)
    failed = sum(1 for c in checks if c.ok is False)
    lines.append(f"{passed} of {len(checks)} targets met, {failed} missed.")
    return "\n".join(lines)
