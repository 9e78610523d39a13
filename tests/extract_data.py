"""A synthetic tomogram at 13.5 A with bright blobs at known voxels, and the same picks in every format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from voxuda_cli.io import Volume, write_mrc

VOXEL = 13.5
SHAPE = (48, 64, 72)  # z, y, x
ORIGIN = (27.0, -40.5, 135.0)
# (z, y, x) voxel centres; the last two reach past the border with a 32^3 box at 10 A
BLOBS = [(24, 30, 36), (14, 16, 20), (33, 47, 52), (20, 40, 56), (3, 10, 40), (44, 58, 68)]


def blob_tomogram(path: Path, blobs=BLOBS, shape=SHAPE, voxel=VOXEL, sigma=1.6, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    data = rng.normal(0, 0.05, shape).astype(np.float32)
    for centre in blobs:
        data += np.exp(-sum((g - c) ** 2 for g, c in zip(grid, centre)) / (2 * sigma**2)).astype(np.float32)
    write_mrc(path, Volume(data, voxel_size=voxel, origin=ORIGIN))
    return path


def relion4_frame(name: str, blobs=BLOBS) -> pd.DataFrame:
    zyx = np.asarray(blobs, dtype=float)
    return pd.DataFrame(
        {"rlnTomoName": name, "rlnCoordinateX": zyx[:, 2], "rlnCoordinateY": zyx[:, 1], "rlnCoordinateZ": zyx[:, 0]}
    )


def relion5_frame(name: str, blobs=BLOBS, centre: str = "half") -> pd.DataFrame:
    zyx = np.asarray(blobs, dtype=float)
    middle = np.array(SHAPE, dtype=float) / 2 - (1.0 if centre == "half-minus-one" else 0.0)
    angst = (zyx - middle) * VOXEL
    return pd.DataFrame(
        {
            "rlnTomoName": name,
            "rlnCenteredCoordinateXAngst": angst[:, 2],
            "rlnCenteredCoordinateYAngst": angst[:, 1],
            "rlnCenteredCoordinateZAngst": angst[:, 0],
        }
    )


def star_by_hand(path: Path, frame: pd.DataFrame) -> Path:
    """A STAR file written the way RELION writes one (data_particles, loop_, #N column numbers)."""
    lines = ["", "# version 50001", "", "data_particles", "", "loop_"]
    lines += [f"_{column} #{index + 1}" for index, column in enumerate(frame.columns)]
    for row in frame.itertuples(index=False):
        lines.append("  ".join(f"{v:.6f}" if isinstance(v, float) else str(v) for v in row))
    path.write_text("\n".join(lines) + "\n")
    return path
