"""
auth_query against a real PostgreSQL: the query runner and the lookup
in-process (each test on a reactor of its own, over the cluster's unix
socket, where the cluster trusts every role), then through a real pgtwist
process for what a client sees.

The two auth_query CVEs PgBouncer fixed must not be reproducible:
CVE-2025-2291 (a role past its C{VALID UNTIL} still got a verifier) and
CVE-2025-12819 (an object earlier in the search_path took the place of
C{pg_authid}). And a user name is only ever a bound parameter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.selectreactor import SelectReactor
from twisted.python.failure import Failure

from pgtwist.config.authquery import DEFAULT_AUTH_QUERY, AuthQuerySettings
from pgtwist.config.model import Configuration, MainSettings, ServerSettings, UserEntry
from pgtwist.config.verifiers import ScramSecret, parseVerifier
from pgtwist.net.authquery import AuthQueryConnections, AuthQueryFailed, UserLookup
from pgtwist.testing.embedded import PostgresCluster, hbaForRoles
from pgtwist.wire import constants
from pgtwist.wire.sql import quoteIdentifier, quoteLiteral
from tests.integration.conftest import clusterHba
from tests.integration.pooler import Pooler, freePort
from tests.integration.test_auth import refusal
from tests.integration.test_metrics import key, scrape

#: The roles of this module: name -> SQL options after the password.
PASSWORD = "aq-secret"
USER = "pgt_aq_user"
EXPIRED = "pgt_aq_expired"
NOLOGIN = "pgt_aq_nologin"
#: A real role whose name is full of SQL: it must be found by its name,
#: and nothing in it may act as SQL.
ODD = "pgt_aq_o'brien\"; SELECT $1; --"
#: The auth user of the PgBouncer form: no superuser.
AUTH_USER = "pgt_aq_auth"

#: The SECURITY DEFINER function docs/configuration.rst recommends.
LOOKUP_FUNCTION = """
CREATE SCHEMA pgtwist_auth;
CREATE FUNCTION pgtwist_auth.lookup(username text, OUT rolname name, OUT rolpassword text)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT rolname, CASE WHEN rolvaliduntil < pg_catalog.now() THEN NULL ELSE rolpassword END
    FROM pg_catalog.pg_authid
    WHERE rolname = username AND rolcanlogin
$$;
REVOKE ALL ON FUNCTION pgtwist_auth.lookup(text) FROM PUBLIC;
"""


def _role(name: str, options: str) -> str:
    return f"CREATE ROLE {quoteIdentifier(name)} {options} PASSWORD {quoteLiteral(PASSWORD)};"


@pytest.fixture(scope="module")
def cluster(pgCluster: PostgresCluster) -> Iterator[PostgresCluster]:
    """
    The session cluster with this module's roles, the recommended lookup
    function, and a schema that shadows C{pg_authid} and C{now()} first in
    the auth user's search_path.
    """
    names = [USER, EXPIRED, NOLOGIN, ODD, AUTH_USER]
    pgCluster.psql(
        "SET password_encryption = 'scram-sha-256';\n"
        + _role(USER, "LOGIN")
        + _role(EXPIRED, "LOGIN VALID UNTIL '2001-01-01'")
        + _role(NOLOGIN, "NOLOGIN")
        + _role(ODD, "LOGIN")
        + _role(AUTH_USER, "LOGIN")
        + LOOKUP_FUNCTION
        + f"GRANT USAGE ON SCHEMA pgtwist_auth TO {quoteIdentifier(AUTH_USER)};\n"
        + "GRANT EXECUTE ON FUNCTION pgtwist_auth.lookup(text) "
        + f"TO {quoteIdentifier(AUTH_USER)};\n"
        # What an auth user reading pg_authid directly needs.
        + f"GRANT SELECT ON pg_catalog.pg_authid TO {quoteIdentifier(AUTH_USER)};\n"
        # CVE-2025-12819: objects named like the catalog's, first in the
        # auth user's search_path, giving a verifier of the attacker's.
        + f"CREATE SCHEMA shadow AUTHORIZATION {quoteIdentifier(AUTH_USER)};\n"
        + "CREATE TABLE shadow.pg_authid (rolname name, rolpassword text,"
        + " rolvaliduntil timestamptz, rolcanlogin bool);\n"
        + f"INSERT INTO shadow.pg_authid VALUES ({quoteLiteral(USER)}, 'md5"
        + "0" * 32
        + "', NULL, true);\n"
        + f"ALTER TABLE shadow.pg_authid OWNER TO {quoteIdentifier(AUTH_USER)};\n"
        + "CREATE FUNCTION shadow.now() RETURNS timestamptz LANGUAGE sql"
        + " AS $$ SELECT '1990-01-01'::timestamptz $$;\n"
        + f"ALTER ROLE {quoteIdentifier(AUTH_USER)} SET search_path = shadow, pg_catalog;\n",
    )
    pgCluster.setHba(
        clusterHba() + hbaForRoles({name: "scram-sha-256" for name in (USER, ODD, AUTH_USER)})
    )
    try:
        yield pgCluster
    finally:
        pgCluster.setHba(clusterHba())
        pgCluster.psql(
            "DROP SCHEMA pgtwist_auth CASCADE;\nDROP SCHEMA shadow CASCADE;\n"
            f"REVOKE SELECT ON pg_catalog.pg_authid FROM {quoteIdentifier(AUTH_USER)};\n"
            + "".join(f"DROP ROLE {quoteIdentifier(name)};\n" for name in names)
        )


def storedVerifier(cluster: PostgresCluster, name: str) -> str:
    """
    What PostgreSQL holds for C{name}.
    """
    return cluster.psql(
        f"SELECT rolpassword FROM pg_authid WHERE rolname = {quoteLiteral(name)}"
    ).strip()


def resolve(reactor: SelectReactor, d: Deferred[Any], timeout: float = 20.0) -> Any:
    """
    Run C{reactor} until C{d} fired; its result, or raise its failure.
    """
    results: list[Any] = []
    d.addBoth(results.append)
    deadline = time.monotonic() + timeout
    while not results and time.monotonic() < deadline:
        reactor.iterate(0.01)
    assert results, "no answer in time"
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


class Lookups:
    """
    A reactor, the query connections and a lookup for one test.
    """

    def __init__(self, cluster: PostgresCluster, **main: Any) -> None:
        self.reactor = SelectReactor()
        self.server = ServerSettings("primary", cluster.socketDir, cluster.port, True)
        self.connections = AuthQueryConnections(self.reactor, [])
        self.lookup = UserLookup(self.reactor, self.connections.run)
        self.config = Configuration(
            main=MainSettings(authQuery=DEFAULT_AUTH_QUERY, **main),
            servers=(self.server,),
            superuser=UserEntry(cluster.superuser, None),
        )

    def rows(self, settings: AuthQuerySettings, name: str) -> list[tuple[bytes | None, ...]]:
        """
        The rows of C{settings}' query for C{name}.
        """
        d: Deferred[list[tuple[bytes | None, ...]]] = Deferred()

        def then(outcome: Any) -> None:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)

        self.connections.run(self.server, None, settings, name, 10.0, then)
        rows: list[tuple[bytes | None, ...]] = resolve(self.reactor, d)
        return rows

    def find(self, settings: AuthQuerySettings, name: str) -> Any:
        """
        What the lookup finds for C{name}.
        """
        return resolve(self.reactor, self.lookup.lookup(self.config, settings, name))[0]

    def close(self) -> None:
        """
        Close the connections and let the reactor see them go.
        """
        self.connections.close()
        for _ in range(20):
            self.reactor.iterate(0.01)


@pytest.fixture
def lookups(cluster: PostgresCluster) -> Iterator[Lookups]:
    """
    A fresh L{Lookups}, closed after the test.
    """
    made = Lookups(cluster)
    try:
        yield made
    finally:
        made.close()


def asSuperuser(cluster: PostgresCluster, query: str = DEFAULT_AUTH_QUERY) -> AuthQuerySettings:
    """
    pgagroal's form: the superuser, in the C{postgres} database.
    """
    return AuthQuerySettings(query, cluster.superuser, "postgres")


def test_defaultQueryGivesVerifier(cluster: PostgresCluster, lookups: Lookups) -> None:
    """
    The default query gives the role's SCRAM verifier, as PostgreSQL
    stores it.
    """
    settings = asSuperuser(cluster)
    rows = lookups.rows(settings, USER)
    assert rows == [(USER.encode(), storedVerifier(cluster, USER).encode())]
    verifier = lookups.find(settings, USER)
    assert isinstance(verifier, ScramSecret)
    assert verifier == parseVerifier(storedVerifier(cluster, USER))


def test_expiredRoleNoVerifier(cluster: PostgresCluster, lookups: Lookups) -> None:
    """
    A role past its C{VALID UNTIL} gets no verifier (CVE-2025-2291), a
    NOLOGIN role and an unknown name no row.
    """
    settings = asSuperuser(cluster)
    assert lookups.rows(settings, EXPIRED) == [(EXPIRED.encode(), None)]
    assert lookups.find(settings, EXPIRED) is None
    assert lookups.rows(settings, NOLOGIN) == []
    assert lookups.rows(settings, "pgt_aq_nobody") == []
    assert lookups.lookup.outcomes["miss"] == 1


def test_injectionInert(cluster: PostgresCluster, lookups: Lookups) -> None:
    """
    Names full of quotes, semicolons and C{$1} are data: no row for the
    made-up ones, nothing dropped, and a real role with such a name is
    found by it.
    """
    settings = asSuperuser(cluster)
    for name in [
        f"{USER}' OR '1'='1",
        f"x'; DROP ROLE {USER}; --",
        "$1",
        f'{USER}"; SELECT 1; --',
        "' UNION SELECT rolname, rolpassword FROM pg_authid --",
    ]:
        assert lookups.rows(settings, name) == [], name
    assert storedVerifier(cluster, USER).startswith("SCRAM-SHA-256$")
    assert lookups.rows(settings, ODD) == [(ODD.encode(), storedVerifier(cluster, ODD).encode())]


def test_searchPathIgnored(cluster: PostgresCluster, lookups: Lookups) -> None:
    """
    The default query, run as an auth user whose search_path puts a
    C{pg_authid} table and a C{now()} of its own first, reads the catalog
    all the same (CVE-2025-12819): the real verifier, and still none for
    an expired role.
    """
    settings = AuthQuerySettings(DEFAULT_AUTH_QUERY, AUTH_USER, "postgres")
    assert lookups.rows(settings, USER) == [(USER.encode(), storedVerifier(cluster, USER).encode())]
    assert lookups.rows(settings, EXPIRED) == [(EXPIRED.encode(), None)]
    # The shadow really is there for an unqualified query.
    unqualified = AuthQuerySettings(
        "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1", AUTH_USER, "postgres"
    )
    assert lookups.rows(unqualified, USER) == [(USER.encode(), b"md5" + b"0" * 32)]


def test_securityDefinerFunction(cluster: PostgresCluster, lookups: Lookups) -> None:
    """
    The function docs/configuration.rst recommends gives a non-superuser
    auth user the verifier, and none for an expired role.
    """
    settings = AuthQuerySettings("SELECT * FROM pgtwist_auth.lookup($1)", AUTH_USER, "postgres")
    assert lookups.rows(settings, USER) == [(USER.encode(), storedVerifier(cluster, USER).encode())]
    assert lookups.rows(settings, EXPIRED) == [(EXPIRED.encode(), None)]
    assert lookups.rows(settings, f"{USER}' OR '1'='1") == []


def test_passwordChangeSeen(cluster: PostgresCluster, lookups: Lookups) -> None:
    """
    Without a cache (the default), the lookup after an C{ALTER ROLE ...
    PASSWORD} gives the new verifier, over the same connection.
    """
    settings = asSuperuser(cluster)
    before = lookups.find(settings, ODD)
    cluster.psql(f"ALTER ROLE {quoteIdentifier(ODD)} PASSWORD 'changed';")
    after = lookups.find(settings, ODD)
    assert after != before
    assert after == parseVerifier(storedVerifier(cluster, ODD))
    assert len(lookups.connections) == 1


def test_functionMissing(cluster: PostgresCluster, lookups: Lookups) -> None:
    """
    A query PostgreSQL refuses (a missing function) fails the lookup with
    28000, PostgreSQL's reason kept for the log.
    """
    settings = asSuperuser(cluster, "SELECT * FROM pgtwist_nowhere.lookup($1)")
    with pytest.raises(AuthQueryFailed) as info:
        lookups.find(settings, USER)
    assert info.value.error.code == constants.SQLSTATE_INVALID_AUTHORIZATION
    assert info.value.reason.startswith("3F000 ")


def test_permissionDenied(cluster: PostgresCluster, lookups: Lookups) -> None:
    """
    An auth user without the right to run the function fails the lookup
    with 28000.
    """
    cluster.psql(f"CREATE ROLE pgt_aq_weak LOGIN PASSWORD {quoteLiteral(PASSWORD)};")
    try:
        settings = AuthQuerySettings(
            "SELECT * FROM pgtwist_auth.lookup($1)", "pgt_aq_weak", "postgres"
        )
        with pytest.raises(AuthQueryFailed) as info:
            lookups.find(settings, USER)
        assert info.value.error.code == constants.SQLSTATE_INVALID_AUTHORIZATION
        assert info.value.reason.startswith("42501 ")
    finally:
        lookups.close()
        cluster.psql("DROP ROLE pgt_aq_weak;")


def test_serverDown(cluster: PostgresCluster) -> None:
    """
    No server listening: the lookup fails with 08006.
    """
    made = Lookups(cluster)
    down = ServerSettings("primary", "127.0.0.1", freePort(), True)
    made.config = Configuration(
        main=made.config.main, servers=(down,), superuser=made.config.superuser
    )
    try:
        with pytest.raises(AuthQueryFailed) as info:
            made.find(asSuperuser(cluster), USER)
        assert info.value.error.code == constants.SQLSTATE_CONNECTION_FAILURE
    finally:
        made.close()


def test_coalescedOverOneConnection(cluster: PostgresCluster, lookups: Lookups) -> None:
    """
    Concurrent lookups of one name share one query; other names pipeline
    on the same connection.
    """
    settings = asSuperuser(cluster)
    waiting = [lookups.lookup.lookup(lookups.config, settings, USER) for _ in range(5)]
    others = [lookups.lookup.lookup(lookups.config, settings, name) for name in (ODD, EXPIRED)]
    for d in waiting + others:
        resolve(lookups.reactor, d)
    assert lookups.lookup.outcomes["query"] == 2
    assert lookups.lookup.outcomes["miss"] == 1
    assert len(lookups.connections) == 1


# -- through pgtwist ---------------------------------------------------------


@pytest.fixture(scope="module")
def authQueryPooler(
    tmp_path_factory: pytest.TempPathFactory, cluster: PostgresCluster
) -> Iterator[Pooler]:
    """
    pgtwist with PgBouncer's form: C{auth_user} with the recommended
    function, in the C{postgres} database; HBA C{password}.
    """
    directory = tmp_path_factory.mktemp("authquery")
    pooler = Pooler(
        directory,
        cluster,
        main={
            "auth_user": AUTH_USER,
            "auth_query": "SELECT * FROM pgtwist_auth.lookup($1)",
            "auth_dbname": "postgres",
        },
        hba=["host all all all password"],
        users={AUTH_USER: PASSWORD},
    ).start()
    try:
        yield pooler
    finally:
        pooler.stop()


def test_unknownNameLikeWrongPassword(authQueryPooler: Pooler) -> None:
    """
    A name PostgreSQL does not know, an expired role and a wrong password
    all get 28P01 with the same message shape; the log shows no secret.
    """
    for user, password in [
        ("pgt_aq_nobody", PASSWORD),
        (EXPIRED, PASSWORD),
        (USER, "wrong"),
        (f"{USER}' OR '1'='1", PASSWORD),
    ]:
        fields = refusal(authQueryPooler, user, password, "postgres")
        assert fields["C"] == constants.SQLSTATE_INVALID_PASSWORD, user
        assert fields["M"] == f'password authentication failed for user "{user}"'
    log = authQueryPooler.log()
    assert PASSWORD not in log
    assert "SCRAM-SHA-256$" not in log


def test_pooledServerDown(tmp_path: Path, cluster: PostgresCluster) -> None:
    """
    With PostgreSQL unreachable, a login that needs auth_query gets 08006
    saying the lookup failed, and the log says why.
    """
    port = freePort()
    pooler = Pooler(
        tmp_path,
        cluster,
        main={"auth_user": AUTH_USER},
        hba=["host all all all password"],
        users={AUTH_USER: PASSWORD},
        serverSections=f"[primary]\nhost = 127.0.0.1\nport = {port}\nprimary = on\n",
    ).start()
    try:
        fields = refusal(pooler, USER, PASSWORD, "postgres")
        assert fields["C"] == constants.SQLSTATE_CONNECTION_FAILURE
        assert fields["M"] == (
            f'could not look up user "{USER}" for authentication: connection to server failed'
        )
        assert "auth_query for " in pooler.log()
    finally:
        pooler.stop()


def test_pgagroalForm(tmp_path: Path, cluster: PostgresCluster) -> None:
    """
    pgagroal's C{auth_query = on} runs the default query as the superuser
    of the C{-S} file: a role PostgreSQL knows is found (the metrics count
    a query), an expired one and an unknown name are misses, and all three
    get a wrong password's error for a wrong password.
    """
    metrics = freePort()
    pooler = Pooler(
        tmp_path,
        cluster,
        main={"auth_query": "on", "metrics": f"tcp:{metrics}:interface=127.0.0.1"},
        hba=["host all all all password"],
        # Over the unix socket, where the cluster trusts its superuser.
        serverSections=f"[primary]\nhost = {cluster.socketDir}\nport = {cluster.port}\n",
        superuser={cluster.superuser: "unused-over-the-socket"},
    ).start()
    try:
        for user in (USER, EXPIRED, "pgt_aq_nobody"):
            fields = refusal(pooler, user, "wrong", "postgres")
            assert fields["C"] == constants.SQLSTATE_INVALID_PASSWORD
        lookups = scrape(metrics)["pgtwist_auth_query_lookups_total"]
        assert lookups[key(outcome="query")] == 1
        assert lookups[key(outcome="miss")] == 2
        assert lookups[key(outcome="error")] == 0
    finally:
        pooler.stop()


def test_perDatabase(tmp_path: Path, cluster: PostgresCluster) -> None:
    """
    A databases-file line's C{key=value} words configure auth_query for
    its database alone: there the lookup runs (this one fails, and says
    so), elsewhere a user in no file gets a wrong password's error.
    """
    pooler = Pooler(
        tmp_path,
        cluster,
        hba=["host all all all password"],
        users={AUTH_USER: PASSWORD},
        limits=[f'postgres all 5 auth_user={AUTH_USER} auth_query="SELECT * FROM nowhere.f($1)"'],
    ).start()
    try:
        fields = refusal(pooler, USER, PASSWORD, "postgres")
        assert fields["C"] == constants.SQLSTATE_INVALID_AUTHORIZATION
        assert fields["M"].startswith(f'could not look up user "{USER}"')
        fields = refusal(pooler, USER, PASSWORD, "pgtwist_test")
        assert fields["C"] == constants.SQLSTATE_INVALID_PASSWORD
        assert "3F000" in pooler.log()
    finally:
        pooler.stop()
