"""An exponential moving average of a generator's weights, as StyleGAN keeps one (``G_ema``).

Averaging the weights over the last few thousand images smooths out the oscillation of adversarial training and
is the cheapest known improvement to sample quality. The decay is set by a half-life counted in images, so it does
not depend on the batch size, and ramps up at the start of training, when the weights move fastest::

    ema = GeneratorEMA(generator)                       # a copy in eval mode
    ...                                                 # after each generator step:
    ema.update(generator, step=step, batch_size=batch_size)
    save_generator(ema.generator, path, plugin_name=name)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

M = TypeVar("M", bound=nn.Module)


class GeneratorEMA(Generic[M]):
    """Keeps ``generator``, an averaged deep copy of a model (in eval mode, without gradients).

    After each update, every floating-point parameter is ``beta * average + (1 - beta) * current`` with
    ``beta = 0.5 ** (batch_size / half_life)``, where the half-life in images is ``ema_kimg * 1000``, or during the
    ramp-up ``min(ema_kimg * 1000, images_seen * ema_rampup)`` (``images_seen = step * batch_size``; StyleGAN2-ADA's
    defaults are ``ema_kimg=10`` and ``ema_rampup=0.05``; ``None`` turns the ramp-up off). Buffers, such as batch
    norm running statistics, are copied from the model as they are, not averaged.
    """

    def __init__(self, generator: M, *, ema_kimg: float = 10.0, ema_rampup: float | None = 0.05) -> None:
        if ema_kimg < 0:
            raise ValueError(f"ema_kimg must be >= 0, got {ema_kimg}")
        if ema_rampup is not None and ema_rampup < 0:
            raise ValueError(f"ema_rampup must be >= 0 or None, got {ema_rampup}")
        self.ema_kimg = ema_kimg
        self.ema_rampup = ema_rampup
        self.generator: M = copy.deepcopy(generator).eval().requires_grad_(False)

    def half_life(self, *, step: int, batch_size: int) -> float:
        """The half-life in images at generator step ``step`` (images seen so far: ``step * batch_size``)."""
        images = self.ema_kimg * 1000
        if self.ema_rampup is not None:
            images = min(images, step * batch_size * self.ema_rampup)
        return images

    def beta(self, *, step: int, batch_size: int) -> float:
        """The weight of the old average in the update at ``step``: 0 copies the model, 1 ignores it."""
        return float(0.5 ** (batch_size / max(self.half_life(step=step, batch_size=batch_size), 1e-8)))

    @torch.no_grad()
    def update(self, generator: M, *, step: int, batch_size: int) -> float:
        """Fold the current weights of ``generator`` into the average; call after each generator step.

        ``step`` counts the generator steps done so far including this one, ``batch_size`` the images per step.
        Returns the ``beta`` used.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        beta = self.beta(step=step, batch_size=batch_size)
        self.blend(generator, beta)
        return beta

    @torch.no_grad()
    def blend(self, generator: M, beta: float) -> None:
        """``average = beta * average + (1 - beta) * generator`` for parameters; buffers are copied."""
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        averaged = dict(self.generator.named_parameters())
        current = dict(generator.named_parameters())
        if averaged.keys() != current.keys():
            raise ValueError("the generator does not have the parameters of the averaged copy")
        for name, target in averaged.items():
            source = current[name].detach()
            if beta == 0.0 or not target.is_floating_point():
                target.copy_(source)
            else:
                target.lerp_(source.to(target.dtype), 1.0 - beta)
        buffers = dict(generator.named_buffers())
        averaged_buffers = dict(self.generator.named_buffers())
        if averaged_buffers.keys() != buffers.keys():
            raise ValueError("the generator does not have the buffers of the averaged copy")
        for name, buffer in averaged_buffers.items():
            buffer.copy_(buffers[name])

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged weights and buffers, for a checkpoint (a flat map of tensors, safetensors-ready)."""
        return dict(self.generator.state_dict())

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the average saved by ``state_dict`` (strict: every key must match)."""
        self.generator.load_state_dict(state, strict=True)
