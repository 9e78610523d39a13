"""Atomic outputs: every file voxuda writes appears whole under its final name, or not at all.

A writer fills a hidden temporary file beside the target (``.NAME.XXXXXXXX.tmp``: nothing voxuda
reads matches it, so it is never mistaken for a result). On success the file is fsync'd, given
the permissions of a normally created file (0666 minus the umask; mkstemp makes 0600, which a
colleague on a shared cluster cannot read) and renamed over the target; the folder is fsync'd so
the rename survives a crash. On any error or signal the temporary file is removed and an earlier
file under the final name is untouched. A failed write (full disk, quota, read-only file system)
becomes one VoxudaOutputError naming the file and the cause.

A writer holds an flock on its temporary file while it works. A temporary of the same target that
nobody holds a lock on is the leftover of a killed process (SIGKILL, power loss): the next writer
of that target removes it. Where the file system has no flock, leftovers stay (hidden, harmless).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from voxuda_cli.errors import VoxudaOutputError
from voxuda_cli.io.lock import try_flock
from voxuda_cli.io.outputs import output_error
from voxuda_cli.signals import held_back

_LIVE: dict[Path, int] = {}  # temporary path -> pid of the process that made it (the one that may remove it)


def file_mode() -> int:
    """The mode a normally created file gets: 0666 minus the umask (read without changing it)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc: the classic read-by-setting (voxuda writes no file in between)
    os.umask(mask)
    return 0o666 & ~mask


def remove_stale_temporaries(path: Path | str) -> list[Path]:
    """Remove temporaries of ``path`` that no live writer holds (leftovers of a killed process)."""
    path = Path(path)
    removed = []
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        try:
            fd = os.open(stale, os.O_RDONLY)
        except OSError:
            continue
        if not try_flock(fd):  # a live writer holds it, or the file system cannot tell
            os.close(fd)
            continue
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
            removed.append(stale)
        os.close(fd)
    return removed


def _create_temporary(path: Path) -> tuple[Path, int]:
    """A new locked temporary beside ``path`` (retried if a concurrent sweep took it before the lock)."""
    for _ in range(5):
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        # False: a concurrent sweep took it (and unlinks it); None: no flock here, so it stays unlocked
        # (and no sweep ever removes it).
        taken = try_flock(fd)
        with contextlib.suppress(FileNotFoundError):
            if taken is not False and os.stat(name).st_ino == os.fstat(fd).st_ino:
                _LIVE[Path(name)] = os.getpid()
                return Path(name), fd
        os.close(fd)
    raise VoxudaOutputError(f"{path}: cannot create a temporary file beside it (removed as it was made)")


def _commit(tmp: Path, fd: int, path: Path) -> None:
    """Data on disk, permissions of a normal file, rename, and the rename itself on disk."""
    os.fchmod(fd, file_mode())
    os.fsync(fd)  # fsync flushes the file, whichever descriptor the library wrote through
    os.replace(tmp, path)
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a folder; the file itself is on disk
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _discard(tmp: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()
    with contextlib.suppress(OSError):
        os.close(fd)
    _LIVE.pop(tmp, None)


def remove_live_temporaries() -> None:
    """Remove this process's unfinished temporaries (the last resort of the signal handling)."""
    for tmp, pid in list(_LIVE.items()):
        if pid == os.getpid():  # a forked data-loader worker must not remove its parent's files
            with contextlib.suppress(OSError):
                tmp.unlink()
            _LIVE.pop(tmp, None)


@contextlib.contextmanager
def atomic_output(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; the block fills it, and on success it becomes ``path``.

    The block must close what it opened on the temporary path (so its errors surface inside the
    block). Any error leaves no temporary file and ``path`` as it was; a write failure is raised as
    VoxudaOutputError naming ``path``.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        with held_back():  # a signal between mkstemp and here would leave a temporary nobody knows of
            tmp, fd = _create_temporary(path)
        yield tmp
        with held_back():
            _commit(tmp, fd, path)
    except BaseException as exc:
        if tmp is not None:
            _discard(tmp, fd)
        failure = output_error(path, exc)
        if failure is not None:
            raise failure from exc
        raise
    _LIVE.pop(tmp, None)
    os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write a file atomically from bytes in memory."""
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write a small text file atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(source: Path | str, path: Path | str) -> None:
    """Copy ``source`` to ``path`` atomically (a reader of ``path`` sees the old file or the whole new one)."""
    with atomic_output(path) as tmp:
        shutil.copyfile(source, tmp)


def atomic_torch_save(path: Path | str, obj: Any) -> None:
    """torch.save, atomically. Serialised in memory first: torch's own file writer reports a full
    disk as an opaque RuntimeError without the cause; a Python write names it."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, bytes(buffer.getbuffer()))


def reserve(path: Path | str, size: int) -> None:
    """Allocate ``size`` bytes of ``path`` on disk now: a memory map of a sparse file on a full disk
    fails later with SIGBUS (a crash); allocation fails here with ENOSPC (an error)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):  # cannot allocate ahead on this file system
            raise
    finally:
        os.close(fd)
