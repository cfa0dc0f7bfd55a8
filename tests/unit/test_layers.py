"""
pgtwist's packages are layers: the import graph, built from the source, has
no cycle and no arrow against the rules of docs/design.rst ("Layers").
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator, Mapping

from twisted.trial.unittest import SynchronousTestCase

import pgtwist

ROOT = pathlib.Path(pgtwist.__file__).parent

FOUNDATION = frozenset({"pgtwist", "pgtwist._compat"})
"""
Modules every layer may import: the package itself (C{__version__}) and the
standard library shims of C{_compat}.
"""

ALLOWED: Mapping[str, frozenset[str]] = {
    "wire": frozenset(),
    "config": frozenset({"wire"}),
    "auth": frozenset({"wire", "config", "interfaces"}),
    "interfaces": frozenset({"wire", "config", "auth"}),
    "pipelines": frozenset({"wire", "config", "auth", "interfaces"}),
    "plugins": frozenset({"wire", "config", "auth", "interfaces", "pipelines"}),
    "net": frozenset({"wire", "config", "auth", "interfaces"}),
    "pool": frozenset({"wire", "config", "auth", "interfaces", "net"}),
    "admin": frozenset({"wire", "config", "auth", "interfaces", "pipelines", "net", "pool"}),
    "cli": frozenset({"wire", "config", "auth", "net"}),
    "app": frozenset(
        {"wire", "config", "auth", "interfaces", "pipelines", "plugins", "net", "pool", "admin"}
    ),
    "testing": frozenset(
        {"wire", "config", "auth", "interfaces", "pipelines", "plugins", "net", "pool", "app"}
    ),
}
"""
For each layer (a subpackage, or the module C{interfaces}), the other layers
it may import. The order, from the bottom: the sans-IO codec; configuration
and authentication (pure, no reactor); the interfaces; pooling policy
(pipelines and the built-in plugins); the protocols; the pools; the admin
surfaces; then the process (C{app}), the command-line tools and the test
tooling on top. A pipeline sees backends, pools and clients only through
L{pgtwist.interfaces}. The console may read what a pipeline knows of a
backend (SHOW SERVERS' prepared statements); the command-line tools share
the socket paths of L{pgtwist.net.endpoints} and nothing else of the
server.
"""

ADMIN_POOL_GATE = "pgtwist.admin.management"
"""
The one admin module that may import the pool set, or read the service's
pool set and frontend factory: the console, metrics and manhole reach pools
and clients through the management API.
"""


SERVICE_INTERNALS = frozenset({"pools", "factory"})
"""
The service's attributes that only the management API reads: the pool set
and the frontend factory. The rest of admin/ asks
L{pgtwist.admin.management.Management}'s queries.
"""


def modules() -> dict[str, pathlib.Path]:
    """
    Every module of pgtwist by dotted name.
    """
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def importsOf(name: str, path: pathlib.Path, known: Mapping[str, pathlib.Path]) -> Iterator[str]:
    """
    The pgtwist modules that the module C{name} imports, at any depth of its
    source (imports under C{TYPE_CHECKING} and inside functions count: a
    layer that needs another only for a type still depends on it).
    """
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def internalsRead(path: pathlib.Path) -> Iterator[str]:
    """
    Where the module at C{path} reads an attribute named as one of
    L{SERVICE_INTERNALS} (C{service.pools}, C{x.factory.clients}, ...), as
    C{"file:line: .name"}. Any object's attribute of that name counts: the
    console, metrics and manhole have no other C{pools} or C{factory} to
    read, so a name alone keeps the rule simple to state and to check.
    """
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in SERVICE_INTERNALS:
            yield f"{path.relative_to(ROOT.parent)}:{node.lineno}: .{node.attr}"


def importGraph() -> dict[str, set[str]]:
    """
    Module name to the pgtwist modules it imports.
    """
    known = modules()
    return {name: set(importsOf(name, path, known)) for name, path in known.items()}


def layerOf(module: str) -> str | None:
    """
    The layer of a module: its subpackage, C{"interfaces"}, or C{None} for
    the foundation.
    """
    if module in FOUNDATION:
        return None
    return module.split(".")[1]


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """
    The strongly connected components of more than one module (Tarjan's
    algorithm, iterative so that deep graphs cannot exhaust the stack).
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    onStack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        onStack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    onStack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in onStack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        onStack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


class LayerTests(SynchronousTestCase):
    """
    The import graph of C{pgtwist/}, read from the source.
    """

    def test_graphIsRead(self) -> None:
        """
        The walk finds the layers and their imports, so the tests below are
        not vacuous.
        """
        graph = importGraph()
        self.assertGreater(len(graph), 60)
        self.assertIn("pgtwist.wire.codec", graph["pgtwist.net.frontend"])
        self.assertEqual({layerOf(name) for name in graph} - {None}, set(ALLOWED))

    def test_noCycles(self) -> None:
        """
        No module imports itself through others.
        """
        self.assertEqual(cycles(importGraph()), [])

    def test_cycleDetection(self) -> None:
        """
        L{cycles} reports a cycle and ignores a diamond.
        """
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"a"}}
        self.assertEqual(cycles(graph), [["a", "b", "c"]])

    def test_layerRules(self) -> None:
        """
        Each layer imports only the layers below it (L{ALLOWED}).
        """
        against = [
            f"{source} imports {target}"
            for source, targets in sorted(importGraph().items())
            for target in sorted(targets)
            if layerOf(source) is not None
            and layerOf(target) not in (None, layerOf(source))
            and layerOf(target) not in ALLOWED[layerOf(source) or ""]
        ]
        self.assertEqual(against, [], "\n".join(against))

    def test_foundationImportsNothing(self) -> None:
        """
        The foundation modules import nothing of pgtwist but each other.
        """
        graph = importGraph()
        for name in FOUNDATION:
            self.assertLessEqual(graph[name], set(FOUNDATION), name)

    def test_adminReachesPoolsThroughManagement(self) -> None:
        """
        Only the management API imports the pool set; the console, metrics
        and manhole go through it.
        """
        against = [
            f"{source} imports {target}"
            for source, targets in sorted(importGraph().items())
            if source.startswith("pgtwist.admin.") and source != ADMIN_POOL_GATE
            for target in sorted(targets)
            if target == "pgtwist.pool.poolset"
        ]
        self.assertEqual(against, [], "\n".join(against))

    def test_adminReadsNoServiceInternals(self) -> None:
        """
        No admin module but the management API reads the service's pool set
        or frontend factory (an attribute named C{pools} or C{factory}); the
        console, metrics and manhole use the queries of
        L{pgtwist.admin.management.Management}.
        """
        against = [
            found
            for name, path in sorted(modules().items())
            if name.startswith("pgtwist.admin.") and name != ADMIN_POOL_GATE
            for found in internalsRead(path)
        ]
        self.assertEqual(against, [], "\n".join(against))

    def test_internalsReadFound(self) -> None:
        """
        L{internalsRead} finds the reads the management API makes, so the
        test above is not vacuous.
        """
        found = list(internalsRead(modules()[ADMIN_POOL_GATE]))
        self.assertTrue(any(line.endswith(": .pools") for line in found), found)
        self.assertTrue(any(line.endswith(": .factory") for line in found), found)
