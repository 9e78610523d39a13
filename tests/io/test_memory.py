from pathlib import Path

import numpy as np

from voxuda_cli.io.memory import release_rows


def test_released_written_rows_stay_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.raw"
    shape = (64, 32, 64)  # 8 KiB per row: whole pages
    mapped = np.memmap(path, dtype=np.float32, mode="w+", shape=shape)
    expected = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    for start in range(0, shape[0], 8):
        mapped[start : start + 8] = expected[start : start + 8]
        release_rows(mapped, start, start + 8)
    assert np.array_equal(np.asarray(mapped), expected)  # pages come back from the file
    del mapped
    assert np.array_equal(np.fromfile(path, dtype=np.float32).reshape(shape), expected)


def test_read_only_maps_and_plain_arrays(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(16, 40, 40)).astype(np.float32)
    path = tmp_path / "in.raw"
    data.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=data.shape, offset=0)
    _ = np.asarray(mapped[:8]).sum()
    release_rows(mapped, 0, 8)
    release_rows(mapped[4:], 0, 3)  # a view of a map
    release_rows(data, 0, 8)  # not a map: nothing to do
    assert np.array_equal(np.asarray(mapped), data)
