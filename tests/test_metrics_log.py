"""``metrics.jsonl`` damaged in every way but a line of bad JSON: one line naming the file and the line (issue 22,
class 4), from ``--resume`` and from ``gankit export RUN``, and the checked reader under both."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import assert_user_error, run

from gankit.errors import FileFormatError
from gankit.files import read_metrics_log

TRAIN = [
    "train", "--gen", "mlp", "--gen-opt", "hidden=16", "--disc-opt", "hidden=16", "--dataset", "fake",
    "--data-opt", "size=64", "--batch-size", "8", "--device", "cpu", "--max-steps", "4", "--log-every", "1",
    "--checkpoint-every", "2", "--quiet",
]  # fmt: skip


def replace_line(number: int, text: bytes) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        lines = path.read_bytes().splitlines(keepends=True)
        lines[number - 1] = text + b"\n"
        path.write_bytes(b"".join(lines))

    return damage


def make_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "a list": (replace_line(2, b"[1, 2]"), "line 2 is a JSON list, not an object"),
    "a number": (replace_line(2, b"7"), "line 2 is a JSON int, not an object"),
    "a string step": (replace_line(3, b'{"step": "3", "d_loss": 1.0}'), "line 3 has step '3'"),
    "a text value": (replace_line(2, b'{"step": 2, "d_loss": "low"}'), "line 2 has 'd_loss' = 'low', not a number"),
    "not UTF-8": (replace_line(3, b'{"step": 3, "d_loss": 1.0, "\xff\xfe": 2}'), "line 3 is not UTF-8 text"),
    "a folder": (make_folder, "is not a run's metrics log: it is a folder"),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("metrics") / "run"
    assert run(*TRAIN, "--out", out).exit_code == 0
    return out


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_metrics_log_is_one_line_from_resume_and_export(tmp_path: Path, trained: Path, case: str) -> None:
    damage, said = DAMAGE[case]
    folder = tmp_path / "run"
    shutil.copytree(trained, folder)
    damage(folder / "metrics.jsonl")
    with pytest.raises(FileFormatError, match=r"metrics\.jsonl"):
        read_metrics_log(folder / "metrics.jsonl")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert_user_error(run("train", "--resume", folder, "--max-steps", "6", "--quiet"), "metrics.jsonl", said)
    assert_user_error(run("export", folder, "--out", tmp_path / "g.safetensors"), "metrics.jsonl", said)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".lock"} == before
    assert not (tmp_path / "g.safetensors").exists()


def test_a_metrics_log_that_is_a_link_or_a_fifo_is_refused_unread(tmp_path: Path) -> None:
    import os

    target = tmp_path / "elsewhere.jsonl"
    target.write_text('{"step": 1}\n')
    link = tmp_path / "metrics.jsonl"
    link.symlink_to(target)
    with pytest.raises(FileFormatError, match="it is a symbolic link, not a regular file"):
        read_metrics_log(link)
    link.unlink()
    os.mkfifo(link)
    with pytest.raises(FileFormatError, match="it is a FIFO, not a regular file"):
        read_metrics_log(link)  # opened without blocking: no writer needed, no hang


def test_a_last_line_cut_short_is_dropped_and_a_missing_log_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    assert read_metrics_log(path) == []
    path.write_text('{"step": 1, "d_loss": 0.5}\n{"step": 2, "d_lo')
    assert read_metrics_log(path) == [{"step": 1, "d_loss": 0.5}]
