"""``gankit eval``: score a generator against a real dataset's test images (MNIST); a table and a JSON file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gankit.cli.common import already_exists, output_options, refuse_to_overwrite


def default_output(source: Path) -> Path:
    """``eval.json`` in a run folder, ``<stem>.eval.json`` beside a file."""
    return source / "eval.json" if source.is_dir() else source.with_name(f"{source.stem}.eval.json")


def _shown(value: float | None) -> str:
    """Four significant digits; whole numbers (counts) as they are."""
    if value is None:
        return "-"
    if value.is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


@click.command("eval")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--n", "count", type=click.IntRange(10, 100_000), default=10_000, show_default=True, help="Samples.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the latents and subsets.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=500, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@output_options("JSON file to write [default: eval.json in a run folder, <name>.eval.json beside a file]")
@click.option("--reference", is_flag=True, help="Also score real training images: the floor of each metric.")
@click.option(
    "--reference-dataset",
    "dataset",
    metavar="NAME",
    default="mnist",
    show_default=True,
    help="Dataset plugin whose test images the samples are compared with.",
)
@click.option("--force", is_flag=True, help="Score a generator even when it does not fit the reference dataset.")
def command(
    source: Path,
    count: int,
    seed: int,
    batch_size: int,
    device: str,
    out: Path | None,
    overwrite: bool,
    reference: bool,
    dataset: str,
    force: bool,
) -> None:
    """Score SOURCE (a generator export, a run folder or its checkpoint) against a dataset's test images.

    Frechet distance, KID, precision/recall, MNIST score and mode coverage, all on the features of gankit's
    shipped digit classifier, so the reference is MNIST unless --reference-dataset names another 1-channel
    dataset. A generator whose channels, or recorded training dataset, do not fit the reference is refused
    unless --force. The same seed gives the same numbers.
    """
    import json
    import time

    from rich.console import Console
    from rich.table import Table

    import gankit
    from gankit.errors import ConfigError
    from gankit.evaluation import METRICS, check_reference_fits, evaluate_generator, reference_metrics
    from gankit.files import atomic_write_bytes
    from gankit.generator_source import load_any_generator, recorded_dataset
    from gankit.registry import check_generator, registry
    from gankit.run import resolve_device

    registry.entry("dataset", dataset)  # an unknown reference is named first, with its "did you mean"
    out = out or default_output(source)
    refuse_to_overwrite(out, overwrite=overwrite)
    resolved = resolve_device(device)  # type: ignore[arg-type]
    generator = load_any_generator(source, device=str(resolved))
    check_generator(generator, registry.who_built("generator", generator))
    if not force:
        trained_on = recorded_dataset(source)
        check_reference_fits(
            generator, dataset=dataset, recorded_dataset=trained_on, device=resolved, batch_size=batch_size
        )
    started = time.perf_counter()
    scores = evaluate_generator(generator, n=count, seed=seed, batch_size=batch_size, device=resolved, dataset=dataset)
    seconds = time.perf_counter() - started
    floor = (
        reference_metrics(n=count, seed=seed, batch_size=batch_size, device=resolved, dataset=dataset)
        if reference
        else None
    )

    report: dict[str, Any] = {
        "source": str(source),
        "n": count,
        "seed": seed,
        "device": str(resolved),
        "reference_dataset": dataset,
        "metrics": scores,
        "seconds": round(seconds, 3),
        "gankit_version": gankit.__version__,
    }
    if floor is not None:
        report["reference"] = floor
    try:
        atomic_write_bytes(out, (json.dumps(report, indent=2) + "\n").encode(), overwrite=overwrite)
    except FileExistsError:
        raise already_exists(out) from None
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}; choose another --out") from None

    table = Table(title=f"gankit eval: {source} (n={count}, seed={seed})")
    table.add_column("metric")
    table.add_column("samples", justify="right")
    if floor is not None:
        table.add_column("real data", justify="right")
    table.add_column("better")
    table.add_column("what it measures", overflow="fold")
    for name, (better, description) in METRICS.items():
        if name not in scores and (floor is None or name not in floor):
            continue
        row = [name, _shown(scores.get(name))]
        if floor is not None:
            row.append(_shown(floor.get(name)))
        table.add_row(*row, better, description)
    console = Console(width=160)
    console.print(table)
    console.print(f"scored {count} samples in {seconds:.1f} s; wrote {out}")
