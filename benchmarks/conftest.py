"""Fixtures of the pytest-benchmark suite: MNIST, torchvision's copy of it, the sizes, and images-per-second timing.

Benchmarks are opt-in: the root configuration collects ``tests/`` only and deselects the ``benchmark`` marker, so
they run only when asked for::

    pytest benchmarks -m benchmark                    # the figures of docs/performance.md
    pytest benchmarks -m benchmark --bench-quick      # the same code at tiny sizes, one round: a smoke run
    pytest benchmarks -m benchmark -k data --benchmark-json data.json

Each benchmark times one unit of work (an epoch of batches, N training steps, a batch of samples) for several
rounds after a warm-up round, and records ``images_per_sec`` (from the median round) in ``extra_info``, which
``--benchmark-json`` writes out. ``benchmarks/compare.py`` runs the same workloads interleaved in one process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import workloads as w

from gankit.interfaces import ImageData

RATES = pytest.StashKey[list[tuple[str, str, float]]]()
"""(group, test, images per second) of every benchmark run, for the summary at the end."""


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RATES] = []


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rates = sorted(config.stash.get(RATES, []))
    if not rates:
        return
    terminalreporter.section("images per second (median round)")
    for group, name, rate in rates:
        terminalreporter.line(f"{group:<16} {name:<44} {rate:>14,.0f}")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench-quick", action="store_true", help="gankit benchmarks: tiny models and batches, one round")


@pytest.fixture(scope="session")
def scale(request: pytest.FixtureRequest) -> w.Scale:
    return w.QUICK if request.config.getoption("--bench-quick") else w.FULL


@pytest.fixture(scope="session")
def rounds(scale: w.Scale) -> int:
    return 1 if scale == w.QUICK else 5


@pytest.fixture(scope="session")
def mnist() -> ImageData:
    return w.load_mnist("train")


@pytest.fixture(scope="session")
def torchvision_root(tmp_path_factory: pytest.TempPathFactory, mnist: ImageData) -> Path:
    """A folder torchvision's ``datasets.MNIST`` reads without downloading: gankit's MNIST as IDX files."""
    root = w.write_torchvision_mnist(tmp_path_factory.mktemp("torchvision-mnist"))
    dataset = w.seeds_dataset(root, image_size=28)
    assert torch.equal(dataset.data, mnist.images.squeeze(1)) and torch.equal(dataset.targets, mnist.labels)
    return root


@pytest.fixture
def images_per_sec(benchmark: Any, rounds: int, request: pytest.FixtureRequest) -> Callable[[Callable[[], int]], float]:
    """Time ``unit`` (which returns how many images it processed) with pytest-benchmark; images per second."""

    def measure(unit: Callable[[], int]) -> float:
        images = benchmark.pedantic(unit, rounds=rounds, warmup_rounds=1, iterations=1)
        rate = float(images / benchmark.stats.stats.median)
        benchmark.extra_info["images"] = images
        benchmark.extra_info["images_per_sec"] = rate
        request.config.stash[RATES].append((benchmark.group or "", request.node.name, rate))
        return rate

    return measure
