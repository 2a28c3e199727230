"""Every bad input of the reliability issue, through the CLI: one clear line, exit code 2, nothing touched.

tests/test_cli.py already covers unknown plugin names, a negative learning rate, batch size 0, an image size the
model does not support, unknown option keys, malformed TOML, disagreeing image shapes and an existing output
folder. This file covers the rest: options of the wrong type or out of range, missing or broken MNIST data, output
paths that cannot be written, and every way a file given to ``gankit sample`` or ``gankit export`` can be wrong.
Each test also checks that nothing the user had is changed and that no output is created.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_user_error, run
from click.testing import Result
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gankit.files import save_checkpoint
from gankit.registry import registry
from gankit.run import build_config, train

FAKE = ["--dataset", "fake", "--data-opt", "size=16", "--batch-size", "8", "--device", "cpu", "--quiet"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes, to show later that nothing changed."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


# -- options ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--epochs", "abc"], ["--epochs", "'abc' is not a valid integer"]),
        (["--lr-d", "fast"], ["--lr-d", "'fast' is not a valid float"]),
        (["--betas", "0.5", "x"], ["--betas", "'x' is not a valid float"]),
        (["--device", "tpu"], ["--device", "'tpu' is not one of"]),
        (["--amp", "fp8"], ["--amp", "'fp8' is not one of"]),
        (["--epochs", "0"], ["epochs=0", "greater than or equal to 1"]),
        (["--max-steps", "0"], ["max_steps=0", "greater than or equal to 1"]),
        (["--lr-d", "5"], ["lr_d=5.0", "less than or equal to 1"]),
        (["--betas", "1.0", "0.5"], ["betas", "each beta must be in [0, 1)"]),
        (["--d-steps", "0"], ["d_steps=0"]),
        (["--latent-dim", "0"], ["latent_dim=0"]),
        (["--sample-count", "100000"], ["sample_count=100000", "less than or equal to 1024"]),
        (["--seed", "-1"], ["seed=-1", "greater than or equal to 0"]),
        (["--data-opt", "size=0"], ["size=0", "dataset 'fake'"]),
        (["--gen-opt", "hidden=lots"], ["hidden='lots'", "generator 'mlp'"]),
    ],
)
def test_train_option_of_the_wrong_type_or_out_of_range(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    out = tmp_path / "run"
    result = run("train", *FAKE, "--gen", "mlp", "--max-steps", "1", "--out", out, *args)
    assert_user_error(result, *fragments)
    assert not out.exists()


# -- MNIST data ------------------------------------------------------------------------------------------------------


def idx_bytes(tensor: torch.Tensor) -> bytes:
    """``tensor`` (uint8) as an IDX file: magic 0x0000080N, big-endian sizes, then the bytes."""
    header = bytes([0, 0, 0x08, tensor.dim()]) + b"".join(struct.pack(">I", size) for size in tensor.shape)
    return header + tensor.contiguous().numpy().tobytes()


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    """A valid miniature MNIST in torchvision's layout (root/MNIST/raw): 16 images and their labels."""
    generator = torch.Generator().manual_seed(0)
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = torch.randint(0, 256, (16, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (16,), dtype=torch.uint8, generator=generator)
    (raw / "train-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return tmp_path / "data"


def train_on(root: Path | str, out: Path) -> Result:
    args = ["--dataset", "mnist", "--data-opt", f"root={root}", "--gen", "mlp", "--max-steps", "1"]
    return run("train", *args, "--batch-size", "8", "--device", "cpu", "--quiet", "--out", out)


def test_the_miniature_mnist_is_valid(mnist_root: Path) -> None:
    """The broken variants below differ from a folder the MNIST plugin reads in one way only."""
    data = registry.create("dataset", "mnist", {"root": str(mnist_root)}).load("train")
    assert tuple(data.images.shape) == (16, 1, 28, 28) and tuple(data.labels.shape) == (16,)


def test_missing_data_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    assert_user_error(train_on(missing, tmp_path / "run"), "no MNIST train files", str(missing))
    assert not (tmp_path / "run").exists()
    assert not missing.exists()


def test_data_folder_that_is_a_file(tmp_path: Path) -> None:
    """A root that cannot be read as a folder (as root, permissions cannot make one unreadable)."""
    not_a_folder = tmp_path / "mnist.txt"
    not_a_folder.write_text("mine")
    assert_user_error(train_on(not_a_folder, tmp_path / "run"), "no MNIST train files", str(not_a_folder))
    assert not_a_folder.read_text() == "mine"
    assert not (tmp_path / "run").exists()


def test_data_folder_without_the_idx_files(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    (folder / "MNIST" / "raw").mkdir(parents=True)
    (folder / "MNIST" / "raw" / "notes.txt").write_text("mine")
    before = snapshot(folder)
    assert_user_error(train_on(folder, tmp_path / "run"), "no MNIST train files", "train-images-idx3-ubyte")
    assert snapshot(folder) == before
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("name", "damage", "fragments"),
    [
        ("train-images-idx3-ubyte", lambda data: data[: len(data) // 2], ["train-images-idx3-ubyte", "truncated"]),
        ("train-images-idx3-ubyte", lambda data: data[:10], ["train-images-idx3-ubyte", "truncated inside its header"]),
        ("train-labels-idx1-ubyte", lambda data: data[:-1], ["train-labels-idx1-ubyte", "truncated"]),
        (
            "train-images-idx3-ubyte",
            lambda data: b"\x12\x34" + data[2:],
            ["train-images-idx3-ubyte", "is not an IDX file", "magic number 0x12340803"],
        ),
        ("train-labels-idx1-ubyte", lambda data: b"PK\x03\x04" + data[4:], ["is not an IDX file", "0x504b0304"]),
        ("train-images-idx3-ubyte", lambda data: data[:3] + b"\x01" + data[4:], ["holds labels", "3-dimensional"]),
        ("train-images-idx3-ubyte", lambda data: data + b"\x00", ["longer than its header says"]),
    ],
)
def test_broken_idx_files(mnist_root: Path, tmp_path: Path, name: str, damage: object, fragments: list[str]) -> None:
    path = mnist_root / "MNIST" / "raw" / name
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    before = snapshot(mnist_root)
    assert_user_error(train_on(mnist_root, tmp_path / "run"), *fragments)
    assert snapshot(mnist_root) == before
    assert not (tmp_path / "run").exists()


# -- output paths ----------------------------------------------------------------------------------------------------


def test_train_output_folder_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    out = blocker / "run"
    assert_user_error(run("train", *FAKE, "--gen", "mlp", "--max-steps", "1", "--out", out), "cannot create", str(out))
    assert blocker.read_text() == "mine"


def test_train_output_folder_that_is_a_file(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.write_text("mine")
    assert_user_error(run("train", *FAKE, "--gen", "mlp", "--max-steps", "1", "--out", out), "is an existing file")
    assert out.read_text() == "mine"


# -- files given to sample and export --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run folder (config, checkpoint, export) from one cheap training step."""
    out = tmp_path_factory.mktemp("bad-input") / "run"
    values = {
        "dataset": "fake",
        "dataset_options": {"size": 16},
        "generator": "mlp",
        "generator_options": {"hidden": 8},
        "discriminator_options": {"hidden": 8},
        "max_steps": 1,
        "batch_size": 8,
        "device": "cpu",
        "out": str(out),
    }
    train(build_config(values))
    assert (out / "generator.safetensors").is_file() and (out / "checkpoint.safetensors").is_file()
    return out


def rewritten(source: Path, target: Path, *, tensors: dict[str, torch.Tensor] | None = None, **changes: str) -> Path:
    """A copy of a safetensors file written by safetensors itself, with tensors or metadata replaced, and without
    the export's content hash (as an export of before the hash, or another tool, writes it) unless ``changes`` gives
    one: what is checked is everything else."""
    with safe_open(str(source), framework="pt") as handle:
        metadata = {key: value for key, value in handle.metadata().items() if key != "content_hash"} | changes
    save_file(tensors if tensors is not None else load_file(source), str(target), metadata=metadata)
    return target


def resized(tensors: dict[str, torch.Tensor], key: str) -> dict[str, torch.Tensor]:
    """``tensors`` with ``key`` one row longer than it should be."""
    tensor = tensors[key]
    return {**tensors, key: torch.zeros((tensor.shape[0] + 1, *tensor.shape[1:]), dtype=tensor.dtype)}


def hostile_file(kind: str, good: Path, target: Path) -> Path:
    """``target``: a copy of the export or checkpoint ``good`` made wrong in the way ``kind`` names."""
    if kind == "truncated":
        target.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "random bytes":
        target.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "plain safetensors":
        save_file({"weight": torch.zeros(3)}, str(target))
    elif kind == "newer format":
        rewritten(good, target, format_version="999")
    else:
        raise AssertionError(kind)
    return target


FILE_PROBLEMS = {
    "truncated": ["truncated"],
    "random bytes": ["is not a safetensors file"],
    "plain safetensors": ["is a safetensors file but not a"],
    "newer format": ["written by a newer gankit (format 999)", "upgrade gankit"],
}


def sample_fails(source: Path, tmp_path: Path, *fragments: str) -> None:
    """``gankit sample SOURCE`` is refused in one line; its --out is not created and the source is unchanged."""
    out = tmp_path / "samples.png"
    before = source.read_bytes() if source.is_file() else snapshot(source)
    assert_user_error(run("sample", source, "--n", "4", "--out", out), *fragments)
    assert not out.exists()
    assert (source.read_bytes() if source.is_file() else snapshot(source)) == before


@pytest.mark.parametrize("kind", sorted(FILE_PROBLEMS))
def test_sample_from_a_broken_export(trained: Path, tmp_path: Path, kind: str) -> None:
    export = hostile_file(kind, trained / "generator.safetensors", tmp_path / "generator.safetensors")
    sample_fails(export, tmp_path, str(export), *FILE_PROBLEMS[kind])


def test_sample_from_an_export_whose_weights_disagree_with_its_metadata(trained: Path, tmp_path: Path) -> None:
    good = trained / "generator.safetensors"
    export = rewritten(good, tmp_path / "g.safetensors", tensors=resized(load_file(good), "net.6.weight"))
    sample_fails(export, tmp_path, "does not fit generator 'mlp'", "net.6.weight", "[785, 32]", "[784, 32]")


def test_sample_from_an_export_whose_metadata_disagrees_with_its_options(trained: Path, tmp_path: Path) -> None:
    export = rewritten(trained / "generator.safetensors", tmp_path / "g.safetensors", image_shape="[1, 32, 32]")
    sample_fails(export, tmp_path, "metadata 'image_shape' is [1, 32, 32] but plugin_options say image_size=28")


def needing_a_missing_plugin(trained: Path, tmp_path: Path, *, distribution: str, version: str) -> Path:
    """The run's export, rewritten to need generator plugin 'stylegan9' from ``distribution`` at ``version``."""
    return rewritten(
        trained / "generator.safetensors",
        tmp_path / "g.safetensors",
        plugin="stylegan9",
        distribution=distribution,
        distribution_version=version,
    )


def test_sample_from_an_export_of_a_plugin_that_is_not_installed(trained: Path, tmp_path: Path) -> None:
    export = needing_a_missing_plugin(trained, tmp_path, distribution="gankit-stylegan", version="2.1.0")
    sample_fails(export, tmp_path, "needs generator plugin 'stylegan9'", "install 'gankit-stylegan' (version 2.1.0)")


def test_sample_from_a_checkpoint_where_an_export_is_expected(trained: Path, tmp_path: Path) -> None:
    """A checkpoint under another name is not mistaken for an export (the run folder's own one is accepted)."""
    checkpoint = tmp_path / "model.safetensors"
    shutil.copyfile(trained / "checkpoint.safetensors", checkpoint)
    sample_fails(checkpoint, tmp_path, "is a gankit training checkpoint, not a gankit export")


def test_sample_with_an_unwritable_out(trained: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    result = run("sample", trained / "generator.safetensors", "--n", "4", "--out", blocker / "grid.png")
    assert_user_error(result, "cannot write", "grid.png")
    assert blocker.read_text() == "mine"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--n", "0"], ["--n", "0 is not in the range"]),
        (["--n", "many"], ["--n", "'many' is not a valid integer"]),
        (["--seed", "-1"], ["--seed", "-1 is not in the range"]),
        (["--label", "3"], ["--label needs a conditional generator"]),
        (["--device", "tpu"], ["--device", "'tpu' is not one of"]),
    ],
)
def test_sample_option_of_the_wrong_type_or_out_of_range(
    trained: Path, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    out = tmp_path / "samples.png"
    assert_user_error(run("sample", trained / "generator.safetensors", "--out", out, *args), *fragments)
    assert not out.exists()


# -- gankit export: the checkpoint of a run folder -------------------------------------------------------------------


@pytest.fixture
def run_copy(trained: Path, tmp_path: Path) -> Path:
    """A run folder of one's own to damage: the trained run's config and checkpoint."""
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("config.json", "checkpoint.safetensors"):
        shutil.copyfile(trained / name, folder / name)
    return folder


def export_fails(run_dir: Path, tmp_path: Path, *fragments: str) -> None:
    """``gankit export RUN_DIR`` is refused in one line; the run folder is unchanged and no export is written."""
    out = tmp_path / "exported.safetensors"
    before = snapshot(run_dir) if run_dir.is_dir() else run_dir.read_bytes()
    assert_user_error(run("export", run_dir, "--out", out), *fragments)
    assert not out.exists()
    assert (snapshot(run_dir) if run_dir.is_dir() else run_dir.read_bytes()) == before


@pytest.mark.parametrize("kind", sorted(FILE_PROBLEMS))
def test_export_from_a_broken_checkpoint(trained: Path, run_copy: Path, tmp_path: Path, kind: str) -> None:
    hostile_file(kind, trained / "checkpoint.safetensors", run_copy / "checkpoint.safetensors")
    export_fails(run_copy, tmp_path, "checkpoint.safetensors", *FILE_PROBLEMS[kind])


def test_export_from_an_export_where_a_checkpoint_is_expected(trained: Path, run_copy: Path, tmp_path: Path) -> None:
    shutil.copyfile(trained / "generator.safetensors", run_copy / "checkpoint.safetensors")
    export_fails(run_copy, tmp_path, "is a gankit generator export, not a gankit checkpoint")


def test_export_given_an_export_file_instead_of_a_run_folder(trained: Path, tmp_path: Path) -> None:
    export = tmp_path / "generator.safetensors"
    shutil.copyfile(trained / "generator.safetensors", export)
    export_fails(export, tmp_path, "is not a gankit run folder")


def test_export_of_a_run_whose_generator_plugin_is_not_installed(run_copy: Path, tmp_path: Path) -> None:
    config = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text(json.dumps({**config, "generator": "stylegan9"}))
    export_fails(run_copy, tmp_path, "unknown generator 'stylegan9'")


def test_export_of_a_checkpoint_whose_weights_disagree_with_the_config(
    trained: Path, run_copy: Path, tmp_path: Path
) -> None:
    config = json.loads((run_copy / "config.json").read_text())
    config["generator_options"] = {**config["generator_options"], "hidden": 9}
    (run_copy / "config.json").write_text(json.dumps(config))
    export_fails(run_copy, tmp_path, "checkpoint.safetensors")


def test_export_of_a_checkpoint_without_a_generator(run_copy: Path, tmp_path: Path) -> None:
    save_checkpoint(run_copy / "checkpoint.safetensors", {"step": 1})
    export_fails(run_copy, tmp_path, "checkpoint.safetensors")


def test_export_with_an_unwritable_out(trained: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    assert_user_error(run("export", trained, "--out", blocker / "g.safetensors"), "cannot write", "g.safetensors")
    assert blocker.read_text() == "mine"
