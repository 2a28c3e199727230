"""Checkpoints prove their integrity: damage that still parses, or a state that does not fit the run, is found before
anything is loaded, announced naming the file, and the run falls back to the older checkpoint (exit 2 when none).

Each damaged run resumes to step 40 and must end bit-identical to a run that trained 40 steps uninterrupted.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_helpers import assert_user_error, run
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gankit.errors import CheckpointError
from gankit.files import load_checkpoint, read_checkpoint_metadata, save_checkpoint

SMALL = [
    "--gen", "mlp", "--gen-opt", "hidden=16", "--disc-opt", "hidden=16", "--dataset", "fake", "--data-opt",
    "size=256", "--batch-size", "8", "--device", "cpu", "--log-every", "5", "--quiet", "--seed", "3", "--epochs", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run stopped at step 30 with an older checkpoint at 15, and a run of 40 steps never interrupted."""
    base = tmp_path_factory.mktemp("integrity")
    result = run("train", *SMALL, "--max-steps", "30", "--checkpoint-every", "15", "--out", base / "run")
    assert result.exit_code == 0, result.output
    reference = run("train", *SMALL, "--max-steps", "40", "--checkpoint-every", "15", "--out", base / "reference")
    assert reference.exit_code == 0, reference.output
    return base / "run", base / "reference"


@pytest.fixture
def folder(trained: tuple[Path, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained[0], copy)
    assert [p.name for p in (copy / "checkpoints").iterdir()] == ["step_000000015.safetensors"]
    return copy


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def tensor_offset(path: Path, key: str) -> int:
    """Where ``key``'s bytes start in a safetensors file."""
    length: int = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8 : 8 + length])
    return 8 + length + int(header[key]["data_offsets"][0])


def flip_bit(path: Path, key: str, *, byte: int = 0, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[tensor_offset(path, key) + byte] ^= 1 << bit
    path.write_bytes(bytes(data))


def rewrite_raw(path: Path, edit: Callable[[dict[str, str]], None]) -> None:
    """Rewrite the file's metadata by hand, as an edit would, leaving the recorded hash as it was."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
    edit(metadata)
    save_file(load_file(path), path, metadata=metadata)


def resave(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """A well-formed checkpoint (with a correct hash) whose state was changed: it must fail the semantic checks."""
    state = load_checkpoint(path)
    change(state)
    save_checkpoint(path, state, metadata=read_checkpoint_metadata(path))


def edit_step(metadata: dict[str, str]) -> None:
    metadata["step"] = "99"
    metadata["state"] = metadata["state"].replace('"step":30', '"step":99')


def bad_python_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python_rng"]
    state["python_rng"] = (version, (*internal[:-1], 10**6), gauss)  # random.setstate raises ValueError


def wrong_shape(state: dict[str, Any]) -> None:
    key = next(iter(state["generator"]))
    state["generator"][key] = torch.zeros(3, 3)


def nan_weight(state: dict[str, Any]) -> None:
    """gankit never saves such weights; an edit that made the hash again did (issue 22: it must fall back)."""
    key = next(iter(state["generator"]))
    state["generator"][key] = torch.full_like(state["generator"][key], float("nan"))


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "a flipped bit in a weight": (
        lambda p: flip_bit(p, next(k for k in load_file(p) if k.startswith("generator/")), byte=1, bit=3),
        "does not match its hash",
    ),
    "a flipped sign in the optimizer state": (
        lambda p: flip_bit(p, "optimizer_d/state/0/exp_avg_sq", byte=3, bit=7),
        "does not match its hash",
    ),
    "the step edited from 30 to 99": (lambda p: rewrite_raw(p, edit_step), "does not match its hash"),
    "a missing key": (lambda p: resave(p, lambda s: s.pop("discriminator")), "key 'discriminator' is missing"),
    "a missing weight": (lambda p: resave(p, lambda s: s["generator"].popitem()), "missing key"),
    "a wrong tensor shape": (lambda p: resave(p, wrong_shape), "has shape [3, 3]"),
    "a wrong type": (lambda p: resave(p, lambda s: s.update(noise_rng=5)), "'noise_rng' is a int, not a Tensor"),
    "a step beyond the run": (lambda p: resave(p, lambda s: s.update(step=99)), "not within this run's 0 to 40"),
    "a step the metadata contradicts": (lambda p: resave(p, lambda s: s.update(step=29)), "metadata says step"),
    "a state load_state refuses": (lambda p: resave(p, bad_python_rng), "invalid state"),
    "NaN weights under a valid hash": (lambda p: resave(p, nan_weight), "holds NaN or infinite weights"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_damage_falls_back_to_the_older_checkpoint_loudly(
    trained: tuple[Path, Path], folder: Path, damage: str
) -> None:
    apply, reason = DAMAGE[damage]
    latest = folder / "checkpoint.safetensors"
    apply(latest)

    result = run("train", "--resume", folder, "--max-steps", "40")
    assert result.exit_code == 0, result.output
    warning = next(line for line in result.output.splitlines() if "falling back" in line)
    assert str(latest) in warning and reason in warning and "step_000000015.safetensors" in warning
    assert "Traceback" not in result.output
    # Resumed from step 15, the run ends exactly where a run never interrupted does.
    reference = trained[1]
    assert load_file(folder / "generator.safetensors").keys() == load_file(reference / "generator.safetensors").keys()
    for key, tensor in load_file(folder / "generator.safetensors").items():
        assert torch.equal(tensor, load_file(reference / "generator.safetensors")[key]), key
    assert logged_steps(folder) == logged_steps(reference) == [5, 10, 15, 20, 25, 30, 32, 35, 40]


def logged_steps(folder: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("damage", ["a flipped bit in a weight", "a wrong tensor shape", "a state load_state refuses"])
def test_no_good_checkpoint_is_one_line_and_changes_nothing(folder: Path, damage: str) -> None:
    apply, reason = DAMAGE[damage]
    older = folder / "checkpoints" / "step_000000015.safetensors"
    apply(folder / "checkpoint.safetensors")
    older.unlink()
    before = snapshot(folder)
    result = run("train", "--resume", folder, "--max-steps", "40")
    assert_user_error(result, "no usable checkpoint", str(folder / "checkpoint.safetensors"), reason)
    assert snapshot(folder) == before


def test_every_checkpoint_damaged_names_each(folder: Path) -> None:
    flip_bit(folder / "checkpoint.safetensors", "optimizer_g/state/0/exp_avg", byte=0)
    older = folder / "checkpoints" / "step_000000015.safetensors"
    resave(older, lambda s: s.pop("optimizer_g"))
    result = run("train", "--resume", folder, "--max-steps", "40")
    assert_user_error(result, "no usable checkpoint", "does not match its hash", f"{older} does not fit this run")
    assert "falling back" in result.output  # the first fallback was announced before the last one failed


def test_a_flipped_bit_anywhere_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.arange(64, dtype=torch.float32), "step": 3}, metadata={"step": "3"})
    size = path.stat().st_size
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])
    for offset in range(8 + length, size, 37):  # every 37th byte of the tensor data
        data = bytearray(path.read_bytes())
        data[offset] ^= 0x10
        damaged = tmp_path / "d.safetensors"
        damaged.write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="does not match its hash"):
            load_checkpoint(damaged)
    assert load_checkpoint(path)["step"] == 3


def test_a_format_1_checkpoint_without_a_hash_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "old.safetensors"
    save_file({"w": torch.ones(2)}, path, metadata={"format": "gankit.checkpoint", "format_version": "1",
                                                   "state": '{"w":{"__tensor__":"w"},"step":4}'})  # fmt: skip
    assert load_checkpoint(path)["step"] == 4
    missing = tmp_path / "new.safetensors"
    save_file({"w": torch.ones(2)}, missing, metadata={"format": "gankit.checkpoint", "format_version": "2",
                                                      "state": '{"w":{"__tensor__":"w"},"step":4}'})  # fmt: skip
    with pytest.raises(CheckpointError, match="'content_hash' is missing"):
        load_checkpoint(missing)


def test_export_and_sample_of_a_run_fall_back_from_a_damaged_checkpoint(folder: Path, tmp_path: Path) -> None:
    """`gankit export RUN` (and sample) use the newest checkpoint that checks out, and say which one they skipped."""
    flip_bit(folder / "checkpoint.safetensors", "generator/net.0.weight")
    fallback = run("export", folder, "--out", tmp_path / "g.safetensors")
    assert fallback.exit_code == 0, fallback.output
    assert "warning:" in fallback.stderr and "checkpoint.safetensors" in fallback.stderr
    state = load_checkpoint(folder / "checkpoints" / "step_000000015.safetensors")
    older = state.get("ema") or state["generator"]  # an export takes G's EMA when the run keeps one
    exported = load_file(tmp_path / "g.safetensors")
    assert all(torch.equal(exported[key], older[key]) for key in older)
    (folder / "checkpoints" / "step_000000015.safetensors").unlink()
    assert_user_error(run("export", folder, "--out", tmp_path / "h.safetensors"), "no usable checkpoint")
