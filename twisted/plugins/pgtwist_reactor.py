# Copyright (c) pgtwist contributors. See LICENSE for details.
"""
C{twistd --reactor=pgtwist}: the epoll reactor without per-event logging
contexts (see L{pgtwist.reactor}).
"""

from twisted.application.reactors import Reactor

pgtwist = Reactor("pgtwist", "pgtwist.reactor", "epoll without a logging context per event (Linux)")
