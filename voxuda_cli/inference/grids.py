"""Output grids: where predicted probabilities land, and the one place they become masks.

The engine (engine.py) and every other producer (resampled tomograms streaming back onto their
input's grid, boxes pasted back into their tomograms) hand probabilities of a region to a grid's
``write(region, values)`` and say when rows below a z are final (``rows_done``). Two grids:

- :class:`MemoryGrid`: a float32 array of probabilities (volumes in memory, stitched patches).
- :class:`MrcGrid`: memory-mapped MRC outputs on the input's geometry: an int8 mask thresholded
  as it is written, and with ``probabilities_path`` the float32 probability; ``combine="max"``
  unites overlapping writes (pasted boxes: union of masks, maximum of probabilities) where
  ``"replace"`` overwrites. On ``close`` the ``min_size`` components are removed (chunked, one
  slab in memory) and the files are renamed into place (io.mrc); pages already written are given
  back to the OS as rows finish, so a tomogram larger than memory streams through.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from voxuda_cli.inference.components import remove_small_components_chunked
from voxuda_cli.io.memory import release_rows
from voxuda_cli.io.mrc import create_mrc_memmap
from voxuda_cli.io.volume import Volume

Region = tuple[slice, ...]
COMBINES = ("replace", "max")


class MemoryGrid:
    """Probabilities of a volume held in memory."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.probabilities = np.zeros(self.shape, dtype=np.float32)

    def write(self, region: Region, values: np.ndarray) -> None:
        self.probabilities[region] = values

    def rows_done(self, z0: int, z1: int) -> None:
        """Nothing to give back: the array is the result."""


class MrcGrid(contextlib.AbstractContextManager["MrcGrid"]):
    """An MRC mask (and probability) map on ``like``'s voxel size and origin, thresholded on write."""

    def __init__(
        self,
        mask_path: Path,
        shape: tuple[int, ...],
        like: Volume,
        threshold: float,
        probabilities_path: Path | None = None,
        min_size: int = 0,
        label: str | None = None,
        combine: str = "replace",
    ) -> None:
        if combine not in COMBINES:
            raise ValueError(f"combine {combine!r}: one of {COMBINES}")
        self.shape = tuple(int(n) for n in shape)
        self.threshold, self.min_size, self.combine = float(threshold), int(min_size), combine
        self.paths = [str(mask_path)] + ([str(probabilities_path)] if probabilities_path is not None else [])
        self.foreground = 0  # voxels marked when written (before min-size; exact for "replace")
        self.removed = 0
        self.middle = self.shape[0] // 2
        self.preview: dict[str, np.ndarray] = {}
        self._stack = contextlib.ExitStack()
        self.mask = self._stack.enter_context(
            create_mrc_memmap(mask_path, self.shape, like, np.int8, label, after_chunk=release_rows)
        )
        self.probability: np.ndarray | None = None
        if probabilities_path is not None:
            self.probability = self._stack.enter_context(
                create_mrc_memmap(probabilities_path, self.shape, like, np.float32, label, after_chunk=release_rows)
            )

    def write(self, region: Region, values: np.ndarray) -> None:
        marked = values > self.threshold
        if self.combine == "max":
            marked = marked | (self.mask[region] > 0)
        else:
            self.foreground += int(marked.sum())
        self.mask[region] = marked
        if self.probability is not None:
            if self.combine == "max":
                values = np.maximum(self.probability[region], values)
            self.probability[region] = values
        z0, z1, _ = region[0].indices(self.shape[0])
        if z0 <= self.middle < z1:
            self._keep_preview(region, values)

    def _keep_preview(self, region: Region, values: np.ndarray) -> None:
        """The central z-slice of the probability, for --preview (filled region by region)."""
        plane = self.preview.setdefault("probability", np.zeros((1, *self.shape[1:]), np.float32))
        z0 = region[0].indices(self.shape[0])[0]
        plane[(0, region[1], region[2])] = values[self.middle - z0]

    def rows_done(self, z0: int, z1: int) -> None:
        release_rows(self.mask, z0, z1)
        if self.probability is not None:
            release_rows(self.probability, z0, z1)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> Any:
        if kind is None:
            if self.min_size > 1:
                self.removed = remove_small_components_chunked(
                    self.mask, self.min_size, release=lambda a, b: release_rows(self.mask, a, b)
                )
            if self.combine == "max":
                self.foreground = int(
                    sum(int((np.asarray(self.mask[z : z + 16]) > 0).sum()) for z in range(0, self.shape[0], 16))
                )
            else:
                self.foreground -= self.removed
            self.preview["mask"] = np.array(self.mask[self.middle], dtype=np.uint8)[None]
        return self._stack.__exit__(kind, error, traceback)

    @property
    def foreground_fraction(self) -> float:
        return self.foreground / max(math.prod(self.shape), 1)
