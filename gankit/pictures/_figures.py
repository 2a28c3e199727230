"""Pictures of a run: the GIF of the per-epoch sample grids and the plot of the losses over time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gankit.files import loss_metric_names


def save_progress_gif(frames: Sequence[Path], path: Path, *, frame_ms: int = 600, hold_last: bool = True) -> None:
    """Animate the pictures in order, looping; the last frame is held longer (``hold_last``) so a result shows."""
    from PIL import Image

    if not frames:
        return
    images = [_paletted(Image.open(frame)) for frame in frames]
    durations = [frame_ms] * (len(images) - 1) + [frame_ms * 4 if hold_last else frame_ms]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)


def _paletted(image: Any) -> Any:
    """A GIF frame: the picture in an adaptive palette, which Pillow builds only from grayscale, RGB or RGBA; the
    grid of a 2-channel generator is luminance and alpha (LA), so it goes through RGBA first."""
    from PIL import Image

    if image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGBA")
    return image.convert("P", palette=Image.Palette.ADAPTIVE)


def plot_losses(metrics: Sequence[dict[str, Any]], path: Path) -> None:
    """Save ``loss_figure(metrics)`` as a picture at ``path``; nothing when there are no metrics."""
    if not metrics:
        return
    import matplotlib.pyplot as plt

    figure = loss_figure(metrics)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def loss_figure(metrics: Sequence[dict[str, Any]]) -> Any:
    """Panels over steps: the D and G losses; the mean raw logits on real and fake images (the discriminator's
    separation, which means the same for every loss); and, when the loss reports any, its own metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = list(dict.fromkeys(name for row in metrics for name in loss_metric_names(row)))
    panels = 3 if measured else 2
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), constrained_layout=True, squeeze=False)
    losses, logits = axes[0][0], axes[0][1]
    steps = [row["step"] for row in metrics]
    losses.plot(steps, [row["d_loss"] for row in metrics], label="D loss")
    losses.plot(steps, [row["g_loss"] for row in metrics], label="G loss")
    losses.set(xlabel="step", ylabel="loss", title="Losses")
    logits.plot(steps, [row["d_real_logit"] for row in metrics], label="real")
    logits.plot(steps, [row["d_fake_logit"] for row in metrics], label="fake")
    logits.set(xlabel="step", ylabel="mean logit", title="Discriminator logits")
    if measured:
        own = axes[0][2]
        for name in measured:  # a metric reported only on some log lines is drawn where it was
            rows = [row for row in metrics if name in row]
            own.plot([row["step"] for row in rows], [row[name] for row in rows], label=name)
        own.set(xlabel="step", title="Loss metrics")
    for axis in axes[0]:
        axis.grid(alpha=0.3)
        axis.legend()
    return figure
