"""A full disk, for real: training into a small tmpfs gives one line naming the file, exit 2, the previous checkpoint
intact and no temporary file, and the run resumes (bit-identically) once there is room again.

Mounting needs root; elsewhere these tests skip and say why. CI runs them as root.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_error_line
from safetensors.torch import load_file

from gankit.files import load_checkpoint, remove_stale_temporaries

TRAIN = [
    "train", "--gen", "mlp", "--gen-opt", "hidden=8", "--disc-opt", "hidden=8", "--dataset", "fake", "--data-opt",
    "size=256", "--batch-size", "8", "--device", "cpu", "--epochs", "2", "--checkpoint-every", "10", "--log-every",
    "10", "--sample-count", "4", "--quiet", "--seed", "1",
]  # fmt: skip
"""Checkpoints of about 650 kB: a 1 MiB disk holds one but not the next beside it."""


def gankit(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gankit", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


class SmallDisk:
    """A tmpfs mounted for one test; ``resize`` makes room (or takes it away)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def resize(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)


def mount_small_disk(path: Path, size: str) -> Iterator[SmallDisk]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    yield from mount_small_disk(tmp_path / "disk", "1m")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("disk-full") / "reference"
    result = gankit(*TRAIN, "--out", out)
    assert result.returncode == 0, result.stderr
    return out


def assert_one_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    return assert_error_line(result.returncode, result.stderr, *fragments)


def temporaries(folder: Path) -> list[Path]:
    """Hidden temporary files under ``folder``: gankit's ``.NAME.xxxx.tmp.EXT``, safetensors' ``.tmpXXXXXX``."""
    return [p for p in folder.rglob(".*") if ".tmp" in p.name]


def assert_same_export(a: Path, b: Path) -> None:
    first, second = load_file(a / "generator.safetensors"), load_file(b / "generator.safetensors")
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


@pytest.mark.slow
def test_a_full_disk_at_a_later_checkpoint_keeps_the_previous_one(disk: SmallDisk, reference: Path) -> None:
    run = disk.path / "run"
    result = gankit(*TRAIN, "--out", run)
    line = assert_one_line(result, "No space left on device", str(run))
    assert "checkpoint" in line, line
    assert load_checkpoint(run / "checkpoint.safetensors")["step"] == 10  # whole, hash verified
    assert temporaries(run) == []
    disk.resize("16m")
    resumed = gankit("train", "--resume", run, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_export(run, reference)


@pytest.mark.slow
def test_when_the_first_checkpoint_cannot_be_written_the_run_still_resumes(tmp_path: Path, reference: Path) -> None:
    for disk in mount_small_disk(tmp_path / "disk", "400k"):
        run = disk.path / "run"
        assert_one_line(gankit(*TRAIN, "--out", run), "No space left on device", "checkpoint.safetensors")
        assert (run / "config.json").is_file() and not (run / "checkpoint.safetensors").exists()
        assert temporaries(run) == []
        disk.resize("16m")
        resumed = gankit("train", "--resume", run, "--quiet")
        assert resumed.returncode == 0, resumed.stderr
        assert "no checkpoint yet" in resumed.stderr
        assert_same_export(run, reference)


@pytest.mark.slow
def test_no_space_at_all_leaves_no_empty_config_and_the_folder_reusable(disk: SmallDisk) -> None:
    filler = disk.path / "filler"
    with open(filler, "wb") as stream:
        try:
            while True:
                stream.write(b"\0" * 65536)
                stream.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    run = disk.path / "run"
    assert_one_line(gankit(*TRAIN, "--out", run), "cannot write", "config.json", "No space left on device")
    assert not (run / "config.json").exists()
    assert [p.name for p in run.iterdir()] == [] if run.exists() else True
    filler.unlink()
    again = gankit(*TRAIN, "--out", run, "--epochs", "1", "--max-steps", "3")
    assert again.returncode == 0, again.stderr


def test_stale_temporaries_are_only_what_gankit_and_safetensors_leave(tmp_path: Path) -> None:
    names = [".checkpoint.safetensors.0a1b2c3d.tmp.safetensors", ".config.json.deadbeef.tmp.json", ".tmpAb3dE9"]
    kept = ["notes.tmp", ".tmpnotes.txt", ".tmpAb3dE", "checkpoint.safetensors", ".lock"]
    for name in names + kept:
        (tmp_path / name).write_text("x")
    assert sorted(p.name for p in remove_stale_temporaries(tmp_path)) == sorted(names)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_export_to_a_full_disk_is_one_line(reference: Path, tmp_path: Path) -> None:
    """safetensors reports a full disk as its own error type; the export writer turns it into one line too."""
    target = tmp_path / "tiny"
    for small in mount_small_disk(target, "64k"):  # the export (~200 kB) cannot fit
        result = gankit("export", reference, "--out", small.path / "generator.safetensors")
        assert_one_line(result, "generator.safetensors", "No space left on device")
        assert not (small.path / "generator.safetensors").exists()
        assert temporaries(small.path) == []


def test_error_log_on_a_full_disk_is_whole_or_not_there(disk: SmallDisk) -> None:
    """A traceback that did not fit left a 0-byte error.log (issue 22); now the log is written whole or not at all,
    and the error it was to record still comes through."""
    from gankit.registry import failures_reported

    with open(disk.path / "fill", "wb", buffering=0) as fill:
        try:
            while fill.write(b"\0" * 4096):
                pass
        except OSError:
            pass
    log = disk.path / "error.log"
    with pytest.raises(ValueError, match="the plugin's own mistake"), failures_reported([], log=log):
        raise ValueError("the plugin's own mistake")
    assert not log.exists()
    assert temporaries(disk.path) == []
    (disk.path / "fill").unlink()
    with pytest.raises(ValueError), failures_reported([], log=log):
        raise ValueError("the plugin's own mistake")
    assert "ValueError: the plugin's own mistake" in log.read_text()
