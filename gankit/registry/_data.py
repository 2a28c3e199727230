"""Images as plugins hand them over: a dataset's split loaded under blame and checked, and pixels in the models' range.

Datasets give uint8 pixels; generators make, and discriminators take, float images in [-1, 1]
(``gankit.interfaces``). Training and evaluation load splits and convert pixels through these two functions only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from gankit.interfaces import Dataset, ImageData, Split
from gankit.registry._blame import plugin_code
from gankit.registry._contract import check_data
from gankit.registry._registry import Registry, registry


def load_split(
    name: str, split: Split, options: Mapping[str, Any] | None = None, *, plugins: Registry = registry
) -> ImageData:
    """Split ``split`` of the dataset plugin ``name``, loaded with its failures blamed on it, checked against the
    contract (``check_data``)."""
    entry = plugins.entry("dataset", name)
    dataset: Dataset = plugins.create("dataset", name, dict(options or {}))
    with plugin_code(entry.who, f"in load({split!r})"):
        data = dataset.load(split)
    return check_data(data, entry.who)


def to_unit_range(images: Tensor, image_size: int | None = None) -> Tensor:
    """uint8 ``(N, C, H, W)`` -> float32 in [-1, 1], resized (bilinear, antialiased) to ``image_size`` if given."""
    batch = images.float().mul_(2.0 / 255.0).sub_(1.0)
    if image_size is not None and batch.shape[-1] != image_size:
        batch = F.interpolate(batch, size=(image_size, image_size), mode="bilinear", antialias=True)
    return batch
