"""Images per second of the batch pipelines: gankit's ``DeviceBatches`` against the seeds' DataLoader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import workloads as w

from gankit.interfaces import ImageData

Measure = Callable[[Callable[[], int]], float]


@pytest.mark.benchmark(group="data")
@pytest.mark.parametrize("image_size", w.SIZES)
def test_gankit_pipeline(
    benchmark: Any, images_per_sec: Measure, mnist: ImageData, scale: w.Scale, image_size: int
) -> None:
    """One epoch of ``DeviceBatches.batch`` over an epoch order: gather, scale to [-1, 1], resize, on the device."""
    benchmark.group = f"data {image_size}x{image_size}"
    data = w.GankitData(
        mnist, image_size=image_size, batch_size=scale.batch_size, device=torch.device("cpu"), limit=scale.data_batches
    )
    assert images_per_sec(data.run) > 0


@pytest.mark.benchmark(group="data")
@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("image_size", w.SIZES)
def test_seeds_pipeline(
    benchmark: Any, images_per_sec: Measure, torchvision_root: Path, scale: w.Scale, image_size: int, workers: int
) -> None:
    """One epoch of torchvision MNIST with Resize, ToTensor and Normalize through ``DataLoader(shuffle=True)``."""
    benchmark.group = f"data {image_size}x{image_size}"
    loader = w.seeds_loader(torchvision_root, image_size=image_size, batch_size=scale.batch_size, workers=workers)
    assert images_per_sec(w.SeedsData(loader, limit=scale.data_batches).run) > 0
