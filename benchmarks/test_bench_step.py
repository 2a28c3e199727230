"""Images per second of a full D+G training step: gankit's engine, the same math by hand, and the seeds' loop."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import workloads as w

from gankit.interfaces import ImageData

Measure = Callable[[Callable[[], int]], float]


@pytest.mark.benchmark(group="step")
@pytest.mark.parametrize("loop", ["gankit", "raw", "seeds"])
@pytest.mark.parametrize("image_size", w.SIZES)
@pytest.mark.parametrize("model", w.MODELS)
def test_training_step(
    benchmark: Any,
    images_per_sec: Measure,
    mnist: ImageData,
    torchvision_root: Path,
    scale: w.Scale,
    model: str,
    image_size: int,
    loop: str,
) -> None:
    """``gankit``: ``Trainer.train_step`` as ``gankit train`` drives it; ``raw``: a hand-written loop of the same
    math (the gap is the framework's overhead); ``seeds``: the pytorch/examples loop with the seeds' DataLoader."""
    benchmark.group = f"step {model}-{image_size}"
    config = w.train_config(model, image_size, scale)
    runner: w.GankitLoop | w.RawLoop | w.SeedsLoop
    if loop == "gankit":
        runner = w.GankitLoop(config, mnist)
    elif loop == "raw":
        runner = w.RawLoop(config, mnist)
    else:
        loader = w.seeds_loader(torchvision_root, image_size=image_size, batch_size=scale.batch_size, workers=0)
        runner = w.SeedsLoop(config, mnist, loader)
    steps = 2 if scale == w.QUICK else w.STEPS[model, image_size]
    assert images_per_sec(partial(runner.run, steps)) > 0
