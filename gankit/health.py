"""Early warnings from the logged statistics: the discriminator winning outright, and samples collapsing.

These are warnings, not errors: a GAN can recover from both, but a user watching a run should know.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor


class HealthMonitor:
    """Says each warning once per run, after the symptom has lasted ``patience`` log lines."""

    def __init__(self, *, patience: int = 5, d_fake_floor: float = 0.02, min_diversity: float = 0.05) -> None:
        self.patience = patience
        self.d_fake_floor = d_fake_floor
        self.min_diversity = min_diversity
        self._overpowered_for = 0
        self._said: set[str] = set()

    def _once(self, key: str, message: str) -> list[str]:
        if key in self._said:
            return []
        self._said.add(key)
        return [message]

    def check(self, metrics: dict[str, Any]) -> list[str]:
        """D(G(z)) pinned near 0 while D(x) is near 1 means the generator gets almost no signal."""
        overpowered = metrics["d_fake"] < self.d_fake_floor and metrics["d_real"] > 1 - self.d_fake_floor
        self._overpowered_for = self._overpowered_for + 1 if overpowered else 0
        if self._overpowered_for < self.patience:
            return []
        return self._once(
            "overpowered",
            f"the discriminator is overpowering the generator (D(G(z)) < {self.d_fake_floor} for "
            f"{self._overpowered_for} log lines, up to step {metrics['step']}); try a lower --lr-d, "
            "--loss-opt label_smoothing=0.1, or the nonsat loss",
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
