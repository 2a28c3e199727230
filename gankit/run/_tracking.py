"""A run's experiment trackers: built from the config before anything is written, fed at log points, never fatal.

``Trackers`` holds the ``Tracker`` plugins of ``config.trackers`` and hands each of them what the loop has already
read at a log point: the numeric values of the ``metrics.jsonl`` line and the path of each sample grid. A tracker
that raises is reported in one warning, closed and left out; training goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gankit.run._config import TrainConfig

if TYPE_CHECKING:
    from gankit.interfaces import Tracker


def build_trackers(config: TrainConfig) -> dict[str, Tracker]:
    """Every tracker of ``config``, built with its validated options; a bad name, option or a missing package
    raises ``PluginError`` or ``ConfigError`` here, before the run writes anything."""
    from gankit.registry import registry

    return {name: registry.create("tracker", name, config.tracker_options.get(name)) for name in config.trackers}


def scalars_of(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric values of a metrics line, all but ``step``: what ``Tracker.log_scalars`` receives."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if key != "step" and isinstance(value, int | float) and not isinstance(value, bool)
    }


class Trackers:
    """The trackers of one run on this process (none off the main rank), each kept only while it works."""

    def __init__(self, trackers: Mapping[str, Tracker], warn: Callable[[str], None]) -> None:
        self._active = dict(trackers)
        self._warn = warn

    @contextmanager
    def running(self, run_dir: Path, hyperparameters: Mapping[str, Any], *, resumed_at_step: int) -> Iterator[None]:
        """Start every tracker, and close them all when the block ends, however it ends."""
        for name in list(self._active):
            self._call(name, "start", run_dir, hyperparameters, resumed_at_step=resumed_at_step)
        try:
            yield
        finally:
            for name in list(self._active):
                self._call(name, "close")
            self._active.clear()

    def log_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Hand one metrics line, as written to ``metrics.jsonl``, to every tracker."""
        if self._active:
            scalars = scalars_of(metrics)
            for name in list(self._active):
                self._call(name, "log_scalars", int(metrics["step"]), scalars)

    def log_image(self, tag: str, step: int, image_path: Path) -> None:
        """Hand a picture the run just wrote (a sample grid) to every tracker."""
        for name in list(self._active):
            self._call(name, "log_image", tag, step, image_path)

    def _call(self, name: str, method: str, *args: Any, **kwargs: Any) -> None:
        tracker = self._active[name]
        try:
            getattr(tracker, method)(*args, **kwargs)
        except Exception as exc:  # a tracker may fail in any way (network, disk); the run is worth more
            del self._active[name]
            self._warn(
                f"tracker '{name}' failed in {method}: {type(exc).__name__}: {exc}; it is left out for the rest of "
                "the run, training continues (metrics.jsonl has everything)"
            )
            if method != "close":
                with suppress(Exception):  # already reported once; a second message would add nothing
                    tracker.close()
