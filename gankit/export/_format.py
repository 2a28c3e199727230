"""The generator export format: one safetensors file holding the weights and everything needed to rebuild them.

An export is the artefact gankit ships: ``load_generator(path)`` rebuilds the model through the plugin registry
from the recorded plugin name and options, so the file carries no code and is never unpickled. The metadata (keys
in ``METADATA_KEYS``, made and parsed by ``gankit.export``, whose names are re-exported here) says what to
rebuild; writing and reading the file itself (atomically, with bounded work) is ``gankit.files``'s; every way
an export can be wrong becomes a one-line ``ExportError``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from gankit.errors import ConfigError, ExportError, PluginError
from gankit.export._card import CARD_KEY, card_contradiction, card_problem, model_card_json, with_user_fields
from gankit.files import (
    CHECKPOINT_FORMAT,
    CONTENT_HASH,
    GENERIC_INSTALL,
    SafetensorsHeader,
    TensorInfo,
    atomic_write,
    check_format,
    checked_metadata,
    content_hash,
    dtype_name,
    failure,
    install_hint,
    printable,
    read_safetensors_header,
    standalone_tensors,
)
from gankit.interfaces import PLUGIN_API_VERSION, Generator
from gankit.registry import RUNTIME_DISTRIBUTION, build_on_meta, check_weights_fit, registry
from gankit.version import __version__

if TYPE_CHECKING:
    pass  # merged


# -- from export.py ----------------------------------------------------------------------------------------------

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_METADATA_CHARS",
    "METADATA_KEYS",
    "OPTIONAL_KEYS",
    "OUTPUT_RANGE",
    "RESERVED_KEYS",
    "ExportMetadata",
    "carried_metadata",
    "export_metadata",
    "load_generator",
    "parse_export_metadata",
    "read_export_metadata",
    "save_generator",
]


def save_generator(
    generator: Generator,
    path: Path,
    *,
    plugin_name: str,
    extra: dict[str, str] | None = None,
    card: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> None:
    """Write ``generator`` as a standalone export that ``load_generator`` can rebuild with no training code.

    ``plugin_name`` is the registry name the generator was built from; its distribution and version are recorded
    so a user missing the plugin is told what to install. ``extra`` adds free-form string metadata; it may not
    replace the standard keys. ``card`` is the model card (``gankit.export``), completed with what the generator
    and this process know. An existing file is refused unless ``overwrite``.
    """
    metadata = export_metadata(generator, plugin_name=plugin_name, extra=extra, card=card)
    tensors = standalone_tensors(generator.state_dict())
    metadata[CONTENT_HASH] = content_hash(tensors, metadata)

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata=metadata)

    atomic_write(Path(path), write, overwrite=overwrite, error=ExportError)


def read_export_metadata(path: Path) -> ExportMetadata:
    """Read and validate an export's metadata without loading any tensor or plugin (cheap, safe on any file)."""
    path = Path(path)
    header = _read_header(path)
    return parse_export_metadata(path, header.metadata)


def _read_header(path: Path) -> SafetensorsHeader:
    return read_safetensors_header(path, max_metadata_chars=MAX_METADATA_CHARS, error=ExportError)


def load_generator(path: Path | str, *, device: str | torch.device = "cpu") -> Generator:
    """Rebuild the generator saved in ``path`` through the plugin registry, in eval mode on ``device``.

    Every tensor's shape and dtype is checked against the freshly built model before any data is read, so a
    mismatched or hostile file fails with one line rather than a long traceback or a huge allocation.
    """
    path = Path(path)
    header = _read_header(path)
    meta = parse_export_metadata(path, header.metadata)
    check_supported(path, meta)
    # The recorded options may describe a model of any size (hidden=4096 at 1024x1024 is 69 GB of weights), so
    # the model is first built on the meta device, which allocates nothing, and its tensors are compared with the
    # file's, whose sizes the file's length bounds, and its size with the free memory. Only a model the file can
    # fill and the machine can hold is then built for real. A constructor that needs real tensors cannot be built
    # on meta: its model is checked after the real build below.
    planned = _build(path, meta, on_meta=True)
    if planned is not None:
        _check_tensors(path, meta, header, planned.state_dict())
        try:
            check_weights_fit(planned, kind="generator", name=meta.plugin, device=torch.device(device))
        except ConfigError as exc:
            raise ExportError(f"cannot load {path}: {exc}") from None
    generator = _build(path, meta)
    expected = generator.state_dict()
    _check_tensors(path, meta, header, expected)

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            state = {key: handle.get_tensor(key) for key in expected}
    except Exception as exc:  # safetensors raises its own error type or OSError on a file changed under us
        raise failure(path, exc, error=ExportError) from None
    check_content_hash(path, header.metadata, state)
    generator.load_state_dict(state, strict=True)
    generator.to(device)
    generator.eval()
    return generator


def check_content_hash(path: Path, metadata: Mapping[str, str], tensors: Mapping[str, Tensor]) -> None:
    """The file is the one gankit wrote: its ``content_hash``, when it has one (exports from before it existed do
    not), matches its tensors and every other metadata string, so an edited shape, card or weight is refused."""
    recorded = metadata.get(CONTENT_HASH)
    if recorded is not None and content_hash(tensors, metadata) != recorded:
        raise ExportError(
            f"{path} is a damaged {_WHAT}: its content does not match its hash (changed after it was written)"
        )


def _check_tensors(path: Path, meta: ExportMetadata, header: SafetensorsHeader, expected: Mapping[str, Tensor]) -> None:
    """Every tensor of the model is in the file with its dtype and shape, and the file has no other tensor."""
    plugin = printable(meta.plugin, limit=80)
    for key, tensor in expected.items():
        found = header.tensors.get(key)
        if found is None:
            raise ExportError(f"{path} does not fit generator '{plugin}': tensor '{key}' is missing from the file")
        want = TensorInfo(dtype=dtype_name(tensor.dtype), shape=tuple(tensor.shape))
        if found != want:
            raise ExportError(
                f"{path} does not fit generator '{plugin}': tensor '{key}' is {printable(found.dtype, limit=20)} "
                f"{list(found.shape)} in the file but the model expects {want.dtype} {list(want.shape)}"
            )
    for key in header.tensors:
        if key not in expected:
            raise ExportError(
                f"{path} does not fit generator '{plugin}': the file has tensor '{printable(key, limit=80)}' the "
                "model lacks"
            )


@overload
def _build(path: Path, meta: ExportMetadata) -> Generator: ...
@overload
def _build(path: Path, meta: ExportMetadata, *, on_meta: Literal[True]) -> Generator | None: ...
def _build(path: Path, meta: ExportMetadata, *, on_meta: bool = False) -> Generator | None:
    """The generator the metadata describes; with ``on_meta``, built on the meta device (None if it cannot be)."""
    plugin = printable(meta.plugin, limit=80)
    if meta.plugin not in registry.names("generator"):
        if meta.distribution == RUNTIME_DISTRIBUTION:
            how = "it was registered at runtime when exported; register it again before loading"
        else:
            version = None if meta.distribution_version == UNKNOWN else meta.distribution_version
            how = install_hint("" if meta.distribution == UNKNOWN else meta.distribution, version)
            if how != GENERIC_INSTALL:
                how += ", which provided it when this file was exported"
        raise ExportError(f"{path} needs generator plugin '{plugin}', which is not installed; {how}")
    name = registry.recorded_name("generator", meta.plugin, meta.distribution)  # DIST:NAME when still installed
    try:
        if on_meta:
            generator = build_on_meta("generator", name, meta.plugin_options)
        else:
            generator = registry.create("generator", name, meta.plugin_options)
    except (PluginError, ConfigError) as exc:
        raise ExportError(f"cannot load {path}: {exc}") from None
    if on_meta and generator is None:
        return None
    if not isinstance(generator, Generator):  # the registry checks the class; this keeps mypy and us honest
        raise ExportError(f"cannot load {path}: plugin '{plugin}' did not build a Generator")
    built = (generator.latent_dim, tuple(generator.image_shape), generator.num_classes)
    recorded = (meta.latent_dim, meta.image_shape, meta.num_classes)
    if built != recorded:
        raise ExportError(
            f"{path} does not fit generator '{plugin}': the installed plugin builds (latent_dim, image_shape, "
            f"num_classes) = {built} from the recorded options, the file says {recorded}; install the plugin "
            f"version that wrote it"
        )
    return generator


# -- from export_metadata.py -------------------------------------------------------------------------------------

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

OPTIONAL_KEYS = (CARD_KEY, CONTENT_HASH)
"""Standard keys an export may lack (files written before the key existed): the model card and the content hash
(over every tensor and every other metadata string, as a checkpoint's; see docs/export.md)."""

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

    The one source of the metadata of both writers, ``save_generator`` and ``gankit.export.export_onnx``.
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
    carried = {key: value for key, value in metadata.items() if key != CONTENT_HASH}  # the hash is the file's own
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
    """The model card (``gankit.export``), or None for a file written before cards existed."""


_WHAT = "gankit export"
_HASH = re.compile(r"blake2b:[0-9a-f]{64}")


def parse_export_metadata(path: Path, metadata: Mapping[str, str]) -> ExportMetadata:
    """Validate an export's metadata strings from any container: a safetensors header, or an ONNX model's
    ``metadata_props`` (``gankit.export.read_onnx_export_metadata``). ``path`` only names the file in errors."""
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
    if CONTENT_HASH in meta and not _HASH.fullmatch(meta[CONTENT_HASH]):
        raise damaged(CONTENT_HASH, "is not 'blake2b:' and 64 hexadecimal digits")
    latent_dim, num_classes = integer("latent_dim", 1), integer("num_classes", 0)
    check_against_options(path, options, latent_dim=latent_dim, image_shape=shape, num_classes=num_classes)
    if card is not None:
        problem = card_problem(card)
        if problem is not None:
            raise ExportError(f"{path} is a damaged {_WHAT}: in its model card, {problem}")
        contradiction = card_contradiction(card, image_shape=shape, num_classes=num_classes)
        if contradiction is not None:
            raise ExportError(f"{path} is a damaged {_WHAT}: {contradiction}")

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


# -- from export_checks.py ---------------------------------------------------------------------------------------

SUPPORTED_OUTPUT_RANGE = (-1.0, 1.0)
"""The only range of generated values gankit samples, clamps and pictures."""


def check_against_options(
    path: Path, options: Mapping[str, Any], *, latent_dim: int, image_shape: list[int], num_classes: int
) -> None:
    """The recorded geometry is what the recorded options say, by the meaning ``GeneratorOptions`` gives its fields
    (checked where the options have the field): a file contradicting itself is refused before any plugin is built."""
    channels, height, width = image_shape
    implied = {
        "latent_dim": ("latent_dim", latent_dim),
        "num_classes": ("num_classes", num_classes),
        "channels": ("image_shape", channels),
        "image_size": ("image_shape", height),
    }
    if height != width:  # not the square of side image_size: a plugin with its own geometry, checked once built
        del implied["image_size"]
    for option, (key, recorded) in implied.items():
        if option in options and options[option] != recorded:
            shown = json.dumps(options[option])[:40]
            said = image_shape if key == "image_shape" else recorded
            raise ExportError(
                f"{path} is a damaged gankit export: metadata '{key}' is {said} but plugin_options say {option}={shown}"
            )


def check_supported(path: Path, meta: ExportMetadata) -> None:
    """The file's images and latents are the kind gankit samples: outputs in [-1, 1], and latents from the prior the
    installed plugin class declares (``standard_normal`` unless it says otherwise). Anything else would be sampled
    wrongly without a word, so it is refused."""
    if meta.output_range != SUPPORTED_OUTPUT_RANGE:
        shown = [float(bound) for bound in meta.output_range]
        raise ExportError(
            f"{path} records output_range {shown}, which gankit does not support (only [-1, 1]); "
            "export the generator again with gankit"
        )
    try:
        declared = getattr(registry.load("generator", meta.plugin), "latent_distribution", None)
    except PluginError:
        return  # not installed or broken: building it says so, with what to install
    if isinstance(declared, str) and meta.latent_distribution != declared:
        raise ExportError(
            f"{path} records latent_distribution '{printable(meta.latent_distribution, limit=40)}', but generator "
            f"plugin '{printable(meta.plugin, limit=80)}' draws its latents from '{printable(declared, limit=40)}'; "
            "export the generator again with the plugin version that trained it"
        )
