"""Sliding-window inference over a volume of any size, in memory bounded by one slab of windows.

Windows of the model box are placed as MONAI's ``sliding_window_inference`` places them: a step
of ``int(box * (1 - overlap))`` from 0, plus one window flush with the far border. Each window's
probabilities are weighted by a Gaussian importance map (sigma = box / 8, floored at 1e-3, as
MONAI's ``mode="gaussian"`` and nnU-Net), summed, and divided by the summed weights.

Memory: windows are processed one z-row at a time (all windows sharing a z start). Only the
input rows of that row and two accumulators of ``box_z x H x W`` are held; rows no later window
can touch are finished, handed to ``emit`` (e.g. written into an output memory map) and dropped.
Memory thus grows with the section (H x W), not with the depth: on a 96x1024x1024 tomogram (with
a no-cost network, to see the engine alone) the peak was ~600 MB above baseline, which by
construction stays the same at 512 deep, where the tomogram itself is 2 GB in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from voxuda_cli.patches import patch_starts

GAUSSIAN_SIGMA_SCALE = 0.125  # sigma = box / 8 (nnU-Net, MONAI)
MIN_WEIGHT = 1e-3  # MONAI's floor: every voxel of a window keeps some say at the window's corners

Box = tuple[int, int, int]
PredictWindows = Callable[[np.ndarray], np.ndarray]  # (B, *box) raw windows -> (B, *box) probabilities


def window_step(edge: int, overlap: float) -> int:
    """Step between window starts along an axis (MONAI's rule, at least 1 voxel)."""
    return max(int(edge * (1.0 - overlap)), 1)


def window_starts(length: int, edge: int, overlap: float) -> list[int]:
    """Window starts along one axis: regular steps from 0, the last window flush with the border."""
    if length < edge:
        raise ValueError(f"axis of {length} voxels is shorter than the window ({edge})")
    return patch_starts(length, edge, window_step(edge, overlap))


def importance_map(box: Sequence[int], sigma_scale: float = GAUSSIAN_SIGMA_SCALE) -> np.ndarray:
    """Gaussian weights over a window: a product of 1D Gaussians centred on the window, max ~1."""
    weights = np.ones((), dtype=np.float64)
    for edge in box:
        x = np.arange(edge, dtype=np.float64) - (edge - 1) / 2.0
        profile = np.exp(-(x**2) / (2.0 * (sigma_scale * edge) ** 2))
        weights = np.multiply.outer(weights, profile)
    return np.maximum(weights, max(float(weights.min()), MIN_WEIGHT)).astype(np.float32)


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows go in a volume of ``shape``."""

    shape: Box
    box: Box
    starts: tuple[list[int], list[int], list[int]]

    @classmethod
    def make(cls, shape: Sequence[int], box: Sequence[int], overlap: float) -> WindowPlan:
        shape3 = tuple(int(n) for n in shape)
        box3 = tuple(int(b) for b in box)
        starts = tuple(window_starts(n, b, overlap) for n, b in zip(shape3, box3))
        return cls(shape3, box3, starts)  # type: ignore[arg-type]  # a 3D shape: mypy cannot count a generator's tuple

    @property
    def n_windows(self) -> int:
        return len(self.starts[0]) * len(self.starts[1]) * len(self.starts[2])

    @property
    def windows_per_row(self) -> int:
        return len(self.starts[1]) * len(self.starts[2])

    @property
    def edges(self) -> Box:
        """The window edge per axis (as plan.TilePlan's)."""
        return self.box

    @property
    def computed_voxels(self) -> int:
        """Voxels the network computes (windows x window size): over the volume's, the redundancy."""
        return self.n_windows * int(np.prod(self.box))


def sliding_window(
    volume: np.ndarray,
    predict: PredictWindows,
    box: Sequence[int],
    overlap: float,
    batch_size: int,
    emit: Callable[[int, np.ndarray], None],
    on_windows: Callable[[int], None] | None = None,
    release: Callable[[int], None] | None = None,
) -> WindowPlan:
    """Blend window predictions over ``volume`` (D, H, W; a memory map is fine), z-rows in order.

    ``emit(z0, rows)`` receives finished float32 rows ``z0 .. z0 + len(rows)`` exactly once each,
    in order; ``rows`` is a view of a reused buffer, valid only during the call (copy to keep it).
    ``release(z)`` says no input row below ``z`` will be read again. Every axis must be at least
    the box.
    """
    plan = WindowPlan.make(volume.shape, box, overlap)
    bz, by, bx = plan.box
    depth, height, width = plan.shape
    weights = importance_map(plan.box)
    numerator = np.zeros((bz, height, width), dtype=np.float32)
    denominator = np.zeros((bz, height, width), dtype=np.float32)
    row_windows = [(y, x) for y in plan.starts[1] for x in plan.starts[2]]
    z_starts = plan.starts[0]
    for index, z0 in enumerate(z_starts):
        slab = np.asarray(volume[z0 : z0 + bz], dtype=np.float32)
        for first in range(0, len(row_windows), batch_size):
            batch = row_windows[first : first + batch_size]
            windows = np.stack([slab[:, y : y + by, x : x + bx] for y, x in batch])
            probabilities = predict(windows)
            for (y, x), window in zip(batch, probabilities):
                numerator[:, y : y + by, x : x + bx] += window * weights
                denominator[:, y : y + by, x : x + bx] += weights
            if on_windows is not None:
                on_windows(len(batch))
        z_next = z_starts[index + 1] if index + 1 < len(z_starts) else depth
        done = z_next - z0
        finished = numerator[:done]
        finished /= denominator[:done]  # in place: no third slab-sized buffer
        emit(z0, finished)
        if release is not None:
            release(z_next)
        # Slide the accumulators down to start at the next row's z.
        numerator[: bz - done] = numerator[done:]
        numerator[bz - done :] = 0.0
        denominator[: bz - done] = denominator[done:]
        denominator[bz - done :] = 0.0
    return plan


def sliding_window_array(
    volume: np.ndarray,
    predict: PredictWindows,
    box: Sequence[int],
    overlap: float,
    batch_size: int,
    on_windows: Callable[[int], None] | None = None,
) -> np.ndarray:
    """:func:`sliding_window` into an in-memory float32 array of the volume's shape."""
    out = np.empty(tuple(volume.shape), dtype=np.float32)

    def store(z0: int, rows: np.ndarray) -> None:
        out[z0 : z0 + rows.shape[0]] = rows

    sliding_window(volume, predict, box, overlap, batch_size, store, on_windows)
    return out
