"""Bilateral filter (BF) and improved bilateral filter (IBF) on a 3x3x3 window, as METHOD.md defines them.

weight(p, q) = G(||p - q||; sigma_d) * G(r(p, q); sigma_r), output(p) = sum_q weight * v_q / sum_q weight,
with replicate borders. BF: r = v_q - v_p. IBF: r = ||g_p - g_q||, g the 3D Sobel gradient (scipy's
``ndimage.sobel`` / 32, so a unit ramp has gradient 1), itself computed with replicate borders and
replicate-extended for the window.

How it is fast without a compiler: the range weight is symmetric, w(p, p+o) = w(p+o, p), so it is
computed for the 13 "positive" offsets only and used twice, at p (neighbour p+o) and shifted, at p-o
(neighbour p-o). Every term is a shifted view of one padded tensor; the spatial weights are
constants folded into the accumulating ops; and the volume is processed in blocks of a few z-rows
so the temporaries stay in cache. The output is written as v_p + sum w (v_q - v_p) / sum w, which is
the same number but leaves a constant volume exactly unchanged.

Whole volumes larger than memory: ``filter_volume`` runs in z-chunks with a halo (1 row for BF,
2 for IBF: one for the window, one for the Sobel), and gives the same result as one pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from voxuda_cli.errors import VoxudaInputError

DEFAULT_SIGMA_D = 120.0
DEFAULT_SIGMA_R = 1.2
BILATERAL_METHODS = ("ibf", "bf")
# The 13 offsets o > 0 (lexicographically); -o covers the other 13 neighbours.
HALF_OFFSETS: tuple[tuple[int, int, int], ...] = tuple(
    (dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dz, dy, dx) > (0, 0, 0)
)
HALO = {"bf": 1, "ibf": 2, "none": 0}
_BLOCK_VOXELS_CPU = 1 << 19  # voxels per block on CPU: temporaries stay in cache (measured best 2^18-2^20)
_WORKING_FLOATS_PER_VOXEL = 6  # floats held per voxel of a chunk: rows read, their tensor, result, its copy out


def _check_sigmas(sigma_d: float, sigma_r: float) -> None:
    for option, value in (("--sigma-d", sigma_d), ("--sigma-r", sigma_r)):
        if not (math.isfinite(float(value)) and float(value) > 0):
            raise VoxudaInputError(f"{option} {value}: must be a positive number")


def spatial_weights(sigma_d: float) -> tuple[float, list[float]]:
    """Domain weights G(||o||; sigma_d) (normaliser dropped): centre and each of ``HALF_OFFSETS``."""
    scale = -1.0 / (2.0 * float(sigma_d) ** 2)
    return 1.0, [math.exp(scale * (dz * dz + dy * dy + dx * dx)) for dz, dy, dx in HALF_OFFSETS]


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


def _clamped_select(t: torch.Tensor, dim: int, start: int, stop: int, size: int, offset: int = 0) -> torch.Tensor:
    """Rows ``start..stop-1`` of a volume axis of length ``size``, indices clamped (replicate borders).

    ``t`` holds that axis from volume index ``offset`` on.
    """
    index = torch.arange(start, stop, device=t.device).clamp_(0, size - 1) - offset
    return t.index_select(dim, index)


def _sobel_of_padded(padded: torch.Tensor) -> torch.Tensor:
    """Sobel gradient (channel dim 0: along D, H, W) of a volume given with a 1-voxel border; /32."""

    def smooth(t: torch.Tensor, dim: int) -> torch.Tensor:
        n = t.shape[dim] - 2
        return t.narrow(dim, 0, n) + 2 * t.narrow(dim, 1, n) + t.narrow(dim, 2, n)

    def diff(t: torch.Tensor, dim: int) -> torch.Tensor:
        n = t.shape[dim] - 2
        return t.narrow(dim, 2, n) - t.narrow(dim, 0, n)

    smooth_x = smooth(padded, -1)
    along_d = diff(smooth(smooth_x, -2), -3)
    along_h = smooth(diff(smooth_x, -2), -3)
    along_w = smooth(smooth(diff(padded, -1), -2), -3)
    return torch.stack([along_d, along_h, along_w]).mul_(1.0 / 32.0)


def _sobel_rows(rows: torch.Tensor) -> torch.Tensor:
    """Sobel gradient (3, ..., R, H, W) of rows (..., R, H, W), replicate borders on every side of them."""
    r, h, w = rows.shape[-3:]
    padded = _clamped_select(rows, -3, -1, r + 1, r)
    padded = _clamped_select(padded, -2, -1, h + 1, h)
    padded = _clamped_select(padded, -1, -1, w + 1, w)
    return _sobel_of_padded(padded)


def sobel_gradient(x: torch.Tensor) -> torch.Tensor:
    """3D Sobel gradient (..., 3, D, H, W) of (..., D, H, W): derivative along D, H, W; scipy.ndimage.sobel / 32."""
    if x.ndim < 3:
        raise VoxudaInputError(f"sobel gradient: expected (..., D, H, W), got shape {tuple(x.shape)}")
    gradient = _sobel_rows(x.to(_work_dtype(x)))
    return gradient.movedim(0, -4)


class _Workspace:
    """Flat buffers for one block of rows, reused block after block (fresh tensors per op would page-fault)."""

    def __init__(self, batch: int, rows: int, height: int, width: int, dtype: torch.dtype, device: torch.device):
        self.dtype, self.device = dtype, device
        padded = batch * (rows + 4) * (height + 2) * (width + 2)
        region = batch * (rows + 1) * (height + 1) * (width + 1)
        self.sizes = {"values": padded, "features": 3 * padded, "smooth": padded, "temp": padded}
        self.sizes.update({"norms": padded, "weight": region, "delta": region})
        self.sizes.update({"numerator": batch * rows * height * width, "denominator": batch * rows * height * width})
        self._buffers: dict[str, torch.Tensor] = {}

    def view(self, name: str, *shape: int) -> torch.Tensor:
        if name not in self._buffers:
            self._buffers[name] = torch.empty(self.sizes[name], dtype=self.dtype, device=self.device)
        return self._buffers[name][: math.prod(shape)].view(shape)


def _replicate_edges(t: torch.Tensor) -> None:
    """Fill the 1-voxel border of the last two dims by replicating their first/last interior row/column."""
    t[..., 0, 1:-1].copy_(t[..., 1, 1:-1])
    t[..., -1, 1:-1].copy_(t[..., -2, 1:-1])
    t[..., :, 0].copy_(t[..., :, 1])
    t[..., :, -1].copy_(t[..., :, -2])


def _load_rows(dest: torch.Tensor, rows: torch.Tensor, first_row: int, start: int, depth: int) -> None:
    """``dest`` (B, n, H+2, W+2) <- volume rows ``start..start+n-1``, clamped to the volume, H and W replicate-padded.

    ``rows`` (B, R, H, W) holds volume rows from ``first_row`` on.
    """
    count = dest.shape[1]
    low, high = max(start, 0), min(start + count, depth)
    dest[:, low - start : high - start, 1:-1, 1:-1].copy_(rows[:, low - first_row : high - first_row])
    for k in range(low - start):
        dest[:, k].copy_(dest[:, low - start])
    for k in range(high - start, count):
        dest[:, k].copy_(dest[:, high - start - 1])
    _replicate_edges(dest)


def _sobel_into(padded: torch.Tensor, gradient: torch.Tensor, scale: float, work: _Workspace) -> None:
    """Separable Sobel of ``padded`` (B, n+2, h+2, w+2) into ``gradient`` (3, B, n, h, w), times ``scale``/32."""
    batch, n2, h2, w2 = padded.shape
    h, w = h2 - 2, w2 - 2
    along_w = work.view("smooth", batch, n2, h2, w)
    temp = work.view("temp", batch, n2, h, w)

    def smooth(src: torch.Tensor, dim: int, out: torch.Tensor) -> None:
        torch.add(src.narrow(dim, 0, out.shape[dim]), src.narrow(dim, 2, out.shape[dim]), out=out)
        out.add_(src.narrow(dim, 1, out.shape[dim]), alpha=2.0)

    def diff(src: torch.Tensor, dim: int, out: torch.Tensor) -> None:
        torch.sub(src.narrow(dim, 2, out.shape[dim]), src.narrow(dim, 0, out.shape[dim]), out=out)

    smooth(padded, -1, along_w)
    smooth(along_w, -2, temp)
    diff(temp, -3, gradient[0])
    diff(along_w, -2, temp)
    smooth(temp, -3, gradient[1])
    diff(padded, -1, along_w)
    smooth(along_w, -2, temp)
    smooth(temp, -3, gradient[2])
    gradient.mul_(scale / 32.0)


def _window_block(
    values: torch.Tensor,
    features: torch.Tensor | None,
    out: torch.Tensor,
    weights: tuple[float, list[float]],
    scale: float,
    work: _Workspace,
) -> None:
    """The bilateral sum over the 3x3x3 window for every voxel of ``out`` (B, t, H, W).

    ``values`` (B, t+2, H+2, W+2) carries a 1-voxel border. ``features`` (C, B, t+2, H+2, W+2), pre-scaled
    by 1/(sqrt(2) sigma_r), give the range distance (IBF); None means the values themselves (BF).
    """
    batch, t, height, width = out.shape
    centre_weight, offset_weights = weights
    num = work.view("numerator", batch, t, height, width)
    den = work.view("denominator", batch, t, height, width)
    num.zero_()
    den.fill_(centre_weight)
    zero = torch.zeros((), dtype=out.dtype, device=out.device)
    everything = slice(None)
    if features is not None:
        neg_norms = work.view("norms", *features.shape[1:])
        torch.mul(features[0], features[0], out=neg_norms)
        for c in range(1, features.shape[0]):
            neg_norms.addcmul_(features[c], features[c])
        neg_norms.neg_()
    for (oz, oy, ox), spatial in zip(HALF_OFFSETS, offset_weights):
        lz, ly, lx = t + abs(oz), height + abs(oy), width + abs(ox)
        # The weights of offset o are needed at p (neighbour p+o) and at p-o (neighbour p-o): one region,
        # extended by a row on the side opposite o, covers both.
        zs, ys, xs = 1 + min(0, -oz), 1 + min(0, -oy), 1 + min(0, -ox)
        here = (slice(zs, zs + lz), slice(ys, ys + ly), slice(xs, xs + lx))
        there = (slice(zs + oz, zs + oz + lz), slice(ys + oy, ys + oy + ly), slice(xs + ox, xs + ox + lx))
        delta = work.view("delta", batch, lz, ly, lx)
        torch.sub(values[(everything, *here)], values[(everything, *there)], out=delta)
        weight = work.view("weight", batch, lz, ly, lx)
        if features is None:
            torch.addcmul(zero, delta, delta, value=-scale * scale, out=weight)
        else:
            # -||f_p - f_q||^2 = -|f_p|^2 - |f_q|^2 + 2 f_p.f_q: no 3-channel difference to write.
            torch.add(neg_norms[(everything, *here)], neg_norms[(everything, *there)], out=weight)
            for c in range(features.shape[0]):
                weight.addcmul_(features[(c, everything, *here)], features[(c, everything, *there)], value=2.0)
        weight.exp_()
        fz, fy, fx = max(0, oz), max(0, oy), max(0, ox)
        forward = (everything, slice(fz, fz + t), slice(fy, fy + height), slice(fx, fx + width))
        bz, by, bx = max(0, -oz), max(0, -oy), max(0, -ox)
        backward = (everything, slice(bz, bz + t), slice(by, by + height), slice(bx, bx + width))
        # delta = v_p - v_(p+o); used at p-o it reads v_(p-o) - v_p: the sign flips between the two uses.
        num.addcmul_(weight[forward], delta[forward], value=-spatial)
        den.add_(weight[forward], alpha=spatial)
        num.addcmul_(weight[backward], delta[backward], value=spatial)
        den.add_(weight[backward], alpha=spatial)
    torch.div(num, den, out=num)
    torch.add(values[:, 1 : 1 + t, 1 : 1 + height, 1 : 1 + width], num, out=out)


def _block_rows(batch: int, height: int, width: int, device: torch.device) -> int:
    if device.type != "cpu":
        return 1 << 30
    return max(1, _BLOCK_VOXELS_CPU // max(1, batch * height * width))


def _filter_rows(
    rows: torch.Tensor,
    first_row: int,
    target: tuple[int, int],
    depth: int,
    method: str,
    sigma_d: float,
    sigma_r: float,
) -> torch.Tensor:
    """Filter volume rows ``target = (z0, z1)``, given ``rows`` (B, R, H, W): volume rows from ``first_row``.

    ``rows`` must hold the halo rows that exist in the volume (HALO[method] on each side).
    """
    if method not in BILATERAL_METHODS:
        raise VoxudaInputError(f"--method {method}: unknown bilateral method; use {' or '.join(BILATERAL_METHODS)}")
    z0, z1 = target
    batch, _, height, width = rows.shape
    out = torch.empty((batch, z1 - z0, height, width), dtype=rows.dtype, device=rows.device)
    block = min(_block_rows(batch, height, width, rows.device), z1 - z0)
    work = _Workspace(batch, block, height, width, rows.dtype, rows.device)
    weights = spatial_weights(sigma_d)
    scale = 1.0 / (math.sqrt(2.0) * float(sigma_r))
    halo = HALO[method]
    for r0 in range(z0, z1, block):
        r1 = min(z1, r0 + block)
        t = r1 - r0
        loaded = work.view("values", batch, t + 2 * halo, height + 2, width + 2)
        _load_rows(loaded, rows, first_row, r0 - halo, depth)
        features = None
        if method == "ibf":
            features = work.view("features", 3, batch, t + 2, height + 2, width + 2)
            _sobel_into(loaded, features[:, :, :, 1:-1, 1:-1], scale, work)
            if r0 == 0:  # the gradient beyond the volume is the edge's gradient (replicate), not Sobel of padding
                features[:, :, 0].copy_(features[:, :, 1])
            if r1 == depth:
                features[:, :, -1].copy_(features[:, :, -2])
            _replicate_edges(features)
        values = loaded[:, halo - 1 : halo + t + 1]
        _window_block(values, features, out[:, r0 - z0 : r1 - z0], weights, scale, work)
    return out


def _filter_tensor(x: torch.Tensor, method: str, sigma_d: float, sigma_r: float) -> torch.Tensor:
    _check_sigmas(sigma_d, sigma_r)
    if x.ndim < 3:
        raise VoxudaInputError(f"{method}: expected (..., D, H, W), got shape {tuple(x.shape)}")
    dtype = _work_dtype(x)
    lead, (depth, height, width) = x.shape[:-3], x.shape[-3:]
    rows = x.to(dtype).reshape(-1, depth, height, width)
    with torch.no_grad():
        out = _filter_rows(rows, 0, (0, depth), depth, method, sigma_d, sigma_r)
    return out.reshape(*lead, depth, height, width)


def bilateral_filter(
    x: torch.Tensor, sigma_d: float = DEFAULT_SIGMA_D, sigma_r: float = DEFAULT_SIGMA_R
) -> torch.Tensor:
    """Bilateral filter (range kernel on intensity differences) of (..., D, H, W), 3x3x3 window."""
    return _filter_tensor(x, "bf", sigma_d, sigma_r)


def improved_bilateral_filter(
    x: torch.Tensor, sigma_d: float = DEFAULT_SIGMA_D, sigma_r: float = DEFAULT_SIGMA_R
) -> torch.Tensor:
    """Improved bilateral filter (range kernel on Sobel-gradient differences) of (..., D, H, W), 3x3x3 window."""
    return _filter_tensor(x, "ibf", sigma_d, sigma_r)


def available_memory_bytes(device: torch.device) -> int:
    """Free memory on ``device`` (CUDA: free GPU memory; CPU: MemAvailable, else a conservative 2 GiB)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2 << 30


def auto_chunk(shape: tuple[int, int, int], device: torch.device, budget_bytes: int | None = None) -> int:
    """z-rows per chunk so a chunk's working set stays within a quarter of free memory (at most 512 MiB)."""
    budget = budget_bytes if budget_bytes is not None else min(available_memory_bytes(device) // 4, 512 << 20)
    per_row = _WORKING_FLOATS_PER_VOXEL * 4 * int(shape[1]) * int(shape[2])
    return int(max(1, min(int(shape[0]), budget // max(per_row, 1))))


def filter_volume(
    volume: np.ndarray,
    method: str = "ibf",
    sigma_d: float = DEFAULT_SIGMA_D,
    sigma_r: float = DEFAULT_SIGMA_R,
    chunk: int | None = None,
    device: torch.device | str = "cpu",
    out: np.ndarray | None = None,
    zscore_stats: tuple[float, float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """BF or IBF of one (D, H, W) volume (a read-only np.memmap is fine), ``chunk`` z-rows at a time.

    Each chunk is read with a halo, so the result equals the unchunked filter. ``chunk=None`` picks
    one from free memory. ``zscore_stats=(mean, std)``: filter ``(v - mean) / std`` and return the
    result on the input's scale. ``out`` (e.g. a writable memory map) receives the result.
    ``progress(done_rows, total_rows)`` is called after each chunk.
    """
    from voxuda_cli.device import resolve_device

    if method not in BILATERAL_METHODS:
        raise VoxudaInputError(f"--method {method}: unknown bilateral method; use {' or '.join(BILATERAL_METHODS)}")
    _check_sigmas(sigma_d, sigma_r)
    if volume.ndim != 3:
        raise VoxudaInputError(f"filter: volume has shape {volume.shape}, expected (D, H, W)")
    device = resolve_device(device) if isinstance(device, str) else device
    depth = int(volume.shape[0])
    chunk = auto_chunk(volume.shape, device) if chunk is None else int(chunk)
    if chunk < 1:
        raise VoxudaInputError(f"--chunk {chunk}: must be at least 1 z-row")
    if out is None:
        out = np.empty(volume.shape, dtype=np.float32)
    mean, std = zscore_stats if zscore_stats is not None else (0.0, 1.0)
    halo = HALO[method]
    with torch.no_grad():
        for z0 in range(0, depth, chunk):
            z1 = min(depth, z0 + chunk)
            first, last = max(0, z0 - halo), min(depth, z1 + halo)
            rows = torch.from_numpy(np.array(volume[first:last], dtype=np.float32)).to(device)
            if zscore_stats is not None:
                rows.sub_(mean).div_(std)
            result = _filter_rows(rows[None], first, (z0, z1), depth, method, sigma_d, sigma_r)[0]
            if zscore_stats is not None:
                result.mul_(std).add_(mean)
            out[z0:z1] = result.cpu().numpy()
            if progress is not None:
                progress(z1, depth)
    return out
