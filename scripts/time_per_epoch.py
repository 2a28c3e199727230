"""Measure the time per MNIST epoch of each built-in at 28x28 and 64x64 on this machine.

    python scripts/time_per_epoch.py --steps 60

Each combination trains ``--steps`` steps of the default batch (64) through ``gankit.run.train`` (the default
path: device-resident data, AMP off on CPU, channels-last for DCGAN) and logs every 10 steps; the first window is
dropped as warm-up and the throughput of the rest gives the time of an epoch (937 steps of 64 images);
``--batch-size 128`` measures the batch of the defaults before issue 15 (468 steps of 128).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
from pathlib import Path

import torch

from gankit.files import read_metrics_log
from gankit.run import TrainConfig, build_config, train

MNIST_IMAGES = 60_000
DEFAULT_BATCH: int = TrainConfig.model_fields["batch_size"].default


def measure(generator: str, size: int, steps: int, batch_size: int) -> float:
    """Steady-state images per second of the default training step."""
    out = Path(tempfile.mkdtemp()) / "run"
    try:
        config = build_config(
            {"generator": generator, "loss": "nonsat", "image_size": size, "max_steps": steps, "epochs": 1,
             "log_every": 10, "device": "cpu", "out": out, "sample_count": 16, "batch_size": batch_size}
        )  # fmt: skip
        train(config)
        lines = read_metrics_log(out / "metrics.jsonl")
        return statistics.median(line["images_per_sec"] for line in lines[1:])
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")  # fmt: skip
    batch = args.batch_size
    steps = MNIST_IMAGES // batch
    print(f"| model | image size | images/s | time per epoch ({steps} steps x {batch}) |")
    print("|---|---|---|---|")
    for generator in ("mlp", "dcgan"):
        for size in (28, 64):
            speed = measure(generator, size, args.steps, batch)
            seconds = steps * batch / speed
            print(f"| {generator} | {size} | {speed:,.0f} | {seconds / 60:.1f} min ({seconds:.0f} s) |", flush=True)


if __name__ == "__main__":
    main()
