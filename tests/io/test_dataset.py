from pathlib import Path

import h5py
import numpy as np
import pytest

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.dataset import Dataset, DatasetWriter, read_h5_dataset, write_dataset


def _dataset(n: int = 3) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(
        images=rng.normal(size=(n, 8, 8, 8)).astype(np.float32),
        names=[f"n{i}" for i in range(n)],
        voxel_size=9.5,
        kind="source",
        masks=(rng.random((n, 8, 8, 8)) > 0.5).astype(np.uint8),
        classes=["x"] * n,
        params={"snr": np.arange(n, dtype=np.float32)},
    )


def test_write_read_round_trip(tmp_path: Path) -> None:
    original = _dataset()
    write_dataset(tmp_path / "d.h5", original, {"provenance": "{}"})
    back = read_h5_dataset(tmp_path / "d.h5")
    np.testing.assert_array_equal(back.images, original.images)
    np.testing.assert_array_equal(back.masks, original.masks)
    assert back.names == original.names and back.classes == original.classes
    assert back.voxel_size == 9.5 and back.kind == "source"
    np.testing.assert_array_equal(back.params["snr"], [0, 1, 2])
    with h5py.File(tmp_path / "d.h5") as handle:
        assert handle.attrs["voxuda_format"] == 1
        assert handle["masks"].dtype == np.uint8


def test_writer_streams_and_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    with pytest.raises(RuntimeError):
        with DatasetWriter(path, (8, 8, 8), 10.0, "source") as writer:
            writer.append(np.zeros((8, 8, 8), np.float32), "a")
            raise RuntimeError("killed half way")
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_wrong_box(tmp_path: Path) -> None:
    with pytest.raises(VoxudaInputError, match="differs from the dataset box"):
        with DatasetWriter(tmp_path / "d.h5", (8, 8, 8), 10.0, "source") as writer:
            writer.append(np.zeros((8, 8, 9), np.float32), "a")
    assert not (tmp_path / "d.h5").exists()


def test_missing_images(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "x.h5", "w") as handle:
        handle["masks"] = np.zeros((2, 4, 4, 4), np.uint8)
    with pytest.raises(VoxudaInputError, match="no /images"):
        read_h5_dataset(tmp_path / "x.h5")


def test_not_hdf5(tmp_path: Path) -> None:
    (tmp_path / "x.h5").write_text("not hdf5")
    with pytest.raises(VoxudaInputError, match="not a readable HDF5"):
        read_h5_dataset(tmp_path / "x.h5")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: setattr(d, "masks", d.masks[:2]), "/masks has shape"),
        (lambda d: setattr(d, "masks", d.masks[..., :4]), "/masks has shape"),
        (lambda d: d.images.__setitem__((0, 0, 0, 0), np.nan), "NaN"),
        (lambda d: d.images.__setitem__((1, 0, 0, 0), np.inf), "NaN or Inf"),
        (lambda d: setattr(d, "names", ["a", "a", "b"]), "duplicate sample names"),
        (lambda d: setattr(d, "names", ["a"]), "1 names for 3 images"),
        (lambda d: setattr(d, "images", d.images[0]), "expected \\(N, D, H, W\\)"),
        (lambda d: d.masks.__setitem__((0, 0, 0, 0), 7), "other than 0 and 1"),
    ],
)
def test_validation_errors(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    dataset = _dataset()
    mutate(dataset)
    with pytest.raises(VoxudaInputError, match=message):
        dataset.validate()


def test_validation_names_the_file(tmp_path: Path) -> None:
    dataset = _dataset()
    with h5py.File(tmp_path / "bad.h5", "w") as handle:
        handle["images"] = dataset.images
        handle["masks"] = dataset.masks[:2]
    with pytest.raises(VoxudaInputError, match="bad.h5: /masks has shape"):
        read_h5_dataset(tmp_path / "bad.h5")


def test_subset_keeps_alignment() -> None:
    dataset = _dataset()
    part = dataset.subset([2, 0])
    assert part.names == ["n2", "n0"]
    np.testing.assert_array_equal(part.masks[0], dataset.masks[2])
    np.testing.assert_array_equal(part.params["snr"], [2, 0])


def test_a_full_disk_while_streaming_keeps_the_earlier_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.faults import full_disk, leftovers
    from voxuda_cli.errors import VoxudaOutputError

    path = tmp_path / "d.h5"
    write_dataset(path, _dataset(2))
    earlier = path.read_bytes()
    disk = full_disk(monkeypatch, capacity=20_000)
    with pytest.raises(VoxudaOutputError, match="d.h5: cannot write it: no space left on device"):
        write_dataset(path, _dataset(40))
    assert disk.opened and path.read_bytes() == earlier and leftovers(tmp_path) == []


def test_a_dataset_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    write_dataset(path, _dataset(1))
    with h5py.File(path, "a") as handle:
        handle.attrs["voxuda_format"] = 99
    with pytest.raises(VoxudaInputError, match="dataset format version 99 is newer than this voxuda reads"):
        read_h5_dataset(path)
