"""Sampling a generator: reproducible image batches from a seed, and grids of them saved as pictures."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from gankit.errors import FileFormatError
from gankit.files import atomic_write, one_line
from gankit.interfaces import Generator


def sample_images(
    generator: Generator,
    n: int,
    *,
    seed: int,
    labels: Tensor | None = None,
    batch_size: int = 1000,
) -> Tensor:
    """``n`` images in ``[-1, 1]`` as a float32 CPU tensor, reproducible from ``seed`` whatever ``batch_size`` is.

    All latents are drawn up front on the CPU from a generator seeded with ``seed``, so the same seed gives the
    same latents on any device and with any batching; batches only bound the memory of the forward passes (a BLAS
    may still round a matrix product differently for different batch shapes, in the last bits).
    Conditional generators get ``labels`` or, by default, the classes in turn (``arange(n) % num_classes``).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if generator.num_classes > 0:
        if labels is None:
            labels = torch.arange(n, dtype=torch.int64) % generator.num_classes
        labels = labels.to(device="cpu", dtype=torch.int64)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
        if n and (int(labels.min()) < 0 or int(labels.max()) >= generator.num_classes):
            raise ValueError(f"labels must lie in [0, {generator.num_classes})")
    elif labels is not None:
        raise ValueError("labels were given but this generator is unconditional (num_classes = 0)")

    latents = generator.sample_latent(n, generator=torch.Generator().manual_seed(seed))
    return generate(generator, latents, labels, batch_size=batch_size)


def generate(generator: Generator, latents: Tensor, labels: Tensor | None = None, *, batch_size: int = 1000) -> Tensor:
    """``generator`` applied to given ``latents`` (and ``labels``) in eval mode, without gradients: float32 images
    on the CPU, clamped to ``[-1, 1]``, in forward passes of at most ``batch_size``; the model's mode is restored."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(iter(generator.parameters()), torch.empty(0)).device
    was_training = generator.training
    generator.eval()
    try:
        with torch.inference_mode():
            chunks = []
            for start in range(0, len(latents), batch_size):
                batch_labels = labels[start : start + batch_size].to(device) if labels is not None else None
                images = generator(latents[start : start + batch_size].to(device), batch_labels)
                chunks.append(images.to(device="cpu", dtype=torch.float32).clamp_(-1.0, 1.0))
    finally:
        generator.train(was_training)
    if not chunks:
        return torch.empty((0, *generator.image_shape), dtype=torch.float32)
    return torch.cat(chunks)


def save_image_grid(images: Tensor, path: Path, *, nrow: int | None = None) -> None:
    """Save images in ``[-1, 1]`` as one grid picture (format from the extension), atomically.

    ``nrow`` images per row; by default a near-square grid of ``ceil(sqrt(n))`` columns.
    """
    from torchvision.utils import save_image  # torchvision is slow to import; only pay for it here

    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    path = Path(path)
    columns = nrow if nrow is not None else math.ceil(math.sqrt(images.shape[0]))
    pictures = (images.detach().to(device="cpu", dtype=torch.float32).clamp(-1.0, 1.0) + 1.0) / 2.0

    def write(tmp: Path) -> None:
        try:
            save_image(pictures, tmp, nrow=columns, padding=2)
        except (ValueError, KeyError) as exc:  # PIL: unknown extension
            raise FileFormatError(f"cannot save {path}: {one_line(exc)}; use .png or .jpg") from None

    atomic_write(path, write, overwrite=True)
