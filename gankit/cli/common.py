"""What several commands share: the ``--gen-opt`` flag family, ``--out`` with ``--overwrite``, the overwrite check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gankit.errors import ConfigError

FC = Callable[..., Any]

TABLE_WIDTH = 160
"""Columns of the tables that ``plugins``, ``info`` and ``eval`` print when the output is not a terminal (a file or a
pipe), so they do not wrap at 80."""


def table_console() -> Any:
    """The rich console every command prints its tables with: the terminal's width, or ``TABLE_WIDTH`` off one."""
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = TABLE_WIDTH
    return console


OPTION_FLAGS: dict[str, tuple[str, str]] = {
    "generator": ("--gen-opt", "generator"),
    "discriminator": ("--disc-opt", "discriminator"),
    "loss": ("--loss-opt", "loss"),
    "dataset": ("--data-opt", "dataset (e.g. root=/path/to/idx/files)"),
    "tracker": ("--tracker-opt", "tracker; NAME.KEY=VALUE when there are several"),
}
"""Plugin kind (``gankit.registry.KINDS``) -> its repeatable ``KEY=VALUE`` flag and what the help says it sets.

Each flag fills the parameter ``<kind>_options``, the name of the matching ``TrainConfig`` field.
"""


def plugin_option_flags(function: FC) -> FC:
    """``--gen-opt KEY=VALUE`` and its siblings, validated later against each plugin's own Options model."""
    for kind, (flag, what) in reversed(OPTION_FLAGS.items()):
        function = click.option(
            flag,
            f"{kind}_options",
            multiple=True,
            metavar="KEY=VALUE",
            help=f"Set an option of the {what} (repeatable).",
        )(function)
    return function


def output_options(default: str) -> Callable[[FC], FC]:
    """``--out PATH`` (``None`` unless given; ``default`` says what the command then writes) and ``--overwrite``."""

    def decorate(function: FC) -> FC:
        function = click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")(function)
        out = click.option("--out", type=click.Path(path_type=Path), default=None, help=f"{default}.")
        return out(function)

    return decorate


def already_exists(path: Path) -> ConfigError:
    """The one-line error for an output file that is there already."""
    return ConfigError(f"{path} already exists; pass --overwrite or choose another --out")


def refuse_to_overwrite(path: Path, *, overwrite: bool) -> None:
    """Raise ``already_exists`` unless ``path`` is free or ``--overwrite`` was given; call it before any work."""
    if path.exists() and not overwrite:
        raise already_exists(path)
