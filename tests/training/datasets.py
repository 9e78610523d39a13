"""Tiny training data for the training and train-CLI tests: noisy 32^3 blobs with masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from voxuda_cli.io.dataset import Dataset, write_dataset


def blobs(n: int, noise: float, seed: int, box: int = 32, voxel_size: float = 10.0, masks: bool = True) -> Dataset:
    """``n`` random balls (radius 5-8) in Gaussian noise; ``masks`` keeps their binary masks."""
    rng = np.random.default_rng(seed)
    grid = np.indices((box,) * 3, dtype=np.float32)
    labels = []
    for _ in range(n):
        center = rng.uniform(box * 0.35, box * 0.65, 3)
        radius = rng.uniform(5, 8)
        distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, center)))
        labels.append((distance <= radius).astype(np.uint8))
    stacked = np.stack(labels)
    images = (stacked + rng.normal(0, noise, stacked.shape)).astype(np.float32)
    return Dataset(
        images=images,
        names=[f"blob{i}" for i in range(n)],
        voxel_size=voxel_size,
        masks=stacked if masks else None,
    )


def write_blobs(path: Path, n: int = 4, noise: float = 0.5, seed: int = 0, **kwargs: object) -> Path:
    write_dataset(path, blobs(n, noise, seed, **kwargs))  # type: ignore[arg-type]
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to show a failed command changed nothing)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
