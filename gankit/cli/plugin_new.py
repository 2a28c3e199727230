"""``gankit plugin new``: write a ready plugin package (``gankit.registry.write_plugin_package``)."""

from __future__ import annotations

from pathlib import Path

import click

from gankit.cli import GankitGroup


@click.group("plugin", cls=GankitGroup)
def command() -> None:
    """Create plugin packages."""


@command.command("new")
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder in which to create gankit-NAME/.",
)
def new(name: str, parent: Path) -> None:
    """Write gankit-NAME/, a package with a generator, a discriminator and a loss called NAME, and a test.

    Example: gankit plugin new mygan && pip install -e gankit-mygan && gankit train --gen mygan --loss mygan
    """
    from gankit.registry import write_plugin_package

    target, written = write_plugin_package(name, parent)
    click.echo(f"created {target} with a generator, a discriminator and a loss called '{name}':")
    for path in written:
        click.echo(f"  {path}")
    click.echo(
        f"next: pip install -e {target} && cd {target} && pytest && "
        f"gankit train --gen {name} --loss {name} --dataset fake --max-steps 20"
    )
