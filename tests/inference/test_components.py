from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from voxuda_cli.inference.components import remove_small_components, remove_small_components_chunked


def _blobs(rng: np.random.Generator, shape: tuple[int, int, int] = (40, 24, 24)) -> np.ndarray:
    """Random blobs of many sizes, several reaching across any z-slab border."""
    noise = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    return (noise > 0.08).astype(np.uint8)


def test_removes_only_components_below_the_size(rng: np.random.Generator) -> None:
    mask = _blobs(rng)
    labels, count = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())[1:]
    cleaned = remove_small_components(mask, 30)
    assert count > 5 and (sizes < 30).any() and (sizes >= 30).any()
    for index, size in enumerate(sizes, start=1):
        assert (cleaned[labels == index] == (1 if size >= 30 else 0)).all()
    assert cleaned[mask == 0].sum() == 0


def test_off_and_empty() -> None:
    mask = np.zeros((8, 8, 8), np.uint8)
    mask[2, 2, 2] = 1
    assert np.array_equal(remove_small_components(mask, 0), mask)
    assert remove_small_components(np.zeros((4, 4, 4)), 10).sum() == 0


@pytest.mark.parametrize("slab", [1, 3, 7, 64])
def test_chunked_equals_in_memory(rng: np.random.Generator, slab: int) -> None:
    mask = _blobs(rng)
    expected = remove_small_components(mask, 40)
    work = mask.copy()
    removed = remove_small_components_chunked(work, 40, slab=slab)
    assert np.array_equal(work, expected)
    assert removed == int(mask.sum() - expected.sum())


def test_chunked_joins_a_component_spanning_every_slab() -> None:
    mask = np.zeros((12, 6, 6), np.uint8)
    mask[:, 2, 2] = 1  # 12 voxels in a line through all slabs of 2: kept at min size 12
    mask[5, 4, 4] = 1  # a single voxel: removed
    remove_small_components_chunked(mask, 12, slab=2)
    assert mask[:, 2, 2].all() and mask.sum() == 12


def test_chunked_on_a_writable_memory_map(tmp_path: Path, rng: np.random.Generator) -> None:
    mask = _blobs(rng)
    mapped = np.memmap(tmp_path / "mask.raw", dtype=np.int8, mode="w+", shape=mask.shape)
    mapped[:] = mask
    remove_small_components_chunked(mapped, 25, slab=5)
    mapped.flush()
    assert np.array_equal(np.asarray(mapped), remove_small_components(mask, 25).astype(np.int8))
