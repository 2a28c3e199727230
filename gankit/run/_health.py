"""What the logged statistics say about a run: early warnings (the discriminator winning outright, samples
collapsing), and the one line that ends a run whose values stopped being finite.

The warnings are not errors: a GAN can recover from both, but a user watching a run should know. A non-finite value
is an error, and its line names the first term that went non-finite and the plugin that produced it (see
``gankit.run._stats``), and mentions a checkpoint only when one was written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from gankit.run._folder import RunFolder
from gankit.run._stats import NonFinite

FIXES = {
    "generator": "Check its forward (a division, log, sqrt or exp that can blow up) and its initialisation",
    "discriminator": "Check its forward (a division, log, sqrt or exp that can blow up), or lower --lr-d",
    "loss": "Check it for log(0), a division by zero or the sqrt of a negative (prefer F.softplus and "
    "F.logsigmoid to log(sigmoid(x)))",
}
"""What to look at in the plugin of each kind whose value was the first to go non-finite."""


def kept_checkpoint(run: RunFolder) -> str:
    """``; the last good checkpoint is kept in RUN`` when the run has written one, else nothing: a message never
    mentions a checkpoint that does not exist."""
    return f"; the last good checkpoint is kept in {run.path}" if run.checkpoints() else ""


def shown_value(value: float) -> str:
    """``NaN``, ``inf`` or ``-inf``."""
    return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def divergence(
    *, step: int, stats: Mapping[str, float], first: NonFinite | None, who: Mapping[str, str], run: RunFolder
) -> str:
    """The line that ends a run at log point ``step`` whose values stopped being finite: the first non-finite term
    and its plugin when the window saw one (``first``), else the logged means."""
    if first is None:
        shown = ", ".join(f"{name}={value:.4g}" for name, value in stats.items())
        return (
            f"training diverged by step {step} ({shown}){kept_checkpoint(run)}. Lower the learning rates or try "
            "--amp off"
        )
    plugin = who.get(first.kind, f"the {first.kind}")
    return (
        f"{plugin} made the run's first non-finite value, in its {first.term} ({shown_value(first.value)}) at "
        f"step {first.step}, where all computed before it was finite; training stopped at step {step}"
        f"{kept_checkpoint(run)}. {FIXES[first.kind]}"
    )


class HealthMonitor:
    """Says each warning once per run, after the symptom has lasted ``patience`` log lines.

    The discriminator counts as overpowering when its loss is under ``loss_ratio`` times the generator's (both
    positive), which every loss has and which means the same for BCE, hinge, least squares and relativistic
    losses; or, for losses that report the probabilities ``d_real`` and ``d_fake`` (the BCE losses), when D(G(z))
    is under ``d_fake_floor`` while D(x) is over ``1 - d_fake_floor``.
    """

    def __init__(
        self,
        *,
        patience: int = 5,
        loss_ratio: float = 0.01,
        d_fake_floor: float = 0.02,
        min_diversity: float = 0.05,
        collapse_after: int = 200,
    ) -> None:
        self.patience = patience
        self.collapse_after = collapse_after
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

    def check_samples(self, samples: Tensor, *, step: int | None = None) -> list[str]:
        """Nearly identical images from different latents are the signature of mode collapse, once G has trained a
        while: before ``collapse_after`` steps a generator has not spread its samples yet (a freshly initialised
        DCGAN's differ by a per-pixel std of about 0.04), which is no collapse."""
        if step is not None and step < self.collapse_after:
            return []
        diversity = float(samples.float().std(dim=0).mean())
        if diversity >= self.min_diversity or len(samples) < 2:
            return []
        return self._once(
            "collapse",
            f"possible mode collapse: the fixed-noise samples barely differ (mean per-pixel std {diversity:.3f}); "
            "try a lower learning rate or another loss",
        )
