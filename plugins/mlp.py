"""The fully connected GAN of Goodfellow et al. (2014), as in the classic PyTorch MNIST seeds.

The layout follows the widely copied vanilla-GAN MNIST seed (e.g. znxlwm/pytorch-MNIST-CelebA-GAN-CGAN):
LeakyReLU(0.2) everywhere, no batch norm, Tanh on the generator's output, and a discriminator that mirrors the
generator. That seed used dropout 0.3 in the discriminator; here dropout is an option that defaults to 0.

Conditioning (``num_classes > 0``) uses the pieces in ``gankit_plugins.conditioning``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar

from pydantic import Field
from torch import Tensor, nn

from gankit.interfaces import Discriminator, DiscriminatorOptions, Generator

from .conditioning import ConditionalGeneratorOptions, LabelConcat, Projection, check_labels

__all__ = ["MLPDiscriminator", "MLPDiscriminatorOptions", "MLPGenerator", "MLPGeneratorOptions"]


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
    recommended_training: ClassVar[dict[str, Any]] = {"lr_g": 5e-4, "lr_d": 5e-4, "ema": False}
    """Measured on MNIST, 3 seeds, one epoch (docs/results.md): at the DCGAN's Adam 1e-3 with an EMA of G the MLP
    collapses to a few digits on some seeds (FD 447 +- 150, 5.3 digits); at 5e-4 without EMA it does not (325 +- 26)."""

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
