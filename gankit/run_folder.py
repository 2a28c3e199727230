"""The run folder: where a training run writes its config, metrics, sample grids, checkpoint and export.

It refuses to write into a folder that already holds something unless asked to, and even then it only replaces
the files gankit itself writes; whatever else the user keeps there is left alone.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from gankit.config import TrainConfig
from gankit.errors import ConfigError


class RunFolder:
    """Paths of one run's files, and what training writes there: the folder, config, metrics and checkpoints.

    ``prepare`` makes one to train into; how it was prepared (``resuming``, ``overwrite``, ``is_main``) decides what
    ``begin`` does. Plain ``RunFolder(path)`` is for reading a run.
    """

    def __init__(self, path: Path, *, resuming: bool = False, overwrite: bool = False, is_main: bool = True) -> None:
        self.path = path
        self.resuming = resuming
        self.overwrite = overwrite
        self.is_main = is_main
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
    def prepare(cls, path: Path, *, resume: bool, overwrite: bool, is_main: bool) -> RunFolder:
        """The folder a run trains into, checked before anything slow starts; nothing is written until ``begin``.

        Resuming needs a recorded config and a checkpoint there (checked on every rank); a fresh run needs a free
        path, or ``overwrite`` (checked on the main rank, the only one that writes).
        """
        run = cls(path, resuming=resume, overwrite=overwrite, is_main=is_main)
        if resume and (not run.config_path.is_file() or not run.checkpoints()):
            raise ConfigError(f"{path} is not a resumable gankit run folder (no config.json or checkpoint)")
        if is_main and not resume:
            cls.check_available(path, overwrite=overwrite)
        return run

    def begin(self, *, step: int, config: dict[str, Any]) -> None:
        """Make the prepared folder ready to train from ``step``; only the main rank writes.

        A resumed run drops the metric lines logged after ``step``; a fresh run creates the folder (an existing one
        only when ``overwrite``, and then only gankit's own files are replaced) and records ``config``.
        """
        if not self.is_main:
            return
        if self.resuming:
            self.truncate_metrics(after_step=step)
            return
        self.check_available(self.path, overwrite=self.overwrite)
        try:
            self.samples_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create output folder {self.path}: {exc.strerror}; choose another --out"
            ) from None
        if not os.access(self.path, os.W_OK):
            raise ConfigError(f"output folder {self.path} is not writable; choose another --out")
        self.metrics_path.write_text("")
        stale = [*self.samples_dir.glob("epoch_*.png"), *self.checkpoints()]  # ours, from an earlier run here
        for old_file in stale:
            old_file.unlink()
        self.write_config(config)

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
        from gankit.errors import CheckpointError

        if keep > 1 and self.checkpoint_path.is_file():
            try:
                previous_step = int(read_checkpoint_metadata(self.checkpoint_path).get("step", "0"))
            except (CheckpointError, ValueError):
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
        from gankit.errors import CheckpointError

        problems = []
        for path in self.checkpoints():
            try:
                return load_checkpoint(path)
            except CheckpointError as exc:
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
