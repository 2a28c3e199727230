"""Exact resume: a run interrupted for real (SIGINT/SIGTERM to a subprocess) and resumed ends bit-identical."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from gankit.checkpoint import load_checkpoint, read_checkpoint_metadata
from gankit.cli import main

COMMON = [
    "--gen", "mlp", "--gen-opt", "hidden=32", "--disc-opt", "hidden=32", "--dataset", "fake",
    "--data-opt", "size=512", "--batch-size", "8", "--epochs", "12", "--device", "cpu", "--log-every", "1",
    "--checkpoint-every", "25", "--quiet", "--seed", "7",
]  # fmt: skip


def gankit(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "gankit", *map(str, args)]


def metric_lines(run: Path) -> int:
    path = run / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def interrupt_after(run: Path, steps: int, sig: int) -> subprocess.CompletedProcess[str]:
    """Start training, wait until ``steps`` metric lines exist, then send ``sig`` as a user or a scheduler would."""
    process = subprocess.Popen(gankit("train", *COMMON, "--out", run), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while metric_lines(run) < steps and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, "", stderr)


def assert_same_tensors(a: Path, b: Path) -> None:
    first, second = load_file(a), load_file(b)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run every interrupted one must end identical to; trained once for the module."""
    out = tmp_path_factory.mktemp("resume") / "reference"
    subprocess.run(gankit("train", *COMMON, "--out", out), check=True)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_resumes_bit_identical(tmp_path: Path, reference: Path, sig: int) -> None:
    run = tmp_path / "interrupted"
    interrupted = interrupt_after(run, 40, sig)
    assert interrupted.returncode == 130, interrupted.stderr
    assert f"Resume with: gankit train --resume {run}" in interrupted.stderr
    assert "Traceback" not in interrupted.stderr
    stopped_at = int(read_checkpoint_metadata(run / "checkpoint.safetensors")["step"])
    total = json.loads((reference / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert 40 <= stopped_at < total
    assert not (run / "generator.safetensors").exists()

    subprocess.run(gankit("train", "--resume", run, "--quiet"), check=True)
    assert_same_tensors(run / "generator.safetensors", reference / "generator.safetensors")
    assert_same_tensors(run / "checkpoint.safetensors", reference / "checkpoint.safetensors")
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, total + 1))  # lines logged after the checkpoint were dropped, none doubled


def test_resume_refuses_to_change_the_run_and_keeps_older_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "run"
    runner = CliRunner()
    args = [*COMMON, "--epochs", "1", "--max-steps", "60", "--keep-checkpoints", "3"]  # later flags win
    assert runner.invoke(main, ["train", *args, "--out", str(run)]).exit_code == 0
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["step_000000025.safetensors", "step_000000050.safetensors"]
    assert load_checkpoint(run / "checkpoint.safetensors")["step"] == 60

    result = runner.invoke(main, ["train", "--resume", str(run), "--lr-g", "0.1"])
    assert result.exit_code == 2 and "lr_g" in result.output and "cannot change" in result.output

    # A damaged latest checkpoint falls back to the one before it.
    (run / "checkpoint.safetensors").write_bytes(b"\x00" * 64)
    result = runner.invoke(main, ["train", "--resume", str(run), "--epochs", "2", "--max-steps", "70", "--quiet"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / "checkpoint.safetensors")["step"] == 70
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 71))


def test_resume_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["train", "--resume", str(tmp_path)])
    assert result.exit_code == 2 and "not a gankit run folder" in result.output
    assert os.listdir(tmp_path) == []
