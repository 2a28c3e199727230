"""The ``gankit`` command: one click group, one module per subcommand.

The CLI is thin: it parses, builds typed configuration and calls the library. Every ``GankitError`` the library
raises becomes one line on stderr and exit code 2, never a traceback; ``gankit --debug`` shows the traceback of a
plugin's failure (and of every other error) above that line.
"""

from __future__ import annotations

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


def _traceback_of(error: GankitError) -> str:
    """A plugin failure's own traceback (kept in ``details``), else the error's with the exceptions behind it."""
    import traceback

    details = getattr(error, "details", "")
    return details or "".join(traceback.format_exception(type(error), error, error.__traceback__))


def _register_commands() -> None:
    from gankit.cli import eval, export, info, plugin_new, plugins, sample, train

    for module in (train, sample, export, eval, plugins, info, plugin_new):
        main.add_command(module.command)


_register_commands()
