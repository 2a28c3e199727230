"""Loss plugins that exist only for the tests: proof that penalties needing gradients fit the Loss contract.

``WassersteinGP`` evaluates the critic on extra images (interpolates) through ``inputs.discriminator``; ``R1NonSat``
differentiates the real logits the engine computed with respect to the real images (``requires_real_grad``).
Both are written as a third-party author would, against ``gankit.interfaces`` alone.

``LazyR1NonSat`` regularises every k steps and reports ``r1_penalty``; ``RelativisticAverage`` reads the real logits
in the generator step; ``VectorLoss`` and ``UndeclaredR1`` are the mistakes the engine must name in one line.
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


class LazyR1Options(R1Options):
    """Options of the lazily regularised R1 loss."""

    interval: int = Field(16, ge=1, le=1000, description="Steps between two R1 penalties (StyleGAN2: 16).")


class LazyR1NonSat(Loss):
    """Non-saturating loss with R1 every ``interval`` steps (lazy regularisation, Karras et al. 2020).

    The penalty differentiates the engine's real logits, which carry the graph from the real images on exactly the
    regularising updates; it records the steps it ran on, for the tests.
    """

    Options = LazyR1Options
    options: LazyR1Options
    metric_names = ("r1_penalty",)

    def __init__(self, options: LazyR1Options) -> None:
        super().__init__(options)
        self.penalised_steps: list[int] = []
        self.real_grad_steps: list[int] = []

    @property
    def regularization_interval(self) -> int:
        return self.options.interval

    def discriminator_loss(self, inputs: DiscriminatorInputs) -> Tensor:
        if inputs.real_images.requires_grad:
            self.real_grad_steps.append(inputs.step)
        real, fake = inputs.real_logits.float(), inputs.fake_logits.float()
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def discriminator_regularizer(self, inputs: DiscriminatorInputs) -> Tensor:
        self.penalised_steps.append(inputs.step)
        (grad,) = torch.autograd.grad(inputs.real_logits.sum(), inputs.real_images, create_graph=True)
        penalty = grad.float().flatten(1).pow(2).sum(dim=1).mean()
        inputs.report("r1_penalty", penalty)
        return self.options.gamma / 2 * penalty

    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        return F.softplus(-inputs.fake_logits.float()).mean()


class RelativisticAverage(Loss):
    """The relativistic average GAN (Jolicoeur-Martineau 2018) with BCE: each side is judged against the other's
    mean logit, so the generator's objective needs the real logits too (``generator_needs_real_logits``)."""

    generator_needs_real_logits = True
    metric_names = ("logit_gap",)

    def discriminator_loss(self, inputs: DiscriminatorInputs) -> Tensor:
        real, fake = inputs.real_logits.float(), inputs.fake_logits.float()
        inputs.report("logit_gap", real.mean() - fake.mean())
        return F.softplus(-(real - fake.mean())).mean() + F.softplus(fake - real.mean()).mean()

    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        if inputs.real_logits is None:
            raise ValueError("a relativistic loss needs inputs.real_logits; the engine must honour the flag")
        real, fake = inputs.real_logits.float(), inputs.fake_logits.float()
        return F.softplus(-(fake - real.mean())).mean() + F.softplus(real - fake.mean()).mean()


class VectorLoss(Loss):
    """A loss that forgets to reduce: it returns one value per image."""

    def discriminator_loss(self, inputs: DiscriminatorInputs) -> Tensor:
        return F.softplus(-inputs.real_logits.float()) + F.softplus(inputs.fake_logits.float())

    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        return F.softplus(-inputs.fake_logits.float())


class UndeclaredR1(Loss):
    """R1 without ``requires_real_grad``: a deliberate mistake, for the tests."""

    def discriminator_loss(self, inputs: DiscriminatorInputs) -> Tensor:
        (grad,) = torch.autograd.grad(inputs.real_logits.sum(), inputs.real_images, create_graph=True)
        return F.softplus(inputs.fake_logits.float()).mean() + grad.pow(2).sum()

    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        return F.softplus(-inputs.fake_logits.float()).mean()
