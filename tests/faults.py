"""Fault injection for the tests: a full disk (no root needed) and runs of voxuda to signal.

``full_disk(monkeypatch, capacity)`` makes every voxuda temporary file (``.NAME.XXXX.tmp``) that is
opened for writing accept ``capacity`` bytes; the next write fails with ENOSPC, as on a full file
system. Each writer opens its temporary with the builtin ``open`` (HDF5 through the guarded file
object, mrcfile, torch checkpoints and model files, JSON/CSV, matplotlib's PNG).
"""

from __future__ import annotations

import builtins
import errno
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REAL_OPEN = builtins.open


class _FillingFile:
    """A real file whose writes fail with ENOSPC once the disk's capacity is used up."""

    def __init__(self, handle: Any, disk: FullDisk) -> None:
        self._handle = handle
        self._disk = disk

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes if not isinstance(data, str) else len(data.encode())
        if self._disk.used + size > self._disk.capacity:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.used += size
        return self._handle.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def __iter__(self) -> Any:
        return iter(self._handle)


class FullDisk:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.opened: list[str] = []

    def open(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = REAL_OPEN(file, mode, *args, **kwargs)
        name = os.path.basename(os.fspath(file)) if isinstance(file, (str, os.PathLike)) else ""
        if name.startswith(".") and name.endswith(".tmp") and any(m in mode for m in "wa+"):
            self.opened.append(name)
            return _FillingFile(handle, self)
        return handle


def full_disk(monkeypatch: pytest.MonkeyPatch, capacity: int = 0) -> FullDisk:
    disk = FullDisk(capacity)
    monkeypatch.setattr(builtins, "open", disk.open)
    return disk


def leftovers(folder: Path) -> list[str]:
    """Temporary files under ``folder`` (what a failed or stopped write must not leave)."""
    return sorted(p.name for p in folder.rglob(".*.tmp*"))


def voxuda(*args: str) -> subprocess.Popen[bytes]:
    """``voxuda ARGS`` in a new process (to be signalled), one torch thread, output captured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "voxuda_cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def wait_for(process: subprocess.Popen[bytes], ready: Any, timeout: float = 120.0) -> None:
    """Wait until ``ready()`` holds while ``process`` still runs (a state, not a guessed delay)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"exited {process.returncode} before it was ready: {err.decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("not ready in time")
        time.sleep(0.005)
