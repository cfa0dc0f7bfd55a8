"""
Clients that prove nothing get nothing, through a real pgtwist in front of
the suite's PostgreSQL (issue 11, findings 2 and 3):

* refused logins with random user and database names leave no pool, no
  console row, no metrics series and no memory behind them;
* the HBA method C{all} refuses an unknown user, an unknown database and a
  wrong password with the same FATAL 28P01, with no vault DETAIL, and never
  logs into PostgreSQL for a client that has not proven the password
  pgtwist holds, even where PostgreSQL trusts pgtwist's address.

The refused logins are made by a raw-socket client that answers SCRAM with
a proof it does not compute (no PBKDF2 on either side), several at a time,
so that ten thousand of them take seconds.
"""

from __future__ import annotations

import base64
import re
import secrets
import socket
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pg8000.exceptions
import pg8000.native
import psycopg
import pytest

from pgtwist.auth._scram import SCRAM_SHA_256
from pgtwist.testing.embedded import PostgresCluster
from pgtwist.wire import codec, constants
from pgtwist.wire.framing import MessageFramer
from pgtwist.wire.messages import (
    AuthenticationRequest,
    ErrorResponse,
    Message,
    PasswordMessage,
    StartupMessage,
)
from tests.integration.conftest import ROLES, SHARED_DATABASE, clusterHba
from tests.integration.pooler import Pooler, freePort

MIB = 1 << 20

ADMIN, ADMIN_PASSWORD = "root", "console-secret"

#: How many refused logins the bounded-state test makes, and how many at once.
REFUSED_LOGINS = 10_000
PARALLEL = 8

#: The console's HBA rules (SCRAM), ahead of the rule under test.
CONSOLE_HBA = (
    "host pgbouncer all all scram-sha-256",
    "host pgtwist all all scram-sha-256",
)

#: Matches the values of a metrics body (the series must not change).
_VALUES = re.compile(r" [0-9.e+-]+$", re.MULTILINE)


def vaultUsers() -> dict[str, str]:
    """
    Each role of the cluster with its password.
    """
    return {name: password for name, (password, _) in ROLES.items()}


class _Connection:
    """
    A raw client connection, read one backend message at a time.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.framer = MessageFramer()
        self.messages: list[Message] = []

    def send(self, message: Message) -> None:
        self.sock.sendall(codec.encode(message))

    def receive(self) -> Message:
        while not self.messages:
            data = self.sock.recv(65536)
            assert data, "pgtwist closed the connection"
            self.messages.extend(codec.decodeBackend(t, b) for t, b in self.framer.feed(data))
        return self.messages.pop(0)

    def close(self) -> None:
        self.sock.close()


def wrongScram(port: int, user: str, database: str) -> Message:
    """
    Log in as C{user} to C{database}, answer the SCRAM-SHA-256 challenge
    with a made-up proof, and return what pgtwist answered it with.
    """
    connection = _Connection(port)
    try:
        connection.send(StartupMessage({"user": user, "database": database}))
        request = connection.receive()
        assert isinstance(request, AuthenticationRequest), request
        assert request.code == constants.AUTH_SASL, request
        nonce = base64.b64encode(secrets.token_bytes(18))
        connection.send(codec.encodeSASLInitialResponse(SCRAM_SHA_256, b"n,,n=,r=" + nonce))
        serverFirst = connection.receive()
        assert isinstance(serverFirst, AuthenticationRequest), serverFirst
        assert serverFirst.code == constants.AUTH_SASL_CONTINUE, serverFirst
        attributes = dict(part.split(b"=", 1) for part in serverFirst.data.split(b","))
        proof = base64.b64encode(secrets.token_bytes(32))
        connection.send(PasswordMessage(b"c=biws,r=" + attributes[b"r"] + b",p=" + proof))
        return connection.receive()
    finally:
        connection.close()


def assertPasswordFailed(reply: Message, user: str) -> None:
    """
    C{reply} is PostgreSQL's refusal of a wrong password for C{user}, and
    nothing more (no DETAIL, no HINT).
    """
    assert isinstance(reply, ErrorResponse), reply
    assert dict(reply.fields) == {
        b"S": "FATAL",
        b"V": "FATAL",
        b"C": "28P01",
        b"M": f'password authentication failed for user "{user}"',
    }, reply


def refusal(pooler: Pooler, user: str, password: str | None, database: str) -> dict[str, str]:
    """
    Log in with pg8000, which must be refused; the ErrorResponse's fields.
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


def rss(pooler: Pooler) -> int:
    """
    The pgtwist process's resident set size now, in bytes (C{VmRSS}).
    """
    assert pooler.process is not None
    with open(f"/proc/{pooler.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/PID/status")


def metricsBody(port: int) -> str:
    """
    GET C{/metrics}.
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


def authFailures(body: str) -> float:
    """
    The value of C{pgtwist_auth_failure_total} in a metrics body.
    """
    match = re.search(r"^pgtwist_auth_failure_total ([0-9.e+]+)$", body, re.MULTILINE)
    assert match is not None, body
    return float(match.group(1))


def show(pooler: Pooler, what: str) -> list[tuple[object, ...]]:
    """
    The rows of the console's C{SHOW what}.
    """
    with psycopg.connect(pooler.dsn(ADMIN, ADMIN_PASSWORD, "pgbouncer"), autocommit=True) as conn:
        return conn.execute(f"SHOW {what}").fetchall()


@contextmanager
def runningPooler(directory: Path, cluster: PostgresCluster, method: str) -> Iterator[Pooler]:
    """
    A pgtwist with C{method} for every pool and an admin console;
    PostgreSQL also trusts its superuser from 127.0.0.1 (pgtwist's
    address), which the suite's cluster otherwise does not.
    """
    cluster.setHba(clusterHba() + [f"host all {cluster.superuser} 127.0.0.1/32 trust"])
    running = Pooler(
        directory,
        cluster,
        main={"metrics": freePort(), "log_level": "info"},
        hba=(*CONSOLE_HBA, f"host all all all {method}"),
        users=vaultUsers(),
        admins={ADMIN: ADMIN_PASSWORD},
    )
    try:
        yield running.start()
    except BaseException:
        print("---- pgtwist log ----")
        print(running.log()[-20000:])
        raise
    finally:
        running.stop()
        cluster.setHba(clusterHba())


@pytest.fixture
def pooler(tmp_path: Path, pgCluster: PostgresCluster) -> Iterator[Pooler]:
    """
    A L{runningPooler} with the HBA method C{all}.
    """
    with runningPooler(tmp_path, pgCluster, "all") as running:
        yield running


@pytest.mark.parametrize("method", ["scram-sha-256", "all"])
def test_refusedLoginsLeaveNothing(tmp_path: Path, pgCluster: PostgresCluster, method: str) -> None:
    """
    Through the HBA method C{method}, ten thousand refused logins with
    random user names, random database names, or both (a vault user with a random database and a wrong
    password included) leave the pools, C{SHOW USERS}, C{SHOW POOLS} and
    C{SHOW DATABASES} as they were, the C{/metrics} series unchanged (its
    size changes only by the digits of C{pgtwist_auth_failure_total}, which
    counts every one of them) and pgtwist's RSS within 5 MiB.
    """
    with runningPooler(tmp_path, pgCluster, method) as pooler:
        refuseMany(pooler)


def refuseMany(pooler: Pooler) -> None:
    """
    The body of L{test_refusedLoginsLeaveNothing}.
    """
    metricsPort = pooler.listenerPorts[0]
    # Something real in every view, and every code path of a refusal run
    # once before the baseline is taken.
    with psycopg.connect(pooler.dsn("pgt_scram", ROLES["pgt_scram"][0])) as conn:
        conn.execute("SELECT 1")

    def attempt(index: int) -> None:
        kind = index % 4
        user = "pgt_scram" if kind == 0 else f"u{secrets.token_hex(8)}"
        database = SHARED_DATABASE if kind == 1 else f"d{secrets.token_hex(8)}"
        assertPasswordFailed(wrongScram(pooler.port, user, database), user)

    def attemptAll(count: int) -> None:
        with ThreadPoolExecutor(PARALLEL) as pool:
            for _ in pool.map(attempt, range(count)):
                pass

    attemptAll(400)
    views = ("POOLS", "USERS", "DATABASES")
    before = {what: show(pooler, what) for what in views}
    metricsBefore = metricsBody(metricsPort)
    rssBefore = rss(pooler)
    started = time.monotonic()
    attemptAll(REFUSED_LOGINS)
    elapsed = time.monotonic() - started
    metricsAfter = metricsBody(metricsPort)
    rssAfter = rss(pooler)
    print(
        f"{REFUSED_LOGINS} refused logins in {elapsed:.1f}s, "
        f"RSS {rssBefore / MIB:.1f} -> {rssAfter / MIB:.1f} MiB"
    )
    for what in views:
        assert show(pooler, what) == before[what], what
    assert authFailures(metricsAfter) - authFailures(metricsBefore) == REFUSED_LOGINS
    assert _VALUES.sub("", metricsAfter) == _VALUES.sub("", metricsBefore)
    assert abs(len(metricsAfter) - len(metricsBefore)) <= 16
    assert rssAfter - rssBefore <= 5 * MIB, (rssBefore, rssAfter)


def test_allRefusesStrangersAlike(pooler: Pooler) -> None:
    """
    Under C{all}, before any login and after one: an unknown user, an
    unknown database and a wrong password all get PostgreSQL's FATAL
    28P01 for that user and nothing else (no vault DETAIL), from libpq's
    and pg8000's SCRAM too; once the password is proven, PostgreSQL's own
    errors reach the client (3D000 for a missing database). (The user is
    one PostgreSQL asks SCRAM of: for one it asks md5 of, the method asked
    changes to md5 once a login of that pool has succeeded; see
    L{test_md5OnceKnown}.)
    """
    user, password = "pgt_scram", ROLES["pgt_scram"][0]
    for _ in range(2):
        for who, database, given in (
            (user, user, "wrong"),
            (user, "pgt_no_such_database", "wrong"),
            ("pgt_no_such_user", user, "wrong"),
            ("pgt_no_such_user", "pgt_no_such_database", "wrong"),
        ):
            assertPasswordFailed(wrongScram(pooler.port, who, database), who)
            fields = refusal(pooler, who, given, database)
            assert fields == {
                "S": "FATAL",
                "V": "FATAL",
                "C": "28P01",
                "M": f'password authentication failed for user "{who}"',
            }, fields
        with psycopg.connect(pooler.dsn(user, password)) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (user,)
    fields = refusal(pooler, user, password, "pgt_no_such_database")
    assert (fields["C"], fields["M"]) == (
        "3D000",
        'database "pgt_no_such_database" does not exist',
    )
    assert "no password for user" not in str(fields)
    assert "Authentication of 'pgt_no_such_user'" in pooler.log()


def test_md5OnceKnown(pooler: Pooler) -> None:
    """
    Under C{all}, a client of a pool PostgreSQL asks md5 of runs SCRAM
    until a login of that pool has succeeded, and md5 after, so that
    clients without SCRAM keep working; a wrong md5 answer gets 28P01.
    """
    user, password = "pgt_md5", ROLES["pgt_md5"][0]
    assertPasswordFailed(wrongScram(pooler.port, user, user), user)
    with psycopg.connect(pooler.dsn(user, password)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (user,)
    connection = _Connection(pooler.port)
    try:
        connection.send(StartupMessage({"user": user, "database": user}))
        request = connection.receive()
        assert isinstance(request, AuthenticationRequest), request
        assert request.code == constants.AUTH_MD5_PASSWORD
        connection.send(PasswordMessage(b"md5" + b"0" * 32 + b"\0"))
        assertPasswordFailed(connection.receive(), user)
    finally:
        connection.close()
    fields = refusal(pooler, user, "wrong", user)
    assert (fields["C"], fields["M"]) == (
        "28P01",
        f'password authentication failed for user "{user}"',
    )


def test_postgresTrustIsNotForTheClient(pooler: Pooler, pgCluster: PostgresCluster) -> None:
    """
    PostgreSQL trusts 127.0.0.1, pgtwist's address, for its superuser and
    for C{pgt_trust}: through C{all}, a client still has to prove the
    password pgtwist holds. The superuser, who is in no vault, is refused
    with 28P01 with or without a password (C{allow_unknown_users} is on,
    the default); C{pgt_trust} is refused with a wrong password and gets
    in with the vault's; PostgreSQL never sees a login for the refused.
    """
    superuser = pgCluster.superuser
    assertPasswordFailed(wrongScram(pooler.port, superuser, "postgres"), superuser)
    for password in ("", "wrong", None):
        with pytest.raises(psycopg.OperationalError) as info:
            psycopg.connect(pooler.dsn(superuser, password, "postgres"))
        message = str(info.value)
        assert (
            f'password authentication failed for user "{superuser}"' in message
            or "no password supplied" in message
        ), message
    fields = refusal(pooler, superuser, "wrong", "postgres")
    assert (fields["C"], fields["M"]) == (
        "28P01",
        f'password authentication failed for user "{superuser}"',
    )
    fields = refusal(pooler, "pgt_trust", "wrong", "pgt_trust")
    assert fields["C"] == "28P01"
    assertPasswordFailed(wrongScram(pooler.port, "pgt_trust", "pgt_trust"), "pgt_trust")
    with psycopg.connect(pooler.dsn("pgt_trust", ROLES["pgt_trust"][0])) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("pgt_trust",)
    # Even once PostgreSQL is known to trust pgtwist for that pool.
    fields = refusal(pooler, "pgt_trust", "wrong", "pgt_trust")
    assert fields["C"] == "28P01"
    with psycopg.connect(
        host=pgCluster.socketDir,
        port=pgCluster.port,
        user=superuser,
        dbname="postgres",
        autocommit=True,
    ) as admin:
        logins = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND client_addr IS NOT NULL",
            (superuser,),
        ).fetchone()
    assert logins == (0,)
    assert f"Authentication of {superuser!r} for 'postgres' from 127.0.0.1 failed" in pooler.log()
