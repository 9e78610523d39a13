"""Atomic outputs: whole or nothing, permissions of a normal file, one-line write errors, stale temporaries."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

import pytest

from tests.faults import full_disk, leftovers
from voxuda_cli.errors import VoxudaOutputError
from voxuda_cli.io import atomic
from voxuda_cli.io.atomic import (
    atomic_output,
    atomic_torch_save,
    atomic_write_text,
    output_error,
    remove_live_temporaries,
)
from voxuda_cli.signals import Interrupted


@pytest.fixture
def umask():  # type: ignore[no-untyped-def]
    """Set the umask for one test (and put the previous one back)."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_mode_of_a_normally_created_file(tmp_path: Path, umask, mask: int, mode: int) -> None:  # type: ignore[no-untyped-def]
    umask(mask)
    atomic_write_text(tmp_path / "out.json", "{}")
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == mode
    with open(tmp_path / "plain", "w"):  # what the user's own tools would make
        pass
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == mode


def test_a_full_disk_leaves_the_earlier_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.txt"
    target.write_text("earlier, good")
    full_disk(monkeypatch, capacity=10)
    with pytest.raises(VoxudaOutputError, match=r"out.txt: cannot write it: no space left on device; free some space"):
        atomic_write_text(target, "x" * 100)
    assert target.read_text() == "earlier, good"
    assert leftovers(tmp_path) == []


def test_fsync_failure_is_a_write_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk that shows only when the data goes to disk (NFS, delayed allocation)."""

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(VoxudaOutputError, match="no space left on device"):
        atomic_torch_save(tmp_path / "model.pt", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_folder_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: every folder is writable")
        with pytest.raises(VoxudaOutputError, match=r"ro/x.h5: cannot write it: permission denied"):
            with atomic_output(folder / "x.h5"):
                pass
    finally:
        folder.chmod(0o700)


def test_other_errors_pass_through_and_clean_up(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        with atomic_output(tmp_path / "x"):
            _ = 1 / 0
    with pytest.raises(Interrupted):
        with atomic_output(tmp_path / "y") as tmp:
            tmp.write_text("half")
            raise Interrupted(15)
    assert list(tmp_path.iterdir()) == []
    assert output_error("x", FileNotFoundError(errno.ENOENT, "gone")) is None


def test_stale_temporaries_go_and_a_live_writers_stays(tmp_path: Path) -> None:
    stale = tmp_path / ".out.h5.abcd1234.tmp"
    stale.write_text("killed writer")
    old_style = tmp_path / ".out.h5.efgh5678.tmp.h5"
    old_style.write_text("killed writer of an older voxuda")
    live = tmp_path / ".out.h5.live0000.tmp"
    live.write_text("someone writing")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a live writer holds its temporary locked
    try:
        atomic_write_text(tmp_path / "out.h5", "new")
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out.h5"]


def test_live_temporaries_are_removed_as_a_last_resort(tmp_path: Path) -> None:
    context = atomic_output(tmp_path / "x")
    tmp = context.__enter__()
    tmp.write_text("half")
    remove_live_temporaries()
    assert not tmp.exists()
    assert context.__exit__(KeyboardInterrupt, KeyboardInterrupt(), None) is False  # re-raised by `with`
    assert list(tmp_path.iterdir()) == []


def test_a_name_with_glob_characters(tmp_path: Path) -> None:
    (tmp_path / ".run[1].h5.abcd1234.tmp").write_text("killed writer")
    (tmp_path / ".run1.h5.abcd1234.tmp").write_text("another output's, left alone")
    atomic_write_text(tmp_path / "run[1].h5", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run1.h5.abcd1234.tmp", "run[1].h5"]
