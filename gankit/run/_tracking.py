"""A run's experiment trackers: built from the config before anything is written, fed at log points, never fatal.

``Trackers`` holds the ``Tracker`` plugins of ``config.trackers`` and hands each of them what the loop has already
read at a log point: the numeric values of the ``metrics.jsonl`` line and the path of each sample grid. Each tracker
runs on its own thread, in the order it was handed things, so a tracker that blocks (a slow network) never holds
training up and its time is not training time; a call slower than ``SLOW_CALL_S`` is one warning. A tracker that
raises, ``sys.exit()`` included, is one warning, closed and left out; training goes on. At the end of the run each
tracker gets ``CLOSE_WAIT_S`` to finish what it was handed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gankit.files import one_line
from gankit.run._config import TrainConfig

if TYPE_CHECKING:
    from gankit.interfaces import Tracker

SLOW_CALL_S = 10.0
"""A tracker call that takes longer than this is said once per tracker; training does not wait for it either way."""

CLOSE_WAIT_S = 120.0
"""At the end of a run, how long the trackers together may take to finish what they were handed."""


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


class _TrackerThread:
    """One tracker called in order on its own daemon thread; what goes wrong there is kept for the main thread to
    say, since only the main thread reports."""

    def __init__(self, name: str, tracker: Tracker) -> None:
        self.name = name
        self.tracker = tracker
        self.calls: queue.SimpleQueue[tuple[str, tuple[Any, ...], dict[str, Any]] | None] = queue.SimpleQueue()
        self.failure: str | None = None
        """Set on the thread: the one line of the call that raised; later calls are dropped."""
        self.slow: tuple[str, float] | None = None
        """Set on the thread: the first call slower than ``SLOW_CALL_S``, and its seconds."""
        self.current: tuple[str, float] | None = None
        """The call in progress and when it started, for a tracker stuck in one."""
        self.thread = threading.Thread(target=self._work, name=f"gankit-tracker-{name}", daemon=True)
        self.thread.start()

    def submit(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.put((method, args, kwargs))

    def _work(self) -> None:
        while (call := self.calls.get()) is not None:
            method, args, kwargs = call
            if self.failure is not None:
                continue  # left out: what was handed over since is dropped
            started = time.perf_counter()
            self.current = (method, started)
            try:
                getattr(self.tracker, method)(*args, **kwargs)
            except (Exception, SystemExit) as exc:  # a tracker may fail in any way; the run is worth more
                self.failure = f"failed in {method}: {one_line(exc, kind=True)}"
                if method != "close":
                    with suppress(Exception, SystemExit):  # already reported once; a second message would add nothing
                        self.tracker.close()
            finally:
                self.current = None
                seconds = time.perf_counter() - started
                if seconds > SLOW_CALL_S and self.slow is None:
                    self.slow = (method, seconds)

    def finish(self, timeout: float) -> bool:
        """Let the thread end once it has done what it was handed; whether it did within ``timeout`` seconds."""
        self.calls.put(None)
        self.thread.join(max(timeout, 0.0))
        return not self.thread.is_alive()


class Trackers:
    """The trackers of one run on this process (none off the main rank), each kept only while it works."""

    def __init__(self, trackers: Mapping[str, Tracker], warn: Callable[[str], None]) -> None:
        self._trackers = dict(trackers)
        self._active: dict[str, _TrackerThread] = {}
        self._warn = warn
        self._said: set[str] = set()

    @contextmanager
    def running(self, run_dir: Path, hyperparameters: Mapping[str, Any], *, resumed_at_step: int) -> Iterator[None]:
        """Start every tracker on its thread, and close them all when the block ends, however it ends."""
        self._active = {name: _TrackerThread(name, tracker) for name, tracker in self._trackers.items()}
        for worker in self._active.values():
            worker.submit("start", run_dir, dict(hyperparameters), resumed_at_step=resumed_at_step)
        try:
            yield
        finally:
            for worker in self._active.values():
                worker.submit("close")
            deadline = time.perf_counter() + CLOSE_WAIT_S
            for name, worker in list(self._active.items()):
                if not worker.finish(deadline - time.perf_counter()):
                    method = worker.current[0] if worker.current is not None else "close"
                    self._say(
                        f"{name}:stuck",
                        f"tracker '{name}' was still in {method} {CLOSE_WAIT_S:.0f} s after the run ended; it is "
                        "left behind, so its last values may be missing there (metrics.jsonl has everything)",
                    )
            self._report()
            self._active.clear()

    def log_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Hand one metrics line, as written to ``metrics.jsonl``, to every tracker."""
        self._report()
        if self._active:
            scalars = scalars_of(metrics)
            for worker in self._active.values():
                worker.submit("log_scalars", int(metrics["step"]), scalars)

    def log_image(self, tag: str, step: int, image_path: Path) -> None:
        """Hand a picture the run just wrote (a sample grid) to every tracker."""
        self._report()
        for worker in self._active.values():
            worker.submit("log_image", tag, step, image_path)

    def _report(self) -> None:
        """Say what the trackers' threads found since the last time: a failure (the tracker is then left out), a
        slow call, a call still running past the budget; each once."""
        now = time.perf_counter()
        for name, worker in list(self._active.items()):
            current = worker.current
            if worker.slow is not None or (current is not None and now - current[1] > SLOW_CALL_S):
                method, seconds = worker.slow if worker.slow is not None else (current[0], now - current[1])  # type: ignore[index]
                self._say(
                    f"{name}:slow",
                    f"tracker '{name}' took {seconds:.1f} s in {method} (more than {SLOW_CALL_S:g} s); it runs on "
                    "its own thread, so training does not wait for it and its time is not counted as training time",
                )
            if worker.failure is not None:
                del self._active[name]
                worker.calls.put(None)  # its thread ends once it has dropped what is queued
                self._say(
                    f"{name}:failed",
                    f"tracker '{name}' {worker.failure}; it is left out for the rest of the run, training continues "
                    "(metrics.jsonl has everything)",
                )

    def _say(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self._warn(message)
