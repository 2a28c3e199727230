"""The model card: recorded by train in the run folder and every export, carried by export with --meta, shown by
info EXPORT; and the loader's checks of what an export says about itself."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from cli_helpers import assert_user_error, registered, run
from safetensors import safe_open
from safetensors.torch import load_file
from test_data import write_split
from test_export import rewrite
from torch import Tensor, nn

from gankit.errors import ConfigError, ExportError
from gankit.export import (
    CARD_KEY,
    CARD_KEYS,
    export_metadata,
    load_generator,
    parse_user_fields,
    read_export_metadata,
    save_generator,
)
from gankit.interfaces import Generator, GeneratorOptions, ImageData, Split
from gankit.pictures import generate, sample_images
from gankit.registry import registry
from gankit_plugins.datasets import MNIST, FakeData, FashionMNIST

needs_onnx = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript")),
    reason='needs the onnx extra: pip install "gankit[onnx]"',
)

CLASS_NAMES = ("cat", "dog", "owl")


class NamedFake(FakeData):
    """Random images whose three classes have names and whose licence is known."""

    def load(self, split: Split = "train") -> ImageData:
        data = super().load(split)
        return ImageData(data.images, data.labels, data.num_classes, class_names=CLASS_NAMES, license="CC0-1.0")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Six steps of an MLP with EMA on named fake data, scored at steps 3 and 6."""
    out = tmp_path_factory.mktemp("card") / "run"
    with registered("dataset", "named-fake", NamedFake):
        result = run(
            "train", "--gen", "mlp", "--gen-opt", "hidden=8", "--disc-opt", "hidden=8", "--dataset", "named-fake",
            "--data-opt", "size=32", "--data-opt", "num_classes=3", "--batch-size", "8", "--max-steps", "6",
            "--seed", "5", "--ema", "--eval-every", "3", "--eval-samples", "100", "--device", "cpu", "--quiet",
            "--out", out,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        yield out


def card_of(path: Path) -> dict[str, Any]:
    card = read_export_metadata(path).model_card
    assert card is not None
    return card


def test_train_records_the_card_in_the_run_and_the_export(trained_run: Path) -> None:
    card = json.loads((trained_run / "model_card.json").read_text())
    assert card_of(trained_run / "generator.safetensors") == card
    assert list(card) == list(CARD_KEYS)
    assert card["dataset"] == "named-fake" and card["data_license"] == "CC0-1.0"
    assert card["class_count"] == 3 and card["class_names"] == list(CLASS_NAMES)
    assert card["image_shape"] == [1, 28, 28] and card["channel_order"] == "CHW, grayscale"
    assert card["output_range"] == [-1, 1]
    assert (card["steps"], card["steps_per_epoch"], card["epochs"], card["seed"]) == (6, 4, 1.5, 5)
    assert card["ema_weights"] is True
    assert card["last_scores"]["step"] == 6
    scores = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    logged = {row["step"]: row["eval/frechet_distance"] for row in scores if "eval/frechet_distance" in row}
    assert set(logged) == {3, 6}
    assert card["last_scores"]["frechet_distance"] == logged[6]
    best_step = min(logged, key=logged.__getitem__)
    assert card["best_scores"]["step"] == best_step and card["best_scores"]["frechet_distance"] == logged[best_step]
    assert card["gankit_version"] and card["torch_version"] == torch.__version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", card["created"])
    assert card["user"] == {}


def test_the_best_export_carries_the_card_of_its_step(trained_run: Path) -> None:
    best = card_of(trained_run / "generator-best.safetensors")
    final = card_of(trained_run / "generator.safetensors")
    assert best["steps"] == final["best_scores"]["step"] == best["last_scores"]["step"]
    assert best["best_scores"] == final["best_scores"]
    assert best["class_names"] == list(CLASS_NAMES)


def test_export_carries_the_card_and_adds_user_fields(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.safetensors"
    result = run("export", trained_run, "--out", out, "--meta", "owner=ana", "--meta", "note=a=b c", "--meta", "x=")
    assert result.exit_code == 0, result.output
    card, recorded = card_of(out), card_of(trained_run / "generator.safetensors")
    assert card["user"] == {"owner": "ana", "note": "a=b c", "x": ""}
    assert card["ema_weights"] is True  # an --ema run: gankit export takes the checkpoint's EMA, as training does
    assert card["steps"] == 6 and card["last_scores"] == recorded["last_scores"]
    same = ("dataset", "data_license", "class_count", "class_names", "seed", "best_scores", "image_shape")
    assert {key: card[key] for key in same} == {key: recorded[key] for key in same}


def test_export_of_an_ema_run_writes_the_weights_training_wrote(trained_run: Path, tmp_path: Path) -> None:
    """``gankit export RUN_DIR`` of an --ema run exports the average, bit for bit training's generator.safetensors."""
    out = tmp_path / "g.safetensors"
    assert run("export", trained_run, "--out", out).exit_code == 0
    exported, trained = load_file(out), load_file(trained_run / "generator.safetensors")
    assert exported.keys() == trained.keys()
    assert all(
        exported[key].dtype == trained[key].dtype and torch.equal(exported[key], trained[key]) for key in trained
    )
    assert card_of(out)["ema_weights"] is True


@pytest.mark.parametrize("bad", ["owner", "=value", " =x"])
def test_meta_needs_key_equals_value(trained_run: Path, tmp_path: Path, bad: str) -> None:
    out = tmp_path / "g.safetensors"
    assert_user_error(run("export", trained_run, "--out", out, "--meta", bad), "--meta expects KEY=VALUE")
    assert not out.exists()
    with pytest.raises(ConfigError, match="printable"):
        parse_user_fields(["a\nb=1"])


def test_an_export_of_an_old_run_without_a_card_file_says_what_config_json_knows(
    trained_run: Path, tmp_path: Path
) -> None:
    import shutil

    old = tmp_path / "old"
    shutil.copytree(trained_run, old)
    (old / "model_card.json").unlink()
    assert run("export", old, "--out", tmp_path / "g.safetensors").exit_code == 0
    card = card_of(tmp_path / "g.safetensors")
    assert (card["dataset"], card["seed"], card["steps"]) == ("named-fake", 5, 6)
    assert card["class_names"] is None and card["data_license"] == "unknown" and card["epochs"] is None


def test_export_metadata_is_what_save_generator_writes(tmp_path: Path) -> None:
    generator = registry.create("generator", "mlp", {"hidden": 4, "image_size": 8, "latent_dim": 6})
    card = {"dataset": "mine", "created": "2026-01-01T00:00:00Z"}
    metadata = export_metadata(generator, plugin_name="mlp", extra={"run": "7"}, card=card)
    save_generator(generator, tmp_path / "g.safetensors", plugin_name="mlp", extra={"run": "7"}, card=card)
    with safe_open(str(tmp_path / "g.safetensors"), framework="pt") as handle:
        written_metadata = dict(handle.metadata())
    assert written_metadata.pop("content_hash").startswith("blake2b:")  # the file's own, over tensors and metadata
    assert written_metadata == metadata
    written = json.loads(metadata[CARD_KEY])
    assert written["dataset"] == "mine" and written["created"] == card["created"] and list(written) == list(CARD_KEYS)
    with pytest.raises(ExportError, match="reserved"):
        save_generator(generator, tmp_path / "h.safetensors", plugin_name="mlp", extra={CARD_KEY: "{}"})


def test_a_card_too_long_to_read_back_is_refused(tmp_path: Path) -> None:
    generator = registry.create("generator", "mlp", {"hidden": 4, "image_size": 8, "latent_dim": 6})
    with pytest.raises(ExportError, match="shorten the --meta values"):
        save_generator(generator, tmp_path / "g.safetensors", plugin_name="mlp", card={"user": {"x": "y" * 10**6}})
    assert not (tmp_path / "g.safetensors").exists()


# -- gankit info EXPORT ------------------------------------------------------------------------------------------


def test_info_prints_the_card_of_an_export_and_of_a_run(trained_run: Path) -> None:
    for source in (trained_run / "generator.safetensors", trained_run):
        result = run("info", source)
        assert result.exit_code == 0, result.output
        for shown in ("export metadata", "model card", "named-fake", "cat, dog, owl", "CC0-1.0", "plugin_options"):
            assert shown in result.output


def test_info_of_a_run_without_an_export_prints_its_card(trained_run: Path, tmp_path: Path) -> None:
    (tmp_path / "model_card.json").write_text((trained_run / "model_card.json").read_text())
    result = run("info", tmp_path)
    assert result.exit_code == 0, result.output
    assert "without an export" in result.output and "cat, dog, owl" in result.output


def test_info_refuses_what_is_not_an_export(trained_run: Path, tmp_path: Path) -> None:
    assert_user_error(run("info", tmp_path / "nothing.safetensors"), "does not exist")
    assert_user_error(run("info", trained_run / "checkpoint.safetensors"), "training checkpoint", "gankit export")
    assert_user_error(run("info", tmp_path), "no generator.safetensors and no model card")
    assert_user_error(run("info", trained_run / "config.json"), "expected a .safetensors or .onnx file")
    assert_user_error(run("info", trained_run, "--gen-opt", "hidden=3"), "not an export")
    assert_user_error(run("info", "generator"), "Missing argument 'NAME'")
    assert_user_error(run("info", "gadget", "mlp"), "'gadget' is not one of")


def test_info_of_an_export_without_a_card(tmp_path: Path) -> None:
    generator = registry.create("generator", "mlp", {"hidden": 4, "image_size": 8, "latent_dim": 6})
    path = tmp_path / "g.safetensors"
    save_generator(generator, path, plugin_name="mlp")
    rewrite(path, **{CARD_KEY: None})
    assert read_export_metadata(path).model_card is None
    result = run("info", path)
    assert result.exit_code == 0, result.output
    assert "model card: none" in result.output


def test_info_shows_hostile_strings_as_text(tmp_path: Path) -> None:
    generator = registry.create("generator", "mlp", {"hidden": 4, "image_size": 8, "latent_dim": 6})
    path = tmp_path / "g.safetensors"
    save_generator(generator, path, plugin_name="mlp", card={"user": {"[bold]x": "\x1b]0;pwned\x07\nError: fake"}})
    result = run("info", path)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "[bold]x" in result.output
    assert not any(line.startswith("Error:") for line in result.output.splitlines())


@needs_onnx
@pytest.mark.slow
def test_onnx_carries_the_card_and_info_reads_it(trained_run: Path, tmp_path: Path) -> None:
    from gankit.export import read_onnx_export_metadata, read_onnx_metadata

    export = trained_run / "generator.safetensors"
    assert run("export", export, "--format", "onnx", "--out", tmp_path / "plain.onnx").exit_code == 0
    with safe_open(str(export), framework="pt") as handle:  # carried as it is, but for the file's own hash
        carried = {key: value for key, value in handle.metadata().items() if key != "content_hash"}
    assert read_onnx_metadata(tmp_path / "plain.onnx") == carried

    result = run("export", export, "--format", "onnx", "--out", tmp_path / "g.onnx", "--meta", "owner=ana")
    assert result.exit_code == 0, result.output
    card = read_onnx_export_metadata(tmp_path / "g.onnx").model_card
    assert card is not None and card == {**card_of(export), "user": {"owner": "ana"}}

    result = run("info", tmp_path / "g.onnx")
    assert result.exit_code == 0, result.output
    assert "ONNX model" in result.output and "user.owner" in result.output and "cat, dog, owl" in result.output

    assert run("export", trained_run, "--format", "onnx", "--out", tmp_path / "r.onnx", "--meta", "k=v").exit_code == 0
    card = read_onnx_export_metadata(tmp_path / "r.onnx").model_card
    assert card is not None and card["user"] == {"k": "v"} and card["ema_weights"] is True


# -- the loader's checks -----------------------------------------------------------------------------------------


@pytest.fixture
def export(tmp_path: Path) -> Path:
    generator = registry.create("generator", "mlp", {"hidden": 4, "image_size": 8, "latent_dim": 6})
    path = tmp_path / "g.safetensors"
    save_generator(generator, path, plugin_name="mlp")
    return path


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"latent_dim": "7"}, "metadata 'latent_dim' is 7 but plugin_options say latent_dim=6"),
        ({"num_classes": "3"}, "metadata 'num_classes' is 3 but plugin_options say num_classes=0"),
        ({"image_shape": "[3, 8, 8]"}, "metadata 'image_shape' is [3, 8, 8] but plugin_options say channels=1"),
        ({"image_shape": "[1, 9, 9]"}, "metadata 'image_shape' is [1, 9, 9] but plugin_options say image_size=8"),
    ],
)
def test_recorded_geometry_is_checked_against_the_options_before_any_build(
    export: Path, change: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rewrite(export, **change)

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the plugin was built")

    monkeypatch.setattr(registry, "create", no_build)
    for loader in (read_export_metadata, load_generator):
        with pytest.raises(ExportError) as caught:
            loader(export)
        assert expected in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("latent_distribution", "uniform", "records latent_distribution 'uniform', but generator plugin 'mlp' draws"),
        ("output_range", "[0, 255]", "records output_range [0.0, 255.0], which gankit does not support"),
    ],
)
def test_unsupported_latents_and_ranges_are_refused_in_one_line(
    export: Path, tmp_path: Path, key: str, value: str, expected: str
) -> None:
    rewrite(export, **{key: value})
    assert getattr(read_export_metadata(export), key) is not None  # the metadata alone still reads
    with pytest.raises(ExportError, match=re.escape(expected)):
        load_generator(export)
    assert_user_error(run("sample", export, "--out", tmp_path / "s.png"), expected)
    assert not (tmp_path / "s.png").exists()


class UniformGenerator(Generator):
    """Latents from U(-1, 1), declared as such."""

    latent_distribution: ClassVar[str] = "uniform"

    def __init__(self, options: GeneratorOptions) -> None:
        super().__init__(options)
        self.linear = nn.Linear(self.latent_dim, 16)

    def sample_latent(self, batch_size: int, *, generator: torch.Generator | None = None) -> Tensor:
        return torch.rand(batch_size, self.latent_dim, generator=generator) * 2 - 1

    def forward(self, latent: Tensor, labels: Tensor | None = None) -> Tensor:
        return torch.tanh(self.linear(latent)).reshape(-1, 1, 4, 4)


@pytest.fixture
def uniform() -> Iterator[str]:
    with registered("generator", "uniform", UniformGenerator):
        yield "uniform"


def test_a_plugin_declaring_another_prior_loads_with_it(uniform: str, tmp_path: Path) -> None:
    generator = registry.create("generator", uniform, {"image_size": 4, "latent_dim": 3})
    path = tmp_path / "u.safetensors"
    save_generator(generator, path, plugin_name=uniform)
    assert read_export_metadata(path).latent_distribution == "uniform"
    assert torch.equal(sample_images(load_generator(path), 4, seed=1), sample_images(generator, 4, seed=1))
    rewrite(path, latent_distribution="standard_normal")
    with pytest.raises(ExportError, match="draws its latents from 'uniform'"):
        load_generator(path)


def test_a_checkpoint_is_recognised_by_its_content_whatever_its_name(trained_run: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "generator.safetensors"
    renamed.write_bytes((trained_run / "checkpoint.safetensors").read_bytes())
    with pytest.raises(ExportError) as caught:
        load_generator(renamed)
    message = str(caught.value)
    assert "is a gankit training checkpoint, not a gankit export" in message and "gankit export RUN_DIR" in message


# -- the datasets' names and licences ------------------------------------------------------------------------------


def test_builtin_datasets_name_their_classes(tmp_path: Path) -> None:
    images, labels = torch.zeros(4, 28, 28, dtype=torch.uint8), torch.arange(4, dtype=torch.uint8)
    write_split(tmp_path, "train", images, labels, compress=False)
    mnist = MNIST(MNIST.Options(root=tmp_path)).load("train")
    assert mnist.class_names == tuple("0123456789") and mnist.license is None
    fashion = FashionMNIST(FashionMNIST.Options(root=tmp_path)).load("train")
    assert fashion.class_names is not None and len(fashion.class_names) == 10 and fashion.license == "MIT"
    assert (fashion.class_names[0], fashion.class_names[9]) == ("T-shirt/top", "Ankle boot")


# -- one forward-pass loop -----------------------------------------------------------------------------------------


def test_generate_is_the_loop_behind_sample_images() -> None:
    generator = registry.create("generator", "mlp", {"hidden": 4, "image_size": 8, "latent_dim": 6})
    generator.train()
    latents = generator.sample_latent(7, generator=torch.Generator().manual_seed(2))
    assert torch.equal(generate(generator, latents), sample_images(generator, 7, seed=2))
    assert generator.training
    assert generate(generator, latents[:0]).shape == (0, 1, 8, 8)
