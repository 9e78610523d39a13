"""The one normalisation of voxuda: each volume z-scored on its own, as in training (METHOD.md).

Every stage calls these: patchify and the simulator (numpy), the training data (numpy), the noise
estimate and the denoisers on files (torch), the Predictor (torch, per window or with a whole
tomogram's statistics) and the streaming pass over tomograms too large for memory.
A constant volume becomes zeros (its std is taken as 1). ``invert`` flips contrast first, for raw
data whose protein is dark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.memory import release_rows

VOLUME_AXES = 3  # the last three axes are (D, H, W); anything before them counts volumes
_STREAM_ROWS = 8  # z-rows per read of the streaming pass


# local statistics (block means and stds) let z-scoring follow slow changes of the background (uneven ice)
STD_FLOOR = 0.25  # a block's std is at least this fraction of the volume's (constant borders stay finite)


@dataclass(frozen=True)
class LocalStats:
    """Mean and std of a volume over blocks (after any inversion).

    ``mean`` and ``std`` are (nz, ny, nx) fields, one value per block, valid at the block centres
    ``centres[axis]`` (voxel coordinates); :class:`LocallyNormalised` interpolates them linearly.
    """

    mean: np.ndarray
    std: np.ndarray
    centres: tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class VolumeStats:
    """Mean and std of a volume (after any inversion); std 0 is stored as 1. ``local``: the same over
    blocks where :func:`stream_stats` was asked for them (local z-scoring)."""

    mean: float
    std: float
    local: LocalStats | None = None

    def negated(self) -> VolumeStats:
        """The statistics of the negated volume (a contrast flip after the pass): no second pass."""
        local = self.local and LocalStats(-self.local.mean, self.local.std, self.local.centres)
        return VolumeStats(-self.mean, self.std, local)


def zscore(data: np.ndarray, invert: bool = False) -> np.ndarray:
    """Each (D, H, W) volume of ``data`` to mean 0, std 1, statistics in float64; float32 out."""
    values = np.asarray(data, dtype=np.float32)
    if invert:
        values = -values
    axes = tuple(range(values.ndim - VOLUME_AXES, values.ndim))
    mean = values.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = values.std(axis=axes, keepdims=True, dtype=np.float64)
    std[std == 0] = 1.0
    return ((values - mean) / std).astype(np.float32)


def tensor_stats(x: torch.Tensor, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-volume mean and std over the last three dims (keepdim), in ``dtype`` (default x's); std 0 -> 1."""
    values = x if dtype is None else x.to(dtype)
    dims = tuple(range(x.ndim - VOLUME_AXES, x.ndim))
    mean = values.mean(dim=dims, keepdim=True)
    std = values.std(dim=dims, keepdim=True, correction=0)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def zscore_tensor(
    x: torch.Tensor, invert: bool = False, stats: VolumeStats | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The torch twin of :func:`zscore`, on x's device and in x's dtype.

    ``stats`` (a whole tomogram's) replaces the per-volume statistics; ``dtype`` is the precision of
    the statistics (float64 where the inputs are small enough for it to be cheap).
    """
    values = -x if invert else x
    if stats is not None:
        return (values - stats.mean) / stats.std
    mean, std = tensor_stats(values, dtype)
    return ((values - mean) / std).to(x.dtype)


def stream_stats(
    data: np.ndarray,
    invert: bool = False,
    source: str | None = None,
    release: bool = False,
    block: int | None = None,
) -> VolumeStats:
    """Mean and std of a (memory-mapped) volume of any size, read slab by slab with float64 sums.

    ``source`` names the file for a NaN/Inf check on the way (a one-line error naming it);
    ``release`` gives each slab's pages back to the OS once read (bounded memory on big tomograms);
    ``block`` (voxels) also gives the block statistics of local z-scoring (``local``), from the same pass.
    """
    shape = [int(n) for n in data.shape]
    edges = [block or max(n, 1) for n in shape]  # without blocks, one block: the volume
    starts = [np.arange(0, n, edge) for n, edge in zip(shape, edges)]
    sums = np.zeros([len(s) for s in starts])
    squares = np.zeros_like(sums)
    for start in range(0, shape[0], _STREAM_ROWS):
        rows = np.asarray(data[start : start + _STREAM_ROWS])
        if source is not None and not np.isfinite(rows).all():
            raise VoxudaInputError(f"{source}: contains NaN or Inf values; clean or re-export the volume")
        for offset, row in enumerate(rows):  # float64 one z-slice at a time: exact sums, small temporaries
            row64, blocks = row.astype(np.float64), (start + offset) // edges[0]
            if block:
                sums[blocks] += _block_sums(row64, starts[1], starts[2])
                squares[blocks] += _block_sums(row64 * row64, starts[1], starts[2])
            else:  # one block: a sum and a dot product, 3x faster than the block sums
                flat = row64.ravel()
                sums[0, 0, 0] += flat.sum()
                squares[0, 0, 0] += np.dot(flat, flat)
        if release:
            release_rows(data, start, start + rows.shape[0])
    count = max(math.prod(shape), 1)
    mean = float(sums.sum()) / count
    std = float(np.sqrt(max(float(squares.sum()) / count - mean * mean, 0.0)))
    local = _local_stats(sums, squares, starts, shape, STD_FLOOR * std if std > 0 else 1.0) if block else None
    stats = VolumeStats(mean, std if std > 0 else 1.0, local)
    return stats.negated() if invert else stats


def _local_stats(
    sums: np.ndarray, squares: np.ndarray, starts: list[np.ndarray], shape: list[int], floor: float
) -> LocalStats:
    """Block means and stds from block sums, the stds at least ``floor``."""
    ends = [np.append(s[1:], n) for s, n in zip(starts, shape)]
    counts = np.einsum("i,j,k->ijk", *(e - s for s, e in zip(starts, ends)))
    mean = sums / counts
    std = np.maximum(np.sqrt(np.maximum(squares / counts - mean * mean, 0.0)), floor)
    return LocalStats(mean, std, tuple((s + e) / 2 - 0.5 for s, e in zip(starts, ends)))


def _block_sums(row: np.ndarray, y_starts: np.ndarray, x_starts: np.ndarray) -> np.ndarray:
    return np.add.reduceat(np.add.reduceat(row, y_starts, axis=0), x_starts, axis=1)


class LocallyNormalised:
    """A (memory-mapped) volume read through local z-scoring: each voxel less the local mean, over the
    local std, the fields of :class:`LocalStats` interpolated linearly between block centres (and held
    flat beyond the outer ones). Slicing it gives float32 arrays; nothing else is read."""

    def __init__(self, data: np.ndarray, stats: LocalStats, invert: bool = False) -> None:
        self.data, self.stats, self.invert = data, stats, invert
        self.shape = tuple(int(n) for n in data.shape)
        self._mean, self._std = (torch.from_numpy(f.astype(np.float32)) for f in (stats.mean, stats.std))

    def __getitem__(self, region: slice | tuple[slice, ...]) -> np.ndarray:
        region = region if isinstance(region, tuple) else (region,)
        region = tuple(region) + (slice(None),) * (3 - len(region))
        # a copy, normalised in place by torch (its elementwise passes use every core; numpy's one)
        raw = torch.from_numpy(np.array(self.data[region], dtype=np.float32))
        if self.invert:
            raw.neg_()
        weights = [
            torch.from_numpy(_linear_weights(np.arange(*r.indices(n)), centres))
            for r, n, centres in zip(region, self.shape, self.stats.centres)
        ]
        return raw.sub_(_interpolated(self._mean, weights)).div_(_interpolated(self._std, weights)).numpy()


def _interpolated(field: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """A (nz, ny, nx) block field on a (Z, Y, X) region: separable, the last and largest step one GEMM."""
    wz, wy, wx = weights
    values = torch.tensordot(field, wx, dims=([2], [1]))  # (nz, ny, X)
    values = torch.tensordot(values, wy, dims=([1], [1])).transpose(1, 2)  # (nz, Y, X)
    return (wz @ values.reshape(len(field), -1)).view(len(wz), len(wy), len(wx))


def _linear_weights(positions: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(len(positions), len(centres)) weights of linear interpolation between ``centres``, flat outside."""
    identity = np.eye(len(centres))
    return np.stack([np.interp(positions, centres, column) for column in identity], axis=1).astype(np.float32)
