"""Loss plugins that exist only for the tests: proof that penalties needing gradients fit the Loss contract.

``WassersteinGP`` evaluates the critic on extra images (interpolates) through ``inputs.discriminator``; ``R1NonSat``
differentiates the real logits the engine computed with respect to the real images (``requires_real_grad``).
Both are written as a third-party author would, against ``gankit.interfaces`` alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from gankit.interfaces import DiscriminatorInputs, GeneratorInputs, Loss, LossOptions


class WassersteinGPOptions(LossOptions):
    """Options of the WGAN-GP loss."""

    gp_weight: float = Field(10.0, ge=0.0, le=1e6, description="Weight of the gradient penalty (lambda).")


class WassersteinGP(Loss):
    """WGAN-GP (Gulrajani et al. 2017): critic ``fake - real + lambda * (||grad D(x_hat)|| - 1)^2`` on interpolates."""

    Options = WassersteinGPOptions
    options: WassersteinGPOptions

    def gradient_penalty(self, inputs: DiscriminatorInputs) -> Tensor:
        """``((||grad_x D(x_hat)||_2 - 1)^2).mean()`` at random points between real and fake images."""
        real = inputs.real_images.detach()
        fake = inputs.fake_images.detach()
        mix = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
        interpolates = (mix * real + (1 - mix) * fake).requires_grad_(True)
        critic = inputs.discriminator(interpolates, inputs.labels)
        (grad,) = torch.autograd.grad(critic.sum(), interpolates, create_graph=True)
        norms = grad.float().flatten(1).norm(2, dim=1)
        return ((norms - 1) ** 2).mean()

    def discriminator_loss(self, inputs: DiscriminatorInputs) -> Tensor:
        wasserstein = inputs.fake_logits.float().mean() - inputs.real_logits.float().mean()
        return wasserstein + self.options.gp_weight * self.gradient_penalty(inputs)

    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        return -inputs.fake_logits.float().mean()


class R1Options(LossOptions):
    """Options of the R1-regularised non-saturating loss."""

    gamma: float = Field(10.0, ge=0.0, le=1e6, description="Weight of the R1 penalty, applied as gamma / 2.")


class R1NonSat(Loss):
    """Non-saturating loss plus R1 (Mescheder et al. 2018): ``gamma / 2 * ||grad_x D(x)||^2`` on real images."""

    Options = R1Options
    options: R1Options
    requires_real_grad = True

    def r1_penalty(self, inputs: DiscriminatorInputs) -> Tensor:
        """Mean over the batch of the squared gradient norm of the real logits w.r.t. the real images."""
        if not inputs.real_images.requires_grad:
            raise ValueError("R1 needs real_images.requires_grad; the engine must honour requires_real_grad")
        (grad,) = torch.autograd.grad(inputs.real_logits.sum(), inputs.real_images, create_graph=True)
        return grad.float().flatten(1).pow(2).sum(dim=1).mean()

    def discriminator_loss(self, inputs: DiscriminatorInputs) -> Tensor:
        real = inputs.real_logits.float()
        fake = inputs.fake_logits.float()
        nonsat = F.softplus(-real).mean() + F.softplus(fake).mean()
        return nonsat + self.options.gamma / 2 * self.r1_penalty(inputs)

    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        return F.softplus(-inputs.fake_logits.float()).mean()
