"""An exclusive lock on a folder for one live process (``train`` on its run directory).

flock on a lock file: the kernel drops the lock when the process ends however it ends (SIGKILL,
out of memory, node reboot), so a killed run never leaves it stuck; a lock file left behind by a
killed run is simply taken over. The holder's pid is written into the file for the message.
flock works on local file systems and on NFS v4 (Linux maps it to a byte-range lock there); on a
file system without it (Lustre mounted without -o flock) the run goes ahead with a warning.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.outputs import ensure_folder

LOCK_NAME = ".voxuda.lock"
# flock is missing on some cluster file systems (Lustre mounted without -o flock: ENOSYS; some FUSE
# and old NFS mounts): there nothing can be locked, and voxuda says so rather than failing.
_NO_LOCKS = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOLCK})
log = logging.getLogger("voxuda")


def try_flock(fd: int) -> bool | None:
    """An exclusive flock on ``fd`` without waiting: True taken, False held by another, None unsupported."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in _NO_LOCKS:
            return None
        raise
    return True


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f" (pid {int(path.read_text().split()[0])})"
    return ""


def _acquire(path: Path, what: str) -> int:
    """The locked descriptor of ``path``, or VoxudaInputError if another process holds it."""
    for _ in range(5):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        taken = try_flock(fd)
        if taken is False:
            os.close(fd)
            raise VoxudaInputError(
                f"{what}: another voxuda process{_holder(path)} is writing it; wait for it to end, "
                "or choose another folder"
            )
        if taken is None:
            log.warning("%s: this file system cannot lock files; a second run into it would not be noticed", what)
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:  # not unlinked by a holder that just ended
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
        os.close(fd)
    raise VoxudaInputError(f"{what}: cannot take the lock {path}; try again")


@contextlib.contextmanager
def folder_lock(folder: Path | str, what: str) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if missing) while the block runs; refuse if it is held.

    ``what`` names the folder in the message (e.g. "-o run/"). The lock file is removed at the end
    (still locked, so a process that opened it meanwhile sees it was unlinked and takes a new one).
    """
    folder = ensure_folder(folder, what)
    path = folder / LOCK_NAME
    fd = _acquire(path, what)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
