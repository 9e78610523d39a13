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
    (dz, dy, dx)
    for dz in (-1, 0, 1)
    for dy in (-1, 0, 1)
    for dx in (-1, 0, 1)
    if (dz, dy, dx) > (0, 0, 0)
)
HALO = {"bf": 1, "ibf": 2, "none": 0}
_BLOCK_VOXELS_CPU = 1 << 16  # voxels per cache block on CPU (a few z-rows of a tomogram)
_WORKING_FLOATS_PER_VOXEL = 24  # rough floats held per voxel of a chunk (input, gradient, padded copies, output)


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


def _replicate_pad(t: torch.Tensor, rows: tuple[int, int, int, int]) -> torch.Tensor:
    """Window rows ``z0-1..z1`` (clamped to the volume) of ``t`` (rows from ``offset``), H and W padded by 1."""
    z0, z1, depth, offset = rows
    height, width = t.shape[-2], t.shape[-1]
    t = _clamped_select(t, -3, z0 - 1, z1 + 1, depth, offset)
    t = _clamped_select(t, -2, -1, height + 1, height)
    return _clamped_select(t, -1, -1, width + 1, width)


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


def _window_filter(
    values: torch.Tensor,
    features: torch.Tensor,
    out: torch.Tensor,
    sigma_d: float,
    block_rows: int,
) -> None:
    """The bilateral sum over a 3x3x3 window for every voxel of ``out``.

    ``values`` (B, d+2, H+2, W+2) and ``features`` (C, B, d+2, H+2, W+2) carry a 1-voxel border;
    features are pre-scaled by 1/(sqrt(2) sigma_r), so the range weight is exp(-||f_p - f_q||^2).
    """
    batch, rows, height, width = out.shape
    channels = features.shape[0]
    centre_weight, offset_weights = spatial_weights(sigma_d)
    block = max(1, min(block_rows, rows))
    region = batch * (block + 1) * (height + 1) * (width + 1)
    kw = {"dtype": out.dtype, "device": out.device}
    diff_buf, weight_buf, delta_buf = (torch.empty(n, **kw) for n in (channels * region, region, region))
    numerator = torch.empty((batch, block, height, width), **kw)
    denominator = torch.empty((batch, block, height, width), **kw)
    zero = torch.zeros((), **kw)
    for r0 in range(0, rows, block):
        t = min(block, rows - r0)
        num, den = numerator[:, :t], denominator[:, :t]
        num.zero_()
        den.fill_(centre_weight)
        for (oz, oy, ox), spatial in zip(HALF_OFFSETS, offset_weights):
            lz, ly, lx = t + abs(oz), height + abs(oy), width + abs(ox)
            # The weights of offset o are needed at p (neighbour p+o) and at p-o (neighbour p-o):
            # one region extended by one row on the side opposite o covers both.
            zs, ys, xs = r0 + 1 + min(0, -oz), 1 + min(0, -oy), 1 + min(0, -ox)
            here = (slice(zs, zs + lz), slice(ys, ys + ly), slice(xs, xs + lx))
            there = (slice(zs + oz, zs + oz + lz), slice(ys + oy, ys + oy + ly), slice(xs + ox, xs + ox + lx))
            n = batch * lz * ly * lx
            diff = diff_buf[: channels * n].view(channels, batch, lz, ly, lx)
            torch.sub(features[(slice(None), slice(None), *here)], features[(slice(None), slice(None), *there)], out=diff)
            weight = weight_buf[:n].view(batch, lz, ly, lx)
            torch.addcmul(zero, diff[0], diff[0], value=-1.0, out=weight)
            for c in range(1, channels):
                weight.addcmul_(diff[c], diff[c], value=-1.0)
            weight.exp_()
            delta = delta_buf[:n].view(batch, lz, ly, lx)
            torch.sub(values[(slice(None), *here)], values[(slice(None), *there)], out=delta)
            fz, fy, fx = max(0, oz), max(0, oy), max(0, ox)
            forward = (slice(None), slice(fz, fz + t), slice(fy, fy + height), slice(fx, fx + width))
            bz, by, bx = max(0, -oz), max(0, -oy), max(0, -ox)
            backward = (slice(None), slice(bz, bz + t), slice(by, by + height), slice(bx, bx + width))
            # delta = v_p - v_{p+o}; at p-o it is v_{p-o} - v_p: the sign flips between the two uses.
            num.addcmul_(weight[forward], delta[forward], value=-spatial)
            den.add_(weight[forward], alpha=spatial)
            num.addcmul_(weight[backward], delta[backward], value=spatial)
            den.add_(weight[backward], alpha=spatial)
        centre = values[:, r0 + 1 : r0 + 1 + t, 1 : 1 + height, 1 : 1 + width]
        torch.div(num, den, out=num)
        torch.add(centre, num, out=out[:, r0 : r0 + t])


def _block_rows(shape: tuple[int, ...], device: torch.device) -> int:
    batch, rows, height, width = shape
    if device.type != "cpu":
        return rows
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
    """Filter volume rows ``target = (z0, z1)`` given ``rows`` (B, R, H, W) = volume rows from ``first_row``.

    ``rows`` must hold the halo rows that exist in the volume (HALO[method] each side).
    """
    z0, z1 = target
    window_rows = (z0, z1, depth, first_row)
    values = _replicate_pad(rows, window_rows)
    scale = 1.0 / (math.sqrt(2.0) * float(sigma_r))
    if method == "ibf":
        features = _replicate_pad(_sobel_rows(rows), window_rows).mul_(scale)
    elif method == "bf":
        features = values.mul(scale)[None]
    else:
        raise VoxudaInputError(f"--method {method}: unknown bilateral method; use one of {', '.join(BILATERAL_METHODS)}")
    out = torch.empty((rows.shape[0], z1 - z0, rows.shape[2], rows.shape[3]), dtype=rows.dtype, device=rows.device)
    _window_filter(values, features, out, sigma_d, _block_rows(tuple(out.shape), rows.device))
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
        raise VoxudaInputError(f"--method {method}: unknown bilateral method; use one of {', '.join(BILATERAL_METHODS)}")
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
