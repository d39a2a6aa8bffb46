"""The package's shape, measured with ``ast``: no import cycle, no import back up, small functions and modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "atso"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 400
MODULE_SIZE_EXEMPT: set[str] = set()  # none: a module over the limit is split
# Bottom to top: a module imports only from its own layer or the layers below it.
LAYERS = [
    {"atso", "atso.errors", "atso.runtime", "atso.storage"},
    {"atso.strategies"},  # plans are data: they need nothing but each other
    {"atso.config"},
    {"atso.data", "atso.checkpoints", "atso.models"},
    {"atso.evaluation", "atso.inference", "atso.training"},
    {"atso.modalities"},
    {"atso.running"},
    {"atso.reporting"},
    {"atso.api", "atso.demo"},
    {"atso.cli", "atso.__main__"},
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _runtime_imports(tree: ast.Module) -> list[ast.stmt]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:``."""
    found: list[ast.stmt] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _imported_modules(name: str) -> set[str]:
    """The atso modules ``name`` imports (a name imported from a package counts as its submodule if it is one)."""
    tree = ast.parse(MODULES[name].read_text())
    targets: set[str] = set()
    for node in _runtime_imports(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names if alias.name.startswith("atso"))
        elif node.module and node.module.startswith("atso") and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                targets.add(submodule if submodule in MODULES else node.module)
    return {target for target in targets if target in MODULES and target != name}


GRAPH = {name: _imported_modules(name) for name in MODULES}


def _layer(name: str) -> int:
    for index, layer in enumerate(LAYERS):
        if any(name == top or name.startswith(top + ".") for top in layer - {"atso"}) or name == "atso":
            return index
    raise AssertionError(f"{name}: not in any layer of tests/test_architecture.py")


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_no_import_runs_back_up():
    upward = [
        f"{name} -> {target}" for name, targets in sorted(GRAPH.items()) for target in sorted(targets)
        if _layer(target) > _layer(name)
    ]
    assert not upward


@pytest.mark.parametrize("name", sorted(MODULES))
def test_functions_and_modules_are_short(name):
    source = MODULES[name].read_text()
    if name not in MODULE_SIZE_EXEMPT:
        assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{name}: over {MAX_MODULE_LINES} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{name}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


MODALITY_BRANCH_EXEMPT: set[str] = set()  # none: data/splits.py is handed the modality's source lister


def test_images_and_volumes_are_chosen_only_by_the_modality():
    branch = re.compile(r"\bis_volume\b|kind == .volume.|isinstance\([^)]*, (ViewNetworks|VolumePredictor)\)")
    branches = [
        name for name, path in MODULES.items()
        if not name.startswith("atso.modalities") and name not in MODALITY_BRANCH_EXEMPT and branch.search(path.read_text())
    ]
    assert not branches
