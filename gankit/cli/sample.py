"""``gankit sample``: a PNG grid from an export, a run folder or a run's checkpoint."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("sample")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--n", "count", type=click.IntRange(1, 100_000), default=64, show_default=True, help="Images to draw.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the latent batch.")
@click.option("--label", type=click.IntRange(0), default=None, help="Class to draw (conditional generators only).")
@click.option("--nrow", type=click.IntRange(1), default=None, help="Images per grid row [default: square grid].")
@click.option("--out", type=click.Path(path_type=Path), default=Path("samples.png"), show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
def command(
    source: Path, count: int, seed: int, label: int | None, nrow: int | None, out: Path, overwrite: bool, device: str
) -> None:
    """Draw a grid of samples from SOURCE: a generator export, a run folder or its checkpoint."""
    import torch

    from gankit.errors import ConfigError
    from gankit.export import sample_images, save_image_grid
    from gankit.precision import resolve_device
    from gankit.run_folder import load_any_generator

    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; pass --overwrite or choose another --out")
    generator = load_any_generator(source, device=str(resolve_device(device)))  # type: ignore[arg-type]
    labels = None
    if label is not None:
        if generator.num_classes == 0:
            raise ConfigError("--label needs a conditional generator, and this one has num_classes=0")
        if label >= generator.num_classes:
            raise ConfigError(
                f"--label {label} is out of range: this generator knows labels 0..{generator.num_classes - 1}"
            )
        labels = torch.full((count,), label, dtype=torch.long)
    images = sample_images(generator, count, seed=seed, labels=labels)
    save_image_grid(images, out, nrow=nrow)
    click.echo(f"wrote {count} samples to {out}")
