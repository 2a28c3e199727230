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

OWN_FILES = ("config.json", "metrics.jsonl", "checkpoint.safetensors", "generator.safetensors", "loss.png")


class RunFolder:
    """Paths of one run's files, and the two writes that happen during training (config and metrics)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples_dir = path / "samples"
        self.config_path = path / "config.json"
        self.metrics_path = path / "metrics.jsonl"
        self.checkpoint_path = path / "checkpoint.safetensors"
        self.export_path = path / "generator.safetensors"
        self.gif_path = path / "samples.gif"
        self.loss_plot_path = path / "loss.png"

    @staticmethod
    def default_path(config: TrainConfig) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return Path("runs") / f"{config.generator}-{config.loss}-{stamp}"

    @classmethod
    def create(cls, path: Path, *, overwrite: bool = False) -> RunFolder:
        """Make the folder; an existing non-empty one is refused unless ``overwrite``, which truncates only ours."""
        if path.exists() and not path.is_dir():
            raise ConfigError(f"output folder {path} is an existing file; choose another --out")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise ConfigError(
                f"output folder {path} already exists and is not empty; pass --overwrite or another --out"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / "samples").mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create output folder {path}: {exc.strerror}; choose another --out") from None
        if not os.access(path, os.W_OK):
            raise ConfigError(f"output folder {path} is not writable; choose another --out")
        run = cls(path)
        run.metrics_path.write_text("")
        for old_grid in run.samples_dir.glob("epoch_*.png"):
            old_grid.unlink()
        return run

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

        if not self.config_path.is_file() or not self.checkpoint_path.is_file():
            raise ConfigError(f"{self.path} is not a gankit run folder (no config.json and checkpoint.safetensors)")
        try:
            config = json.loads(self.config_path.read_text())
            plugin, options = config["generator"], config["generator_options"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{self.config_path} is not a gankit run configuration") from None
        generator: Generator = registry.create("generator", plugin, options)
        state = load_checkpoint(self.checkpoint_path, device=device)
        generator.load_state_dict(state["generator"])
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
