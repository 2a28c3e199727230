"""ONNX export: every built-in generator agrees with gankit's sampling in onnxruntime, at any batch size, and the
file carries the export metadata; missing packages and untraceable plugins are one line each."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, run
from safetensors import safe_open
from torch import Tensor, nn

from gankit.errors import ExportError
from gankit.export import (
    IMAGES,
    LABELS,
    LATENT,
    METADATA_KEYS,
    export_metadata,
    export_onnx,
    read_onnx_metadata,
    save_generator,
)
from gankit.interfaces import Generator, GeneratorOptions
from gankit.pictures import sample_images
from gankit.registry import registry

needs_onnx = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript", "onnxruntime")),
    reason='needs the onnx extra: pip install "gankit[onnx]"',
)

TOLERANCE = 1e-5
"""The largest difference allowed between onnxruntime's images and gankit's, per pixel (values in [-1, 1])."""

MODELS = {
    "mlp-28": ("mlp", {"hidden": 8, "image_size": 28}),
    "mlp-32": ("mlp", {"hidden": 8, "image_size": 32}),
    "mlp-64": ("mlp", {"hidden": 8, "image_size": 64}),
    "dcgan-28": ("dcgan", {"width": 8, "image_size": 28}),
    "dcgan-32": ("dcgan", {"width": 8, "image_size": 32}),
    "dcgan-64": ("dcgan", {"width": 4, "image_size": 64}),
    "conditional-dcgan-28": ("dcgan", {"width": 8, "image_size": 28, "num_classes": 10}),
    "conditional-mlp-32": ("mlp", {"hidden": 8, "image_size": 32, "num_classes": 10, "channels": 3}),
}


def trained(plugin: str, options: dict[str, object]) -> Generator:
    """A generator whose batch norms hold statistics of their own, so a lost buffer would show."""
    generator = registry.create("generator", plugin, options)
    torch.manual_seed(0)
    generator.train()
    with torch.no_grad():
        for _ in range(3):
            labels = torch.arange(6) % generator.num_classes if generator.num_classes else None
            generator(torch.randn(6, generator.latent_dim) * 2, labels)
    return generator.eval()


def session(path: Path) -> Any:
    """An onnxruntime session of the model at ``path``, on the CPU."""
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_images(path: Path, generator: Generator, n: int, seed: int) -> np.ndarray:
    """What onnxruntime makes from the latents and labels ``gankit sample --n N --seed SEED`` uses."""
    feed = {LATENT: torch.randn(n, generator.latent_dim, generator=torch.Generator().manual_seed(seed)).numpy()}
    if generator.num_classes:
        feed[LABELS] = (torch.arange(n) % generator.num_classes).numpy()
    (images,) = session(path).run([IMAGES], feed)
    return np.asarray(images)


@needs_onnx
@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_onnxruntime_matches_gankit_sampling_at_any_batch_size(name: str, tmp_path: Path) -> None:
    plugin, options = MODELS[name]
    generator = trained(plugin, options)
    path = tmp_path / f"{name}.onnx"
    export_onnx(generator, path, metadata=export_metadata(generator, plugin_name=plugin))
    for n in (1, 5):
        ours = onnx_images(path, generator, n, seed=n)
        expected = sample_images(generator, n, seed=n).numpy()
        assert ours.shape == expected.shape == (n, *generator.image_shape)
        assert np.abs(ours - expected).max() <= TOLERANCE, name
    model = session(path)
    names = [LATENT, LABELS] if generator.num_classes else [LATENT]
    assert [i.name for i in model.get_inputs()] == names
    assert [o.name for o in model.get_outputs()] == [IMAGES]
    assert all(isinstance(i.shape[0], str) for i in model.get_inputs())  # a symbolic, dynamic batch size


@pytest.fixture(scope="module")
def small() -> Generator:
    return trained("mlp", {"hidden": 4, "image_size": 8, "latent_dim": 6})


@needs_onnx
def test_metadata_props_carry_the_export_metadata(small: Generator, tmp_path: Path) -> None:
    card = {"created": "2026-01-01T00:00:00Z"}  # one creation time for both files
    metadata = export_metadata(small, plugin_name="mlp", extra={"dataset": "mnist"}, card=card)
    save_generator(small, tmp_path / "g.safetensors", plugin_name="mlp", extra={"dataset": "mnist"}, card=card)
    with safe_open(str(tmp_path / "g.safetensors"), framework="pt") as handle:
        assert metadata == {key: value for key, value in handle.metadata().items() if key != "content_hash"}
    export_onnx(small, tmp_path / "g.onnx", metadata=metadata)
    props = read_onnx_metadata(tmp_path / "g.onnx")
    assert props == metadata and set(METADATA_KEYS) < set(props) and props["dataset"] == "mnist"
    assert session(tmp_path / "g.onnx").get_modelmeta().custom_metadata_map == metadata


@needs_onnx
def test_metadata_is_checked_against_the_generator(small: Generator, tmp_path: Path) -> None:
    metadata = export_metadata(small, plugin_name="mlp")
    with pytest.raises(ExportError, match="lacks the key"):
        export_onnx(small, tmp_path / "g.onnx", metadata={k: v for k, v in metadata.items() if k != "plugin"})
    with pytest.raises(ExportError, match="latent_dim, image_shape, num_classes"):
        export_onnx(small, tmp_path / "g.onnx", metadata={**metadata, "latent_dim": "7"})
    assert not (tmp_path / "g.onnx").exists()


@needs_onnx
def test_existing_file_is_refused_and_the_model_is_left_as_it_was(small: Generator, tmp_path: Path) -> None:
    metadata = export_metadata(small, plugin_name="mlp")
    (tmp_path / "g.onnx").write_bytes(b"keep")
    small.train()
    with pytest.raises(ExportError, match="already exists"):
        export_onnx(small, tmp_path / "g.onnx", metadata=metadata)
    assert (tmp_path / "g.onnx").read_bytes() == b"keep"
    export_onnx(small, tmp_path / "g.onnx", metadata=metadata, overwrite=True)
    assert small.training
    small.eval()


class Untraceable(Generator):
    """Branches on the values of its input, which a graph of a fixed shape cannot hold."""

    Options = GeneratorOptions

    def __init__(self, options: GeneratorOptions) -> None:
        super().__init__(options)
        self.linear = nn.Linear(self.latent_dim, 16)

    def forward(self, latent: Tensor, labels: Tensor | None = None) -> Tensor:
        out = self.linear(latent)
        if out.sum() > 0:
            out = -out
        return torch.tanh(out).reshape(-1, 1, 4, 4)  # images in [-1, 1]: sampling would take them


@pytest.fixture
def untraceable() -> Iterator[str]:
    registry.register("generator", "untraceable", Untraceable)
    try:
        yield "untraceable"
    finally:
        registry.unregister("generator", "untraceable")


@needs_onnx
def test_a_plugin_that_cannot_be_traced_is_named_in_one_line(untraceable: str, tmp_path: Path) -> None:
    generator = registry.create("generator", untraceable, {"image_size": 4, "latent_dim": 3})
    save_generator(generator, tmp_path / "g.safetensors", plugin_name=untraceable)
    result = run("export", tmp_path / "g.safetensors", "--format", "onnx", "--out", tmp_path / "g.onnx")
    assert_user_error(result, "generator plugin 'untraceable' cannot be exported to ONNX")
    assert not (tmp_path / "g.onnx").exists()


def test_missing_packages_say_what_to_install(
    small: Generator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_generator(small, tmp_path / "g.safetensors", plugin_name="mlp")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` raise ImportError
    result = run("export", tmp_path / "g.safetensors", "--format", "onnx", "--out", tmp_path / "g.onnx")
    assert_user_error(result, 'pip install "gankit[onnx]"')


# -- the command line ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "run"
    fake = ["--dataset", "fake", "--data-opt", "size=32", "--batch-size", "8", "--device", "cpu", "--quiet"]
    result = run(
        "train", "--gen", "dcgan", "--gen-opt", "width=4", "--disc-opt", "width=4", "--num-classes", "10",
        *fake, "--max-steps", "2", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


@needs_onnx
@pytest.mark.slow
def test_export_command_writes_onnx_from_a_run_and_from_an_export(trained_run: Path, tmp_path: Path) -> None:
    result = run("export", trained_run, "--format", "onnx", "--out", tmp_path / "run.onnx")
    assert result.exit_code == 0, result.output
    assert "onnx" in result.output
    export = trained_run / "generator.safetensors"
    with safe_open(str(export), framework="pt") as handle:
        recorded = handle.metadata()
    props = read_onnx_metadata(tmp_path / "run.onnx")
    assert {key: props[key] for key in METADATA_KEYS} == {key: recorded[key] for key in METADATA_KEYS}

    result = run("export", export, "--format", "onnx", "--out", tmp_path / "file.onnx")
    assert result.exit_code == 0, result.output
    assert read_onnx_metadata(tmp_path / "file.onnx") == {k: v for k, v in recorded.items() if k != "content_hash"}
    from gankit.export import load_generator

    generator = load_generator(export)
    ours = onnx_images(tmp_path / "file.onnx", generator, 10, seed=0)
    assert np.abs(ours - sample_images(generator, 10, seed=0).numpy()).max() <= TOLERANCE

    assert_user_error(run("export", export, "--format", "onnx", "--out", tmp_path / "file.onnx"), "already exists")
    assert_user_error(run("export", trained_run, "--format", "tflite"), "--format")


@needs_onnx
def test_default_destination_is_next_to_the_export(small: Generator, tmp_path: Path) -> None:
    save_generator(small, tmp_path / "g.safetensors", plugin_name="mlp")
    result = run("export", tmp_path / "g.safetensors", "--format", "onnx")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "g.onnx").is_file()
    assert_user_error(run("export", tmp_path / "g.safetensors"), "--format onnx")
