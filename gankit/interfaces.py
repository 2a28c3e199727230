"""The plugin contract: every generator, discriminator, loss, dataset and tracker gankit uses implements one of these.

This module is the reference for plugin authors; its docstrings are the documentation. A plugin is a class that
subclasses one of the five bases below, declares its options as a pydantic model in ``Options`` and is advertised
through an entry point (see ``gankit.registry``). gankit builds it as ``PluginClass(options)`` where ``options`` is
an instance of ``PluginClass.Options`` already validated.

Conventions every plugin can rely on:

- Images are float tensors of shape ``(N, C, H, W)`` with values in ``[-1, 1]``.
- Labels, when a model is conditional (``num_classes > 0``), are ``int64`` tensors of shape ``(N,)``.
- Discriminators return raw logits; losses apply the sigmoid (or not) themselves.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

RECOMMENDABLE_SETTINGS = frozenset(
    {"batch_size", "lr_g", "lr_d", "betas", "d_steps", "ema", "ema_kimg", "ema_rampup", "lr_schedule", "lr_warmup"}
)
"""The training settings a generator or a loss may recommend (``recommended_training``): the recipe, not the run."""

PLUGIN_API_VERSION = 2
"""The plugin API this gankit speaks; bumped when the contract changes incompatibly. Version 2 made
``DiscriminatorInputs`` and ``GeneratorInputs`` keyword-only and added what a loss can declare and report."""
MIN_PLUGIN_API_VERSION = 1
"""The oldest plugin API still accepted: a class written for any version from this one to ``PLUGIN_API_VERSION``
loads. A version-1 loss works unchanged, because the engine builds the inputs by keyword and passes them the same
fields; only code that builds the inputs positionally (a plugin's own tests) needs keywords."""

Split = Literal["train", "test"]
"""The dataset splits a ``Dataset.load`` is asked for."""


class PluginOptions(BaseModel):
    """Base of every plugin's options: typed, bounded fields with a one-line ``description`` each.

    Unknown keys are refused, so a typo in ``--gen-opt widht=64`` is an error rather than silently ignored. Instances
    are frozen. The same model drives validation, ``gankit info`` and the option tables of the docs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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


class TrackerOptions(PluginOptions):
    """Options every tracker accepts (none); subclass it to add your own fields."""


class _Plugin:
    """What every plugin class carries, inherited from each of the five base classes; the registry checks both."""

    Options: ClassVar[type[PluginOptions]] = PluginOptions
    """The pydantic model of the plugin's options, a subclass of the kind's (``GeneratorOptions``, ...); gankit builds
    the plugin as ``PluginClass(PluginClass.Options(...))``. Its defaults are validated when the class loads, as
    pydantic validates given values: a default outside its own bounds is refused there, naming the option."""
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    """The plugin API the class was written for. The inherited value always matches; set it explicitly to pin it,
    and a gankit whose accepted range (``MIN_PLUGIN_API_VERSION`` to ``PLUGIN_API_VERSION``) does not include it
    refuses the plugin when it is loaded rather than failing in mid-training."""
    recommended_training: ClassVar[Mapping[str, Any]] = {}
    """Training settings the plugin trains best with, read from the generator and the loss: used wherever the user
    sets none (a flag or a config file's value always wins), the loss's over the generator's where both recommend
    one. Keys from ``RECOMMENDABLE_SETTINGS`` (``{"lr_g": 5e-4, "lr_d": 5e-4, "ema": False}``); ``gankit info KIND
    NAME`` shows them. Recommend what you measured (``gankit compare`` measures it)."""
    options: PluginOptions

    def __init__(self, options: PluginOptions) -> None:
        """Store the validated ``options`` as ``self.options``; subclasses call ``super().__init__(options)`` first
        (for models, this also initialises ``torch.nn.Module``)."""
        super().__init__()
        self.options = options


class _Model(_Plugin):
    """What the engine may ask of any model: generators and discriminators inherit it."""

    prefers_channels_last: ClassVar[bool] = False
    """Set True for convolutional models: the engine then keeps weights and batches in channels-last memory format,
    which is faster for convolutions on recent CPUs and on tensor-core GPUs (``--channels-last auto``)."""

    options: ModelOptions

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images the model makes (a generator) or takes (a discriminator)."""
        return (self.options.channels, self.options.image_size, self.options.image_size)

    @property
    def num_classes(self) -> int:
        """Classes the model is conditioned on, 0 when unconditional: ``options.num_classes``."""
        return self.options.num_classes


class Generator(_Model, nn.Module, abc.ABC):
    """Maps latent vectors (and optional labels) to images in ``[-1, 1]``.

    Subclasses build their layers in ``__init__(self, options)`` after calling ``super().__init__(options)`` and
    implement ``forward``. ``latent_dim``, ``image_shape`` and ``num_classes`` come from the options, so the engine,
    the exporter and the samplers never have to know the architecture.
    """

    Options: ClassVar[type[GeneratorOptions]] = GeneratorOptions
    options: GeneratorOptions

    @property
    def latent_dim(self) -> int:
        """Size of the latent vectors ``forward`` takes: ``options.latent_dim``."""
        return self.options.latent_dim

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
    options: DiscriminatorOptions

    @abc.abstractmethod
    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Return logits of shape ``(N,)``: high for images the discriminator believes are real."""


@dataclass(frozen=True, kw_only=True)
class _LossInputs:
    """What both objectives' inputs carry: the step number and a place to report named measurements.

    The inputs are keyword-only, so gankit can add fields without breaking a plugin that builds them (in its tests):
    ``DiscriminatorInputs(real_images=..., fake_images=..., ...)``. Their tensors are read-only: autograd, the other
    objective and the logged statistics still need them, so a loss that modifies one in place (``sigmoid_()``,
    ``clamp_()``) is stopped right after the call, naming the tensor.
    """

    step: int
    """Generator steps done so far (the same for every discriminator update of a step)."""
    metrics: dict[str, Tensor] = field(default_factory=dict)
    """The named scalars the loss reported for this call (``report``); the engine reads them after the call."""

    def report(self, name: str, value: Tensor) -> None:
        """Record a scalar the loss measured, e.g. ``inputs.report("r1_penalty", penalty)``.

        ``name`` must be one of the loss's ``metric_names``. The value is detached and stays on the device; the engine
        averages it over the steps between two log lines (over the steps that reported it) and reads it only there,
        so reporting costs no host synchronisation. It then appears in ``metrics.jsonl``, on the progress line and
        in ``loss.png``. Reported twice in one step (``--d-steps``), the last value counts. A Python number is refused:
        report the tensor itself (its ``.item()`` or ``float()`` would have cost the host synchronisation anyway).
        """
        if not isinstance(value, Tensor):
            raise TypeError(
                f"report({name!r}, ...) takes a tensor, got {type(value).__name__}: report the tensor itself, not "
                "its .item() or float()"
            )
        self.metrics[name] = value.detach()


@dataclass(frozen=True, kw_only=True)
class DiscriminatorInputs(_LossInputs):
    """Everything a discriminator objective may need for one discriminator update.

    ``discriminator`` is there for losses that evaluate more than the two batches, such as a gradient penalty on
    interpolates (WGAN-GP). ``real_images`` require grad when the loss sets ``requires_real_grad`` (every update)
    or on the updates where ``discriminator_regularizer`` runs.
    """

    real_images: Tensor
    """The real batch, in ``[-1, 1]``."""
    fake_images: Tensor
    """The fake batch, detached from the generator."""
    real_logits: Tensor
    """The discriminator's logits for the real batch, shape ``(N,)``, in the autocast dtype (bf16 under
    ``--amp bf16``)."""
    fake_logits: Tensor
    """The discriminator's logits for the fake batch, shape ``(N,)``."""
    labels: Tensor | None
    """The real batch's labels when the models are conditional, else ``None``; the fakes were generated for the
    same labels."""
    discriminator: Discriminator
    """The model being trained (the plain module, in train mode; not the DDP or compiled wrapper)."""


@dataclass(frozen=True, kw_only=True)
class GeneratorInputs(_LossInputs):
    """Everything a generator objective may need for one step. ``fake_images`` carry the generator's graph."""

    real_images: Tensor
    """The real batch of the step's last discriminator update."""
    fake_images: Tensor
    """The fake batch, attached to the generator's graph."""
    fake_logits: Tensor
    """The discriminator's logits for them (D in train mode, its weights frozen during the generator's update)."""
    real_logits: Tensor | None = None
    """The discriminator's logits for ``real_images``, without grad, when the loss sets
    ``generator_needs_real_logits`` (relativistic losses), else ``None`` (a loss that reads them without the flag is
    told to set it). They come from the current D, after its
    update of this step, like ``fake_logits``; computing them leaves D's buffers (BatchNorm running statistics,
    spectral-norm vectors) untouched."""
    labels: Tensor | None
    """The labels when the models are conditional, else ``None``: those of the real batch, which the fakes were
    generated for."""
    discriminator: Discriminator
    """The discriminator."""


class Loss(_Plugin, abc.ABC):
    """The two adversarial objectives, each a scalar to minimise.

    The engine computes the logits once and hands them over with the images and the discriminator, so any loss,
    from BCE to WGAN-GP, R1 or a relativistic loss, is a plugin and the engine never changes. A loss declares what
    it needs with the class attributes below and reports what it measures with ``inputs.report``.
    """

    Options: ClassVar[type[LossOptions]] = LossOptions
    options: LossOptions
    requires_real_grad: ClassVar[bool] = False
    """Set to True when ``discriminator_loss`` differentiates with respect to the real images on every update (R1
    in the loss itself). Prefer ``discriminator_regularizer``, which pays for it only every
    ``regularization_interval`` steps."""
    generator_needs_real_logits: ClassVar[bool] = False
    """Set to True when ``generator_loss`` needs ``inputs.real_logits`` (relativistic losses): the engine then runs
    D on the real batch once more in the generator step, without grad and without touching D's buffers."""
    metric_names: tuple[str, ...] = ()
    """The names of the scalars the loss reports with ``inputs.report`` (e.g. ``("r1_penalty",)``): lowercase
    identifiers, none of them a field gankit logs itself (``d_loss``, ``d_real_logit``, ...). A class attribute,
    or set in ``__init__`` when it depends on the options."""

    @property
    def regularization_interval(self) -> int:
        """Run ``discriminator_regularizer`` every this many steps (lazy regularisation, StyleGAN2: 16); 1 by
        default. Override with a class attribute or a property reading an option."""
        return 1

    @abc.abstractmethod
    def discriminator_loss(self, inputs: DiscriminatorInputs) -> Tensor:
        """The discriminator's (critic's) objective for one update, a scalar (a 0-dimensional tensor)."""

    @abc.abstractmethod
    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        """The generator's objective for one step, a scalar (a 0-dimensional tensor)."""

    def discriminator_regularizer(self, inputs: DiscriminatorInputs) -> Tensor:
        """A regulariser added to the discriminator's loss every ``regularization_interval`` steps, times the
        interval (so its average weight is unchanged), as StyleGAN2's lazy R1. Override it to have one.

        It runs on the updates of steps where ``step % regularization_interval == 0``, after ``discriminator_loss``
        and with the same ``inputs``; on exactly those updates ``real_images`` require grad and ``real_logits``
        carry the graph from them. Return a scalar.
        """
        raise NotImplementedError

    @property
    def uses_regularizer(self) -> bool:
        """Whether ``discriminator_regularizer`` runs at all: by default, when a subclass overrides it.

        A loss whose penalty is optional returns False while it is off (a weight of 0), so those steps cost
        nothing extra: real images need no gradient and no regulariser is called.
        """
        return type(self).discriminator_regularizer is not Loss.discriminator_regularizer


@dataclass(frozen=True)
class ImageData:
    """A whole dataset split held in memory."""

    images: Tensor
    """``uint8``, shape ``(N, C, H, W)``."""
    labels: Tensor
    """``int64``, shape ``(N,)``."""
    num_classes: int
    """The number of classes the labels are drawn from."""
    class_names: tuple[str, ...] | None = None
    """Optional: the name of each class, label ``i`` being ``class_names[i]``; recorded in the model card of exports."""
    license: str | None = None
    """Optional: the licence the data is published under (an SPDX id such as ``MIT`` where there is one); ``None``
    when it is not known. Recorded in the model card of exports."""


class Dataset(_Plugin, abc.ABC):
    """A source of training images, loaded whole as uint8 so batches can be cut on the training device."""

    Options: ClassVar[type[DatasetOptions]] = DatasetOptions
    options: DatasetOptions

    @abc.abstractmethod
    def load(self, split: Split = "train") -> ImageData:
        """Return the split; raise ``gankit.errors.DataError`` with a one-line fix when it cannot be had."""


class Tracker(_Plugin, abc.ABC):
    """Sends a run's scalars, sample grids and hyperparameters to an experiment tracker: TensorBoard, MLflow, W&B.

    gankit calls a tracker on the main process only, at the points where it already logs: ``metrics.jsonl`` stays
    the record of the run, and a tracker is handed the same values, with no extra host synchronisation. Its methods
    run on a thread of its own, in the order gankit handed them over, so a tracker that blocks never holds training
    up (a call over 10 seconds is one warning); they need not be thread-safe, as no two run at once. Check in
    ``__init__`` that what the tracker needs is installed, and raise ``gankit.errors.PluginError`` with the
    ``pip install`` line when it is not: the run then stops before it starts. Any exception from the other methods
    becomes one warning; that tracker is closed and left out, and training continues.
    """

    Options: ClassVar[type[TrackerOptions]] = TrackerOptions
    options: TrackerOptions

    @abc.abstractmethod
    def start(self, run_dir: Path, hyperparameters: Mapping[str, Any], *, resumed_at_step: int) -> None:
        """Open the tracker's run for the run folder ``run_dir``; ``hyperparameters`` is what ``config.json`` records.

        ``resumed_at_step`` is 0 for a fresh run. A resumed run restarts from its checkpoint at ``resumed_at_step``:
        anything logged at a later step belongs to steps trained again, so drop or hide it (TensorBoard:
        ``purge_step``) to keep the stream free of duplicates.
        """

    @abc.abstractmethod
    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Record one line of ``metrics.jsonl``: every numeric value but ``step``, by its key there (``d_loss``,
        ``g_loss``, ``d_real``, ``d_fake``, ``images_per_sec``, ``eval/frechet_distance``, ...)."""

    def log_image(self, tag: str, step: int, image_path: Path) -> None:
        """Record the picture at ``image_path``, a PNG in the run folder: tag ``samples`` for each sample grid.

        The default ignores it.
        """

    def close(self) -> None:
        """Flush and let go; called once when the run ends, with an error too. The default does nothing."""
