"""The folder lock: one live holder; a killed holder does not leave it stuck."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.lock import LOCK_NAME, folder_lock

HOLD = (
    "import sys, time; from voxuda_cli.io.lock import folder_lock\n"
    "with folder_lock(sys.argv[1], 'run'):\n"
    "    print('locked', flush=True); time.sleep(600)\n"
)


def test_a_second_holder_is_refused_until_the_first_is_killed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"  # readiness, not a delay
        with pytest.raises(VoxudaInputError, match=rf"-o run/: another voxuda process \(pid {holder.pid}\) is writing"):
            with folder_lock(run, "-o run/"):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (run / LOCK_NAME).exists()  # left behind by the killed holder, but not held
    with folder_lock(run, "-o run/") as path:
        assert path.read_text() == f"{os.getpid()}\n"
    assert not (run / LOCK_NAME).exists()


def test_the_lock_is_released_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with folder_lock(tmp_path, "x"):
            raise RuntimeError("boom")
    with folder_lock(tmp_path, "x"):
        pass


def test_a_file_system_without_flock_warns_and_goes_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import errno
    import fcntl

    from voxuda_cli.io.atomic import atomic_write_text

    def no_flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))  # Lustre without -o flock

    stale = tmp_path / ".out.txt.abcd1234.tmp"
    stale.write_text("cannot tell whose")
    monkeypatch.setattr(fcntl, "flock", no_flock)
    with folder_lock(tmp_path, "-o run/"):
        atomic_write_text(tmp_path / "out.txt", "written")
    assert "cannot lock files" in caplog.text
    assert (tmp_path / "out.txt").read_text() == "written" and stale.exists()  # never removed unless surely stale
