"""The batch pipeline: the whole training split lives on the training device as uint8.

Each batch is gathered by index, normalised to [-1, 1] and resized on the device, so there is no per-image Python
work and no worker process. The order of every epoch is a pure function of (seed, epoch), which is what makes
runs reproducible and resumable at any step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from gankit.interfaces import ImageData


def to_unit_range(images: Tensor, image_size: int | None = None) -> Tensor:
    """uint8 ``(N, C, H, W)`` -> float32 in [-1, 1], resized (bilinear, antialiased) to ``image_size`` if given."""
    batch = images.float().mul_(2.0 / 255.0).sub_(1.0)
    if image_size is not None and batch.shape[-1] != image_size:
        batch = F.interpolate(batch, size=(image_size, image_size), mode="bilinear", antialias=True)
    return batch


def epoch_order(size: int, *, seed: int, epoch: int) -> Tensor:
    """The permutation of ``range(size)`` used in ``epoch``, identical on every device and after a resume."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(size, generator=generator)


class DeviceBatches:
    """Serves batches of one dataset split from device memory; drops the last incomplete batch of an epoch."""

    def __init__(
        self,
        data: ImageData,
        *,
        batch_size: int,
        image_size: int,
        device: torch.device,
        seed: int,
        memory_format: torch.memory_format = torch.contiguous_format,
        shard: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.batch_size = batch_size
        self.image_size = image_size
        self.seed = seed
        self.device = device
        self.memory_format = memory_format
        self.shard = shard or (lambda indices: indices)  # a distributed rank keeps only its slice of each batch
        self.batches_per_epoch = len(self.images) // batch_size

    def order(self, epoch: int) -> Tensor:
        return epoch_order(len(self.images), seed=self.seed, epoch=epoch).to(self.device)

    def batch(self, order: Tensor, index: int) -> tuple[Tensor, Tensor]:
        """Batch ``index`` of the epoch whose permutation is ``order``: images in [-1, 1] and int64 labels."""
        picked = self.shard(order[index * self.batch_size : (index + 1) * self.batch_size])
        images = to_unit_range(self.images[picked], self.image_size).contiguous(memory_format=self.memory_format)
        return images, self.labels[picked]
