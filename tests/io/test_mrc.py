from pathlib import Path

import mrcfile
import numpy as np
import pytest

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.mrc import create_mrc_memmap, read_mrc, write_mrc
from voxuda_cli.io.volume import Volume


def test_round_trip_keeps_data_voxel_size_origin_and_labels(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.normal(size=(12, 14, 16)).astype(np.float32)
    volume = Volume(data, voxel_size=(4.2, 4.3, 4.4), origin=(10.0, -5.0, 2.5), labels=["acquired at 300 kV"])
    write_mrc(tmp_path / "a.mrc", volume, label="voxuda test")
    back = read_mrc(tmp_path / "a.mrc")
    np.testing.assert_array_equal(back.data, data)
    assert back.voxel_size == pytest.approx((4.2, 4.3, 4.4), abs=1e-4)
    assert back.origin == pytest.approx((10.0, -5.0, 2.5))
    assert back.labels == ["acquired at 300 kV", "voxuda test"]
    with mrcfile.open(tmp_path / "a.mrc") as mrc:  # the header is standard: other tools read the same pixel size
        assert float(mrc.voxel_size.x) == pytest.approx(4.4, abs=1e-4)
        assert mrc.data.shape == (12, 14, 16)


@pytest.mark.parametrize("suffix", [".map", ".rec"])
def test_other_suffixes_and_mask_dtype(tmp_path: Path, suffix: str) -> None:
    mask = np.zeros((8, 8, 8), dtype=np.uint8)
    mask[2:5, 2:5, 2:5] = 1
    write_mrc(tmp_path / f"m{suffix}", Volume(mask, voxel_size=10.0))
    back = read_mrc(tmp_path / f"m{suffix}")
    np.testing.assert_array_equal(back.data, mask)
    assert back.voxel_size == (10.0, 10.0, 10.0)


def test_memmap_read_does_not_copy(tmp_path: Path) -> None:
    write_mrc(tmp_path / "a.mrc", Volume(np.ones((8, 8, 8), np.float32), voxel_size=2.0))
    volume = read_mrc(tmp_path / "a.mrc", mmap=True)
    assert isinstance(volume.data, np.memmap)
    assert float(volume.data.sum()) == 512.0


def test_memmap_output_is_atomic_and_keeps_geometry(tmp_path: Path) -> None:
    like = Volume(np.zeros((4, 4, 4), np.float32), voxel_size=7.0, origin=(1.0, 2.0, 3.0), labels=["x"])
    with create_mrc_memmap(tmp_path / "out.mrc", (20, 6, 5), like) as data:
        assert not (tmp_path / "out.mrc").exists()
        data[:] = 3.0
    back = read_mrc(tmp_path / "out.mrc")
    assert back.shape == (20, 6, 5)
    assert back.voxel_size == (7.0, 7.0, 7.0) and back.origin == (1.0, 2.0, 3.0)
    assert float(back.data.mean()) == 3.0


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    like = Volume(np.zeros((4, 4, 4), np.float32))
    with pytest.raises(RuntimeError):
        with create_mrc_memmap(tmp_path / "out.mrc", (4, 4, 4), like):
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VoxudaInputError, match="file not found"):
        read_mrc(tmp_path / "nope.mrc")


def test_not_an_mrc(tmp_path: Path) -> None:
    (tmp_path / "x.mrc").write_bytes(b"hello" * 10)
    with pytest.raises(VoxudaInputError, match="not a readable MRC"):
        read_mrc(tmp_path / "x.mrc")


def test_truncated(tmp_path: Path) -> None:
    write_mrc(tmp_path / "a.mrc", Volume(np.ones((16, 16, 16), np.float32)))
    raw = (tmp_path / "a.mrc").read_bytes()
    (tmp_path / "a.mrc").write_bytes(raw[: len(raw) - 100])
    with pytest.raises(VoxudaInputError, match="truncated"):
        read_mrc(tmp_path / "a.mrc")


def test_not_3d(tmp_path: Path) -> None:
    with mrcfile.new(tmp_path / "flat.mrc") as mrc:
        mrc.set_data(np.ones((16, 16), np.float32))
    with pytest.raises(VoxudaInputError, match="not a 3D volume"):
        read_mrc(tmp_path / "flat.mrc")


def test_nan(tmp_path: Path) -> None:
    data = np.ones((8, 8, 8), np.float32)
    data[3, 3, 3] = np.nan
    write_mrc(tmp_path / "a.mrc", Volume(data))
    with pytest.raises(VoxudaInputError, match="NaN"):
        read_mrc(tmp_path / "a.mrc")


def test_a_full_disk_keeps_the_earlier_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.faults import full_disk, leftovers
    from voxuda_cli.errors import VoxudaOutputError

    path = tmp_path / "out.mrc"
    write_mrc(path, Volume(np.ones((4, 4, 4), np.float32)))
    earlier = path.read_bytes()
    full_disk(monkeypatch, capacity=1500)  # the header fits, the data does not
    with pytest.raises(VoxudaOutputError, match="out.mrc: cannot write it: no space left on device"):
        write_mrc(path, Volume(np.zeros((16, 16, 16), np.float32)))
    assert path.read_bytes() == earlier and leftovers(tmp_path) == []


def test_a_memmap_output_is_allocated_before_it_is_filled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Filling a memory map of a sparse file on a full disk is a SIGBUS crash; allocating first is an error."""
    import errno
    import os

    from tests.faults import leftovers
    from voxuda_cli.errors import VoxudaOutputError
    from voxuda_cli.io import atomic

    def no_space(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "posix_fallocate", no_space)
    filled = []
    with pytest.raises(VoxudaOutputError, match="out.mrc: cannot write it: no space left on device"):
        with create_mrc_memmap(tmp_path / "out.mrc", (8, 8, 8), Volume(np.zeros((4, 4, 4), np.float32))) as data:
            filled.append(data)
    assert filled == [] and list(tmp_path.iterdir()) == [] and leftovers(tmp_path) == []
