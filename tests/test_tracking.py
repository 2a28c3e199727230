"""Trackers, plain progress off a terminal and the sample cadence: what a run tells the world besides its folder.

The TensorBoard events are read back with TensorBoard's own reader; the plain lines from a real pipe.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import assert_user_error, run
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from trackers_for_tests import BrokenTracker, CSVTracker

from gankit.registry import registry
from gankit.run import SilentReporter, build_config, scalars_of, tracker_options_by_name, train
from gankit_plugins.tensorboard_tracker import tag

TINY = ["--gen", "mlp", "--loss", "nonsat", "--dataset", "fake", "--data-opt", "size=64", "--batch-size", "16"]
TINY += ["--sample-count", "4", "--device", "cpu", "--log-every", "2"]


def tiny_config(out: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "generator": "mlp",
        "dataset": "fake",
        "dataset_options": {"size": 64},
        "batch_size": 16,  # 4 steps an epoch
        "epochs": 2,
        "device": "cpu",
        "log_every": 2,
        "sample_count": 4,
        "out": out,
    }
    return build_config({**values, **overrides})


def metric_lines(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


@pytest.fixture
def test_trackers() -> Iterator[None]:
    registry.register("tracker", "csv-test", CSVTracker)
    registry.register("tracker", "broken-test", BrokenTracker)
    BrokenTracker.calls.clear()
    yield
    registry.unregister("tracker", "csv-test")
    registry.unregister("tracker", "broken-test")


def assert_events_match_metrics(run_dir: Path) -> None:
    """Every numeric key of every metrics line is a scalar at that line's step, once, with that value; TensorBoard
    names it ``tag(key)``: ``train/d_loss``, ``run/images_per_sec``, ``eval/frechet_distance``."""
    lines, accumulator = metric_lines(run_dir), events(run_dir)
    keys = set().union(*(scalars_of(line) for line in lines))
    assert {"d_loss", "g_loss", "d_real", "d_fake", "images_per_sec", "elapsed_s"} <= keys
    assert {tag(key) for key in keys} == set(accumulator.Tags()["scalars"])
    for key in keys:
        logged = accumulator.Scalars(tag(key))
        assert [event.step for event in logged] == [line["step"] for line in lines if key in line], key
        expected = [line[key] for line in lines if key in line]
        assert [event.value for event in logged] == pytest.approx(expected, rel=1e-6), key


def test_tensorboard_gets_every_scalar_at_every_step_and_a_grid_per_epoch(tmp_path: Path) -> None:
    result = train(tiny_config(tmp_path / "run", trackers=["tensorboard"], eval_every=4, eval_samples=100))
    assert_events_match_metrics(result.run_dir)
    accumulator = events(result.run_dir)
    assert "eval/frechet_distance" in accumulator.Tags()["scalars"]
    assert [event.step for event in accumulator.Images("samples")] == [4, 8]  # the grid of each epoch
    assert "hyperparameters/text_summary" in accumulator.Tags()["tensors"]


def test_a_resumed_run_continues_the_event_stream_without_duplicates(tmp_path: Path) -> None:
    """The first run reached step 6 but its last checkpoint is lost, as after a crash: step 4 is where it resumes.

    Step 6 is trained and logged again, and the resumed run logs step 4's successors only: no step twice or missing.
    """
    out = tmp_path / "run"
    train(tiny_config(out, trackers=["tensorboard"], max_steps=6))
    (out / "checkpoint.safetensors").unlink()  # back to checkpoints/step_000000004
    train(tiny_config(out, trackers=["tensorboard"], max_steps=8), resume=True)
    assert [line["step"] for line in metric_lines(out)] == [2, 4, 6, 8]
    assert_events_match_metrics(out)
    assert [event.step for event in events(out).Images("samples")] == [4, 8]


def test_a_tracker_sees_exactly_the_metrics_lines(tmp_path: Path, test_trackers: None) -> None:
    config = tiny_config(tmp_path / "run", trackers=["csv-test"], tracker_options={"filename": "m.csv"})
    run_dir = train(config).run_dir
    with (run_dir / "m.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    expected = [(line["step"], key, value) for line in metric_lines(run_dir) for key, value in scalars_of(line).items()]
    assert [(int(step), name, float(value)) for step, name, value in rows] == expected


def test_a_failing_tracker_is_one_warning_and_training_goes_on(tmp_path: Path, test_trackers: None) -> None:
    class Recorder(SilentReporter):
        warnings: list[str] = []  # noqa: RUF012

        def warn(self, message: str) -> None:
            self.warnings.append(message)

    reporter = Recorder()
    result = train(tiny_config(tmp_path / "run", trackers=["broken-test", "csv-test"]), reporter=reporter)
    assert result.steps == 8 and len(metric_lines(result.run_dir)) == 4
    broken = [message for message in reporter.warnings if "broken-test" in message]
    assert len(broken) == 1 and "ConnectionError: the tracking server went away" in broken[0]
    assert BrokenTracker.calls == ["start", "log_scalars", "log_scalars", "close"]  # closed, then left alone
    assert len((result.run_dir / "scalars.csv").read_text().splitlines()) > 4 * 4  # the other tracker went on


def test_tracker_options_are_grouped_by_tracker() -> None:
    assert tracker_options_by_name({"flush_secs": 5}, ["tensorboard"]) == {"tensorboard": {"flush_secs": 5}}
    grouped = tracker_options_by_name(
        {"csv_test.filename": "a.csv", "tensorboard": {"images": False}}, ["tensorboard", "csv-test"]
    )
    assert grouped == {"csv-test": {"filename": "a.csv"}, "tensorboard": {"images": False}}
    with pytest.raises(ValueError, match="say which one 'filename' is for"):
        tracker_options_by_name({"filename": "a.csv"}, ["tensorboard", "csv-test"])


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--tracker", "tensorbaord"], ["unknown tracker 'tensorbaord'", "Did you mean 'tensorboard'"]),
        (["--tracker", "tensorboard", "--tracker-opt", "flush_secs=0"], ["tracker 'tensorboard'", "flush_secs=0"]),
        (["--tracker-opt", "images=false"], ["no tracker is chosen"]),
    ],
)
def test_bad_tracker_input_is_one_line(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    assert_user_error(run("train", *TINY, *args, "--out", tmp_path / "run"), *fragments)
    assert not (tmp_path / "run").exists()


def test_missing_tensorboard_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # how Python marks a package that cannot be imported
    result = run("train", *TINY, "--tracker", "tensorboard", "--out", tmp_path / "run")
    assert_user_error(result, 'pip install "gankit[tensorboard]"')
    assert not (tmp_path / "run").exists()


def test_off_a_terminal_progress_is_one_plain_line_per_log_interval(tmp_path: Path) -> None:
    """``gankit train ... | cat``: stdout is a pipe, so the rich bar gives way to plain lines."""
    command = [sys.executable, "-m", "gankit", "train", *TINY, "--epochs", "2", "--out", str(tmp_path / "run")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("step=")]
    assert [line.split()[0] for line in lines] == ["step=2/8", "step=4/8", "step=6/8", "step=8/8"]
    for key in ("epoch=", "d_loss=", "g_loss=", "d_real", "d_fake", "img/s=", "elapsed=", "eta="):
        assert all(f" {key}" in line for line in lines), key
    assert "epoch 2 done, samples:" in done.stdout and "done: 8 steps" in done.stdout


def test_quiet_silences_the_plain_lines(tmp_path: Path) -> None:
    result = run("train", *TINY, "--epochs", "1", "--quiet", "--out", tmp_path / "run")
    assert result.exit_code == 0 and result.output == ""


def test_sample_every_n_epochs_and_always_the_last(tmp_path: Path) -> None:
    run_dir = train(tiny_config(tmp_path / "run", dataset_options={"size": 32}, epochs=5, sample_every=2)).run_dir
    grids = sorted(path.name for path in (run_dir / "samples").glob("epoch_*.png"))
    assert grids == ["epoch_001.png", "epoch_003.png", "epoch_004.png"]
    with Image.open(run_dir / "samples.gif") as gif:
        assert gif.n_frames == 3


def test_trackers_are_listed_and_described_like_every_plugin() -> None:
    listed = run("plugins", "--kind", "tracker")
    assert listed.exit_code == 0 and "tensorboard" in listed.output and "ok" in listed.output
    described = run("info", "tracker", "tensorboard", "--tracker-opt", "flush_secs=5")
    assert described.exit_code == 0 and "flush_secs" in described.output and "images" in described.output


# -- TensorBoard that cannot write (issue 22, class 5): one warning, under --quiet too, no thread traceback -----------


def tensorboard_run(out: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gankit", "train", *TINY, "--epochs", "2", "--tracker", "tensorboard"]
    command += ["--tracker-opt", "flush_secs=1", "--quiet", "--overwrite", "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def assert_one_tracker_warning(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception in thread" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: tracker 'tensorboard' failed"), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], done.stderr


def test_a_tensorboard_folder_that_is_a_file_is_one_warning_under_quiet(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "tensorboard").write_text("mine\n")
    done = tensorboard_run(out)
    assert_one_tracker_warning(done, f"cannot write {out / 'tensorboard'}: it is a file, not a folder")
    assert (out / "tensorboard").read_text() == "mine\n"
    assert len(metric_lines(out)) == 4


def test_tensorboard_on_a_full_disk_is_one_warning_and_no_thread_traceback(tmp_path: Path) -> None:
    """TensorBoard's writer thread printed "Exception in thread Thread-1: ... OSError" beside gankit's warning."""
    import os

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with open(disk / "fill", "wb", buffering=0) as fill:  # the disk full to its last byte
            try:
                while fill.write(b"\0" * 4096):
                    pass
            except OSError:
                pass
        out = tmp_path / "run"
        out.mkdir()
        (out / "tensorboard").symlink_to(disk, target_is_directory=True)
        done = tensorboard_run(out)
        assert_one_tracker_warning(done, "No space left on device")
        assert len(metric_lines(out)) == 4
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
