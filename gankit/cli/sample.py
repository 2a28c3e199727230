"""``gankit sample``: a PNG grid, or a latent walk, from an export, a run folder or a run's checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from gankit.cli.common import refuse_to_overwrite

if TYPE_CHECKING:
    from gankit.interfaces import Generator


@click.command("sample")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--n", "count", type=click.IntRange(1, 100_000), default=64, show_default=True, help="Images to draw.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Seed of the latent batch.")
@click.option("--label", type=click.IntRange(0), default=None, help="Class to draw (conditional generators only).")
@click.option("--nrow", type=click.IntRange(1), default=None, help="Images per grid row [default: square grid].")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="The picture to write [default: samples.png here; with --interpolate, beside SOURCE: walk.png in a run "
    "folder, <name>.walk.png beside a file].",
)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option(
    "--interpolate",
    metavar="K",
    type=click.IntRange(2, 1000),
    default=None,
    help="Walk through K random latents instead: a grid at --out and a GIF next to it.",
)
@click.option("--steps", type=click.IntRange(1, 1000), default=None, help="Frames per leg of the walk [default: 8].")
def command(
    source: Path,
    count: int,
    seed: int,
    label: int | None,
    nrow: int | None,
    out: Path | None,
    overwrite: bool,
    device: str,
    interpolate: int | None,
    steps: int | None,
) -> None:
    """Draw a grid of samples from SOURCE: a generator export, a run folder or its checkpoint.

    With --interpolate K, draw a latent walk instead: a loop through K random latents by spherical interpolation,
    as a grid (--out) and a GIF (--out with .gif); a conditional generator shows every frame under each label.
    """
    import torch

    from gankit.errors import ConfigError
    from gankit.generator_source import load_any_generator, sampling_verdict
    from gankit.pictures import sample_images, save_image_grid
    from gankit.run import resolve_device

    out = out or (walk_output(source) if interpolate is not None else Path("samples.png"))
    refuse_to_overwrite(out, overwrite=overwrite)
    if interpolate is not None:
        _check_walk_options(out, overwrite=overwrite)
    elif steps is not None:
        raise ConfigError("--steps needs --interpolate K")
    generator = load_any_generator(source, device=str(resolve_device(device)))  # type: ignore[arg-type]
    warning = sampling_verdict(generator, source)  # the plugin contract on one tiny batch; gankit info says the same
    if warning is not None:  # drawn anyway: the grid shows what the weights do, and the user may want to see it
        click.echo(f"warning: {warning}", err=True)
    labels = None
    if label is not None:
        if generator.num_classes == 0:
            raise ConfigError("--label needs a conditional generator, and this one has num_classes=0")
        if label >= generator.num_classes:
            raise ConfigError(
                f"--label {label} is out of range: this generator knows labels 0..{generator.num_classes - 1}"
            )
        labels = torch.full((count,), label, dtype=torch.long)
    if interpolate is not None:
        _write_walk(generator, interpolate, seed=seed, steps=steps or 8, label=label, nrow=nrow, out=out)
        return
    images = sample_images(generator, count, seed=seed, labels=labels)
    save_image_grid(images, out, nrow=nrow)
    click.echo(f"wrote {count} samples to {out}")


def walk_output(source: Path) -> Path:
    """Where a latent walk goes unless ``--out`` says: beside its source, as ``gankit eval`` writes its report
    (``walk.png`` in a run folder, whose ``samples.gif`` is the training's; ``<name>.walk.png`` beside a file)."""
    return source / "walk.png" if source.is_dir() else source.with_name(f"{source.stem}.walk.png")


def _check_walk_options(out: Path, *, overwrite: bool) -> None:
    """What --interpolate refuses before any work: --n, a .gif grid, and a GIF in the way."""
    from gankit.errors import ConfigError

    if click.get_current_context().get_parameter_source("count") is click.core.ParameterSource.COMMANDLINE:
        raise ConfigError("--n does not apply to --interpolate K: the walk draws K latents and --steps frames per leg")
    if out.suffix.lower() == ".gif":
        raise ConfigError(
            f"with --interpolate, --out names the grid, not a .gif: --out {out.stem}.png writes it and {out.stem}.gif"
        )
    refuse_to_overwrite(out.with_suffix(".gif"), overwrite=overwrite)


def _write_walk(
    generator: Generator, keypoints: int, *, seed: int, steps: int, label: int | None, nrow: int | None, out: Path
) -> None:
    from gankit.errors import ConfigError
    from gankit.pictures import save_walk, walk_images

    panels = generator.num_classes if generator.num_classes and label is None else 1
    if keypoints * steps * panels > 100_000:
        raise ConfigError(
            f"--interpolate {keypoints} with --steps {steps} and {panels} label(s) a frame makes "
            f"{keypoints * steps * panels} images, more than 100,000; ask for fewer"
        )
    gif = out.with_suffix(".gif")
    save_walk(walk_images(generator, keypoints, seed=seed, steps=steps, label=label), out, gif, nrow=nrow)
    click.echo(f"wrote a walk through {keypoints} latents, {keypoints * steps} frames, to {out} and {gif}")
