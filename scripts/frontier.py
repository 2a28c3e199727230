"""Time to quality on MNIST (issue 15): each recipe's digits after equal steps, and what its steps cost.

Every figure of docs/results.md's "Time to quality" comes from this script's own runs::

    python scripts/frontier.py run --settings seeds,old-default,g64-b64-lr5 --seeds 0,1,2 --epochs 1
    python scripts/frontier.py run --settings g64-b64-lr5-ema --seeds 0 --epochs 5
    python scripts/frontier.py costs                 # per-step cost of every setting against the seeds' loop
    python scripts/frontier.py table                 # the tables and grids, from the JSON (frontier_table.py)
    python scripts/frontier.py collect --settings g64-b64-lr5-ema --seeds 0 --epochs 5   # a stopped run's points

Every setting is pinned on top of gankit's defaults before issue 15 (``BEFORE``), so it keeps its meaning now that
the defaults are ``g64-b64-lr5``'s. The tables are written to ``--markdown`` and copied into docs/results.md by hand.

``run`` trains each setting with each seed (``gankit.run.train``; the seeds' pipeline through
``benchmarks.workloads.SeedsLoop``) and scores the generator ``--evals-per-epoch`` times per epoch with
``evaluate_generator`` (10,000 samples against the MNIST test set). Results are appended to ``--json``; a
(setting, seed, epochs) already there is skipped, so an interrupted run resumes where it stopped.

``costs`` times every setting's training step in one process, interleaved with the seeds' loop (20-step blocks,
A B C ... A B C, after a warm-up block), and keeps the median seconds per step and the median per-round ratio to
the seeds' loop. Scores are compared at equal steps; equal CPU time (1, 3, 10 minutes) is converted into steps
with these costs.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ holds the seeds' loop

from frontier_settings import (  # scripts/ is on the path when this runs as a script
    ROOT,
    SCORES,
    SETTINGS,
    config_for,
    cost_class,
    read_json,
    settings_arg,
    steps_per_epoch,
    write_json,
)
from frontier_table import write_table

from benchmarks import workloads as w
from gankit.evaluation import evaluate_generator
from gankit.export import load_generator, save_generator
from gankit.run import train

# -- scoring ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def recalibrate_batchnorm(generator: torch.nn.Module, *, n: int = 10_000, batch: int = 500, seed: int = 1) -> None:
    """Replace BatchNorm running statistics by their exact average over ``n`` samples of the current weights."""
    norms = [m for m in generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    generator.train()
    noise = torch.Generator().manual_seed(seed)
    for _ in range(n // batch):
        generator(generator.sample_latent(batch, generator=noise))  # type: ignore[operator]
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    generator.eval()


def score(generator: Any, seed: int) -> dict[str, float]:
    scores = evaluate_generator(generator, n=10_000, seed=seed, device="cpu")
    return {key: float(scores[key]) for key in SCORES}


# -- one run ---------------------------------------------------------------------------------------------------------


def run_gankit(name: str, seed: int, epochs: int, evals: int, out: Path) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    every = math.ceil(steps_per_epoch(name) / evals)
    config = config_for(name, seed=seed, epochs=epochs, eval_every=every, out=out, log_every=every)
    started = time.perf_counter()
    train(config)
    wall = time.perf_counter() - started
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    points = [
        {"step": m["step"], "epoch": m["epoch"], **{k: m[f"eval/{k}"] for k in SCORES}}
        for m in metrics
        if "eval/frechet_distance" in m
    ]
    generator = load_generator(out / "generator.safetensors")
    recalibrate_batchnorm(generator)
    points[-1]["recalibrated"] = score(generator, seed)
    return {"points": points, "wall_s": wall, "export": str(out / "generator.safetensors")}


def run_seeds(name: str, seed: int, epochs: int, evals: int, out: Path, root: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    config = config_for(name, seed=seed)
    loader = w.seeds_loader(root, image_size=28, batch_size=config.batch_size, workers=0)
    loop = w.SeedsLoop(config, w.load_mnist("train"), loader)
    per_epoch = steps_per_epoch(name)
    every = per_epoch // evals
    points, step, trained = [], 0, 0.0
    while step < per_epoch * epochs:
        chunk = min(every, per_epoch * epochs - step)
        started = time.perf_counter()
        loop.run(chunk)
        trained += time.perf_counter() - started
        step += chunk
        points.append({"step": step, "epoch": step / per_epoch, **score(loop.netG, seed)})
    export = out / "generator.safetensors"
    save_generator(loop.netG, export, plugin_name="dcgan", overwrite=True)
    return {"points": points, "wall_s": trained, "export": str(export)}


def collect(args: argparse.Namespace) -> None:
    """Record the evaluation points of gankit runs that were stopped before their end (marked ``"stopped": true``)."""
    results = read_json(args.json)
    for name in args.settings:
        for seed in args.seeds:
            key = f"{name}/seed{seed}/epochs{args.epochs}"
            out = args.out / f"{name}-s{seed}-e{args.epochs}"
            if key in results["runs"] or not (out / "metrics.jsonl").exists() or SETTINGS[name].get("pipeline"):
                continue
            metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            points = [
                {"step": m["step"], "epoch": m["epoch"], **{k: m[f"eval/{k}"] for k in SCORES}}
                for m in metrics
                if "eval/frechet_distance" in m
            ]
            if points:
                wall = metrics[-1]["elapsed_s"]
                run = {"points": points, "wall_s": wall, "export": str(out / "generator-best.safetensors")}
                results["runs"][key] = {**run, "setting": name, "seed": seed, "epochs": args.epochs, "stopped": True}
                print("collected", key, [p["step"] for p in points])
    write_json(args.json, results)


def run_all(args: argparse.Namespace) -> None:
    results = read_json(args.json)
    root = w.write_torchvision_mnist(args.out / "torchvision") if "seeds" in args.settings else Path()
    for name in args.settings:
        for seed in args.seeds:
            key = f"{name}/seed{seed}/epochs{args.epochs}"
            if key in results["runs"]:
                print("have", key)
                continue
            out = args.out / f"{name}-s{seed}-e{args.epochs}"
            if SETTINGS[name].get("pipeline") == "seeds":
                run = run_seeds(name, seed, args.epochs, args.evals_per_epoch, out, root)
            else:
                run = run_gankit(name, seed, args.epochs, args.evals_per_epoch, out)
            run.update(setting=name, seed=seed, epochs=args.epochs)
            results = read_json(args.json)  # another process may have added runs meanwhile
            results["runs"][key] = run
            write_json(args.json, results)
            last = run["points"][-1]
            print(
                key,
                f"{run['wall_s']:.0f}s",
                {k: round(last[k], 2) for k in SCORES},
                "recal FD",
                round(last.get("recalibrated", {}).get("frechet_distance", math.nan), 2),
                flush=True,
            )


# -- per-step costs --------------------------------------------------------------------------------------------------


def measure_costs(args: argparse.Namespace) -> None:
    """Seconds per step of each setting's cost class, in one process, interleaved with the seeds' loop."""
    root = w.write_torchvision_mnist(args.out / "torchvision")
    mnist = w.load_mnist("train")
    loops: dict[str, Any] = {}
    for name in ["seeds", *args.settings]:
        kind = cost_class(name)
        if kind in loops:
            continue
        config = config_for(name)
        if kind == "seeds":
            loader = w.seeds_loader(root, image_size=28, batch_size=config.batch_size, workers=0)
            loops[kind] = (name, w.SeedsLoop(config, mnist, loader))
        else:
            loops[kind] = (name, w.GankitLoop(config, mnist))
    times: dict[str, list[float]] = {kind: [] for kind in loops}
    for round_ in range(args.rounds + 1):
        for kind, (_, loop) in loops.items():
            started = time.perf_counter()
            loop.run(args.block)
            if round_:  # round 0 warms up
                times[kind].append((time.perf_counter() - started) / args.block)
        print("round", round_, {k: round(t[-1], 4) for k, t in times.items() if t}, flush=True)
    costs = {}
    for kind, seconds in times.items():
        ratios = [a / b for a, b in zip(seconds, times["seeds"], strict=True)]
        per_epoch = steps_per_epoch(loops[kind][0])
        costs[kind] = {
            "seconds_per_step": statistics.median(seconds),
            "ratio_per_step": statistics.median(ratios),
            "steps_per_epoch": per_epoch,
            "ratio_per_epoch": statistics.median(ratios) * per_epoch / steps_per_epoch("seeds"),
            "rounds": seconds,
        }
    results = read_json(args.json)  # runs may have been added meanwhile
    results["costs"] = {"block": args.block, "threads": torch.get_num_threads(), "machine": w.machine(), **costs}
    write_json(args.json, results)
    for kind, cost in costs.items():
        print(f"{kind:20s} {cost['seconds_per_step']:.4f} s/step  x{cost['ratio_per_epoch']:.2f} per epoch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "costs", "table", "collect"))
    parser.add_argument("--settings", type=settings_arg, default=settings_arg("seeds,old-default,g64-b64-lr5"))
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--evals-per-epoch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "frontier")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "frontier.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "runs" / "frontier" / "results_frontier.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"run": run_all, "costs": measure_costs, "table": write_table, "collect": collect}[args.command](args)


if __name__ == "__main__":
    main()
