"""The step's statistics: what each step sums on the device, and the window that averages them between log lines.

Every step yields the engine's own statistics (``STAT_NAMES``: both losses and the mean raw logits, which mean the
same for every loss) followed by the scalars the loss reported (``Loss.metric_names``), then what the step watches
for the first non-finite value (``WATCHED``). They stay on the device and are read once per log line, so no step
waits on the host: each step's row is copied into a small history on the device (one copy), and the log line finds
in it the first step with a non-finite term, and the first such term in the order the step computes them, which
names the plugin that produced it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from gankit.files import STAT_NAMES
from gankit.run._distributed import Ranks

WATCHED_EXTRAS = ("generator output", "discriminator_loss", "discriminator_regularizer", "generator-step fake logits")
"""What a step adds after its statistics, only to be watched: the sum of G's images (non-finite when one pixel is),
the loss's two discriminator terms apart, and D's mean logit on the fakes in the generator step."""

HISTORY_ROWS = 64
"""Steps of rows kept on the device between two folds (a fold keeps the first row with a non-finite value)."""


class Term(NamedTuple):
    """A value the step watches: where it sits in a step's row, what it is called, and which plugin made it."""

    position: int
    label: str
    kind: str


def watched_terms(metric_names: Sequence[str]) -> tuple[Term, ...]:
    """The terms of a step's row in the order the step computes them, for a loss reporting ``metric_names``: the
    first non-finite one names the plugin that produced it (a NaN downstream of it says nothing more)."""
    metrics = len(metric_names)
    extra = len(STAT_NAMES) + metrics + 1  # after the statistics, the metrics and the fp16 flag
    return (
        Term(extra, "output images", "generator"),
        Term(2, "logits on real images", "discriminator"),
        Term(3, "logits on fake images", "discriminator"),
        Term(extra + 1, "discriminator_loss", "loss"),
        Term(extra + 2, "discriminator_regularizer", "loss"),
        *(Term(len(STAT_NAMES) + i, f"metric {name!r}", "loss") for i, name in enumerate(metric_names)),
        Term(extra + 3, "logits on fake images in the generator step", "discriminator"),
        Term(1, "generator_loss", "loss"),
    )


@dataclass(frozen=True)
class StepStats:
    """One step's statistics: ``values`` on the device, and which loss metrics the step reported (a host fact)."""

    values: Tensor
    """``STAT_NAMES``, then the loss's ``metric_names`` (0 where not reported), then 1.0 if fp16 scaling skipped an
    update of the step, then the ``WATCHED_EXTRAS`` when the step gives them."""
    reported: tuple[bool, ...] = ()
    """Per loss metric, whether the step reported it (lazy regularisation reports only every k steps)."""
    step: int = 0
    """The step's number, from 1: which step a non-finite value first appeared in."""


@dataclass(frozen=True)
class NonFinite:
    """The first non-finite value of a window: at which step, in which term, made by which kind of plugin."""

    step: int
    term: str
    kind: str
    value: float


class StatWindow:
    """Sums of the step statistics since the last log line, kept on the device so no step waits on the host."""

    def __init__(self, device: torch.device, metric_names: Sequence[str] = ()) -> None:
        self.names = (*STAT_NAMES, *metric_names)
        self.terms = watched_terms(metric_names)
        self.sums = torch.zeros(len(self.names), device=device)
        self.skipped = torch.zeros((), device=device)
        self.streak = torch.zeros((), device=device)
        self.history = torch.zeros(HISTORY_ROWS, len(self.names) + 1 + len(WATCHED_EXTRAS), device=device)
        """The rows of the steps since the last fold, one per step (a fresh window: since it opened)."""
        self.kept = torch.zeros(len(self.names) + 2 + len(WATCHED_EXTRAS), device=device)
        """The first row with a non-finite term among the folded ones, its step number last; step 0: none."""
        self.first_non_finite: NonFinite | None = None
        """Set by ``read`` (and kept by ``reset``): the window's first non-finite value, when there was one."""
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
        if len(values) == self.history.shape[1]:
            if self.rows == HISTORY_ROWS:
                self._fold()
            if self.rows == 0:
                self.first_row_step = stats.step
            self.history[self.rows].copy_(values)
            self.rows += 1

    def _first_bad(self) -> Tensor:
        """Among the rows since the last fold, the first with a non-finite value, its step number appended (step 0
        when none), chosen on the device."""
        rows = self.history[: self.rows]
        bad = ~torch.isfinite(rows).all(dim=1)
        index = bad.to(torch.int32).argmax()
        step = (index + self.first_row_step) * bad.any()
        return torch.cat([rows[index], step.reshape(1).to(rows.dtype)])

    def _fold(self) -> None:
        """Keep the first non-finite row so far in ``kept`` and free the history (once per ``HISTORY_ROWS`` steps)."""
        self.kept = torch.where(self.kept[-1] > 0, self.kept, self._first_bad())
        self.rows = 0

    def read(self, ranks: Ranks) -> tuple[dict[str, float], int, int, float]:
        """Means by name (over steps and ranks; a loss metric over the steps that reported it, left out when none
        did), skipped steps, the current skip streak and seconds since the window opened; sets
        ``first_non_finite``, this process's first non-finite value of the window, found in the same read."""
        divisors = [max(self.steps, 1)] * len(STAT_NAMES) + [max(count, 1) for count in self.counts]
        means = self.sums / torch.tensor(divisors, dtype=self.sums.dtype, device=self.sums.device)
        values = ranks.mean(torch.cat([means, self.skipped.reshape(1), self.streak.reshape(1)]))
        first = torch.where(self.kept[-1] > 0, self.kept, self._first_bad()) if self.rows else self.kept
        together = torch.cat([values, first]).tolist()  # the window's one host synchronisation
        *averaged, skipped, streak = together[: len(values)]
        self.first_non_finite = self._non_finite(together[len(values) :])
        present = [True] * len(STAT_NAMES) + [count > 0 for count in self.counts]
        stats = {name: value for name, value, shown in zip(self.names, averaged, present, strict=True) if shown}
        return stats, int(skipped), int(streak), time.perf_counter() - self.opened

    def _non_finite(self, row: list[float]) -> NonFinite | None:
        """The first non-finite term of a history row (its step last), in the order the step computes them."""
        step = int(row[-1])
        if step <= 0:
            return None
        for term in self.terms:
            if not math.isfinite(row[term.position]):
                return NonFinite(step=step, term=term.label, kind=term.kind, value=row[term.position])
        return None

    def state(self) -> dict[str, Any]:
        """The sums of the open window, for the checkpoint: a run resumed between two log points then averages the
        same steps into its next line as a run never interrupted (the clock is not kept; it restarts)."""
        return {
            "sums": self.sums.clone(),
            "skipped": self.skipped.clone(),
            "streak": self.streak.clone(),
            "steps": self.steps,
            "counts": list(self.counts),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue the window ``state()`` saved."""
        self.sums.copy_(state["sums"])
        self.skipped.copy_(state["skipped"])
        self.streak.copy_(state["streak"])
        self.steps = int(state["steps"])
        self.counts = [int(count) for count in state["counts"]]

    def reset(self) -> None:
        """Open a new window: zero sums, no steps, an empty history, the clock restarted."""
        self.sums.zero_()
        self.skipped.zero_()
        self.kept.zero_()
        self.steps = 0
        self.rows = 0
        self.first_row_step = 0
        self.counts = [0] * (len(self.names) - len(STAT_NAMES))
        self.opened = time.perf_counter()
