"""Conditional GANs through the CLI: train on MNIST's labels, record the classes in the export, sample by label."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

import gankit
from gankit.cli import main
from gankit.export import read_export_metadata
from gankit.pictures import sample_images

TRAIN = ["--max-steps", "3", "--batch-size", "32", "--device", "cpu", "--quiet", "--sample-count", "10"]
FAKE = ["--dataset", "fake", "--data-opt", "size=64", "--max-steps", "1", "--batch-size", "16", "--device", "cpu"]


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


def assert_user_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0], result.output


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("conditional") / "run"
    result = run(
        "train", "--gen", "dcgan", "--gen-opt", "num_classes=10", "--gen-opt", "width=8", "--disc-opt", "width=8",
        "--dataset", "mnist", *TRAIN, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_discriminator_gets_the_classes_and_the_export_records_them(conditional_run: Path) -> None:
    resolved = json.loads((conditional_run / "config.json").read_text())
    assert resolved["generator_options"]["num_classes"] == 10
    assert resolved["discriminator_options"]["num_classes"] == 10  # not given: taken from the generator
    exported = read_export_metadata(conditional_run / "generator.safetensors")
    assert exported.num_classes == 10 and exported.plugin_options["num_classes"] == 10
    assert gankit.load_generator(conditional_run / "generator.safetensors").num_classes == 10


@pytest.mark.slow
def test_sample_by_label(conditional_run: Path, tmp_path: Path) -> None:
    sevens, threes = tmp_path / "sevens.png", tmp_path / "threes.png"
    for label, out in (("7", sevens), ("3", threes)):
        result = run("sample", conditional_run, "--label", label, "--n", "8", "--seed", "1", "--out", out)
        assert result.exit_code == 0, result.output
    with Image.open(sevens) as image:
        assert image.size[0] > 28
    assert sevens.read_bytes() != threes.read_bytes()  # same noise, another label, other images


@pytest.mark.slow
def test_the_label_changes_the_images_and_nothing_else(conditional_run: Path) -> None:
    generator = gankit.load_generator(conditional_run / "generator.safetensors")
    same = sample_images(generator, 4, seed=2, labels=torch.full((4,), 7))
    again = sample_images(generator, 4, seed=2, labels=torch.full((4,), 7))
    other = sample_images(generator, 4, seed=2, labels=torch.full((4,), 1))
    assert torch.equal(same, again) and not torch.equal(same, other)


@pytest.mark.slow
def test_label_out_of_range_is_one_line(conditional_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    assert_user_error(run("sample", conditional_run, "--label", "12", "--out", out), "--label 12", "0..9")
    assert not out.exists()


def test_label_on_an_unconditional_generator_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run("train", "--gen", "mlp", "--gen-opt", "hidden=8", "--disc-opt", "hidden=8", *FAKE, "--out", out)
    assert result.exit_code == 0, result.output
    assert read_export_metadata(out / "generator.safetensors").num_classes == 0
    assert_user_error(run("sample", out, "--label", "3", "--out", tmp_path / "x.png"), "conditional", "num_classes=0")


def test_conditional_discriminator_needs_a_conditional_generator(tmp_path: Path) -> None:
    result = run("train", "--gen", "mlp", "--disc-opt", "num_classes=10", *FAKE, "--out", tmp_path / "run")
    assert_user_error(result, "conditional discriminator needs a conditional generator")


def test_fewer_classes_than_the_dataset_is_refused(tmp_path: Path) -> None:
    result = run("train", "--gen", "mlp", "--gen-opt", "num_classes=3", *FAKE, "--out", tmp_path / "run")
    assert_user_error(result, "dataset 'fake' from 'gankit'", "has 10 classes", "generator 'mlp'", "num_classes=10")
