"""``gankit info EXPORT``: an export's metadata and model card as tables, for ``.safetensors``, ``.onnx`` or a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from gankit.export import ExportMetadata

SUFFIXES = (".safetensors", ".onnx")

SHOWN_CHARS = 500
"""The most characters of one value shown in a table cell."""


def show_export(source: Path, console: Console) -> None:
    """Print what ``source`` (an export file, an ONNX model or a run folder) says about itself."""
    from gankit.errors import ConfigError
    from gankit.run import RunFolder, read_run_card

    if source.is_dir():
        run = RunFolder(source)
        if run.export_path.is_file():
            source = run.export_path
        else:
            card = read_run_card(run)
            if card is None:
                raise ConfigError(f"{source} holds no {run.export_path.name} and no model card; is it a run folder?")
            console.print(f"[bold]{_cell(source)}[/bold]: a run folder without an export yet (gankit export RUN_DIR)")
            _print_card(console, card)
            return
    if not source.exists():
        raise ConfigError(f"{source} does not exist")
    if source.suffix not in SUFFIXES:
        raise ConfigError(f"{source} is not an export: expected a .safetensors or .onnx file, or a run folder")
    meta = _read(source)
    kind = "ONNX model" if source.suffix == ".onnx" else "gankit export"
    console.print(f"[bold]{_cell(source)}[/bold]: {kind}, format version {meta.format_version}")
    _print_metadata(console, meta)
    if meta.model_card is None:
        console.print("model card: none (the file was written before gankit recorded one)")
    else:
        _print_card(console, meta.model_card)
    _print_verdict(source, console)


def _print_verdict(source: Path, console: Console) -> None:
    """The verdict ``gankit sample`` would give, from the same checks: the weights loaded (their content hash
    included), and one tiny batch drawn. A refusal is raised, so it is the command's one error line and exit code 2
    after the tables; an ONNX model was checked against its graph when its metadata was read."""
    if source.suffix == ".onnx":
        console.print("verdict: its graph's inputs and output agree with its metadata")
        return
    from gankit.export import load_generator
    from gankit.generator_source import sampling_verdict

    warning = sampling_verdict(load_generator(source), source)
    if warning is None:
        console.print("verdict: gankit sample draws it (weights, content hash and one test batch checked)")
    else:
        console.print(f"verdict: gankit sample draws it with a warning: {_cell(warning)}")


def _read(path: Path) -> ExportMetadata:
    if path.suffix == ".onnx":
        from gankit.export import read_onnx_export_metadata

        return read_onnx_export_metadata(path)
    from gankit.export import read_export_metadata

    return read_export_metadata(path)


def _print_metadata(console: Console, meta: ExportMetadata) -> None:
    rows: list[tuple[str, Any]] = [
        ("plugin", meta.plugin),
        ("distribution", f"{meta.distribution} {meta.distribution_version}"),
        ("plugin_options", meta.plugin_options),
        ("latent_dim", meta.latent_dim),
        ("latent_distribution", meta.latent_distribution),
        ("image_shape", list(meta.image_shape)),
        ("num_classes", meta.num_classes),
        ("output_range", list(meta.output_range)),
        ("plugin_api_version", meta.plugin_api_version),
        ("gankit_version", meta.gankit_version),
        *sorted(meta.extra.items()),
    ]
    _print_table(console, "export metadata", rows)


def _print_card(console: Console, card: dict[str, Any]) -> None:
    rows: list[tuple[str, Any]] = []
    for key, value in card.items():
        if key == "user" and isinstance(value, dict):
            rows.extend((f"user.{field}", text) for field, text in value.items())
        elif key in ("last_scores", "best_scores") and isinstance(value, dict):
            rows.append((key, ", ".join(f"{name} {_number(score)}" for name, score in value.items())))
        elif key == "class_names" and isinstance(value, list):
            rows.append((key, ", ".join(str(name) for name in value)))
        else:
            rows.append((key, value))
    _print_table(console, "model card", rows)


def _print_table(console: Console, title: str, rows: list[tuple[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("key", overflow="fold")
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(_cell(key), _cell(value))
    console.print(table)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _cell(value: Any) -> str:
    """A value from a file as safe table text: strings as they are, null as '-', the rest as JSON."""
    from rich.markup import escape

    from gankit.files import printable

    if value is None:
        text = "-"
    elif isinstance(value, str | Path):
        text = str(value)
    else:
        text = json.dumps(value)
    return escape(printable(text, limit=SHOWN_CHARS))
