"""The package's floors: a module imports only from its own floor or the floors below it.

Read from the source with ``ast`` (function-local imports included, since they are how a
cycle hides), so the rule holds for every import, not only the ones that run in a test.
docs/architecture.md explains the floors.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import flowcli

PACKAGE = Path(flowcli.__file__).resolve().parent

# Top floor first. A floor is a subpackage of flowcli or one of its top-level modules.
FLOORS = (
    "__main__",
    "cli",
    "tui",  # draws with render's text helpers
    "render",
    "doctor",
    "maintenance",  # backup, prune, restore: they replay the engine's bookkeeping
    "engine",
    "flows",
    "sandbox",
    "db",
    "config",
    "redaction",
    "errors",
    "__init__",  # the version only
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def floor_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def type_checking_blocks(tree: ast.AST) -> set[int]:
    """Ids of the import nodes inside ``if TYPE_CHECKING:`` (annotations only, never run)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return found


def imports_of(path: Path) -> Iterator[tuple[str, int, bool]]:
    """(imported flowcli module, line, whether it runs) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    annotations_only = type_checking_blocks(tree)
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            # `from flowcli.db import schema` imports the module flowcli.db.schema
            names += [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if f"{node.module}.{alias.name}" in MODULES
            ]
        for name in names:
            if name == "flowcli" or name.startswith("flowcli."):
                yield name, node.lineno, id(node) not in annotations_only


def test_every_floor_is_known() -> None:
    assert {floor_of(name) for name in MODULES} <= set(FLOORS)


def test_imports_only_point_down() -> None:
    upward = []
    for name, path in MODULES.items():
        here = FLOORS.index(floor_of(name))
        for imported, line, _runs in imports_of(path):
            there = floor_of(imported)
            if there != "__init__" and FLOORS.index(there) < here:
                upward.append(f"{name}:{line} imports {imported}")
    assert upward == []


def runtime_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for imported, _line, runs in imports_of(path):
            if runs and imported in MODULES and imported != name:
                graph[name].add(imported)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The groups of modules that import one another, directly or not (Tarjan's SCCs)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    path: list[str] = []
    cycles: set[frozenset[str]] = set()

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if target not in order:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in path:
                low[module] = min(low[module], order[target])
        if low[module] == order[module]:
            group = path[path.index(module) :]
            del path[path.index(module) :]
            if len(group) > 1:
                cycles.add(frozenset(group))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return cycles


# Cycles not yet untangled, each with the work that removes it. The test fails when a new
# cycle appears and when one of these is gone (then delete its line).
KNOWN_CYCLES: dict[str, set[frozenset[str]]] = {}


def test_import_cycles_are_only_the_known_ones() -> None:
    graph = runtime_graph()
    found: dict[str, set[frozenset[str]]] = {}
    for cycle in import_cycles(graph):
        found.setdefault(floor_of(next(iter(cycle))), set()).add(cycle)
    assert found == KNOWN_CYCLES


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert import_cycles(graph) == {frozenset({"a", "b", "c"})}
    assert import_cycles({"a": {"b"}, "b": set()}) == set()
