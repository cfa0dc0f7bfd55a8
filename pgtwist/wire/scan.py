# -*- test-case-name: tests.unit.test_wire_scan,tests.unit.test_wire_walker -*-
"""
The name plugins import L{MessageScanner} by (C{docs/plugins.rst}): it is
L{pgtwist.wire.walker.MessageWalker}, whose L{feed
<pgtwist.wire.walker.MessageWalker.feed>} reports the watched and collected
messages of each chunk.
"""

from __future__ import annotations

from pgtwist.wire.walker import MessageWalker as MessageScanner
from pgtwist.wire.walker import ScanCallback

__all__ = ["MessageScanner", "ScanCallback"]
