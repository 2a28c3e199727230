"""The recipe search behind docs/results.md's "Round two": many one-epoch MNIST runs of `gankit train` in parallel on
one GPU, each scored by gankit's own evaluation at its end, at equal steps.

    python scripts/recipe_search.py --round 1 --out search-1.json --seconds 400 --parallel 12   # on a CUDA machine

Scores at equal steps do not depend on the device (the default recipe scored FD 109.5 and MNIST score 5.70 here,
2 seeds, against 104.4 and 5.77 on the 2-core CPU, 3 seeds), so a GPU searches in minutes what the CPU would take a
day for; runs use ``--amp off`` so the arithmetic is fp32 as on the CPU. The chosen recipes were then measured on
the CPU with ``gankit compare``. Results: docs/data/recipe-search-h200.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gankit.files import read_metrics_log

BASE = ["--gen", "dcgan", "--loss", "nonsat", "--dataset", "mnist", "--image-size", "28", "--device", "cuda",
        "--amp", "off", "--quiet", "--log-every", "100", "--eval-every", "937"]  # fmt: skip
LR = ["--lr-g", "1e-3", "--lr-d", "1e-3"]
EMA1 = ["--ema", "--ema-kimg", "1"]


def r1(gamma: str) -> list[str]:
    return ["--loss-opt", f"r1_gamma={gamma}", "--loss-opt", "r1_interval=16"]


ROUNDS: dict[int, dict[str, list[str]]] = {
    # round 1: the knobs issue 15 left untried, on top of the defaults of the time (batch 64, Adam 5e-4)
    1: {
        "base": [],
        "lr1e-3": ["--lr-g", "1e-3", "--lr-d", "1e-3"],
        "b0.5-0.9": ["--betas", "0.5", "0.9"],
        "b0-0.99": ["--betas", "0.0", "0.99"],
        "ttur-g2-d6": ["--lr-g", "2e-4", "--lr-d", "6e-4"],
        "ttur-g5-d10": ["--lr-g", "5e-4", "--lr-d", "1e-3"],
        "ttur-g10-d5": ["--lr-g", "1e-3", "--lr-d", "5e-4"],
        "dsteps2": ["--d-steps", "2"],
        "dw128": ["--disc-opt", "width=128"],
        "dw32": ["--disc-opt", "width=32"],
        "z32": ["--latent-dim", "32"],
        "z64": ["--latent-dim", "64"],
        "z128": ["--latent-dim", "128"],
        "ls0.1": ["--loss-opt", "label_smoothing=0.1"],
        "ls0.2": ["--loss-opt", "label_smoothing=0.2"],
        "ema1": ["--ema", "--ema-kimg", "1"],
        "ema0.5": ["--ema", "--ema-kimg", "0.5"],
        "ema2": ["--ema", "--ema-kimg", "2"],
        "b32": ["--batch-size", "32"],
        "b32-lr2": ["--batch-size", "32", "--lr-g", "2e-4", "--lr-d", "2e-4"],
        "g128": ["--gen-opt", "width=128"],
        "lr1e-3-ema1": ["--lr-g", "1e-3", "--lr-d", "1e-3", "--ema", "--ema-kimg", "1"],
        "b0.5-0.9-ema1": ["--betas", "0.5", "0.9", "--ema", "--ema-kimg", "1"],
        "minimax": ["--loss", "minimax"],
    },
    # round 2: on top of round 1's best knob (Adam 1e-3 for both networks): D and G architecture, R1, EMA
    2: {
        "base": [],
        "lr1e-3": LR,
        "lr1e-3-ema1": [*LR, *EMA1],
        "lrg2e-3-d1e-3": ["--lr-g", "2e-3", "--lr-d", "1e-3"],
        "lrg1e-3-d2e-3": ["--lr-g", "1e-3", "--lr-d", "2e-3"],
        "lr2e-3": ["--lr-g", "2e-3", "--lr-d", "2e-3"],
        "lr1e-3-z32": [*LR, "--latent-dim", "32"],
        "lr1e-3-b32": [*LR, "--batch-size", "32"],
        "lr1e-3-b0.5-0.99": [*LR, "--betas", "0.5", "0.99"],
        "lr1e-3-dspectral": [*LR, "--disc-opt", "norm=spectral"],
        "lr1e-3-dnonorm": [*LR, "--disc-opt", "norm=none"],
        "lr1e-3-slope0.1": [*LR, "--disc-opt", "slope=0.1"],
        "lr1e-3-slope0.3": [*LR, "--disc-opt", "slope=0.3"],
        "lr1e-3-ddrop0.2": [*LR, "--disc-opt", "dropout=0.2"],
        "lr1e-3-resize": [*LR, "--gen-opt", "upsample=resize"],
        "lr1e-3-r1-0.1": [*LR, *r1("0.1")],
        "lr1e-3-r1-1": [*LR, *r1("1")],
        "lr1e-3-r1-10": [*LR, *r1("10")],
        "lr1e-3-g96": [*LR, "--gen-opt", "width=96"],
        "lr1e-3-dw96": [*LR, "--disc-opt", "width=96"],
        "lr1e-3-ema0.5": [*LR, "--ema", "--ema-kimg", "0.5"],
        "lr1e-3-ema2": [*LR, "--ema", "--ema-kimg", "2"],
        "lr1e-3-ema1-b32": [*LR, *EMA1, "--batch-size", "32"],
        "lr1e-3-ema1-z32": [*LR, *EMA1, "--latent-dim", "32"],
        "lr1e-3-ema1-dspectral": [*LR, *EMA1, "--disc-opt", "norm=spectral"],
        "lr1e-3-ema1-r1-1": [*LR, *EMA1, *r1("1")],
        "lr1e-3-ema1-dspectral-r1-1": [*LR, *EMA1, "--disc-opt", "norm=spectral", *r1("1")],
    },
    # round 3: learning-rate schedules
    3: {
        "lr1e-3-ema1": [*LR, *EMA1],
        "lr1e-3-ema1-linear": [*LR, *EMA1, "--lr-schedule", "linear"],
        "lr1e-3-ema1-cosine": [*LR, *EMA1, "--lr-schedule", "cosine"],
        "lr2e-3-ema1-linear": ["--lr-g", "2e-3", "--lr-d", "2e-3", *EMA1, "--lr-schedule", "linear"],
        "lr2e-3-ema1-cosine": ["--lr-g", "2e-3", "--lr-d", "2e-3", *EMA1, "--lr-schedule", "cosine"],
        "lr1e-3-ema1-r1-1-linear": [*LR, *EMA1, *r1("1"), "--lr-schedule", "linear"],
        "lr1e-3-ema1-linear-warm100": [*LR, *EMA1, "--lr-schedule", "linear", "--lr-warmup", "100"],
        "lrg2e-3-d1e-3-ema1-linear": ["--lr-g", "2e-3", "--lr-d", "1e-3", *EMA1, "--lr-schedule", "linear"],
        "lr1e-3-linear": [*LR, "--lr-schedule", "linear"],
        "lr1e-3-ema1-resize-linear": [*LR, *EMA1, "--gen-opt", "upsample=resize", "--lr-schedule", "linear"],
    },
}
LONG = {1: ("base", "ema2", "lr1e-3-ema1", "b0.5-0.9-ema1"),
         2: ("lr1e-3-ema1", "lr1e-3-ema1-r1-1", "lr1e-3-ema1-dspectral", "lr1e-3-ema1-b32"),
         3: ("lr1e-3-ema1-linear", "lr1e-3-ema1-r1-1-linear", "lr2e-3-ema1-linear")}  # fmt: skip
"""The arms also run for 5 epochs (seed 0)."""
SEEDS = (0, 1)


def scores(run: Path) -> dict[str, float]:
    """The last evaluation line of a run's metrics.jsonl."""
    found: dict[str, float] = {}
    for record in read_metrics_log(run / "metrics.jsonl"):
        if any(key.startswith("eval/") for key in record):
            found = {key: value for key, value in record.items() if key.startswith("eval/") or key == "step"}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round", type=int, choices=sorted(ROUNDS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=400.0, help="stop starting runs after this long")
    parser.add_argument("--parallel", type=int, default=12)
    parser.add_argument("--runs", type=Path, default=Path("/tmp/recipe-search"))
    args = parser.parse_args()
    arms = ROUNDS[args.round]
    jobs = [(name, 0, 5) for name in LONG[args.round]]
    jobs += [(name, seed, 1) for seed in SEEDS for name in arms]
    deadline = time.time() + args.seconds
    running: list[tuple[subprocess.Popen[bytes], str, int, int, float]] = []
    results = []
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    while jobs or running:
        while jobs and len(running) < args.parallel and time.time() < deadline - 40:
            name, seed, epochs = jobs.pop(0)
            out = args.runs / f"{name}-e{epochs}-s{seed}"
            command = [sys.executable, "-m", "gankit", "train", *BASE, *arms[name], "--epochs", str(epochs),
                       "--seed", str(seed), "--out", str(out), "--overwrite"]  # fmt: skip
            running.append(
                (subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env), name, seed, epochs, time.time())
            )
        if time.time() >= deadline - 40:
            jobs = []
        time.sleep(0.5)
        for item in list(running):
            process, name, seed, epochs, started = item
            if process.poll() is None and time.time() < deadline:
                continue
            if process.poll() is None:
                process.kill()
            running.remove(item)
            found = scores(args.runs / f"{name}-e{epochs}-s{seed}")
            results.append({"arm": name, "seed": seed, "epochs": epochs, "rc": process.returncode,
                            "wall_s": round(time.time() - started, 1), "scores": found})  # fmt: skip
            print(name, seed, epochs, process.returncode, found, flush=True)
            args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
