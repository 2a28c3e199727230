"""One writer per run folder: an exclusive OS lock (``flock``) on ``RUN/.lock``, free again when its holder dies.

The lock is the kernel's, not the file's presence: ``kill -9`` of the holder releases it, and a ``.lock`` file
left behind means nothing. A ``.lock`` that is a symbolic link, a FIFO or a device is refused in one line, never
followed, opened for writing or truncated. The holder writes its PID into the file (best effort: a full disk must
not stop it from locking) so that a refused second writer can name it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from gankit.errors import ConfigError
from gankit.files import NotRegularFile, open_regular

LOCK_NAME = ".lock"
"""The lock file's name inside a run folder; never part of what makes a folder "not empty"."""


def _busy(folder: Path, fd: int) -> ConfigError:
    holder = _holder(fd)
    who = f"PID {holder}" if holder is not None else "a process whose PID is not recorded"
    return ConfigError(
        f"run folder {folder} is in use by another gankit process ({who}); wait for it to end, or choose another --out"
    )


def _holder(fd: int, *, patience: float = 2.0) -> int | None:
    """The PID in the lock file, once it names a live process: a holder that has just taken the lock may not have
    written its PID yet (the file then holds nothing, or the PID of a holder killed earlier), so wait a little."""
    deadline = time.monotonic() + patience
    while True:
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            return None
        if text.isdigit() and _alive(int(text)):
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _refused(folder: Path, exc: NotRegularFile) -> ConfigError:
    what = (exc.strerror or "it is not a regular file").removeprefix("it ")
    return ConfigError(
        f"cannot lock run folder {folder}: {folder / LOCK_NAME} {what}; remove it (gankit makes its own lock there)"
    )


def check_unlocked(folder: Path) -> None:
    """``ConfigError`` naming the holder's PID if another process holds ``folder``'s lock, or if the lock path is not
    a regular file (a link, a FIFO: never followed, never opened for reading); creates nothing."""
    try:
        fd = open_regular(folder / LOCK_NAME, os.O_RDONLY)
    except NotRegularFile as exc:
        raise _refused(folder, exc) from None
    except OSError:
        return  # no lock file (or unreadable): nobody can be holding it through us
    try:
        if not _try_lock(fd):
            raise _busy(folder, fd)
    finally:
        os.close(fd)  # also releases the probe's lock


class RunLock:
    """The exclusive lock on a run folder, held from ``acquire`` until ``release`` (or the process ends)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise a one-line ``ConfigError`` naming the holder; the folder must exist."""
        if self._fd is not None:
            return
        while True:
            try:  # never through a link (it would truncate its target), never a FIFO (it would hang)
                fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, mode=0o644)
            except NotRegularFile as exc:
                raise _refused(self.folder, exc) from None
            except OSError as exc:
                raise ConfigError(f"cannot lock run folder {self.folder}: {exc.strerror or exc}") from None
            if not _try_lock(fd):
                error = _busy(self.folder, fd)
                os.close(fd)
                raise error
            # A holder that just released may have removed the file we opened: then lock the new one instead.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        with contextlib.suppress(OSError):  # the PID only improves the message; a full disk may refuse it
            pid = f"{os.getpid()}\n".encode()
            os.pwrite(fd, pid, 0)  # one small write, then cut what an older holder's longer PID left behind
            os.ftruncate(fd, len(pid))
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file, then let go of the lock; a no-op when not held."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()
