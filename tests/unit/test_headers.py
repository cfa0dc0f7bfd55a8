"""
The C{test-case-name} headers of pgtwist's modules (Twisted's coding
standard): C{trial --testmodule} and editors run the test modules a header
names, so a header left naming a renamed or never-written module silently
runs nothing. These tests keep every header pointing at test modules that
exist.
"""

from __future__ import annotations

import pathlib
import re

from twisted.trial.unittest import SynchronousTestCase

ROOT = pathlib.Path(__file__).resolve().parents[2]

#: The Emacs-style header, whose value is a comma-separated list of modules.
_HEADER = re.compile(r"#\s*-\*-\s*test-case-name:\s*(?P<names>[^ ]*?)\s*-\*-")


def _sources() -> list[pathlib.Path]:
    """
    Every Python file of pgtwist and its Twisted plugins.
    """
    return sorted([*(ROOT / "pgtwist").rglob("*.py"), *(ROOT / "twisted").rglob("*.py")])


def headerNames(source: str) -> list[str] | None:
    """
    The test modules the C{test-case-name} header of C{source} names, or
    C{None} when it has none.

    @raise ValueError: When a header is present anywhere but on the first
        line, where Emacs and C{trial --testmodule} look for it.
    """
    lines = source.splitlines()
    for number, line in enumerate(lines):
        if "test-case-name" in line and line.lstrip().startswith("#"):
            match = _HEADER.match(line)
            if number != 0 or match is None:
                raise ValueError(f"line {number + 1}: malformed or misplaced header: {line}")
            return match.group("names").split(",")
    return None


def findTestModule(name: str) -> pathlib.Path | None:
    """
    The file of the test module called C{name}, or C{None} when C{name} is
    not the dotted name of a C{test_*} module under C{tests/}.
    """
    parts = name.split(".")
    if parts[0] != "tests" or not parts[-1].startswith("test_"):
        return None
    if not all(part.isidentifier() for part in parts):
        return None
    path = ROOT.joinpath(*parts).with_suffix(".py")
    return path if path.is_file() else None


class HeaderParsingTests(SynchronousTestCase):
    """
    L{headerNames} reads the header as Twisted writes it.
    """

    def test_oneName(self) -> None:
        """
        A header with one module gives that module.
        """
        self.assertEqual(
            headerNames("# -*- test-case-name: tests.unit.test_pool -*-\n'''Doc.'''\n"),
            ["tests.unit.test_pool"],
        )

    def test_severalNames(self) -> None:
        """
        Modules are separated by commas.
        """
        self.assertEqual(
            headerNames("# -*- test-case-name: tests.unit.test_a,tests.unit.test_b -*-\n"),
            ["tests.unit.test_a", "tests.unit.test_b"],
        )

    def test_none(self) -> None:
        """
        A module without a header gives C{None}.
        """
        self.assertIsNone(headerNames('"""Doc."""\n\nx = 1\n'))

    def test_misplaced(self) -> None:
        """
        A header below the first line is refused: nothing would read it.
        """
        self.assertRaises(
            ValueError, headerNames, '"""Doc."""\n# -*- test-case-name: tests.unit.test_a -*-\n'
        )

    def test_unknownModule(self) -> None:
        """
        L{findTestModule} finds existing test modules only.
        """
        self.assertEqual(
            findTestModule("tests.unit.test_headers"), ROOT / "tests" / "unit" / "test_headers.py"
        )
        self.assertIsNone(findTestModule("tests.unit.test_nonesuch"))
        self.assertIsNone(findTestModule("tests.unit._console"))
        self.assertIsNone(findTestModule("pgtwist.pool.poolset"))


class HeaderTests(SynchronousTestCase):
    """
    The headers of pgtwist's own modules.
    """

    def test_headersNameExistingTestModules(self) -> None:
        """
        Every module named in a C{test-case-name} header is a C{test_*}
        module under C{tests/} that exists.
        """
        stale = []
        for path in _sources():
            relative = path.relative_to(ROOT)
            try:
                names = headerNames(path.read_text(encoding="utf-8"))
            except ValueError as e:
                stale.append(f"{relative}: {e}")
                continue
            for name in names or ():
                if findTestModule(name) is None:
                    stale.append(f"{relative}: no test module {name}")
        self.assertEqual(stale, [])

    def test_headersFound(self) -> None:
        """
        The scan sees the headers at all (a broken pattern would pass the
        test above vacuously).
        """
        headed = [
            path for path in _sources() if headerNames(path.read_text(encoding="utf-8")) is not None
        ]
        self.assertGreater(len(headed), 40)
