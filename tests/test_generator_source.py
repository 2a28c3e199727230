"""A generator from any source: a checkpoint is recognised by its content, not its file name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gankit.errors import CheckpointError, ExportError
from gankit.export import save_generator
from gankit.files import save_checkpoint
from gankit.generator_source import generator_from_checkpoint, load_any_generator
from gankit.interfaces import Generator
from gankit.registry import registry
from gankit.run import RunFolder

OPTIONS = {"hidden": 8, "latent_dim": 4, "image_size": 4}


def same_weights(a: Generator, b: Generator) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.fixture
def run(tmp_path: Path) -> tuple[RunFolder, Generator]:
    """A run folder with a config and a checkpoint (no export), as training leaves it after Ctrl-C."""
    torch.manual_seed(0)
    generator = registry.create("generator", "mlp", OPTIONS)
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.config_path.write_text(json.dumps({"generator": "mlp", "generator_options": OPTIONS}))
    save_checkpoint(folder.checkpoint_path, {"generator": generator.state_dict(), "step": 3})
    return folder, generator


def test_run_folder_without_export_uses_its_checkpoint(run: tuple[RunFolder, Generator]) -> None:
    folder, generator = run
    rebuilt, plugin, ema_weights = generator_from_checkpoint(folder)
    assert plugin == "mlp" and not ema_weights and not rebuilt.training and same_weights(rebuilt, generator)
    assert same_weights(load_any_generator(folder.path), generator)


def test_a_checkpoint_is_recognised_by_its_content(run: tuple[RunFolder, Generator]) -> None:
    folder, generator = run
    renamed = folder.path / "before-the-crash.safetensors"
    shutil.copyfile(folder.checkpoint_path, renamed)
    older = folder.older_checkpoints_dir / "step_000000003.safetensors"
    older.parent.mkdir()
    shutil.copyfile(folder.checkpoint_path, older)
    for source in (folder.checkpoint_path, renamed, older):
        assert same_weights(load_any_generator(source), generator), source


def test_an_export_named_like_a_checkpoint_is_loaded_as_an_export(run: tuple[RunFolder, Generator]) -> None:
    folder, generator = run
    save_generator(generator, folder.checkpoint_path, plugin_name="mlp", overwrite=True)
    assert same_weights(load_any_generator(folder.checkpoint_path), generator)


def test_a_checkpoint_outside_its_run_folder_is_not_an_export(run: tuple[RunFolder, Generator], tmp_path: Path) -> None:
    folder, _ = run
    alone = tmp_path / "model.safetensors"
    shutil.copyfile(folder.checkpoint_path, alone)
    with pytest.raises(ExportError, match="is a gankit training checkpoint, not a gankit export"):
        load_any_generator(alone)


def test_a_checkpoint_without_generator_weights(run: tuple[RunFolder, Generator]) -> None:
    folder, _ = run
    save_checkpoint(folder.checkpoint_path, {"step": 1})
    with pytest.raises(CheckpointError, match="holds no generator weights"):
        load_any_generator(folder.path)
