"""The training checkpoint format: any nested state as safetensors plus a JSON skeleton, and never unpickled.

A checkpoint is any nesting of dicts, lists, tuples, tensors, numpy arrays and JSON scalars: model and optimizer
state dicts, a GradScaler's state, RNG states, counters. ``flatten_state`` splits it into a flat dict of tensors
(stored as safetensors) and a JSON skeleton (stored in the file's metadata under ``state``) in which each tensor is
a ``{"__tensor__": key}`` placeholder. The few things JSON cannot say directly are spelled as one-key objects:

- ``{"__tuple__": [...]}``: a tuple (Adam's ``betas``, ``random.getstate()``);
- ``{"__dict__": [[key, value], ...]}``: a dict with int keys (optimizer ``state``) or a key that is a marker;
- ``{"__float__": "inf" | "-inf" | "nan"}``: a non-finite float;
- ``{"__ndarray__": key}`` and ``{"__numpy__": [dtype, value]}``: numpy arrays and scalars (numpy RNG state).

``unflatten_state`` is the exact inverse, so ``optimizer.load_state_dict`` gets int keys and tuples back.

Since format 2 the metadata also holds ``content_hash``: BLAKE2b over every tensor (name, dtype, shape and bytes,
in key order) and every other metadata string (the skeleton and the caller's, such as ``step``). ``load_checkpoint``
recomputes it, so one flipped bit or an edited step makes the file "damaged" instead of silently wrong. Format 1
files, which have no hash, still load.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from gankit.errors import CheckpointError
from gankit.files._tensorfile import (
    SafetensorsHeader,
    atomic_write,
    check_format,
    checked_metadata,
    dtype_name,
    failure,
    read_safetensors_header,
    standalone_tensors,
)
from gankit.files._text import one_line

CHECKPOINT_FORMAT = "gankit.checkpoint"
CHECKPOINT_FORMAT_VERSION = 2
"""The newest checkpoint format this gankit reads and the one it writes; the export's version is separate."""

_TENSOR = "__tensor__"
_NDARRAY = "__ndarray__"
_NUMPY = "__numpy__"
_TUPLE = "__tuple__"
_DICT = "__dict__"
_FLOAT = "__float__"
_MARKERS = frozenset({_TENSOR, _NDARRAY, _NUMPY, _TUPLE, _DICT, _FLOAT})
_NUMPY_SCALAR_KINDS = "biufc"
"""The numpy scalars a checkpoint holds (RNG states, counters): bool, integers, floats and complex numbers."""

CONTENT_HASH = "content_hash"
"""The metadata key of the checkpoint's content hash (format 2 on)."""

RESERVED_METADATA = ("format", "format_version", "state", CONTENT_HASH)
"""Metadata keys ``save_checkpoint`` writes itself; caller metadata may not use them."""

_WHAT = "gankit checkpoint"


def flatten_state(obj: Any) -> tuple[dict[str, Tensor], Any]:
    """Split ``obj`` into a flat ``{path: tensor}`` dict and a JSON-able skeleton that ``unflatten_state`` inverts.

    Tensor keys are the path to the tensor (``optimizer_g/state/0/exp_avg``), made unique if two paths collide.
    Tensors come back as they are (same objects); ``save_checkpoint`` makes them safe to write.
    Raises ``TypeError`` naming the path of anything that is not one of the supported types.
    """
    tensors: dict[str, Tensor] = {}

    def store(path: list[str], tensor: Tensor) -> str:
        base = "/".join(path) or "tensor"
        key, n = base, 1
        while key in tensors:
            n += 1
            key = f"{base}~{n}"
        tensors[key] = tensor
        return key

    def walk(value: Any, path: list[str]) -> Any:
        if isinstance(value, Tensor):
            return {_TENSOR: store(path, value)}
        if isinstance(value, np.ndarray):
            try:
                tensor = torch.from_numpy(np.ascontiguousarray(value))
            except (TypeError, ValueError):
                raise TypeError(f"cannot store a numpy array of dtype {value.dtype} at '{'/'.join(path)}'") from None
            return {_NDARRAY: store(path, tensor)}
        if isinstance(value, np.generic):  # before float/int: np.float64 subclasses float
            return {_NUMPY: [value.dtype.str, walk(value.item(), path)]}
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            if math.isfinite(value):
                return float(value)
            return {_FLOAT: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
        if isinstance(value, dict):
            if all(isinstance(key, str) for key in value) and not _MARKERS.intersection(value):
                return {key: walk(item, [*path, key]) for key, item in value.items()}
            pairs = []
            for key, item in value.items():
                if isinstance(key, bool) or not isinstance(key, (int, str)):
                    raise TypeError(
                        f"cannot store a dict key of type {type(key).__name__} at '{'/'.join(path)}'; "
                        f"keys must be str or int"
                    )
                pairs.append([key, walk(item, [*path, str(key)])])
            return {_DICT: pairs}
        if isinstance(value, tuple):
            return {_TUPLE: [walk(item, [*path, str(i)]) for i, item in enumerate(value)]}
        if isinstance(value, list):
            return [walk(item, [*path, str(i)]) for i, item in enumerate(value)]
        raise TypeError(
            f"cannot store a {type(value).__name__} at '{'/'.join(path) or '<root>'}' in a checkpoint; "
            f"convert it to tensors, numbers, strings, lists or dicts"
        )

    skeleton = walk(obj, [])
    return tensors, skeleton


def unflatten_state(tensors: Mapping[str, Tensor], skeleton: Any) -> Any:
    """Rebuild what ``flatten_state`` split; ``ValueError`` if the skeleton is malformed or names a missing tensor."""

    def build(node: Any) -> Any:
        if isinstance(node, list):
            return [build(item) for item in node]
        if not isinstance(node, dict):
            if node is None or isinstance(node, (bool, int, float, str)):
                return node
            raise ValueError(f"unexpected {type(node).__name__} in the skeleton")
        markers = _MARKERS.intersection(node)
        if not markers:
            return {key: build(item) for key, item in node.items()}
        if len(node) != 1:
            raise ValueError(f"marker {sorted(markers)[0]} shares its object with other keys")
        ((marker, arg),) = node.items()
        if marker in (_TENSOR, _NDARRAY):
            if not isinstance(arg, str) or arg not in tensors:
                raise ValueError(f"the skeleton refers to a tensor {str(arg)[:80]!r} that is not in the file")
            tensor = tensors[arg]
            if marker == _TENSOR:
                return tensor
            try:
                return tensor.cpu().numpy()
            except TypeError:  # a dtype numpy lacks (bfloat16, float8): not something save_checkpoint wrote
                raise ValueError(f"tensor {arg[:80]!r} of dtype {tensor.dtype} cannot be a numpy array") from None
        if marker == _TUPLE:
            if not isinstance(arg, list):
                raise ValueError("a tuple is not spelled as a list")
            return tuple(build(item) for item in arg)
        if marker == _DICT:
            if not isinstance(arg, list):
                raise ValueError("a dict is not spelled as a list of pairs")
            out: dict[Any, Any] = {}
            for pair in arg:
                if not (isinstance(pair, list) and len(pair) == 2) or not isinstance(pair[0], (int, str)):
                    raise ValueError("a dict entry is not a [key, value] pair with a str or int key")
                out[pair[0]] = build(pair[1])
            return out
        if marker == _FLOAT:
            if arg not in ("nan", "inf", "-inf"):
                raise ValueError(f"unknown non-finite float {str(arg)[:20]!r}")
            return float(arg)
        # _NUMPY
        if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str)):
            raise ValueError("a numpy scalar is not spelled as [dtype, value]")
        try:
            dtype = np.dtype(arg[0])
            if dtype.kind not in _NUMPY_SCALAR_KINDS:  # np.void(2**40) would allocate a terabyte
                raise ValueError(f"numpy scalars of dtype {dtype} are not stored in checkpoints")
            return dtype.type(build(arg[1]))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"bad numpy scalar: {one_line(exc)}") from None

    try:
        return build(skeleton)
    except RecursionError:
        raise ValueError("the skeleton is nested too deeply") from None


def save_checkpoint(path: Path, state: dict[str, Any], *, metadata: dict[str, str] | None = None) -> None:
    """Write ``state`` atomically as a safetensors checkpoint; an existing file is replaced only once complete.

    ``metadata`` adds free-form strings (run id, step) readable without loading tensors through
    ``read_checkpoint_metadata``; it may not use the keys in ``RESERVED_METADATA``.
    """
    extra = checked_metadata(metadata, reserved=RESERVED_METADATA, what="checkpoint metadata", error=CheckpointError)
    tensors, skeleton = flatten_state(state)
    header = {
        "format": CHECKPOINT_FORMAT,
        "format_version": str(CHECKPOINT_FORMAT_VERSION),
        "state": json.dumps(skeleton, allow_nan=False, separators=(",", ":")),
        **extra,
    }
    ready = standalone_tensors(tensors)
    header[CONTENT_HASH] = content_hash(ready, header)
    atomic_write(
        Path(path), lambda tmp: save_file(ready, str(tmp), metadata=header), overwrite=True, error=CheckpointError
    )


def content_hash(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> str:
    """``blake2b:<hex>`` over every tensor (name, dtype, shape, bytes) and every metadata string but the hash itself.

    The tensors must be contiguous and on the CPU, as ``standalone_tensors`` makes them and safetensors reads them.
    """
    digest = hashlib.blake2b(digest_size=32)
    fields = sorted((key, value) for key, value in metadata.items() if key != CONTENT_HASH)
    digest.update(json.dumps(fields).encode())
    return f"blake2b:{digest_tensors(digest, tensors).hexdigest()}"


def digest_tensors(digest: Any, tensors: Mapping[str, Tensor]) -> Any:
    """Feed each tensor's name, dtype, shape and bytes, in name order, to ``digest`` (a ``hashlib`` object) and
    return it: one definition of "the same tensors" for exports, checkpoints, training data and ``gankit eval``."""
    for key in sorted(tensors):
        tensor = tensors[key].detach().to("cpu").contiguous()
        digest.update(json.dumps([key, dtype_name(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest


def read_checkpoint_metadata(path: Path) -> dict[str, str]:
    """The caller metadata saved with a checkpoint (no tensors are read); ``CheckpointError`` if it is not one."""
    path = Path(path)
    meta = _read_header(path)[0].metadata
    return {key: value for key, value in meta.items() if key not in RESERVED_METADATA}


def _read_header(path: Path) -> tuple[SafetensorsHeader, int]:
    """The header of a checkpoint and its format version, after checking it is one this gankit can read."""
    header = read_safetensors_header(path, error=CheckpointError)
    version = check_format(
        path,
        header.metadata,
        expected=CHECKPOINT_FORMAT,
        what=_WHAT,
        newest=CHECKPOINT_FORMAT_VERSION,
        error=CheckpointError,
    )
    return header, version


def load_checkpoint(path: Path, *, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``, with its tensors on ``device``.

    Numpy arrays always come back on the CPU. Every way the file can be wrong (missing, truncated, corrupt, not a
    checkpoint, written by a newer gankit, a content hash that does not match) is a one-line ``CheckpointError``.
    """
    path = Path(path)
    header, version = _read_header(path)
    raw = header.metadata.get("state")
    if raw is None:
        raise CheckpointError(f"{path} is a damaged {_WHAT}: metadata 'state' is missing")
    try:
        skeleton = json.loads(raw)
    except (ValueError, RecursionError):
        raise CheckpointError(f"{path} is a damaged {_WHAT}: metadata 'state' is not valid JSON") from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            tensors = {key: handle.get_tensor(key) for key in header.tensors}
    except Exception as exc:  # safetensors raises its own error type, or OSError on a file changed under us
        raise failure(path, exc, error=CheckpointError) from None
    if version >= 2:
        recorded = header.metadata.get(CONTENT_HASH)
        if recorded is None:
            raise CheckpointError(f"{path} is a damaged {_WHAT}: metadata '{CONTENT_HASH}' is missing")
        if content_hash(tensors, header.metadata) != recorded:
            raise CheckpointError(
                f"{path} is a damaged {_WHAT}: its content does not match its hash (changed after it was written)"
            )
    if torch.device(device).type != "cpu":
        tensors = {key: tensor.to(device) for key, tensor in tensors.items()}
    try:
        state = unflatten_state(tensors, skeleton)
    except ValueError as exc:
        raise CheckpointError(f"{path} is a damaged {_WHAT}: {exc}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is a damaged {_WHAT}: its state is not a dict")
    return state
