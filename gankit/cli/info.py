"""``gankit info``: what one plugin is, its options and, for models, the shape and size of every layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from gankit.cli.common import OPTION_FLAGS, plugin_option_flags, table_console
from gankit.registry import KINDS

if TYPE_CHECKING:
    from rich.console import Console

    from gankit.registry import PluginDescription


@click.command("info")
@click.argument("kind", metavar="KIND|EXPORT")
@click.argument("name", required=False)
@click.option(
    "--image-size", type=click.IntRange(1), default=None, help="Image side the model is built for [default: plugin's]."
)
@plugin_option_flags
@click.option("--opt", "opts", multiple=True, hidden=True)  # the old spelling of the flag that matches KIND
def command(
    kind: str, name: str | None, image_size: int | None, opts: tuple[str, ...], **given: tuple[str, ...]
) -> None:
    """Describe plugin NAME of KIND: its options and, for a generator or discriminator, its layers. With one
    argument, EXPORT (a .safetensors or .onnx export, or a run folder): its metadata and model card.

    --gen-opt sets a generator's options, --disc-opt a discriminator's and so on, as for gankit train.

    Examples: gankit info generator dcgan --image-size 64 --gen-opt width=32; gankit info dcgan.safetensors
    """
    if name is None:
        _describe_export(
            kind, image_size=image_size, flags=(*opts, *(pair for pairs in given.values() for pair in pairs))
        )
        return
    if kind not in KINDS:
        raise click.BadParameter(f"{kind!r} is not one of {', '.join(map(repr, KINDS))}", param_hint="'KIND'")

    from gankit.errors import ConfigError
    from gankit.registry import describe_plugin
    from gankit.run import parse_key_values

    flag = OPTION_FLAGS[kind][0]
    for other, pairs in given.items():
        if pairs and other != f"{kind}_options":
            other_flag = OPTION_FLAGS[other.removesuffix("_options")][0]
            raise ConfigError(f"{other_flag} sets options of another kind of plugin; for a {kind} use {flag}")
    options = parse_key_values((*given[f"{kind}_options"], *opts), flag=flag)
    if image_size is not None:
        if "image_size" in options and options["image_size"] != image_size:
            raise ConfigError(f"{flag} sets image_size={options['image_size']!r} but --image-size says {image_size}")
        options["image_size"] = image_size
    _print(table_console(), describe_plugin(kind, name, **options))


def _describe_export(source: str, *, image_size: int | None, flags: tuple[str, ...]) -> None:
    """``gankit info EXPORT``; plugin flags describe a plugin to build, so they are refused here."""
    from pathlib import Path

    from gankit.cli.info_export import show_export

    if source in KINDS:
        raise click.UsageError(f"Missing argument 'NAME': which {source} plugin? (gankit plugins lists them)")
    if image_size is not None or flags:
        raise click.UsageError("--image-size and plugin options describe a plugin, not an export; leave them out")
    show_export(Path(source), table_console())


def _print(console: Console, described: PluginDescription) -> None:
    from rich.table import Table

    from gankit.files import rich_safe as escape
    from gankit.registry import DUMMY_BATCH

    def shape(dims: tuple[int, ...] | None) -> str:
        if dims is None:
            return "-"
        shown = ["N" if index == 0 and dim == DUMMY_BATCH else str(dim) for index, dim in enumerate(dims)]
        return f"({', '.join(shown)}{',' if len(shown) == 1 else ''})"

    console.print(
        f"[bold]{described.kind} '{escape(described.name)}'[/bold] from {escape(described.origin)} "
        f"({escape(described.target)}), plugin API {described.api_version}"
    )
    for text in (described.module_summary, described.summary):
        if text:
            console.print(escape(text))
    if described.details:
        console.print(escape(described.details), style="dim")
    if described.recommended_training:
        shown = ", ".join(f"{key}={value!r}" for key, value in sorted(described.recommended_training.items()))
        console.print(f"recommended training settings, used where you give none: {escape(shown)}")

    options = Table(title="options", title_justify="left")
    changed = any(option.value != option.default for option in described.options)
    columns = ["option", "type", "default", *(["value"] if changed else []), "bounds", "description"]
    for column in columns:
        options.add_column(column, overflow="fold")
    for option in described.options:
        value = [repr(option.value)] if changed else []
        row = [option.name, option.type, option.default_text, *value, option.bounds_text, option.description]
        options.add_row(*map(escape, row))
    if described.options:
        console.print(options)
    else:
        console.print("options: none")

    if described.layers is None:
        for warning in described.warnings:  # e.g. the layers need a required option
            console.print(f"[yellow]warning[/yellow]: {escape(warning)}")
        return
    total = described.total_parameters or 0
    layers = Table(title=f"layers (a dummy batch of N={DUMMY_BATCH})", title_justify="left", show_footer=True)
    layers.add_column("layer", footer="total", overflow="fold")
    layers.add_column("type", overflow="fold")
    layers.add_column("output shape", footer=shape(described.output_shape))
    layers.add_column("parameters", footer=f"{total:,}", justify="right")
    for layer in described.layers:
        output = "not run" if layer.calls == 0 else shape(layer.output_shape)
        if layer.calls > 1:
            output += f" x{layer.calls} calls"
        layers.add_row(escape(layer.path or "(model)"), escape(layer.type), output, f"{layer.parameters:,}")
    console.print(layers)
    inputs = ", ".join(f"{key} {shape(dims)}" for key, dims in described.input_shapes.items())
    trainable = described.trainable_parameters or 0
    megabytes = (described.parameter_bytes or 0) / 2**20
    console.print(
        f"input {inputs} -> output {shape(described.output_shape)}; {total:,} parameters "
        f"({trainable:,} trainable, {megabytes:.2f} MiB)"
    )
    for warning in described.warnings:
        console.print(f"[yellow]warning[/yellow]: {escape(warning)}")
