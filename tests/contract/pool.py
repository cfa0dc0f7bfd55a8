"""
The contract of an L{pgtwist.interfaces.IBackendPool}, as a mixin: what
pipelines and the frontend rely on of a pool, met by L{PoolSet} and by the
L{FakeBackendPool} plugin authors test against.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface.verify import verifyObject

from pgtwist.config.model import PoolKey
from pgtwist.interfaces import IBackendLink, IBackendPool, IPoolStats

KEY: PoolKey = ("db", "alice")


class BackendPoolContractMixin:
    """
    Mix into a C{SynchronousTestCase} and define L{makePool} and L{lend}.
    """

    def makePool(self) -> IBackendPool:
        """
        The pool under test, able to lend backends for L{KEY}.
        """
        raise NotImplementedError()

    def lend(self, pool: IBackendPool, d: Deferred[IBackendLink]) -> IBackendLink:
        """
        Let C{pool} answer C{d}, a pending or answered C{acquire} (log a new
        backend in, for a real pool), and return the backend lent.
        """
        raise NotImplementedError()

    def test_providesInterface(self) -> None:
        """
        The pool provides L{IBackendPool}, and lends L{IBackendLink}s.
        """
        pool = self.makePool()
        verifyObject(IBackendPool, pool)
        backend = self.lend(pool, pool.acquire(KEY, None))
        verifyObject(IBackendLink, backend)

    def test_statsFor(self) -> None:
        """
        A pool's statistics provide L{IPoolStats}, and are the same object
        for every session of a key, so that what each adds is kept.
        """
        pool = self.makePool()
        stats = pool.statsFor(KEY)
        verifyObject(IPoolStats, stats)
        stats.queryCount += 1
        self.assertIs(pool.statsFor(KEY), stats)  # type: ignore[attr-defined]
        self.assertEqual(pool.statsFor(KEY).queryCount, 1)  # type: ignore[attr-defined]

    def test_authRequestCode(self) -> None:
        """
        Before any login for a key, no authentication request is known.
        """
        self.assertIsNone(self.makePool().authRequestCode(("nowhere", "nobody")))  # type: ignore[attr-defined]

    def test_releaseThenLend(self) -> None:
        """
        A clean backend given back without reset can be lent again.
        """
        pool = self.makePool()
        backend = self.lend(pool, pool.acquire(KEY, None))
        pool.release(backend, reset=False)
        again = self.lend(pool, pool.acquire(KEY, None))
        self.assertIs(again, backend)  # type: ignore[attr-defined]

    def test_acquireIdle(self) -> None:
        """
        C{acquireIdle} lends at once or answers C{None}; it never waits.
        """
        pool = self.makePool()
        backend = self.lend(pool, pool.acquire(KEY, None))
        pool.release(backend, reset=False)
        lent = pool.acquireIdle(KEY)
        self.assertIn(lent, (None, backend))  # type: ignore[attr-defined]

    def test_discardTwice(self) -> None:
        """
        Discarding a backend, then discarding or releasing it again, is harmless.
        """
        pool = self.makePool()
        backend = self.lend(pool, pool.acquire(KEY, None))
        pool.discard(backend, "test")
        pool.discard(backend, "test again")
        pool.release(backend)
