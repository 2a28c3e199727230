"""``gankit eval``: score a generator against a real dataset's test images; a table and a JSON file.

The reference is the dataset the generator was trained on, with its options, as its run folder (or export) records
it; MNIST when nothing is recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from gankit.cli.common import already_exists, output_options, refuse_to_overwrite

SETTINGS = ("n", "seed", "reference_dataset", "dataset_options", "features", "generator_sha256")
"""What must match for a report already on disk to be completed rather than refused (``--reference`` after a
plain ``gankit eval``): the same samples of the same generator against the same reference."""


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
    default=None,
    help="Dataset plugin whose test images the samples are compared with [default: the one the run recorded, "
    "else mnist].",
)
@click.option(
    "--data-opt",
    "data_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set an option of the reference dataset, over those the run recorded (repeatable).",
)
@click.option(
    "--features",
    metavar="NAME",
    default="classifier",
    show_default=True,
    help="Feature extractor: classifier (the dataset's own) or inception (standard FID; pip install torch-fidelity).",
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
    dataset: str | None,
    data_options: tuple[str, ...],
    features: str,
    force: bool,
) -> None:
    """Score SOURCE (a generator export, a run folder or its checkpoint) against a dataset's test images.

    Frechet distance, KID, precision/recall, the class score and class coverage, on the features of a classifier of
    the reference dataset: gankit's shipped digit classifier for MNIST, one trained once on the dataset's own
    training images for any other labelled dataset (a folder's held-out images are its test split). The reference
    is the dataset the run recorded, with its options, unless --reference-dataset names another. A generator whose
    channels, or recorded training dataset, do not fit the reference is refused unless --force. The same seed gives
    the same numbers. Scores of a run folder's export also go into its model card.
    """
    import time

    import gankit
    from gankit.errors import ConfigError
    from gankit.evaluation import (
        check_reference_fits,
        evaluate_generator,
        feature_extractor,
        feature_names,
        reference_metrics,
    )
    from gankit.generator_source import load_any_generator
    from gankit.registry import check_generator, registry
    from gankit.run import resolve_device

    if features not in feature_names():
        raise ConfigError(f"unknown feature extractor '{features}'; choose one of {', '.join(feature_names())}")
    dataset, options, trained_on = _reference(source, dataset, data_options)
    out = out or default_output(source)
    earlier = _earlier_report(out, overwrite=overwrite)
    resolved = resolve_device(device)  # type: ignore[arg-type]
    generator = load_any_generator(source, device=str(resolved))
    check_generator(generator, registry.who_built("generator", generator))
    settings = {
        "n": count,
        "seed": seed,
        "reference_dataset": dataset,
        "dataset_options": options,
        "features": features,
        "generator_sha256": _weights_digest(generator),
    }
    _refuse_other_settings(out, earlier, settings)
    scoring: dict[str, Any] = {
        "batch_size": batch_size,
        "device": resolved,
        "dataset": dataset,
        "dataset_options": options,
        "features": features,
    }
    if not force:
        check_reference_fits(generator, recorded_dataset=trained_on, **scoring)
    extractor = feature_extractor(**scoring)
    started = time.perf_counter()
    if earlier is not None and isinstance(earlier.get("metrics"), dict):
        scores, seconds = earlier["metrics"], float(earlier.get("seconds", 0.0))
    else:
        scores = evaluate_generator(generator, n=count, seed=seed, **scoring)
        seconds = time.perf_counter() - started
    floor = earlier.get("reference") if earlier is not None else None
    if reference and floor is None:
        floor = reference_metrics(n=count, seed=seed, **scoring)

    report: dict[str, Any] = {
        "source": str(source),
        **settings,
        "device": str(resolved),
        "extractor": {"name": extractor.name, **extractor.notes},
        "metrics": scores,
        "seconds": round(seconds, 3),
        "gankit_version": gankit.__version__,
    }
    if floor is not None:
        report["reference"] = floor
    _write_report(out, report, overwrite=overwrite or bool(earlier))
    carded = _record_in_card(source, scores)

    title = f"gankit eval: {source} against {dataset} (n={count}, seed={seed}, {extractor.name})"
    console = _print_scores(title, scores, floor)
    if extractor.num_classes == 0:
        console.print("no class score or coverage: this feature extractor does not classify")
    kept = "kept the samples' scores already in" if earlier is not None and "metrics" in earlier else "wrote"
    console.print(f"scored {count} samples in {seconds:.1f} s; {kept} {out}" + (f"; {carded}" if carded else ""))


def _reference(
    source: Path, dataset: str | None, data_options: tuple[str, ...]
) -> tuple[str, dict[str, Any], str | None]:
    """The reference dataset, its options and the dataset the run recorded: the run's own with its recorded options
    unless told otherwise; bad options are one line now, not after the samples."""
    from gankit.errors import ConfigError
    from gankit.evaluation import REFERENCE_DATASET
    from gankit.generator_source import recorded_dataset
    from gankit.registry import registry, split_name
    from gankit.run import parse_key_values

    trained_on = recorded_dataset(source)
    recorded_options = _recorded_options(source)
    if dataset is None:
        dataset = trained_on or REFERENCE_DATASET
    registry.entry("dataset", dataset)  # an unknown reference is named first, with its "did you mean"
    same_data = trained_on is not None and split_name(trained_on)[1] == split_name(dataset)[1]
    options = {**(recorded_options if same_data else {}), **parse_key_values(data_options, flag="--data-opt")}
    try:
        registry.options_for("dataset", dataset, options)
    except ConfigError as exc:
        where = "" if recorded_options else "; an export records its dataset's name but not its options"
        raise ConfigError(f"{exc}{where}: give them with --data-opt KEY=VALUE") from None
    return dataset, options, trained_on


def _refuse_other_settings(out: Path, earlier: dict[str, Any] | None, settings: dict[str, Any]) -> None:
    """A report on disk is completed only when it scored the same samples of the same generator."""
    from gankit.errors import ConfigError

    if earlier is None:
        return
    differ = next((key for key, value in settings.items() if earlier.get(key) != value), None)
    if differ is not None:
        raise ConfigError(
            f"{out} already holds scores of other settings ({differ} was {_short(earlier.get(differ))}, now "
            f"{_short(settings[differ])}); pass --overwrite or choose another --out"
        )


def _write_report(out: Path, report: dict[str, Any], *, overwrite: bool) -> None:
    from gankit.errors import ConfigError
    from gankit.files import atomic_write_bytes

    try:
        atomic_write_bytes(out, (json.dumps(report, indent=2) + "\n").encode(), overwrite=overwrite)
    except FileExistsError:
        raise already_exists(out) from None
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}; choose another --out") from None


def _print_scores(title: str, scores: dict[str, float], floor: dict[str, float] | None) -> Any:
    """The table of every metric scored, with real data's floor beside it when there is one; returns the console."""
    from rich.console import Console
    from rich.table import Table

    from gankit.evaluation import METRICS

    table = Table(title=title)
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
    return console


def _recorded_options(source: Path) -> dict[str, Any]:
    """The dataset options the run of ``source`` recorded in its ``config.json``; none for an export file."""
    from gankit.errors import ConfigError
    from gankit.run import RunFolder

    folder = source if source.is_dir() else source.parent
    if folder.name == "checkpoints" and not source.is_dir():  # an older checkpoint of a run: RUN/checkpoints/
        folder = folder.parent
    if not (folder / "config.json").is_file():
        return {}
    try:
        options = RunFolder(folder).read_config().get("dataset_options")
    except ConfigError:
        return {}
    return dict(options) if isinstance(options, dict) else {}


def _earlier_report(out: Path, *, overwrite: bool) -> dict[str, Any] | None:
    """The report already at ``out`` when it is one of gankit eval's that this command may complete; refused as
    before when it is anything else."""
    if overwrite or not out.exists():
        return None
    try:
        found = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        found = None
    if not isinstance(found, dict) or "generator_sha256" not in found or "metrics" not in found:
        refuse_to_overwrite(out, overwrite=False)
        return None
    return found


def _weights_digest(generator: Any) -> str:
    """The SHA-256 of the generator's weights: the same generator, whatever file it was loaded from."""
    import hashlib

    from gankit.files import digest_tensors

    return str(digest_tensors(hashlib.sha256(), generator.state_dict()).hexdigest())


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _record_in_card(source: Path, scores: dict[str, float]) -> str:
    """Scores of a run folder's export go into its model card; what was updated, or '' when nothing was."""
    from gankit.run import RunFolder, record_scores

    run = RunFolder(source) if source.is_dir() else None
    if run is None and source.name == "generator.safetensors" and (source.parent / "config.json").is_file():
        run = RunFolder(source.parent)
    if run is None or not record_scores(run, scores):
        return ""
    return f"the model card of {run.export_path} holds them as its last_scores"
