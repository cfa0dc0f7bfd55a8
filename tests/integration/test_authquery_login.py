"""
Logins through pgtwist of users in no file of pgtwist's, checked against
the verifier auth_query reads and logged into PostgreSQL by pass-through.

Reuses the cluster and roles of L{tests.integration.test_authquery}.
"""

from __future__ import annotations

import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire import constants
from pgtwist.wire.sql import quoteIdentifier, quoteLiteral
from tests.integration.pooler import Pooler
from tests.integration.test_auth import refusal
from tests.integration.test_authquery import AUTH_USER, PASSWORD, USER
from tests.integration.test_authquery import cluster as cluster  # noqa: F401  (the fixture)

PIPELINES = ("session", "transaction", "performance")
METHODS = ("password", "md5", "scram-sha-256", "all")


def start(
    tmp_path_factory: pytest.TempPathFactory,
    cluster: PostgresCluster,
    method: str,
    pipeline: str,
    ttl: str = "0",
) -> Pooler:
    """
    A pgtwist whose only vault user is the auth user, looking every other
    user up with the documented SECURITY DEFINER function.
    """
    directory = tmp_path_factory.mktemp(f"aq-{method}-{pipeline}")
    return Pooler(
        directory,
        cluster,
        main={
            "auth_user": AUTH_USER,
            "auth_query": "SELECT * FROM pgtwist_auth.lookup($1)",
            "auth_dbname": "postgres",
            "pipeline": pipeline,
            "auth_query_cache_ttl": ttl,
        },
        hba=[f"host all all all {method}"],
        users={AUTH_USER: PASSWORD},
    ).start()


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("method", METHODS)
def test_loginThroughAuthQuery(
    tmp_path_factory: pytest.TempPathFactory, cluster: PostgresCluster, method: str, pipeline: str
) -> None:
    """
    A role in no file of pgtwist's logs in with its password, in every
    pipeline, and runs a query as itself.
    """
    pooler = start(tmp_path_factory, cluster, method, pipeline)
    try:
        with psycopg.connect(pooler.dsn(USER, PASSWORD, "postgres")) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (USER,)
    finally:
        pooler.stop()


@pytest.mark.parametrize("ttl", ["0", "300"])
@pytest.mark.parametrize("method", ["password", "md5", "scram-sha-256"])
def test_alterRolePassword(
    tmp_path_factory: pytest.TempPathFactory, cluster: PostgresCluster, method: str, ttl: str
) -> None:
    """
    After ALTER ROLE ... PASSWORD the new password works and the old one
    fails at the next login (with a cache and SCRAM: at the attempt after
    the first one that failed against the cached verifier).
    """
    pooler = start(tmp_path_factory, cluster, method, "session", ttl)
    try:
        with psycopg.connect(pooler.dsn(USER, PASSWORD, "postgres")):
            pass
        cluster.psql(f"ALTER ROLE {quoteIdentifier(USER)} PASSWORD 'changed-now';")
        if ttl != "0" and method in ("scram-sha-256", "md5"):
            # md5 switches to SCRAM for a SCRAM verifier: the server-first
            # message already carried the cached salt.
            refusal(pooler, USER, "changed-now", "postgres")
        with psycopg.connect(pooler.dsn(USER, "changed-now", "postgres")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        fields = refusal(pooler, USER, PASSWORD, "postgres")
        assert fields["C"] == constants.SQLSTATE_INVALID_PASSWORD
    finally:
        cluster.psql(f"ALTER ROLE {quoteIdentifier(USER)} PASSWORD {quoteLiteral(PASSWORD)};")
        pooler.stop()
