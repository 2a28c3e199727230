"""A generator from any source: an export file, a run folder, or a training checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from gankit.errors import CheckpointError, ConfigError, FileFormatError
from gankit.export import load_generator, read_export_metadata
from gankit.files import CHECKPOINT_FORMAT, load_checkpoint, printable, read_safetensors_header
from gankit.interfaces import Generator
from gankit.registry import check_generator, check_model_fits, registry
from gankit.run import RunFolder, warn_on_stderr


class CheckpointGenerator(NamedTuple):
    """A generator rebuilt from a training checkpoint."""

    generator: Generator
    plugin: str
    """The generator plugin's name, as ``config.json`` records it."""
    ema_weights: bool
    """Whether the weights are the run's exponential moving average (``--ema``) rather than the trained ones."""


def generator_from_checkpoint(
    run: RunFolder,
    *,
    checkpoint: Path | None = None,
    device: str = "cpu",
    warn: Callable[[str], None] = warn_on_stderr,
) -> CheckpointGenerator:
    """Rebuild a run's generator from its ``config.json`` and a checkpoint, in eval mode.

    Without ``checkpoint``, the newest whole one: a damaged latest checkpoint (its content hash or its state does not
    check out) falls back to the older ones kept in ``checkpoints/``, as ``--resume`` does, and ``warn`` says so.
    For a run that kept an EMA (``--ema``), the weights are the average, the very weights training exports to
    ``generator.safetensors``; otherwise the trained generator's.
    """
    if checkpoint is not None:
        return _from_one_checkpoint(run, checkpoint, device)
    found = run.newest_usable(lambda candidate: _from_one_checkpoint(run, candidate, device), warn=warn)
    if found is None:
        raise ConfigError(f"{run.path} is not a gankit run folder (no {run.checkpoint_path.name})")
    return found


def _from_one_checkpoint(run: RunFolder, checkpoint: Path, device: str) -> CheckpointGenerator:
    if not checkpoint.is_file():
        raise ConfigError(f"{run.path} is not a gankit run folder (no {checkpoint.name})")
    config = run.read_config()
    plugin, options = config["generator"], config.get("generator_options", {})
    if not isinstance(plugin, str) or not isinstance(options, dict):
        raise ConfigError(f"{run.config_path} is not a gankit run configuration (generator or its options)")
    try:  # on the meta device first: options that ask for more memory than there is are refused here
        check_model_fits("generator", plugin, options, device=device)
    except ConfigError as exc:
        raise ConfigError(f"{run.config_path}: {exc}") from None
    generator: Generator = registry.create("generator", plugin, options)
    state = load_checkpoint(checkpoint, device=device)
    ema = state.get("ema")
    weights = ema if isinstance(ema, dict) else state.get("generator")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{checkpoint} holds no generator weights; it is not a training checkpoint")
    try:
        generator.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError) as exc:
        first = printable(str(exc).strip().splitlines()[-1].strip())
        raise CheckpointError(
            f"{checkpoint} does not fit generator '{printable(plugin, limit=80)}' as configured in config.json: {first}"
        ) from None
    return CheckpointGenerator(generator.to(device).eval(), plugin, isinstance(ema, dict))


def load_any_generator(source: Path, *, device: str = "cpu") -> Generator:
    """A generator from an export file, a run folder (its export, else its checkpoint) or a checkpoint file.

    A file is a checkpoint by its content (its ``format`` metadata), whatever its name, when the run folder it
    belongs to (with the ``config.json`` that names its generator) holds it; any other file is loaded as an export.
    """
    if source.is_dir():
        run = RunFolder(source)
        if run.export_path.is_file():
            return load_generator(run.export_path, device=device)
        return generator_from_checkpoint(run, device=device).generator
    run_of_checkpoint = _run_holding_checkpoint(source)
    if run_of_checkpoint is not None:
        return generator_from_checkpoint(run_of_checkpoint, checkpoint=source, device=device).generator
    return load_generator(source, device=device)


def _run_holding_checkpoint(source: Path) -> RunFolder | None:
    """The run folder whose checkpoint ``source`` is (the latest or a kept older one), or None if it is not one."""
    try:
        found = read_safetensors_header(source).metadata.get("format")
    except FileFormatError:
        return None  # not a readable safetensors file: the export loader says what is wrong with it
    if found != CHECKPOINT_FORMAT:
        return None
    for run in (RunFolder(source.parent), RunFolder(source.parent.parent)):
        if run.config_path.is_file() and source.parent in (run.path, run.older_checkpoints_dir):
            return run
    return None


def nonfinite_tensors(model: torch.nn.Module) -> list[str]:
    """The names of the model's floating-point weights and buffers that hold NaN or infinity; empty when none do.

    Loading stays permissive (``load_generator`` returns such a model as it is, and it draws blank images);
    ``gankit export`` refuses one and ``gankit sample`` warns, with ``nonfinite_summary``.
    """
    return [
        name
        for name, tensor in model.state_dict().items()
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all())
    ]


def nonfinite_summary(source: Path, names: list[str]) -> str:
    """``x.safetensors holds NaN or infinite weights in 'net.0.weight' and 2 more tensors``."""
    more = f" and {len(names) - 1} more tensor{'s' if len(names) > 2 else ''}" if len(names) > 1 else ""
    return f"{source} holds NaN or infinite weights in '{printable(names[0], limit=80)}'{more}"


def sampling_verdict(generator: Generator, source: Path) -> str | None:
    """What ``gankit sample`` makes of ``generator``, so that ``gankit info`` and ``gankit export`` say the same:
    None when it draws; the warning it prints when the weights hold NaN or infinity (it draws them anyway); and the
    ``ContractError`` it refuses with when one tiny batch is not images of the recorded shape in [-1, 1] (all NaN
    from finite weights, say, as a negative BatchNorm variance gives), raised."""
    bad = nonfinite_tensors(generator)
    if bad:
        return f"{nonfinite_summary(source, bad)}; its samples will be blank or noise"
    check_generator(generator, registry.who_built("generator", generator))
    return None


def recorded_dataset(source: Path) -> str | None:
    """The dataset plugin the generator of ``source`` was trained on, when its run or export records one.

    A run folder (or a checkpoint in one) records it in ``config.json``; an export in its model card (metadata key
    ``model_card``) or a plain ``dataset`` metadata key. None when nothing says.
    """
    run = RunFolder(source) if source.is_dir() else _run_holding_checkpoint(source)
    if run is not None:
        try:
            found = run.read_config().get("dataset")
        except ConfigError:
            return None
    else:
        try:
            meta = read_export_metadata(source)
        except FileFormatError:
            return None
        found = (meta.model_card or {}).get("dataset") or meta.extra.get("dataset")
    return found if isinstance(found, str) and found else None
