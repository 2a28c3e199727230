"""The built-in ``tensorboard`` tracker: a run's scalars, sample grids and hyperparameters in ``RUN/tensorboard/``.

It writes through ``torch.utils.tensorboard``, which needs the ``tensorboard`` package: ``pip install
"gankit[tensorboard]"``. ``tensorboard --logdir runs`` then shows every run side by side.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from gankit.errors import PluginError
from gankit.interfaces import Tracker, TrackerOptions

FOLDER = "tensorboard"
"""The tracker's folder inside the run folder."""
RUN_FIELDS = frozenset({"epoch", "images_per_sec", "elapsed_s", "peak_memory_mb", "fp16_skipped_steps"})
"""Fields of a metrics line about the run rather than the model: shown in TensorBoard's ``run`` group."""


def tag(key: str) -> str:
    """TensorBoard's name for a ``metrics.jsonl`` key: the key, put in a group, since TensorBoard groups the charts
    by what comes before the first ``/``. ``eval/...`` stays as it is, the run's pace and memory go under ``run/``,
    and the rest (losses, discriminator statistics, what a loss reports) under ``train/``: ``train/d_loss``."""
    if "/" in key:
        return key
    return f"run/{key}" if key in RUN_FIELDS else f"train/{key}"


def _keep_writer_threads_quiet() -> None:
    """Stop TensorBoard's writer thread from printing its own traceback ("Exception in thread Thread-1: ...
    PermissionError") when a write fails: the writer keeps the exception and raises it again at the next write or
    flush, on the thread that called it, where the run turns it into one warning. Other threads are left alone."""
    previous = threading.excepthook
    if getattr(previous, "gankit_tensorboard", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and getattr(args.thread, "exception", None) is not None:
            return
        previous(args)

    hook.gankit_tensorboard = True  # type: ignore[attr-defined]
    threading.excepthook = hook


@contextlib.contextmanager
def _writing(folder: Path) -> Iterator[None]:
    """An OS failure of a write (a full disk, a read-only or immutable folder) as one line naming the folder."""
    try:
        yield
    except OSError as exc:
        raise PluginError(f"cannot write {folder}: {exc.strerror or exc}") from None


class TensorBoardOptions(TrackerOptions):
    """Options of the ``tensorboard`` tracker."""

    flush_secs: int = Field(10, ge=1, le=3600, description="Seconds between writes of pending events to disk.")
    images: bool = Field(True, description="Log each sample grid too, as the image 'samples'.")


def flat_hyperparameters(values: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """``{"generator_options": {"width": 64}}`` -> ``{"generator_options.width": 64}``; lists and None as JSON."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(flat_hyperparameters(value, f"{prefix}{key}."))
        elif isinstance(value, bool | int | float | str):
            flat[f"{prefix}{key}"] = value
        else:
            flat[f"{prefix}{key}"] = json.dumps(value)
    return flat


class TensorBoardTracker(Tracker):
    """Every metric as a scalar named after its ``metrics.jsonl`` key (``tag``), each sample grid as an image, the
    config as hyperparameters (the HPARAMS tab, and a text table). A resumed run purges the steps it trains again."""

    Options = TensorBoardOptions
    options: TensorBoardOptions

    def __init__(self, options: TensorBoardOptions) -> None:
        super().__init__(options)
        if importlib.util.find_spec("tensorboard") is None:
            raise PluginError(
                'the tensorboard tracker needs the tensorboard package: pip install "gankit[tensorboard]"'
            )
        self.writer: Any = None
        self.folder = Path(FOLDER)

    def start(self, run_dir: Path, hyperparameters: Mapping[str, Any], *, resumed_at_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        folder = run_dir / FOLDER
        self.folder = folder
        if folder.exists() and not folder.is_dir():
            raise PluginError(f"cannot write {folder}: it is a file, not a folder; move it away")
        _keep_writer_threads_quiet()
        with _writing(folder):
            folder.mkdir(exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PluginError(f"cannot write {folder}: it is not writable")
        if not resumed_at_step:  # a fresh run (perhaps --overwrite): the events of an earlier one would mix in
            for old in folder.glob("events.out.tfevents.*"):
                old.unlink()
        first = not any(folder.glob("events.out.tfevents.*"))
        # purge_step hides every event from this step on: those of steps after the checkpoint, trained again now.
        purge = resumed_at_step + 1 if resumed_at_step else None
        with _writing(folder):
            self.writer = SummaryWriter(str(folder), purge_step=purge, flush_secs=self.options.flush_secs)
            flat = flat_hyperparameters(hyperparameters)
            if first:  # the HPARAMS tab reads one session per run
                for summary in hparams(flat, {}):  # type: ignore[no-untyped-call]
                    self.writer.file_writer.add_summary(summary)
            table = "\n".join(
                ["| key | value |", "|---|---|", *(f"| {key} | {value} |" for key, value in flat.items())]
            )
            self.writer.add_text("hyperparameters", table, global_step=resumed_at_step)

    def log_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        with _writing(self.folder):
            for name, value in scalars.items():
                self.writer.add_scalar(tag(name), value, global_step=step)

    def log_image(self, tag: str, step: int, image_path: Path) -> None:
        if not self.options.images:
            return
        import numpy as np
        from PIL import Image

        with Image.open(image_path) as image:
            pixels = np.asarray(image.convert("RGB"))
        with _writing(self.folder):
            self.writer.add_image(tag, pixels, global_step=step, dataformats="HWC")

    def close(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            with _writing(self.folder):
                writer.close()  # flushes first
