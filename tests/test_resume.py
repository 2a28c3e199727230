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

STUDY = [
    *COMMON, "--epochs", "1", "--log-every", "4", "--checkpoint-every", "10", "--ema", "--eval-every", "10",
    "--eval-samples", "100",
]  # fmt: skip
"""Later flags win: 64 steps; logs every 4 steps, an evaluation of the EMA every 10 (so lines at 4, 8, 10, 12, ...),
checkpoints every 10 steps and at 64: most checkpoints fall between two log points (issue 22, classes 3 and 6)."""
STUDY_STEPS = 64
TIMING = frozenset({"images_per_sec", "elapsed_s", "peak_memory_mb"})
"""The fields of a metrics line that measure the machine, not the run: they differ between any two runs."""


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


def logged(run: Path) -> list[dict[str, object]]:
    """The run's metrics lines without the timing fields."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{key: value for key, value in row.items() if key not in TIMING} for row in rows]


def assert_same_run(run: Path, reference: Path, why: str) -> None:
    """Export, checkpoint (RNG streams, EMA, the open statistics window) and metrics identical to ``reference``."""
    assert_same_tensors(run / "generator.safetensors", reference / "generator.safetensors")
    assert_same_tensors(run / "checkpoint.safetensors", reference / "checkpoint.safetensors")
    assert logged(run) == logged(reference), why
    assert temporaries(run) == [], why
    assert not (run / ".lock").exists()


@pytest.mark.slow
def test_kill_9_at_random_moments_resumes_bit_identical(tmp_path: Path, study_reference: Path) -> None:
    draw = random.Random()
    total = metric_lines(study_reference)  # 19: 16 log points and 3 evaluations between them
    moments = [draw.randint(1, 2), draw.randint(3, total - 1), draw.randint(3, total - 1)]
    for trial, lines in enumerate(moments):
        run = tmp_path / f"killed-{trial}"
        kill_after(run, lines)
        had_checkpoint = (run / "checkpoint.safetensors").exists()
        resumed = subprocess.run(gankit("train", "--resume", run, "--quiet"), capture_output=True, text=True)
        assert resumed.returncode == 0, f"killed after {lines} lines: {resumed.stderr}"
        if not had_checkpoint:  # killed before the first checkpoint: the run starts again from step 0
            assert "no checkpoint yet: the run starts again from step 0" in resumed.stderr
        assert_same_run(run, study_reference, f"killed after {lines} lines")
        assert [row["step"] for row in logged(run)][-1] == STUDY_STEPS


@pytest.mark.slow
def test_a_signal_during_an_evaluation_stops_at_its_step(
    tmp_path: Path, study_reference: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while step 20 is being evaluated: the run stops at step 20, not 21, and resumes identical."""
    from gankit import evaluation

    score = evaluation.evaluate_generator

    def signalled_at_step_20(generator: object, **options: object) -> dict[str, float]:
        scores = score(generator, **options)  # type: ignore[arg-type]
        if metric_lines(run) == 5:  # lines at 4, 8, 10, 12, 16: this is step 20's evaluation
            os.kill(os.getpid(), signal.SIGTERM)
        return scores

    monkeypatch.setattr(evaluation, "evaluate_generator", signalled_at_step_20)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", *STUDY, "--out", str(run)])
    assert result.exit_code == 130, result.output
    assert "interrupted by SIGTERM at step 20" in result.output
    assert load_checkpoint(run / "checkpoint.safetensors")["step"] == 20
    assert logged(run)[-1]["step"] == 20
    monkeypatch.undo()
    resumed = subprocess.run(gankit("train", "--resume", run, "--quiet"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run, study_reference, "stopped during the evaluation at step 20")


def test_a_resume_between_two_log_points_writes_the_same_lines(tmp_path: Path) -> None:
    """Checkpoints at 10 and 20, log lines every 4 steps: a run resumed from step 10 (the later checkpoints lost, as
    after a crash) averages steps 9 to 12 into its line for step 12, as the run never interrupted did, because the
    open window of statistics is in the checkpoint (issue 22, class 6)."""
    run = tmp_path / "run"
    args = [*COMMON, "--max-steps", "24", "--log-every", "4", "--checkpoint-every", "10", "--keep-checkpoints", "3"]
    assert CliRunner().invoke(main, ["train", *args, "--out", str(run)]).exit_code == 0
    reference = logged(run)
    (run / "checkpoint.safetensors").unlink()  # step 24
    (run / "checkpoints" / "step_000000020.safetensors").unlink()
    result = CliRunner().invoke(main, ["train", "--resume", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "falling back" not in result.output
    assert logged(run) == reference


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


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to see when the handler is installed")
@pytest.mark.parametrize(
    "command",
    [["export", "RUN", "--format", "onnx", "--out", "OUT.onnx"], ["sample", "RUN", "--out", "OUT.png"]],
    ids=["export-onnx", "sample"],
)
def test_sigterm_ends_every_command_with_130_and_one_line(tmp_path: Path, command: list[str]) -> None:
    """`gankit export --format onnx` died of SIGTERM with 143 and said nothing (issue 22)."""
    run = tmp_path / "run"
    assert CliRunner().invoke(main, ["train", *COMMON, "--max-steps", "3", "--out", str(run)]).exit_code == 0
    args = [str(run) if arg == "RUN" else arg.replace("OUT", str(tmp_path / "out")) for arg in command]
    process = subprocess.Popen(gankit(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while process.poll() is None and not sigterm_caught(process.pid) and time.monotonic() < deadline:
        time.sleep(0.001)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.splitlines() == ["Interrupted."]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # nothing half written


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
