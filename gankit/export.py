"""The generator export format: one safetensors file holding the weights and everything needed to rebuild them.

An export is the artefact gankit ships: ``load_generator(path)`` rebuilds the model through the plugin registry
from the recorded plugin name and options, so the file carries no code and is never unpickled. The metadata (keys
in ``METADATA_KEYS``, made and parsed by ``gankit.export_metadata``, whose names are re-exported here) says what to
rebuild; writing and reading the file itself (atomically, with bounded work) is ``gankit.tensorfile``'s; every way
an export can be wrong becomes a one-line ``ExportError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, overload

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from gankit.errors import ConfigError, ExportError, PluginError
from gankit.export_checks import check_supported
from gankit.export_metadata import (
    FORMAT,
    FORMAT_VERSION,
    MAX_METADATA_CHARS,
    METADATA_KEYS,
    OPTIONAL_KEYS,
    OUTPUT_RANGE,
    RESERVED_KEYS,
    UNKNOWN,
    ExportMetadata,
    carried_metadata,
    export_metadata,
    parse_export_metadata,
)
from gankit.interfaces import Generator
from gankit.registry import RUNTIME_DISTRIBUTION, registry
from gankit.sizing import build_on_meta, check_weights_fit
from gankit.tensorfile import (
    SafetensorsHeader,
    TensorInfo,
    atomic_write,
    dtype_name,
    failure,
    read_safetensors_header,
    standalone_tensors,
)
from gankit.text import GENERIC_INSTALL, install_hint, printable

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
    replace the standard keys. ``card`` is the model card (``gankit.model_card``), completed with what the generator
    and this process know. An existing file is refused unless ``overwrite``.
    """
    metadata = export_metadata(generator, plugin_name=plugin_name, extra=extra, card=card)
    tensors = standalone_tensors(generator.state_dict())

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
    generator.load_state_dict(state, strict=True)
    generator.to(device)
    generator.eval()
    return generator


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
