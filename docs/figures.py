"""Draw the figures of docs/math.md from the real code and formulas.

    python docs/figures.py            # writes docs/images/generator-loss-gradients.png and dcgan-shapes.png
    python docs/figures.py --tables   # prints the DCGAN layer tables of docs/math.md instead

The DCGAN shapes are recorded with forward hooks on gankit's own ``dcgan`` plugins, never worked out by hand;
``tests/test_docs.py`` checks that the tables in docs/math.md are still what ``--tables`` prints.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGES = Path(__file__).resolve().parent / "images"
SIZES = (28, 32, 64)
"""The image sizes the DCGAN plugins support."""


@dataclass(frozen=True)
class Layer:
    """One convolution of a DCGAN and the shape-preserving modules that follow it."""

    module: str
    then: tuple[str, ...]
    shape: tuple[int, ...]
    params: int


def _describe(module: Any) -> str:
    name = type(module).__name__
    if name in ("Conv2d", "ConvTranspose2d"):
        k, s, p = module.kernel_size[0], module.stride[0], module.padding[0]
        return f"{name} {module.in_channels}→{module.out_channels}, kernel {k}, stride {s}, padding {p}"
    if name == "LeakyReLU":
        return f"LeakyReLU({module.negative_slope:g})"
    return name


def record_layers(model: Any, example: Any) -> list[Layer]:
    """Run ``model`` on ``example`` with a forward hook on every leaf module; group them by convolution."""
    import torch

    calls: list[tuple[torch.nn.Module, tuple[int, ...]]] = []
    # torch.nn's own leaf modules: a plugin's helpers (the identity LabelConcat when unconditional) are skipped.
    leaves = [m for m in model.modules() if not list(m.children()) and type(m).__module__.startswith("torch.nn")]
    handles = [m.register_forward_hook(lambda mod, _in, out: calls.append((mod, tuple(out.shape[1:])))) for m in leaves]
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    layers: list[Layer] = []
    for module, shape in calls:
        params = sum(p.numel() for p in module.parameters())
        if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d) or not layers:
            layers.append(Layer(_describe(module), (), shape, params))
        else:
            last = layers[-1]
            layers[-1] = Layer(last.module, (*last.then, _describe(module)), shape, last.params + params)
    return layers


@dataclass(frozen=True)
class DCGAN:
    """gankit's DCGAN pair at one image size: input shapes, layers and parameter counts."""

    latent_dim: int
    image_shape: tuple[int, int, int]
    generator: list[Layer]
    discriminator: list[Layer]
    generator_params: int
    discriminator_params: int


def dcgan_layers(image_size: int) -> DCGAN:
    """The layers of gankit's DCGAN generator and discriminator at their default options (MNIST: 1 channel)."""
    import torch

    from gankit.registry import create_plugin

    generator = create_plugin("generator", "dcgan", {"image_size": image_size})
    discriminator = create_plugin("discriminator", "dcgan", {"image_size": image_size})
    latent = generator.sample_latent(2, generator=torch.Generator().manual_seed(0))
    return DCGAN(
        latent_dim=generator.latent_dim,
        image_shape=tuple(generator.image_shape),
        generator=record_layers(generator, latent),
        discriminator=record_layers(discriminator, torch.zeros(2, *generator.image_shape)),
        generator_params=sum(p.numel() for p in generator.parameters()),
        discriminator_params=sum(p.numel() for p in discriminator.parameters()),
    )


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


def markdown_tables() -> str:
    """The layer tables of docs/math.md, one generator and one discriminator table per image size."""
    out: list[str] = []
    for size in SIZES:
        info = dcgan_layers(size)
        out.append(f"#### {size}×{size}\n")
        for part, first, first_shape, layers, total in (
            ("Generator", "latent z as a 1×1 map", (info.latent_dim, 1, 1), info.generator, info.generator_params),
            ("Discriminator", "image", info.image_shape, info.discriminator, info.discriminator_params),
        ):
            out.append(f"{part}, {total:,} parameters:\n")
            out.append("| # | layer | then | output C×H×W | parameters |")
            out.append("|---|---|---|---|---|")
            out.append(f"| 0 | {first} |  | {_shape(first_shape)} |  |")
            for number, layer in enumerate(layers, start=1):
                then = ", ".join(layer.then)
                out.append(f"| {number} | {layer.module} | {then} | {_shape(layer.shape)} | {layer.params:,} |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


# -- pictures --------------------------------------------------------------------------------------------------------


def plot_generator_losses(path: Path) -> None:
    """Generator loss and the size of its gradient w.r.t. the logit, against D(G(z)), for minimax and nonsat."""
    import matplotlib.pyplot as plt
    import numpy as np

    d = np.logspace(-4, math.log10(1 - 1e-4), 400)
    figure, (loss_axis, grad_axis) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    loss_axis.plot(d, np.log1p(-d), label=r"minimax: $\log(1 - D(G(z)))$", color="tab:red")
    loss_axis.plot(d, -np.log(d), label=r"non-saturating: $-\log D(G(z))$", color="tab:blue")
    loss_axis.set(xscale="log", xlabel=r"$D(G(z))$", ylabel="generator loss (minimised)", title="Generator loss")
    # d/dl log(1 - sigmoid(l)) = -sigmoid(l) = -D ;  d/dl -log sigmoid(l) = -(1 - sigmoid(l)) = -(1 - D)
    grad_axis.plot(d, d, label=r"minimax: $|\partial/\partial l| = D$", color="tab:red")
    grad_axis.plot(d, 1 - d, label=r"non-saturating: $|\partial/\partial l| = 1 - D$", color="tab:blue")
    grad_axis.set(
        xscale="log",
        yscale="log",
        xlabel=r"$D(G(z)) = \sigma(l)$",
        ylabel=r"gradient size w.r.t. the logit $l$",
        title="Gradient reaching the generator",
        ylim=(5e-5, 2),
    )
    for axis in (loss_axis, grad_axis):
        axis.axvspan(1e-4, 1e-2, color="0.9", zorder=0)
        axis.grid(alpha=0.3, which="both")
        axis.legend(loc="best")
    loss_axis.text(1.3e-4, loss_axis.get_ylim()[0] * 0.9 + 0.5, "early training:\nD rejects the fakes", fontsize=9)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_dcgan_shapes(path: Path) -> None:
    """Each feature map as a box: height proportional to its side, width to log2 of its channels."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    figure, axes = plt.subplots(len(SIZES), 2, figsize=(12, 2.9 * len(SIZES)), constrained_layout=True)
    for row, size in enumerate(SIZES):
        info = dcgan_layers(size)
        parts = (
            ("generator", "z", (info.latent_dim, 1, 1), info.generator),
            ("discriminator", "image", info.image_shape, info.discriminator),
        )
        for column, (part, first, start, layers) in enumerate(parts):
            shapes = [start, *(layer.shape for layer in layers)]
            axis = axes[row][column]
            for index, shape in enumerate(shapes):
                channels, side = shape[0], shape[1]
                width = 0.8 * (1 + math.log2(channels))
                x = 11 * index + (9 - width) / 2
                last = index == len(shapes) - 1
                colour = "0.6" if index == 0 else ("tab:orange" if last else "tab:blue")
                axis.add_patch(Rectangle((x, -side / 2), width, side, facecolor=colour, alpha=0.45, edgecolor=colour))
                name = first if index == 0 else f"layer {index}"
                if last:
                    name = "image" if part == "generator" else "logit"
                label = f"{name}\n{channels} ch\n{side}×{side}"
                axis.text(11 * index + 4.5, -35, label, ha="center", va="top", fontsize=8)
            axis.set(xlim=(-1, 66), ylim=(-60, 34), title=f"DCGAN {part}, {size}×{size}")
            axis.axis("off")
    figure.suptitle("gankit's DCGAN feature maps: box height ∝ side in pixels, box width ∝ log2(channels)")
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", action="store_true", help="print the DCGAN layer tables instead of drawing")
    args = parser.parse_args()
    if args.tables:
        print(markdown_tables(), end="")
        return
    import matplotlib

    matplotlib.use("Agg")
    IMAGES.mkdir(exist_ok=True)
    for name, draw in (
        ("generator-loss-gradients.png", plot_generator_losses),
        ("dcgan-shapes.png", plot_dcgan_shapes),
    ):
        draw(IMAGES / name)
        print(f"wrote {IMAGES / name}")


if __name__ == "__main__":
    main()
