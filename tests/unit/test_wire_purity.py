"""
The codec stays sans-IO: nothing under C{pgtwist/wire} (nor the SCRAM core)
imports Twisted.
"""

from __future__ import annotations

import ast
import pathlib

from twisted.trial.unittest import SynchronousTestCase

import pgtwist

ROOT = pathlib.Path(pgtwist.__file__).parent


def importedModules(path: pathlib.Path) -> set[str]:
    """
    Every module name imported by the file at C{path}.
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


class WirePurityTests(SynchronousTestCase):
    """
    A walk of the import statements.
    """

    def test_noTwistedInWire(self) -> None:
        """
        No module of C{pgtwist.wire} or C{pgtwist.auth._scram} imports twisted.
        """
        files = sorted((ROOT / "wire").glob("*.py")) + [ROOT / "auth" / "_scram.py"]
        self.assertGreater(len(files), 5)
        for path in files:
            for name in importedModules(path):
                self.assertFalse(
                    name == "twisted" or name.startswith("twisted."), f"{path} imports {name}"
                )
