"""Whole files: atomic writes (readers see the old file or the complete new one) and the sha256 that checks one.

Every file gankit writes that a user may rely on (exports, checkpoints, the MNIST cache, sample grids) goes through
``atomic_output``: a temporary file in the same folder, fsync, then one rename, then fsync of the folder. Every
file gankit checks against a pinned hash (the MNIST download, the classifier's weights) is hashed by ``sha256_file``.
Every file gankit reads back or appends to in place, where a person could have put a link, a FIFO or a device
(the run folder's lock, config and metrics log), is opened by ``open_regular``: no link followed, nothing but a
regular file opened, every read bounded.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path


def fsync_folder(folder: Path) -> None:
    """Persist a rename in ``folder``; best effort, since not every platform or filesystem can sync a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{8}\.tmp(\.[^.]*)?")
"""What ``atomic_output`` names its temporary files: ``.NAME.<8 hex>.tmp.SUFFIX``."""
_SAFETENSORS_TEMPORARY = re.compile(r"\.tmp[A-Za-z0-9]{6}")
"""What safetensors' ``save_file`` (Rust's ``tempfile``) writes to before renaming it onto the target."""


def _create_temporary(path: Path) -> Path:
    # Same folder (so the rename is atomic), hidden, and the same suffix so writers that pick a format from the
    # extension (PIL) still work. os.open with O_EXCL respects the umask, unlike mkstemp's 0600.
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


def _move_without_clobbering(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)  # fails if path appeared meanwhile: never a silent overwrite
    except FileExistsError:
        raise
    except OSError:  # no hard links on this filesystem: best effort
        if path.exists():
            raise FileExistsError(path) from None
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_output(path: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds, fsync it and move it onto ``path``.

    When the block raises, the temporary file is removed and ``path`` is left untouched. With
    ``overwrite=False`` an existing ``path`` raises ``FileExistsError`` (race-free where hard links exist)::

        with atomic_output(target) as tmp:
            save_file(tensors, tmp)
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(path)
    tmp = _create_temporary(path)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_current_umask())  # writers such as safetensors recreate the file as 0600
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _move_without_clobbering(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_folder(path.parent)


def atomic_write_bytes(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_output``)."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files an interrupted atomic write left in ``folder`` (not below it); returns them.

    Only names ``atomic_output`` and safetensors give their temporary files are touched. Call it only where no
    other process can be writing (a locked run folder): a live writer's temporary file looks the same.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        stale = _TEMPORARY.fullmatch(entry.name) or _SAFETENSORS_TEMPORARY.fullmatch(entry.name)
        if stale and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


# -- files opened where a link, a FIFO or a device could stand -------------------------------------------------------


class NotRegularFile(OSError):
    """What ``open_regular`` raises for a path that is a symbolic link, a FIFO, a device, a socket or a folder.

    An ``OSError``, so every caller that already turns OS failures into one line says this one too.
    """


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: Path, flags: int, *, mode: int = 0o666, follow_links: bool = False) -> int:
    """``os.open`` of a regular file only: a final symbolic link is not followed (``O_NOFOLLOW``) unless
    ``follow_links`` (a user's image folder, a cache), and a FIFO or a device is refused before anything is read or
    written (opened ``O_NONBLOCK``, so a FIFO cannot hang the open).

    Raises ``NotRegularFile`` (an ``OSError`` whose ``strerror`` says what the path is) for anything else, so a
    link planted in a run folder never hands gankit someone else's file to truncate or append to.
    """
    nofollow = 0 if follow_links else os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | nofollow | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.ENXIO and os.path.lexists(path)):
            what = "a symbolic link" if os.path.islink(path) else _kind(os.lstat(path).st_mode)
            raise NotRegularFile(errno.EINVAL, f"it is {what}, not a regular file", str(path)) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise NotRegularFile(errno.EINVAL, f"it is {_kind(info.st_mode)}, not a regular file", str(path))
    os.set_blocking(fd, True)
    return fd


def read_regular(path: Path, *, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (no link followed, see ``open_regular``), at most ``limit`` of them.

    A file larger than ``limit`` raises ``NotRegularFile`` naming the limit: every read is bounded, whatever the
    file says its size is or grows to while it is read.
    """
    fd = open_regular(path, os.O_RDONLY)
    try:
        if os.fstat(fd).st_size > limit:
            raise NotRegularFile(errno.EFBIG, f"it is larger than {limit:,} bytes", str(path))
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise NotRegularFile(errno.EFBIG, f"it is larger than {limit:,} bytes", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def append_regular(path: Path, data: bytes) -> None:
    """Append ``data`` to the regular file ``path``, creating it (no link followed, see ``open_regular``)."""
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of the regular file at ``path`` (links followed; a FIFO or device raises ``NotRegularFile``
    rather than hanging), read in chunks of 1 MiB."""
    digest = hashlib.sha256()
    with os.fdopen(open_regular(path, os.O_RDONLY, follow_links=True), "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
