"""What a generator export says about itself: the metadata keys, made from a generator and parsed back, checked.

Every metadata value is a string (a safetensors rule); structured values are JSON. The same strings travel in a
safetensors export (``gankit.export``) and in an ONNX model's ``metadata_props`` (``gankit.onnx_export``); every way
they can be wrong becomes a one-line ``ExportError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gankit.checkpoint import CHECKPOINT_FORMAT
from gankit.errors import ExportError, PluginError
from gankit.export_checks import check_against_options
from gankit.interfaces import PLUGIN_API_VERSION, Generator
from gankit.model_card import CARD_KEY, model_card_json, with_user_fields
from gankit.registry import registry
from gankit.tensorfile import check_format, checked_metadata
from gankit.version import __version__

FORMAT = "gankit.generator"
FORMAT_VERSION = 1
"""The newest export format this gankit reads and the one it writes."""

METADATA_KEYS = (
    "format",
    "format_version",
    "gankit_version",
    "plugin",
    "distribution",
    "distribution_version",
    "plugin_options",
    "latent_dim",
    "latent_distribution",
    "image_shape",
    "num_classes",
    "output_range",
    "plugin_api_version",
)
"""The metadata every export carries; ``extra`` keys given to ``save_generator`` come on top."""

OPTIONAL_KEYS = (CARD_KEY,)
"""Standard keys an export may lack (files written before the key existed): the model card."""

RESERVED_KEYS = METADATA_KEYS + OPTIONAL_KEYS
"""The keys ``extra`` metadata may not use."""

OUTPUT_RANGE = "[-1, 1]"

MAX_METADATA_CHARS = 1_000_000
"""The longest single metadata string accepted in an export."""

UNKNOWN = "unknown"


def export_metadata(
    generator: Generator,
    *,
    plugin_name: str,
    extra: Mapping[str, str] | None = None,
    card: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The metadata of an export of ``generator``: ``METADATA_KEYS``, the model card under ``CARD_KEY`` and ``extra``.

    The one source of the metadata of both writers, ``save_generator`` and ``gankit.onnx_export.export_onnx``.
    """
    if not isinstance(generator, Generator):
        raise TypeError(f"expected a gankit Generator, got {type(generator).__name__}")
    extra = checked_metadata(extra, reserved=RESERVED_KEYS, what="extra metadata", error=ExportError)
    card_json = model_card_json(card, generator, limit=MAX_METADATA_CHARS)

    distribution, distribution_version = UNKNOWN, UNKNOWN
    try:
        entry = registry.entry("generator", plugin_name)
    except PluginError:
        pass
    else:  # a qualified name (gankit:dcgan) is recorded as the plain name and its distribution
        plugin_name, distribution, distribution_version = entry.name, entry.distribution, entry.version or UNKNOWN

    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "gankit_version": __version__,
        "plugin": plugin_name,
        "distribution": distribution,
        "distribution_version": distribution_version,
        "plugin_options": json.dumps(generator.options.model_dump(mode="json"), sort_keys=True),
        "latent_dim": str(generator.latent_dim),
        "latent_distribution": generator.latent_distribution,
        "image_shape": json.dumps(list(generator.image_shape)),
        "num_classes": str(generator.num_classes),
        "output_range": OUTPUT_RANGE,
        "plugin_api_version": str(getattr(type(generator), "api_version", PLUGIN_API_VERSION)),
        CARD_KEY: card_json,
        **extra,
    }


def carried_metadata(
    metadata: Mapping[str, str], generator: Generator, *, user: Mapping[str, str] | None = None
) -> dict[str, str]:
    """An export's ``metadata`` (already read and checked) for another file of the same ``generator``: the same
    strings, with ``user`` fields added to the model card, and a card (of what is known) where the file had none."""
    carried = dict(metadata)
    if CARD_KEY in carried and not user:
        return carried
    card = json.loads(carried[CARD_KEY]) if CARD_KEY in carried else None
    carried[CARD_KEY] = model_card_json(with_user_fields(card, user or {}), generator, limit=MAX_METADATA_CHARS)
    return carried


# -- reading -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportMetadata:
    """What an export says about itself, parsed and validated from its metadata strings."""

    format_version: int
    gankit_version: str
    plugin: str
    distribution: str
    distribution_version: str
    plugin_options: dict[str, Any]
    latent_dim: int
    latent_distribution: str
    image_shape: tuple[int, int, int]
    num_classes: int
    output_range: tuple[float, float]
    plugin_api_version: int
    extra: dict[str, str]
    """Metadata beyond the standard keys, as given to ``save_generator(extra=...)``."""
    model_card: dict[str, Any] | None = None
    """The model card (``gankit.model_card``), or None for a file written before cards existed."""


_WHAT = "gankit export"


def parse_export_metadata(path: Path, metadata: Mapping[str, str]) -> ExportMetadata:
    """Validate an export's metadata strings from any container: a safetensors header, or an ONNX model's
    ``metadata_props`` (``gankit.onnx_export.read_onnx_export_metadata``). ``path`` only names the file in errors."""
    return _parse_metadata(Path(path), metadata)


def _parse_metadata(path: Path, meta: Mapping[str, str]) -> ExportMetadata:
    if meta.get("format") == CHECKPOINT_FORMAT:
        raise ExportError(
            f"{path} is a gankit training checkpoint, not a gankit export; `gankit export RUN_DIR` makes an export "
            "from the run folder that holds it (gankit sample and gankit eval also take the run folder)"
        )
    format_version = check_format(path, meta, expected=FORMAT, what=_WHAT, newest=FORMAT_VERSION, error=ExportError)

    def field(key: str) -> str:
        if key not in meta:
            raise ExportError(f"{path} is a damaged {_WHAT}: metadata '{key}' is missing")
        return meta[key]

    def damaged(key: str, why: str) -> ExportError:
        return ExportError(f"{path} is a damaged {_WHAT}: metadata '{key}' {why} (got {meta[key][:60]!r})")

    def integer(key: str, minimum: int) -> int:
        raw = field(key)
        try:
            value = int(raw)
        except ValueError:
            raise damaged(key, "is not an integer") from None
        if value < minimum:
            raise damaged(key, f"is below {minimum}")
        return value

    def json_field(key: str) -> Any:
        raw = field(key)
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise damaged(key, "is not valid JSON") from None

    options = json_field("plugin_options")
    if not isinstance(options, dict):
        raise damaged("plugin_options", "is not a JSON object")
    shape = json_field("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(dim) is int and dim > 0 for dim in shape)):
        raise damaged("image_shape", "is not a list of three positive integers [C, H, W]")
    output_range = json_field("output_range")
    bounds = [_as_float(v) for v in output_range] if isinstance(output_range, list) else []
    low, high = bounds if len(bounds) == 2 else (None, None)
    if low is None or high is None:
        raise damaged("output_range", "is not a list of two numbers")
    plugin = field("plugin")
    if not plugin:
        raise damaged("plugin", "is empty")
    card = json_field(CARD_KEY) if CARD_KEY in meta else None
    if card is not None and not isinstance(card, dict):
        raise damaged(CARD_KEY, "is not a JSON object")
    latent_dim, num_classes = integer("latent_dim", 1), integer("num_classes", 0)
    check_against_options(path, options, latent_dim=latent_dim, image_shape=shape, num_classes=num_classes)

    return ExportMetadata(
        format_version=format_version,
        gankit_version=field("gankit_version"),
        plugin=plugin,
        distribution=field("distribution"),
        distribution_version=field("distribution_version"),
        plugin_options=options,
        latent_dim=latent_dim,
        latent_distribution=field("latent_distribution"),
        image_shape=(shape[0], shape[1], shape[2]),
        num_classes=num_classes,
        output_range=(low, high),
        plugin_api_version=integer("plugin_api_version", 0),
        extra={key: value for key, value in meta.items() if key not in RESERVED_KEYS},
        model_card=card,
    )


def _as_float(value: Any) -> float | None:
    """A JSON number as a float; None for anything else, including integers too big for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None
