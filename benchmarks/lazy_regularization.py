"""What lazy regularisation saves: the training step with R1 every step against R1 every 16 steps (StyleGAN2).

    python benchmarks/lazy_regularization.py                 # DCGAN-28 and MLP-28 at the benchmarks' full scale
    python benchmarks/lazy_regularization.py --quick         # the same code at tiny sizes: a smoke run

Both candidates are ``Trainer.train_step`` with the same R1 loss (``workloads.LazyR1``: the non-saturating loss plus
``gamma / 2 * ||grad_x D(x)||^2`` through ``Loss.discriminator_regularizer``), differing only in
``regularization_interval``. They take turns in one process, a round of 16 steps each (so the lazy one regularises
exactly once per round), after one untimed round; the ratio is the median over rounds of the per-round ratio of
images per second, lazy over every step. No R1 at all (``nonsat``) is timed alongside as the floor.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from functools import partial
from pathlib import Path

import compare
import workloads as w

ROUND_STEPS = 16
"""Steps per round: a multiple of the lazy interval, so every round holds the same number of penalties."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script runs, not a figure")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train (default cpu)")
    parser.add_argument("--models", nargs="+", default=["dcgan", "mlp"], choices=w.MODELS, help="which models")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    scale = w.QUICK if args.quick else w.FULL
    data = w.load_mnist("train") if not args.quick else None
    loss = w.register_lazy_r1()
    print(json.dumps(w.machine()))
    results = []
    print(f"\n{'model':<10}{'R1 every step':>16}{'R1 every 16':>16}{'no R1':>12}{'lazy / every':>14}  img/s")
    for model in args.models:
        extra = {"dataset": "fake", "dataset_options": {"size": 256}} if args.quick else {}
        candidates = []
        for name, options in (("every", {"interval": 1}), ("lazy", {"interval": 16}), ("none", None)):
            chosen = {"loss": loss, "loss_options": options} if options else {"loss": "nonsat"}
            config = w.train_config(model, 28, scale, device=args.device, **chosen, **extra)
            source = data if data is not None else w.create_plugin("dataset", "fake", {"size": 256}).load("train")
            loop = w.GankitLoop(config, source)
            candidates.append(compare.Candidate(name, partial(loop.run, ROUND_STEPS)))
        rates = compare.interleave(candidates, rounds=args.rounds, warmup=1)
        ratio = statistics.median(lazy / every for lazy, every in zip(rates["lazy"], rates["every"], strict=True))
        medians = {name: statistics.median(values) for name, values in rates.items()}
        results.append({"model": model, "ratio": ratio, "rounds": rates, "images_per_sec": medians})
        print(
            f"{model + '-28':<10}{medians['every']:>16,.0f}{medians['lazy']:>16,.0f}{medians['none']:>12,.0f}"
            f"{ratio:>13.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps({"machine": w.machine(), "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
