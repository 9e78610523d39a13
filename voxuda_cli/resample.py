"""Resample volumes to a new grid: images by Fourier cropping/padding, masks and probabilities linearly."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from voxuda_cli.io.volume import Volume


def fourier_resample(data: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resample by cropping or zero-padding the spectrum: band-limited, no aliasing on downsampling."""
    data = np.asarray(data, dtype=np.float32)
    if tuple(data.shape) == tuple(shape):
        return data.copy()
    spectrum = np.fft.fftshift(np.fft.fftn(data))
    out = np.zeros(tuple(shape), dtype=np.complex128)
    src_slices, dst_slices = [], []
    for old, new in zip(data.shape, shape):
        keep = min(old, new)
        src_start = old // 2 - keep // 2
        dst_start = new // 2 - keep // 2
        src_slices.append(slice(src_start, src_start + keep))
        dst_slices.append(slice(dst_start, dst_start + keep))
    out[tuple(dst_slices)] = spectrum[tuple(src_slices)]
    scale = np.prod(shape) / np.prod(data.shape)
    return np.real(np.fft.ifftn(np.fft.ifftshift(out))).astype(np.float32) * np.float32(scale)


def resize_volume(volume: Volume, shape: Sequence[int]) -> Volume:
    """Resample a volume to ``shape``; voxel sizes scale so the physical extent is unchanged."""
    data = fourier_resample(np.asarray(volume.data), shape)
    voxel_size = tuple(v * old / new for v, old, new in zip(volume.voxel_size, volume.shape, shape))
    return Volume(data=data, voxel_size=voxel_size, origin=volume.origin, labels=list(volume.labels))


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
