"""
L{PoolSet} and L{FakeBackendPool} against L{tests.contract.pool.BackendPoolContractMixin}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.model import Configuration, MainSettings, PoolKey, ServerSettings, UserEntry
from pgtwist.interfaces import IBackendLink, IBackendPool, IPooledConnection
from pgtwist.pool.poolset import PoolSet
from pgtwist.testing import FakeBackendPool, FakePooledConnection
from tests.contract.pool import BackendPoolContractMixin

SERVER = ServerSettings("primary", "127.0.0.1", 5432, True)


class PoolSetContractTests(BackendPoolContractMixin, SynchronousTestCase):
    """
    The pool set pgtwist runs, over fake backends.
    """

    def setUp(self) -> None:
        self.logins: list[tuple[IPooledConnection, Deferred[IPooledConnection]]] = []

    def connect(
        self, server: ServerSettings, key: PoolKey, password: str | None
    ) -> tuple[IPooledConnection, Deferred[IPooledConnection]]:
        """
        Open a fake backend; its login completes in L{lend}.
        """
        backend = FakePooledConnection(key, 1000 + len(self.logins), server)
        d: Deferred[IPooledConnection] = Deferred()
        self.logins.append((backend, d))
        return backend, d

    def makePool(self) -> IBackendPool:
        """
        A pool set with room for a few backends.
        """
        config = Configuration(
            main=MainSettings(maxConnections=4),
            servers=(SERVER,),
            users={"alice": UserEntry("alice", "pw")},
        )
        return PoolSet(config, Clock(), [], connector=self.connect)

    def lend(self, pool: IBackendPool, d: Deferred[IBackendLink]) -> IBackendLink:
        """
        Complete the logins the pool waits for.
        """
        for backend, login in self.logins:
            if not login.called:
                login.callback(backend)
        return self.successResultOf(d)


class FakeBackendPoolContractTests(BackendPoolContractMixin, SynchronousTestCase):
    """
    The fake plugin authors test pipelines against.
    """

    def makePool(self) -> IBackendPool:
        """
        A fake that answers at once.
        """
        return FakeBackendPool()

    def lend(self, pool: IBackendPool, d: Deferred[IBackendLink]) -> IBackendLink:
        """
        The fake has answered already.
        """
        return self.successResultOf(d)
