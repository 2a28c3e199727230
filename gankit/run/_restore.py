"""Resume a trainer from its run folder: the newest checkpoint that is whole and fits the run, announced fallbacks.

A checkpoint's content hash proves it is the file gankit wrote (``gankit.files``). What is checked here is that
the state fits this run before any of it is loaded: every key the trainer needs, every model tensor's name, shape
and dtype, the optimizers' parameter groups and per-parameter state, the random streams, the types of the scalars,
and a step within the run that agrees with the file's metadata. The template is the state the trainer itself would
save, so the check follows the trainer without a list to keep in step with it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gankit.files import read_checkpoint_metadata
from gankit.run._distributed import Ranks
from gankit.run._folder import RunFolder
from gankit.run._reporting import Reporter, SilentReporter, warn_on_stderr
from gankit.run._trainer import Trainer

OPTIONAL_KEYS = frozenset({"cuda_rng", "elapsed_s", "best_frechet", "stat_window"})
"""Keys of ``Trainer.state()`` that ``load_state`` can do without (a CUDA run's RNG resumed on the CPU, old files)."""

_OPTIMIZERS = {"optimizer_g": "generator", "optimizer_d": "discriminator"}
"""Each optimizer's state key -> the trainer attribute holding the model it updates."""


def restore(trainer: Trainer, run: RunFolder, reporter: Reporter) -> None:
    """Load the newest usable checkpoint of ``run`` into ``trainer``; without any checkpoint, start from step 0.

    Every checkpoint passed over is announced, naming the file and why; when none is usable, ``CheckpointError``.
    """
    warn = announcer(reporter, trainer.ranks)
    template = trainer.state()

    def apply(path: Path, state: dict[str, Any]) -> None:
        check_state(state, template, trainer)
        check_finite(state)
        recorded = read_checkpoint_metadata(path).get("step")
        if recorded is not None and recorded != str(state["step"]):
            raise ValueError(f"its state is at step {state['step']} but its metadata says step {recorded[:20]!r}")
        trainer.load_state(state)

    if not run.restore_latest(apply, warn=warn):
        warn(f"{run.path} has no checkpoint yet: the run starts again from step 0")


def announcer(reporter: Reporter, ranks: Ranks) -> Callable[[str], None]:
    """Where a fallback is announced: the reporter, or stderr when it is silent (``--quiet``); once, by rank 0."""
    if not ranks.is_main:
        return lambda message: None
    if isinstance(reporter, SilentReporter) and type(reporter).warn is SilentReporter.warn:  # not a recorder
        return warn_on_stderr
    return reporter.warn


def check_state(state: dict[str, Any], template: dict[str, Any], trainer: Trainer) -> None:
    """``ValueError`` naming the first thing in ``state`` that does not fit ``template`` (see the module doc)."""
    missing = sorted(set(template) - OPTIONAL_KEYS - set(state))
    if missing:
        raise ValueError(f"key '{missing[0]}' is missing")
    step = state["step"]
    if type(step) is not int or not 0 <= step <= trainer.total_steps:
        raise ValueError(f"its step {str(step)[:20]} is not within this run's 0 to {trainer.total_steps} steps")
    for key, expected in template.items():
        if key not in state:
            continue
        if key in _OPTIMIZERS:
            model: torch.nn.Module = getattr(trainer, _OPTIMIZERS[key])
            _check_optimizer(state[key], expected, [p.shape for p in model.parameters()], key)
        else:
            _check_like(state[key], expected, key)


FINITE_KEYS = ("generator", "discriminator", "ema")
"""The state's model weights: gankit never saves them non-finite, so a checkpoint holding NaN there was changed
after it was written (with its hash made again) and is passed over like a damaged one."""


def check_finite(state: dict[str, Any]) -> None:
    """``ValueError`` naming the first model tensor of ``state`` holding NaN or infinity."""
    for key in FINITE_KEYS:
        weights = state.get(key)
        if not isinstance(weights, dict):
            continue
        for name, tensor in weights.items():
            if isinstance(tensor, Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"'{key}/{name}' holds NaN or infinite weights")


def _check_like(value: Any, expected: Any, where: str) -> None:
    """Same structure, tensor shapes and dtypes, and scalar types as ``expected`` (None on either side passes)."""
    if value is None or expected is None:
        return
    if isinstance(expected, (Tensor, np.ndarray)):
        if type(value) is not type(expected):
            raise ValueError(f"'{where}' is a {type(value).__name__}, not a {type(expected).__name__}")
        if tuple(value.shape) != tuple(expected.shape) or value.dtype != expected.dtype:
            raise ValueError(
                f"'{where}' has shape {list(value.shape)} and dtype {value.dtype}; this run needs "
                f"{list(expected.shape)} and {expected.dtype}"
            )
        return
    if type(value) is not type(expected) and not (isinstance(value, dict) and isinstance(expected, dict)):
        raise ValueError(f"'{where}' is a {type(value).__name__}, not a {type(expected).__name__}")
    if isinstance(expected, dict):
        difference = sorted(map(str, set(expected) ^ set(value)))
        if difference:
            side = "missing" if difference[0] in map(str, expected) else "unexpected"
            raise ValueError(f"'{where}' has {side} key '{difference[0][:80]}'")
        for key, item in expected.items():
            _check_like(value[key], item, f"{where}/{key}")
    elif isinstance(expected, (list, tuple)):
        if len(value) != len(expected):
            raise ValueError(f"'{where}' has {len(value)} entries, not {len(expected)}")
        for index, (item, wanted) in enumerate(zip(value, expected, strict=True)):
            _check_like(item, wanted, f"{where}/{index}")


def _check_optimizer(value: Any, expected: dict[str, Any], shapes: list[torch.Size], where: str) -> None:
    """An optimizer's state dict: the same parameter groups, per-parameter state only for real parameters, each
    tensor in it a scalar or the parameter's shape (Adam's moments)."""
    if not isinstance(value, dict) or set(value) != {"state", "param_groups"}:
        raise ValueError(f"'{where}' is not an optimizer state (keys 'state' and 'param_groups')")
    groups, wanted_groups = value["param_groups"], expected["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(wanted_groups):
        raise ValueError(f"'{where}/param_groups' does not match this run's {len(wanted_groups)} group(s)")
    for index, (group, wanted) in enumerate(zip(groups, wanted_groups, strict=True)):
        if not isinstance(group, dict) or group.get("params") != wanted["params"]:
            raise ValueError(f"'{where}/param_groups/{index}' holds other parameters than this run's model")
        for key in set(group) & set(wanted):
            _check_like(group[key], wanted[key], f"{where}/param_groups/{index}/{key}")
    ids = [param_id for group in wanted_groups for param_id in group["params"]]
    shape_of = dict(zip(ids, shapes, strict=True))
    per_param = value["state"]
    if not isinstance(per_param, dict):
        raise ValueError(f"'{where}/state' is not a dict")
    for param_id, entry in per_param.items():
        if param_id not in shape_of or not isinstance(entry, dict):
            raise ValueError(f"'{where}/state' has an entry {str(param_id)[:20]!r} for no parameter of the model")
        for name, item in entry.items():
            if isinstance(item, Tensor) and item.dim() > 0 and item.shape != shape_of[param_id]:
                raise ValueError(
                    f"'{where}/state/{param_id}/{name}' has shape {list(item.shape)}; "
                    f"its parameter has {list(shape_of[param_id])}"
                )
            if not isinstance(item, (Tensor, int, float)) or isinstance(item, bool):
                raise ValueError(f"'{where}/state/{param_id}/{name}' is a {type(item).__name__}, not a tensor")
