"""What a step of each arm costs, measured fairly: interleaved blocks in one process, the median of rounds.

Timing each arm's own run would charge it for whatever else the machine did meanwhile. Here every arm's training
step runs in this one process, in blocks of a few steps taken in turn (A B C, A B C, ...), after a warm-up block
each; an arm's cost is the median of its rounds, and its ratio to the first arm the median of the per-round ratios,
so that a load that comes and goes biases no arm. The step is the one ``gankit train`` takes
(``Trainer.train_step`` on the run's batches, the statistics read every ``log_every``), without the evaluations,
grids and checkpoints, which are the same for every arm.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from gankit.interfaces import ImageData
from gankit.run import TrainConfig, Trainer, assemble, resolve_device, resolve_precision, seed_everything


@dataclass(frozen=True)
class Cost:
    """One arm's measured step: the median seconds per step, the median ratio to the first arm, every round."""

    seconds_per_step: float
    ratio_to_first: float
    rounds: list[float]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Measured:
    """What a compare measured before training: each arm's cost, and the threads and device it was measured on."""

    costs: dict[str, Cost]
    threads: int
    device: str

    def seconds_per_step(self) -> dict[str, float]:
        """Each arm's seconds per step as the compare uses them (budgets, the compute axis, time per epoch): the
        first arm's median times the arm's median ratio to it, so that a load that drifted between rounds, which
        moves every arm's own median, leaves the arms' proportions as measured side by side."""
        first = next(iter(self.costs.values())).seconds_per_step
        return {name: first * cost.ratio_to_first for name, cost in self.costs.items()}


class _Steps:
    """An arm's trainer taking training steps as ``gankit train``'s loop does between two log points."""

    def __init__(self, config: TrainConfig, data: ImageData) -> None:
        seed_everything(config.seed)
        device = resolve_device(config.device)
        assembly = assemble(config, data)
        assembly.check_outputs()
        self.trainer = Trainer(config, assembly, device, resolve_precision(config.amp, device))
        self.window = self.trainer.stat_window()
        self.order: Tensor | None = None

    def run(self, steps: int) -> float:
        """Take ``steps`` steps; the seconds they took, the device waited for."""
        trainer, config = self.trainer, self.trainer.config
        started = time.perf_counter()
        for _ in range(steps):
            epoch, index = divmod(trainer.step, trainer.steps_per_epoch)
            if self.order is None or index == 0:
                self.order = trainer.batches.order(epoch)
            first = index * config.d_steps
            self.window.add(
                trainer.train_step([trainer.batches.batch(self.order, first + j) for j in range(config.d_steps)])
            )
            trainer.after_step()
            if trainer.step % config.log_every == 0:
                self.window.read(trainer.ranks)
                self.window.reset()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        return time.perf_counter() - started


def measure_costs(
    configs: Mapping[str, TrainConfig],
    data: ImageData,
    *,
    rounds: int = 5,
    block: int = 10,
    on_round: Callable[[int, int], None] | None = None,
) -> dict[str, Cost]:
    """Each arm's cost per step: ``rounds`` rounds of ``block`` steps per arm in turn, after a warm-up round.

    ``configs`` maps arm names to their configs (the first is the baseline); every arm trains on ``data``.
    ``on_round(done, rounds)`` is told after each round, warm-up included (round 0).
    """
    if rounds < 1 or block < 1:
        raise ValueError(f"need at least one round of at least one step, got {rounds} rounds of {block}")
    loops = {name: _Steps(config, data) for name, config in configs.items()}
    seconds: dict[str, list[float]] = {name: [] for name in loops}
    for round_ in range(rounds + 1):
        for name, loop in loops.items():
            took = loop.run(block)
            if round_:  # round 0 warms up: first-call allocations, autotuning, caches
                seconds[name].append(took / block)
        if on_round is not None:
            on_round(round_, rounds)
    first = seconds[next(iter(seconds))]
    return {
        name: Cost(
            seconds_per_step=statistics.median(times),
            ratio_to_first=statistics.median(a / b for a, b in zip(times, first, strict=True)),
            rounds=times,
        )
        for name, times in seconds.items()
    }
