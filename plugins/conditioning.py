"""Class conditioning shared by the built-in models.

The generator concatenates a learned label embedding to z (as the classic cGAN seeds do) and the discriminator adds
a projection term (Miyato & Koyama 2018), the inner product of a class embedding with its penultimate features.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from gankit.interfaces import GeneratorOptions

_MAX_AUTO_EMBEDDING = 128
"""``embedding_dim=0`` means ``min(num_classes, 128)``: a slot per class for small label sets, bounded for big ones."""


def check_labels(labels: Tensor | None, num_classes: int, batch_size: int) -> Tensor | None:
    """The labels a model should use: required (shape ``(N,)``) when conditional, ignored when not.

    Unconditional models ignore labels rather than refuse them, so an engine may pass a labelled dataset's labels to
    any model. The range is not checked here (that would synchronise with the GPU); ``nn.Embedding`` rejects it.
    """
    if num_classes == 0:
        return None
    if labels is None:
        raise ValueError(f"this model is conditional on {num_classes} classes: pass labels, an int64 tensor (N,)")
    if labels.shape != (batch_size,):
        raise ValueError(f"labels must have shape ({batch_size},) to match the batch, got {tuple(labels.shape)}")
    return labels


class ConditionalGeneratorOptions(GeneratorOptions):
    """Generator options plus the width of the label embedding, used only when ``num_classes > 0``."""

    embedding_dim: int = Field(
        0,
        ge=0,
        le=1024,
        description="Width of the learned label embedding concatenated to z when num_classes > 0; "
        "0 means min(num_classes, 128), like the classic cGAN's Embedding(10, 10).",
    )

    def label_embedding_width(self) -> int:
        """The embedding width actually used: 0 for unconditional generators."""
        if self.num_classes == 0:
            return 0
        return self.embedding_dim or min(self.num_classes, _MAX_AUTO_EMBEDDING)


class LabelConcat(nn.Module):
    """Appends a learned embedding of the labels to the latent vectors; the identity when unconditional."""

    def __init__(self, num_classes: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding = nn.Embedding(num_classes, embedding_dim) if num_classes > 0 else None

    def forward(self, latent: Tensor, labels: Tensor | None) -> Tensor:
        labels = check_labels(labels, self.num_classes, latent.shape[0])
        if self.embedding is None or labels is None:
            return latent
        return torch.cat([latent, self.embedding(labels).to(latent.dtype)], dim=1)


class Projection(nn.Module):
    """The projection discriminator's class term ``<embed(y), features>`` (Miyato & Koyama 2018).

    The embedding starts at N(0, 0.02), so a fresh conditional discriminator starts close to its unconditional twin.
    """

    def __init__(self, num_classes: int, features: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding = nn.Embedding(num_classes, features)
        nn.init.normal_(self.embedding.weight, 0.0, 0.02)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """``(N, F)`` features and ``(N,)`` labels to ``(N,)`` logit terms."""
        return (self.embedding(labels).to(features.dtype) * features).sum(dim=1)
