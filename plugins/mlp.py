"""The fully connected GAN of Goodfellow et al. (2014), as in the classic PyTorch MNIST seeds.

The layout follows the widely copied vanilla-GAN MNIST seed (e.g. znxlwm/pytorch-MNIST-CelebA-GAN-CGAN):
LeakyReLU(0.2) everywhere, no batch norm, Tanh on the generator's output, and a discriminator that mirrors the
generator. That seed used dropout 0.3 in the discriminator; here dropout is an option that defaults to 0.

This module also holds the conditioning pieces shared with ``gankit_plugins.dcgan``: the generator concatenates a
learned label embedding to z (as the classic cGAN seeds do) and the discriminator adds a projection term
(Miyato & Koyama 2018), the inner product of a class embedding with its penultimate features.
"""

from __future__ import annotations

import itertools
import math

import torch
from pydantic import Field
from torch import Tensor, nn

from gankit.interfaces import Discriminator, DiscriminatorOptions, Generator, GeneratorOptions

__all__ = [
    "ConditionalGeneratorOptions",
    "LabelConcat",
    "MLPDiscriminator",
    "MLPDiscriminatorOptions",
    "MLPGenerator",
    "MLPGeneratorOptions",
    "Projection",
    "check_labels",
]

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


class MLPGeneratorOptions(ConditionalGeneratorOptions):
    """Options of the MLP generator."""

    hidden: int = Field(
        256,
        ge=1,
        le=4096,
        description="Base width (G_HIDDEN): the hidden layers are hidden, 2*hidden and 4*hidden units wide.",
    )


class MLPDiscriminatorOptions(DiscriminatorOptions):
    """Options of the MLP discriminator."""

    hidden: int = Field(
        256,
        ge=1,
        le=4096,
        description="Base width (D_HIDDEN): the hidden layers are 4*hidden, 2*hidden and hidden units wide.",
    )
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout after each hidden layer; the classic MNIST seed used 0.3."
    )


class MLPGenerator(Generator):
    """z -> hidden -> 2*hidden -> 4*hidden -> C*H*W, LeakyReLU(0.2) between layers and Tanh out; any image size."""

    Options = MLPGeneratorOptions
    options: MLPGeneratorOptions

    def __init__(self, options: MLPGeneratorOptions) -> None:
        super().__init__(options)
        h = options.hidden
        self.condition = LabelConcat(options.num_classes, options.label_embedding_width())
        self.net = nn.Sequential(
            nn.Linear(options.latent_dim + options.label_embedding_width(), h),
            nn.LeakyReLU(0.2),
            nn.Linear(h, 2 * h),
            nn.LeakyReLU(0.2),
            nn.Linear(2 * h, 4 * h),
            nn.LeakyReLU(0.2),
            nn.Linear(4 * h, math.prod(self.image_shape)),
            nn.Tanh(),
        )

    def forward(self, latent: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images ``(N, C, H, W)`` in ``[-1, 1]``."""
        return self.net(self.condition(latent, labels)).reshape(latent.shape[0], *self.image_shape)


class MLPDiscriminator(Discriminator):
    """C*H*W -> 4*hidden -> 2*hidden -> hidden -> 1 logit, LeakyReLU(0.2); plus a projection term if conditional."""

    Options = MLPDiscriminatorOptions
    options: MLPDiscriminatorOptions

    def __init__(self, options: MLPDiscriminatorOptions) -> None:
        super().__init__(options)
        h = options.hidden
        widths = [math.prod(self.image_shape), 4 * h, 2 * h, h]
        # One block per hidden layer, so the parameter names do not depend on whether dropout is on.
        self.features = nn.Sequential(*(self._block(a, b, options.dropout) for a, b in itertools.pairwise(widths)))
        self.head = nn.Linear(h, 1)
        self.projection = Projection(options.num_classes, h) if options.num_classes > 0 else None

    @staticmethod
    def _block(inputs: int, outputs: int, dropout: float) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Linear(inputs, outputs), nn.LeakyReLU(0.2)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        return nn.Sequential(*layers)

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits ``(N,)``; ``flatten`` rather than ``view`` so channels-last inputs work too."""
        labels = check_labels(labels, self.num_classes, images.shape[0])
        features = self.features(images.flatten(1))
        logits = self.head(features).squeeze(1)
        if self.projection is not None and labels is not None:
            logits = logits + self.projection(features, labels)
        return logits
