"""
Tests for L{pgtwist.pipelines.serverstate}: what the transaction pipeline
remembers of each backend's session, kept by the pipeline and not on the
backend.
"""

from __future__ import annotations

import gc

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.pipelines import serverstate
from pgtwist.pipelines.serverstate import preparedCount, serverSession
from pgtwist.testing import FakeBackendLink


class ServerSessionTests(SynchronousTestCase):
    """
    One view per backend, valid until the backend's session is reset.
    """

    def test_onePerBackend(self) -> None:
        """
        Each backend has its own view, the same one at each lookup.
        """
        a, b = FakeBackendLink(1), FakeBackendLink(2)
        self.assertIs(serverSession(a), serverSession(a))
        self.assertIsNot(serverSession(a), serverSession(b))

    def test_fresh(self) -> None:
        """
        A backend not seen before has nothing prepared or applied.
        """
        session = serverSession(FakeBackendLink())
        self.assertEqual((dict(session.prepared), session.applied), ({}, {}))
        self.assertIsNone(session.fingerprint)

    def test_forgottenAfterReset(self) -> None:
        """
        After the pool reset the backend's session, the view is empty again.
        """
        backend = FakeBackendLink()
        session = serverSession(backend)
        session.prepared["PGTWIST_1"] = True
        session.applied["work_mem"] = "1GB"
        session.fingerprint = object()
        backend.sessionResets += 1
        self.assertIs(serverSession(backend), session)
        self.assertEqual((dict(session.prepared), session.applied), ({}, {}))
        self.assertIsNone(session.fingerprint)

    def test_preparedCount(self) -> None:
        """
        SHOW SERVERS' count of prepared statements: none for a backend the
        pipeline never used or since a reset, without making a view.
        """
        backend = FakeBackendLink()
        self.assertEqual(preparedCount(backend), 0)
        self.assertNotIn(backend, serverstate._sessions)
        serverSession(backend).prepared["PGTWIST_1"] = True
        self.assertEqual(preparedCount(backend), 1)
        backend.sessionResets += 1
        self.assertEqual(preparedCount(backend), 0)

    def test_weak(self) -> None:
        """
        A backend that is gone takes its view with it.
        """
        backend = FakeBackendLink(processId=987654)
        serverSession(backend)
        self.assertIn(987654, [b.processId for b in list(serverstate._sessions)])
        del backend
        gc.collect()
        self.assertNotIn(987654, [b.processId for b in list(serverstate._sessions)])
