"""Shared fixtures: tiny volumes and datasets, and a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def runner():  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    return CliRunner()


def sphere(box: int = 32, radius: float = 8.0, center: tuple[float, float, float] | None = None) -> np.ndarray:
    """A binary ball in a cube (uint8)."""
    center = center or ((box - 1) / 2,) * 3
    grid = np.indices((box,) * 3, dtype=np.float32)
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, center)))
    return (distance <= radius).astype(np.uint8)


@pytest.fixture
def tiny_dataset(tmp_path: Path, rng: np.random.Generator) -> Path:
    """Six noisy 32^3 spheres with masks and two classes, as an HDF5 dataset."""
    from voxuda_cli.io.dataset import Dataset, write_dataset

    masks = np.stack([sphere(32, 5 + i) for i in range(6)])
    images = masks.astype(np.float32) + rng.normal(0, 0.5, masks.shape).astype(np.float32)
    dataset = Dataset(
        images=images,
        names=[f"s{i}" for i in range(6)],
        voxel_size=10.0,
        masks=masks,
        classes=["a", "a", "a", "b", "b", "b"],
    )
    path = tmp_path / "tiny.h5"
    write_dataset(path, dataset)
    return path
