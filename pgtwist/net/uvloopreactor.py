# -*- test-case-name: tests.unit.test_reactor -*-
"""
C{twistd --reactor=uvloop} (C{pgtwist --reactor uvloop}): Twisted's asyncio
reactor running on uvloop's event loop.

A run option, measured against the default rather than recommended: the
transports stay Twisted's and only the poll loop changes, and asyncio's
callback layer costs more than uvloop saves (docs/performance.rst). It
needs C{pip install uvloop} (the C{uvloop} extra).
"""

from __future__ import annotations

from typing import Any


def install() -> Any:
    """
    Install Twisted's asyncio reactor on a new uvloop event loop.

    @raise ImportError: uvloop is not installed.
    """
    try:
        import uvloop
    except ImportError as e:
        raise ImportError("--reactor=uvloop needs uvloop: pip install 'pgtwist[uvloop]'") from e
    from twisted.internet import asyncioreactor

    loop = uvloop.new_event_loop()
    asyncioreactor.install(loop)
    from twisted.internet import reactor

    return reactor


__all__ = ["install"]
