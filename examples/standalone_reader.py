"""Rebuild and sample a gankit generator export with torch and safetensors alone: gankit need not be installed.

Reads an export of a built-in generator (``mlp`` or ``dcgan``, conditional or not), rebuilds the network from the
recorded options by the layer tables of docs/export.md, and draws images exactly as ``gankit sample`` does: the
same pixels, bit for bit, on the same machine. Copy this one file anywhere; it needs ``torch`` and ``safetensors``
(and ``pillow`` only to write a PNG)::

    python standalone_reader.py dcgan.safetensors --n 16 --seed 1 --out grid.png
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

FORMAT, FORMAT_VERSION = "gankit.generator", 1
DCGAN_BASE_SIDE = {28: 7, 32: 4, 64: 4}  # image side -> side of the first feature map
MAX_AUTO_EMBEDDING = 128  # embedding_dim 0 means min(num_classes, 128)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The export's metadata strings, after checking that it is a gankit generator export this reader knows."""
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gankit generator export")
    if int(meta["format_version"]) > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer gankit (format {meta['format_version']})")
    if meta["latent_distribution"] != "standard_normal":
        raise ValueError(f"{path} draws its latents from {meta['latent_distribution']!r}, not a standard normal")
    return dict(meta)


class Generator(nn.Module):
    """``net(cat([z, embedding(labels)]))``, reshaped to images; the parameter names are gankit's."""

    def __init__(self, plugin: str, options: dict[str, int]) -> None:
        super().__init__()
        self.plugin = plugin
        self.num_classes = options["num_classes"]
        self.image_shape = (options["channels"], options["image_size"], options["image_size"])
        width = 0 if self.num_classes == 0 else options["embedding_dim"] or min(self.num_classes, MAX_AUTO_EMBEDDING)
        self.condition = nn.Module()  # holds `embedding`, so the tensor is named condition.embedding.weight
        self.condition.embedding = nn.Embedding(self.num_classes, width) if self.num_classes else None
        inputs = options["latent_dim"] + width
        if plugin == "mlp":
            self.net = mlp_layers(inputs, options["hidden"], math.prod(self.image_shape))
        elif plugin == "dcgan":
            self.net = dcgan_layers(inputs, options["width"], options["image_size"], options["channels"])
        else:
            raise ValueError(f"generator plugin {plugin!r} is not a gankit built-in; this reader knows mlp and dcgan")

    def forward(self, latent: Tensor, labels: Tensor | None = None) -> Tensor:
        z = latent
        if self.condition.embedding is not None:
            if labels is None:
                raise ValueError(f"this generator is conditional on {self.num_classes} classes: pass labels")
            z = torch.cat([latent, self.condition.embedding(labels)], dim=1)
        if self.plugin == "dcgan":
            return self.net(z.reshape(*z.shape, 1, 1))  # z enters as a 1x1 map
        return self.net(z).reshape(latent.shape[0], *self.image_shape)


def mlp_layers(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """Linear layers of hidden, 2*hidden, 4*hidden and C*H*W units; LeakyReLU(0.2) between, Tanh out."""
    return nn.Sequential(
        nn.Linear(inputs, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, 2 * hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(2 * hidden, 4 * hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(4 * hidden, outputs),
        nn.Tanh(),
    )


def dcgan_layers(inputs: int, width: int, image_size: int, channels: int) -> nn.Sequential:
    """Transposed convolutions, each doubling the side and halving the channels down to ``width``, then the image."""
    base = DCGAN_BASE_SIDE[image_size]
    stages = round(math.log2(image_size // base))
    widths = [width * 2**i for i in reversed(range(stages))]
    layers: list[nn.Module] = [nn.ConvTranspose2d(inputs, widths[0], base, 1, 0, bias=False)]
    layers += [nn.BatchNorm2d(widths[0], eps=1e-5), nn.ReLU()]
    for a, b in itertools.pairwise(widths):
        layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b, eps=1e-5), nn.ReLU()]
    layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def load(path: str | Path) -> tuple[Generator, dict[str, str]]:
    """The generator of an export, weights loaded and in eval mode, with the export's metadata."""
    meta = read_metadata(path)
    model = Generator(meta["plugin"], json.loads(meta["plugin_options"]))
    recorded = (int(meta["num_classes"]), list(model.image_shape))
    if recorded != (model.num_classes, json.loads(meta["image_shape"])):
        raise ValueError(f"{path}: the recorded options do not describe the recorded image shape and classes")
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval(), meta


def draw(model: Generator, meta: dict[str, str], n: int, *, seed: int, labels: Tensor | None = None) -> Tensor:
    """``n`` images in [-1, 1], as ``gankit sample --n N --seed SEED`` draws them.

    All latents at once on the CPU from a generator seeded with ``seed``; labels by default the classes in turn;
    forward passes of up to 1000 images in eval mode; the output clamped to [-1, 1].
    """
    latents = torch.randn(n, int(meta["latent_dim"]), generator=torch.Generator().manual_seed(seed))
    if model.num_classes and labels is None:
        labels = torch.arange(n, dtype=torch.int64) % model.num_classes
    chunks = []
    with torch.inference_mode():
        for start in range(0, n, 1000):
            batch_labels = None if labels is None else labels[start : start + 1000]
            chunks.append(model(latents[start : start + 1000], batch_labels).float().clamp(-1.0, 1.0))
    return torch.cat(chunks)


def grid(images: Tensor, nrow: int | None = None, padding: int = 2) -> Tensor:
    """The uint8 picture ``(H, W, 3)`` that ``gankit sample`` writes: ``nrow`` images a row (default square), 2 black
    pixels of padding, pixel ``uint8(255 * (x + 1) / 2 + 0.5)`` (torchvision's ``make_grid`` and ``save_image``)."""
    pictures = (images + 1.0) / 2.0
    if pictures.shape[1] == 1:
        pictures = pictures.expand(-1, 3, -1, -1)
    n, channels, height, width = pictures.shape
    columns = min(nrow or math.ceil(math.sqrt(n)), n)
    rows = math.ceil(n / columns)
    canvas = torch.zeros(channels, rows * (height + padding) + padding, columns * (width + padding) + padding)
    for index in range(n):
        top, left = (index // columns) * (height + padding) + padding, (index % columns) * (width + padding) + padding
        canvas[:, top : top + height, left : left + width] = pictures[index]
    if n == 1:  # make_grid returns a single image as it is, without padding
        canvas = pictures[0]
    return canvas.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", help="a gankit generator export (.safetensors)")
    parser.add_argument("--n", type=int, default=64, help="images to draw")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents")
    parser.add_argument("--label", type=int, default=None, help="class of every image (conditional generators)")
    parser.add_argument("--nrow", type=int, default=None, help="images per grid row")
    parser.add_argument("--out", default="samples.png", help="a .png grid, or .safetensors for the raw images")
    args = parser.parse_args()
    model, meta = load(args.export)
    labels = None if args.label is None else torch.full((args.n,), args.label, dtype=torch.int64)
    images = draw(model, meta, args.n, seed=args.seed, labels=labels)
    if args.out.endswith(".safetensors"):
        save_file({"images": images}, args.out)
    else:
        from PIL import Image

        Image.fromarray(grid(images, args.nrow).numpy()).save(args.out)
    print(f"wrote {args.n} {meta['plugin']} samples to {args.out}")


if __name__ == "__main__":
    main()
