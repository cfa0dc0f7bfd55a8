# -*- test-case-name: tests.unit.test_reactor -*-
"""
The epoll reactor without a logging context per event.

Twisted's epoll reactor wraps every file-descriptor event in
C{log.callWithLogger}, which pushes and pops a legacy logging context: about
3 µs per event, 15 % of a relay's CPU (PERFORMANCE.md). C{_doReadOrWrite}
already catches and logs what a handler raises, so the context buys a pooler
nothing. Install it with C{twistd --reactor=pgtwist} (the C{pgtwist} console
script does so by default) or L{install}.
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.internet.epollreactor import EPollReactor


class PgtwistReactor(EPollReactor):  # type: ignore[misc]
    """
    L{EPollReactor} dispatching events directly.
    """

    def doPoll(self, timeout: float | None) -> None:
        """
        Poll, then call C{_doReadOrWrite} for each event without a logging
        context.
        """
        if timeout is None:
            timeout = -1
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        dispatch = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is not None:
                dispatch(selectable, fd, event)

    doIteration = doPoll


def install() -> Any:
    """
    Install L{PgtwistReactor} as the global reactor.
    """
    from twisted.internet.main import installReactor

    reactor = PgtwistReactor()
    installReactor(reactor)
    return reactor


__all__ = ["PgtwistReactor", "install"]
