"""Clean interruption: SIGINT and SIGTERM ask the training loop to stop between two steps.

The loop finishes the step it is in, writes a checkpoint and raises ``TrainingInterrupted``. A second Ctrl-C
abandons the step at once (``KeyboardInterrupt``), for when even that takes too long. Outside the loop (start-up,
the final export) ``sigterm_interrupts`` makes SIGTERM what Ctrl-C already is there: a ``KeyboardInterrupt``, so
the command exits 130 instead of being killed with 143.
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def sigterm_interrupts(function: F) -> F:
    """Run ``function`` with SIGTERM raising ``KeyboardInterrupt`` (as SIGINT does); the old handler comes back after.

    Put it on a command's callback so that SIGTERM at any moment, before the loop's ``StopRequest`` is installed
    too, ends the command the way Ctrl-C does.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():  # signals can only be caught there
            return function(*args, **kwargs)
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            return function(*args, **kwargs)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


class StopRequest:
    """A context manager that turns SIGINT/SIGTERM into a flag; handlers are restored on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else "nothing"

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt  # asked twice: give up on the graceful stop
        self.signal = signum

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
