"""Bilateral filter (BF) and improved bilateral filter (IBF) on a 3x3x3 window, as METHOD.md defines them.

weight(p, q) = G(||p - q||; sigma_d) * G(r(p, q); sigma_r), output(p) = sum_q weight * v_q / sum_q weight,
with replicate borders. BF: r = v_q - v_p. IBF: r = ||g_p - g_q||, g the 3D Sobel gradient (scipy's
``ndimage.sobel`` / 32, so a unit ramp has gradient 1), itself computed with replicate borders and
replicate-extended for the window.

How it is fast without a compiler: the range weight is symmetric, w(p, p+o) = w(p+o, p), so it is
computed for the 13 "positive" offsets only and used twice, at p (neighbour p+o) and shifted, at p-o
(neighbour p-o). The volume goes through in tiles (a few z-rows, and y-strips of wide planes) so the
temporaries stay in cache; each tile is copied into a padded flat layout where a neighbour offset is
one constant flat offset, so every term is a contiguous 1-D slice, also for batches of small volumes.
The spatial weights are constants folded into the accumulating ops; the Sobel gradient is computed
per tile. On CPU, tiles run on as many Python threads as torch has threads, each op single-threaded.
The output is written as v_p + sum w (v_q - v_p) / sum w: the same number, but a constant volume
stays exactly as it is.

Whole volumes larger than memory: ``filter_volume`` runs in z-chunks that read 2 rows beyond
themselves (IBF needs both: one for the window, one for the Sobel), and gives exactly the result of
one pass.

On CPU in float32 the fused numba kernel of fused_bilateral.py computes the same numbers several times
faster; this torch path stays the reference (``kernel="torch"``), the CUDA path, float64's, and the
fallback where numba is unavailable.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.fields import DEFAULT_SIGMA_D, DEFAULT_SIGMA_R
from voxuda_cli.progress import Progress

BILATERAL_METHODS = ("ibf", "bf")
KERNELS = ("auto", "torch", "fused")  # auto: fused where it applies (float32 on CPU, numba importable)
# The 13 offsets o > 0 (lexicographically); -o covers the other 13 neighbours.
HALF_OFFSETS: tuple[tuple[int, int, int], ...] = tuple(
    (dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dz, dy, dx) > (0, 0, 0)
)
HALO = {"bf": 2, "ibf": 2}  # z-rows a chunk reads beyond itself (IBF: Sobel + window; BF shares its tiles)
_MIN_TILE_ROWS = 4  # z-rows per tile at least; wide planes are split in y instead
_BLOCK_VOXELS_CPU = 1 << 18  # voxels per block on CPU: both workers' temporaries (11 buffers each) fit in L3
_WORKING_FLOATS_PER_VOXEL = 6  # floats held per voxel of a chunk: rows read, their tensor, result, its copy out


def check_sigmas(sigma_d: float, sigma_r: float) -> None:
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


class _Block:
    """One tile (t z-rows x s y-rows x all of W) in a flat layout (B, t+4, s+4, W+2), reused tile after tile.

    Borders: 2 in z and y (one for the window, one for the Sobel), 1 in x (W is never split, so its
    border is always replicate padding). In this layout a neighbour offset (oz, oy, ox) is one flat
    offset, so every term of the filter is a contiguous 1-D slice: the fastest loops torch has, also
    for small batched volumes. Border positions compute garbage that never reaches a kept voxel.
    """

    def __init__(self, batch: int, rows: int, strip: int, width: int, dtype: torch.dtype, device: torch.device):
        self.batch, self.width = batch, width
        capacity = batch * (rows + 4) * (strip + 4) * (width + 2)
        names = ("values", "features", "norms", "a", "b", "weight", "delta", "num", "den")
        # zeros, not empty: positions never written (batch seams, outer borders) must hold finite numbers
        self._flat = {
            name: torch.zeros((3 if name == "features" else 1) * capacity, dtype=dtype, device=device) for name in names
        }
        self.set_tile(rows, strip)

    def set_tile(self, rows: int, strip: int) -> None:
        self.rows, self.strip = rows, strip
        self.shape = (self.batch, rows + 4, strip + 4, self.width + 2)
        self.y_step = self.width + 2
        self.z_step = (strip + 4) * self.y_step

    def flat(self, name: str, channels: int = 1) -> torch.Tensor:
        size = math.prod(self.shape)
        buffer = self._flat[name][: channels * size]
        return buffer.view(channels, size) if channels > 1 else buffer

    def grid(self, name: str, channels: int = 1) -> torch.Tensor:
        return self.flat(name, channels).view(*((channels,) if channels > 1 else ()), *self.shape)

    def span(self, border: int) -> tuple[int, int]:
        """Flat range over z-rows and y-rows ``border .. size+3-border`` (x: 1..W) of every item."""
        first = border * self.z_step + border * self.y_step + 1
        last = ((self.batch - 1) * (self.rows + 4) + self.rows + 3 - border) * self.z_step
        last += (self.strip + 3 - border) * self.y_step + self.width
        return first, last + 1


def _load_tile(block: _Block, rows: torch.Tensor, first_row: int, z_start: int, y_start: int, depth: int) -> None:
    """Block values <- volume rows z_start.., y_start.. (clamped to the volume: replicate), x padded by 1.

    ``rows`` (B, R, H, W) holds volume rows from ``first_row`` on.
    """
    dest = block.grid("values")
    height = rows.shape[2]
    nz, ny = dest.shape[1], dest.shape[2]
    zl, zh = max(z_start, 0), min(z_start + nz, depth)
    yl, yh = max(y_start, 0), min(y_start + ny, height)
    z_valid = slice(zl - z_start, zh - z_start)
    dest[:, z_valid, yl - y_start : yh - y_start, 1:-1].copy_(rows[:, zl - first_row : zh - first_row, yl:yh])
    for k in range(yl - y_start):
        dest[:, z_valid, k].copy_(dest[:, z_valid, yl - y_start])
    for k in range(yh - y_start, ny):
        dest[:, z_valid, k].copy_(dest[:, z_valid, yh - y_start - 1])
    for k in range(zl - z_start):
        dest[:, k].copy_(dest[:, zl - z_start])
    for k in range(zh - z_start, nz):
        dest[:, k].copy_(dest[:, zh - z_start - 1])
    dest[..., 0].copy_(dest[..., 1])
    dest[..., -1].copy_(dest[..., -2])


def _sobel_tile(block: _Block, scale: float, at_border: tuple[bool, bool, bool, bool]) -> None:
    """Separable Sobel of the values into the features (z and y border 1 and inside), times ``scale``/32.

    Then the features are extended by replicating the gradient (not by the Sobel of padding) where
    the tile meets the volume's border: ``at_border`` = (z start, z end, y start, y end).
    """
    values, features = block.flat("values"), block.flat("features", 3)
    a, b = block.flat("a"), block.flat("b")
    x_step, y_step, z_step = 1, block.y_step, block.z_step
    start, stop = block.span(1)

    def smooth(src: torch.Tensor, step: int, lo: int, hi: int, out: torch.Tensor) -> None:
        torch.add(src[lo - step : hi - step], src[lo + step : hi + step], out=out[lo:hi])
        out[lo:hi].add_(src[lo:hi], alpha=2.0)

    def diff(src: torch.Tensor, step: int, lo: int, hi: int, out: torch.Tensor) -> None:
        torch.sub(src[lo + step : hi + step], src[lo - step : hi - step], out=out[lo:hi])

    wide = (start - z_step - y_step, stop + z_step + y_step)
    mid = (start - z_step, stop + z_step)
    smooth(values, x_step, *wide, a)
    smooth(a, y_step, *mid, b)
    diff(b, z_step, start, stop, features[0])
    diff(a, y_step, *mid, b)
    smooth(b, z_step, start, stop, features[1])
    diff(values, x_step, *wide, a)
    smooth(a, y_step, *mid, b)
    smooth(b, z_step, start, stop, features[2])
    features[:, start:stop].mul_(scale / 32.0)
    region = block.grid("features", 3)[:, :, 1:-1, 1:-1]
    z_first, z_last, y_first, y_last = at_border
    if z_first:
        region[:, :, 0].copy_(region[:, :, 1])
    if z_last:
        region[:, :, -1].copy_(region[:, :, -2])
    if y_first:
        region[:, :, :, 0].copy_(region[:, :, :, 1])
    if y_last:
        region[:, :, :, -1].copy_(region[:, :, :, -2])
    region[..., 0].copy_(region[..., 1])
    region[..., -1].copy_(region[..., -2])


def _window_tile(block: _Block, ibf: bool, weights: tuple[float, list[float]], scale: float) -> None:
    """num/den of the bilateral sum for every kept voxel of the tile (and garbage on its borders)."""
    values = block.flat("values")
    start, stop = block.span(2)
    length = stop - start
    centre_weight, offset_weights = weights
    num, den = block.flat("num")[start:stop], block.flat("den")[start:stop]
    num.zero_()
    den.fill_(centre_weight)
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    if ibf:
        features, neg_norms = block.flat("features", 3), block.flat("norms")
        lo, hi = block.span(1)
        lo, hi = lo - 1, hi + 1  # x borders too
        torch.mul(features[0, lo:hi], features[0, lo:hi], out=neg_norms[lo:hi])
        for c in (1, 2):
            neg_norms[lo:hi].addcmul_(features[c, lo:hi], features[c, lo:hi])
        neg_norms[lo:hi].neg_()
    for (oz, oy, ox), spatial in zip(HALF_OFFSETS, offset_weights):
        k = oz * block.z_step + oy * block.y_step + ox  # > 0 for the 13 half offsets
        # Weights of offset o over [start - k, stop): read at p (neighbour p+o) and at p - o (neighbour p-o).
        here, there = slice(start - k, stop), slice(start, stop + k)
        weight = block.flat("weight")[: length + k]
        delta = block.flat("delta")[: length + k]
        torch.sub(values[here], values[there], out=delta)
        if ibf:
            # -||f_p - f_q||^2 = -|f_p|^2 - |f_q|^2 + 2 f_p.f_q: no 3-channel difference to write
            torch.add(neg_norms[here], neg_norms[there], out=weight)
            for c in range(3):
                weight.addcmul_(features[c, here], features[c, there], value=2.0)
        else:
            torch.addcmul(zero, delta, delta, value=-scale * scale, out=weight)
        weight.exp_()
        # delta = v_p - v_(p+o); used at p - o it reads v_(p-o) - v_p: the sign flips between the two uses
        num.addcmul_(weight[k:], delta[k:], value=-spatial)
        den.add_(weight[k:], alpha=spatial)
        num.addcmul_(weight[:length], delta[:length], value=spatial)
        den.add_(weight[:length], alpha=spatial)
    num.div_(den)


def _tile_shape(batch: int, depth: int, height: int, width: int, device: torch.device) -> tuple[int, int]:
    """(z-rows, y-rows) per tile: about ``_BLOCK_VOXELS_CPU`` voxels, at least ``_MIN_TILE_ROWS`` z-rows."""
    if device.type != "cpu":
        return depth, height
    plane = max(1, batch * height * width)
    if plane * _MIN_TILE_ROWS <= _BLOCK_VOXELS_CPU:
        return min(depth, _BLOCK_VOXELS_CPU // plane), height
    rows = min(depth, _MIN_TILE_ROWS)
    return rows, min(height, max(1, _BLOCK_VOXELS_CPU // (rows * batch * width)))


def _filter_rows(
    rows: torch.Tensor,
    first_row: int,
    target: tuple[int, int],
    depth: int,
    method: str,
    sigma_d: float,
    sigma_r: float,
    kernel: str = "auto",
) -> torch.Tensor:
    """Filter volume rows ``target = (z0, z1)``, given ``rows`` (B, R, H, W): volume rows from ``first_row``.

    ``rows`` must hold the halo rows that exist in the volume (HALO[method] on each side). On a CPU
    with several torch threads, the tiles go to that many Python threads, each running its torch
    ops single-threaded: a thread never waits for the others between ops, which keeps the speed when
    other processes share the cores (one barrier per op costs a scheduler time slice there).
    """
    if method not in BILATERAL_METHODS:
        raise VoxudaInputError(f"--method {method}: unknown bilateral method; use {' or '.join(BILATERAL_METHODS)}")
    if _use_fused(rows, kernel):
        from voxuda_cli.filters.fused_bilateral import fused_filter_rows

        return fused_filter_rows(rows, first_row, target, depth, method == "ibf", sigma_d, sigma_r)
    z0, z1 = target
    batch, _, height, width = rows.shape
    out = torch.empty((batch, z1 - z0, height, width), dtype=rows.dtype, device=rows.device)
    workers = torch.get_num_threads() if rows.device.type == "cpu" else 1
    jobs: list[tuple[torch.Tensor, tuple[int, int], torch.Tensor]] = [(rows, target, out)]
    if workers > 1 and batch >= workers:
        bounds = [round(i * batch / workers) for i in range(workers + 1)]
        jobs = [(rows[a:b], target, out[a:b]) for a, b in zip(bounds, bounds[1:])]
    elif workers > 1 and z1 - z0 >= workers:
        bounds = [z0 + round(i * (z1 - z0) / workers) for i in range(workers + 1)]
        jobs = [(rows, (a, b), out[:, a - z0 : b - z0]) for a, b in zip(bounds, bounds[1:])]
    settings = (first_row, depth, method == "ibf", sigma_d, sigma_r)
    if len(jobs) == 1:
        _filter_tiles(rows, target, out, *settings)
        return out
    from concurrent.futures import ThreadPoolExecutor

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(len(jobs)) as pool:
            for future in [pool.submit(_filter_tiles, part, span, dest, *settings) for part, span, dest in jobs]:
                future.result()
    finally:
        torch.set_num_threads(threads)
    return out


def _use_fused(rows: torch.Tensor, kernel: str) -> bool:
    if kernel not in KERNELS:
        raise ValueError(f"bilateral kernel {kernel!r}: use one of {KERNELS}")
    if kernel == "torch":
        return False
    from voxuda_cli.filters import fused_bilateral

    applies = rows.device.type == "cpu" and rows.dtype == torch.float32 and fused_bilateral.AVAILABLE
    if kernel == "fused" and not applies:
        raise ValueError("the fused bilateral kernel needs float32 CPU input and numba")
    return applies


def _filter_tiles(
    rows: torch.Tensor,
    target: tuple[int, int],
    out: torch.Tensor,
    first_row: int,
    depth: int,
    ibf: bool,
    sigma_d: float,
    sigma_r: float,
) -> None:
    """Rows ``target`` of the volume into ``out`` (B, z1-z0, H, W), one tile at a time."""
    z0, z1 = target
    batch, _, height, width = rows.shape
    tile_rows, tile_strip = _tile_shape(batch, z1 - z0, height, width, rows.device)
    block = _Block(batch, tile_rows, tile_strip, width, rows.dtype, rows.device)
    weights = spatial_weights(sigma_d)
    scale = 1.0 / (math.sqrt(2.0) * float(sigma_r))
    for r0 in range(z0, z1, tile_rows):
        r1 = min(z1, r0 + tile_rows)
        for y0 in range(0, height, tile_strip):
            y1 = min(height, y0 + tile_strip)
            block.set_tile(r1 - r0, y1 - y0)
            _load_tile(block, rows, first_row, r0 - 2, y0 - 2, depth)
            if ibf:
                _sobel_tile(block, scale, (r0 == 0, r1 == depth, y0 == 0, y1 == height))
            _window_tile(block, ibf, weights, scale)
            core = (slice(None), slice(2, r1 - r0 + 2), slice(2, y1 - y0 + 2), slice(1, width + 1))
            torch.add(block.grid("values")[core], block.grid("num")[core], out=out[:, r0 - z0 : r1 - z0, y0:y1])


def _filter_tensor(x: torch.Tensor, method: str, sigma_d: float, sigma_r: float, kernel: str) -> torch.Tensor:
    check_sigmas(sigma_d, sigma_r)
    if x.ndim < 3:
        raise VoxudaInputError(f"{method}: expected (..., D, H, W), got shape {tuple(x.shape)}")
    dtype = _work_dtype(x)
    lead, (depth, height, width) = x.shape[:-3], x.shape[-3:]
    rows = x.to(dtype).reshape(-1, depth, height, width)
    with torch.no_grad():
        out = _filter_rows(rows, 0, (0, depth), depth, method, sigma_d, sigma_r, kernel)
    return out.reshape(*lead, depth, height, width)


def bilateral_filter(
    x: torch.Tensor, sigma_d: float = DEFAULT_SIGMA_D, sigma_r: float = DEFAULT_SIGMA_R, kernel: str = "auto"
) -> torch.Tensor:
    """Bilateral filter (range kernel on intensity differences) of (..., D, H, W), 3x3x3 window."""
    return _filter_tensor(x, "bf", sigma_d, sigma_r, kernel)


def improved_bilateral_filter(
    x: torch.Tensor, sigma_d: float = DEFAULT_SIGMA_D, sigma_r: float = DEFAULT_SIGMA_R, kernel: str = "auto"
) -> torch.Tensor:
    """Improved bilateral filter (range kernel on Sobel-gradient differences) of (..., D, H, W), 3x3x3 window.

    ``kernel``: "auto" (the fused CPU kernel where it applies), "torch" (the reference) or "fused".
    """
    return _filter_tensor(x, "ibf", sigma_d, sigma_r, kernel)


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
    progress: Progress | None = None,
) -> np.ndarray:
    """BF or IBF of one (D, H, W) volume (a read-only np.memmap is fine), ``chunk`` z-rows at a time.

    Each chunk is read with a halo, so the result equals the unchunked filter. ``chunk=None`` picks
    one from free memory. ``zscore_stats=(mean, std)``: filter ``(v - mean) / std`` and return the
    result on the input's scale. ``out`` (e.g. a writable memory map) receives the result.
    ``progress(rows, total=depth)`` is called after each chunk of ``rows`` z-rows.
    """
    from voxuda_cli.device import resolve_device

    if method not in BILATERAL_METHODS:
        raise VoxudaInputError(f"--method {method}: unknown bilateral method; use {' or '.join(BILATERAL_METHODS)}")
    check_sigmas(sigma_d, sigma_r)
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
                progress(z1 - z0, total=depth)
    return out
