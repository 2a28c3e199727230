"""What a compare is: its arms, seeds, budget and evaluation points, checked in full before anything starts.

An arm is a name and the ``TrainConfig`` values of one ``gankit train`` command (the options shared by every arm,
then the arm's own); the compare gives every arm the same seeds and the same budget, so an arm may not set its own
seed, output folder, length or evaluation cadence. Each (arm, seed) becomes a ``Job``: an ordinary run folder under
the compare folder.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gankit.errors import ConfigError
from gankit.run import TrainConfig, build_config

BudgetUnit = Literal["epochs", "steps", "cpu_minutes", "gpu_minutes"]

ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,47}$")
"""An arm's name: it names a run folder and a picture, so letters, digits and ``_.+-`` only, at most 48."""

SET_BY_COMPARE = {
    "seed": "every arm runs with the compare's --seeds",
    "out": "each run's folder is under the compare's --out",
    "epochs": "every arm gets the compare's budget (--epochs, --steps, --cpu-minutes or --gpu-minutes)",
    "max_steps": "every arm gets the compare's budget (--epochs, --steps, --cpu-minutes or --gpu-minutes)",
    "eval_every": "every arm is scored at the points --evals sets",
}
"""``TrainConfig`` fields an arm may not set, and why: the compare sets them, the same for every arm."""

MAX_EPOCHS = 1_000_000
"""The most epochs a ``TrainConfig`` takes; a long step budget on a tiny dataset stops at ``max_steps`` anyway."""


@dataclass(frozen=True)
class Arm:
    """One side of the compare: its name and its ``TrainConfig`` values (shared ones with the arm's own on top)."""

    name: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Budget:
    """How long every arm trains: epochs or steps (compared at equal steps), or minutes of compute on one device
    (compared at equal compute: each arm gets the steps its measured cost per step buys)."""

    unit: BudgetUnit
    amount: float

    @property
    def by_compute(self) -> bool:
        return self.unit in ("cpu_minutes", "gpu_minutes")

    @property
    def device(self) -> str | None:
        """The device a compute budget is spent on; None for epochs and steps (each arm's own ``--device``)."""
        return {"cpu_minutes": "cpu", "gpu_minutes": "cuda"}.get(self.unit)

    def describe(self) -> str:
        """``2 epochs``, ``200 steps``, ``3 CPU minutes``."""
        amount = f"{self.amount:g}"
        noun = {"epochs": "epoch", "steps": "step", "cpu_minutes": "CPU minute", "gpu_minutes": "GPU minute"}
        return f"{amount} {noun[self.unit]}{'' if self.amount == 1 else 's'}"


@dataclass(frozen=True)
class Job:
    """One (arm, seed) run: its complete config (seed, folder, length, evaluations set) and its planned steps."""

    arm: str
    seed: int
    config: TrainConfig
    total_steps: int

    @property
    def run_dir(self) -> Path:
        assert self.config.out is not None
        return self.config.out

    @property
    def label(self) -> str:
        return f"{self.arm} seed {self.seed}"


@dataclass(frozen=True)
class Plan:
    """A checked compare: every arm's validated config, the seeds, the budget, the evaluations, the folder."""

    arms: tuple[Arm, ...]
    configs: Mapping[str, TrainConfig]
    """Each arm's config as given (seed, folder and length still the defaults): what the compare folder records."""
    seeds: tuple[int, ...]
    budget: Budget
    evals: int
    out: Path
    images: int
    """Images in the training split, which all arms share: with each arm's batch, its steps per epoch."""

    @property
    def names(self) -> list[str]:
        return [arm.name for arm in self.arms]

    @property
    def baseline(self) -> str:
        """The first arm, which every other is compared with."""
        return self.arms[0].name

    def steps_per_epoch(self, arm: str) -> int:
        config = self.configs[arm]
        return max(1, self.images // config.batch_size // config.d_steps)

    def eval_every(self, arm: str) -> int:
        """Steps between evaluations: ``--evals`` points per epoch (and one at the end of the budget)."""
        return max(1, math.ceil(self.steps_per_epoch(arm) / self.evals))

    def total_steps(self, arm: str, seconds_per_step: float | None = None) -> int:
        """The steps the budget gives ``arm``; a compute budget needs the arm's measured ``seconds_per_step``."""
        if self.budget.unit == "epochs":
            return self.steps_per_epoch(arm) * int(self.budget.amount)
        if self.budget.unit == "steps":
            return int(self.budget.amount)
        if seconds_per_step is None:
            raise ValueError(f"a budget of {self.budget.describe()} needs each arm's measured cost per step")
        return max(1, int(self.budget.amount * 60 / seconds_per_step))

    def jobs(self, seconds_per_step: Mapping[str, float] | None = None) -> list[Job]:
        """Every (arm, seed) run, seed by seed (so that the first results cover every arm), each with its config."""
        jobs = []
        for seed in self.seeds:
            for arm in self.names:
                steps = self.total_steps(arm, (seconds_per_step or {}).get(arm))
                per_epoch = self.steps_per_epoch(arm)
                values = {
                    **self.configs[arm].model_dump(exclude_unset=True),
                    "seed": seed,
                    "out": self.out / "runs" / f"{arm}-seed{seed}",
                    "epochs": min(math.ceil(steps / per_epoch), MAX_EPOCHS),
                    "max_steps": steps,
                    "eval_every": self.eval_every(arm),
                }
                jobs.append(Job(arm, seed, build_config(values), steps))
        return jobs

    def recorded(self) -> dict[str, Any]:
        """What the compare folder records of the arms, to refuse continuing a different compare there."""
        return {
            name: config.model_dump(mode="json", exclude=set(SET_BY_COMPARE)) for name, config in self.configs.items()
        }


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``; ``"0-4"`` is a range too. One ``ConfigError`` line for anything else."""
    seeds: list[int] = []
    for part in (piece.strip() for piece in text.split(",")):
        match = re.fullmatch(r"(\d{1,18})(?:-(\d{1,18}))?", part)
        if not match:
            raise ConfigError(f"--seeds {text!r} does not parse: give seeds like 0,1,2 or 0-4")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first or last - first > 1000:
            raise ConfigError(f"--seeds {text!r}: the range {part} is empty or longer than 1000 seeds")
        seeds.extend(range(first, last + 1))
    twice = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if twice:
        raise ConfigError(f"--seeds gives seed {', '.join(map(str, twice))} more than once")
    return tuple(seeds)


def default_folder(names: Sequence[str]) -> Path:
    """``runs/compare-a-vs-b``: the same arms give the same folder, so running the command again continues it."""
    joined = "-vs-".join(names)
    if len(joined) > 100:
        joined = f"{names[0]}-vs-{names[1]}-and-{len(names) - 2}-more"
    return Path("runs") / f"compare-{joined}"


def plan_compare(
    arms: Sequence[Arm], *, seeds: Sequence[int], budget: Budget, evals: int, out: Path | None = None
) -> Plan:
    """Check a compare completely (names, settings, budget, one dataset) and count the data; nothing is written.

    Every problem is one ``ConfigError`` line naming the arm.
    """
    if len(arms) < 2:
        raise ConfigError(f"a compare needs at least two arms, got {len(arms)}; add --arm 'NAME: OPTIONS'")
    names = [arm.name for arm in arms]
    for name in names:
        if not ARM_NAME.match(name):
            raise ConfigError(
                f"arm name {name!r} is not usable: letters, digits and _.+- only (it names a run folder), "
                "at most 48 characters"
            )
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"two arms are named {twice[0]!r}; give every arm its own name")
    if not seeds:
        raise ConfigError("--seeds gives no seed; give at least one, e.g. --seeds 0,1,2")
    if not math.isfinite(budget.amount) or budget.amount <= 0:
        raise ConfigError(f"the budget must be positive, got {budget.describe()}")
    if budget.unit == "epochs" and budget.amount != int(budget.amount):
        raise ConfigError(f"--epochs must be a whole number, got {budget.amount:g}")
    if evals < 1:
        raise ConfigError(f"--evals must be at least 1 evaluation per epoch, got {evals}")
    configs = {arm.name: _arm_config(arm, budget) for arm in arms}
    _check_one_dataset(configs)
    if budget.device == "cuda":
        _check_cuda()
    return Plan(
        arms=tuple(arms),
        configs=configs,
        seeds=tuple(seeds),
        budget=budget,
        evals=evals,
        out=out if out is not None else default_folder(names),
        images=_count_images(next(iter(configs.values()))),
    )


def _arm_config(arm: Arm, budget: Budget) -> TrainConfig:
    for key in arm.values:
        if key in SET_BY_COMPARE and arm.values[key] is not None:
            raise ConfigError(f"arm {arm.name!r} sets {key} itself; {SET_BY_COMPARE[key]}")
    values = dict(arm.values)
    if budget.device is not None:
        if values.get("device", budget.device) not in ("auto", budget.device):
            raise ConfigError(
                f"arm {arm.name!r} trains on --device {values['device']}, but the budget is {budget.describe()}"
            )
        values["device"] = budget.device
    try:
        return build_config(values)
    except ConfigError as exc:
        raise ConfigError(f"arm {arm.name!r}: {exc}") from None


def _check_one_dataset(configs: Mapping[str, TrainConfig]) -> None:
    """Arms are compared on the same data, scored the same way: one dataset with the same options for all."""
    (first, base), *others = configs.items()
    for name, config in others:
        if (config.dataset, config.dataset_options) != (base.dataset, base.dataset_options):
            raise ConfigError(
                f"arms {first!r} and {name!r} train on different data ({_data(base)} against {_data(config)}); "
                "a compare trains every arm on one dataset: give --dataset and --data-opt once, for all arms"
            )


def _data(config: TrainConfig) -> str:
    options = " ".join(f"{key}={value}" for key, value in sorted(config.dataset_options.items()))
    return f"{config.dataset} {options}".strip()


def _check_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("--gpu-minutes needs a CUDA device, and torch sees none; use --cpu-minutes or --steps")


def _count_images(config: TrainConfig) -> int:
    """Images in the training split (loaded once here; every arm trains on the same split)."""
    from gankit.run import load_data

    return int(load_data(config).images.shape[0])
