"""The step's statistics: what each step sums on the device, and the window that averages them between log lines.

Every step yields the engine's own statistics (``STAT_NAMES``: both losses and the mean raw logits, which mean the
same for every loss) followed by the scalars the loss reported (``Loss.metric_names``). They stay on the device and
are read once per log line, so no step waits on the host.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gankit.files import STAT_NAMES
from gankit.run._distributed import Ranks


@dataclass(frozen=True)
class StepStats:
    """One step's statistics: ``values`` on the device, and which loss metrics the step reported (a host fact)."""

    values: Tensor
    """``STAT_NAMES``, then the loss's ``metric_names`` (0 where not reported), then 1.0 if fp16 scaling skipped an
    update of the step."""
    reported: tuple[bool, ...] = ()
    """Per loss metric, whether the step reported it (lazy regularisation reports only every k steps)."""


class StatWindow:
    """Sums of the step statistics since the last log line, kept on the device so no step waits on the host."""

    def __init__(self, device: torch.device, metric_names: Sequence[str] = ()) -> None:
        self.names = (*STAT_NAMES, *metric_names)
        self.sums = torch.zeros(len(self.names), device=device)
        self.skipped = torch.zeros((), device=device)
        self.streak = torch.zeros((), device=device)
        self.reset()

    def add(self, stats: StepStats) -> None:
        """Add one step's statistics; the skip streak counts consecutive fp16-skipped steps (0 after a good one)."""
        values = stats.values
        self.sums += values[: len(self.names)]
        skipped = values[len(self.names)]
        self.skipped += skipped
        self.streak = (self.streak + skipped) * skipped
        self.steps += 1
        for index, reported in enumerate(stats.reported):
            self.counts[index] += reported

    def read(self, ranks: Ranks) -> tuple[dict[str, float], int, int, float]:
        """Means by name (over steps and ranks; a loss metric over the steps that reported it, left out when none
        did), skipped steps, the current skip streak and seconds since the window opened."""
        divisors = [max(self.steps, 1)] * len(STAT_NAMES) + [max(count, 1) for count in self.counts]
        means = self.sums / torch.tensor(divisors, dtype=self.sums.dtype, device=self.sums.device)
        values = ranks.mean(torch.cat([means, self.skipped.reshape(1), self.streak.reshape(1)]))
        *averaged, skipped, streak = values.tolist()
        present = [True] * len(STAT_NAMES) + [count > 0 for count in self.counts]
        stats = {name: value for name, value, shown in zip(self.names, averaged, present, strict=True) if shown}
        return stats, int(skipped), int(streak), time.perf_counter() - self.opened

    def reset(self) -> None:
        """Open a new window: zero sums, no steps, the clock restarted."""
        self.sums.zero_()
        self.skipped.zero_()
        self.steps = 0
        self.counts = [0] * (len(self.names) - len(STAT_NAMES))
        self.opened = time.perf_counter()
