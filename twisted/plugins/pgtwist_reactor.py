# Copyright (c) pgtwist contributors. See LICENSE for details.
"""
C{twistd --reactor=pgtwist}: the epoll reactor without per-event logging
contexts (see L{pgtwist.net.reactor}); C{twistd --reactor=uvloop}: Twisted's
asyncio reactor on uvloop (see L{pgtwist.net.uvloopreactor}).
"""

from twisted.application.reactors import Reactor

pgtwist = Reactor(
    "pgtwist", "pgtwist.net.reactor", "epoll without a logging context per event (Linux)"
)

uvloop = Reactor(
    "uvloop",
    "pgtwist.net.uvloopreactor",
    "asyncio reactor on uvloop's event loop (pip install uvloop)",
)
