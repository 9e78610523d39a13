from pathlib import Path

import numpy as np
import pytest

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.dataset import Dataset, read_h5_dataset, write_dataset
from voxuda_cli.io.mrc import write_mrc
from voxuda_cli.io.volume import Volume
from voxuda_cli.simulate.importing import binarise, import_dataset
from voxuda_cli.simulate.presets import SimulationSettings


def greyscale_ball(box: int, radius: float) -> np.ndarray:
    """A density that falls from 600 at the centre to 0 at 2 * radius: 300 at ``radius``."""
    grid = np.indices((box,) * 3, dtype=np.float32)
    distance = np.sqrt(sum((g - (box - 1) / 2) ** 2 for g in grid))
    return np.clip(600.0 * (1 - distance / (2 * radius)), 0, None).astype(np.float32)


def test_binarise_at_300() -> None:
    values = np.array([[[0.0, 299.0, 299.99, 300.0, 300.01, 301.0, 1e4]]])
    assert binarise(values, 300.0).tolist() == [[[0, 0, 0, 0, 1, 1, 1]]]


def _write_mrc_pairs(tmp_path: Path, box: int, count: int = 3) -> tuple[Path, Path]:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        grey = greyscale_ball(box, radius=box / 4 + index)
        write_mrc(images / f"s{index}.mrc", Volume(-grey / 100 + rng.normal(0, 1, grey.shape).astype(np.float32), 5.0))
        write_mrc(masks / f"s{index}.mrc", Volume(grey, 5.0))
    return images, masks


def test_import_mrc_folders_thresholds_at_300_and_keeps_size(tmp_path: Path) -> None:
    images, masks = _write_mrc_pairs(tmp_path, box=32)
    summary = import_dataset(tmp_path / "out.h5", images, masks, SimulationSettings(invert=True))
    dataset = read_h5_dataset(tmp_path / "out.h5")
    assert summary["samples"] == 3 and dataset.names == ["s0", "s1", "s2"]
    for index in range(3):
        np.testing.assert_array_equal(dataset.masks[index], (greyscale_ball(32, 8 + index) > 300).astype(np.uint8))
    assert dataset.voxel_size == 5.0 and dataset.attrs["mask_threshold"] == 300.0
    # inverted (protein was dark), z-scored: protein now bright
    assert dataset.images[0][dataset.masks[0] == 1].mean() > dataset.images[0][dataset.masks[0] == 0].mean()
    np.testing.assert_allclose(dataset.images.std(axis=(1, 2, 3)), 1, atol=1e-4)


def test_import_resizes_or_crops_larger_volumes(tmp_path: Path) -> None:
    images, masks = _write_mrc_pairs(tmp_path, box=48, count=2)
    import_dataset(tmp_path / "resized.h5", images, masks, SimulationSettings(box=32, mask_threshold=250))
    resized = read_h5_dataset(tmp_path / "resized.h5")
    assert resized.images.shape == (2, 32, 32, 32) and resized.voxel_size == pytest.approx(7.5)
    expected = (greyscale_ball(48, 12) > 250).sum() * (32 / 48) ** 3
    assert resized.masks[0].sum() == pytest.approx(expected, rel=0.1)
    import_dataset(tmp_path / "cropped.h5", images, masks, SimulationSettings(box=32, crop=True))
    cropped = read_h5_dataset(tmp_path / "cropped.h5")
    assert cropped.voxel_size == 5.0
    np.testing.assert_array_equal(cropped.masks[0], (greyscale_ball(48, 12) > 300)[8:40, 8:40, 8:40])


def test_import_from_hdf5_reads_density_as_greyscale_mask(tmp_path: Path) -> None:
    grey = np.stack([greyscale_ball(32, 6), greyscale_ball(32, 9)])
    source = Dataset(images=grey / 100, names=["a", "b"], voxel_size=10.0, density=grey, classes=["x", "y"])
    write_dataset(tmp_path / "in.h5", source)
    import_dataset(tmp_path / "out.h5", tmp_path / "in.h5", tmp_path / "in.h5", SimulationSettings())
    dataset = read_h5_dataset(tmp_path / "out.h5")
    assert dataset.classes == ["x", "y"]
    np.testing.assert_array_equal(dataset.masks[1], (grey[1] > 300).astype(np.uint8))


def test_import_errors_leave_nothing(tmp_path: Path) -> None:
    images, masks = _write_mrc_pairs(tmp_path, box=32, count=2)
    (masks / "s1.mrc").unlink()
    with pytest.raises(VoxudaInputError, match="no mask for"):
        import_dataset(tmp_path / "out.h5", images, masks, SimulationSettings())
    with pytest.raises(VoxudaInputError, match="smaller than --box"):
        import_dataset(tmp_path / "out.h5", images, images, SimulationSettings(box=40, crop=True))
    assert not (tmp_path / "out.h5").exists()
