"""Self-describing plugins: what a plugin is, which options it takes and, for models, what its layers do.

``describe_plugin("generator", "dcgan", image_size=64)`` reads the plugin's docstring and its pydantic ``Options``
(type, default, bounds and description of every field) and, for generators and discriminators, builds the real
model and runs it once on a dummy batch with forward hooks, recording the output shape and the parameter count of
every layer. Nothing here knows any architecture: what works for the built-ins works for any plugin. The option
table is ``gankit.option_table``'s, the layer table ``gankit.layer_table``'s; their names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gankit.errors import ConfigError, format_validation_error
from gankit.interfaces import PluginOptions
from gankit.layer_table import DUMMY_BATCH, LayerInfo, layer_fields
from gankit.option_table import OptionInfo, describe_options, split_doc, type_name
from gankit.registry import registry

__all__ = [
    "DUMMY_BATCH",
    "LayerInfo",
    "OptionInfo",
    "PluginDescription",
    "describe_options",
    "describe_plugin",
    "type_name",
]

MODEL_KINDS = ("generator", "discriminator")


@dataclass(frozen=True)
class PluginDescription:
    """Everything ``gankit info`` shows about one plugin."""

    kind: str
    name: str
    target: str
    distribution: str
    version: str
    api_version: int
    summary: str
    """First paragraph of the class docstring, as one line."""
    details: str
    """The rest of the class docstring."""
    module_summary: str
    """First paragraph of the docstring of the module defining the class, as one line."""
    options: tuple[OptionInfo, ...]
    layers: tuple[LayerInfo, ...] | None = None
    """The layer table: generators and discriminators only."""
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """What the dummy forward pass was given: ``latent`` or ``images``, and ``labels`` when conditional."""
    output_shape: tuple[int, ...] | None = None
    total_parameters: int | None = None
    trainable_parameters: int | None = None
    parameter_bytes: int | None = None
    warnings: tuple[str, ...] = ()
    """Departures from the plugin contract seen in the dummy pass, e.g. an output shape that is not the declared one."""

    @property
    def origin(self) -> str:
        return f"'{self.distribution}' {self.version}".strip()


def describe_plugin(kind: str, name: str, /, *, image_size: int | None = None, **options: Any) -> PluginDescription:
    """Describe plugin ``name`` of ``kind``; models are built with ``options`` (and ``image_size``) and run once.

    ``describe_plugin("generator", "dcgan", image_size=64, width=32)``. Raises ``PluginError`` for unknown or broken
    plugins and ``ConfigError`` for invalid options, like the rest of gankit, so the CLI can print them as one line.
    """
    cls = registry.load(kind, name)
    entry = registry.entry(kind, name)
    if image_size is not None:
        if kind not in MODEL_KINDS:
            raise ConfigError(f"image_size applies to generators and discriminators, not to a {kind}")
        options["image_size"] = image_size
    given = {key: value for key, value in options.items() if value is not None}
    try:
        resolved: PluginOptions = cls.Options.model_validate(given)  # type: ignore[attr-defined]
    except ValidationError as exc:
        missing = [".".join(map(str, error["loc"])) for error in exc.errors() if error["type"] == "missing"]
        if len(missing) != len(exc.errors()):
            raise ConfigError(format_validation_error(exc, what=f"options for {kind} '{name}'")) from None
        resolved = cls.Options.model_construct(**given)  # type: ignore[attr-defined]  # "required", no value
    else:
        missing = []
    summary, details = split_doc(cls.__dict__.get("__doc__"))
    module_summary, _ = split_doc(getattr(sys.modules.get(cls.__module__), "__doc__", None))
    description = PluginDescription(
        kind=kind,
        name=name,
        target=entry.target,
        distribution=entry.distribution,
        version=entry.version,
        api_version=int(getattr(cls, "api_version", 0)),
        summary=summary,
        details=details,
        module_summary=module_summary,
        options=describe_options(type(resolved), resolved),
    )
    if kind not in MODEL_KINDS:
        return description
    if missing:
        flag = "--gen-opt" if kind == "generator" else "--disc-opt"
        needed = ", ".join(f"{flag} {key}=..." for key in missing)
        return dataclasses.replace(description, warnings=(f"layers not shown: the model needs {needed}",))
    model = registry.create(kind, name, resolved)
    return dataclasses.replace(description, **layer_fields(model, who=entry.who))
