# -*- test-case-name: tests.unit.test_admin_console -*-
"""
What the console's commands (L{pgtwist.admin.commands},
L{pgtwist.admin.show}, L{pgtwist.admin.control}) use of the console they
run in. L{pgtwist.admin.console.Console} provides it; declaring it here
lets the commands be typed without importing the console, which imports
them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pgtwist.admin.management import Pooler
    from pgtwist.interfaces import IBackendLink
    from pgtwist.pool.stats import Averages, PoolStats

__all__ = ["ConsoleContext"]


class ConsoleContext(Protocol):
    """
    The console a command runs in.
    """

    #: The running pooler, through the management API's declared view.
    service: Pooler
    #: An C{IReactorTime}: the time SHOW commands report.
    clock: Any
    #: SHOW STATS_AVERAGES' snapshots.
    averages: Averages
    #: Statistics of the console's own database.
    adminStats: PoolStats

    def clearStatistics(self) -> None:
        """
        Zero every pool's statistics, the console's and the averages.
        """

    def serverId(self, backend: IBackendLink) -> int:
        """
        A stable small id for a backend (SHOW SERVERS' C{ptr}).
        """
