"""examples/standalone_reader.py: it runs where gankit cannot be imported, it makes gankit's samples bit for bit,
and it is the very code docs/export.md shows; the architecture spec there names every tensor of the built-ins."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from gankit.export import load_generator, save_generator
from gankit.interfaces import Generator
from gankit.pictures import sample_images
from gankit.registry import registry

ROOT = Path(__file__).resolve().parents[1]
READER = ROOT / "examples" / "standalone_reader.py"
EXPORT_DOC = ROOT / "docs" / "export.md"

CASES = {
    "mlp": ("mlp", {"hidden": 8, "image_size": 32}),
    "dcgan": ("dcgan", {"width": 4, "image_size": 64}),
    "conditional-dcgan": ("dcgan", {"width": 4, "num_classes": 10}),
    "conditional-mlp": ("mlp", {"hidden": 4, "num_classes": 3, "embedding_dim": 5, "channels": 3}),
}

BLOCK_GANKIT = """
import importlib.abc, runpy, sys

class BlockGankit(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("gankit", "gankit_plugins"):
            raise ImportError(f"{name} is blocked: the stand-alone reader must not need gankit")
        return None

sys.meta_path.insert(0, BlockGankit())
try:
    import gankit
except ImportError:
    pass
else:
    raise SystemExit("the blocker failed: gankit is importable")
for argv in ARGV:
    sys.argv = argv
    runpy.run_path(READER, run_name="__main__")
assert not any(name.partition(".")[0] in ("gankit", "gankit_plugins") for name in sys.modules)
"""


def trained_export(plugin: str, options: dict[str, object], path: Path) -> Generator:
    """A generator with non-default weights and batch-norm statistics, exported to ``path``."""
    generator = registry.create("generator", plugin, options)
    torch.manual_seed(0)
    for module in generator.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.3)
    generator.train()
    with torch.no_grad():
        for _ in range(3):
            labels = torch.arange(6) % generator.num_classes if generator.num_classes else None
            generator(torch.randn(6, generator.latent_dim), labels)
    save_generator(generator.eval(), path, plugin_name=plugin)
    return generator


@pytest.mark.slow
def test_reader_reproduces_gankit_sample_without_gankit(tmp_path: Path) -> None:
    argv = []
    for name, (plugin, options) in CASES.items():
        trained_export(plugin, options, tmp_path / f"{name}.safetensors")
        export = str(tmp_path / f"{name}.safetensors")
        for out in (f"{name}-images.safetensors", f"{name}.png"):
            argv.append(["reader", export, "--n", "7", "--seed", "3", "--out", str(tmp_path / out)])
        if "conditional" in name:
            out = str(tmp_path / f"{name}-label-images.safetensors")
            argv.append(["reader", export, "--n", "4", "--seed", "1", "--label", "2", "--out", out])
    code = f"READER = {str(READER)!r}\nARGV = {json.dumps(argv)}\n{BLOCK_GANKIT}"
    # -I: no PYTHONPATH, no user site and no current folder on sys.path; the blocker stops the editable install.
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    for name in CASES:
        export = tmp_path / f"{name}.safetensors"
        generator = load_generator(export)
        ours = load_file(tmp_path / f"{name}-images.safetensors")["images"]
        assert torch.equal(ours, sample_images(generator, 7, seed=3)), name
        assert run("sample", export, "--n", "7", "--seed", "3", "--out", tmp_path / f"{name}-gankit.png").exit_code == 0
        theirs = np.asarray(Image.open(tmp_path / f"{name}-gankit.png"))
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"{name}.png")), theirs), name
        if "conditional" in name:
            labelled = load_file(tmp_path / f"{name}-label-images.safetensors")["images"]
            expected = sample_images(generator, 4, seed=1, labels=torch.full((4,), 2))
            assert torch.equal(labelled, expected), name


def test_reader_refuses_a_plugin_it_does_not_know() -> None:
    reader = runpy.run_path(str(READER))
    with pytest.raises(ValueError, match="knows mlp and dcgan"):
        reader["Generator"]("resnet", {"num_classes": 0, "channels": 1, "image_size": 28, "latent_dim": 4})


def test_docs_show_the_tested_reader_verbatim() -> None:
    code = READER.read_text(encoding="utf-8")
    assert f"```python\n{code}```\n" in EXPORT_DOC.read_text(encoding="utf-8"), (
        "docs/export.md must include examples/standalone_reader.py verbatim in a ```python block"
    )


@pytest.mark.parametrize("plugin", ["mlp", "dcgan"])
@pytest.mark.parametrize("image_size", [28, 32, 64])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_architecture_spec_names_every_tensor(plugin: str, image_size: int, num_classes: int) -> None:
    text = EXPORT_DOC.read_text(encoding="utf-8")
    options = {"image_size": image_size, "num_classes": num_classes}
    generator = registry.create("generator", plugin, options)

    def named(key: str) -> bool:  # by its full name, or a batch norm's as `net.1.*` with `net.k.running_mean` etc.
        prefix, _, leaf = key.rpartition(".")
        return f"`{key}`" in text or (f"`{prefix}.*`" in text and f"`net.k.{leaf}`" in text)

    missing = [key for key in generator.state_dict() if not named(key)]
    assert not missing, f"docs/export.md's architecture spec of {plugin} {options} does not name {missing}"
