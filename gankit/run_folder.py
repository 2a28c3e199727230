"""The run folder: where a training run writes its config, metrics, sample grids, checkpoint and export.

It refuses to write into a folder that already holds something unless asked to, and even then it only replaces
the files gankit itself writes; whatever else the user keeps there is left alone.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gankit.config import TrainConfig
from gankit.errors import ConfigError

if TYPE_CHECKING:
    from gankit.interfaces import Generator

RESUMABLE = ("epochs", "max_steps", "log_every", "checkpoint_every", "keep_checkpoints", "eval_every", "eval_samples")
"""The settings a resumed run may change; anything else would make it a different run."""


class RunFolder:
    """Paths of one run's files, and the two writes that happen during training (config and metrics)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples_dir = path / "samples"
        self.config_path = path / "config.json"
        self.metrics_path = path / "metrics.jsonl"
        self.checkpoint_path = path / "checkpoint.safetensors"
        self.older_checkpoints_dir = path / "checkpoints"
        self.export_path = path / "generator.safetensors"
        self.best_export_path = path / "generator-best.safetensors"
        self.gif_path = path / "samples.gif"
        self.loss_plot_path = path / "loss.png"

    @staticmethod
    def default_path(config: TrainConfig) -> Path:
        """``runs/<gen>-<loss>-<time>``, with a counter when a run started in the same second."""
        base = Path("runs") / f"{config.generator}-{config.loss}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, counter = base, 1
        while path.exists():
            counter += 1
            path = base.with_name(f"{base.name}-{counter}")
        return path

    @staticmethod
    def check_available(path: Path, *, overwrite: bool = False) -> None:
        """Refuse a path that is a file, or a non-empty folder unless ``overwrite``; creates nothing."""
        if path.exists() and not path.is_dir():
            raise ConfigError(f"output folder {path} is an existing file; choose another --out")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise ConfigError(
                f"output folder {path} already exists and is not empty; pass --overwrite or another --out"
            )

    @classmethod
    def create(cls, path: Path, *, overwrite: bool = False) -> RunFolder:
        """Make the folder; an existing non-empty one is refused unless ``overwrite``, which truncates only ours."""
        cls.check_available(path, overwrite=overwrite)
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / "samples").mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create output folder {path}: {exc.strerror}; choose another --out") from None
        if not os.access(path, os.W_OK):
            raise ConfigError(f"output folder {path} is not writable; choose another --out")
        run = cls(path)
        run.metrics_path.write_text("")
        stale = [*run.samples_dir.glob("epoch_*.png"), *run.checkpoints()]  # ours, from an earlier run here
        for old_file in stale:
            old_file.unlink()
        return run

    @classmethod
    def open(cls, path: Path) -> RunFolder:
        """An existing run folder to resume: it must hold a config and a checkpoint."""
        run = cls(path)
        if not run.config_path.is_file() or not run.checkpoints():
            raise ConfigError(f"{path} is not a resumable gankit run folder (no config.json or checkpoint)")
        return run

    def read_config(self) -> dict[str, Any]:
        """The run's recorded configuration (as written by ``write_config``)."""
        try:
            config = json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{self.path} is not a gankit run folder (no config.json)") from None
        except ValueError:
            raise ConfigError(f"{self.config_path} is not valid JSON; it is not a gankit run configuration") from None
        if not isinstance(config, dict) or "generator" not in config:
            raise ConfigError(f"{self.config_path} is not a gankit run configuration")
        return config

    def resume_config(self, overrides: dict[str, Any]) -> TrainConfig:
        """The run's own configuration with only the ``RESUMABLE`` settings changed."""
        from gankit.config import build_config

        changed = sorted(key for key, value in overrides.items() if value is not None and key not in RESUMABLE)
        if changed:
            raise ConfigError(
                f"--resume continues a run as configured; these cannot change: {', '.join(changed)} "
                f"(allowed: {', '.join(RESUMABLE)})"
            )
        recorded = self.read_config()
        values = {key: recorded[key] for key in TrainConfig.model_fields if key in recorded}
        values.update({key: value for key, value in overrides.items() if value is not None})
        values["out"] = str(self.path)
        return build_config(values)

    def checkpoints(self) -> list[Path]:
        """Checkpoint files, newest first: the latest, then the older ones kept in ``checkpoints/``."""
        older = sorted(self.older_checkpoints_dir.glob("step_*.safetensors"), reverse=True)
        latest = [self.checkpoint_path] if self.checkpoint_path.is_file() else []
        return latest + older

    def save_checkpoint(self, state: dict[str, Any], *, step: int, keep: int) -> None:
        """Write the latest checkpoint atomically; the previous one moves to ``checkpoints/`` until ``keep`` is hit.

        The previous checkpoint is hard-linked into ``checkpoints/`` before the new one replaces it, so a kill at any
        moment leaves at least one complete checkpoint.
        """
        from gankit.checkpoint import read_checkpoint_metadata, save_checkpoint
        from gankit.errors import ExportError

        if keep > 1 and self.checkpoint_path.is_file():
            try:
                previous_step = int(read_checkpoint_metadata(self.checkpoint_path).get("step", "0"))
            except (ExportError, ValueError):
                previous_step = step  # a damaged latest checkpoint is not worth keeping: just replace it
            if previous_step != step:
                self.older_checkpoints_dir.mkdir(exist_ok=True)
                kept = self.older_checkpoints_dir / f"step_{previous_step:09d}.safetensors"
                kept.unlink(missing_ok=True)
                os.link(self.checkpoint_path, kept)
        save_checkpoint(self.checkpoint_path, state, metadata={"step": str(step)})
        for stale in self.checkpoints()[max(keep, 1) :]:
            stale.unlink()

    def load_latest_checkpoint(self) -> dict[str, Any]:
        """The newest checkpoint that reads back whole; a damaged newest one falls back to the one before."""
        from gankit.checkpoint import load_checkpoint
        from gankit.errors import ExportError

        problems = []
        for path in self.checkpoints():
            try:
                return load_checkpoint(path)
            except ExportError as exc:
                problems.append(str(exc))
        raise ConfigError(f"no readable checkpoint in {self.path}: {'; '.join(problems) or 'none found'}")

    def truncate_metrics(self, *, after_step: int) -> None:
        """Drop metric lines logged after the checkpoint a resumed run restarts from."""
        kept = [row for row in self.read_metrics() if row.get("step", 0) <= after_step]
        self.metrics_path.write_text("".join(json.dumps(row) + "\n" for row in kept))

    def write_config(self, resolved: dict[str, Any]) -> None:
        self.config_path.write_text(json.dumps(resolved, indent=2, sort_keys=True) + "\n")

    def append_metrics(self, metrics: dict[str, Any]) -> None:
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(metrics) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def generator_from_checkpoint(self, device: str = "cpu") -> tuple[Generator, str]:
        """Rebuild the generator of this run from ``config.json`` and the latest checkpoint."""
        from gankit.checkpoint import load_checkpoint
        from gankit.registry import registry

        if not self.checkpoint_path.is_file():
            raise ConfigError(f"{self.path} is not a gankit run folder (no checkpoint.safetensors)")
        config = self.read_config()
        plugin, options = config["generator"], config.get("generator_options", {})
        if not isinstance(plugin, str) or not isinstance(options, dict):
            raise ConfigError(f"{self.config_path} is not a gankit run configuration (generator or its options)")
        generator: Generator = registry.create("generator", plugin, options)
        state = load_checkpoint(self.checkpoint_path, device=device)
        weights = state.get("generator") if isinstance(state, dict) else None
        if not isinstance(weights, dict):
            raise ConfigError(f"{self.checkpoint_path} holds no generator weights; it is not a training checkpoint")
        try:
            generator.load_state_dict(weights)
        except (RuntimeError, TypeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[-1].strip()[:200]
            raise ConfigError(
                f"{self.checkpoint_path} does not fit generator '{plugin}' as configured in config.json: {first}"
            ) from None
        return generator.to(device).eval(), plugin


def load_any_generator(source: Path, *, device: str = "cpu") -> Generator:
    """A generator from an export file, a run folder (its export, else its checkpoint) or a checkpoint file."""
    from gankit.export import load_generator

    if source.is_dir():
        run = RunFolder(source)
        if run.export_path.is_file():
            return load_generator(run.export_path, device=device)
        return run.generator_from_checkpoint(device)[0]
    if source.name == "checkpoint.safetensors":
        return RunFolder(source.parent).generator_from_checkpoint(device)[0]
    return load_generator(source, device=device)
