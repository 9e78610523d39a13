from pathlib import Path

import numpy as np
import pytest

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.dataset import read_h5_dataset
from voxuda_cli.io.volume import Volume
from voxuda_cli.patches import (
    PatchifySettings,
    group_by_parent,
    parents_info,
    patch_grid,
    patch_starts,
    stitch,
    write_patches,
)


def test_starts_cover_the_axis_without_padding() -> None:
    assert patch_starts(192, 32, 32) == [0, 32, 64, 96, 128, 160]
    assert patch_starts(100, 32, 32) == [0, 32, 64, 68]  # last patch flush with the border
    assert patch_starts(64, 32, 16) == [0, 16, 32]
    assert patch_starts(20, 32, 32) == [0]


def test_192_cube_gives_216_patches_with_correct_origins(tmp_path: Path) -> None:
    data = np.arange(192**3, dtype=np.float32).reshape((192,) * 3)
    volume = Volume(data, voxel_size=5.0, origin=(1.0, 2.0, 3.0))
    summary = write_patches(tmp_path / "p.h5", [("tomo", volume)], PatchifySettings(), "{}")
    assert summary["patches"] == 216
    dataset = read_h5_dataset(tmp_path / "p.h5")
    assert dataset.images.shape == (216, 32, 32, 32) and dataset.kind == "patches"
    assert set(dataset.parents) == {"tomo"}
    expected = {(z, y, x) for z in range(0, 192, 32) for y in range(0, 192, 32) for x in range(0, 192, 32)}
    assert {tuple(c) for c in dataset.coords} == expected
    for index in (0, 37, 215):
        z, y, x = dataset.coords[index]
        np.testing.assert_array_equal(dataset.images[index], data[z : z + 32, y : y + 32, x : x + 32])
    info = parents_info(dataset.attrs)["tomo"]
    assert info.shape == (192, 192, 192) and info.origin == (1.0, 2.0, 3.0)


def test_resize_64_gives_8_patches_at_three_times_the_voxel_size(tmp_path: Path) -> None:
    volume = Volume(np.random.default_rng(0).normal(size=(192,) * 3).astype(np.float32), voxel_size=5.0)
    summary = write_patches(tmp_path / "p.h5", [("tomo", volume)], PatchifySettings(resize=64), "{}")
    dataset = read_h5_dataset(tmp_path / "p.h5")
    assert summary["patches"] == 8 and len(dataset) == 8
    assert dataset.voxel_size == pytest.approx(15.0)
    info = parents_info(dataset.attrs)["tomo"]
    assert info.original_shape == (192, 192, 192) and info.shape == (64, 64, 64)


def test_patchify_then_stitch_restores_the_volume() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(40, 50, 70)).astype(np.float32)
    for stride in (32, 20):
        grid = patch_grid(data.shape, 32, stride)
        cubes = np.stack([data[z : z + 32, y : y + 32, x : x + 32] for z, y, x in grid])
        np.testing.assert_allclose(stitch(cubes, np.array(grid), data.shape), data, atol=1e-5)


def test_stitch_drops_parts_beyond_the_border() -> None:
    data = np.random.default_rng(1).normal(size=(20, 20, 20)).astype(np.float32)
    padded = np.pad(data, [(0, 12)] * 3, mode="edge")[None]
    np.testing.assert_allclose(stitch(padded, np.zeros((1, 3)), data.shape), data, atol=1e-6)


def test_group_by_parent_keeps_order() -> None:
    groups = dict(group_by_parent(["b", "a", "b", "a", "c"]))
    assert list(groups) == ["b", "a", "c"]
    np.testing.assert_array_equal(groups["b"], [0, 2])


def test_settings_validation() -> None:
    with pytest.raises(VoxudaInputError, match="--stride"):
        PatchifySettings(patch=32, stride=40)
    with pytest.raises(VoxudaInputError, match="--resize"):
        PatchifySettings(patch=32, resize=16)
    assert PatchifySettings(patch=16).stride == 16
