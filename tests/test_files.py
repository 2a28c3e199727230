"""Atomic writes: the old file or the complete new one, never half of one, and no clobbering when asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from gankit.files import atomic_output, atomic_write_bytes


def test_atomic_output_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"first"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]  # no temporary left behind
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"second")
    assert target.read_bytes() == b"second"


def test_no_clobber_mode_refuses_existing_files(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("mine")
    with pytest.raises(FileExistsError):
        atomic_write_bytes(target, b"theirs", overwrite=False)
    assert target.read_text() == "mine"
    fresh = tmp_path / "new.txt"
    atomic_write_bytes(fresh, b"ok", overwrite=False)
    assert fresh.read_bytes() == b"ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "new.txt"]
