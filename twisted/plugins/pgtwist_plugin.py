# Copyright (c) pgtwist contributors. See LICENSE for details.
"""
The C{twistd pgtwist} dropin: imports nothing heavy, see L{pgtwist.app.tap}.
"""

from twisted.application.service import ServiceMaker

pgtwist = ServiceMaker(
    "pgtwist",
    "pgtwist.app.tap",
    "A PostgreSQL connection pooler (pgagroal-style configuration).",
    "pgtwist",
)
