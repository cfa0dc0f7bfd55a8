"""
Read-only load spread over a primary and its standby, against the primary
alone: C{pgbench -S} through pgtwist in transaction pooling, once with one
server section, once with the primary and a C{pg_basebackup -R} standby
and C{target_session_attrs = any}, C{load_balance_hosts = round-robin}
(docs/configuration.rst, "Servers' roles, health checks and read
replicas").

Run on its own (C{make bench} does not run it)::

    .venv/bin/python -m benchmarks.replicas --duration 20 --clients 16

The spread only pays where the servers have cores of their own: on one
machine the primary, the standby, pgtwist and pgbench share the same CPUs,
and the row shows what the routing costs rather than what it gains.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence

from benchmarks import servers

ROLE = "bench"
DATABASE = "bench"


def parseArguments(argv: Sequence[str]) -> argparse.Namespace:
    """
    The command line: how long each run lasts, clients, pool size, scale.
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replicas")
    parser.add_argument("--duration", type=int, default=20, help="seconds per run")
    parser.add_argument("--clients", type=int, default=16, help="pgbench clients")
    parser.add_argument("--threads", type=int, default=2, help="pgbench threads")
    parser.add_argument("--pool", type=int, default=8, help="pgtwist max_connections")
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale")
    return parser.parse_args(argv)


def spreadConf(text: str, standbyPort: int) -> str:
    """
    L{servers.pgtwistConf}'s text with routing keys in the main section and
    a second server section, the standby.
    """
    routing = "target_session_attrs = any\nload_balance_hosts = round-robin\n"
    text = text.replace("\n[primary]\n", f"{routing}\n[primary]\n", 1)
    return text + f"\n[standby]\nhost = {servers.LOOPBACK}\nport = {standbyPort}\n"


def startPgtwist(
    credentials: servers.Credentials, pgPort: int, pool: int, standbyPort: int | None
) -> servers.RunningServer:
    """
    pgtwist in transaction pooling in front of the primary, and of the
    standby too when C{standbyPort} is given.
    """
    from pgtwist.config.vault import writeMasterKey, writeUsersFile

    directory = servers._privateDirectory("pgtwist-bench-replicas-")
    port = servers.pickLowPort()
    conf = os.path.join(directory, "pgtwist.conf")
    hba = os.path.join(directory, "pgtwist_hba.conf")
    users = os.path.join(directory, "pgtwist_users.conf")
    text = servers.pgtwistConf(port, pgPort, "transaction", pool)
    if standbyPort is not None:
        text = spreadConf(text, standbyPort)
    servers._writeFile(conf, text)
    servers._writeFile(hba, servers.pgtwistHba())
    masterKey = os.urandom(32).hex().encode()
    writeMasterKey(masterKey, os.path.join(directory, ".pgtwist", "master.key"))
    writeUsersFile(users, {credentials.user: credentials.password}, masterKey=masterKey)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["HOME"] = directory
    logPath = os.path.join(directory, "pgtwist.log")
    logFile = open(logPath, "wb")
    process = subprocess.Popen(
        [*servers.pgtwistCommand(), "-c", conf, "-a", hba, "-u", users],
        stdin=subprocess.DEVNULL, stdout=logFile, stderr=subprocess.STDOUT,
        cwd=directory, env=env, preexec_fn=servers.dieWithParent,
    )  # fmt: skip
    label = "pgtwist, primary + standby" if standbyPort else "pgtwist, primary alone"
    return servers._started(
        servers.RunningServer(label, process, port, logPath, directory, logFile)
    )


def pgbench(pgbenchPath: str, password: str, args: Sequence[str]) -> str:
    """
    Run pgbench with C{password}; its output, or C{RuntimeError}.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(PGPASSWORD=password, PGSSLMODE="disable", PGGSSENCMODE="disable")
    result = subprocess.run(
        [pgbenchPath, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env
    )
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{result.stderr[-2000:]}")
    return result.stdout


def tps(output: str) -> float:
    """
    The transactions per second pgbench reports (without connection time).
    """
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    if match is None:
        raise RuntimeError(f"no tps in pgbench's output:\n{output[-1000:]}")
    return float(match.group(1))


def main(argv: Sequence[str] | None = None) -> int:
    """
    Start the primary and its standby, run both rows, print them.
    """
    from pgtwist.testing.embedded import PostgresCluster, hbaForRoles

    options = parseArguments(sys.argv[1:] if argv is None else argv)
    primary = PostgresCluster(maxConnections=100)
    standby = PostgresCluster(maxConnections=100)
    rows: list[tuple[str, float, str]] = []
    try:
        primary.start()
        password = secrets.token_urlsafe(18)
        primary.createRole(ROLE, password, "scram-sha-256")
        primary.createDatabase(DATABASE, ROLE)
        primary.setHba(hbaForRoles({ROLE: "scram-sha-256"}))
        init = ["-i", "-q", "-s", str(options.scale)]
        init += ["-h", primary.host, "-p", str(primary.port), "-U", ROLE, DATABASE]
        pgbench(primary.pgbench, password, init)
        primary.psql("CHECKPOINT;")
        standby.startStandby(primary)
        credentials = servers.Credentials(ROLE, password, DATABASE, "", None, None)
        for standbyPort in (None, standby.port):
            server = startPgtwist(credentials, primary.port, options.pool, standbyPort)
            try:
                args = ["-S", "-n", "-c", str(options.clients), "-j", str(options.threads)]
                args += ["-h", servers.LOOPBACK, "-p", str(server.port), "-U", ROLE, DATABASE]
                pgbench(primary.pgbench, password, ["-T", "2", *args])  # warm-up
                time.sleep(0.5)
                output = pgbench(primary.pgbench, password, ["-T", str(options.duration), *args])
                # Where the pool's backends are (they outlive the run).
                query = f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{ROLE}';"
                where = "/".join(c.psql(query).strip() for c in (primary, standby))
                rows.append((server.name, tps(output), where))
            finally:
                server.stop()
    finally:
        standby.stop()
        primary.stop()
    print(f"pgbench -S, {options.clients} clients, pool {options.pool}, {options.duration}s:")
    for name, value, where in rows:
        print(f"  {name:30} {value:10.0f} tps  (backends on primary/standby: {where})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
