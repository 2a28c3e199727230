"""What a compare found, from its run folders: the table, the differences with their intervals and verdicts, the
plot of the scores against steps and compute, a grid of samples per arm, ``results.json`` and ``results.md``.

Everything here is read back from the runs' ``metrics.jsonl`` and exports, so a report can be written again at any
time from a compare folder, and says nothing a run did not record.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gankit.compare._costs import Measured
from gankit.compare._plan import Job, Plan
from gankit.compare._statistics import compare_arm, summarize
from gankit.evaluation import METRICS
from gankit.files import atomic_write_bytes, read_metrics_log
from gankit.run import RunFolder
from gankit.version import __version__

LABELS = {
    "frechet_distance": ("FD", "{:.1f}"),
    "kid": ("KID", "{:.2f}"),
    "precision": ("precision", "{:.3f}"),
    "recall": ("recall", "{:.3f}"),
    "mnist_score": ("MNIST score", "{:.2f}"),
    "class_score": ("class score", "{:.2f}"),
    "modes_covered": ("digits", "{:.1f}"),
    "mode_kl": ("mode KL", "{:.3f}"),
    "class_accuracy": ("class accuracy", "{:.3f}"),
}
"""The metrics a compare reports (those of ``gankit.evaluation.METRICS`` with a better direction), as shown. Coverage
is of digits with MNIST's classifier and of classes with another dataset's (``class_score``): see ``_label``."""

PLOTTED = ("frechet_distance", "mnist_score", "class_score")
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
PLOT = "scores.png"


def collect(plan: Plan, jobs: Sequence[Job], measured: Measured) -> dict[str, Any]:
    """Everything the report says, as data (what ``results.json`` holds)."""
    seconds = measured.seconds_per_step()
    runs: list[dict[str, Any]] = []
    for job in jobs:
        rows = read_metrics_log(RunFolder(job.run_dir).metrics_path)
        points = [
            {
                "step": row["step"],
                "minutes": row["step"] * seconds[job.arm] / 60,
                **{key[5:]: value for key, value in row.items() if key.startswith("eval/")},
            }
            for row in rows
            if "eval/frechet_distance" in row and row["step"] <= job.total_steps
        ]
        wall = max((row.get("elapsed_s", 0.0) for row in rows), default=0.0)
        runs.append({"arm": job.arm, "seed": job.seed, "steps": job.total_steps, "wall_s": wall, "points": points})
    metrics = [name for name in LABELS if all(run["points"] and name in run["points"][-1] for run in runs)]
    first = plan.baseline
    summary: dict[str, Any] = {}
    differences: dict[str, Any] = {}
    for arm in plan.names:
        finals = [run["points"][-1] for run in runs if run["arm"] == arm]
        per_epoch = seconds[arm] * plan.steps_per_epoch(arm)
        ratio = measured.costs[arm].ratio_to_first * plan.steps_per_epoch(arm) / plan.steps_per_epoch(first)
        summary[arm] = {
            "steps": plan.total_steps(arm, seconds[arm]),
            "seeds": [run["seed"] for run in runs if run["arm"] == arm],
            "time_per_epoch_s": per_epoch,
            "time_per_epoch_ratio": ratio,
            **{name: vars(summarize([point[name] for point in finals])) for name in metrics},
        }
    base_finals = [run["points"][-1] for run in runs if run["arm"] == first]
    for arm in plan.names[1:]:
        finals = [run["points"][-1] for run in runs if run["arm"] == arm]
        differences[arm] = {
            name: vars(
                compare_arm(
                    [point[name] for point in finals],
                    [point[name] for point in base_finals],
                    direction=METRICS[name][0],  # type: ignore[arg-type]
                )
            )
            for name in metrics
            if METRICS[name][0] in ("lower", "higher")
        }
    return {
        "gankit_version": __version__,
        "baseline": first,
        "arms": {
            arm.name: dict(plan.configs[arm.name].model_dump(mode="json", exclude_unset=True)) for arm in plan.arms
        },
        "seeds": list(plan.seeds),
        "budget": plan.budget.describe(),
        "evals_per_epoch": plan.evals,
        "eval_samples": plan.configs[first].eval_samples,
        "dataset": plan.configs[first].dataset,
        "costs": {
            "threads": measured.threads,
            "device": measured.device,
            **{name: cost.as_json() for name, cost in measured.costs.items()},
        },
        "metrics": metrics,
        "summary": summary,
        "differences": differences,
        "runs": runs,
    }


def _cell(summary: dict[str, Any], fmt: str) -> str:
    mean, sd = summary["mean"], summary["sd"]
    return fmt.format(mean) if math.isnan(sd) else f"{fmt.format(mean)} ± {fmt.format(sd)}"


def _signed(value: float, fmt: str) -> str:
    return ("+" if value >= 0 else "") + fmt.format(value)


def _label(name: str, metrics: Sequence[str]) -> str:
    """How the report names a metric: coverage counts classes, not digits, when the dataset is not MNIST."""
    if name == "modes_covered" and "class_score" in metrics:
        return "classes covered"
    return LABELS[name][0]


def _heading(name: str, metrics: Sequence[str]) -> str:
    label = _label(name, metrics)
    arrow = {"lower": " ↓", "higher": " ↑"}.get(METRICS[name][0], "")
    return f"{label}{arrow}"


def tables(results: dict[str, Any]) -> str:
    """The two tables in markdown: mean ± sd per arm at the end of the budget, and each arm against the first."""
    metrics, first = results["metrics"], results["baseline"]
    head = " | ".join(_heading(name, metrics) for name in metrics)
    lines = [
        f"| arm | steps | {head} | time per epoch | vs {first} |",
        "|" + "---|" * (len(metrics) + 4),
    ]
    for arm, summary in results["summary"].items():
        cells = " | ".join(_cell(summary[name], LABELS[name][1]) for name in metrics)
        per_epoch = summary["time_per_epoch_s"]
        lines.append(
            f"| {arm} | {summary['steps']} | {cells} | {per_epoch:.1f} s | {summary['time_per_epoch_ratio']:.2f}x |"
        )
    diffs = ["| arm | metric | difference | 95% interval | verdict |", "|---|---|---|---|---|"]
    for arm, by_metric in results["differences"].items():
        for name, diff in by_metric.items():
            fmt = LABELS[name][1]
            interval = (
                "-" if math.isnan(diff["low"]) else f"[{_signed(diff['low'], fmt)}, {_signed(diff['high'], fmt)}]"
            )
            difference = _signed(diff["difference"], fmt)
            diffs.append(f"| {arm} | {_heading(name, metrics)} | {difference} | {interval} | {diff['verdict']} |")
    return "\n".join(lines) + f"\n\nEach arm against {first} (Welch t interval):\n\n" + "\n".join(diffs) + "\n"


def markdown(results: dict[str, Any]) -> str:
    """``results.md``: what was compared and how, the tables, the plot and the samples."""
    names = list(results["summary"])
    arms = results["arms"]
    shared = {
        key: value for key, value in arms[names[0]].items() if all(key in v and v[key] == value for v in arms.values())
    }
    settings = "\n".join(
        f"| {arm} | {_settings({k: v for k, v in values.items() if k not in shared}) or 'only the shared ones'} |"
        for arm, values in arms.items()
    )
    costs = results["costs"]
    seeds = ", ".join(str(seed) for seed in results["seeds"])
    grids = " | ".join(f"![{arm}](samples/{arm}.png)" for arm in names)
    return f"""# Compare: {" vs ".join(names)}

Every arm trained for {results["budget"]} with seeds {seeds}, on dataset `{results["dataset"]}`, and was scored
{_times(results["evals_per_epoch"])} per epoch and at the end by gankit's evaluation ({results["eval_samples"]:,}
samples against the MNIST test images). Scores are at the end of the budget: mean ± standard deviation over the
seeds. Time per epoch is the measured cost of a step (interleaved blocks in one process, median of rounds;
{costs["threads"]} thread(s), {costs["device"]}) times the steps in an epoch. gankit {results["gankit_version"]}.

Settings of every arm: {_settings(shared) or "gankit train's defaults"}.

| arm | its own settings |
|---|---|
{settings}

{tables(results)}
A difference is established when its 95% interval excludes 0; with few seeds the intervals are wide, and a verdict
of "not established" says that more seeds are needed, not that the arms are equal.

![FD and MNIST score against steps and compute, one line per arm, the band spanning the seeds]({PLOT})

| {" | ".join(names)} |
|{"---|" * len(names)}
| {grids} |

Samples: 64 images from each arm's first seed (seed {results["seeds"][0]}), noise seed 0.
"""


def _times(count: int) -> str:
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


def _settings(values: dict[str, Any]) -> str:
    return ", ".join(f"`{key}={json.dumps(value)}`" for key, value in values.items())


def plot_scores(results: dict[str, Any], path: Path) -> None:
    """FD and MNIST score against steps and against compute minutes: a line per arm (the mean over seeds at each
    evaluation point), a band from the lowest to the highest seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plotted = [name for name in PLOTTED if name in results["metrics"]]
    if not plotted:
        return
    unit = "GPU" if "cuda" in results["costs"]["device"] else "CPU"
    figure, axes = plt.subplots(
        len(plotted), 2, figsize=(10, 3.4 * len(plotted)), constrained_layout=True, squeeze=False
    )
    for row, name in enumerate(plotted):
        for column, x_key in enumerate(("step", "minutes")):
            axis = axes[row][column]
            for arm in results["summary"]:
                runs = [run for run in results["runs"] if run["arm"] == arm]
                steps = sorted({point["step"] for run in runs for point in run["points"]})
                xs, means, lows, highs = [], [], [], []
                for step in steps:
                    values = [p for run in runs for p in run["points"] if p["step"] == step]
                    xs.append(values[0][x_key])
                    scores = [p[name] for p in values]
                    means.append(sum(scores) / len(scores))
                    lows.append(min(scores))
                    highs.append(max(scores))
                (line,) = axis.plot(xs, means, marker="o", markersize=3, label=arm)
                axis.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
            label = (
                _label(name, results["metrics"])
                + {"lower": " (lower is better)", "higher": " (higher is better)"}[METRICS[name][0]]
            )
            axis.set(xlabel="step" if x_key == "step" else f"{unit} minutes (measured cost per step)", ylabel=label)
            axis.grid(alpha=0.3)
            axis.legend()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def save_grids(plan: Plan, jobs: Sequence[Job], folder: Path) -> None:
    """``samples/<arm>.png``: 64 samples of each arm's first-seed export, the same noise (seed 0) for every arm."""
    from gankit.export import load_generator
    from gankit.pictures import sample_images, save_image_grid

    folder.mkdir(parents=True, exist_ok=True)
    for arm in plan.names:
        job = next(job for job in jobs if job.arm == arm)
        generator = load_generator(RunFolder(job.run_dir).export_path)
        save_image_grid(sample_images(generator, 64, seed=0), folder / f"{arm}.png")


def write_report(plan: Plan, jobs: Sequence[Job], measured: Measured) -> dict[str, Any]:
    """Write ``results.json``, ``results.md``, the plot and the grids into the compare folder; return the results."""
    results = collect(plan, jobs, measured)
    atomic_write_bytes(plan.out / RESULTS_JSON, (json.dumps(results, indent=1) + "\n").encode())
    plot_scores(results, plan.out / PLOT)
    save_grids(plan, jobs, plan.out / "samples")
    atomic_write_bytes(plan.out / RESULTS_MD, markdown(results).encode())
    return results
