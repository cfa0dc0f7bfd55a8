"""
Tests for pass-through logins in L{pgtwist.pool.poolset.PoolSet}: the
credential a client's login leaves, what backends log in with, and what
happens when PostgreSQL refuses it.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.auth import _scram
from pgtwist.config.model import (
    Configuration,
    DatabaseLimit,
    MainSettings,
    PoolKey,
    ServerSettings,
    UserEntry,
)
from pgtwist.config.verifiers import BackendCredential, Md5Verifier, ScramPassThrough
from pgtwist.interfaces import IPooledConnection
from pgtwist.net.backend import BackendError
from pgtwist.pool.maintenance import PoolMaintenance
from pgtwist.pool.poolset import PoolSet
from pgtwist.testing import FakePooledConnection
from pgtwist.wire import constants, errors

SERVER = ServerSettings("primary", "127.0.0.1", 5432, True)
SECRET = _scram.makeSecret("pw", b"0123456789abcdef")
CLIENT_KEY = b"\x07" * 32
PASS_THROUGH = ScramPassThrough(CLIENT_KEY, SECRET)
KEY: PoolKey = ("db", "carol")


class PassThroughPoolTests(SynchronousTestCase):
    """
    A pool for a user known by a verifier only (C{carol}), beside a vault
    user (C{alice}) and a plaintext C{auth_file} user (C{dave}).
    """

    def setUp(self) -> None:
        """
        A PoolSet over a connector that records the credentials.
        """
        self.clock = Clock()
        self.connects: list[
            tuple[BackendCredential | None, FakePooledConnection, Deferred[IPooledConnection]]
        ] = []
        self.refused: list[PoolKey] = []
        config = Configuration(
            main=MainSettings(maxConnections=4, blockingTimeout=5.0),
            servers=(SERVER,),
            users={"alice": UserEntry("alice", "vault-pw")},
            authFile={
                "carol": UserEntry("carol", verifier=SECRET),
                "alice": UserEntry("alice", verifier=SECRET),
                "dave": UserEntry("dave", "file-pw"),
            },
            limits=(
                DatabaseLimit("db", "carol", 4, 2, 2),
                DatabaseLimit("db", "dave", 4, 1, 1),
            ),
        )
        self.pools = PoolSet(config, self.clock, [], connector=self.connect)
        self.pools.credentialRefused = self.refused.append

    def connect(
        self, server: ServerSettings, key: PoolKey, credential: BackendCredential | None
    ) -> tuple[IPooledConnection, Deferred[IPooledConnection]]:
        """
        Record what the backend logs in with; the test fires the login.
        """
        backend = FakePooledConnection(key, 1000 + len(self.connects), server)
        d: Deferred[IPooledConnection] = Deferred()
        self.connects.append((credential, backend, d))
        return backend, d

    def test_vaultPasswordFirst(self) -> None:
        """
        A user with a vault password logs in with it; a credential a client
        left is not even kept.
        """
        self.pools.rememberCredential(("db", "alice"), PASS_THROUGH)
        self.assertIsNone(self.pools.pool(("db", "alice")).credential)
        self.pools.acquire(("db", "alice"), None)
        self.assertEqual(self.connects[0][0], "vault-pw")

    def test_authFilePlaintext(self) -> None:
        """
        A plaintext C{auth_file} entry logs in as a vault password does.
        """
        self.pools.acquire(("db", "dave"), None)
        self.assertEqual(self.connects[0][0], "file-pw")

    def test_passThrough(self) -> None:
        """
        A verifier-only user's backend logs in with the credential its
        client's login left on the pool.
        """
        self.pools.rememberCredential(KEY, PASS_THROUGH)
        d = self.pools.acquire(KEY, None)
        credential, backend, login = self.connects[0]
        self.assertIs(credential, PASS_THROUGH)
        login.callback(backend)
        self.assertIs(self.successResultOf(d), backend)

    def test_latestCredentialWins(self) -> None:
        """
        A later client's credential replaces the earlier one.
        """
        self.pools.rememberCredential(KEY, PASS_THROUGH)
        newer = Md5Verifier("md5" + "0" * 32)
        self.pools.rememberCredential(KEY, newer)
        self.pools.acquire(KEY, None)
        self.assertIs(self.connects[0][0], newer)

    def test_refusedCredential(self) -> None:
        """
        When PostgreSQL refuses the pass-through login with 28P01, every
        waiting client gets that error (no hang), the pool forgets the
        credential, the hook hears of it and the log says why without key
        material.
        """
        logged: list[str] = []

        def observe(event: dict[str, object]) -> None:
            if event.get("log_level") is LogLevel.warn:
                logged.append(str(event.get("log_format", "")))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        self.pools.rememberCredential(KEY, PASS_THROUGH)
        first = self.pools.acquire(KEY, None)
        second = self.pools.acquire(KEY, None)
        self.assertEqual(len(self.connects), 2)
        error = errors.fatal(
            constants.SQLSTATE_INVALID_PASSWORD, 'password authentication failed for user "carol"'
        )
        self.connects[0][2].errback(BackendError(error))
        for d in (first, second):
            failure = self.failureResultOf(d, BackendError)
            self.assertEqual(failure.value.error, error)
        self.assertIsNone(self.pools.pool(KEY).credential)
        self.assertEqual(self.refused, [KEY])
        self.assertTrue(any("stale" in line for line in logged))
        self.assertFalse(any(repr(CLIENT_KEY) in line for line in logged))

    def test_otherRefusalKeepsCredential(self) -> None:
        """
        A refusal that is no password failure (no such database) leaves
        the credential alone.
        """
        self.pools.rememberCredential(KEY, PASS_THROUGH)
        d = self.pools.acquire(KEY, None)
        error = errors.fatal("3D000", 'database "db" does not exist')
        self.connects[0][2].errback(BackendError(error))
        self.failureResultOf(d, BackendError)
        self.assertIs(self.pools.pool(KEY).credential, PASS_THROUGH)
        self.assertEqual(self.refused, [])

    def test_noCredential(self) -> None:
        """
        A verifier-only user's pool with no credential (none left yet, or
        a refused one forgotten) connects with none: the backend exchange
        then fails with the 28P01 of a missing password, so a waiting
        client gets an answer rather than waiting.
        """
        self.pools.acquire(KEY, None)
        self.assertIsNone(self.connects[0][0])

    def test_noPrefillWithoutPassword(self) -> None:
        """
        Maintenance opens INITIAL_SIZE/MIN_SIZE backends only for users
        with a password (vault or plaintext C{auth_file}): a pass-through
        pool opens backends once a client has logged in.
        """
        PoolMaintenance(self.pools, self.clock).maintain()
        self.assertEqual([c[1].key for c in self.connects], [("db", "dave")])
        self.assertEqual(self.pools.minSize(self.pools.pool(KEY)), 0)
        self.assertEqual(self.pools.minSize(self.pools.pool(("db", "dave"))), 1)
