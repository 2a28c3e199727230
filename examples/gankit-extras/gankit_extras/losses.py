"""Three adversarial objectives beyond BCE, each written against ``gankit.interfaces`` alone.

- ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): D minimises ``relu(1 - D(x)) + relu(1 + D(G(z)))``,
  G minimises ``-D(G(z))``. The usual partner of spectral normalisation.
- ``wgan-gp`` (Gulrajani et al. 2017): the critic minimises ``D(G(z)) - D(x) + lambda * (||grad D(x_hat)|| - 1)^2``
  on random interpolates ``x_hat`` between real and fake images; G minimises ``-D(G(z))``. Train it with several
  critic steps per generator step: ``gankit train --loss wgan-gp --d-steps 5``.
- ``lsgan`` (Mao et al. 2017): least squares on the raw outputs, D minimises ``0.5 (D(x) - 1)^2 + 0.5 D(G(z))^2``,
  G minimises ``0.5 (D(G(z)) - 1)^2``.

Discriminators return raw logits (gankit's convention); every loss here uses them as they are, in float32, so
the objectives stay accurate when the models run under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from gankit.interfaces import DiscriminatorInputs, GeneratorInputs, Loss, LossOptions
from pydantic import Field
from torch import Tensor

__all__ = [
    "HingeLoss",
    "HingeOptions",
    "LeastSquaresLoss",
    "LeastSquaresOptions",
    "WassersteinGPLoss",
    "WassersteinGPOptions",
]


class HingeOptions(LossOptions):
    """Options of the hinge loss."""

    margin: float = Field(
        1.0, gt=0.0, le=100.0, description="Margin of the hinge: D pushes real above +m, fake below -m."
    )


class HingeLoss(Loss):
    """Hinge loss (Lim & Ye 2017, Miyato et al. 2018): D ``relu(m - real) + relu(m + fake)``, G ``-fake``."""

    Options = HingeOptions
    options: HingeOptions
    api_version = 1  # the gankit plugin API this class was written for

    def discriminator_loss(self, inputs: DiscriminatorInputs) -> Tensor:
        margin = self.options.margin
        real, fake = inputs.real_logits.float(), inputs.fake_logits.float()
        return F.relu(margin - real).mean() + F.relu(margin + fake).mean()

    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        return -inputs.fake_logits.float().mean()


class WassersteinGPOptions(LossOptions):
    """Options of the WGAN-GP loss."""

    gp_weight: float = Field(10.0, ge=0.0, le=1e6, description="Weight lambda of the gradient penalty (paper: 10).")
    drift_weight: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Weight of the drift term mean(D(x)^2) that keeps critic outputs near 0 (Karras et al.: 0.001).",
    )


class WassersteinGPLoss(Loss):
    """WGAN-GP (Gulrajani et al. 2017): a critic with a gradient penalty; use ``--d-steps 5``.

    The penalty evaluates the critic again, on interpolates, through ``inputs.discriminator``. It runs in float32
    with autocast switched off: double backward through bf16 or fp16 makes the gradient norms too coarse to
    penalise (fp16 underflows), and fp16's loss scaling does not reach gradients taken inside the loss. The
    engine's gradient scaler still scales the total loss, penalty included, for the one backward that follows.
    The penalty is reported as ``gradient_penalty`` (the Wasserstein estimate is the logit gap gankit logs anyway).
    """

    Options = WassersteinGPOptions
    options: WassersteinGPOptions
    api_version = 2  # the gankit plugin API this class was written for: 2 has inputs.report
    metric_names = ("gradient_penalty",)

    def gradient_penalty(self, inputs: DiscriminatorInputs) -> Tensor:
        """``mean((||grad_x D(x_hat)||_2 - 1)^2)`` at one random point between each real and fake image."""
        real = inputs.real_images.detach().float()
        fake = inputs.fake_images.detach().float()
        mix = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
        interpolates = torch.lerp(fake, real, mix).requires_grad_(True)
        with torch.autocast(real.device.type, enabled=False):
            critic = inputs.discriminator(interpolates, inputs.labels).float()
            (grad,) = torch.autograd.grad(critic.sum(), interpolates, create_graph=True)
        # The epsilon keeps the norm differentiable where a gradient is exactly zero.
        norms = (grad.flatten(1).pow(2).sum(dim=1) + 1e-12).sqrt()
        return ((norms - 1.0) ** 2).mean()

    def discriminator_loss(self, inputs: DiscriminatorInputs) -> Tensor:
        real, fake = inputs.real_logits.float(), inputs.fake_logits.float()
        loss = fake.mean() - real.mean()
        if self.options.gp_weight > 0:
            penalty = self.gradient_penalty(inputs)
            inputs.report("gradient_penalty", penalty)
            loss = loss + self.options.gp_weight * penalty
        if self.options.drift_weight > 0:
            loss = loss + self.options.drift_weight * real.pow(2).mean()
        return loss

    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        return -inputs.fake_logits.float().mean()


class LeastSquaresOptions(LossOptions):
    """Options of the least-squares loss: the targets a, b, c of Mao et al. (2017), eq. 2."""

    fake_target: float = Field(0.0, ge=-10.0, le=10.0, description="Target a that D gives fake images.")
    real_target: float = Field(1.0, ge=-10.0, le=10.0, description="Target b that D gives real images.")
    generator_target: float = Field(
        1.0, ge=-10.0, le=10.0, description="Target c that G wants D to give its images (usually c = b)."
    )


class LeastSquaresLoss(Loss):
    """LSGAN (Mao et al. 2017): D ``0.5 (real - b)^2 + 0.5 (fake - a)^2``, G ``0.5 (fake - c)^2``, on raw logits."""

    Options = LeastSquaresOptions
    options: LeastSquaresOptions
    api_version = 1  # the gankit plugin API this class was written for

    def discriminator_loss(self, inputs: DiscriminatorInputs) -> Tensor:
        real, fake = inputs.real_logits.float(), inputs.fake_logits.float()
        return (
            0.5 * (real - self.options.real_target).pow(2).mean()
            + 0.5 * (fake - self.options.fake_target).pow(2).mean()
        )

    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        return 0.5 * (inputs.fake_logits.float() - self.options.generator_target).pow(2).mean()
