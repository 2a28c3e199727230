"""``gankit plugins``: every installed plugin with its distribution, version and whether it loads."""

from __future__ import annotations

import click
from rich.table import Table

from gankit.cli.common import table_console
from gankit.registry import KINDS


@click.command("plugins")
@click.option("--kind", type=click.Choice(list(KINDS)), help="Only this kind.")
def command(kind: str | None) -> None:
    """List installed plugins; a broken one shows why instead of breaking the listing.

    A name two distributions provide is marked: only its qualified form (DIST:NAME) picks one of them.
    """
    from gankit.files import rich_safe as escape
    from gankit.registry import registry

    clashes = registry.clashes(kind)
    table = Table(title="gankit plugins")
    for column in ("kind", "name", "distribution", "version", "status"):
        table.add_column(column, overflow="fold")
    for entry in registry.entries(kind):
        status = registry.status(entry)
        if status == "ok" and entry.kind == "tracker":
            status = _tracker_ready(entry.qualified_name)
        shown = "[green]ok[/green]" if status == "ok" else f"[red]error[/red]: {escape(status)}"
        if (entry.kind, entry.name) in clashes:
            shown += f"; [yellow]name clash[/yellow]: use {escape(entry.qualified_name)}"
        table.add_row(entry.kind, escape(entry.name), escape(entry.distribution), escape(entry.version), shown)
    table_console().print(table)


def _tracker_ready(name: str) -> str:
    """``'ok'`` when the tracker builds with its default options, else why not: a tracker checks in its constructor
    that what it writes through is installed (``gankit.interfaces.Tracker``), so loading its class is not enough."""
    from gankit.errors import GankitError
    from gankit.registry import registry

    try:
        registry.create("tracker", name, {})
    except GankitError as exc:
        return str(exc)
    return "ok"
