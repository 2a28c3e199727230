"""The example third-party package (examples/gankit-extras), installed with pip and used by name through the CLI.

Also the self-description behind ``gankit info`` (``gankit.registry``), shown on the example's ResNet and on the
built-ins: option tables, and layer tables from a real forward pass.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import assert_user_error, pytest_in, run
from torch import Tensor, nn

from gankit.errors import ConfigError, PluginError
from gankit.export import read_export_metadata
from gankit.interfaces import Generator, GeneratorOptions
from gankit.registry import DUMMY_BATCH, create_plugin, describe_plugin, registry

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover - exercised on Python 3.10 only
    pass

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "gankit-extras"
DISTRIBUTION = "gankit-extras"
MNIST = ["--dataset", "mnist", "--max-steps", "3", "--batch-size", "32", "--device", "cpu", "--quiet",
         "--sample-count", "4"]  # fmt: skip
SMALL_DCGAN = ["--gen", "dcgan", "--gen-opt", "width=8", "--disc-opt", "width=8"]


@pytest.fixture(scope="session")
def extras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Install the example package as a user would (pip, its own pyproject.toml), into a folder of its own that is
    put on ``sys.path`` for the session: the running environment is never changed. The entry points come from the
    installed metadata there, as for any distribution."""
    site = tmp_path_factory.mktemp("extras-site")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site)]
    subprocess.run([*pip, str(EXAMPLE)], check=True)
    sys.path.append(str(site))
    importlib.invalidate_caches()
    yield site
    sys.path.remove(str(site))
    for module in [name for name in sys.modules if name.startswith("gankit_extras")]:
        del sys.modules[module]
    importlib.invalidate_caches()


def train(out: Path, *args: str) -> dict[str, float]:
    """Train for three steps on MNIST through the CLI; returns the last metrics line, checked to be finite."""
    result = run("train", *args, *MNIST, "--out", out)
    assert result.exit_code == 0, result.output
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3
    assert all(math.isfinite(last[key]) for key in ("d_loss", "g_loss")), last
    return last  # type: ignore[no-any-return]


# -- the example package -------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("extras")
def test_plugins_command_lists_them_with_their_distribution() -> None:
    result = run("plugins")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if DISTRIBUTION in line]
    for kind, name in [("loss", "hinge"), ("loss", "wgan-gp"), ("loss", "lsgan"), ("generator", "resnet")]:
        assert registry.entry(kind, name).distribution == DISTRIBUTION
        assert any(f" {name} " in line and "ok" in line for line in lines), result.output
    assert registry.entry("discriminator", "resnet").distribution == DISTRIBUTION
    assert not any("error" in line for line in lines), result.output


@pytest.mark.slow
@pytest.mark.usefixtures("extras")
@pytest.mark.parametrize(
    ("loss", "extra"), [("hinge", []), ("lsgan", []), ("wgan-gp", ["--d-steps", "2", "--loss-opt", "gp_weight=5"])]
)
def test_each_loss_trains_on_mnist_through_the_cli(tmp_path: Path, loss: str, extra: list[str]) -> None:
    train(tmp_path / "run", *SMALL_DCGAN, "--loss", loss, *extra)
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert resolved["loss"] == loss
    if loss == "wgan-gp":
        assert resolved["d_steps"] == 2 and resolved["loss_options"]["gp_weight"] == 5


@pytest.mark.slow
@pytest.mark.usefixtures("extras")
def test_resnet_pair_trains_on_mnist_exports_and_samples(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(out, "--gen", "resnet", "--gen-opt", "width=8", "--disc-opt", "width=8", "--loss", "hinge")
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["discriminator"] == "resnet"  # the generator's namesake
    assert resolved["discriminator_options"]["spectral_norm"] is True
    exported = read_export_metadata(out / "generator.safetensors")
    assert exported.plugin == "resnet" and exported.distribution == DISTRIBUTION
    assert exported.plugin_options["width"] == 8
    result = run("sample", out, "--n", "4", "--out", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "grid.png").stat().st_size > 0


@pytest.mark.slow
def test_the_package_passes_its_own_tests(extras: Path) -> None:
    result = pytest_in(EXAMPLE, site=extras)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


# -- self-description (gankit info) ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("extras")
def test_describe_resnet_discriminator_layer_by_layer() -> None:
    described = describe_plugin("discriminator", "resnet", image_size=32, width=8)
    assert described.distribution == DISTRIBUTION and described.api_version == 1
    assert described.summary.startswith("SNGAN-style ResNet discriminator")
    assert described.input_shapes == {"images": (DUMMY_BATCH, 1, 32, 32)}
    assert described.output_shape == (DUMMY_BATCH,) and described.warnings == ()
    layers = {layer.path: layer for layer in described.layers or ()}
    first = layers["blocks.0.residual.0"]
    assert first.type == "Conv2d (weight: SpectralNorm)" and first.output_shape == (DUMMY_BATCH, 8, 32, 32)
    assert first.parameters == 8 * 1 * 3 * 3 + 8  # counted from the parametrization's original weight
    assert layers["blocks.2.residual.4"].output_shape == (DUMMY_BATCH, 8, 4, 4)  # 32 -> 16 -> 8 -> 4
    model = create_plugin("discriminator", "resnet", {"image_size": 32, "width": 8})
    total = sum(p.numel() for p in model.parameters())
    assert described.total_parameters == total == sum(layer.parameters for layer in layers.values())
    options = {option.name: option for option in described.options}
    assert options["image_size"].choices == (28, 32, 64) and options["image_size"].value == 32
    assert options["width"].bounds == {"ge": 4, "le": 1024} and options["width"].value == 8


def test_describe_dcgan_generator_at_64_pixels() -> None:
    described = describe_plugin("generator", "dcgan", image_size=64, width=4, num_classes=10)
    assert described.distribution == "gankit" and described.module_summary.startswith("DCGAN")
    assert described.input_shapes == {"latent": (DUMMY_BATCH, 100), "labels": (DUMMY_BATCH,)}
    assert described.output_shape == (DUMMY_BATCH, 1, 64, 64)
    shapes = [layer.output_shape for layer in described.layers or () if layer.type == "ConvTranspose2d"]
    sides_and_widths = [(32, 4), (16, 8), (8, 16), (4, 32), (1, 64)]
    assert shapes == [(DUMMY_BATCH, width, side, side) for width, side in sides_and_widths]
    options = {option.name: option for option in described.options}
    assert options["image_size"].bounds_text == "one of 28, 32, 64"
    assert options["width"].bounds_text == ">= 1, <= 1024" and options["width"].default == 64


def test_describe_loss_and_dataset_have_options_only() -> None:
    described = describe_plugin("loss", "nonsat")
    assert described.layers is None and described.total_parameters is None
    smoothing = {option.name: option for option in described.options}["label_smoothing"]
    assert (smoothing.name, smoothing.type, smoothing.default) == ("label_smoothing", "float", 0.0)
    assert smoothing.bounds_text == ">= 0.0, < 0.5" and "smoothing" in smoothing.description
    root = {option.name: option for option in describe_plugin("dataset", "mnist").options}["root"]
    assert root.type == "Path | None" and root.default_text == "None"
    with pytest.raises(ConfigError, match="image_size applies to generators and discriminators"):
        describe_plugin("loss", "nonsat", image_size=32)
    with pytest.raises(ConfigError, match="width"):
        describe_plugin("generator", "dcgan", width=0)


class _Broken(Generator):
    """Fails in its second layer."""

    def __init__(self, options: GeneratorOptions) -> None:
        super().__init__(options)
        self.first = nn.Linear(self.latent_dim, 3)
        self.second = nn.Linear(4, 3)

    def forward(self, latent: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.second(self.first(latent))  # type: ignore[no-any-return]


class _WrongShape(Generator):
    """Returns flat vectors instead of images."""

    def __init__(self, options: GeneratorOptions) -> None:
        super().__init__(options)
        self.linear = nn.Linear(self.latent_dim, 5)

    def forward(self, latent: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.linear(latent)  # type: ignore[no-any-return]


def test_describe_reports_a_failing_forward_and_a_broken_contract() -> None:
    registry.register("generator", "broken-info-test", _Broken)
    registry.register("generator", "flat-info-test", _WrongShape)
    try:
        with pytest.raises(PluginError, match=r"failed on a dummy batch \(latent \(2, 100\)\) after layer 'first'"):
            describe_plugin("generator", "broken-info-test")
        (warning,) = describe_plugin("generator", "flat-info-test").warnings
        assert "(2, 5)" in warning and "(N, *image_shape)" in warning
    finally:
        registry.unregister("generator", "broken-info-test")
        registry.unregister("generator", "flat-info-test")


@pytest.mark.usefixtures("extras")
def test_info_command_prints_options_and_layers() -> None:
    result = run("info", "discriminator", "resnet", "--image-size", "32", "--disc-opt", "width=8")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "discriminator 'resnet' from 'gankit-extras' 0.1.0" in out and "plugin API 1" in out
    for fragment in ("spectral_norm", "one of 28, 32, 64", ">= 4, <= 1024", "Conv2d (weight: SpectralNorm)"):
        assert fragment in out, fragment
    assert "(N, 8, 4, 4)" in out and "input images (N, 1, 32, 32) -> output (N,)" in out
    total = describe_plugin("discriminator", "resnet", image_size=32, width=8).total_parameters
    assert f"{total:,}" in out
    loss = run("info", "loss", "wgan-gp")
    assert loss.exit_code == 0 and "gp_weight" in loss.output and "layers" not in loss.output


def test_info_command_mistakes_are_one_line() -> None:
    assert_user_error(run("info", "generator", "dcgn"), "Did you mean 'dcgan'?")
    assert_user_error(run("info", "generator", "dcgan", "--image-size", "48"), "image_size")
    assert_user_error(run("info", "generator", "dcgan", "--gen-opt", "widht=3"), "widht")
    assert_user_error(
        run("info", "generator", "dcgan", "--gen-opt", "image_size=28", "--image-size", "32"),
        "--gen-opt",
        "--image-size",
    )
    assert_user_error(run("info", "loss", "nonsat", "--image-size", "32"), "image_size")
    assert run("info", "critic", "dcgan").exit_code == 2  # click's own usage error


def test_info_help() -> None:
    result = run("info", "--help")
    assert result.exit_code == 0 and "--image-size" in result.output and "KEY=VALUE" in result.output
