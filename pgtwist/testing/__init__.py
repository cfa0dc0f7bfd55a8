"""
Public fakes for testing pipelines and plugins without sockets or PostgreSQL,
and the development tooling (a throwaway PostgreSQL cluster, C{make run}).

The fakes live in L{pgtwist.testing.fakes}; they are re-exported here, where
docs/plugins.rst promises them.
"""

from pgtwist.testing.fakes import (
    FakeBackendLink,
    FakeBackendPool,
    FakeFrontendLink,
    FakePooledConnection,
)

__all__ = ["FakeBackendLink", "FakeBackendPool", "FakeFrontendLink", "FakePooledConnection"]
