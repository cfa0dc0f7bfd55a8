"""
C{make bench}: pgtwist against PgBouncer and direct PostgreSQL, in one run.

One throwaway PostgreSQL, one PgBouncer and one pgtwist with equivalent
settings, pgbench against each of them in interleaved rounds, and one table
of TPS, latency, per-round ratios and pooler CPU per transaction; plus a
memory step (idle client connections held by pgtwist). See
C{benchmarks/README.rst} for how to run it and how to read the table.

Modules:
  - L{benchmarks.results}: pure parsing, medians, ratios, target checks and
    the table (unit-tested in C{tests/unit/test_bench.py});
  - L{benchmarks.plan}: the workloads and targets of a run (pure);
  - L{benchmarks.servers}: configuration text and the PgBouncer and pgtwist
    processes;
  - L{benchmarks.client}: a minimal asyncio PostgreSQL client (warm-up
    logins, idle connections);
  - L{benchmarks.memory}: the idle-connection memory step;
  - L{benchmarks.floor}: the relay floor, an empty relay on pgtwist's
    reactor and eager writes run beside pgtwist (the C{floor} rows);
  - L{benchmarks.run}: the command line and the orchestration.
"""
