"""Name the plugin whose code raised: a guard around each call into plugin code, and attribution by traceback.

gankit calls plugin code at a few boundaries (a constructor, ``Dataset.load``, the contract check's first forward)
and wraps each in ``plugin_code``: an exception there becomes one ``PluginFailure`` line naming the plugin, its
distribution and the exception's own message, with the traceback kept in ``details``. Exceptions raised later, inside
a training step, are attributed by ``attribute``: the innermost traceback frame that belongs to a plugin names it.
gankit's own errors (``GankitError``, e.g. a ``DataError`` a dataset raises on purpose) pass through unchanged.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from gankit.errors import GankitError, PluginError, PluginFailure
from gankit.files import atomic_write_bytes, one_line

HINTS = {
    "before Module.__init__() call": "call super().__init__(options) first in __init__",
    "object has no attribute 'options'": "call super().__init__(options) first in __init__",
}
"""A fragment of a common exception message -> what the plugin author should change."""

SYSTEM_EXIT_HINT = "plugin code must not call sys.exit(): raise an exception that says what went wrong"

CONTAINED = (Exception, SystemExit)
"""What a call into plugin code may raise and still be one line naming the plugin: any exception, and ``SystemExit``
(a ``sys.exit()`` in a forward must not end the process without a word). ``KeyboardInterrupt`` stays Ctrl-C."""

MAX_MESSAGE = 300
"""Characters of the exception's own message kept in the one line; ``details`` has all of it."""


def describe(exc: BaseException) -> str:
    """``ValueError: the message`` on one line, shortened, with a hint when the mistake is a common one."""
    shown = one_line(exc, limit=MAX_MESSAGE, kind=True)
    hint = next((fix for fragment, fix in HINTS.items() if fragment in shown), None)
    if isinstance(exc, SystemExit):
        hint = SYSTEM_EXIT_HINT
    return f"{shown} ({hint})" if hint else shown


def failure(who: str, doing: str, exc: BaseException) -> PluginFailure:
    """The ``PluginFailure`` for ``exc`` raised by the plugin ``who`` (``generator 'x' from 'dist' 1.0``) while
    ``doing`` (``in its constructor``)."""
    return PluginFailure(f"{who} raised {doing}: {describe(exc)}", details=_formatted(exc))


@contextmanager
def plugin_code(who: str, doing: str) -> Iterator[None]:
    """Run a call into plugin code; anything but a ``GankitError`` it raises (``SystemExit`` too) becomes a
    ``PluginFailure``."""
    try:
        yield
    except GankitError:
        raise
    except CONTAINED as exc:  # plugin code may raise anything; name the plugin in one line
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
    if isinstance(exc, GankitError) or not isinstance(exc, CONTAINED):
        return None
    who = attribute(exc, plugins)
    return failure(who, doing, exc) if who is not None else None


@contextmanager
def failures_reported(
    plugins: Sequence[tuple[object, str]], *, log: Path | None, doing: str = "during training"
) -> Iterator[None]:
    """Turn an exception a plugin raised into its ``PluginFailure`` and keep every traceback in ``log``.

    ``log`` is written (when given and its folder exists) for every ``PluginError`` (a plugin's own failure, or a
    mistake gankit found in what it returned) and for any exception that is not a ``GankitError``; the one line then
    says where the traceback is. A ``SystemExit`` from a plugin's frame is its failure like any other exception.
    Unattributed exceptions propagate unchanged.
    """
    try:
        yield
    except PluginError as exc:
        details = getattr(exc, "details", "") or _formatted(exc)
        if not _write_log(log, details):
            raise
        raise PluginFailure(f"{exc} (traceback in {log})", details=details) from exc
    except GankitError:
        raise
    except CONTAINED as exc:  # plugin code may raise anything; name the plugin when a frame is its
        found = plugin_failure_of(exc, plugins, doing)
        if found is None:
            _write_log(log, _formatted(exc))
            raise
        if _write_log(log, found.details):
            found = PluginFailure(f"{found} (traceback in {log})", details=found.details)
        raise found from exc


SAVED_TENSOR = re.compile(r"output \d+ of (\w+?)(?:Backward\d*)?[,\s]")
"""In autograd's "modified by an inplace operation" error: the operation whose saved output was overwritten."""


def graph_owner(exc: BaseException, parts: Sequence[tuple[str, Sequence[Any]]]) -> str | None:
    """Which of ``parts`` (``(who, output tensors)`` in the order they were computed: generator, discriminator, loss)
    holds the autograd node that autograd's error ``exc`` names, when exactly one does.

    Each part owns the nodes reachable from its outputs that no earlier part owns, so the discriminator's nodes are
    those between the generator's images and its logits. Only "modified by an inplace operation" names a node.
    """
    found = SAVED_TENSOR.search(str(exc))
    if found is None:
        return None
    operation, seen = found.group(1), set()
    owners = []
    for who, outputs in parts:
        stack = [getattr(tensor, "grad_fn", None) for tensor in outputs]
        names = set()
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            names.add(node.name())
            stack.extend(next_node for next_node, _ in node.next_functions)
        if any(name.startswith(operation) for name in names):
            owners.append(who)
    return owners[0] if len(owners) == 1 else None


def _formatted(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _write_log(log: Path | None, text: str) -> bool:
    """Write the traceback whole or not at all (atomically: a full disk leaves no 0-byte ``error.log``, and a link
    planted as ``error.log`` is replaced, never written through); whether it was written."""
    if log is None or not log.parent.is_dir() or not text:
        return False
    try:
        atomic_write_bytes(log, text.encode("utf-8", "replace"))
    except OSError:
        return False
    return True
