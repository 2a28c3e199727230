"""gankit against the seeds' pipeline and a raw loop, measured in one process, printed as a table of ratios.

    python benchmarks/compare.py                     # the figures of docs/performance.md
    python benchmarks/compare.py --quick             # the same code at tiny sizes: a smoke run
    python benchmarks/compare.py --only data --json data.json

Candidates of one comparison run in turn (A B A B ... for ``--rounds`` rounds) after ``--warmup`` untimed rounds,
so a change in the machine's load hits all of them alike. Each figure is the median over rounds of images per
second; each ratio is the median of the per-round ratios (A and B from the same round). ``torch`` keeps its
default number of threads. The workloads are those of the pytest-benchmark suite (``benchmarks/workloads.py``).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import workloads as w

SECTIONS = ("data", "step", "sampling")

COMPARED = (("dcgan", 28), ("mlp", 28), ("dcgan", 64))
"""The models of sections 2 to 4: the issue's DCGAN-28 and MLP, and DCGAN-64."""

TARGETS = {
    "data-64-0": 10.0,
    "step-dcgan-28": 1.15,
    "step-mlp-28": 1.4,
    "overhead": 0.97,
}
"""The targets of issue 7: data pipeline at 64x64, training throughput vs the seeds' loop, framework overhead."""


@dataclass
class Candidate:
    """One thing to time: ``run`` does one unit of work and returns how many images it processed."""

    name: str
    run: Callable[[], int]


@dataclass
class Row:
    """One line of a table: A against B, with every round kept for the JSON output."""

    label: str
    a: str
    b: str
    a_rounds: list[float]
    b_rounds: list[float]
    target: float | None = None
    a_images_per_sec: float = field(init=False)
    b_images_per_sec: float = field(init=False)
    ratio: float = field(init=False)
    ratio_rounds: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.a_images_per_sec = statistics.median(self.a_rounds)
        self.b_images_per_sec = statistics.median(self.b_rounds)
        self.ratio_rounds = [a / b for a, b in zip(self.a_rounds, self.b_rounds, strict=True)]
        self.ratio = statistics.median(self.ratio_rounds)

    @property
    def meets(self) -> bool | None:
        return None if self.target is None else self.ratio >= self.target


def interleave(candidates: list[Candidate], *, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Images per second of each candidate in each round, the candidates taking turns within a round."""
    for _ in range(warmup):
        for candidate in candidates:
            candidate.run()
    rates: dict[str, list[float]] = {candidate.name: [] for candidate in candidates}
    for _ in range(rounds):
        for candidate in candidates:
            gc.collect()
            started = time.perf_counter()
            images = candidate.run()
            rates[candidate.name].append(images / (time.perf_counter() - started))
    return rates


# -- the sections ----------------------------------------------------------------------------------------------------


def measure_data(args: argparse.Namespace, scale: w.Scale, mnist: Any, root: Path) -> list[Row]:
    device = torch.device(args.device)
    rows = []
    for size in w.SIZES:
        gankit = w.GankitData(
            mnist, image_size=size, batch_size=scale.batch_size, device=device, limit=scale.data_batches
        )
        candidates = [Candidate("gankit", gankit.run)]
        for workers in (0, 2):
            loader = w.seeds_loader(root, image_size=size, batch_size=scale.batch_size, workers=workers)
            candidates.append(Candidate(f"seeds-{workers}", w.SeedsData(loader, limit=scale.data_batches).run))
        progress(f"data {size}x{size}")
        rates = interleave(candidates, rounds=args.rounds, warmup=args.warmup)
        for workers in (0, 2):
            rows.append(
                Row(
                    f"{size}x{size}, DataLoader num_workers={workers}",
                    "gankit",
                    f"seeds-{workers}",
                    rates["gankit"],
                    rates[f"seeds-{workers}"],
                    TARGETS.get(f"data-{size}-{workers}"),
                )
            )
    return rows


def measure_steps(args: argparse.Namespace, scale: w.Scale, mnist: Any, root: Path) -> dict[str, list[Row]]:
    """Sections 2 to 4 from one interleaving per model: gankit, the raw loop, the seeds' loop, channels-last off."""
    throughput, overhead, channels_last = [], [], []
    for model, size in COMPARED:
        steps = args.steps or w.STEPS[model, size]
        label = f"{model.upper()}-{size}"
        config = w.train_config(model, size, scale, device=args.device)
        gankit = w.GankitLoop(config, mnist)
        raw = w.RawLoop(config, mnist)
        loader = w.seeds_loader(root, image_size=size, batch_size=scale.batch_size, workers=0)
        seeds = w.SeedsLoop(config, mnist, loader)
        candidates = [
            Candidate("gankit", partial(gankit.run, steps)),
            Candidate("raw", partial(raw.run, steps)),
            Candidate("seeds", partial(seeds.run, steps)),
        ]
        convolutional = gankit.memory_format == torch.channels_last
        if convolutional:
            off = w.GankitLoop(w.train_config(model, size, scale, channels_last="off", device=args.device), mnist)
            candidates.append(Candidate("gankit-cl-off", partial(off.run, steps)))
        progress(f"training steps {label} ({steps} steps per round)")
        rates = interleave(candidates, rounds=args.rounds, warmup=args.warmup)
        target = TARGETS.get(f"step-{model}-{size}")
        throughput.append(Row(label, "gankit", "seeds", rates["gankit"], rates["seeds"], target))
        overhead.append(Row(label, "gankit", "raw", rates["gankit"], rates["raw"], TARGETS["overhead"]))
        if convolutional:
            channels_last.append(Row(label, "gankit", "gankit-cl-off", rates["gankit"], rates["gankit-cl-off"]))
    return {"throughput": throughput, "overhead": overhead, "channels_last": channels_last}


def measure_sampling(args: argparse.Namespace, scale: w.Scale, folder: Path) -> list[dict[str, Any]]:
    results = []
    for model, size in (("dcgan", 28), ("mlp", 28), ("dcgan", 64)):
        path = w.write_export(folder / f"{model}-{size}.safetensors", model, size, scale)
        sampling = w.Sampling(path, count=scale.sample_count, device=args.device)
        progress(f"sampling {model}-{size}")
        rates = interleave([Candidate("sample", sampling.run)], rounds=args.rounds, warmup=args.warmup)
        loads = [sampling.load_seconds() for _ in range(args.rounds)]
        results.append(
            {
                "label": f"{model.upper()}-{size}",
                "images": scale.sample_count,
                "images_per_sec": statistics.median(rates["sample"]),
                "images_per_sec_rounds": rates["sample"],
                "load_ms": 1000 * statistics.median(loads),
                "load_ms_rounds": [1000 * seconds for seconds in loads],
                "file_kib": path.stat().st_size / 1024,
            }
        )
    return results


# -- printing --------------------------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"  measuring {message} ...", file=sys.stderr, flush=True)


def print_rows(title: str, a: str, b: str, rows: list[Row], *, quick: bool) -> None:
    print(f"\n{title}")
    header = f"  {'':<34}{a + ' img/s':>16}{b + ' img/s':>16}{'ratio':>9}{'target':>9}  ok"
    print(header)
    print("  " + "-" * (len(header) - 2))
    for row in rows:
        target = "-" if row.target is None else f">={row.target:g}"
        meets = "-" if row.meets is None or quick else ("yes" if row.meets else "NO")
        print(
            f"  {row.label:<34}{row.a_images_per_sec:>16,.0f}{row.b_images_per_sec:>16,.0f}"
            f"{row.ratio:>8.2f}x{target:>9}  {meets}"
        )


def print_machine(info: dict[str, Any], args: argparse.Namespace) -> None:
    print("Machine")
    print(f"  cpu: {info['cpu']}")
    print(f"  cores: {info['logical_cores']} logical, {info['usable_cores']} usable by this process")
    print(f"  torch {info['torch']} (threads {info['torch_threads']}), torchvision {info['torchvision']}")
    print(f"  python {info['python']}, gpu: {info['gpu'] or 'none'}, device measured: {args.device}")
    if info["load_average"]:
        print("  load average at start (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in info["load_average"]))
    print(f"  rounds {args.rounds} after {args.warmup} warm-up; figures are medians over rounds")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, batches and rounds: a smoke run")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure (and round) here")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5, 1 with --quick)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds before timing (default 1)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per round (default: per model)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where gankit runs (default cpu)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a measured ratio misses its target")
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if only - set(SECTIONS):
        parser.error(f"--only: unknown section(s) {sorted(only - set(SECTIONS))}; choose from {SECTIONS}")
    scale = w.QUICK if args.quick else w.FULL
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.quick and args.steps is None:
        args.steps = 2

    info = w.machine()
    print_machine(info, args)
    print(f"  sizes: {'QUICK (smoke run; the targets do not apply)' if args.quick else 'FULL'} {asdict(scale)}")
    report: dict[str, Any] = {"machine": info, "settings": {**vars(args), "scale": asdict(scale)}}
    sections: dict[str, list[Row]] = {}
    with tempfile.TemporaryDirectory(prefix="gankit-bench-") as tmp:
        folder = Path(tmp)
        mnist = root = None
        if only & {"data", "step"}:
            mnist = w.load_mnist("train")
            root = w.write_torchvision_mnist(folder / "torchvision")
        if "data" in only:
            sections["data"] = measure_data(args, scale, mnist, root)
        if "step" in only:
            sections.update(measure_steps(args, scale, mnist, root))
        sampling = measure_sampling(args, scale, folder) if "sampling" in only else []

    quick = args.quick
    if "data" in sections:
        print_rows(
            "1. Data pipeline: gankit DeviceBatches vs torchvision MNIST + PIL transforms + DataLoader",
            "gankit",
            "seeds",
            sections["data"],
            quick=quick,
        )
    if "throughput" in sections:
        print_rows(
            "2. Training throughput: gankit train step vs the seeds' loop (BCELoss, .item() every step)",
            "gankit",
            "seeds",
            sections["throughput"],
            quick=quick,
        )
        print_rows(
            "3. Framework overhead: gankit Trainer.train_step vs a raw loop of the same math",
            "gankit",
            "raw",
            sections["overhead"],
            quick=quick,
        )
        print_rows("4. channels_last on vs off (gankit)", "on", "off", sections["channels_last"], quick=quick)
    if sampling:
        print("\n5. Sampling (gankit.pictures.sample_images) and export loading (gankit.load_generator)")
        print(f"  {'':<14}{'images':>8}{'img/s':>12}{'load ms':>10}{'file KiB':>10}")
        for result in sampling:
            print(
                f"  {result['label']:<14}{result['images']:>8}{result['images_per_sec']:>12,.0f}"
                f"{result['load_ms']:>10.1f}{result['file_kib']:>10.0f}"
            )

    report["sections"] = {
        name: [{**asdict(row), "meets": row.meets} for row in rows] for name, rows in sections.items()
    }
    report["sampling"] = sampling
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")
    missed = [row.label for rows in sections.values() for row in rows if row.meets is False]
    if args.check and missed and not quick:
        print(f"\nmissed targets: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
