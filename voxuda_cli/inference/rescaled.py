"""Pixel-size-aware inference: inputs at another voxel size are predicted on the model's grid.

A network sees structures at the scale it was trained on. Where an input's voxel size differs
from the model's by more than 1 % (``resample.RELATIVE_TOLERANCE``), it is Fourier-resampled to
the model's voxel size, predicted, and the foreground probability is Fourier-resampled back
(the exact inverse grid map, then clipped to [0, 1]); masks are thresholded on the input's grid,
so outputs keep the input's shape, voxel size and origin.

- Samples of a dataset: each is resampled to ``round(box * v / v_model)`` voxels per axis;
  smaller than the model box it is padded (edge) to the box, larger it is predicted by sliding
  windows. Pseudo-labels instead fit the resampled sample to the box (centre crop or pad), the
  way the teacher sees target boxes in training; voxels cropped away get no pseudo-label.
- Whole tomograms: resampled into a scratch MRC next to the output (streamed, two slabs of
  memory, ``resample.resample_tomogram``), predicted with the usual streamed sliding windows,
  and the probability streamed back onto the input's grid.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from voxuda_cli.inference.components import remove_small_components_chunked
from voxuda_cli.io.memory import release_rows
from voxuda_cli.io.mrc import create_mrc_memmap, read_mrc
from voxuda_cli.io.volume import Volume
from voxuda_cli.progress import Progress
from voxuda_cli.resample import fourier_resample, resample_to_map, resample_tomogram, resampled_shape

if TYPE_CHECKING:  # the predictor imports this module
    from voxuda_cli.inference.predictor import Predictor, TomogramPrediction


def model_shape(shape: Sequence[int], voxel_size: float | Sequence[float], model_voxel: float) -> tuple[int, int, int]:
    """The input's grid at the model's voxel size (per axis where the voxel size is given per axis)."""
    sizes = [float(v) for v in np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,))]
    return tuple(resampled_shape([n], v, model_voxel)[0] for n, v in zip(shape, sizes))  # type: ignore[return-value]


def _pad_to(volume: np.ndarray, box: Sequence[int]) -> tuple[np.ndarray, tuple[slice, ...]]:
    pad = [(0, max(0, int(b) - n)) for n, b in zip(volume.shape, box)]
    inside = tuple(slice(0, n) for n in volume.shape)
    return (np.pad(volume, pad, mode="edge") if any(p[1] for p in pad) else volume), inside


def back_to(probabilities: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Probabilities on the model's grid -> the input's grid (Fourier, clipped to [0, 1])."""
    return np.clip(fourier_resample(probabilities, shape), 0.0, 1.0).astype(np.float32)


def predict_samples(
    predictor: Predictor, images: np.ndarray, voxel_size: float, on_progress: Progress | None = None
) -> np.ndarray:
    """(N, *box) samples at ``voxel_size`` -> (N, *box) probabilities, predicted on the model's grid."""
    box = images.shape[1:]
    shape = model_shape(box, voxel_size, float(predictor.info.voxel_size))
    out = np.empty(images.shape, dtype=np.float32)
    fits = all(n <= b for n, b in zip(shape, predictor.box))
    step = predictor.settings.batch_size if fits else 1
    for start in range(0, images.shape[0], step):
        resampled = fourier_resample(images[start : start + step], shape)
        if fits:
            padded = np.stack([_pad_to(v, predictor.box)[0] for v in resampled])
            inside = (slice(None),) + _pad_to(resampled[0], predictor.box)[1]
            probabilities = predictor.predict_windows(padded)[inside]
        else:
            probabilities = predictor.predict_volume(resampled[0])[None]
        out[start : start + len(resampled)] = back_to(probabilities, box)
        if on_progress is not None:
            on_progress(len(resampled))
    return out


def fit_to_box(
    images: np.ndarray, voxel_size: float, model_voxel: float, box: Sequence[int]
) -> tuple[np.ndarray, tuple]:
    """Samples resampled to the model's voxel size, then centre-cropped or edge-padded to ``box``.

    Returns the fitted images and the geometry :func:`unfit` needs to undo it.
    """
    shape = model_shape(images.shape[1:], voxel_size, model_voxel)
    resampled = fourier_resample(images, shape)
    crop = tuple(slice(max(0, (n - b) // 2), max(0, (n - b) // 2) + min(n, b)) for n, b in zip(shape, box))
    cropped = resampled[(slice(None), *crop)]
    before = [max(0, (b - n) // 2) for n, b in zip(shape, box)]
    pad = [(0, 0)] + [(lo, int(b) - n - lo) if n < b else (0, 0) for lo, n, b in zip(before, shape, box)]
    fitted = np.pad(cropped, pad, mode="edge")
    inner = tuple(slice(lo, lo + min(n, b)) for lo, n, b in zip(before, shape, box))
    return fitted, (shape, crop, inner)


def unfit(values: np.ndarray, geometry: tuple, shape: Sequence[int], fill: float) -> np.ndarray:
    """Undo :func:`fit_to_box` on per-voxel values (N, *box): outside the crop gets ``fill``."""
    model_grid, crop, inner = geometry
    full = np.full((values.shape[0], *model_grid), fill, dtype=np.float32)
    full[(slice(None), *crop)] = values[(slice(None), *inner)]
    return np.clip(fourier_resample(full, shape), 0.0, 1.0).astype(np.float32)


def predict_tomogram_rescaled(
    predictor: Predictor,
    input_path: Path,
    output_path: Path,
    probabilities_path: Path | None,
    voxel_size: tuple[float, float, float],
    on_progress: Progress | None = None,
    label: str | None = None,
) -> TomogramPrediction:
    """Resample a tomogram to the model's voxel size, predict it, and write masks on the input's grid."""
    started = time.perf_counter()
    volume = read_mrc(input_path, mmap=True, check=False)
    model_voxel = float(predictor.info.voxel_size)
    shape = model_shape(volume.shape, voxel_size, model_voxel)
    like = Volume(np.empty((0, 0, 0), np.float32), voxel_size, volume.origin, list(volume.labels))
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_path.parent, prefix=".voxuda-rescale-") as folder:
        scratch = Path(folder)
        resampled = scratch / "resampled.mrc"
        with create_mrc_memmap(resampled, shape, Volume(like.data, model_voxel, volume.origin)) as out:
            resample_to_map(volume.data, out, scratch)
        inner = predictor.with_settings(min_size=0, input_voxel_size=None)
        result = inner.predict_tomogram(resampled, scratch / "mask.mrc", scratch / "p.mrc", on_progress, label=label)
        probability = read_mrc(scratch / "p.mrc", mmap=True, check=False).data
        outputs = (output_path, probabilities_path)
        removed, foreground, preview = _write_back(predictor, probability, volume.shape, like, outputs, label, scratch)
    result.name, result.shape = input_path.stem, tuple(volume.shape)
    result.outputs = [str(output_path)] + ([str(probabilities_path)] if probabilities_path else [])
    result.removed_voxels = removed
    result.foreground_fraction = foreground / math.prod(volume.shape)
    result.seconds = time.perf_counter() - started
    middle = volume.shape[0] // 2
    result.preview["input"] = np.array(volume.data[middle], dtype=np.float32)[None]
    result.preview["probability"] = preview[None]
    result.preview["mask"] = np.array(read_mrc(output_path, mmap=True, check=False).data[middle], np.uint8)[None]
    return result


def _write_back(
    predictor: Predictor,
    probability: np.ndarray,
    shape: tuple[int, ...],
    like: Volume,
    outputs: tuple[Path, Path | None],
    label: str | None,
    scratch: Path,
) -> tuple[int, int, np.ndarray]:
    """Stream the model-grid probability back onto the input grid: mask (and probabilities) memory maps."""
    output_path, probabilities_path = outputs
    threshold = predictor.settings.threshold
    counts = {"foreground": 0}
    middle = shape[0] // 2
    preview = np.zeros(shape[1:], np.float32)  # the central z-slice of the probability, for --preview
    with contextlib.ExitStack() as stack:
        mask_map = stack.enter_context(create_mrc_memmap(output_path, shape, like, np.int8, label, release_rows))
        probability_map = None
        if probabilities_path is not None:
            probability_map = stack.enter_context(
                create_mrc_memmap(probabilities_path, shape, like, np.float32, label, release_rows)
            )

        def emit(y0: int, y1: int, block: np.ndarray) -> None:
            block = np.clip(block, 0.0, 1.0)
            mask = block > threshold
            mask_map[:, y0:y1] = mask
            counts["foreground"] += int(mask.sum())
            preview[y0:y1] = block[middle]
            release_rows(mask_map, 0, shape[0])  # a y-slab touches pages of every z-row
            if probability_map is not None:
                probability_map[:, y0:y1] = block
                release_rows(probability_map, 0, shape[0])

        resample_tomogram(probability, shape, emit, scratch)
        removed = 0
        if predictor.settings.min_size > 1:
            removed = remove_small_components_chunked(
                mask_map, predictor.settings.min_size, release=lambda a, b: release_rows(mask_map, a, b)
            )
    return removed, counts["foreground"] - removed, preview
