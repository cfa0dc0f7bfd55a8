"""
HBA as PostgreSQL reads it, against a running pgtwist and a real
PostgreSQL (issue 11, finding 6): rules match the database asked for
before aliases, lists and quoted names match, C{+group} membership is read
from PostgreSQL, and forms pgtwist cannot honour stop it from starting.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from tests.integration.pooler import Pooler

SCRAM, SCRAM_PW = "pgt_scram", "scram-secret"
MD5, MD5_PW = "pgt_md5", "md5-secret"
GROUP, MIDDLE = "pgt_hba_staff", "pgt_hba_mid"


@pytest.fixture
def groups(pgCluster: PostgresCluster) -> Iterator[None]:
    """
    A group role with C{pgt_scram} a member through another role.
    """
    pgCluster.psql(
        f"CREATE ROLE {GROUP} NOLOGIN; CREATE ROLE {MIDDLE} NOLOGIN IN ROLE {GROUP}; "
        f"GRANT {MIDDLE} TO {SCRAM};"
    )
    try:
        yield
    finally:
        pgCluster.psql(f"DROP ROLE {MIDDLE}; DROP ROLE {GROUP};")


@pytest.fixture
def pooler(tmp_path: Path, pgCluster: PostgresCluster, groups: None) -> Iterator[Pooler]:
    """
    pgtwist with PostgreSQL-style rules; role membership is read as
    C{pgt_scram} (the C{-S} file: any role may read C{pg_auth_members}).
    """
    pooler = Pooler(
        tmp_path,
        pgCluster,
        main={"pipeline": "session"},
        hba=(
            "host rep all all reject",
            'host "pgt_md5",elsewhere all all reject',
            f'host "all" {SCRAM} all reject',
            f"host all +{GROUP} all scram-sha-256",
            "host all all all reject",
        ),
        users={SCRAM: SCRAM_PW, MD5: MD5_PW},
        limits=(f"{SCRAM}=rep {SCRAM} 2",),
        superuser={SCRAM: SCRAM_PW},
    ).start()
    try:
        yield pooler
    except BaseException:
        print(pooler.log())
        raise
    finally:
        pooler.stop()


def connect(pooler: Pooler, user: str, password: str, database: str) -> psycopg.Connection:
    """
    A client connection through pgtwist.
    """
    return psycopg.connect(pooler.dsn(user, password, database), autocommit=True)


def test_groupMember(pooler: Pooler) -> None:
    """
    A member of the group (through another role) matches C{+group},
    despite the C{"all"} rule before it, which names a database C{all}.
    """
    with connect(pooler, SCRAM, SCRAM_PW, SCRAM) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (SCRAM,)


def test_aliasRejected(pooler: Pooler) -> None:
    """
    C{host rep all all reject} stops C{dbname=rep}, an alias of
    C{pgt_scram}.
    """
    with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects connection"):
        connect(pooler, SCRAM, SCRAM_PW, "rep")
    pooler.waitForLog(f"rejected by {pooler.hbaPath}:1")


def test_listAndQuotedName(pooler: Pooler) -> None:
    """
    A quoted name in a comma list matches; a non-member of the group
    reaches the final reject.
    """
    with pytest.raises(psycopg.OperationalError, match="rejects connection"):
        connect(pooler, MD5, MD5_PW, MD5)
    pooler.waitForLog(f"rejected by {pooler.hbaPath}:2")
    with pytest.raises(psycopg.OperationalError, match="rejects connection"):
        connect(pooler, MD5, MD5_PW, "pgtwist_test")
    pooler.waitForLog(f"rejected by {pooler.hbaPath}:5")


def test_unsupportedFormFailsTheLoad(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    A form pgtwist cannot honour stops it from starting, with path:line.
    """
    pooler = Pooler(
        tmp_path,
        pgCluster,
        hba=("host all all all all", "host all all all scram-sha-256 map=certmap"),
    )
    with pytest.raises(RuntimeError, match=r"pgtwist_hba.conf:2: option 'map' is not supported"):
        pooler.start()
