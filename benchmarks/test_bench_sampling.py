"""Sampling from an export (images per second of ``sample_images``) and the time of ``gankit.load_generator``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import workloads as w

import gankit

Measure = Callable[[Callable[[], int]], float]
EXPORTS = [("dcgan", 28), ("mlp", 28), ("dcgan", 64)]


@pytest.mark.benchmark(group="sampling")
@pytest.mark.parametrize(("model", "image_size"), EXPORTS, ids=[f"{m}-{s}" for m, s in EXPORTS])
def test_sample_images(images_per_sec: Measure, tmp_path: Path, scale: w.Scale, model: str, image_size: int) -> None:
    """``sample_images(generator, n, seed=0)`` on a loaded export, as ``gankit sample`` calls it."""
    path = w.write_export(tmp_path / "generator.safetensors", model, image_size, scale)
    assert images_per_sec(w.Sampling(path, count=scale.sample_count).run) > 0


@pytest.mark.benchmark(group="load")
@pytest.mark.parametrize(("model", "image_size"), EXPORTS, ids=[f"{m}-{s}" for m, s in EXPORTS])
def test_load_generator(
    benchmark: Any, rounds: int, tmp_path: Path, scale: w.Scale, model: str, image_size: int
) -> None:
    """``gankit.load_generator(path)``: header checks, a model built on the meta device, then the real one."""
    path = w.write_export(tmp_path / "generator.safetensors", model, image_size, scale)
    generator = benchmark.pedantic(gankit.load_generator, args=(path,), rounds=rounds, warmup_rounds=1, iterations=1)
    assert generator.image_shape[-1] == image_size
