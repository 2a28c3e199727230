"""``gankit export``: turn a run folder's checkpoint into a standalone generator file."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Destination [default: RUN_DIR/generator.safetensors]."
)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def command(run_dir: Path, out: Path | None, overwrite: bool) -> None:
    """Export the generator of RUN_DIR's latest checkpoint as a safetensors file with metadata."""
    from gankit.errors import ConfigError
    from gankit.export import save_generator
    from gankit.run_folder import RunFolder

    run = RunFolder(run_dir)
    destination = out or run.export_path
    if destination.exists() and not overwrite:
        raise ConfigError(f"{destination} already exists; pass --overwrite or choose another --out")
    generator, plugin = run.generator_from_checkpoint()
    save_generator(generator, destination, plugin_name=plugin, overwrite=overwrite)
    click.echo(f"exported {plugin} generator to {destination}")
