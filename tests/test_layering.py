"""Imports point inward: the core never imports a plugin or the CLI, and nothing loads pickles from users."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "gankit"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_no_plugin_and_no_cli() -> None:
    core_files = [p for p in CORE.rglob("*.py") if "cli" not in p.relative_to(CORE).parts and p.name != "__main__.py"]
    assert core_files
    for path in core_files:
        for module in imported_modules(path):
            assert not module.startswith("gankit_plugins"), f"{path} imports plugin module {module}"
            assert not module.startswith("gankit.cli"), f"{path} imports the CLI ({module})"


def test_plugins_use_only_the_public_core() -> None:
    for path in (ROOT / "plugins").glob("*.py"):
        for module in imported_modules(path):
            assert not module.startswith("gankit.cli"), f"{path} imports the CLI"


# The layers, lowest first. A module may import its own layer and the ones below it, never one above, not even
# under TYPE_CHECKING. Top-level modules are their own layers; `gankit/__init__.py` only imports lazily.
LAYERS: list[set[str]] = [
    {"errors", "version", "interfaces"},
    {"files"},
    {"registry"},
    {"export", "pictures"},
    {"evaluation"},
    {"run"},
    {"compare"},
    {"generator_source"},
    {"cli"},
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def layer_of(module: str) -> str | None:
    """``gankit.run._trainer`` -> ``run``; None for ``gankit`` itself and for other packages."""
    parts = module.split(".")
    if parts[0] != "gankit" or len(parts) < 2:
        return None
    return parts[1]


def core_modules() -> dict[str, Path]:
    modules = {}
    for path in CORE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def gankit_imports(path: Path) -> set[str]:
    """Every gankit module ``path`` imports, at any depth (inside functions and TYPE_CHECKING blocks too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("gankit."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gankit"):
            if node.module == "gankit":
                found.update(f"gankit.{alias.name}" for alias in node.names if f"gankit.{alias.name}" in MODULES)
            else:
                found.add(node.module)
    return found


MODULES = core_modules()


def test_every_core_module_is_in_a_layer() -> None:
    unplaced = {layer_of(name) for name in MODULES} - set(RANK) - {None, "__main__", "templates"}
    assert not unplaced, f"modules outside every layer of tests/test_layering.py: {unplaced}"


def test_no_import_runs_up_a_layer() -> None:
    upward = []
    for name, path in MODULES.items():
        here = layer_of(name)
        if here is None or here == "__main__":
            continue
        for imported in gankit_imports(path):
            there = layer_of(imported)
            if there is not None and there in RANK and RANK[there] > RANK[here]:
                upward.append(f"{name} imports {imported}")
    assert not upward, "imports that run up a layer:\n" + "\n".join(sorted(upward))


def test_subpackages_import_each_other_only_through_their_public_init() -> None:
    private = []
    for name, path in MODULES.items():
        here = layer_of(name)
        for imported in gankit_imports(path):
            parts = imported.split(".")
            if len(parts) > 2 and parts[2].startswith("_") and layer_of(imported) != here:
                private.append(f"{name} imports {imported}")
    assert not private, "reach into another subpackage's private modules:\n" + "\n".join(sorted(private))


def test_no_import_cycles_between_modules() -> None:
    """Module-level cycles, TYPE_CHECKING imports included (a package's lazy ``__init__`` is skipped: it imports
    nothing at run time, and its TYPE_CHECKING block only names what it exports)."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        if path.name == "__init__.py":
            continue
        targets = set()
        for imported in gankit_imports(path):
            target = imported if imported in MODULES else None
            if target is not None and MODULES[target].name == "__init__.py":
                # through a lazy package: count an edge to each of its private modules that the importer's names
                # come from is too fine; count the package's modules as one node instead
                target = target
            if target is not None and target != name:
                targets.add(target)
        graph[name] = targets
    # expand package nodes to their private modules
    expanded: dict[str, set[str]] = {}
    for name, targets in graph.items():
        out = set()
        for target in targets:
            if MODULES[target].name == "__init__.py":
                out.update(m for m in graph if m.startswith(target + ".") and layer_of(m) != layer_of(name))
            else:
                out.add(target)
        expanded[name] = out
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(expanded.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(expanded):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_gankit_holds_few_top_level_modules() -> None:
    top = sorted(path.name for path in CORE.glob("*.py"))
    assert len(top) <= 6, f"gankit/ holds {len(top)} top-level modules: {top}; put new ones in a subpackage"
