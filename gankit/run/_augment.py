"""Differentiable augmentation of everything the discriminator sees, real and fake: ``--augment POLICY``.

With a few hundred or thousand images, D memorises the training set and stops teaching G. Augmenting both batches
the same way before D, differentiably so that G's gradients pass through, keeps D from memorising without leaking
the augmentation into G's samples (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"; Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data").

``POLICY`` is a comma-separated list of ``POLICY_WORDS``:

- ``color``: a random brightness shift in [-0.5, 0.5], saturation factor in [0, 2] and contrast factor in
  [0.5, 1.5] per image (DiffAugment's);
- ``translation``: a random shift of up to 1/8 of the side, zeros (mid-grey) filling in;
- ``cutout``: a square of half the side, at a random place, set to zero;
- ``adaptive``: apply each of them to an image with probability ``p`` instead of always, ``p`` starting at 0 and
  tuned by ADA's overfitting heuristic ``r_t = E[sign(D(real))]``: every ``ADA_INTERVAL`` steps it moves towards
  more augmentation when ``r_t`` is above ``ADA_TARGET`` (D is sure of the reals: overfitting) and less below it,
  by at most 1 per ``ADA_KIMG`` thousand images.

Every random draw comes from the trainer's noise generator, and ``p`` is part of the checkpoint, so a resumed run
stays bit-identical. Nothing here synchronises with the host: ``p`` and the heuristic live on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

POLICY_WORDS = ("color", "translation", "cutout", "adaptive")
"""What ``--augment`` accepts, comma-separated: three operations and the adaptive probability."""

TRANSLATION_RATIO = 1 / 8
CUTOUT_RATIO = 1 / 2
ADA_TARGET = 0.6
"""ADA's target for ``r_t``, the mean sign of D's logits on real images (Karras et al. 2020, section 3)."""
ADA_INTERVAL = 4
"""Steps between two adjustments of ``p``."""
ADA_KIMG = 100.0
"""Thousands of real images over which ``p`` can move from 0 to 1 (ADA uses 500 for runs of millions of images;
gankit's runs are shorter)."""


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color, cutout"`` -> ``("color", "cutout")``; ``ValueError`` naming a word that is not a policy word."""
    words = tuple(word.strip().lower() for word in policy.split(",") if word.strip())
    unknown = [word for word in words if word not in POLICY_WORDS]
    if unknown:
        raise ValueError(
            f"'{unknown[0]}' is not an augmentation; use a comma-separated list of {', '.join(POLICY_WORDS)}"
        )
    if not set(words) - {"adaptive"}:
        raise ValueError("name at least one of color, translation, cutout (adaptive only sets how often they apply)")
    return tuple(dict.fromkeys(words))  # in the order given, once each


class Augment:
    """The augmentation of one run: ``augment(images)`` before every discriminator call, ``observe(real_logits)``
    after D has seen a real batch (for the adaptive probability)."""

    def __init__(
        self,
        policy: str,
        *,
        noise: torch.Generator,
        batch_size: int,
        mean_over_ranks: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.words = parse_policy(policy)
        self.mean_over_ranks = mean_over_ranks or (lambda value: value)
        """The heuristic's sum averaged over the processes of a multi-process run, so every rank moves ``p`` alike."""
        self.adaptive = "adaptive" in self.words
        self.noise = noise
        device = noise.device
        self.p = torch.zeros((), device=device) if self.adaptive else torch.ones((), device=device)
        self._signs = torch.zeros((), device=device)
        self._seen = 0
        self._adjustment = batch_size * ADA_INTERVAL / (ADA_KIMG * 1000)

    def __call__(self, images: Tensor) -> Tensor:
        """``images`` augmented, each operation applied to each image with probability ``p`` (1 unless adaptive)."""
        channels_last = images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last)
        for word in self.words:
            if word != "adaptive":
                images = _OPERATIONS[word](images, self._applied(images), self.noise)
        return images.contiguous(memory_format=torch.channels_last) if channels_last else images

    def _applied(self, images: Tensor) -> Tensor:
        """Per image ``(N, 1, 1, 1)``: 1.0 where the operation applies, 0.0 where it leaves the image alone."""
        if not self.adaptive:
            return torch.ones((images.shape[0], 1, 1, 1), device=images.device, dtype=images.dtype)
        draw = torch.rand((images.shape[0], 1, 1, 1), generator=self.noise, device=images.device)
        return (draw < self.p).to(images.dtype)

    def observe(self, real_logits: Tensor) -> None:
        """ADA's heuristic: sum the sign of D's logits on real batches; every ``ADA_INTERVAL`` batches, move ``p``."""
        if not self.adaptive:
            return
        self._signs = self._signs + real_logits.detach().float().sign().mean()
        self._seen += 1
        if self._seen == ADA_INTERVAL:
            overfitting = (self.mean_over_ranks(self._signs) / ADA_INTERVAL - ADA_TARGET).sign()
            self.p = (self.p + overfitting * self._adjustment).clamp(0.0, 1.0)
            self._signs = torch.zeros_like(self._signs)
            self._seen = 0

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: ``p`` and the heuristic's running sum (the batches counted go with it)."""
        return {"p": self.p.detach().clone(), "signs": self._signs.detach().clone(), "seen": self._seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.p.device
        self.p = state["p"].to(device)
        self._signs = state["signs"].to(device)
        self._seen = int(state["seen"])


def augmented(discriminator: Callable[..., Tensor], augment: Augment | None) -> Callable[..., Tensor]:
    """``discriminator`` seeing augmented images; itself when there is no augmentation."""
    if augment is None:
        return discriminator

    def call(images: Tensor, labels: Tensor | None = None) -> Tensor:
        return discriminator(augment(images), labels)

    return call


# -- the operations: images in [-1, 1], a per-image 0/1 mask of where each applies, and the noise -----------------


def _uniform(images: Tensor, noise: torch.Generator) -> Tensor:
    return torch.rand((images.shape[0], 1, 1, 1), generator=noise, device=images.device, dtype=images.dtype)


def _color(images: Tensor, applied: Tensor, noise: torch.Generator) -> Tensor:
    """Brightness, then saturation, then contrast, as DiffAugment does them."""
    images = images + (_uniform(images, noise) - 0.5) * applied
    mean = images.mean(dim=1, keepdim=True)
    images = (images - mean) * (1 + (_uniform(images, noise) * 2 - 1) * applied) + mean
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * (1 + (_uniform(images, noise) - 0.5) * applied) + mean


def _shifts(images: Tensor, limit: int, applied: Tensor, noise: torch.Generator) -> Tensor:
    """A whole shift in ``[-limit, limit]`` per image, 0 where the operation does not apply: ``(N, 1, 1)``."""
    shift = torch.randint(-limit, limit + 1, (images.shape[0], 1, 1), generator=noise, device=images.device)
    return shift * applied.view(-1, 1, 1).long()


def _translation(images: Tensor, applied: Tensor, noise: torch.Generator) -> Tensor:
    """Shift every image by up to 1/8 of its side, filling with zeros: a gather, so gradients reach the pixels."""
    n, c, h, w = images.shape
    rows = torch.arange(h, device=images.device).view(1, h, 1) + _shifts(
        images, round(h * TRANSLATION_RATIO), applied, noise
    )
    cols = torch.arange(w, device=images.device).view(1, 1, w) + _shifts(
        images, round(w * TRANSLATION_RATIO), applied, noise
    )
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)  # (N, H, W)
    index = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).view(n, 1, h * w).expand(n, c, h * w)
    moved = images.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)
    return moved * inside.unsqueeze(1).to(images.dtype)


def _cutout(images: Tensor, applied: Tensor, noise: torch.Generator) -> Tensor:
    """Zero a square of half the side centred anywhere in the image (it may hang over the edge)."""
    n, _, h, w = images.shape
    size_h, size_w = round(h * CUTOUT_RATIO), round(w * CUTOUT_RATIO)
    top = torch.randint(0, h, (n, 1, 1), generator=noise, device=images.device) - size_h // 2
    left = torch.randint(0, w, (n, 1, 1), generator=noise, device=images.device) - size_w // 2
    rows = torch.arange(h, device=images.device).view(1, h, 1)
    cols = torch.arange(w, device=images.device).view(1, 1, w)
    hole = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)  # (N, H, W)
    hole = hole & applied.view(-1, 1, 1).bool()
    return images * (~hole).unsqueeze(1).to(images.dtype)


_OPERATIONS: dict[str, Callable[[Tensor, Tensor, torch.Generator], Tensor]] = {
    "color": _color,
    "translation": _translation,
    "cutout": _cutout,
}
