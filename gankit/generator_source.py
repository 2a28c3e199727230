"""A generator from any source: an export file, a run folder, or a training checkpoint."""

from __future__ import annotations

from pathlib import Path

from gankit.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from gankit.errors import CheckpointError, ConfigError, FileFormatError
from gankit.export import load_generator
from gankit.interfaces import Generator
from gankit.registry import registry
from gankit.run_folder import RunFolder
from gankit.tensorfile import read_safetensors_header


def generator_from_checkpoint(
    run: RunFolder, *, checkpoint: Path | None = None, device: str = "cpu"
) -> tuple[Generator, str]:
    """Rebuild a run's generator from its ``config.json`` and a checkpoint (the latest by default), in eval mode.

    Returns the generator and its plugin name.
    """
    checkpoint = checkpoint or run.checkpoint_path
    if not checkpoint.is_file():
        raise ConfigError(f"{run.path} is not a gankit run folder (no {checkpoint.name})")
    config = run.read_config()
    plugin, options = config["generator"], config.get("generator_options", {})
    if not isinstance(plugin, str) or not isinstance(options, dict):
        raise ConfigError(f"{run.config_path} is not a gankit run configuration (generator or its options)")
    generator: Generator = registry.create("generator", plugin, options)
    state = load_checkpoint(checkpoint, device=device)
    weights = state.get("generator")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{checkpoint} holds no generator weights; it is not a training checkpoint")
    try:
        generator.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[-1].strip()[:200]
        raise CheckpointError(
            f"{checkpoint} does not fit generator '{plugin}' as configured in config.json: {first}"
        ) from None
    return generator.to(device).eval(), plugin


def load_any_generator(source: Path, *, device: str = "cpu") -> Generator:
    """A generator from an export file, a run folder (its export, else its checkpoint) or a checkpoint file.

    A file is a checkpoint by its content (its ``format`` metadata), whatever its name, when the run folder it
    belongs to (with the ``config.json`` that names its generator) holds it; any other file is loaded as an export.
    """
    if source.is_dir():
        run = RunFolder(source)
        if run.export_path.is_file():
            return load_generator(run.export_path, device=device)
        return generator_from_checkpoint(run, device=device)[0]
    run_of_checkpoint = _run_holding_checkpoint(source)
    if run_of_checkpoint is not None:
        return generator_from_checkpoint(run_of_checkpoint, checkpoint=source, device=device)[0]
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
