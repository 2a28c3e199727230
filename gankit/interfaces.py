"""The plugin contract: every generator, discriminator, loss and dataset gankit uses implements one of these.

This module is the reference for plugin authors; its docstrings are the documentation. A plugin is a class that
subclasses one of the four bases below, declares its options as a pydantic model in ``Options`` and is advertised
through an entry point (see ``gankit.registry``). gankit builds it as ``PluginClass(options)`` where ``options`` is
an instance of ``PluginClass.Options`` already validated.

Conventions every plugin can rely on:

- Images are float tensors of shape ``(N, C, H, W)`` with values in ``[-1, 1]``.
- Labels, when a model is conditional (``num_classes > 0``), are ``int64`` tensors of shape ``(N,)``.
- Discriminators return raw logits; losses apply the sigmoid (or not) themselves.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

PLUGIN_API_VERSION = 1
"""Bumped when the contract changes incompatibly. A plugin may set ``api_version`` to the version it was built for."""

Split = Literal["train", "test"]
"""The dataset splits a ``Dataset.load`` is asked for."""


class PluginOptions(BaseModel):
    """Base of every plugin's options: typed, bounded fields with a one-line ``description`` each.

    Unknown keys are refused, so a typo in ``--gen-opt widht=64`` is an error rather than silently ignored. Instances
    are frozen. The same model drives validation, ``gankit info`` and the option tables of the docs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelOptions(PluginOptions):
    """Options shared by generators and discriminators: the image geometry and the conditioning."""

    image_size: int = Field(28, ge=4, le=1024, description="Side of the square images in pixels (X_DIM).")
    channels: int = Field(1, ge=1, le=4, description="Image channels, 1 for MNIST (IMAGE_CHANNEL).")
    num_classes: int = Field(0, ge=0, le=100_000, description="Classes to condition on; 0 means unconditional.")


class GeneratorOptions(ModelOptions):
    """Options every generator accepts; subclass it to add your own fields."""

    latent_dim: int = Field(100, ge=1, le=100_000, description="Size of the latent vector z (Z_DIM).")


class DiscriminatorOptions(ModelOptions):
    """Options every discriminator accepts; subclass it to add your own fields."""


class LossOptions(PluginOptions):
    """Options every loss accepts (none); subclass it to add your own fields."""


class DatasetOptions(PluginOptions):
    """Options every dataset accepts; subclass it to add your own fields."""


class _Plugin:
    """What every plugin class carries, inherited from each of the four base classes; the registry checks both."""

    Options: ClassVar[type[PluginOptions]] = PluginOptions
    """The pydantic model of the plugin's options; gankit builds the plugin as
    ``PluginClass(PluginClass.Options(...))``."""
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    """The plugin API the class was written for. The inherited value always matches; set it explicitly to pin it,
    and a gankit speaking another API refuses the plugin when it is loaded rather than failing in mid-training."""


class _Model(_Plugin):
    """What the engine may ask of any model: generators and discriminators inherit it."""

    prefers_channels_last: ClassVar[bool] = False
    """Set True for convolutional models: the engine then keeps weights and batches in channels-last memory format,
    which is faster for convolutions on recent CPUs and on tensor-core GPUs (``--channels-last auto``)."""


class Generator(_Model, nn.Module, abc.ABC):
    """Maps latent vectors (and optional labels) to images in ``[-1, 1]``.

    Subclasses build their layers in ``__init__(self, options)`` after calling ``super().__init__(options)`` and
    implement ``forward``. ``latent_dim``, ``image_shape`` and ``num_classes`` come from the options, so the engine,
    the exporter and the samplers never have to know the architecture.
    """

    Options: ClassVar[type[GeneratorOptions]] = GeneratorOptions

    def __init__(self, options: GeneratorOptions) -> None:
        """Store the validated ``options`` as ``self.options``; subclasses call this first."""
        super().__init__()
        self.options = options

    @property
    def latent_dim(self) -> int:
        """Size of the latent vectors ``forward`` takes: ``options.latent_dim``."""
        return self.options.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images ``forward`` returns."""
        return (self.options.channels, self.options.image_size, self.options.image_size)

    @property
    def num_classes(self) -> int:
        """Classes the generator is conditioned on, 0 when unconditional: ``options.num_classes``."""
        return self.options.num_classes

    def sample_latent(self, batch_size: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Draw a latent batch from this generator's prior, on the device of ``generator`` (CPU by default).

        The default prior is the standard normal. Override to use another prior, together with
        ``latent_distribution``, whose name the export records so that samplers outside gankit can reproduce it.
        """
        device = generator.device if generator is not None else torch.device("cpu")
        return torch.randn(batch_size, self.latent_dim, generator=generator, device=device)

    latent_distribution: ClassVar[str] = "standard_normal"
    """The name of the prior ``sample_latent`` draws from."""

    @abc.abstractmethod
    def forward(self, latent: Tensor, labels: Tensor | None = None) -> Tensor:
        """Return images of shape ``(N, *image_shape)`` in ``[-1, 1]`` for latents of shape ``(N, latent_dim)``."""


class Discriminator(_Model, nn.Module, abc.ABC):
    """Maps images (and optional labels) to one raw logit per image.

    No sigmoid inside: the losses work on logits, which is numerically stable and safe under autocast.
    """

    Options: ClassVar[type[DiscriminatorOptions]] = DiscriminatorOptions

    def __init__(self, options: DiscriminatorOptions) -> None:
        """Store the validated ``options`` as ``self.options``; subclasses call this first."""
        super().__init__()
        self.options = options

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images ``forward`` accepts."""
        return (self.options.channels, self.options.image_size, self.options.image_size)

    @property
    def num_classes(self) -> int:
        """Classes the discriminator is conditioned on, 0 when unconditional: ``options.num_classes``."""
        return self.options.num_classes

    @abc.abstractmethod
    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Return logits of shape ``(N,)``: high for images the discriminator believes are real."""


@dataclass(frozen=True)
class DiscriminatorInputs:
    """Everything a discriminator objective may need for one step.

    ``discriminator`` is there for losses that evaluate more than the two batches, such as a gradient penalty on
    interpolates (WGAN-GP). ``real_images`` requires grad when the loss sets ``requires_real_grad`` (R1).
    """

    real_images: Tensor
    """The real batch, in ``[-1, 1]``."""
    fake_images: Tensor
    """The fake batch, detached from the generator."""
    real_logits: Tensor
    """The discriminator's logits for the real batch, shape ``(N,)``."""
    fake_logits: Tensor
    """The discriminator's logits for the fake batch, shape ``(N,)``."""
    labels: Tensor | None
    """The real batch's labels when the models are conditional, else ``None``."""
    discriminator: Discriminator
    """The model being trained."""
    step: int
    """Generator steps done so far (the same for every discriminator update of a step)."""


@dataclass(frozen=True)
class GeneratorInputs:
    """Everything a generator objective may need for one step. ``fake_images`` carry the generator's graph."""

    real_images: Tensor
    """The real batch of the step's last discriminator update."""
    fake_images: Tensor
    """The fake batch, attached to the generator's graph."""
    fake_logits: Tensor
    """The discriminator's logits for them (its weights are frozen during the generator's update)."""
    labels: Tensor | None
    """The labels when the models are conditional, else ``None``."""
    discriminator: Discriminator
    """The discriminator."""
    step: int
    """Generator steps done so far."""


class Loss(_Plugin, abc.ABC):
    """The two adversarial objectives, each a scalar to minimise.

    The engine computes the logits once and hands them over with the images and the discriminator, so any loss,
    from BCE to WGAN-GP or R1, is a plugin and the engine never changes.
    """

    Options: ClassVar[type[LossOptions]] = LossOptions
    requires_real_grad: ClassVar[bool] = False
    """Set to True when ``discriminator_loss`` differentiates with respect to the real images (R1 penalty)."""

    def __init__(self, options: LossOptions) -> None:
        """Store the validated ``options`` as ``self.options``; subclasses call this first."""
        self.options = options

    @abc.abstractmethod
    def discriminator_loss(self, inputs: DiscriminatorInputs) -> Tensor:
        """The discriminator's (critic's) objective for one step, a scalar."""

    @abc.abstractmethod
    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        """The generator's objective for one step, a scalar."""


@dataclass(frozen=True)
class ImageData:
    """A whole dataset split held in memory."""

    images: Tensor
    """``uint8``, shape ``(N, C, H, W)``."""
    labels: Tensor
    """``int64``, shape ``(N,)``."""
    num_classes: int
    """The number of classes the labels are drawn from."""


class Dataset(_Plugin, abc.ABC):
    """A source of training images, loaded whole as uint8 so batches can be cut on the training device."""

    Options: ClassVar[type[DatasetOptions]] = DatasetOptions

    def __init__(self, options: DatasetOptions) -> None:
        """Store the validated ``options`` as ``self.options``; subclasses call this first."""
        self.options = options

    @abc.abstractmethod
    def load(self, split: Split = "train") -> ImageData:
        """Return the split; raise ``gankit.errors.DataError`` with a one-line fix when it cannot be had."""
