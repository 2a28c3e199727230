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
