"""The ``gankit`` command: one click group, one module per subcommand.

The CLI is thin: it parses, builds typed configuration and calls the library. Every ``GankitError`` the library
raises becomes one line on stderr and exit code 2, never a traceback; ``gankit --debug`` shows the traceback of a
plugin's failure (and of every other error) above that line.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import click

import gankit
from gankit.errors import GankitError
from gankit.files import printable


class UserError(click.ClickException):
    """A problem the user can fix: printed as ``Error: ...`` with the error's exit code (2 for bad input)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance


class GankitGroup(click.Group):
    """Turns gankit's own errors into one-line messages, and Ctrl-C into exit code 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _sigterm_as_ctrl_c():
                return super().invoke(ctx)
        except GankitError as exc:
            from gankit.run import report_to_launcher

            report_to_launcher(exc)  # in a process of `gankit train --nproc N`: the launcher prints it, once
            if ctx.params.get("debug"):
                click.echo(_traceback_of(exc), err=True, nl=False)
            # The message may quote a file or plugin metadata: control characters are shown escaped, never run.
            raise UserError(printable(exc, limit=None), exc.exit_code) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


@click.group(cls=GankitGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(gankit.__version__, prog_name="gankit")
@click.option("--debug", is_flag=True, help="Show the full traceback above an error's one line (e.g. a plugin's).")
def main(debug: bool) -> None:
    """gankit: train, sample and export GANs; add generators, discriminators and losses as plugins."""
    show_messages()


MESSAGE_LOGGERS = ("gankit", "gankit_plugins")
"""Loggers whose INFO lines a user should see: a first download, decoding a folder, training a classifier."""


class _StderrLines(logging.Handler):
    """Each record as its plain message on the current stderr (looked up per line, as click's test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(printable(self.format(record), limit=None), err=True)


def show_messages(level: int = logging.INFO) -> None:
    """Show what gankit and its built-in plugins log at ``level`` and above on stderr, once per process."""
    for name in MESSAGE_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(isinstance(handler, _StderrLines) for handler in logger.handlers):
            logger.addHandler(_StderrLines())


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler ending a job) is Ctrl-C in every command: one ``Interrupted.`` line and exit code
    130, never a silent death with 143 (``gankit export --format onnx`` printed nothing). Temporary files of
    unfinished atomic writes are removed on the way out, as for Ctrl-C; ``train`` stops at a step boundary itself."""
    if threading.current_thread() is not threading.main_thread():  # signals can only be caught there
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _traceback_of(error: GankitError) -> str:
    """A plugin failure's own traceback (kept in ``details``), else the error's with the exceptions behind it."""
    import traceback

    details = getattr(error, "details", "")
    return details or "".join(traceback.format_exception(type(error), error, error.__traceback__))


def _register_commands() -> None:
    from gankit.cli import compare, eval, export, info, plugin_new, plugins, sample, train

    for module in (train, sample, export, eval, plugins, info, plugin_new, compare):
        main.add_command(module.command)


_register_commands()
