"""Name the plugin whose code raised: a guard around each call into plugin code, and attribution by traceback.

gankit calls plugin code at a few boundaries (a constructor, ``Dataset.load``, the contract check's first forward)
and wraps each in ``plugin_code``: an exception there becomes one ``PluginFailure`` line naming the plugin, its
distribution and the exception's own message, with the traceback kept in ``details``. Exceptions raised later, inside
a training step, are attributed by ``attribute``: the innermost traceback frame that belongs to a plugin names it.
gankit's own errors (``GankitError``, e.g. a ``DataError`` a dataset raises on purpose) pass through unchanged.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from gankit.errors import GankitError, PluginFailure

HINTS = {
    "before Module.__init__() call": "call super().__init__(options) first in __init__",
    "object has no attribute 'options'": "call super().__init__(options) first in __init__",
}
"""A fragment of a common exception message -> what the plugin author should change."""

MAX_MESSAGE = 300
"""Characters of the exception's own message kept in the one line; ``details`` has all of it."""


def describe(exc: BaseException) -> str:
    """``ValueError: the message`` on one line, shortened, with a hint when the mistake is a common one."""
    text = " ".join(str(exc).split())
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 3] + "..."
    shown = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    hint = next((fix for fragment, fix in HINTS.items() if fragment in text), None)
    return f"{shown} ({hint})" if hint else shown


def failure(who: str, doing: str, exc: BaseException) -> PluginFailure:
    """The ``PluginFailure`` for ``exc`` raised by the plugin ``who`` (``generator 'x' from 'dist' 1.0``) while
    ``doing`` (``in its constructor``)."""
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return PluginFailure(f"{who} raised {doing}: {describe(exc)}", details=details)


@contextmanager
def plugin_code(who: str, doing: str) -> Iterator[None]:
    """Run a call into plugin code; anything but a ``GankitError`` it raises becomes a ``PluginFailure``."""
    try:
        yield
    except GankitError:
        raise
    except Exception as exc:  # plugin code may raise anything; name the plugin in one line
        raise failure(who, doing, exc) from exc


def _frames(exc: BaseException) -> Iterator[tuple[object, str]]:
    """(``self`` or None, module name) of every frame of ``exc``'s traceback and of its causes, innermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = []
        tb: TracebackType | None = current.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            found.append((frame.f_locals.get("self"), str(frame.f_globals.get("__name__", ""))))
            tb = tb.tb_next
        yield from reversed(found)
        current = current.__cause__ or current.__context__


def _package(module: str) -> str:
    return module.partition(".")[0]


def attribute(exc: BaseException, plugins: Sequence[tuple[object, str]]) -> str | None:
    """Which of ``plugins`` (``(plugin object, who)`` pairs) raised ``exc``, or None when no frame is theirs.

    A frame of a method of the plugin object itself decides first; otherwise the innermost frame in a module of
    the package that defines a plugin class names that plugin (the first listed when several share the package).
    """
    frames = list(_frames(exc))
    for owner, _ in frames:
        for plugin, who in plugins:
            if owner is not None and owner is plugin:
                return who
    packages = [(_package(type(plugin).__module__), who) for plugin, who in plugins]
    for _, module in frames:
        for package, who in packages:
            if package not in ("gankit", "torch", "builtins") and _package(module) == package:
                return who
    return None


def plugin_failure_of(exc: BaseException, plugins: Sequence[tuple[object, str]], doing: str) -> PluginFailure | None:
    """A ``PluginFailure`` for ``exc`` when a plugin's code raised it (see ``attribute``), else None."""
    if isinstance(exc, GankitError) or not isinstance(exc, Exception):
        return None
    who = attribute(exc, plugins)
    return failure(who, doing, exc) if who is not None else None


@contextmanager
def failures_reported(
    plugins: Sequence[tuple[object, str]], *, log: Path | None, doing: str = "during training"
) -> Iterator[None]:
    """Turn an exception a plugin raised into its ``PluginFailure`` and keep every traceback in ``log``.

    ``log`` is written (when given and its folder exists) for a ``PluginFailure`` and for any exception that is not
    a ``GankitError``; the one line then says where the traceback is. Unattributed exceptions propagate unchanged.
    """
    try:
        yield
    except PluginFailure as exc:
        if _write_log(log, exc.details):
            raise PluginFailure(f"{exc} (traceback in {log})", details=exc.details) from exc
        raise
    except GankitError:
        raise
    except Exception as exc:  # plugin code may raise anything; name the plugin when a frame is its
        found = plugin_failure_of(exc, plugins, doing)
        if found is None:
            _write_log(log, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            raise
        if _write_log(log, found.details):
            found = PluginFailure(f"{found} (traceback in {log})", details=found.details)
        raise found from exc


def _write_log(log: Path | None, text: str) -> bool:
    if log is None or not log.parent.is_dir() or not text:
        return False
    try:
        log.write_text(text)
    except OSError:
        return False
    return True
