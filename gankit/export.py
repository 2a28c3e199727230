"""The generator export format: one safetensors file holding the weights and everything needed to rebuild them.

An export is the artefact gankit ships: ``load_generator(path)`` rebuilds the model through the plugin registry
from the recorded plugin name and options, so the file carries no code and is never unpickled. Every metadata value
is a string (a safetensors rule); structured values are JSON. The keys are listed in ``METADATA_KEYS``. Writing and
reading the file itself (atomically, with bounded work) is ``gankit.tensorfile``'s; every way an export can be
wrong becomes a one-line ``ExportError``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from gankit.errors import ConfigError, ExportError, PluginError
from gankit.interfaces import PLUGIN_API_VERSION, Generator
from gankit.registry import RUNTIME_DISTRIBUTION, registry
from gankit.tensorfile import (
    SafetensorsHeader,
    TensorInfo,
    atomic_write,
    check_format,
    checked_metadata,
    dtype_name,
    failure,
    read_safetensors_header,
    standalone_tensors,
)
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

OUTPUT_RANGE = "[-1, 1]"

MAX_METADATA_CHARS = 1_000_000
"""The longest single metadata string accepted in an export."""

UNKNOWN = "unknown"


def save_generator(
    generator: Generator,
    path: Path,
    *,
    plugin_name: str,
    extra: dict[str, str] | None = None,
    overwrite: bool = False,
) -> None:
    """Write ``generator`` as a standalone export that ``load_generator`` can rebuild with no training code.

    ``plugin_name`` is the registry name the generator was built from; its distribution and version are recorded
    so a user missing the plugin is told what to install. ``extra`` adds free-form string metadata (run id,
    dataset, score); it may not replace the standard keys. An existing file is refused unless ``overwrite``.
    """
    if not isinstance(generator, Generator):
        raise TypeError(f"expected a gankit Generator, got {type(generator).__name__}")
    extra = checked_metadata(extra, reserved=METADATA_KEYS, what="extra metadata", error=ExportError)

    distribution, distribution_version = UNKNOWN, UNKNOWN
    try:
        entry = registry.entry("generator", plugin_name)
    except PluginError:
        pass
    else:
        distribution, distribution_version = entry.distribution, entry.version or UNKNOWN

    metadata = {
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
        **extra,
    }
    tensors = standalone_tensors(generator.state_dict())

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata=metadata)

    atomic_write(Path(path), write, overwrite=overwrite, error=ExportError)


# -- reading ---------------------------------------------------------------------------------------------------------


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


_WHAT = "gankit export"


def read_export_metadata(path: Path) -> ExportMetadata:
    """Read and validate an export's metadata without loading any tensor or plugin (cheap, safe on any file)."""
    path = Path(path)
    header = _read_header(path)
    return _parse_metadata(path, header.metadata)


def _read_header(path: Path) -> SafetensorsHeader:
    return read_safetensors_header(path, max_metadata_chars=MAX_METADATA_CHARS, error=ExportError)


def _parse_metadata(path: Path, meta: Mapping[str, str]) -> ExportMetadata:
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

    return ExportMetadata(
        format_version=format_version,
        gankit_version=field("gankit_version"),
        plugin=plugin,
        distribution=field("distribution"),
        distribution_version=field("distribution_version"),
        plugin_options=options,
        latent_dim=integer("latent_dim", 1),
        latent_distribution=field("latent_distribution"),
        image_shape=(shape[0], shape[1], shape[2]),
        num_classes=integer("num_classes", 0),
        output_range=(low, high),
        plugin_api_version=integer("plugin_api_version", 0),
        extra={key: value for key, value in meta.items() if key not in METADATA_KEYS},
    )


def _as_float(value: Any) -> float | None:
    """A JSON number as a float; None for anything else, including integers too big for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def load_generator(path: Path | str, *, device: str | torch.device = "cpu") -> Generator:
    """Rebuild the generator saved in ``path`` through the plugin registry, in eval mode on ``device``.

    Every tensor's shape and dtype is checked against the freshly built model before any data is read, so a
    mismatched or hostile file fails with one line rather than a long traceback or a huge allocation.
    """
    path = Path(path)
    header = _read_header(path)
    meta = _parse_metadata(path, header.metadata)
    # The recorded options may describe a model of any size (hidden=4096 at 1024x1024 is 275 GB of weights), so
    # the model is first built on the meta device, which allocates nothing, and its tensors are compared with the
    # file's, whose sizes the file's length bounds. Only a model the file can fill is then built for real.
    try:
        planned = _build(path, meta, on_meta=True).state_dict()
    except ExportError:
        raise
    except Exception:  # a constructor that needs real tensors: its model is checked after the real build below
        planned = None
    if planned is not None:
        _check_tensors(path, meta, header, planned)
    generator = _build(path, meta)
    expected = generator.state_dict()
    _check_tensors(path, meta, header, expected)

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            state = {key: handle.get_tensor(key) for key in expected}
    except Exception as exc:  # safetensors raises its own error type or OSError on a file changed under us
        raise failure(path, exc, error=ExportError) from None
    generator.load_state_dict(state, strict=True)
    generator.to(device)
    generator.eval()
    return generator


def _check_tensors(path: Path, meta: ExportMetadata, header: SafetensorsHeader, expected: Mapping[str, Tensor]) -> None:
    """Every tensor of the model is in the file with its dtype and shape, and the file has no other tensor."""
    for key, tensor in expected.items():
        found = header.tensors.get(key)
        if found is None:
            raise ExportError(f"{path} does not fit generator '{meta.plugin}': tensor '{key}' is missing from the file")
        want = TensorInfo(dtype=dtype_name(tensor.dtype), shape=tuple(tensor.shape))
        if found != want:
            raise ExportError(
                f"{path} does not fit generator '{meta.plugin}': tensor '{key}' is {found.dtype} "
                f"{list(found.shape)} in the file but the model expects {want.dtype} {list(want.shape)}"
            )
    for key in header.tensors:
        if key not in expected:
            raise ExportError(
                f"{path} does not fit generator '{meta.plugin}': the file has tensor '{key[:80]}' the model lacks"
            )


def _build(path: Path, meta: ExportMetadata, *, on_meta: bool = False) -> Generator:
    if meta.plugin not in registry.names("generator"):
        if meta.distribution == RUNTIME_DISTRIBUTION:
            how = "it was registered at runtime when exported; register it again before loading"
        elif meta.distribution == UNKNOWN or not meta.distribution:
            how = "install the package that provides it"
        else:
            version = "" if meta.distribution_version == UNKNOWN else f" (version {meta.distribution_version})"
            how = f"install '{meta.distribution}'{version}, which provided it when this file was exported"
        raise ExportError(f"{path} needs generator plugin '{meta.plugin}', which is not installed; {how}")
    try:
        registry.load("generator", meta.plugin)  # imported outside the meta context, so module-level tensors are real
        with torch.device("meta") if on_meta else contextlib.nullcontext():
            generator = registry.create("generator", meta.plugin, meta.plugin_options)
    except (PluginError, ConfigError) as exc:
        raise ExportError(f"cannot load {path}: {exc}") from None
    if not isinstance(generator, Generator):  # the registry checks the class; this keeps mypy and us honest
        raise ExportError(f"cannot load {path}: plugin '{meta.plugin}' did not build a Generator")
    built = (generator.latent_dim, tuple(generator.image_shape), generator.num_classes)
    recorded = (meta.latent_dim, meta.image_shape, meta.num_classes)
    if built != recorded:
        raise ExportError(
            f"{path} does not fit generator '{meta.plugin}': the installed plugin builds (latent_dim, image_shape, "
            f"num_classes) = {built} from the recorded options, the file says {recorded}; install the plugin "
            f"version that wrote it"
        )
    return generator
