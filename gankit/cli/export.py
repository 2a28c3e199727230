"""``gankit export``: turn a run folder's checkpoint into a standalone generator file, safetensors or ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from gankit.cli.common import output_options, refuse_to_overwrite
from gankit.files import printable

if TYPE_CHECKING:
    from gankit.export import ModelCard
    from gankit.interfaces import Generator
    from gankit.run import RunFolder


@click.command("export")
@click.argument("source", metavar="SOURCE", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["safetensors", "onnx"]),
    default="safetensors",
    show_default=True,
    help='The gankit export, or an ONNX model (needs pip install "gankit[onnx]").',
)
@output_options("Destination [default: RUN_DIR/generator.safetensors or .onnx; for an export, SOURCE with .onnx]")
@click.option(
    "--meta",
    "meta",
    multiple=True,
    metavar="KEY=VALUE",
    help="Add a field to the model card's user fields (repeatable; the value is kept as a string).",
)
def command(source: Path, file_format: str, out: Path | None, overwrite: bool, meta: tuple[str, ...]) -> None:
    """Export the generator of SOURCE, a run folder (its latest checkpoint), as a safetensors file with metadata and
    a model card; with --format onnx, SOURCE may also be an export file, converted to ONNX with the same metadata."""
    from gankit.errors import ConfigError
    from gankit.export import parse_user_fields, save_generator
    from gankit.run import RunFolder

    user = parse_user_fields(meta)
    if file_format == "onnx":
        _export_onnx(source, out, overwrite=overwrite, user=user)
        return
    if source.is_file():
        raise ConfigError(f"{source} is not a gankit run folder but a file; to convert an export, pass --format onnx")
    run = RunFolder(source)
    destination = out or run.export_path
    generator, plugin, card = _from_checkpoint(run, destination, overwrite=overwrite, user=user)
    save_generator(generator, destination, plugin_name=plugin, card=card, overwrite=overwrite)
    click.echo(f"exported {printable(plugin)} generator to {destination}")


def _export_onnx(source: Path, out: Path | None, *, overwrite: bool, user: dict[str, str]) -> None:
    """A run folder's latest checkpoint, or an export file, as an ONNX model carrying the export's metadata."""
    from gankit.errors import ExportError
    from gankit.export import carried_metadata, export_metadata, export_onnx, load_generator
    from gankit.files import read_safetensors_header
    from gankit.run import RunFolder

    if source.is_dir():
        run = RunFolder(source)
        destination = out or run.export_path.with_suffix(".onnx")
        generator, plugin, card = _from_checkpoint(run, destination, overwrite=overwrite, user=user)
        metadata = export_metadata(generator, plugin_name=plugin, card=card)
    else:
        destination = out or source.with_suffix(".onnx")
        refuse_to_overwrite(destination, overwrite=overwrite)
        generator = load_generator(source)
        refuse_nonfinite(generator, source)
        metadata = carried_metadata(read_safetensors_header(source, error=ExportError).metadata, generator, user=user)
    export_onnx(generator, destination, metadata=metadata, overwrite=overwrite)
    click.echo(f"exported {printable(metadata['plugin'])} generator to {destination} (ONNX)")


def _from_checkpoint(
    run: RunFolder, destination: Path, *, overwrite: bool, user: dict[str, str]
) -> tuple[Generator, str, ModelCard]:
    """The generator of ``run``'s latest checkpoint (its EMA for an ``--ema`` run), its plugin name and the card of
    an export of it, once ``destination`` may be written and the weights are finite."""
    from gankit.generator_source import generator_from_checkpoint
    from gankit.run import checkpoint_card

    refuse_to_overwrite(destination, overwrite=overwrite)
    generator, plugin, ema_weights = generator_from_checkpoint(run)
    refuse_nonfinite(generator, run.checkpoint_path)
    return generator, plugin, checkpoint_card(run, generator, ema_weights=ema_weights, user=user)


def refuse_nonfinite(generator: Generator, source: Path) -> None:
    """One line, before anything is written, when the weights hold NaN or infinity (a run that diverged), or when
    ``gankit sample`` would refuse what the generator draws (all NaN from finite weights): nothing is exported that
    sampling refuses or warns about."""
    from gankit.errors import ContractError, ExportError
    from gankit.generator_source import nonfinite_summary, nonfinite_tensors, sampling_verdict

    bad = nonfinite_tensors(generator)
    if bad:
        raise ExportError(
            f"{nonfinite_summary(source, bad)}, so it would only draw blank images; nothing was exported: export "
            "a checkpoint from before the run diverged"
        )
    try:
        sampling_verdict(generator, source)
    except ContractError as exc:
        raise ExportError(f"{source} cannot be sampled, so nothing was exported: {exc}") from None
