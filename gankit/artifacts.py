"""Pictures of a run: the GIF of the per-epoch sample grids and the plot of the losses over time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def save_progress_gif(frames: Sequence[Path], path: Path, *, frame_ms: int = 600, hold_last: bool = True) -> None:
    """Animate the pictures in order, looping; the last frame is held longer (``hold_last``) so a result shows."""
    from PIL import Image

    if not frames:
        return
    images = [Image.open(frame).convert("P", palette=Image.Palette.ADAPTIVE) for frame in frames]
    durations = [frame_ms] * (len(images) - 1) + [frame_ms * 4 if hold_last else frame_ms]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)


def plot_losses(metrics: Sequence[dict[str, Any]], path: Path) -> None:
    """Two panels over steps: D and G losses, and D(x) with D(G(z)) (the discriminator's confidence)."""
    if not metrics:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["step"] for row in metrics]
    figure, (losses, outputs) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    losses.plot(steps, [row["d_loss"] for row in metrics], label="D loss")
    losses.plot(steps, [row["g_loss"] for row in metrics], label="G loss")
    losses.set(xlabel="step", ylabel="loss", title="Losses")
    outputs.plot(steps, [row["d_real"] for row in metrics], label="D(x)")
    outputs.plot(steps, [row["d_fake"] for row in metrics], label="D(G(z))")
    outputs.set(xlabel="step", ylabel="probability", ylim=(0, 1), title="Discriminator outputs")
    for axis in (losses, outputs):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.savefig(path, dpi=110)
    plt.close(figure)
