"""
A temporary directory per test, outside the working tree.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase


def temporaryDirectory(case: SynchronousTestCase) -> Path:
    """
    A new directory under the system's temporary directory, removed when
    C{case} ends. (trial's C{mktemp} writes under the current directory,
    which under pytest is the checkout.)
    """
    path = Path(tempfile.mkdtemp(prefix="pgtwist-test-"))
    case.addCleanup(shutil.rmtree, path, True)
    return path
