"""
A pgagroal installation switching to pgtwist without re-entering a
password: the users file and master key pgagroal wrote (1.x's AES-CBC and
2.1's AES-256-GCM) log users in through a real pgtwist, with pgagroal 2.x
main keys in its configuration; and C{pgtwist-admin import-pgagroal} turns
such a file into pgtwist's own vault.

The vault values were made with OpenSSL (see
C{tests/unit/fixtures/pgagroal_vault_vectors.sh}), not with pgtwist.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from pgtwist.config.vault import isPgagroalVault
from pgtwist.testing.embedded import PostgresCluster
from tests.integration.clients import waitFor
from tests.integration.conftest import ROLES
from tests.integration.pooler import BIN, Pooler
from tests.unit.test_vault_pgagroal import (
    CBC_MASTER_KEY,
    GCM_MASTER_KEY,
    GCM_MASTER_SALT,
    writePgagroalMasterKey,
)

#: pgagroal's users file for the suite's roles, per format: the master key,
#: its salt line (2.1 only) and each role's value.
VAULTS = {
    "1.x": (
        CBC_MASTER_KEY,
        None,
        {"pgt_scram": "PhBJFe2WydtyUQXk7Z0YEw==", "pgt_md5": "s7GevlEqoMmFYHG80OCcPg=="},
    ),
    "2.1": (
        GCM_MASTER_KEY,
        GCM_MASTER_SALT,
        {
            "pgt_scram": "oaKjpKWmp6ipqqusra6vsFTM5tU0bYathcjSe7q/3jcjqPvzmoB6g3HLs+fubqvn3ruRXMNHiOw=",
            "pgt_md5": "sbKztLW2t7i5uru8vb6/wB/IGOT5W6XfhDjAgmUONu4gWF7n2qA93YwCRPyaO5ltcM0JtZ3s",
        },
    ),
}

#: pgagroal 2.x main keys a pgagroal.conf may hold.
PGAGROAL2_KEYS = {
    "server_reset_query": "DISCARD ALL",
    "server_reset_query_always": "off",
    "startup_validation": "off",
    "connection_retry_delay": 250,
}


def pgagroalPooler(directory: Path, cluster: PostgresCluster, version: str) -> Pooler:
    """
    A pgtwist whose users file (C{-u}) and C{~/.pgagroal/master.key} are
    pgagroal's, as pgagroal C{version} wrote them.
    """
    directory.mkdir()
    key, salt, values = VAULTS[version]
    pooler = Pooler(directory, cluster, main=PGAGROAL2_KEYS, users={})
    pooler.usersPath.write_text("".join(f"{user}:{value}\n" for user, value in values.items()))
    writePgagroalMasterKey(key, salt, str(pooler.home / ".pgagroal" / "master.key"))
    return pooler


def assertLogsIn(pooler: Pooler) -> None:
    """
    Each role logs in through C{pooler} with its password and reaches its
    database as itself.
    """
    for user in ("pgt_scram", "pgt_md5"):
        with psycopg.connect(pooler.dsn(user, ROLES[user][0])) as connection:
            row = connection.execute("SELECT current_user").fetchone()
        assert row == (user,)


@pytest.mark.parametrize("version", sorted(VAULTS))
def test_pgagroalVault(pgCluster: PostgresCluster, tmp_path: Path, version: str) -> None:
    """
    pgagroal's users file and master key, as they are, log users in.
    """
    pooler = pgagroalPooler(tmp_path / "pooler", pgCluster, version).start()
    try:
        assertLogsIn(pooler)
    finally:
        pooler.stop()


def test_importPgagroal(pgCluster: PostgresCluster, tmp_path: Path) -> None:
    """
    C{pgtwist-admin import-pgagroal} writes pgtwist's vault from pgagroal's
    file; pgtwist then logs users in with it, pgagroal's key gone.
    """
    pooler = pgagroalPooler(tmp_path / "pooler", pgCluster, "2.1")
    source = tmp_path / "pgagroal_users.conf"
    os.replace(pooler.usersPath, source)
    result = subprocess.run(
        [str(BIN / "pgtwist-admin"), "-f", str(pooler.usersPath), "import-pgagroal", str(source)],
        env=pooler.environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert not isPgagroalVault(str(pooler.usersPath))
    os.unlink(pooler.home / ".pgagroal" / "master.key")
    pooler.start()
    try:
        assertLogsIn(pooler)
    finally:
        pooler.stop()


def test_serverResetQuery(pgCluster: PostgresCluster, tmp_path: Path) -> None:
    """
    pgagroal 2.x's C{server_reset_query} runs on a session-pooled backend
    given back, then C{DISCARD ALL}: the next client gets the same backend
    with the settings of the first gone.
    """
    pgCluster.psql(
        "DROP TABLE IF EXISTS pgtwist_reset_log; CREATE TABLE pgtwist_reset_log (n int); "
        "GRANT INSERT ON pgtwist_reset_log TO pgt_scram",
        database="pgt_scram",
    )
    pooler = pgagroalPooler(tmp_path / "pooler", pgCluster, "1.x")
    pooler.configPath.write_text(
        pooler.configPath.read_text().replace(
            "server_reset_query = DISCARD ALL",
            "pipeline = session\nserver_reset_query = INSERT INTO pgtwist_reset_log VALUES (1)",
        )
    )
    pooler.start()
    try:
        dsn = pooler.dsn("pgt_scram", ROLES["pgt_scram"][0])
        with psycopg.connect(dsn) as connection:
            connection.execute("SET application_name = 'first'")
            first = connection.execute("SELECT pg_backend_pid()").fetchone()

        def resets() -> int:
            out = pgCluster.psql("SELECT count(*) FROM pgtwist_reset_log", database="pgt_scram")
            return int(out.strip())

        waitFor(resets)
        with psycopg.connect(dsn) as connection:
            second = connection.execute(
                "SELECT pg_backend_pid(), current_setting('application_name')"
            ).fetchone()
        assert second is not None and first is not None
        assert second == (first[0], "")
        waitFor(lambda: resets() == 2)
    finally:
        pooler.stop()
        pgCluster.psql("DROP TABLE pgtwist_reset_log", database="pgt_scram")
