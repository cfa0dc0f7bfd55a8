"""
Shared helpers for the configuration loader tests: files written into a
private temporary directory, and warnings collected.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pgtwist.config.loader import ConfigError, loadConfiguration
from pgtwist.config.model import Configuration

#: A minimal valid main file: the main section on lines 1-3, [primary] on lines 5-7.
MINIMAL = "[pgtwist]\nhost = 127.0.0.1\nport = 6432\n\n[primary]\nhost = 127.0.0.1\nport = 5432\n"


class FilesTestCase(SynchronousTestCase):
    """
    Writes configuration files into a private temporary directory and
    records warnings.
    """

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="pgtwist-config-")
        self.addCleanup(shutil.rmtree, self.directory)
        self.warnings: list[str] = []

    def write(self, name: str, text: str) -> str:
        """
        Write C{text} to C{name} in the temporary directory.

        @return: Its path.
        """
        path = os.path.join(self.directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def load(self, text: str, **kwargs: Any) -> Configuration:
        """
        Load C{text} as the main file (C{pgtwist.conf}), collecting warnings.
        """
        return loadConfiguration(
            self.write("pgtwist.conf", text), warn=self.warnings.append, **kwargs
        )

    def loadError(self, text: str, **kwargs: Any) -> ConfigError:
        """
        Load C{text} as the main file and return the L{ConfigError} raised.
        """
        return self.assertRaises(ConfigError, self.load, text, **kwargs)
