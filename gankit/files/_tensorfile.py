"""Safetensors files in general: atomic writes, tensors fit to store, headers read safely, one-line failures.

The export (``gankit.export``) and the checkpoint (``gankit.files``) formats are built on this layer. Headers
are read through ``safetensors.safe_open``, which bounds the header (100 MB), checks that every tensor's shape,
dtype and offsets fit the file and that the tensors cover it exactly, all before any tensor data is read. This
module adds what safetensors does not: a friendly line for each of its failures, and a bound on metadata strings.
Each function raises ``error``: ``FileFormatError`` by default, the format's own subclass when a format calls it.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from gankit.errors import FileFormatError
from gankit.files._atomic import atomic_output
from gankit.files._text import one_line, printable

FORMAT_NAMES = {
    "gankit.generator": "a gankit generator export",
    "gankit.checkpoint": "a gankit training checkpoint",
}
"""Every gankit file format (its ``format`` metadata) and what it is called, to name a file passed as another."""

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


def atomic_write(
    path: Path, write: Callable[[Path], None], *, overwrite: bool, error: type[FileFormatError] = FileFormatError
) -> None:
    """Have ``write`` fill a temporary file that replaces ``path`` in one step (``gankit.files.atomic_output``).

    OS failures (missing folder, no permission, disk full) and a refused overwrite become ``error``.
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"cannot write {path}: it is a folder")
    if not path.parent.is_dir():
        raise error(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        with atomic_output(path, overwrite=overwrite) as tmp:
            try:
                write(tmp)
            except SafetensorError as exc:  # its I/O failures (a full disk) are not OSError: make them one
                raise _as_os_error(exc) from None
    except FileExistsError:
        raise error(f"{path} already exists; choose another path or pass overwrite=True to replace it") from None
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror or exc}") from None


def _as_os_error(exc: SafetensorError) -> OSError:
    """``SafetensorError('... I/O error: No space left on device (os error 28)')`` as the ``OSError`` it reports."""
    found = re.search(r"os error (\d+)", str(exc))
    code = int(found.group(1)) if found else errno.EIO
    return OSError(code, os.strerror(code) if found else one_line(exc))


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


def checked_metadata(
    metadata: Mapping[str, str] | None,
    *,
    reserved: tuple[str, ...],
    what: str,
    error: type[FileFormatError] = FileFormatError,
) -> dict[str, str]:
    """Free-form metadata a caller adds to a file: strings only, and none of the keys the format itself writes."""
    extra = dict(metadata or {})
    clashes = sorted(set(extra) & set(reserved))
    if clashes:
        raise error(f"{what} may not replace the reserved key(s): {', '.join(clashes)}")
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise error(f"{what} must map strings to strings; got {key!r}: {type(value).__name__}")
    return extra


# -- reading ---------------------------------------------------------------------------------------------------------

_SAFETENSORS_REASONS = (
    (("headertoosmall", "headertoolarge", "invalidutf-8", "invalidheaderstart"), "is not a safetensors file"),
    (
        ("invalidjson", "invalidheaderdeserialization"),
        "is not a safetensors file: its header is not JSON in the safetensors layout",
    ),
    (("invalidheaderlength",), "is truncated or not a safetensors file"),
    (("incompletemetadata", "metadataincompletebuffer"), "is truncated or corrupt"),
)
"""How safetensors' own error starts (lower case, no spaces: older releases print Rust names such as
``HeaderTooLarge``) -> what it means for the user. Anything else is "corrupt"; its words follow in brackets."""


def failure(
    path: Path, exc: BaseException, *, error: type[FileFormatError] = FileFormatError, fix: str = ""
) -> FileFormatError:
    """One line for an error safetensors (or the OS) raised while reading ``path``; ``fix`` ends it when given.

    Every reader of safetensors files raises what this returns, ``from None``, so a broken file always reads the
    same way: ``x.safetensors is truncated or corrupt (incomplete metadata, file not fully covered)``.
    """
    if isinstance(exc, OSError):
        text = f"cannot read {path}: {exc.strerror or one_line(exc)}"
    else:
        reason = " ".join(str(exc).split()).removeprefix("Error while deserializing header: ")
        squeezed = reason.lower().replace(" ", "")
        meaning = next((said for starts, said in _SAFETENSORS_REASONS if squeezed.startswith(starts)), "is corrupt")
        reason = reason.removeprefix("invalid JSON in header: ")
        text = f"{path} {meaning} ({printable(reason) or type(exc).__name__})"
    return error(f"{text}; {fix}" if fix else text)


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


def read_safetensors_header(
    path: Path, *, max_metadata_chars: int | None = None, error: type[FileFormatError] = FileFormatError
) -> SafetensorsHeader:
    """A safetensors file's header, read and checked by ``safe_open`` with bounded work before any data is read.

    A missing file, a folder, random bytes, a truncated file, a header whose tensors do not fit the file, and
    metadata strings longer than ``max_metadata_chars`` each become a one-line ``error``.
    """
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such file")
    if not path.is_file():
        raise error(f"{path} is not a file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {}
            names = handle.keys()
            for key in names:
                view = handle.get_slice(key)
                tensors[key] = TensorInfo(dtype=view.get_dtype(), shape=tuple(view.get_shape()))
    except (SafetensorError, OSError) as exc:
        raise failure(path, exc, error=error) from None
    if max_metadata_chars is not None:
        for key, value in metadata.items():
            if len(value) > max_metadata_chars:
                raise error(
                    f"{path} is corrupt: metadata '{printable(key, limit=40)}' is {len(value)} characters long "
                    f"(at most {max_metadata_chars} accepted)"
                )
    return SafetensorsHeader(tensors=tensors, metadata=dict(metadata))


def check_format(
    path: Path,
    metadata: Mapping[str, str],
    *,
    expected: str,
    what: str,
    newest: int,
    error: type[FileFormatError] = FileFormatError,
) -> int:
    """The file's format version, after checking it is a gankit file of the ``expected`` kind, ``newest`` or older."""
    found = metadata.get("format")
    if found is None:
        raise error(f"{path} is a safetensors file but not a {what}")
    if found != expected:
        described = FORMAT_NAMES.get(found, f"a file of format '{printable(found, limit=40)}'")
        raise error(f"{path} is {described}, not a {what}")
    raw = metadata.get("format_version", "")
    try:
        version = int(raw)
    except ValueError:
        raise error(f"{path} is a damaged {what}: format_version {raw[:40]!r} is not a number") from None
    if version > newest:
        raise error(f"{path} was written by a newer gankit (format {version}); upgrade gankit")
    if version < 1:
        raise error(f"{path} is a damaged {what}: format_version {version} does not exist")
    return version
