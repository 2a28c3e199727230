"""Measure docs/results.md: {mlp, dcgan} x {nonsat, minimax} at 28x28 on MNIST, scored after each epoch.

Every figure in the table comes from this script's own runs (nothing is typed in)::

    python scripts/results_table.py --epochs 3            # writes docs/results.md and docs/images/results/

It rewrites docs/results.md between the ``KEEP`` and ``END`` lines (the sections above and below, measured with
``gankit compare`` and other scripts, are kept); the discussion it leaves as ``DISCUSSION`` is written by hand.

Each run is ``gankit train --gen G --loss L --image-size 28 --epochs E --eval-every <steps per epoch>
--seed 0``, so the generator is scored (10,000 samples against the 10,000 MNIST test images) at every epoch end.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import textwrap
import time
from pathlib import Path

import torch

from gankit.evaluation import reference_metrics
from gankit.files import read_metrics_log
from gankit.run import TrainConfig, build_config, train

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = [
    ("eval/frechet_distance", "FD ↓", "{:.2f}"),
    ("eval/kid", "KID ↓", "{:.4f}"),
    ("eval/precision", "precision ↑", "{:.3f}"),
    ("eval/recall", "recall ↑", "{:.3f}"),
    ("eval/mnist_score", "MNIST score ↑", "{:.2f}"),
    ("eval/modes_covered", "digits covered ↑", "{:.0f}"),
    ("eval/mode_kl", "class KL ↓", "{:.3f}"),
]
DEFAULTS = TrainConfig.model_fields
STEPS_PER_EPOCH = 60_000 // DEFAULTS["batch_size"].default  # 937 at the default batch of 64
KEEP = "<!-- scripts/results_table.py rewrites what follows and keeps what is above -->"
END = "<!-- end of what scripts/results_table.py writes -->"


def recipe(config: TrainConfig) -> str:
    """The training recipe a run used: the defaults, or what its generator recommends (``gankit info``)."""
    ema = f"an EMA of G (half-life {config.ema_kimg:g} kimg)" if config.ema else "no EMA"
    return f"batch {config.batch_size}, Adam {config.lr_g:g} (G) and {config.lr_d:g} (D), betas {config.betas}, {ema}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/results"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images = ROOT / "docs" / "images" / "results"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    recipes: dict[str, list[str]] = {}  # recipe -> the runs that trained with it
    for generator in ("mlp", "dcgan"):
        for loss in ("nonsat", "minimax"):
            out = args.out / f"{generator}-{loss}"
            shutil.rmtree(out, ignore_errors=True)
            config = build_config(
                {
                    "generator": generator,
                    "loss": loss,
                    "image_size": 28,
                    "epochs": args.epochs,
                    "eval_every": STEPS_PER_EPOCH,
                    "seed": args.seed,
                    "device": "cpu",
                    "out": out,
                }
            )
            started = time.perf_counter()
            result = train(config)
            wall = time.perf_counter() - started
            metrics = read_metrics_log(out / "metrics.jsonl")
            scored = [m for m in metrics if "eval/frechet_distance" in m]
            grid = images / f"{generator}-{loss}.png"
            shutil.copyfile(out / "samples" / f"epoch_{args.epochs - 1:03d}.png", grid)
            rows.append((generator, loss, scored, wall, result.steps, grid.name))
            recipes.setdefault(recipe(config), []).append(f"{generator} + {loss}")
            print(generator, loss, f"{wall:.0f}s", {k: round(v, 3) for k, v in scored[-1].items() if "eval/" in k})
    reference = reference_metrics(n=10_000, seed=args.seed, batch_size=500, device="cpu")
    write_markdown(rows, reference, recipes, args)


def write_markdown(
    rows: list,  # type: ignore[type-arg]
    reference: dict[str, float],
    recipes: dict[str, list[str]],
    args: argparse.Namespace,
) -> None:
    head = "| model | loss | after epoch | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (3 + len(COLUMNS))]
    for generator, loss, scored, _, _, _ in rows:
        for m in scored:
            cells = " | ".join(fmt.format(m[key]) for key, _, fmt in COLUMNS)
            lines.append(f"| {generator} | {loss} | {round(m['epoch'])} | {cells} |")
    cells = " | ".join(fmt.format(reference[key.removeprefix("eval/")]) for key, _, fmt in COLUMNS)
    lines.append(f"| real training images | (reference) | | {cells} |")
    walls = "\n".join(f"| {g} | {lo} | {steps} | {wall / 60:.1f} min |" for g, lo, _, wall, steps, _ in rows)
    grids = "\n".join(f"| {g} + {lo} | ![{g} {lo}](images/results/{name}) |" for g, lo, _, _, _, name in rows)
    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    recipe_text = textwrap.fill("; ".join(f"{', '.join(runs)}: {text}" for text, runs in recipes.items()), 110)
    text = f"""## The built-ins, scored every epoch

Generated by `python scripts/results_table.py --epochs {args.epochs}` (seed {args.seed}); every figure below
comes from that run. Machine: {machine}. Each run is

```bash
gankit train --gen GEN --loss LOSS --image-size 28 --epochs {args.epochs} \\
    --eval-every {STEPS_PER_EPOCH} --seed {args.seed}
```

({recipe_text}: the defaults, or what the generator or
the loss recommends), scored at every epoch end with 10,000 samples against the
10,000 MNIST test images (`gankit eval`; features from gankit's digit classifier). The last row scores 10,000 real
training images the same way: the floor for every column.

## Scores

{chr(10).join(lines)}

↓: lower is better, ↑: higher is better. MNIST score is at most 10; digits covered counts the classes holding at
least 1% of the samples.

## Wall time (training and evaluation, CPU)

| model | loss | steps | wall time |
|---|---|---|---|
{walls}

## Final sample grids (fixed noise, after epoch {args.epochs})

| run | samples |
|---|---|
{grids}

DISCUSSION

{END}
"""
    path = ROOT / "docs" / "results.md"
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    title = f"# Results: the built-ins on MNIST, measured\n\n{KEEP}"
    kept = old[: old.index(KEEP) + len(KEEP)] if KEEP in old else title
    after = old[old.index(END) + len(END) :] if END in old else "\n"
    path.write_text(kept + "\n\n" + text.rstrip("\n") + after, encoding="utf-8")


if __name__ == "__main__":
    main()
