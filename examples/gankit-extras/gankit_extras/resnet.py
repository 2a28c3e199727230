"""A small ResNet GAN in the style of SNGAN (Miyato et al. 2018), for 28x28, 32x32 and 64x64 images.

The generator projects z to a ``base x base`` map and doubles it with residual up-blocks
(BN-ReLU-upsample-conv3x3-BN-ReLU-conv3x3, with an upsampling shortcut), then BN-ReLU-conv3x3-Tanh makes the
image. The discriminator mirrors it with residual down-blocks (ReLU-conv3x3-ReLU-conv3x3-avgpool), one more block
at the smallest size, ReLU, a sum over space and a linear layer to one logit. Every layer of the discriminator is
spectrally normalised, which bounds its Lipschitz constant and pairs well with the hinge loss::

    gankit train --gen resnet --loss hinge --gen-opt width=64 --disc-opt width=64

Conditioning (``num_classes > 0``) concatenates a label embedding to z in G and adds a spectrally normalised
projection term (Miyato & Koyama 2018) to D's logit.
"""

from __future__ import annotations

from typing import Literal

import torch
from gankit.interfaces import Discriminator, DiscriminatorOptions, Generator, GeneratorOptions
from pydantic import Field
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["ResNetDiscriminator", "ResNetDiscriminatorOptions", "ResNetGenerator", "ResNetGeneratorOptions"]

LAYOUT: dict[int, tuple[int, int]] = {28: (7, 2), 32: (4, 3), 64: (4, 4)}
"""Image size -> (side of the smallest feature map, residual blocks that double it in G and halve it in D)."""

ImageSize = Literal[28, 32, 64]
_IMAGE_SIZE = "Side of the square images in pixels: 28, 32 or 64 (see LAYOUT)."


class ResNetGeneratorOptions(GeneratorOptions):
    """Options of the ResNet generator."""

    image_size: ImageSize = Field(28, description=_IMAGE_SIZE)
    width: int = Field(64, ge=4, le=1024, description="Channels of every residual block (SNGAN: 256 at 32x32).")
    embedding_dim: int = Field(
        0, ge=0, le=1024, description="Width of the label embedding concatenated to z; 0 means min(num_classes, 128)."
    )


class ResNetDiscriminatorOptions(DiscriminatorOptions):
    """Options of the ResNet discriminator."""

    image_size: ImageSize = Field(28, description=_IMAGE_SIZE)
    width: int = Field(64, ge=4, le=1024, description="Channels of every residual block (SNGAN: 128 at 32x32).")
    spectral_norm: bool = Field(True, description="Spectrally normalise every layer (Miyato et al. 2018).")


class UpBlock(nn.Module):
    """``x -> upsample(x) + conv(relu(bn(conv(upsample(relu(bn(x)))))))``, doubling the side."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(inputs),
            nn.ReLU(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(inputs, outputs, 3, 1, 1),
            nn.BatchNorm2d(outputs),
            nn.ReLU(),
            nn.Conv2d(outputs, outputs, 3, 1, 1),
        )
        shortcut: list[nn.Module] = [nn.Upsample(scale_factor=2)]
        if inputs != outputs:
            shortcut.append(nn.Conv2d(inputs, outputs, 1))
        self.shortcut = nn.Sequential(*shortcut)

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(x) + self.shortcut(x)


class DownBlock(nn.Module):
    """``x -> pool(conv(relu(conv(relu(x))))) + pool(conv1x1(x))``; the first block skips the leading ReLU."""

    def __init__(self, inputs: int, outputs: int, *, downsample: bool, first: bool, normalise: bool) -> None:
        super().__init__()
        sn = spectral_norm if normalise else _identity
        residual: list[nn.Module] = [] if first else [nn.ReLU()]
        residual += [sn(nn.Conv2d(inputs, outputs, 3, 1, 1)), nn.ReLU(), sn(nn.Conv2d(outputs, outputs, 3, 1, 1))]
        shortcut: list[nn.Module] = []
        if inputs != outputs or downsample:
            shortcut.append(sn(nn.Conv2d(inputs, outputs, 1)))
        if downsample:
            residual.append(nn.AvgPool2d(2))
            shortcut.append(nn.AvgPool2d(2))
        self.residual = nn.Sequential(*residual)
        self.shortcut = nn.Sequential(*shortcut) if shortcut else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(x) + self.shortcut(x)


def _identity(module: nn.Module) -> nn.Module:
    return module


def _check_labels(labels: Tensor | None, num_classes: int, batch_size: int) -> Tensor | None:
    """Labels are required (shape ``(N,)``) when conditional and ignored when not."""
    if num_classes == 0:
        return None
    if labels is None or labels.shape != (batch_size,):
        raise ValueError(f"this model is conditional on {num_classes} classes: pass labels of shape ({batch_size},)")
    return labels


class ResNetGenerator(Generator):
    """SNGAN-style ResNet generator: a linear layer to a small map, residual up-blocks, BN-ReLU-conv3x3-Tanh."""

    Options = ResNetGeneratorOptions
    options: ResNetGeneratorOptions
    api_version = 1  # the gankit plugin API this class was written for

    def __init__(self, options: ResNetGeneratorOptions) -> None:
        super().__init__(options)
        base, blocks = LAYOUT[options.image_size]
        width = options.width
        embedding = (options.embedding_dim or min(options.num_classes, 128)) if options.num_classes else 0
        self.embedding = nn.Embedding(options.num_classes, embedding) if embedding else None
        self.project = nn.Linear(options.latent_dim + embedding, width * base * base)
        self.unflatten = nn.Unflatten(1, (width, base, base))
        self.blocks = nn.Sequential(*(UpBlock(width, width) for _ in range(blocks)))
        self.to_image = nn.Sequential(
            nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, options.channels, 3, 1, 1), nn.Tanh()
        )

    def forward(self, latent: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images ``(N, C, H, W)`` in ``[-1, 1]``."""
        labels = _check_labels(labels, self.num_classes, latent.shape[0])
        if self.embedding is not None and labels is not None:
            latent = torch.cat([latent, self.embedding(labels).to(latent.dtype)], dim=1)
        return self.to_image(self.blocks(self.unflatten(self.project(latent))))


class ResNetDiscriminator(Discriminator):
    """SNGAN-style ResNet discriminator: residual down-blocks, ReLU, sum over space, linear to one logit."""

    Options = ResNetDiscriminatorOptions
    options: ResNetDiscriminatorOptions
    api_version = 1  # the gankit plugin API this class was written for

    def __init__(self, options: ResNetDiscriminatorOptions) -> None:
        super().__init__(options)
        _, blocks = LAYOUT[options.image_size]
        width, normalise = options.width, options.spectral_norm
        sn = spectral_norm if normalise else _identity
        layers: list[nn.Module] = [DownBlock(options.channels, width, downsample=True, first=True, normalise=normalise)]
        layers += [
            DownBlock(width, width, downsample=True, first=False, normalise=normalise) for _ in range(blocks - 1)
        ]
        layers += [DownBlock(width, width, downsample=False, first=False, normalise=normalise), nn.ReLU()]
        self.blocks = nn.Sequential(*layers)
        self.head = sn(nn.Linear(width, 1))
        self.projection = sn(nn.Embedding(options.num_classes, width)) if options.num_classes else None

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits ``(N,)``."""
        labels = _check_labels(labels, self.num_classes, images.shape[0])
        features = self.blocks(images).sum(dim=(2, 3))
        logits = self.head(features).squeeze(1)
        if self.projection is not None and labels is not None:
            logits = logits + (self.projection(labels).to(features.dtype) * features).sum(dim=1)
        return logits
