"""
What differs between the Python versions pgtwist runs on.

pgtwist is written for CPython 3.11 and also runs on PyPy 3.9 (Debian's
C{pypy3}), whose JIT more than halves the pooler's CPU per transaction
(docs/performance.rst). Only what Python 3.9 lacks is bridged here.
"""

from __future__ import annotations

import sys
from typing import Any

#: Keyword arguments giving a dataclass C{__slots__} where Python can
#: (3.10+): smaller instances, faster attribute access.
SLOTS: dict[str, Any] = {"slots": True} if sys.version_info >= (3, 10) else {}

__all__ = ["SLOTS"]
