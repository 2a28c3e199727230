"""The original GAN objectives of Goodfellow et al. (2014), computed from logits.

Both losses share the discriminator's binary cross-entropy, ``-log D(x) - log(1 - D(G(z)))``, written with softplus
so it never takes the log of a saturated sigmoid. They differ only in the generator's objective:

- ``minimax`` minimises ``log(1 - D(G(z)))``, the literal two-player game, whose gradient vanishes when the
  discriminator confidently rejects the fakes (early in training);
- ``nonsat`` minimises ``-log D(G(z))`` instead, the paper's practical fix with the same fixed point but strong
  gradients exactly when the generator is losing.

Logits are cast to float32 first, so the losses stay accurate when the models run under autocast.
"""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from gankit.interfaces import DiscriminatorInputs, GeneratorInputs, Loss, LossOptions

__all__ = ["BCELossOptions", "MinimaxLoss", "NonSaturatingLoss"]


class BCELossOptions(LossOptions):
    """Options of the BCE losses."""

    label_smoothing: float = Field(
        0.0,
        ge=0.0,
        lt=0.5,
        description="one-sided label smoothing: real targets become 1 - value (Salimans et al. 2016)",
    )


class _BCELoss(Loss):
    """The shared discriminator objective; subclasses supply the generator's.

    Their logits are log-odds, so they also report the probability view: ``d_real``, mean D(x), and ``d_fake``,
    mean D(G(z)), as the discriminator's update saw them.
    """

    Options = BCELossOptions
    options: BCELossOptions
    metric_names = ("d_real", "d_fake")

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


class NonSaturatingLoss(_BCELoss):
    """BCE discriminator; the generator minimises ``-log D(G(z))`` (non-saturating)."""

    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        """``softplus(-fake).mean()``: its gradient is near -1/N per logit when D rejects the fakes."""
        return F.softplus(-inputs.fake_logits.float()).mean()


class MinimaxLoss(_BCELoss):
    """BCE discriminator; the generator minimises ``log(1 - D(G(z)))`` (the original minimax game)."""

    def generator_loss(self, inputs: GeneratorInputs) -> Tensor:
        """``-softplus(fake).mean()``: kept for comparison, since it saturates when D rejects the fakes."""
        return -F.softplus(inputs.fake_logits.float()).mean()
