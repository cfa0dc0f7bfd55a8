"""
The authentication matrix through a real pgtwist process, both ways: every
client-side method of C{pgtwist_hba.conf} against every backend role of the
suite's cluster (whose own C{pg_hba.conf} methods differ), plus unknown
users, HBA C{reject}, no matching HBA line, and a cluster that changes its
mind about a role's method while pgtwist runs.

psycopg (libpq) checks the exact message text clients see; libpq reports no
SQLSTATE for a refused connection, so pg8000, which hands back every field of
the ErrorResponse, checks the SQLSTATE.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pg8000.exceptions
import pg8000.native
import psycopg
import pytest

from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire import codec, constants
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import AuthenticationRequest, StartupMessage
from pgtwist.wire.sql import quoteIdentifier, quoteLiteral
from tests.integration.conftest import ROLES, SHARED_DATABASE, clusterHba
from tests.integration.pooler import Pooler

#: The client-side methods of pgtwist_hba.conf (C{all}: what PostgreSQL asks).
CLIENT_METHODS = ("trust", "password", "md5", "scram-sha-256", "all")

#: A password no role has.
WRONG_PASSWORD = "not-the-right-one"

#: A role that is neither in the vault nor in the cluster.
UNKNOWN_USER = "pgt_nobody"

#: Every secret a log must never show.
SECRETS = tuple(password for password, _ in ROLES.values()) + (WRONG_PASSWORD,)


def vaultUsers() -> dict[str, str]:
    """
    The vault of every pooler here: each role of the cluster with its password.
    """
    return {name: password for name, (password, _) in ROLES.items()}


def effectiveMethod(clientMethod: str, role: str) -> str:
    """
    The method pgtwist uses toward the client: the HBA line's, or for C{all}
    (once a login of the pool has succeeded) the one the cluster uses for
    C{role}, except that where the cluster trusts pgtwist the client still
    proves the vault's password, with SCRAM.
    """
    if clientMethod == "all":
        method = ROLES[role][1]
        return "scram-sha-256" if method == "trust" else method
    return clientMethod


def refusal(pooler: Pooler, user: str, password: str | None, database: str) -> dict[str, str]:
    """
    Log in with pg8000, which must be refused, and return the fields of the
    ErrorResponse it got (C{"C"} is the SQLSTATE, C{"M"} the message).
    """
    with pytest.raises(pg8000.exceptions.DatabaseError) as info:
        pg8000.native.Connection(
            user,
            host="127.0.0.1",
            port=pooler.port,
            database=database,
            password=password,
            timeout=10,
        )
    fields: dict[str, str] = info.value.args[0]
    return fields


def libpqRefusal(pooler: Pooler, user: str, password: str | None, database: str) -> str:
    """
    Log in with psycopg, which must be refused, and return libpq's message.
    """
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(pooler.dsn(user, password, database))
    return str(info.value)


def firstAuthenticationRequest(pooler: Pooler, user: str, database: str) -> int:
    """
    Send a StartupMessage over a raw socket and return the code of the first
    AuthenticationRequest pgtwist answers with (it tells which method the
    client is asked for).
    """
    with socket.create_connection(("127.0.0.1", pooler.port), timeout=10) as sock:
        sock.sendall(codec.encode(StartupMessage({"user": user, "database": database})))
        framer = MessageFramer()
        while True:
            data = sock.recv(65536)
            assert data, "pgtwist closed the connection before asking for authentication"
            for type, body in framer.feed(data):
                message = codec.decodeBackend(type, body)
                assert isinstance(message, AuthenticationRequest), message
                return message.code


def assertNoSecrets(pooler: Pooler, secrets: tuple[str, ...] = SECRETS) -> None:
    """
    Neither pgtwist's log nor its standard output shows any of C{secrets}.
    """
    text = pooler.log() + (pooler.directory / "stdout.txt").read_text()
    for secret in secrets:
        assert secret not in text, f"the pgtwist log shows the secret {secret!r}"


@pytest.fixture(scope="module", params=CLIENT_METHODS)
def methodPooler(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pgCluster: PostgresCluster,
) -> Iterator[tuple[str, Pooler]]:
    """
    One pgtwist whose only HBA line uses one client method, shared by every
    case of that method; every role is in its vault and unknown users are
    refused.
    """
    method: str = request.param
    directory = tmp_path_factory.mktemp(f"auth-{method}")
    pooler = Pooler(
        directory,
        pgCluster,
        main={"allow_unknown_users": "off", "log_connections": "on"},
        hba=[f"host all all all {method}"],
        users=vaultUsers(),
    ).start()
    try:
        yield method, pooler
    finally:
        pooler.stop()


@pytest.mark.parametrize("role", sorted(ROLES))
def test_rightPassword(methodPooler: tuple[str, Pooler], role: str) -> None:
    """
    With the right password every client method logs every role in, whatever
    method PostgreSQL uses for that role behind pgtwist.
    """
    method, pooler = methodPooler
    password = ROLES[role][0]
    with psycopg.connect(pooler.dsn(role, password)) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (role, role)
    # And again in another database, through a backend logged in afresh.
    with psycopg.connect(pooler.dsn(role, password, SHARED_DATABASE)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)


@pytest.mark.parametrize("role", sorted(ROLES))
def test_wrongPassword(methodPooler: tuple[str, Pooler], role: str) -> None:
    """
    A wrong password is refused with PostgreSQL's own FATAL 28P01, except
    where the client method is C{trust}, which asks for no password at all:
    any password, or none, works there. Under C{all}, PostgreSQL trusting
    the role (from pgtwist's address) does not excuse the client.
    """
    method, pooler = methodPooler
    if method == "all":
        # What PostgreSQL asks is learnt from a login that succeeded.
        with psycopg.connect(pooler.dsn(role, ROLES[role][0])):
            pass
    if effectiveMethod(method, role) == "trust":
        for password in (WRONG_PASSWORD, None):
            with psycopg.connect(pooler.dsn(role, password)) as conn:
                assert conn.execute("SELECT current_user").fetchone() == (role,)
        return
    message = libpqRefusal(pooler, role, WRONG_PASSWORD, role)
    assert f'FATAL:  password authentication failed for user "{role}"' in message
    fields = refusal(pooler, role, WRONG_PASSWORD, role)
    assert (fields["V"], fields["C"]) == ("FATAL", "28P01")
    assert fields["M"] == f'password authentication failed for user "{role}"'


def test_clientMethodOnTheWire(methodPooler: tuple[str, Pooler]) -> None:
    """
    The client is asked for the HBA line's method; for C{all}, SCRAM until
    a login of the pool has succeeded, then the one PostgreSQL asks pgtwist
    for that role (SCRAM still where PostgreSQL trusts pgtwist).
    """
    method, pooler = methodPooler
    if method == "all":
        for role in sorted(ROLES):
            # template1: a database no test here logs into.
            code = firstAuthenticationRequest(pooler, role, "template1")
            assert code == constants.AUTH_SASL, role
            with psycopg.connect(pooler.dsn(role, ROLES[role][0])):
                pass
    codes = {
        "trust": constants.AUTH_OK,
        "password": constants.AUTH_CLEARTEXT_PASSWORD,
        "md5": constants.AUTH_MD5_PASSWORD,
        "scram-sha-256": constants.AUTH_SASL,
    }
    for role in sorted(ROLES):
        expected = codes[effectiveMethod(method, role)]
        assert firstAuthenticationRequest(pooler, role, role) == expected, role


def test_unknownUser(methodPooler: tuple[str, Pooler]) -> None:
    """
    With C{allow_unknown_users = off}, a user missing from the vault is
    refused: a password method runs its exchange and fails with FATAL 28P01,
    as PostgreSQL does for a role it does not know; C{trust} says the role
    does not exist (28000). C{all} does not ask PostgreSQL about a user it
    has no password for: it runs a SCRAM exchange and refuses with 28P01.
    """
    method, pooler = methodPooler
    if method == "all":
        assert firstAuthenticationRequest(pooler, UNKNOWN_USER, UNKNOWN_USER) == constants.AUTH_SASL
    if method == "trust":
        fields = refusal(pooler, UNKNOWN_USER, "whatever", SHARED_DATABASE)
        assert (fields["V"], fields["C"]) == ("FATAL", "28000")
        assert fields["M"] == f'role "{UNKNOWN_USER}" does not exist'
        return
    message = libpqRefusal(pooler, UNKNOWN_USER, "whatever", SHARED_DATABASE)
    assert f'FATAL:  password authentication failed for user "{UNKNOWN_USER}"' in message
    fields = refusal(pooler, UNKNOWN_USER, "whatever", SHARED_DATABASE)
    assert (fields["V"], fields["C"]) == ("FATAL", "28P01")
    assert fields["M"] == f'password authentication failed for user "{UNKNOWN_USER}"'


def test_noSecretsLogged(methodPooler: tuple[str, Pooler]) -> None:
    """
    After the successes and failures above (this test runs after them, in
    file order), the debug-level log records the logins and the failures but
    none of the passwords, right or wrong.
    """
    method, pooler = methodPooler
    # Make sure there is something to look at even if run alone.
    role = "pgt_md5"
    with psycopg.connect(pooler.dsn(role, ROLES[role][0])) as conn:
        conn.execute("SELECT 1")
    if method != "trust":
        libpqRefusal(pooler, role, WRONG_PASSWORD, role)
    log = pooler.log()
    assert f"Connection from 127.0.0.1 for ('{role}', '{role}')" in log
    if method != "trust":
        assert "Authentication of 'pgt_md5' for 'pgt_md5' from 127.0.0.1 failed" in log
    assertNoSecrets(pooler)


@pytest.fixture(scope="module")
def rulesPooler(
    tmp_path_factory: pytest.TempPathFactory, pgCluster: PostgresCluster
) -> Iterator[Pooler]:
    """
    A pgtwist whose HBA rejects C{pgt_password}, admits C{pgt_md5} only to its
    own database and C{pgt_scram} only from 127.0.0.1, and nothing else.
    """
    pooler = Pooler(
        tmp_path_factory.mktemp("auth-rules"),
        pgCluster,
        main={"allow_unknown_users": "off"},
        hba=[
            "host all pgt_password all reject",
            "host pgt_md5 pgt_md5 all md5",
            "host all pgt_scram 127.0.0.1/32 scram-sha-256",
        ],
        users=vaultUsers(),
    ).start()
    try:
        yield pooler
    finally:
        pooler.stop()


def test_hbaReject(rulesPooler: Pooler) -> None:
    """
    A C{reject} line refuses at once with PostgreSQL's FATAL 28000 wording,
    even with the right password.
    """
    role = "pgt_password"
    expected = (
        f'pg_hba.conf rejects connection for host "127.0.0.1", user "{role}", '
        f'database "{SHARED_DATABASE}", no encryption'
    )
    message = libpqRefusal(rulesPooler, role, ROLES[role][0], SHARED_DATABASE)
    assert f"FATAL:  {expected}" in message
    fields = refusal(rulesPooler, role, ROLES[role][0], SHARED_DATABASE)
    assert (fields["V"], fields["C"], fields["M"]) == ("FATAL", "28000", expected)
    assertNoSecrets(rulesPooler)


def test_noHbaEntry(rulesPooler: Pooler) -> None:
    """
    A client no line matches (wrong database, unknown user) is refused with
    FATAL 28000 C{no pg_hba.conf entry ...}; a matching one still gets in.
    """
    for user, database in (("pgt_md5", SHARED_DATABASE), (UNKNOWN_USER, UNKNOWN_USER)):
        expected = (
            f'no pg_hba.conf entry for host "127.0.0.1", user "{user}", '
            f'database "{database}", no encryption'
        )
        message = libpqRefusal(rulesPooler, user, "whatever", database)
        assert f"FATAL:  {expected}" in message
        fields = refusal(rulesPooler, user, "whatever", database)
        assert (fields["V"], fields["C"], fields["M"]) == ("FATAL", "28000", expected)
    with psycopg.connect(rulesPooler.dsn("pgt_md5", ROLES["pgt_md5"][0])) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("pgt_md5",)
    with psycopg.connect(rulesPooler.dsn("pgt_scram", ROLES["pgt_scram"][0], "postgres")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("pgt_scram",)
    assertNoSecrets(rulesPooler)


#: A role of this module's own, whose stored password and pg_hba.conf method
#: the test below changes.
SWITCH_ROLE = "pgt_switch"
SWITCH_PASSWORD = "switch-secret"


def _storePassword(cluster: PostgresCluster, encryption: str) -> None:
    """
    (Re)store L{SWITCH_ROLE}'s password hashed with C{encryption}.
    """
    cluster.psql(
        f"SET password_encryption = {quoteLiteral(encryption)};\n"
        f"ALTER ROLE {quoteIdentifier(SWITCH_ROLE)} PASSWORD {quoteLiteral(SWITCH_PASSWORD)};\n"
    )


def test_backendMethodChanges(tmp_path: Path, pgCluster: PostgresCluster) -> None:
    """
    PostgreSQL moves a role from md5 to SCRAM (pg_hba.conf and stored
    verifier, as an operator migrating would) and on to C{password} and
    C{trust} while pgtwist runs: each new backend login answers whatever the
    server asks, and with the client method C{all} the client is asked for
    the same thing once a login of the pool has succeeded, except that
    PostgreSQL's C{trust} still asks the client for the vault's password
    (with SCRAM).
    """
    pgCluster.createRole(SWITCH_ROLE, SWITCH_PASSWORD, "md5")
    pooler = Pooler(
        tmp_path,
        pgCluster,
        main={"allow_unknown_users": "off"},
        hba=[f"host all {SWITCH_ROLE} all all"],
        users={SWITCH_ROLE: SWITCH_PASSWORD},
    )
    # One database per phase, so that each phase logs a fresh backend in.
    phases = [
        ("md5", "md5", "postgres", constants.AUTH_MD5_PASSWORD),
        ("scram-sha-256", "scram-sha-256", SHARED_DATABASE, constants.AUTH_SASL),
        ("scram-sha-256", "password", "template1", constants.AUTH_CLEARTEXT_PASSWORD),
        ("md5", "trust", "pgt_trust", constants.AUTH_SASL),
    ]
    try:
        pooler.start()
        for encryption, method, database, code in phases:
            _storePassword(pgCluster, encryption)
            pgCluster.setHba(clusterHba() + [f"host all {SWITCH_ROLE} 127.0.0.1/32 {method}"])
            with psycopg.connect(pooler.dsn(SWITCH_ROLE, SWITCH_PASSWORD, database)) as conn:
                row = conn.execute("SELECT current_user, current_database()").fetchone()
                assert row == (SWITCH_ROLE, database), method
            assert firstAuthenticationRequest(pooler, SWITCH_ROLE, database) == code, method
            message = libpqRefusal(pooler, SWITCH_ROLE, WRONG_PASSWORD, database)
            assert f'password authentication failed for user "{SWITCH_ROLE}"' in message
        # The backends logged in by every phase are still pooled and usable;
        # the client is asked for what PostgreSQL asked when each was opened.
        for _, _, database, _ in phases:
            with psycopg.connect(pooler.dsn(SWITCH_ROLE, SWITCH_PASSWORD, database)) as conn:
                assert conn.execute("SELECT current_user").fetchone() == (SWITCH_ROLE,)
    finally:
        pooler.stop()
        pgCluster.setHba(clusterHba())
        pgCluster.psql(f"DROP ROLE IF EXISTS {quoteIdentifier(SWITCH_ROLE)};")
    assertNoSecrets(pooler, SECRETS + (SWITCH_PASSWORD,))
