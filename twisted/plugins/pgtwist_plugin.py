# Copyright (c) pgtwist contributors. See LICENSE for details.
"""
The C{twistd pgtwist} dropin: imports nothing heavy, see L{pgtwist.tap}.
"""

from twisted.application.service import ServiceMaker

pgtwist = ServiceMaker(
    "pgtwist",
    "pgtwist.tap",
    "A PostgreSQL connection pooler (pgagroal-style configuration).",
    "pgtwist",
)
