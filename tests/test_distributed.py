"""Two processes (torchrun, gloo on CPU) compute what one does with the same global batch, which must split evenly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_user_error, run
from safetensors.torch import load_file

from gankit.cli import train as train_command

ARGS = ["--gen", "mlp", "--gen-opt", "hidden=64", "--disc-opt", "hidden=64", "--dataset", "mnist",
        "--batch-size", "32", "--log-every", "1", "--quiet", "--seed", "3"]  # fmt: skip


def train(out: Path, *extra: str) -> None:
    subprocess.run([sys.executable, "-m", "gankit", "train", *ARGS, "--out", str(out), *extra], check=True)


def assert_close_exports(a: Path, b: Path) -> None:
    first, second = load_file(a / "generator.safetensors"), load_file(b / "generator.safetensors")
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_two_processes_match_one_and_resume_with_another_world_size(tmp_path: Path) -> None:
    single, double = tmp_path / "single", tmp_path / "double"
    train(single, "--max-steps", "6")
    train(double, "--max-steps", "3", "--nproc", "2")
    checksums = json.loads((double / "ranks.json").read_text())["weights_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]  # DDP kept both ranks' weights identical
    assert json.loads((double / "config.json").read_text())["world_size"] == 2

    # The checkpoint does not depend on the world size: finish the two-process run in one process.
    subprocess.run([sys.executable, "-m", "gankit", "train", "--resume", str(double), "--max-steps", "6", "--quiet"],
                   check=True)  # fmt: skip
    assert_close_exports(single, double)
    single_metrics = [json.loads(line) for line in (single / "metrics.jsonl").read_text().splitlines()]
    double_metrics = [json.loads(line) for line in (double / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in double_metrics] == [m["step"] for m in single_metrics]
    for one, two in zip(single_metrics, double_metrics, strict=True):
        assert one["d_loss"] == pytest.approx(two["d_loss"], rel=1e-4)  # losses averaged over ranks


def test_global_batch_must_split_evenly_before_anything_is_launched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def launch(nproc: int) -> None:
        pytest.fail(f"torchrun was launched with {nproc} processes")

    monkeypatch.setattr(train_command, "launch_torchrun", launch)
    out = tmp_path / "odd"
    result = run("train", "--dataset", "fake", "--batch-size", "7", "--max-steps", "1", "--nproc", "2", "--out", out)
    assert_user_error(result, "--batch-size 7 is the global batch", "must divide evenly over 2 processes")
    assert not out.exists()
    config = tmp_path / "run.toml"
    config.write_text("batch_size = 6\n")  # from a file too; 6 would split evenly over 2, not over 4
    assert_user_error(run("train", "--config", config, "--nproc", "4", "--out", out), "6", "over 4 processes")
