"""
Fixtures for the integration suite: one throwaway PostgreSQL cluster for the
whole test session, with a role per authentication method.

A missing PostgreSQL makes the fixture raise, which pytest reports as a
setup error: these tests are never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pgtwist.testing.embedded import PostgresCluster, hbaForRoles
from pgtwist.wire.sql import quoteIdentifier

_HERE = Path(__file__).parent

ROLES: dict[str, tuple[str, str]] = {
    "pgt_scram": ("scram-secret", "scram-sha-256"),
    "pgt_md5": ("md5-secret", "md5"),
    "pgt_password": ("plain-secret", "password"),
    "pgt_trust": ("trust-secret", "trust"),
}
"""
Role name to (password, pg_hba.conf method). Each role owns a database of
the same name.
"""

SHARED_DATABASE = "pgtwist_test"
"""
A database owned by the superuser that every role in L{ROLES} may connect to.
"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """
    Mark every test under C{tests/integration} with C{integration}, so that
    C{-m "not integration"} selects the tests that need no server.

    Hooks in a conftest see every collected item, so filter by path.
    """
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.integration)


def clusterHba() -> list[str]:
    """
    The session cluster's C{pg_hba.conf} lines: trust on the unix socket,
    each role's own method over loopback TCP.
    """
    return ["local all all trust"] + hbaForRoles(
        {name: method for name, (password, method) in ROLES.items()}
    )


@pytest.fixture(scope="session")
def pgCluster() -> Iterator[PostgresCluster]:
    """
    Start one PostgreSQL cluster for the session, with the L{ROLES}, their
    databases, L{SHARED_DATABASE} and per-role HBA methods; stop it at the
    end.
    """
    cluster = PostgresCluster()
    cluster.start()
    try:
        for name, (password, method) in ROLES.items():
            cluster.createRole(name, password, method)
            cluster.createDatabase(name, owner=name)
        cluster.createDatabase(SHARED_DATABASE, owner=cluster.superuser)
        grantees = ", ".join(quoteIdentifier(name) for name in ROLES)
        cluster.psql(f"GRANT CONNECT ON DATABASE {quoteIdentifier(SHARED_DATABASE)} TO {grantees};")
        cluster.setHba(clusterHba())
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pgRoles(pgCluster: PostgresCluster) -> dict[str, tuple[str, str]]:
    """
    The session cluster's roles: C{{name: (password, method)}}.
    """
    return dict(ROLES)
