"""Output locations: the one-line errors of paths voxuda cannot write, checked before work starts.

``output_error`` turns an OSError a user can fix (full disk, quota, read-only folder, a file where
a folder is needed) into one VoxudaOutputError naming the path and what to do; ``check_output_path``
refuses an output below an existing file while a command plans; ``ensure_folder`` creates an
output folder with the same errors. Used by io.atomic (every file write) and io.lock (run folders).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from voxuda_cli.errors import VoxudaOutputError

# Why a write can fail that the user can fix, and what to do about it.
_HINTS = {
    errno.ENOSPC: "free some space or write to another file system",
    errno.EDQUOT: "free some of your quota or write to another file system",
    errno.EFBIG: "the file system or a limit (ulimit -f) refuses a file this large; write elsewhere",
    errno.EROFS: "write to a folder you can write to",
    errno.EACCES: "write to a folder you can write to",
    errno.EPERM: "write to a folder you can write to",
    errno.EIO: "check the disk (dmesg) or write elsewhere",
    errno.ENAMETOOLONG: "choose a shorter name",
    errno.ENOTDIR: "a file stands where a folder is needed; choose another output path",
    errno.EEXIST: "a file stands where a folder is needed; choose another output path",
}


def output_error(path: Path | str, exc: BaseException) -> VoxudaOutputError | None:
    """The one-line error for a failed write of ``path``, or None if ``exc`` is not a write failure."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "errno", None)
        if isinstance(seen, OSError) and code in _HINTS:
            return VoxudaOutputError(f"{path}: cannot write it: {os.strerror(code).lower()}; {_HINTS[code]}")
        seen = seen.__cause__ or seen.__context__
    return None


def check_output_path(path: Path | str, option: str = "-o") -> None:
    """Refuse (one line) an output path below an existing file: nothing could be written there.

    Called while a command plans its work, before anything is written or computed.
    """
    path = Path(path)
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise VoxudaOutputError(
                    f"{option} {path}: {ancestor} is a file, not a folder; choose an output path under a folder"
                )
            return


def ensure_folder(folder: Path | str, option: str = "-o") -> Path:
    """``folder`` created with its parents (modes from the umask); a file in the way is one line."""
    folder = Path(folder)
    check_output_path(folder / "_", option)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        failure = output_error(folder, exc)
        if failure is not None:
            raise failure from exc
        raise
    return folder


@contextlib.contextmanager
def no_empty_folders_left(*folders: Path) -> Iterator[None]:
    """On an error or a signal inside the block, remove those of ``folders`` (and their new parents)
    that did not exist before it and are still empty: a stopped command leaves no empty output folder."""
    new = []
    for folder in folders:
        missing = [f for f in (folder, *folder.parents) if not f.exists()]
        new.extend(missing)
    try:
        yield
    except BaseException:
        for folder in sorted(set(new), key=lambda f: len(f.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
        raise
