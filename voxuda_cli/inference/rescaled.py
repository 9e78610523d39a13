"""Pixel-size-aware inference: a wrapper that puts inputs on the model's grid and results back on theirs.

A network sees structures at the scale it was trained on. Where an input's voxel size differs
from the model's by more than 1 % (``resample.RELATIVE_TOLERANCE``), it is Fourier-resampled to
the model's voxel size, predicted, and the foreground probability is Fourier-resampled back
(the exact inverse grid map, then clipped to [0, 1]); masks are thresholded on the input's grid,
so outputs keep the input's shape, voxel size and origin. The geometry (``model_shape``,
``fit_to_box``, ``back_to``) lives in resample.py; this module only wraps a prediction function
given to it, so it imports no other part of inference but the output grids.

- Samples of a dataset: each is resampled to ``round(box * v / v_model)`` voxels per axis;
  smaller than the model box it is padded (edge) to the box, larger it is predicted whole
  (the engine). Pseudo-labels instead fit the resampled sample to the box (centre crop or pad),
  the way the teacher sees target boxes in training; voxels cropped away get no pseudo-label.
- Whole tomograms: resampled into a scratch MRC next to the output (streamed, two slabs of
  memory, ``resample.resample_tomogram``), predicted by the engine into a scratch probability
  map, and the probability streamed back onto the input's grid into the output grid.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from voxuda_cli.inference.grids import MrcGrid
from voxuda_cli.io.mrc import create_mrc_memmap, read_mrc
from voxuda_cli.io.volume import Volume
from voxuda_cli.progress import Progress
from voxuda_cli.resample import back_to, fourier_resample, model_shape, pad_to, resample_to_map, resample_tomogram


class ModelGrid(Protocol):
    """What resampled samples need of a predictor: its box, voxel size, and two ways to predict."""

    @property
    def box(self) -> tuple[int, int, int]: ...

    @property
    def model_voxel_size(self) -> float: ...

    @property
    def batch_size(self) -> int: ...

    def predict_windows(self, windows: np.ndarray) -> np.ndarray: ...

    def predict_volume(self, volume: np.ndarray) -> np.ndarray: ...


def predict_samples(
    model: ModelGrid, images: np.ndarray, voxel_size: float, on_progress: Progress | None = None
) -> np.ndarray:
    """(N, *box) samples at ``voxel_size`` -> (N, *box) probabilities, predicted on the model's grid."""
    box = images.shape[1:]
    shape = model_shape(box, voxel_size, model.model_voxel_size)
    out = np.empty(images.shape, dtype=np.float32)
    fits = all(n <= b for n, b in zip(shape, model.box))
    step = model.batch_size if fits else 1
    for start in range(0, images.shape[0], step):
        resampled = fourier_resample(images[start : start + step], shape)
        if fits:
            padded = np.stack([pad_to(v, model.box)[0] for v in resampled])
            inside = (slice(None),) + pad_to(resampled[0], model.box)[1]
            probabilities = model.predict_windows(padded)[inside]
        else:
            probabilities = model.predict_volume(resampled[0])[None]
        out[start : start + len(resampled)] = back_to(probabilities, box)
        if on_progress is not None:
            on_progress(len(resampled))
    return out


PredictInto = Callable[[np.ndarray, MrcGrid, Progress | None], None]


def predict_tomogram_rescaled(
    volume: Volume,
    model_voxel: float,
    predict: PredictInto,
    output: Callable[[], MrcGrid],
    on_progress: Progress | None = None,
) -> MrcGrid:
    """A tomogram (memory-mapped ``volume``) predicted on the model's grid, written by ``output()`` on its own.

    ``predict(data, grid, progress)`` runs the engine over the resampled data into a grid;
    ``output()`` opens the grid on the input's geometry (mask, probabilities, min-size). Returns
    that grid, closed. Scratch files live next to the first output and go when done.
    """
    shape = tuple(int(n) for n in volume.shape)
    grid_shape = model_shape(shape, volume.voxel_size, model_voxel)
    with (
        output() as written,
        tempfile.TemporaryDirectory(dir=Path(written.paths[0]).parent, prefix=".voxuda-rescale-") as folder,
    ):
        scratch = Path(folder)
        resampled = scratch / "resampled.mrc"
        with create_mrc_memmap(
            resampled, grid_shape, Volume(np.empty((0, 0, 0), np.float32), (model_voxel,) * 3)
        ) as out:
            resample_to_map(volume.data, out, scratch)
        data = read_mrc(resampled, mmap=True, check=False).data
        like = Volume(np.empty((0, 0, 0), np.float32), (model_voxel,) * 3)
        with MrcGrid(scratch / "mask.mrc", grid_shape, like, 0.5, scratch / "p.mrc") as on_model_grid:
            predict(data, on_model_grid, on_progress)
        probability = read_mrc(scratch / "p.mrc", mmap=True, check=False).data

        def emit(y0: int, y1: int, block: np.ndarray) -> None:
            written.write((slice(None), slice(y0, y1), slice(None)), np.clip(block, 0.0, 1.0))
            written.rows_done(0, shape[0])  # a y-slab touches pages of every z-row

        resample_tomogram(probability, shape, emit, scratch)
    return written
