"""gankit: a pluggable GAN framework for PyTorch.

The package is layered; each layer is a subpackage whose ``__init__`` names what the layers above may use, and no
import runs back down-to-up (``tests/test_layering.py``):

    errors, version, interfaces   the error types, the version, and the plugin contract
    files/        atomic files, safetensors I/O, safe text, checkpoints, metrics.jsonl, helpers for dataset plugins
    registry/     plugins: found, loaded, described, checked against the contract, blamed, sized
    export/       the generator file format, its metadata and model card, ONNX
    pictures/     sampling, latent walks, the GIF and the loss plot
    evaluation/   the shipped MNIST classifier, the metrics, scoring a generator
    run/          training: config, assembly, the step, the loop, the run folder, resume, reporting, trackers
    compare/      gankit compare: arms trained with the same seeds and budget, costs, statistics, the report
    generator_source   a generator from an export, a run folder or a checkpoint
    cli/          the ``gankit`` command
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from gankit.version import __version__

if TYPE_CHECKING:
    from gankit.export import load_generator

__all__ = ["__version__", "load_generator"]


def lazy_exports(package: str) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for a subpackage whose public names live in private modules.

    The subpackage's ``__init__`` names each public name once, as ``from gankit.run._trainer import Trainer as
    Trainer`` under ``if TYPE_CHECKING:`` (which is what type checkers and readers see); this reads that block, and
    imports a private module on first use of one of its names, so ``import gankit.run`` (and the CLI's start-up)
    does not import torch until something needs it.
    """
    source = Path(sys.modules[package].__file__ or "").read_text(encoding="utf-8")
    where: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    where.update({alias.asname or alias.name: statement.module for alias in statement.names})

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(where)

    return sorted(where), __getattr__, __dir__


MOVED_MODULES = {
    "gankit.config": "gankit.run",
    "gankit.training": "gankit.run",
    "gankit.contract": "gankit.registry",
    "gankit.introspect": "gankit.registry",
    "gankit.sampling": "gankit.pictures",
    "gankit.dataset_files": "gankit.files",
    "gankit.checkpoint": "gankit.files",
    "gankit.tensorfile": "gankit.files",
}
"""Module paths of gankit 0.x that plugins and scripts may still import, and the subpackage now serving them."""


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import gankit.config`` gives ``gankit.run``: the old paths keep working without a file per path."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """The subpackage is already imported."""


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())


def __getattr__(name: str) -> Any:
    """Import heavy parts on first use, so ``import gankit`` (and the CLI's startup) stays instant."""
    if name == "load_generator":
        from gankit.export import load_generator

        return load_generator
    raise AttributeError(f"module 'gankit' has no attribute {name!r}")
