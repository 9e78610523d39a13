from pathlib import Path

import numpy as np
import pytest

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.mrc import write_mrc
from voxuda_cli.io.sources import iter_volumes, read_dataset
from voxuda_cli.io.volume import Volume


def _write(folder: Path, name: str, shape=(8, 8, 8), voxel_size=10.0) -> Path:  # type: ignore[no-untyped-def]
    path = folder / f"{name}.mrc"
    write_mrc(path, Volume(np.random.default_rng(len(name)).normal(size=shape).astype(np.float32), voxel_size))
    return path


def test_folder_of_mrc_is_a_dataset_named_by_stem(tmp_path: Path) -> None:
    for name in ("b", "a", "c"):
        _write(tmp_path, name)
    (tmp_path / "notes.txt").write_text("ignored")
    dataset = read_dataset([tmp_path])
    assert dataset.names == ["a", "b", "c"]
    assert dataset.images.shape == (3, 8, 8, 8) and dataset.voxel_size == 10.0


def test_mrc_files_as_masks(tmp_path: Path) -> None:
    path = tmp_path / "m.mrc"
    mask = np.zeros((8, 8, 8), np.uint8)
    mask[1:3] = 1
    write_mrc(path, Volume(mask))
    dataset = read_dataset([path], require_masks=True)
    np.testing.assert_array_equal(dataset.masks[0], mask)


def test_h5_dataset_passes_through(tiny_dataset: Path) -> None:
    dataset = read_dataset([tiny_dataset], require_masks=True)
    assert len(dataset) == 6 and dataset.classes[-1] == "b"


def test_mixed_shapes_refused(tmp_path: Path) -> None:
    _write(tmp_path, "a")
    _write(tmp_path, "b", shape=(8, 8, 10))
    with pytest.raises(VoxudaInputError, match="different shapes"):
        read_dataset([tmp_path])


def test_mixed_voxel_sizes_refused(tmp_path: Path) -> None:
    _write(tmp_path, "a", voxel_size=10.0)
    _write(tmp_path, "b", voxel_size=12.0)
    with pytest.raises(VoxudaInputError, match="voxel size"):
        read_dataset([tmp_path])


def test_missing_and_unknown_inputs(tmp_path: Path) -> None:
    with pytest.raises(VoxudaInputError, match="file not found"):
        read_dataset([tmp_path / "nope.mrc"])
    (tmp_path / "x.tif").write_text("")
    with pytest.raises(VoxudaInputError, match="unknown file type"):
        read_dataset([tmp_path / "x.tif"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VoxudaInputError, match="no MRC files"):
        read_dataset([empty])


def test_h5_without_masks_when_required(tmp_path: Path) -> None:
    from voxuda_cli.io.dataset import Dataset, write_dataset

    write_dataset(tmp_path / "u.h5", Dataset(images=np.zeros((2, 8, 8, 8), np.float32), names=["a", "b"]))
    with pytest.raises(VoxudaInputError, match="no /masks"):
        read_dataset([tmp_path / "u.h5"], require_masks=True)


def test_iter_volumes_any_shape(tmp_path: Path) -> None:
    _write(tmp_path, "small")
    _write(tmp_path, "big", shape=(20, 24, 28))
    shapes = {name: volume.shape for name, volume in iter_volumes([tmp_path])}
    assert shapes == {"big": (20, 24, 28), "small": (8, 8, 8)}


def test_input_kind_is_decided_in_one_place(tmp_path: Path) -> None:
    from voxuda_cli.io.sources import input_kind, single_dataset

    (tmp_path / "a.h5").write_bytes(b"")
    (tmp_path / "b.mrc").write_bytes(b"")
    (tmp_path / "c.txt").write_text("x")
    assert input_kind(tmp_path / "a.h5") == "hdf5"
    assert input_kind(tmp_path / "b.mrc") == "mrc"
    assert input_kind(tmp_path) == "folder"
    assert single_dataset([tmp_path / "a.h5"]) == tmp_path / "a.h5"
    assert single_dataset([tmp_path / "b.mrc"]) is None
    with pytest.raises(VoxudaInputError, match="c.txt: unknown file type"):
        input_kind(tmp_path / "c.txt")
    with pytest.raises(VoxudaInputError, match="missing.mrc: file not found"):
        input_kind(tmp_path / "missing.mrc")


def test_a_datasets_lost_voxel_size_is_refused_from_its_attributes(tmp_path: Path) -> None:
    from tests.training.datasets import write_blobs
    from voxuda_cli.io.sources import check_voxel_sizes

    path = write_blobs(tmp_path / "lost.h5", n=1, voxel_size=0.0)
    with pytest.raises(VoxudaInputError, match="--input-voxel-size"):
        check_voxel_sizes([path])
    check_voxel_sizes([path], input_voxel_size=13.5)
    check_voxel_sizes([write_blobs(tmp_path / "ok.h5", n=1, voxel_size=10.0)])
