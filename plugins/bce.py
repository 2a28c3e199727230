"""The original GAN objectives of Goodfellow et al. (2014), computed from logits.

Both losses share the discriminator's binary cross-entropy, ``-log D(x) - log(1 - D(G(z)))``, written with softplus
so it never takes the log of a saturated sigmoid. They differ only in the generator's objective:

- ``minimax`` minimises ``log(1 - D(G(z)))``, the literal two-player game, whose gradient vanishes when the
  discriminator confidently rejects the fakes (early in training);
- ``nonsat`` minimises ``-log D(G(z))`` instead, the paper's practical fix with the same fixed point but strong
  gradients exactly when the generator is losing.

Logits are cast to float32 first, so the losses stay accurate when the models run under autocast.

Both can add R1 (Mescheder et al. 2018) to the discriminator's objective, ``gamma / 2 * E ||grad_x D(x)||^2`` on real
images, lazily as StyleGAN2 does (Karras et al. 2020): every ``r1_interval`` steps, scaled by the interval, through
the ``Loss`` interface's ``discriminator_regularizer``. It is off by default (``r1_gamma=0``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from gankit.interfaces import DiscriminatorInputs, GeneratorInputs, Loss, LossOptions

__all__ = ["BCELossOptions", "MinimaxLoss", "NonSaturatingLoss", "r1_penalty"]


class BCELossOptions(LossOptions):
    """Options of the BCE losses."""

    label_smoothing: float = Field(
        0.0,
        ge=0.0,
        lt=0.5,
        description="one-sided label smoothing: real targets become 1 - value (Salimans et al. 2016)",
    )
    r1_gamma: float = Field(
        0.0,
        ge=0.0,
        le=1e6,
        description="weight gamma of the R1 penalty gamma / 2 * E||grad_x D(x)||^2 on real images "
        "(Mescheder et al. 2018); 0 turns it off",
    )
    r1_interval: int = Field(
        16,
        ge=1,
        le=1000,
        description="steps between two R1 penalties, each scaled by the interval (lazy regularisation, StyleGAN2: 16)",
    )


class _BCELoss(Loss):
    """The shared discriminator objective; subclasses supply the generator's.

    Their logits are log-odds, so they also report the probability view: ``d_real``, mean D(x), and ``d_fake``,
    mean D(G(z)), as the discriminator's update saw them; with R1 on, also ``r1_penalty``, E||grad_x D(x)||^2.
    With R1 off (``r1_gamma=0``, the default) there is no regulariser at all, so the steps are exactly as before.
    """

    Options = BCELossOptions
    options: BCELossOptions
    metric_names: tuple[str, ...] = ("d_real", "d_fake")

    def __init__(self, options: BCELossOptions) -> None:
        super().__init__(options)
        if self.options.r1_gamma > 0:
            self.metric_names = ("d_real", "d_fake", "r1_penalty")

    @property
    def uses_regularizer(self) -> bool:
        """R1 runs only when ``r1_gamma`` is above 0."""
        return self.options.r1_gamma > 0

    @property
    def regularization_interval(self) -> int:
        """R1 runs on the steps that are a multiple of ``r1_interval``."""
        return self.options.r1_interval

    def discriminator_loss(self, inputs: DiscriminatorInputs) -> Tensor:
        """``softplus(-real) + softplus(fake)``, batch means; smoothing moves only the real target to ``1 - s``."""
        real = inputs.real_logits.float()
        fake = inputs.fake_logits.float()
        inputs.report("d_real", real.detach().sigmoid().mean())
        inputs.report("d_fake", fake.detach().sigmoid().mean())
        smoothing = self.options.label_smoothing
        # Binary cross-entropy with target t is t * softplus(-x) + (1 - t) * softplus(x).
        real_term = F.softplus(-real)
        if smoothing > 0:
            real_term = (1.0 - smoothing) * real_term + smoothing * F.softplus(real)
        return real_term.mean() + F.softplus(fake).mean()

    def discriminator_regularizer(self, inputs: DiscriminatorInputs) -> Tensor:
        """``r1_gamma / 2 * r1_penalty(inputs)``, which the engine scales by ``r1_interval``."""
        penalty = r1_penalty(inputs)
        inputs.report("r1_penalty", penalty)
        return self.options.r1_gamma / 2 * penalty


class NonSaturatingLoss(_BCELoss):
    """BCE discriminator; the generator minimises ``-log D(G(z))`` (non-saturating)."""

    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        """``softplus(-fake).mean()``: its gradient is near -1/N per logit when D rejects the fakes."""
        return F.softplus(-inputs.fake_logits.float()).mean()


class MinimaxLoss(_BCELoss):
    """BCE discriminator; the generator minimises ``log(1 - D(G(z)))`` (the original minimax game)."""

    recommended_training: ClassVar[dict[str, Any]] = {"lr_g": 5e-4, "lr_d": 5e-4, "ema": False}
    """Measured with the DCGAN on MNIST, 3 seeds, one epoch (docs/results.md): at Adam 1e-3 with an EMA of G,
    minimax's saturating gradient lets D win and G collapse (FD 687 and 1,091 on two seeds); at 5e-4 it trains."""

    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        """``-softplus(fake).mean()``: kept for comparison, since it saturates when D rejects the fakes."""
        return -F.softplus(inputs.fake_logits.float()).mean()


def r1_penalty(inputs: DiscriminatorInputs) -> Tensor:
    """``E ||grad_x D(x)||^2`` over the real batch, with the graph to D's weights (``create_graph``).

    In float32 it differentiates the engine's real logits, which carry the graph from the real images on the
    regularising updates (no extra forward). Under ``--amp`` the logits are bf16 or fp16, too coarse for a gradient
    norm (fp16 underflows), so D runs once more on the real images in float32 with autocast off, as
    docs/plugins.md's "Gradient penalties under --amp" advises; that forward also moves batch-norm statistics.
    """
    images, logits = inputs.real_images, inputs.real_logits
    if logits.dtype != torch.float32:
        images = images.detach().float().requires_grad_(True)
        with torch.autocast(images.device.type, enabled=False):
            logits = inputs.discriminator(images, inputs.labels)
    (grad,) = torch.autograd.grad(logits.float().sum(), images, create_graph=True)
    return grad.float().flatten(1).pow(2).sum(dim=1).mean()
