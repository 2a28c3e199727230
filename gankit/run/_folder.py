"""The run folder: where a training run writes its config, metrics, sample grids, checkpoint and export.

It refuses to write into a folder that already holds something unless asked to, and even then it only replaces
the files gankit itself writes; whatever else the user keeps there is left alone. One process at a time trains
into it (``gankit.run``); every file is written atomically, and a full disk is one line naming the file.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gankit.errors import CheckpointError, ConfigError, FileFormatError
from gankit.files import append_regular, atomic_write_bytes, read_metrics_log, read_regular, remove_stale_temporaries
from gankit.run._config import TrainConfig
from gankit.run._lock import LOCK_NAME, RunLock, check_unlocked
from gankit.run._reporting import warn_on_stderr

LATEST = "latest"
"""The link beside default run folders to the run started last: ``runs/latest``."""

MAX_CONFIG_BYTES = 1 << 24
"""A ``config.json`` larger than this is not a run's (one is a few kB)."""

T = TypeVar("T")


STARTED_RUN_FILES = frozenset({"config.json", "metrics.jsonl", "model_card.json", "error.log", LOCK_NAME})
"""What a run writes before its first checkpoint, besides an empty ``samples/``."""


def stopped_before_first_checkpoint(path: Path) -> bool:
    """Whether the folder ``path`` holds a run that stopped before its first checkpoint (a plugin's mistake at step
    1) and nothing else: no checkpoint, no grid, nothing a user made, so a new run may take it over."""
    if not (path / "config.json").is_file():
        return False
    for entry in path.iterdir():
        empty_samples = entry.name == "samples" and entry.is_dir() and not any(entry.iterdir())
        if not empty_samples and not (entry.name in STARTED_RUN_FILES and entry.is_file()):
            return False
    return True


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically; an OS failure (a full disk) is one line naming the file."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise FileFormatError(f"cannot write {path}: {exc.strerror or exc}") from None


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
        self.lock = RunLock(path)
        self.error_log_path = path / "error.log"
        """The traceback of the exception that ended the run, when one did (``gankit --debug`` shows it too)."""

    @staticmethod
    def default_path(config: TrainConfig) -> Path:
        """``runs/<data>-<gen>-<loss>[-cond]-<time>``, with a counter when a run started in the same second.

        ``<data>`` is the dataset plugin's name, followed by its ``root`` folder's name when one is set
        (``folder-pictures``); ``-cond`` marks a class-conditional run.
        """
        generator, loss, data = (name.rpartition(":")[2] for name in (config.generator, config.loss, config.dataset))
        root = config.dataset_options.get("root")
        if isinstance(root, str) and Path(root).expanduser().name:
            data += "-" + re.sub(r"[^A-Za-z0-9._-]+", "_", Path(root).expanduser().name)[:40]
        classes = config.num_classes or config.generator_options.get("num_classes")
        cond = "-cond" if isinstance(classes, int) and classes > 0 else ""
        base = Path("runs") / f"{data}-{generator}-{loss}{cond}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, counter = base, 1
        while path.exists():
            counter += 1
            path = base.with_name(f"{base.name}-{counter}")
        return path

    def mark_latest(self) -> None:
        """Point ``latest`` beside the run folder (``runs/latest``) at it, atomically; a ``latest`` that is not a link
        (a run named so) is left alone, and so is a file system without links."""
        link = self.path.parent / LATEST
        if link.exists() and not link.is_symlink():
            return
        temporary = self.path.parent / f".{LATEST}.{os.getpid()}"
        try:
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(self.path.name, target_is_directory=True)
            os.replace(temporary, link)
        except OSError:
            temporary.unlink(missing_ok=True)

    @staticmethod
    def check_available(path: Path, *, overwrite: bool = False, locked: bool = False) -> None:
        """Refuse a path that is a file, a folder another process trains into, or a non-empty folder unless
        ``overwrite`` (a lock file left by a killed run does not count); creates nothing. ``locked``: this process
        holds the folder's lock, so it need not be probed."""
        if path.exists() and not path.is_dir():
            raise ConfigError(f"output folder {path} is an existing file; choose another --out")
        if path.is_dir() and not locked:
            check_unlocked(path)
        if path.is_dir() and any(entry.name != LOCK_NAME for entry in path.iterdir()) and not overwrite:
            raise ConfigError(
                f"output folder {path} already exists and is not empty; pass --overwrite or another --out"
            )

    @classmethod
    def prepare(cls, path: Path, *, resume: bool, overwrite: bool, is_main: bool) -> RunFolder:
        """The folder a run trains into, checked before anything slow starts; nothing is written until ``begin``.

        Resuming needs a recorded config there (checked on every rank; without a checkpoint yet the run starts
        from step 0) that no other process is training; a fresh run needs a free path, or ``overwrite`` (checked on
        the main rank, the only one that writes). Use the folder as a context: ``with run:`` holds its lock.
        """
        run = cls(path, resuming=resume, overwrite=overwrite, is_main=is_main)
        if resume and not run.config_path.is_file():
            raise ConfigError(f"{path} is not a resumable gankit run folder (no config.json)")
        if is_main and resume:
            check_unlocked(path)
        if is_main and not resume:
            if not overwrite and path.is_dir() and stopped_before_first_checkpoint(path):
                check_unlocked(path)
                warn_on_stderr(
                    f"output folder {path} holds only the start of a run that stopped before its first checkpoint "
                    "and nothing else; this run takes it over"
                )
                run.overwrite = True
            cls.check_available(path, overwrite=run.overwrite)
        return run

    def __enter__(self) -> RunFolder:
        """A resumed run's main rank locks the folder here; a fresh run's does it in ``begin``, once it exists."""
        if self.is_main and self.resuming:
            self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Lock the folder for this process (one line naming the holder otherwise), then clear stale temporaries."""
        self.lock.acquire()
        for folder in (self.path, self.samples_dir, self.older_checkpoints_dir):
            remove_stale_temporaries(folder)

    def release(self) -> None:
        """Let another process train here; a no-op when this one holds no lock."""
        self.lock.release()

    def begin(self, *, step: int, config: dict[str, Any]) -> None:
        """Make the prepared folder ready to train from ``step``; only the main rank writes.

        A resumed run drops the metric lines logged after ``step``; a fresh run creates and locks the folder (an
        existing one only when ``overwrite``, and then only gankit's own files are replaced) and records ``config``
        before anything else: from the moment the folder holds one, it is resumable (from step 0 at first).
        """
        if not self.is_main:
            return
        if self.resuming:
            self.samples_dir.mkdir(exist_ok=True)  # a run killed before it made one
            self.truncate_metrics(after_step=step)
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create output folder {self.path}: {exc.strerror}; choose another --out"
            ) from None
        if not os.access(self.path, os.W_OK):
            raise ConfigError(f"output folder {self.path} is not writable; choose another --out")
        self.acquire()
        self.check_available(self.path, overwrite=self.overwrite, locked=True)  # again: now no one else writes here
        self.config_path.unlink(missing_ok=True)  # an earlier run's, never to be paired with this run's files
        stale = [*self.samples_dir.glob("epoch_*.png"), *self.checkpoints()]  # ours, from an earlier run here
        stale += [self.error_log_path] if self.error_log_path.is_file() else []
        for old_file in stale:
            old_file.unlink()
        self.write_config(config)
        self.samples_dir.mkdir(exist_ok=True)
        _write(self.metrics_path, b"")

    def read_config(self) -> dict[str, Any]:
        """The run's recorded configuration (as written by ``write_config``)."""
        try:
            config = json.loads(read_regular(self.config_path, limit=MAX_CONFIG_BYTES))
        except FileNotFoundError:
            raise ConfigError(f"{self.path} is not a gankit run folder (no config.json)") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {self.config_path}: {exc.strerror or exc}") from None
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
        moment leaves at least one complete checkpoint; a full disk raises one line and leaves it intact.
        """
        from gankit.files import save_checkpoint

        try:
            self._keep_previous(step=step, keep=keep)
        except OSError as exc:
            raise CheckpointError(f"cannot keep a copy of {self.checkpoint_path}: {exc.strerror or exc}") from None
        save_checkpoint(self.checkpoint_path, state, metadata={"step": str(step)})
        for stale in self.checkpoints()[max(keep, 1) :]:
            stale.unlink()

    def _keep_previous(self, *, step: int, keep: int) -> None:
        from gankit.files import read_checkpoint_metadata

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

    def restore_latest(self, apply: Callable[[Path, dict[str, Any]], None], *, warn: Callable[[str], None]) -> bool:
        """Hand the newest checkpoint that loads whole (content hash included) to ``apply``; False if there is none.

        ``apply`` checks that the state fits the run and loads it, raising ``CheckpointError`` (or ``ValueError``,
        ``KeyError``, ``TypeError``, ``RuntimeError``, ``AttributeError``, ``IndexError``) when it does not. Each
        checkpoint that fails is announced through ``warn``, naming the file, before falling back to the one
        before; when all fail, one ``CheckpointError`` lists why.
        """
        from gankit.files import load_checkpoint

        def restore(path: Path) -> bool:
            apply(path, load_checkpoint(path))
            return True

        advice = ". Delete the checkpoints to train this run again from step 0 with --resume, or start afresh with "
        return bool(self.newest_usable(restore, warn=warn, advice=advice + "--overwrite"))

    def newest_usable(self, use: Callable[[Path], T], *, warn: Callable[[str], None], advice: str = "") -> T | None:
        """``use`` of the newest checkpoint it accepts; None when the run has none. Each one it refuses (raising
        ``CheckpointError``, or ``ValueError``, ``KeyError``, ``TypeError``, ``RuntimeError``, ``AttributeError``,
        ``IndexError`` for a state that does not fit) is announced through ``warn`` before falling back to the one
        before; when all are refused, one ``CheckpointError`` lists why, followed by ``advice``. ``--resume``,
        ``gankit export RUN`` and ``gankit sample RUN`` share this fallback."""
        candidates = self.checkpoints()
        problems = []
        for index, path in enumerate(candidates):
            try:
                return use(path)
            except CheckpointError as exc:
                problem = str(exc)
            except (ValueError, KeyError, TypeError, RuntimeError, AttributeError, IndexError) as exc:
                problem = f"{path} does not fit this run: {' '.join(str(exc).split())[:300] or type(exc).__name__}"
            problems.append(problem)
            if index + 1 < len(candidates):
                warn(f"{problem}; falling back to the older checkpoint {candidates[index + 1]}")
        if problems:
            raise CheckpointError(f"no usable checkpoint in {self.path}: {'; '.join(problems)}{advice}")
        return None

    def truncate_metrics(self, *, after_step: int) -> None:
        """Drop metric lines logged after the checkpoint a resumed run restarts from (atomically)."""
        kept = [row for row in self.read_metrics() if row.get("step", 0) <= after_step]
        _write(self.metrics_path, "".join(json.dumps(row) + "\n" for row in kept).encode())

    def write_config(self, resolved: dict[str, Any]) -> None:
        _write(self.config_path, (json.dumps(resolved, indent=2, sort_keys=True) + "\n").encode())

    def append_metrics(self, metrics: dict[str, Any]) -> None:
        """Append one line; a link planted as ``metrics.jsonl`` is never followed (``gankit.files.append_regular``)."""
        try:
            append_regular(self.metrics_path, (json.dumps(metrics) + "\n").encode())
        except OSError as exc:
            raise FileFormatError(f"cannot write {self.metrics_path}: {exc.strerror or exc}") from None

    def read_metrics(self) -> list[dict[str, Any]]:
        """The logged metric lines, each checked (``gankit.files.read_metrics_log``)."""
        return read_metrics_log(self.metrics_path)
