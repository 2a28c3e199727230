"""One writer per run folder: real processes racing for one folder, and the lock coming free after ``kill -9``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import assert_error_line, assert_user_error, run

from gankit.errors import ConfigError
from gankit.run import LOCK_NAME, RunLock, check_unlocked

TRAIN = [
    "train", "--gen", "mlp", "--gen-opt", "hidden=32", "--disc-opt", "hidden=32", "--dataset", "fake",
    "--data-opt", "size=512", "--batch-size", "8", "--device", "cpu", "--log-every", "1", "--quiet",
    "--checkpoint-every", "25",
]  # fmt: skip


def start(*args: str | Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "gankit", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_lock(folder: Path, process: subprocess.Popen[str]) -> None:
    """Until ``process`` holds the folder's lock (its PID is in the lock file)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if (folder / LOCK_NAME).read_text().strip() == str(process.pid):
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"process {process.pid} never locked {folder}: {process.communicate()}")


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


def assert_refused(code: int, stderr: str, holder: int) -> None:
    assert_error_line(code, stderr, f"in use by another gankit process (PID {holder})")


def steps(folder: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_the_lock_is_exclusive_names_its_holder_and_is_removed_on_release(tmp_path: Path) -> None:
    first, second = RunLock(tmp_path), RunLock(tmp_path)
    with first:
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        with pytest.raises(ConfigError, match=f"in use by another gankit process \\(PID {os.getpid()}\\)"):
            second.acquire()
        with pytest.raises(ConfigError, match="PID"):
            check_unlocked(tmp_path)
    assert not (tmp_path / LOCK_NAME).exists()
    check_unlocked(tmp_path)
    with second:
        assert second.held


def test_a_lock_file_left_by_a_dead_process_is_no_lock(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("999999\n")
    check_unlocked(tmp_path)
    result = run(*TRAIN, "--max-steps", "3", "--out", tmp_path)  # only a stale lock file: the folder is "empty"
    assert result.exit_code == 0, result.output
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.slow
def test_two_trainings_into_one_folder_started_together(tmp_path: Path) -> None:
    out = tmp_path / "run"
    processes = {seed: start(*TRAIN, "--epochs", "3", "--seed", seed, "--out", out) for seed in ("1", "2")}
    results = {seed: finish(process) for seed, process in processes.items()}
    winners = [seed for seed, (code, _) in results.items() if code == 0]
    assert len(winners) == 1, results
    (winner,) = winners
    (loser,) = set(results) - {winner}
    assert_refused(*results[loser], holder=processes[winner].pid)
    # The folder is the winner's alone: its config, and every step logged once.
    assert json.loads((out / "config.json").read_text())["seed"] == int(winner)
    assert steps(out) == list(range(1, steps(out)[-1] + 1))


@pytest.mark.slow
def test_a_second_writer_is_refused_while_the_first_trains(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = start(*TRAIN, "--epochs", "100", "--seed", "1", "--out", out)
    wait_for_lock(out, first)
    plain = start(*TRAIN, "--epochs", "1", "--seed", "2", "--out", out)
    overwriting = start(*TRAIN, "--epochs", "1", "--seed", "2", "--out", out, "--overwrite")
    resuming = start("train", "--resume", out, "--quiet")
    for other in (plain, overwriting, resuming):
        assert_refused(*finish(other), holder=first.pid)
    first.send_signal(signal.SIGINT)
    code, stderr = finish(first)
    assert code == 130, stderr
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    assert steps(out) == list(range(1, steps(out)[-1] + 1))


@pytest.mark.slow
def test_two_resumes_at_once_and_the_lock_after_kill_9(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run(*TRAIN, "--epochs", "1", "--max-steps", "30", "--out", out)
    assert result.exit_code == 0, result.output
    # Killed while holding the lock: the OS frees it, the stale lock file names a dead process.
    killed = start("train", "--resume", out, "--quiet", "--epochs", "4", "--max-steps", "150")
    wait_for_lock(out, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert (out / LOCK_NAME).exists()

    processes = [start("train", "--resume", out, "--quiet", "--epochs", "4", "--max-steps", "150") for _ in range(2)]
    results = [finish(process) for process in processes]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    winner = processes[[code for code, _ in results].index(0)]
    assert_refused(*next(r for r in results if r[0] == 2), holder=winner.pid)
    assert steps(out) == list(range(1, 151))


def test_a_resume_of_a_locked_folder_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run(*TRAIN, "--max-steps", "3", "--out", out).exit_code == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with RunLock(out):
        result = run("train", "--resume", out, "--max-steps", "6")
        assert_user_error(result, f"is in use by another gankit process (PID {os.getpid()})")
        after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != LOCK_NAME}
    assert after == before


# -- a lock path that is not a regular file (issue 22, classes 1 and 2) ----------------------------------------------


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_lock_that_is_a_link_or_a_fifo_is_refused_and_never_followed(tmp_path: Path, kind: str) -> None:
    """``RUN/.lock -> ~/precious.txt`` truncated the target and wrote a PID into it; a FIFO hung for ever. Both are
    refused in one line, by --resume and by a fresh --overwrite start, and the target is left as it was."""
    out = tmp_path / "run"
    assert run(*TRAIN, "--max-steps", "3", "--out", out).exit_code == 0
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    if kind == "symlink":
        (out / LOCK_NAME).symlink_to(precious)
    else:
        os.mkfifo(out / LOCK_NAME)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != LOCK_NAME}
    what = "a symbolic link" if kind == "symlink" else "a FIFO"
    for args in (["train", "--resume", out, "--quiet"], [*TRAIN, "--max-steps", "3", "--out", out, "--overwrite"]):
        command = [sys.executable, "-m", "gankit", *map(str, args)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert_error_line(done.returncode, done.stderr, f"{out / LOCK_NAME} is {what}, not a regular file")
    assert precious.read_text() == "keep me\n"
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != LOCK_NAME} == before
    with pytest.raises(ConfigError, match="not a regular file"):
        RunLock(out).acquire()
