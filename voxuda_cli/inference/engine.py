"""The inference engine: a window plan, a network function and an output grid, composed.

``run_tiles`` walks a :class:`~voxuda_cli.inference.plan.TilePlan` band by band in z: it reads
each window from the volume (a memory map is fine), batches windows of the band, calls the
network function, writes each window's core into the grid, then tells the grid and the reader
that the band's rows are done (their pages go back to the OS). Every voxel is computed once.

``run_blended`` is the box-sized alternative (sliding_window.py: windows of the model box
overlapping by ``overlap``, blended with Gaussian weights, as MONAI's and nnU-Net's inferers do);
its finished rows land in the same grids.

The network function takes ``(B, d, h, w)`` raw windows and returns their probabilities
(network.py, with the normalisation bound); the grid is any of grids.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from voxuda_cli.inference.plan import Region, TilePlan
from voxuda_cli.inference.sliding_window import sliding_window

WindowFunction = Callable[[np.ndarray], np.ndarray]
Advance = Callable[[int], None]


class Grid(Protocol):
    def write(self, region: Region, values: np.ndarray) -> None: ...

    def rows_done(self, z0: int, z1: int) -> None: ...


def run_tiles(
    volume: np.ndarray,
    function: WindowFunction,
    plan: TilePlan,
    grid: Grid,
    batch_size: int,
    on_voxels: Advance | None = None,
    release_input: Callable[[int, int], None] | None = None,
) -> None:
    """Predict every tile of ``plan`` over ``volume`` into ``grid``; ``on_voxels(n)`` counts core voxels done.

    ``release_input(z0, z1)`` is called after every batch with the rows its windows read: a memory
    map's pages then go back to the OS at once (the next window of the band faults the few it
    shares back in from the page cache), so the input's resident share stays one batch of
    windows, not a band of rows (measured: 256x512x512 at width 8, a band was 144 MB of 256).
    """
    for band in plan.rows():
        rows = band[0].window[0]
        for first in range(0, len(band), batch_size):
            tiles = band[first : first + batch_size]
            windows = np.stack([_read(volume, t.window, plan.edges) for t in tiles])
            if release_input is not None:
                release_input(rows.start, min(rows.stop, int(volume.shape[0])))
            probabilities = function(windows)
            for tile, window in zip(tiles, probabilities):
                grid.write(tile.core, window[tile.core_in_window])
            if on_voxels is not None:
                on_voxels(sum(_voxels(t.core) for t in tiles))
        z = band[0].core[0]
        grid.rows_done(z.start, z.stop)


def run_blended(
    volume: np.ndarray,
    function: WindowFunction,
    box: Sequence[int],
    overlap: float,
    grid: Grid,
    batch_size: int,
    on_voxels: Advance | None = None,
    release_input: Callable[[int], None] | None = None,
) -> None:
    """Box-sized windows blended with Gaussian weights (sliding_window.py), finished rows into ``grid``."""
    section = int(np.prod(volume.shape[1:]))

    def emit(z0: int, rows: np.ndarray) -> None:
        z1 = z0 + rows.shape[0]
        grid.write((slice(z0, z1), slice(None), slice(None)), rows)
        grid.rows_done(z0, z1)
        if on_voxels is not None:
            on_voxels(rows.shape[0] * section)

    sliding_window(volume, function, box, overlap, batch_size, emit, None, release_input)


def _read(volume: np.ndarray, window: Region, edges: Sequence[int]) -> np.ndarray:
    """One window as float32; where it reaches past the volume (an axis shorter than a window), edge-padded."""
    data = np.asarray(volume[window], dtype=np.float32)
    pad = [(0, int(e) - n) for n, e in zip(data.shape, edges)]
    return np.pad(data, pad, mode="edge") if any(p[1] for p in pad) else data


def _voxels(region: Region) -> int:
    return int(np.prod([s.stop - s.start for s in region]))
