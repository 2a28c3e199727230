"""The standalone generator file: one safetensors file holding the weights and everything needed to rebuild them.

An export is the artefact gankit ships: ``load_generator(path)`` rebuilds the model through the plugin registry
from the recorded plugin name and options, so the file carries no code and is never unpickled. Every metadata value
is a string (a safetensors rule); structured values are JSON. The keys are listed in ``METADATA_KEYS``.

Files are written atomically (temporary file in the same folder, fsync, rename), so a crash never leaves a
half-written export behind, and read defensively: the header is parsed and bounded here before safetensors or torch
touch the data, and every way a file can be wrong becomes a one-line ``ExportError``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from gankit import __version__
from gankit.errors import ConfigError, ExportError, PluginError
from gankit.files import atomic_output
from gankit.interfaces import PLUGIN_API_VERSION, Generator
from gankit.registry import RUNTIME_DISTRIBUTION, registry

FORMAT = "gankit.generator"
FORMAT_VERSION = 1
"""The newest export format this gankit reads and the one it writes."""

CHECKPOINT_FORMAT = "gankit.checkpoint"
"""Written by ``gankit.checkpoint``; recognised here only to say so when one is passed as an export."""

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

MAX_HEADER_BYTES = 100_000_000
"""The largest safetensors JSON header accepted (safetensors' own limit), so a hostile file cannot make us read GBs."""

MAX_METADATA_CHARS = 1_000_000
"""The longest single metadata string accepted in an export."""

UNKNOWN = "unknown"

# safetensors dtype name -> bytes per element, to check a header's sizes before anything is read.
_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}

_DTYPE_NAMES: dict[torch.dtype, str] = {
    getattr(torch, attr): name
    for attr, name in (
        ("bool", "BOOL"),
        ("uint8", "U8"),
        ("int8", "I8"),
        ("float8_e5m2", "F8_E5M2"),
        ("float8_e4m3fn", "F8_E4M3"),
        ("int16", "I16"),
        ("uint16", "U16"),
        ("float16", "F16"),
        ("bfloat16", "BF16"),
        ("int32", "I32"),
        ("uint32", "U32"),
        ("float32", "F32"),
        ("int64", "I64"),
        ("uint64", "U64"),
        ("float64", "F64"),
    )
    if hasattr(torch, attr)
}


def dtype_name(dtype: torch.dtype) -> str:
    """The safetensors name of a torch dtype (``F32``), to compare a file's header with a model before loading."""
    return _DTYPE_NAMES.get(dtype, str(dtype))


# -- writing ---------------------------------------------------------------------------------------------------------


def atomic_write(path: Path, write: Callable[[Path], None], *, overwrite: bool) -> None:
    """Have ``write`` fill a temporary file that replaces ``path`` in one step (``gankit.files.atomic_output``).

    OS failures (missing folder, no permission, disk full) and a refused overwrite become ``ExportError``.
    """
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"cannot write {path}: it is a folder")
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        with atomic_output(path, overwrite=overwrite) as tmp:
            write(tmp)
    except FileExistsError:
        raise ExportError(f"{path} already exists; choose another path or pass overwrite=True to replace it") from None
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None


def standalone_tensors(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """CPU, contiguous, detached tensors that share no storage, as safetensors requires.

    Tensors are cloned only when needed: a view into a larger storage, a storage already used by another entry
    (tied weights), or a non-CPU/non-contiguous tensor (which ``to``/``contiguous`` copy anyway).
    """
    seen: set[int] = set()
    out: dict[str, Tensor] = {}
    for key, tensor in tensors.items():
        if not isinstance(tensor, Tensor):
            raise TypeError(f"'{key}' is a {type(tensor).__name__}, not a tensor")
        if tensor.layout != torch.strided:
            raise TypeError(f"tensor '{key}' has layout {tensor.layout}; only dense tensors can be saved")
        t = tensor.detach().to("cpu").resolve_conj().resolve_neg().contiguous()
        if t.numel() > 0:
            storage = t.untyped_storage()
            whole = t.storage_offset() == 0 and storage.nbytes() == t.numel() * t.element_size()
            if not whole or storage.data_ptr() in seen:
                t = t.clone()
            seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


def checked_metadata(metadata: Mapping[str, str] | None, *, reserved: tuple[str, ...], what: str) -> dict[str, str]:
    """Free-form metadata a caller adds to a file: strings only, and none of the keys the format itself writes."""
    extra = dict(metadata or {})
    clashes = sorted(set(extra) & set(reserved))
    if clashes:
        raise ExportError(f"{what} may not replace the reserved key(s): {', '.join(clashes)}")
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ExportError(f"{what} must map strings to strings; got {key!r}: {type(value).__name__}")
    return extra


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
    extra = checked_metadata(extra, reserved=METADATA_KEYS, what="extra metadata")

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
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata), overwrite=overwrite)


# -- reading ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """A tensor as its file header declares it, known before any data is read."""

    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class SafetensorsHeader:
    """The validated header of a safetensors file: its tensors and its string metadata."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]


def read_safetensors_header(path: Path, *, max_metadata_chars: int | None = None) -> SafetensorsHeader:
    """Parse and check a safetensors header with bounded work, before safetensors or torch see the file.

    Catches what would otherwise surface as a cryptic error or an attempt to allocate absurd memory: a missing
    file, random bytes, a truncated file, a header whose tensor sizes disagree with the file's length, metadata
    strings longer than ``max_metadata_chars``. Each becomes a one-line ``ExportError``.
    """
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: no such file")
    if not path.is_file():
        raise ExportError(f"{path} is not a file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ExportError(f"{path} is not a safetensors file (only {len(prefix)} bytes long)")
            header_len = int.from_bytes(prefix, "little")
            if header_len > MAX_HEADER_BYTES:
                raise ExportError(f"{path} is not a safetensors file (its first bytes declare an absurd header)")
            if 8 + header_len > size:
                raise ExportError(
                    f"{path} is truncated or not a safetensors file (header of {header_len} bytes declared, "
                    f"{size - 8} present)"
                )
            raw = handle.read(header_len)
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ExportError(f"{path} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ExportError(f"{path} is not a safetensors file (its header is not a JSON object)")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()
    ):
        raise ExportError(f"{path} is corrupt: its metadata is not a map of strings")
    if max_metadata_chars is not None:
        for key, value in metadata.items():
            if len(value) > max_metadata_chars:
                raise ExportError(
                    f"{path} is corrupt: metadata '{key[:40]}' is {len(value)} characters long "
                    f"(at most {max_metadata_chars} accepted)"
                )

    data_len = size - 8 - header_len
    tensors: dict[str, TensorInfo] = {}
    end_of_data = 0
    for name, spec in header.items():
        info, begin, end = _tensor_spec(path, name, spec)
        if end > data_len:
            raise ExportError(f"{path} is truncated (tensor '{name[:80]}' ends past the end of the file)")
        itemsize = _ITEMSIZE.get(info.dtype)
        if itemsize is not None and _nbytes(info.shape, itemsize, limit=data_len) != end - begin:
            raise ExportError(f"{path} is corrupt (tensor '{name[:80]}' declares a size its bytes do not match)")
        tensors[name] = info
        end_of_data = max(end_of_data, end)
    if end_of_data != data_len:
        raise ExportError(f"{path} is corrupt ({data_len - end_of_data} bytes after the last tensor)")
    return SafetensorsHeader(tensors=tensors, metadata=dict(metadata))


def _nbytes(shape: tuple[int, ...], itemsize: int, *, limit: int) -> int | None:
    """The bytes a tensor of ``shape`` takes, or None once past ``limit``: a header of a million huge dimensions
    would otherwise make ``math.prod`` multiply numbers of millions of digits."""
    if 0 in shape:
        return 0
    total = itemsize
    for dim in shape:
        total *= dim
        if total > limit:
            return None
    return total


def _tensor_spec(path: Path, name: str, spec: Any) -> tuple[TensorInfo, int, int]:
    bad = ExportError(f"{path} is corrupt (bad header entry for tensor '{name[:80]}')")
    if not isinstance(spec, dict):
        raise bad
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if not isinstance(dtype, str) or not isinstance(shape, list) or not isinstance(offsets, list):
        raise bad
    if not all(type(dim) is int and dim >= 0 for dim in shape):
        raise bad
    if len(offsets) != 2 or not all(type(o) is int for o in offsets) or not 0 <= offsets[0] <= offsets[1]:
        raise bad
    return TensorInfo(dtype=dtype, shape=tuple(shape)), offsets[0], offsets[1]


def check_format(path: Path, metadata: Mapping[str, str], *, expected: str, what: str) -> int:
    """The file's format version, after checking it is a gankit file of the ``expected`` kind we can read."""
    found = metadata.get("format")
    if found is None:
        raise ExportError(f"{path} is a safetensors file but not a {what}")
    if found != expected:
        kinds = {FORMAT: "a gankit generator export", CHECKPOINT_FORMAT: "a gankit training checkpoint"}
        described = kinds.get(found, f"a file of format '{found[:40]}'")
        raise ExportError(f"{path} is {described}, not a {what}")
    raw = metadata.get("format_version", "")
    try:
        version = int(raw)
    except ValueError:
        raise ExportError(f"{path} is a damaged {what}: format_version {raw[:40]!r} is not a number") from None
    if version > FORMAT_VERSION:
        raise ExportError(f"{path} was written by a newer gankit (format {version}); upgrade gankit")
    if version < 1:
        raise ExportError(f"{path} is a damaged {what}: format_version {version} does not exist")
    return version


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
    header = read_safetensors_header(path, max_metadata_chars=MAX_METADATA_CHARS)
    return _parse_metadata(path, header.metadata)


def _parse_metadata(path: Path, meta: Mapping[str, str]) -> ExportMetadata:
    format_version = check_format(path, meta, expected=FORMAT, what=_WHAT)

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
    header = read_safetensors_header(path, max_metadata_chars=MAX_METADATA_CHARS)
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
        raise ExportError(f"{path} is corrupt: {_one_line(exc)}") from None
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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


# -- sampling --------------------------------------------------------------------------------------------------------


def sample_images(
    generator: Generator,
    n: int,
    *,
    seed: int,
    labels: Tensor | None = None,
    batch_size: int = 1000,
) -> Tensor:
    """``n`` images in ``[-1, 1]`` as a float32 CPU tensor, reproducible from ``seed`` whatever ``batch_size`` is.

    All latents are drawn up front on the CPU from a generator seeded with ``seed``, so the same seed gives the
    same latents on any device and with any batching; batches only bound the memory of the forward passes (a BLAS
    may still round a matrix product differently for different batch shapes, in the last bits).
    Conditional generators get ``labels`` or, by default, the classes in turn (``arange(n) % num_classes``).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if generator.num_classes > 0:
        if labels is None:
            labels = torch.arange(n, dtype=torch.int64) % generator.num_classes
        labels = labels.to(device="cpu", dtype=torch.int64)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
        if n and (int(labels.min()) < 0 or int(labels.max()) >= generator.num_classes):
            raise ValueError(f"labels must lie in [0, {generator.num_classes})")
    elif labels is not None:
        raise ValueError("labels were given but this generator is unconditional (num_classes = 0)")

    device = next(iter(generator.parameters()), torch.empty(0)).device
    latents = generator.sample_latent(n, generator=torch.Generator().manual_seed(seed))
    was_training = generator.training
    generator.eval()
    try:
        with torch.inference_mode():
            chunks = []
            for start in range(0, n, batch_size):
                batch_labels = labels[start : start + batch_size].to(device) if labels is not None else None
                images = generator(latents[start : start + batch_size].to(device), batch_labels)
                chunks.append(images.to(device="cpu", dtype=torch.float32).clamp_(-1.0, 1.0))
    finally:
        generator.train(was_training)
    if not chunks:
        return torch.empty((0, *generator.image_shape), dtype=torch.float32)
    return torch.cat(chunks)


def save_image_grid(images: Tensor, path: Path, *, nrow: int | None = None) -> None:
    """Save images in ``[-1, 1]`` as one grid picture (format from the extension), atomically.

    ``nrow`` images per row; by default a near-square grid of ``ceil(sqrt(n))`` columns.
    """
    from torchvision.utils import save_image  # torchvision is slow to import; only pay for it here

    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    path = Path(path)
    columns = nrow if nrow is not None else math.ceil(math.sqrt(images.shape[0]))
    pictures = (images.detach().to(device="cpu", dtype=torch.float32).clamp(-1.0, 1.0) + 1.0) / 2.0

    def write(tmp: Path) -> None:
        try:
            save_image(pictures, tmp, nrow=columns, padding=2)
        except (ValueError, KeyError) as exc:  # PIL: unknown extension
            raise ExportError(f"cannot save {path}: {_one_line(exc)}; use .png or .jpg") from None

    atomic_write(path, write, overwrite=True)
