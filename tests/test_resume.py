"""Exact resume: a run interrupted for real (SIGINT/SIGTERM to a subprocess) and resumed ends bit-identical."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from gankit.cli import main
from gankit.files import load_checkpoint, read_checkpoint_metadata

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
    assert result.exit_code == 2 and "lr_g was 0.0005, the command says 0.1; drop --lr-g" in result.output

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


# -- kill -9 at random moments, SIGTERM during start-up, what a killed write leaves --------------------------------

STUDY = [*COMMON, "--epochs", "1"]  # later flags win: 64 steps, checkpoints at 25, 50 and 64
STUDY_STEPS = 64


@pytest.fixture(scope="module")
def study_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "reference"
    subprocess.run(gankit("train", *STUDY, "--out", out), check=True)
    return out


def kill_after(run: Path, lines: int) -> None:
    """``kill -9`` a training once ``lines`` metric lines exist (a moment anywhere in a step or a write)."""
    process = subprocess.Popen(gankit("train", *STUDY, "--out", run), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while metric_lines(run) < lines and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    process.kill()
    process.wait()


def temporaries(run: Path) -> list[str]:
    return [str(p) for p in run.rglob(".*") if ".tmp" in p.name]


@pytest.mark.slow
def test_kill_9_at_random_moments_resumes_bit_identical(tmp_path: Path, study_reference: Path) -> None:
    draw = random.Random()
    moments = [draw.randint(1, 10), draw.randint(25, STUDY_STEPS - 1), draw.randint(25, STUDY_STEPS - 1)]
    for trial, lines in enumerate(moments):
        run = tmp_path / f"killed-{trial}"
        kill_after(run, lines)
        had_checkpoint = (run / "checkpoint.safetensors").exists()
        resumed = subprocess.run(gankit("train", "--resume", run, "--quiet"), capture_output=True, text=True)
        assert resumed.returncode == 0, f"killed after {lines} lines: {resumed.stderr}"
        if not had_checkpoint:  # killed before the first checkpoint: the run starts again from step 0
            assert "no checkpoint yet: the run starts again from step 0" in resumed.stderr
        assert_same_tensors(run / "generator.safetensors", study_reference / "generator.safetensors")
        assert_same_tensors(run / "checkpoint.safetensors", study_reference / "checkpoint.safetensors")
        steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert steps == list(range(1, STUDY_STEPS + 1)), f"killed after {lines} lines"
        assert temporaries(run) == [], f"killed after {lines} lines"
        assert not (run / ".lock").exists()


def sigterm_caught(pid: int) -> bool:
    """Whether process ``pid`` has a handler for SIGTERM installed (Linux: the SigCgt mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to see when the handler is installed")
def test_sigterm_during_start_up_exits_130(tmp_path: Path) -> None:
    run = tmp_path / "run"
    process = subprocess.Popen(gankit("train", *COMMON, "--out", run), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while process.poll() is None and not sigterm_caught(process.pid) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert not (run / "metrics.jsonl").exists()  # still starting: torch is being imported, nothing trained
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert not run.exists() or not any(p.name != ".lock" for p in run.iterdir())


def test_stale_temporaries_are_removed_on_resume_and_other_files_kept(tmp_path: Path) -> None:
    run = tmp_path / "run"
    runner = CliRunner()
    assert runner.invoke(main, ["train", *COMMON, "--max-steps", "3", "--out", str(run)]).exit_code == 0
    (run / "checkpoints").mkdir(exist_ok=True)
    stale = [
        run / ".checkpoint.safetensors.0a1b2c3d.tmp.safetensors",
        run / ".tmpQecdid",
        run / "samples" / ".epoch_000.png.89abcdef.tmp.png",
        run / "checkpoints" / ".tmpAbC123",
    ]
    mine = [run / "notes.tmp", run / ".tmp-notes", run / "samples" / "keep.png"]
    for path in stale + mine:
        path.write_bytes(b"x" * 100)
    result = runner.invoke(main, ["train", "--resume", str(run), "--max-steps", "6"])
    assert result.exit_code == 0, result.output
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in mine)
