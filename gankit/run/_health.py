"""Early warnings from the logged statistics: the discriminator winning outright, and samples collapsing.

These are warnings, not errors: a GAN can recover from both, but a user watching a run should know.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor


class HealthMonitor:
    """Says each warning once per run, after the symptom has lasted ``patience`` log lines.

    The discriminator counts as overpowering when its loss is under ``loss_ratio`` times the generator's (both
    positive), which every loss has and which means the same for BCE, hinge, least squares and relativistic
    losses; or, for losses that report the probabilities ``d_real`` and ``d_fake`` (the BCE losses), when D(G(z))
    is under ``d_fake_floor`` while D(x) is over ``1 - d_fake_floor``.
    """

    def __init__(
        self, *, patience: int = 5, loss_ratio: float = 0.01, d_fake_floor: float = 0.02, min_diversity: float = 0.05
    ) -> None:
        self.patience = patience
        self.loss_ratio = loss_ratio
        self.d_fake_floor = d_fake_floor
        self.min_diversity = min_diversity
        self._overpowered_for = 0
        self._said: set[str] = set()

    def _once(self, key: str, message: str) -> list[str]:
        if key in self._said:
            return []
        self._said.add(key)
        return [message]

    def overpowered(self, metrics: dict[str, Any]) -> bool:
        """One log line's symptom: a D loss near zero against a large G loss, or BCE probabilities pinned."""
        d_loss, g_loss = metrics["d_loss"], metrics["g_loss"]
        if 0 <= d_loss < self.loss_ratio * g_loss:
            return True
        if "d_fake" in metrics and "d_real" in metrics:
            return bool(metrics["d_fake"] < self.d_fake_floor and metrics["d_real"] > 1 - self.d_fake_floor)
        return False

    def check(self, metrics: dict[str, Any]) -> list[str]:
        """Warn when the discriminator has been overpowering the generator for ``patience`` log lines."""
        self._overpowered_for = self._overpowered_for + 1 if self.overpowered(metrics) else 0
        if self._overpowered_for < self.patience:
            return []
        return self._once(
            "overpowered",
            f"the discriminator is overpowering the generator (D loss {metrics['d_loss']:.3g} against G loss "
            f"{metrics['g_loss']:.3g}, logit gap {metrics['d_real_logit'] - metrics['d_fake_logit']:.3g}, for "
            f"{self._overpowered_for} log lines up to step {metrics['step']}); the generator gets little signal. "
            "Try a lower --lr-d, a regulariser (R1), or with the BCE losses --loss-opt label_smoothing=0.1",
        )

    def check_samples(self, samples: Tensor) -> list[str]:
        """Nearly identical images from different latents are the signature of mode collapse."""
        diversity = float(samples.float().std(dim=0).mean())
        if diversity >= self.min_diversity or len(samples) < 2:
            return []
        return self._once(
            "collapse",
            f"possible mode collapse: the fixed-noise samples barely differ (mean per-pixel std {diversity:.3f}); "
            "try a lower learning rate or another loss",
        )
