"""The benchmarks run, and measure what they claim: ``compare.py --quick`` and a short ``leak.py`` as subprocesses,
the raw loop's math against the engine's, and the opt-in configuration.

The figures are not checked here (a shared test machine makes them meaningless); docs/performance.md has them.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from gankit.registry import create_plugin

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

pytestmark = pytest.mark.slow

COMPARE_HEADERS = (
    "Machine",
    "1. Data pipeline",
    "2. Training throughput",
    "3. Framework overhead",
    "4. channels_last on vs off",
    "5. Sampling",
)


def run_script(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    # One thread: on a busy machine a smoke run stays quick and steady (its figures are not what is tested).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(BENCHMARKS / name), *map(str, args)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The benchmark modules, imported from ``benchmarks/`` as the scripts and pytest-benchmark import them."""
    import importlib

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return SimpleNamespace(**{name: importlib.import_module(name) for name in ("workloads", "leak", "compare")})


def test_compare_quick_prints_every_table(tmp_path: Path) -> None:
    result = run_script("compare.py", "--quick", "--json", tmp_path / "figures.json")
    assert result.returncode == 0, result.stderr[-3000:]
    for header in COMPARE_HEADERS:
        assert header in result.stdout, f"{header!r} missing from:\n{result.stdout}"
    report = json.loads((tmp_path / "figures.json").read_text())
    assert report["machine"]["torch"] == torch.__version__ and report["machine"]["torch_threads"] == 1
    assert set(report["sections"]) == {"data", "throughput", "overhead", "channels_last"}
    labels = {name: [row["label"] for row in rows] for name, rows in report["sections"].items()}
    assert labels["throughput"] == labels["overhead"] == ["DCGAN-28", "MLP-28", "DCGAN-64"]
    assert labels["channels_last"] == ["DCGAN-28", "DCGAN-64"]
    assert len(labels["data"]) == 4
    rows = [row for section in report["sections"].values() for row in section]
    assert all(row["ratio"] > 0 and row["a_images_per_sec"] > 0 for row in rows)
    assert [entry["label"] for entry in report["sampling"]] == ["DCGAN-28", "MLP-28", "DCGAN-64"]


def test_leak_short_run_prints_windows_and_ratios(tmp_path: Path) -> None:
    # Windows of 30 steps on a shared machine time too noisily for the 1.3 limit; memory keeps its 10% limit.
    args = ("--steps", "300", "--hidden", "16", "--batch-size", "16", "--max-time-ratio", "100")
    result = run_script("leak.py", *args, "--json", tmp_path / "leak.json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for text in ("Per window of 30 steps", "peak RSS MB", "time ratio", "memory growth"):
        assert text in result.stdout, f"{text!r} missing from:\n{result.stdout}"
    report = json.loads((tmp_path / "leak.json").read_text())
    assert len(report["windows"]) == 10 and report["windows"][-1]["last_step"] == 300
    assert report["memory_ok"] and report["time_ok"]


def test_lazy_regularization_quick_prints_the_ratio(tmp_path: Path) -> None:
    result = run_script(
        "lazy_regularization.py", "--quick", "--rounds", "1", "--models", "mlp", "--json", tmp_path / "r1.json"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "lazy / every" in result.stdout
    (row,) = json.loads((tmp_path / "r1.json").read_text())["results"]
    assert row["model"] == "mlp" and row["ratio"] > 0 and set(row["images_per_sec"]) == {"every", "lazy", "none"}


def test_leak_windows_come_from_the_log_points(bench: Any) -> None:
    records = [
        {"step": 10, "elapsed_s": 1.0, "peak_memory_mb": 100.0},
        {"step": 15, "elapsed_s": 1.4, "peak_memory_mb": 100.0},  # an epoch end between log points
        {"step": 20, "elapsed_s": 3.0, "peak_memory_mb": 110.0},
    ]
    windows = bench.leak.windows(records, 10)
    assert [(w["first_step"], w["last_step"]) for w in windows] == [(1, 10), (11, 20)]
    assert windows[1]["seconds"] == pytest.approx(2.0) and windows[1]["ms_per_step"] == pytest.approx(200.0)
    assert windows[1]["peak_memory_mb"] == 110.0


def test_ratios_pair_the_rounds(bench: Any) -> None:
    row = bench.compare.Row("x", "a", "b", [10.0, 30.0, 20.0], [5.0, 10.0, 40.0], target=1.0)
    assert row.ratio_rounds == [2.0, 3.0, 0.5] and row.ratio == 2.0 and row.meets
    assert row.a_images_per_sec == 20.0 and row.b_images_per_sec == 10.0


@pytest.mark.parametrize(("model", "image_size"), [("mlp", 28), ("dcgan", 64)])
def test_raw_loop_does_exactly_the_engines_math(bench: Any, model: str, image_size: int) -> None:
    """The overhead figure compares like with like: after a few steps both loops hold the same weights."""
    w = bench.workloads
    data = create_plugin("dataset", "fake", {"size": 64}).load("train")
    scale = w.Scale(batch_size=8, dcgan_width=4, mlp_hidden=8)
    config = w.train_config(model, image_size, scale, dataset="fake", log_every=2)
    engine, raw = w.GankitLoop(config, data), w.RawLoop(config, data)
    assert engine.run(3) == raw.run(3) == 24
    assert raw.memory_format == engine.memory_format
    for mine, theirs in ((raw.G, engine.trainer.generator), (raw.D, engine.trainer.discriminator)):
        for (name, a), b in zip(mine.state_dict().items(), theirs.state_dict().values(), strict=True):
            assert torch.equal(a, b), name
    assert torch.equal(raw.sums, engine.window.sums)


def test_benchmarks_are_opt_in_and_marked() -> None:
    """``pytest`` alone never runs them; ``pytest benchmarks -m benchmark`` runs every one of them."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert options["testpaths"] == ["tests"] and "-m 'not benchmark'" in options["addopts"]
    files = sorted(BENCHMARKS.glob("test_bench_*.py"))
    assert len(files) == 3
    for path in files:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                marks = [ast.unparse(d) for d in node.decorator_list]
                assert any(mark.startswith("pytest.mark.benchmark") for mark in marks), f"{path.name}::{node.name}"
