"""``gankit export``: turn a run folder's checkpoint into a standalone generator file, safetensors or ONNX."""

from __future__ import annotations

from pathlib import Path

import click

from gankit.cli.common import refuse_to_overwrite


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
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Destination [default: RUN_DIR/generator.safetensors or .onnx; for an export, SOURCE with .onnx].",
)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def command(source: Path, file_format: str, out: Path | None, overwrite: bool) -> None:
    """Export the generator of SOURCE, a run folder (its latest checkpoint), as a safetensors file with metadata;
    with --format onnx, SOURCE may also be an export file, converted to ONNX with the same metadata."""
    from gankit.errors import ConfigError
    from gankit.export import save_generator
    from gankit.generator_source import generator_from_checkpoint
    from gankit.run_folder import RunFolder

    if file_format == "onnx":
        _export_onnx(source, out, overwrite=overwrite)
        return
    if source.is_file():
        raise ConfigError(f"{source} is not a gankit run folder but a file; to convert an export, pass --format onnx")
    run = RunFolder(source)
    destination = out or run.export_path
    refuse_to_overwrite(destination, overwrite=overwrite)
    generator, plugin = generator_from_checkpoint(run)
    save_generator(generator, destination, plugin_name=plugin, overwrite=overwrite)
    click.echo(f"exported {plugin} generator to {destination}")


def _export_onnx(source: Path, out: Path | None, *, overwrite: bool) -> None:
    """A run folder's latest checkpoint, or an export file, as an ONNX model carrying the export's metadata."""
    from gankit.errors import ExportError
    from gankit.export import load_generator
    from gankit.generator_source import generator_from_checkpoint
    from gankit.onnx_export import export_metadata, export_onnx
    from gankit.run_folder import RunFolder
    from gankit.tensorfile import read_safetensors_header

    if source.is_dir():
        run = RunFolder(source)
        destination = out or run.export_path.with_suffix(".onnx")
        refuse_to_overwrite(destination, overwrite=overwrite)
        generator, plugin = generator_from_checkpoint(run)
        metadata = export_metadata(generator, plugin_name=plugin)
    else:
        destination = out or source.with_suffix(".onnx")
        refuse_to_overwrite(destination, overwrite=overwrite)
        generator = load_generator(source)
        metadata = read_safetensors_header(source, error=ExportError).metadata
    export_onnx(generator, destination, metadata=metadata, overwrite=overwrite)
    click.echo(f"exported {metadata['plugin']} generator to {destination} (ONNX)")
