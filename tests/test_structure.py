"""The package's shape, read from its source with `ast` (no module of the package is imported):

- no module over 600 lines, the store's migrations aside;
- layers import only downward (issue 15's rules, `LAYER_RULES`);
- no import cycle between the package's modules;
- no `importlib` outside the plugin loader, `reporthubd/plugins.py`.

Every import counts: at module level, under `if TYPE_CHECKING:`, inside functions, absolute and
relative. `from package import name` is an import of the module `package.name` when there is
one, else of `package` itself; importing a module is not counted as importing its parent
packages (Python runs their `__init__` first, but a package's `__init__` is no layer of its own).

`importlib.resources` is allowed anywhere: it reads package data files (the migrations folder,
the demo's catalog) and loads no code. What is banned is the rest of importlib (and
`__import__`): importing code by a name in a string hides the import from every tool,
including this test.

Each failing assertion lists every offender, so a failure reads as a to-do list.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PACKAGE = "reporthubd"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
MAX_LINES = 600
LONG_MODULES_ALLOWED = ("reporthubd.store.migrations",)
PLUGIN_LOADER = "reporthubd.plugins"
ALLOWED_IMPORTLIB = frozenset({"importlib.resources"})

LAYER_RULES: dict[str, frozenset[str]] = {
    "store": frozenset({"scheduler", "engine", "control", "connectors", "formats", "deliverers"}),
    "connectors": frozenset({"engine", "control", "scheduler", "store"}),
    "formats": frozenset({"engine", "control", "scheduler", "store"}),
    "deliverers": frozenset({"engine", "control", "scheduler", "store"}),
    "engine": frozenset({"control"}),
    "scheduler": frozenset({"control", "connectors", "formats", "deliverers"}),
    "lifecycle": frozenset(
        {"scheduler", "engine", "control", "connectors", "formats", "deliverers"}
    ),
}
"""A layer (the package's first-level subpackage) and the layers it must not import."""


@dataclass(frozen=True)
class Import:
    module: str
    """The importing module."""
    target: str
    """What it imports: a dotted name, inside the package or not."""
    line: int

    def __str__(self) -> str:
        return f"{_path(self.module)}:{self.line}: imports {self.target}"


def _path(module: str) -> str:
    return str(_modules()[module].relative_to(ROOT.parent))


@cache
def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


@cache
def _tree(module: str) -> ast.Module:
    path = _modules()[module]
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _base(module: str, level: int) -> str:
    """The package a relative import of `level` dots starts from."""
    is_package = _modules()[module].name == "__init__.py"
    parts = module.split(".")
    drop = level - 1 if is_package else level
    return ".".join(parts[: len(parts) - drop]) if drop else module


def _imports(module: str) -> Iterator[Import]:
    modules = _modules()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                base = _base(module, node.level)
                source = f"{base}.{source}" if source else base
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                target = submodule if submodule in modules else source
                if source.split(".")[0] == "importlib" and submodule in ALLOWED_IMPORTLIB:
                    target = submodule  # `from importlib import resources`
                yield Import(module, target, node.lineno)


def _internal(target: str) -> str | None:
    """The package's module `target` names (or the nearest enclosing one), None outside it."""
    modules = _modules()
    parts = target.split(".")
    while parts:
        name = ".".join(parts)
        if name in modules:
            return name
        parts.pop()
    return None


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == PACKAGE else None


def _report(title: str, offenders: list[str]) -> str:
    return f"{title} ({len(offenders)}):\n" + "\n".join(f"  - {line}" for line in offenders)


def test_no_module_is_over_600_lines() -> None:
    offenders = []
    for module, path in _modules().items():
        if module.startswith(LONG_MODULES_ALLOWED):
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            offenders.append(f"{_path(module)}: {lines} lines")
    assert not offenders, _report(
        f"modules over {MAX_LINES} lines (split by responsibility)", offenders
    )


def test_layers_import_only_downward() -> None:
    offenders = []
    for module in _modules():
        forbidden = LAYER_RULES.get(_layer(module) or "")
        if not forbidden:
            continue
        for found in _imports(module):
            target = _internal(found.target)
            if target is not None and _layer(target) in forbidden:
                offenders.append(f"{found} ({_layer(module)} -> {_layer(target)})")
    assert not offenders, _report("imports against the layering", offenders)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in _modules()}
    for module in _modules():
        for found in _imports(module):
            target = _internal(found.target)
            if target is not None and target != module:
                graph[module].add(target)
    return graph


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def _cycle_through(start: str, graph: dict[str, set[str]], members: set[str]) -> list[str]:
    """A shortest path start -> ... -> start inside one strongly connected component."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & members):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"{start} is on no cycle")  # not in a component of its own


def test_no_import_cycle() -> None:
    graph = _graph()
    offenders = []
    for component in _strongly_connected(graph):
        cycle = _cycle_through(component[0], graph, set(component))
        others = sorted(set(component) - set(cycle))
        line = " -> ".join(cycle)
        if others:
            line += f" (also on cycles with these: {', '.join(others)})"
        offenders.append(line)
    assert not offenders, _report("import cycles", offenders)


def test_no_importlib_outside_the_plugin_loader() -> None:
    offenders = []
    for module in _modules():
        if module == PLUGIN_LOADER:
            continue
        offenders += [
            str(found)
            for found in _imports(module)
            if found.target.split(".")[0] == "importlib" and found.target not in ALLOWED_IMPORTLIB
        ]
        offenders += [
            f"{_path(module)}:{node.lineno}: calls __import__"
            for node in ast.walk(_tree(module))
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ]
    assert not offenders, _report(
        f"importlib outside {PLUGIN_LOADER} (move the shared piece down a layer)", offenders
    )
