"""Resample volumes to a new grid or voxel size: images by Fourier cropping/padding (boxes in memory,
whole tomograms streamed), masks and probabilities of patches linearly.

One library does the Fourier numerics: ``torch-fourier-rescale`` (teamtomo), which crops or pads
the real-to-complex spectrum. Measured against the complex-FFT numpy version this project had (and
``scipy.signal.resample``) on a Gaussian blob, 40^3 at 13.5 A <-> 54^3 at 10 A, one thread: all
agree with the analytic blob to 1e-5, and torch-fourier-rescale took 1.7-4.2 ms per box against
6.8-12.7 ms in two runs on a shared 2-core machine (``python benchmarks/bench_resample.py`` reruns
it); hence it is the one used here.

Grid convention: voxel 0 stays in place, so output index ``j`` samples the input at
``j * n / m`` (n input, m output voxels) and the origin (the position of voxel 0, as in an MRC
header) is unchanged. The library's own wrapper fftshifts the image first, which fixes the voxel
``ceil(n / 2)`` instead (the same for even sizes, half a voxel off for odd ones); here the
spectrum of the unshifted image is cropped or padded with the library's ``fourier_rescale_rfft_*``.
Resampling back to ``n`` is the exact inverse map.

Whole tomograms never sit in memory: a Fourier crop is separable, so the (y, x) planes are
resampled z-slab by z-slab into a scratch file, then z is resampled y-slab by y-slab.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from voxuda_cli.io.memory import release_rows
from voxuda_cli.io.volume import Volume, checked_voxel_size  # noqa: F401 (re-exported)

SLAB_BYTES = 16 * 2**20  # one streamed slab (input and output float32); 16 MB measured leaner and faster than 64
RELATIVE_TOLERANCE = 0.01  # voxel sizes closer than 1 % are treated as equal (no resampling)

EmitFn = Callable[[int, int, np.ndarray], None]  # (y0, y1, block of shape (D', y1 - y0, W'))


def differs(voxel_size: float, reference: float, tolerance: float = RELATIVE_TOLERANCE) -> bool:
    """Whether two voxel sizes differ by more than ``tolerance`` (relative to ``reference``)."""
    return abs(voxel_size - reference) > tolerance * reference


def resampled_shape(shape: Sequence[int], voxel_size: float, target: float) -> tuple[int, ...]:
    """Grid of the same physical extent at voxel size ``target`` (at least one voxel per axis)."""
    return tuple(max(1, round(int(n) * voxel_size / target)) for n in shape)


def fourier_resample(data: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resample one volume, or a batch (..., D, H, W), to ``shape`` (float32, mean preserved, voxel 0 fixed)."""
    import torch  # here, not at import: the CLI starts without torch

    array = np.ascontiguousarray(data, dtype=np.float32)
    if tuple(array.shape[-3:]) == tuple(shape):
        return array.copy()
    return _rescale_last(torch.from_numpy(array), tuple(int(s) for s in shape)).numpy()


def _rescale_last(x: Any, shape: tuple[int, ...]) -> Any:
    """Fourier crop/pad of the last ``len(shape)`` (2 or 3) axes of a tensor to ``shape``."""
    import torch
    from torch_fourier_rescale import fourier_rescale_rfft_2d, fourier_rescale_rfft_3d

    dims = tuple(range(-len(shape), 0))
    source = tuple(int(n) for n in x.shape[-len(shape) :])
    dft = torch.fft.fftshift(torch.fft.rfftn(x, dim=dims), dim=dims[:-1])
    rescale = fourier_rescale_rfft_3d if len(shape) == 3 else fourier_rescale_rfft_2d
    dft = torch.fft.ifftshift(rescale(dft, image_shape=source, target_shape=shape), dim=dims[:-1])
    # norm="forward" leaves out the inverse's 1/m; dividing by the input's size keeps the mean
    return torch.fft.irfftn(dft, s=shape, dim=dims, norm="forward") / float(np.prod(source))


def resize_volume(volume: Volume, shape: Sequence[int]) -> Volume:
    """Resample a volume to ``shape``; voxel sizes scale so the physical extent is unchanged."""
    data = fourier_resample(np.asarray(volume.data), shape)
    vz, vy, vx = (v * old / new for v, old, new in zip(volume.voxel_size, volume.shape, shape))
    return Volume(data=data, voxel_size=(vz, vy, vx), origin=volume.origin, labels=list(volume.labels))


def resize_mask(mask: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resample a binary mask (linear interpolation of the 0/1 field, then >= 0.5)."""
    factors = [new / old for new, old in zip(shape, mask.shape)]
    resampled = ndimage.zoom(mask.astype(np.float32), factors, order=1, mode="nearest", grid_mode=True)
    return (resampled >= 0.5).astype(np.uint8)


def resample_probabilities(probabilities: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Linear resampling of a probability map to ``shape`` (the grid convention of resize_mask)."""
    factors = [new / old for new, old in zip(shape, probabilities.shape)]
    resampled = ndimage.zoom(probabilities.astype(np.float32), factors, order=1, mode="nearest", grid_mode=True)
    return np.clip(resampled, 0.0, 1.0).astype(np.float32)


def matched_sizes(box: int, ratio: float, margin: int, tolerance: float = 1e-3) -> tuple[int, int]:
    """Even ``(n_source, n_out)`` with ``n_source / n_out`` close to ``ratio`` and ``n_out >= box + 2 margin``.

    ``ratio`` is target voxel size / source voxel size. The smallest pair within ``tolerance``
    (relative) is taken, else the best up to 3x the box; the margin absorbs the ringing a
    non-periodic crop makes at its faces before the box is cut from the middle.
    """
    best: tuple[float, int, int] | None = None
    for n_out in range(box + 2 * margin, 3 * box + 2 * margin + 1, 2):
        n_source = max(2, 2 * round(n_out * ratio / 2))
        error = abs(n_source / n_out - ratio) / ratio
        if best is None or error < best[0]:
            best = (error, n_source, n_out)
        if error <= tolerance:
            break
    assert best is not None
    return best[1], best[2]


def _rows_per_slab(row_elements: int) -> int:
    return max(1, SLAB_BYTES // max(1, 8 * row_elements))


def resample_tomogram(data: np.ndarray, shape: Sequence[int], emit: EmitFn, scratch: Path | None = None) -> None:
    """Stream a (memory-mapped) (D, H, W) volume to ``shape``; ``emit(y0, y1, block)`` receives the output.

    Pass 1 resamples (y, x) z-slab by z-slab into a float32 scratch file (in ``scratch``, else the
    system's temporary folder); pass 2 resamples z y-slab by y-slab. Memory: about two slabs.
    The scratch file is written and read with plain file I/O, not a memory map: a y-slab touches
    every plane, and page faults on a map read ahead (megabytes per fault) into the process.
    """
    import torch

    depth, height, width = (int(n) for n in data.shape)
    new_d, new_h, new_w = (int(n) for n in shape)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=".voxuda-resample-") as folder:
        planes = Path(folder) / "planes.f32"
        step = _rows_per_slab(height * width + new_h * new_w)
        with planes.open("wb") as handle:
            for z0 in range(0, depth, step):
                slab = torch.from_numpy(np.array(data[z0 : z0 + step], dtype=np.float32))
                if (new_h, new_w) != (height, width):
                    slab = _rescale_last(slab, (new_h, new_w))
                handle.write(np.ascontiguousarray(slab.numpy(), dtype=np.float32).tobytes())
                release_rows(data, z0, z0 + step)
        step = _rows_per_slab((depth + new_d) * new_w)
        fd = os.open(planes, os.O_RDONLY)
        try:
            for y0 in range(0, new_h, step):
                y1 = min(y0 + step, new_h)
                block = _read_rows(fd, depth, new_h, new_w, y0, y1)
                if new_d != depth:
                    block = _rescale_last(torch.from_numpy(block), (new_d, new_w)).numpy()
                emit(y0, y1, block.transpose(1, 0, 2))
        finally:
            os.close(fd)


def _read_rows(fd: int, depth: int, height: int, width: int, y0: int, y1: int) -> np.ndarray:
    """Rows ``y0:y1`` of every plane of a raw (depth, height, width) float32 file, as (y1 - y0, depth, width)."""
    block = np.empty((y1 - y0, depth, width), dtype=np.float32)
    plane = np.empty((y1 - y0, width), dtype=np.float32)
    for z in range(depth):
        os.preadv(fd, [memoryview(plane).cast("B")], 4 * (z * height + y0) * width)  # type: ignore[arg-type]  # numpy arrays are buffers; its stubs do not say so
        block[:, z] = plane
    return block


def resample_to_map(data: np.ndarray, out: np.ndarray, scratch: Path | None = None) -> None:
    """:func:`resample_tomogram` into a writable (memory-mapped) array of the output shape."""

    def write(y0: int, y1: int, block: np.ndarray) -> None:
        out[:, y0:y1] = block
        release_rows(out, 0, out.shape[0])  # a y-slab touches pages of every z-row: flush and drop them

    resample_tomogram(data, out.shape, write, scratch)


# ---- model-grid geometry: inputs at another voxel size on a model's grid, and back -------------


def model_shape(shape: Sequence[int], voxel_size: float | Sequence[float], model_voxel: float) -> tuple[int, int, int]:
    """The input's grid at the model's voxel size (per axis where the voxel size is given per axis)."""
    sizes = [float(v) for v in np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,))]
    return tuple(resampled_shape([n], v, model_voxel)[0] for n, v in zip(shape, sizes))  # type: ignore[return-value]  # a 3D shape: mypy cannot count a generator's tuple


def pad_to(volume: np.ndarray, box: Sequence[int]) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Edge-pad a volume up to ``box`` on the far side; returns it and the slices of the original."""
    pad = [(0, max(0, int(b) - n)) for n, b in zip(volume.shape, box)]
    inside = tuple(slice(0, n) for n in volume.shape)
    return (np.pad(volume, pad, mode="edge") if any(p[1] for p in pad) else volume), inside


def back_to(probabilities: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Probabilities on the model's grid -> the input's grid (Fourier, clipped to [0, 1])."""
    return np.clip(fourier_resample(probabilities, shape), 0.0, 1.0).astype(np.float32)


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
