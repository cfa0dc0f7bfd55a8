"""
pgtwist runs on Python 3.9 (Debian's PyPy) as well as CPython 3.11, while
most of the test suite runs on 3.11 only (C{make test-pypy} runs the unit
and contract tests and a smoke test on PyPy): these tests keep pgtwist's own
source free of what 3.9 cannot run, so that a change cannot break PyPy
unnoticed.
"""

from __future__ import annotations

import ast
import pathlib
import sys

from twisted.trial.unittest import SynchronousTestCase

from pgtwist._compat import SLOTS

ROOT = pathlib.Path(__file__).resolve().parents[2]

#: typing names newer than Python 3.9.
_NEWER_TYPING = {
    "Concatenate", "LiteralString", "Never", "ParamSpec", "Self", "TypeAlias", "TypeGuard",
    "assert_never", "reveal_type", "dataclass_transform",
}  # fmt: skip
#: Standard modules newer than Python 3.9.
_NEWER_MODULES = {"tomllib"}


def _sources() -> list[pathlib.Path]:
    """
    Every Python file of pgtwist and its Twisted plugins, and the relay
    floor of C{make bench}, which runs on PyPy too.
    """
    floor = ROOT / "benchmarks" / "floor.py"
    return sorted([*(ROOT / "pgtwist").rglob("*.py"), *(ROOT / "twisted").rglob("*.py"), floor])


def _isUnion(node: ast.expr) -> bool:
    """
    Whether C{node} is C{A | B} of names, attributes, subscripts or C{None}:
    a type union, which Python 3.9 cannot evaluate.
    """
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return all(
            _isUnion(side)
            or isinstance(side, (ast.Name, ast.Attribute, ast.Subscript))
            or (isinstance(side, ast.Constant) and side.value is None)
            for side in (node.left, node.right)
        )
    return False


def _isAliasName(target: ast.expr) -> bool:
    """
    Whether an assignment target is named like a type alias (C{Network},
    C{_IPAddress}) rather than a constant (C{_GROUP_OTHER_BITS = A | B}).
    """
    if not isinstance(target, ast.Name):
        return False
    name = target.id.lstrip("_")
    return name[:1].isupper() and not name.isupper()


def problems(source: str, name: str) -> list[str]:
    """
    What in C{source} Python 3.9 cannot run, one line each.
    """
    try:
        tree = ast.parse(source, name, feature_version=(3, 9))
    except SyntaxError as e:
        return [f"{name}:{e.lineno}: syntax newer than 3.9: {e.msg}"]
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            keywords = {k.arg for k in node.keywords}
            if node.func.id == "dataclass" and {"slots", "kw_only"} & keywords:
                found.append(f"{name}:{line}: dataclass(slots=/kw_only=) needs 3.10")
            if node.func.id == "zip" and "strict" in keywords:
                found.append(f"{name}:{line}: zip(strict=) needs 3.10")
            if node.func.id in ("isinstance", "issubclass") and any(map(_isUnion, node.args)):
                found.append(f"{name}:{line}: {node.func.id}() with X | Y needs 3.10")
        elif isinstance(node, ast.ImportFrom) and node.module == "typing":
            for alias in node.names:
                if alias.name in _NEWER_TYPING:
                    found.append(f"{name}:{line}: typing.{alias.name} needs 3.10+")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules.append(node.module)
            for module in modules:
                if module.split(".")[0] in _NEWER_MODULES:
                    found.append(f"{name}:{line}: {module} needs 3.11")
    for statement in tree.body:
        if (
            isinstance(statement, ast.Assign)
            and any(map(_isAliasName, statement.targets))
            and any(
                _isUnion(part) for part in ast.walk(statement.value) if isinstance(part, ast.expr)
            )
        ):
            found.append(f"{name}:{statement.lineno}: a type alias with X | Y needs 3.10")
    return found


class Python39Tests(SynchronousTestCase):
    """
    pgtwist's source stays runnable on Python 3.9.
    """

    def test_sourceRunsOn39(self) -> None:
        """
        No module of pgtwist uses syntax, keywords, runtime unions or
        library names newer than Python 3.9.
        """
        sources = _sources()
        self.assertGreater(len(sources), 50)
        found = []
        for path in sources:
            found += problems(path.read_text(), str(path.relative_to(ROOT)))
        self.assertEqual(found, [])

    def test_detects(self) -> None:
        """
        The check finds each construct it looks for.
        """
        source = (
            "import tomllib\n"
            "from typing import Self\n"
            "Alias = int | None\n"
            "Callback = Callable[[bytes | None], None]\n"
            "@dataclass(frozen=True, slots=True)\n"
            "class A:\n"
            "    x: int | None = None\n"
            "isinstance(1, int | float)\n"
            "zip(a, b, strict=True)\n"
        )
        self.assertEqual(
            [p.split(": ", 1)[1] for p in problems(source, "m.py")],
            [
                "tomllib needs 3.11",
                "typing.Self needs 3.10+",
                "dataclass(slots=/kw_only=) needs 3.10",
                "isinstance() with X | Y needs 3.10",
                "zip(strict=) needs 3.10",
                "a type alias with X | Y needs 3.10",
                "a type alias with X | Y needs 3.10",
            ],
        )
        (syntax,) = problems("match x:\n    case 1:\n        pass\n", "m.py")
        self.assertIn("syntax newer than 3.9", syntax)
        self.assertEqual(problems("FLAGS = A.X | A.Y\n", "m.py"), [])

    def test_slotsWhereSupported(self) -> None:
        """
        From Python 3.10 (the tests' CPython), dataclasses keep their slots;
        on 3.9 (PyPy) they have none, as C{dataclass} takes no C{slots}.
        """
        expected = {"slots": True} if sys.version_info >= (3, 10) else {}
        self.assertEqual(SLOTS, expected)
