"""DCGAN (Radford et al. 2015) for 28x28, 32x32 and 64x64 images.

64x64 is exactly the classic pytorch/examples ``dcgan``: z -> 4x4x8w -> 8x8x4w -> 16x16x2w -> 32x32xw -> 64x64xC,
and a discriminator that mirrors it. The smaller sizes drop the widest stages by the same rule: start from a 4x4
(or, for 28, a 7x7) map whose width halves at every doubling and reaches ``width`` just before the output layer, so
32x32 is z -> 4x4x4w -> 8 -> 16 -> 32 and 28x28 is the three-layer z -> 7x7x2w -> 14x14xw -> 28x28xC.

Conditioning comes from ``gankit_plugins.conditioning``: a label embedding concatenated to z in G, and a
projection term on the spatially summed last feature map in D.

The defaults are that architecture exactly. Options for recipe searches change it: G's ``upsample="resize"`` doubles
the side with nearest-neighbour upsampling and a 3x3 convolution instead of a transposed convolution (Odena et al.
2016); D's ``norm`` replaces its batch norms by spectral normalisation (Miyato et al. 2018) or nothing, ``slope`` sets
the LeakyReLU slope and ``dropout`` adds dropout after each hidden activation.
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, JsonValue
from pydantic.config import JsonDict
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from gankit.interfaces import Discriminator, DiscriminatorOptions, Generator

from .conditioning import ConditionalGeneratorOptions, LabelConcat, Projection, check_labels

__all__ = ["DCGANDiscriminator", "DCGANDiscriminatorOptions", "DCGANGenerator", "DCGANGeneratorOptions"]

_BASE_SIZE = {28: 7, 32: 4, 64: 4}
"""Image size -> side of the smallest feature map; each further stage doubles it with a stride-2 convolution."""

_IMAGE_SIZE_DESCRIPTION = "Side of the square images in pixels (X_DIM): 28, 32 or 64."


def _stage_widths(image_size: int, width: int) -> tuple[int, list[int]]:
    """The smallest map's side and the channels of each feature map from smallest to largest (G's order).

    64 -> (4, [8w, 4w, 2w, w]); 32 -> (4, [4w, 2w, w]); 28 -> (7, [2w, w]).
    """
    base = _BASE_SIZE[image_size]
    stages = round(math.log2(image_size // base))
    return base, [width * 2**i for i in reversed(range(stages))]


def _check_image_size(value: int) -> int:
    if value not in _BASE_SIZE:
        raise ValueError(f"image_size must be one of {', '.join(map(str, sorted(_BASE_SIZE)))}")
    return value


ImageSize = Annotated[int, AfterValidator(_check_image_size)]
"""The image sizes the layer table knows; anything else is refused with a message naming them."""


def _init_weights(module: nn.Module) -> None:
    """DCGAN's initialisation: convolutions N(0, 0.02) (biases, where there are any, 0), batch-norm scales N(1, 0.02)
    and shifts 0."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


_SIZE_SCHEMA: JsonDict = {"enum": list[JsonValue](sorted(_BASE_SIZE))}
"""The sizes, listed in the options' JSON schema (and so in ``gankit info``)."""


class DCGANGeneratorOptions(ConditionalGeneratorOptions):
    """Options of the DCGAN generator."""

    image_size: ImageSize = Field(28, description=_IMAGE_SIZE_DESCRIPTION, json_schema_extra=_SIZE_SCHEMA)
    width: int = Field(
        64, ge=1, le=1024, description="Base width (G_HIDDEN, ngf): channels of the last feature map before the image."
    )
    upsample: Literal["transposed", "resize"] = Field(
        "transposed",
        description="How each stage doubles the side: transposed (4x4 stride-2 ConvTranspose2d, DCGAN) or resize "
        "(nearest-neighbour x2, then a 3x3 Conv2d: Odena et al. 2016's resize-convolution, no checkerboard); "
        "resize exports load through gankit and ONNX, not examples/standalone_reader.py.",
    )


class DCGANDiscriminatorOptions(DiscriminatorOptions):
    """Options of the DCGAN discriminator."""

    image_size: ImageSize = Field(28, description=_IMAGE_SIZE_DESCRIPTION, json_schema_extra=_SIZE_SCHEMA)
    width: int = Field(
        64, ge=1, le=1024, description="Base width (D_HIDDEN, ndf): channels of the first convolution's output."
    )
    norm: Literal["batch", "spectral", "none"] = Field(
        "batch",
        description="Normalisation: batch (BatchNorm2d after every convolution but the first, DCGAN), spectral "
        "(spectral norm on every convolution, no batch norm; Miyato et al. 2018) or none; without batch norm the "
        "hidden convolutions have a bias.",
    )
    slope: float = Field(0.2, ge=0.0, lt=1.0, description="Negative slope of the LeakyReLU activations (DCGAN: 0.2).")
    dropout: float = Field(
        0.0,
        ge=0.0,
        lt=0.9,
        description="Channel dropout (Dropout2d) after each hidden activation, in training only; 0 means none.",
    )


class DCGANGenerator(Generator):
    """Transposed convolutions (or resize-convolutions) with batch norm and ReLU, Tanh out."""

    Options = DCGANGeneratorOptions
    options: DCGANGeneratorOptions
    prefers_channels_last = True

    def __init__(self, options: DCGANGeneratorOptions) -> None:
        super().__init__(options)
        base, widths = _stage_widths(options.image_size, options.width)
        self.condition = LabelConcat(options.num_classes, options.label_embedding_width())
        inputs = options.latent_dim + options.label_embedding_width()
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(inputs, widths[0], base, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for a, b in itertools.pairwise(widths):
            layers += [*self._doubling(a, b), nn.BatchNorm2d(b), nn.ReLU(True)]
        layers += [*self._doubling(widths[-1], options.channels), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights)

    def _doubling(self, inputs: int, outputs: int) -> list[nn.Module]:
        """The layers of one stage that doubles the side: a transposed convolution, or upsampling then a convolution."""
        if self.options.upsample == "resize":
            return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(inputs, outputs, 3, 1, 1, bias=False)]
        return [nn.ConvTranspose2d(inputs, outputs, 4, 2, 1, bias=False)]

    def forward(self, latent: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images ``(N, C, H, W)`` in ``[-1, 1]``; z enters as a 1x1 map."""
        z = self.condition(latent, labels)
        return self.net(z.reshape(*z.shape, 1, 1))


class DCGANDiscriminator(Discriminator):
    """Strided convolutions with LeakyReLU(0.2), batch norm on all but the first, a last convolution to one logit.

    ``norm``, ``slope`` and ``dropout`` change the normalisation, the LeakyReLU's slope and add dropout; at their
    defaults the layers, and their parameter names, are the DCGAN's.
    """

    Options = DCGANDiscriminatorOptions
    options: DCGANDiscriminatorOptions
    prefers_channels_last = True

    def __init__(self, options: DCGANDiscriminatorOptions) -> None:
        super().__init__(options)
        base, widths = _stage_widths(options.image_size, options.width)
        widths = widths[::-1]
        batch_norm = options.norm == "batch"
        layers: list[nn.Module] = [nn.Conv2d(options.channels, widths[0], 4, 2, 1, bias=False), *self._activation()]
        for a, b in itertools.pairwise(widths):
            layers.append(nn.Conv2d(a, b, 4, 2, 1, bias=not batch_norm))  # a batch norm's shift is the bias
            layers += [nn.BatchNorm2d(b)] if batch_norm else []
            layers += self._activation()
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1], 1, base, 1, 0, bias=False)
        self.projection = Projection(options.num_classes, widths[-1]) if options.num_classes > 0 else None
        self.apply(_init_weights)
        if options.norm == "spectral":  # after the initialisation, which writes the unnormalised weights
            for module in [*self.features, self.head]:
                if isinstance(module, nn.Conv2d):
                    spectral_norm(module)

    def _activation(self) -> list[nn.Module]:
        """LeakyReLU, then dropout when it is on."""
        layers: list[nn.Module] = [nn.LeakyReLU(self.options.slope, inplace=True)]
        if self.options.dropout > 0:
            layers.append(nn.Dropout2d(self.options.dropout))
        return layers

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits ``(N,)``; shapes are changed with ``flatten`` only, so channels-last inputs work."""
        labels = check_labels(labels, self.num_classes, images.shape[0])
        features = self.features(images)
        logits = self.head(features).flatten()
        if self.projection is not None and labels is not None:
            logits = logits + self.projection(features.sum(dim=(2, 3)), labels)
        return logits
