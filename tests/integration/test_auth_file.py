"""
Users known only from an C{auth_file} (PgBouncer's format) with the
verifiers PostgreSQL keeps in C{pg_authid}: pgtwist checks clients against
them and logs into PostgreSQL by pass-through, with no plaintext password
anywhere, in every pipeline, with psycopg and psql, over TLS to PostgreSQL
too; a wrong password never reaches PostgreSQL; and a password changed with
C{ALTER ROLE} while the file stays stale gives clients a password failure,
never a hang.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pgtwist.config.authfile import formatAuthFile
from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire.sql import quoteIdentifier, quoteLiteral
from tests.integration.clients import adminConnect, backendsOf, waitFor
from tests.integration.pooler import BIN, Pooler
from tests.integration.test_server_tls import TlsInterceptor

#: Role to (password, how PostgreSQL stores and checks it).
ROLES = {
    "pgt_af_scram": ("af-scram-secret", "scram-sha-256"),
    "pgt_af_md5": ("af-md5-secret", "md5"),
}
#: Roles whose password the tests change, by how PostgreSQL stores it.
CHANGING = {"scram-sha-256": "pgt_af_change", "md5": "pgt_af_change_md5"}
OLD_PASSWORD = "af-old-secret"
NEW_PASSWORD = "af-new-secret"
WRONG_PASSWORD = "af-not-the-password"

PIPELINES = ("session", "transaction", "performance")


@pytest.fixture(scope="module")
def afCluster() -> Iterator[PostgresCluster]:
    """
    A PostgreSQL with TLS available, logging connections, with a SCRAM
    role, an md5 role and a role whose password changes.
    """
    cluster = PostgresCluster(ssl=True)
    cluster.start()
    try:
        for name, (password, method) in ROLES.items():
            cluster.createRole(name, password, method)
        for method, name in CHANGING.items():
            cluster.createRole(name, OLD_PASSWORD, method)
        cluster.setHba(
            ["local all all trust"]
            + [f"host all {name} 127.0.0.1/32 {method}" for name, (_, method) in ROLES.items()]
            + [f"host all {name} 127.0.0.1/32 {method}" for method, name in CHANGING.items()]
        )
        cluster.psql("ALTER SYSTEM SET log_connections = on;\nSELECT pg_reload_conf();\n")
        yield cluster
    finally:
        cluster.stop()


def verifier(cluster: PostgresCluster, role: str) -> str:
    """
    The role's verifier, copied from C{pg_authid} as an operator would.
    """
    return cluster.psql(
        f"SELECT rolpassword FROM pg_authid WHERE rolname = {quoteLiteral(role)};"
    ).strip()


def writeAuthFile(cluster: PostgresCluster, path: Path, roles: tuple[str, ...]) -> str:
    """
    Write an C{auth_file} of C{roles}' verifiers (mode 0600).
    """
    path.write_text(formatAuthFile({role: verifier(cluster, role) for role in roles}))
    os.chmod(path, 0o600)
    return str(path)


def postgresLog(cluster: PostgresCluster) -> str:
    """
    PostgreSQL's log so far.
    """
    assert cluster.logFile is not None
    with open(cluster.logFile, errors="replace") as f:
        return f.read()


def loginsOf(cluster: PostgresCluster, role: str) -> int:
    """
    How many connections for C{role} PostgreSQL received and got as far as
    authenticating (or failing to): its log lines naming the role.
    """
    return sum(
        1
        for line in postgresLog(cluster).splitlines()
        if f"user={role} " in line or f'for user "{role}"' in line
    )


@pytest.fixture
def afPooler(tmp_path: Path, afCluster: PostgresCluster) -> Iterator[Callable]:  # type: ignore[type-arg]
    """
    Start pgtwist with an C{auth_file} of every role and an empty vault
    (HBA C{all}: the verifier decides the method); stopped after the test,
    its log printed (pytest shows it on failure) and checked for secrets.
    """
    started: list[Pooler] = []

    def start(pipeline: str = "session", servers: str | None = None, **main: object) -> Pooler:
        directory = tmp_path / f"pooler{len(started)}"
        directory.mkdir()
        authFile = writeAuthFile(
            afCluster, directory / "auth_file.txt", (*ROLES, *CHANGING.values())
        )
        settings: dict[str, object] = {
            "auth_file": authFile,
            "pipeline": pipeline,
            "allow_unknown_users": "off",
        }
        settings.update(main)
        pooler = Pooler(
            directory,
            afCluster,
            main=settings,
            hba=["host all all all all"],
            users={},
            serverSections=servers,
        )
        started.append(pooler)
        return pooler.start()

    try:
        yield start
    finally:
        for pooler in started:
            pooler.stop()
            text = pooler.log() + (pooler.directory / "stdout.txt").read_text()
            print(text)
            secrets = [password for password, _ in ROLES.values()]
            secrets += [OLD_PASSWORD, NEW_PASSWORD, WRONG_PASSWORD]
            secrets += [verifier(afCluster, role) for role in ROLES]
            for secret in secrets:
                assert secret not in text, "the pgtwist log shows a password or a verifier"


def query(pooler: Pooler, role: str, password: str, sql: str = "SELECT current_user") -> object:
    """
    Log in through C{pooler} with psycopg and run C{sql}; return the value.
    """
    with psycopg.connect(pooler.dsn(role, password, "postgres"), autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def psql(cluster: PostgresCluster, pooler: Pooler, role: str, password: str) -> str:
    """
    Log in through C{pooler} with psql (libpq) and ask who we are.
    """
    result = subprocess.run(
        [
            cluster.program("psql"),
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            str(pooler.port),
            "-U",
            role,
            "-d",
            "postgres",
            "-c",
            "SELECT current_user",
        ],
        env=dict(os.environ, PGPASSWORD=password, PGSSLMODE="disable", PGCONNECT_TIMEOUT="10"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def refusal(pooler: Pooler, role: str, password: str) -> str:
    """
    The message libpq reports for a refused login through C{pooler}.
    """
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(pooler.dsn(role, password, "postgres"), autocommit=True).close()
    return str(caught.value)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_everyPipeline(
    afCluster: PostgresCluster,
    afPooler: Callable,  # type: ignore[type-arg]
    pipeline: str,
) -> None:
    """
    A SCRAM role and an md5 role known only by the verifiers copied from
    C{pg_authid} log in through pgtwist in each pipeline, with psycopg and
    psql, several times (the pool reuses and opens backends by
    pass-through); the vault is empty.
    """
    pooler = afPooler(pipeline)
    for role, (password, _) in ROLES.items():
        for _ in range(2):
            assert query(pooler, role, password) == role
            assert psql(afCluster, pooler, role, password) == role
    assert pooler.logCount("PostgreSQL refused") == 0


def test_wrongPasswordNeverReachesPostgres(
    afCluster: PostgresCluster,
    afPooler: Callable,  # type: ignore[type-arg]
) -> None:
    """
    A wrong password is refused by pgtwist with PostgreSQL's 28P01 wording,
    and PostgreSQL sees no connection for the role at all; the right
    password then reaches it (so the count does count).
    """
    pooler = afPooler("session")
    before: dict[str, int] = {}
    for role in ROLES:
        before[role] = loginsOf(afCluster, role)
        for _ in range(3):
            message = refusal(pooler, role, WRONG_PASSWORD)
            assert f'password authentication failed for user "{role}"' in message
        time.sleep(0.2)
        assert loginsOf(afCluster, role) == before[role]
    # The count of the role that logs in now, not of the last one checked.
    role, (password, _) = next(iter(ROLES.items()))
    assert query(pooler, role, password) == role
    waitFor(lambda: loginsOf(afCluster, role) > before[role])


def test_tlsChannelBinding(
    afCluster: PostgresCluster,
    afPooler: Callable,  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    """
    Pass-through works over TLS to PostgreSQL, with SCRAM-SHA-256-PLUS: a
    man in the middle with his own certificate makes PostgreSQL refuse the
    binding, which only SCRAM-SHA-256-PLUS checks.
    """
    role, (password, _) = next(iter(ROLES.items()))
    direct = afPooler(
        "session",
        servers=(
            f"[primary]\nhost = 127.0.0.1\nport = {afCluster.port}\nprimary = on\n"
            "server_tls_sslmode = require\n"
        ),
    )
    assert query(direct, role, password, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    interceptor = TlsInterceptor(afCluster, tmp_path / "interceptor")
    try:
        relayed = afPooler(
            "session",
            servers=(
                f"[primary]\nhost = 127.0.0.1\nport = {interceptor.port}\nprimary = on\n"
                "server_tls_sslmode = require\n"
            ),
        )
        message = refusal(relayed, role, password)
        assert "SCRAM channel binding check failed" in message, message
    finally:
        interceptor.close()


@pytest.mark.parametrize("method", sorted(CHANGING))
def test_passwordChangedFileStale(
    afCluster: PostgresCluster,
    afPooler: Callable,  # type: ignore[type-arg]
    method: str,
) -> None:
    """
    After C{ALTER ROLE ... PASSWORD} with the C{auth_file} left stale: the
    new password is refused by pgtwist (it checks against the file), and a
    client with the old password that needs a new backend gets PostgreSQL's
    28P01 at once, never a hang; the log says why, and the next attempt
    gets the same answer. For SCRAM pgtwist sees PostgreSQL's new salt and
    gives up itself; for md5 PostgreSQL refuses the stale hash.
    """
    role = CHANGING[method]
    pooler = afPooler("session")
    assert query(pooler, role, OLD_PASSWORD) == role
    afCluster.psql(
        f"SET password_encryption = {quoteLiteral(method)};\n"
        f"ALTER ROLE {quoteIdentifier(role)} PASSWORD {quoteLiteral(NEW_PASSWORD)};\n"
    )
    with adminConnect(afCluster) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
            (role,),
        )
        waitFor(lambda: not backendsOf(admin, role))
    message = refusal(pooler, role, NEW_PASSWORD)
    assert f'password authentication failed for user "{role}"' in message
    for _ in range(2):
        started = time.monotonic()
        message = refusal(pooler, role, OLD_PASSWORD)
        assert f'password authentication failed for user "{role}"' in message, message
        assert time.monotonic() - started < 5
    pooler.waitForLog("pass-through login .* is stale")
    # Directly, PostgreSQL takes the new password: only the file is stale.
    with psycopg.connect(afCluster.dsn(role, "postgres", NEW_PASSWORD), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)


def test_reloadAndPlaintext(
    afCluster: PostgresCluster,
    afPooler: Callable,  # type: ignore[type-arg]
) -> None:
    """
    The C{auth_file} is read again on SIGHUP: a user added to it can log in
    without a restart; a plaintext entry works as a vault password does.
    """
    pooler = afPooler("transaction")
    path = Path(pooler.directory / "auth_file.txt")
    role, (password, _) = next(iter(ROLES.items()))
    path.write_text(formatAuthFile({"pgt_af_md5": verifier(afCluster, "pgt_af_md5")}))
    pooler.reload()
    pooler.waitForLog("Configuration reloaded")
    assert f'password authentication failed for user "{role}"' in refusal(pooler, role, password)
    path.write_text(formatAuthFile({role: password}))
    pooler.reload()
    pooler.waitForLog("Configuration reloaded", count=2)
    time.sleep(0.2)
    assert query(pooler, role, password) == role


def test_importedFromPgBouncer(afCluster: PostgresCluster, tmp_path: Path) -> None:
    """
    PgBouncer's C{userlist.txt} (a verifier and a plaintext password)
    imported with C{pgtwist-admin import-auth-file}: the SCRAM role logs in
    by pass-through from the verifiers file, the md5 role with the vault
    password the import stored.
    """
    scram, (scramPassword, _) = "pgt_af_scram", ROLES["pgt_af_scram"]
    md5, (md5Password, _) = "pgt_af_md5", ROLES["pgt_af_md5"]
    userlist = tmp_path / "userlist.txt"
    userlist.write_text(
        "; exported from PgBouncer\n"
        f'"{scram}" "{verifier(afCluster, scram)}"\n'
        f'"{md5}" "{md5Password}"\n'
    )
    os.chmod(userlist, 0o600)
    directory = tmp_path / "pooler"
    directory.mkdir()
    verifiers = directory / "verifiers.txt"
    pooler = Pooler(
        directory,
        afCluster,
        main={"auth_file": str(verifiers), "allow_unknown_users": "off"},
        hba=["host all all all all"],
        users={},
    )
    result = subprocess.run(
        [
            str(BIN / "pgtwist-admin"),
            "-f",
            str(pooler.usersPath),
            "--verifiers",
            str(verifiers),
            "import-auth-file",
            str(userlist),
        ],
        env=pooler.environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    pooler.start()
    try:
        assert query(pooler, scram, scramPassword) == scram
        assert query(pooler, md5, md5Password) == md5
    finally:
        pooler.stop()
        print(pooler.log())
