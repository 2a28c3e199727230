"""scripts/gpu_check.py works: its ``--cpu-smoke`` run (the CUDA script's code at tiny sizes on the CPU, fake data)
passes every check and prints the GPU rows of docs/performance.md. The figures themselves are not checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

ROWS = ("DCGAN-64 fp32", "DCGAN-64 bf16", "DCGAN-64 fp16", "DCGAN-28 (default AMP)")


def test_gpu_check_cpu_smoke(tmp_path: Path) -> None:
    report = tmp_path / "gpu_check.json"
    table = tmp_path / "rows.md"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--cpu-smoke", "--out", str(tmp_path / "runs"),
         "--json", str(report), "--markdown", str(table)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FAIL" not in done.stdout
    assert "GPU rows of docs/performance.md" in done.stdout
    for row in ROWS:
        assert f"| {row} |" in done.stdout
        assert f"| {row} |" in table.read_text()
    result = json.loads(report.read_text())
    assert result["cpu_smoke"] is True
    assert [row["run"] for row in result["rows"]] == list(ROWS)
    assert all(row["images_per_sec"] > 0 and row["steps"] > 0 for row in result["rows"])
    names = [check["name"] for check in result["checks"]]
    assert all(check["ok"] for check in result["checks"])
    assert any(name.startswith("resume:") for name in names)
    assert sum(name.startswith("export of") for name in names) == 2
    assert any("trained in bf16" in name for name in names) and any("trained in fp16" in name for name in names)
