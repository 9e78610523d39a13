"""Fused CPU kernel of BF/IBF (numba): the same numbers as bilateral.py's torch path, 2.5x faster.

Why a compiled kernel: the torch path writes every intermediate (13 offsets x a dozen ops) to memory
and reads it back; here each weight is computed once, in registers, with the Sobel-gradient
difference, the range weight and the accumulation in one loop.

1. Pad: the chunk's values and (IBF) its scaled Sobel gradient go into padded planes (H+2) x (W+2)
   that replicate the volume's borders, so a neighbour offset is one constant flat offset.
2. Window: the weight is symmetric, w(p, q) = w(q, p) (the spatial term depends on ||p - q||, the
   range term on |v_p - v_q| or ||g_p - g_q||), so it is computed for the 13 offsets o > 0 only and
   added at both ends of the pair: 13 exponentials per voxel instead of 26. A task (a few output
   planes) sums into its own padded num/den planes, span after span of a plane (vectorised loops).

The output is v_p + sum w (v_q - v_p) / sum w, as in the torch path (a constant volume stays
exactly as it is). Only float32 on CPU comes here; numba compiles the kernel on first use (cached
on disk) and ``AVAILABLE`` is False where numba does not import, in which case the torch path runs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

try:
    import numba
    from llvmlite import ir
    from numba import njit, prange
    from numba.core import types
    from numba.extending import intrinsic

    AVAILABLE = True
except ImportError:  # numba is a dependency, but a broken or missing install must not break the filters
    AVAILABLE = False

# Below this many voxels one thread: on a busy machine each parallel region's barrier can cost a
# scheduler time slice (measured: 10 ms on a 32x64x64 volume whose work takes 5 ms).
_PARALLEL_VOXELS = 1 << 20
_SPAN = 2048  # voxels per inner loop of the window: long enough to amortise its set-up, short enough for L1


def _spatial_weights(sigma_d: float) -> np.ndarray:
    """G(||o||; sigma_d) of the 27 offsets in (dz, dy, dx) order, the centre's (1) included."""
    scale = -1.0 / (2.0 * float(sigma_d) ** 2)
    offsets = [(dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return np.array([math.exp(scale * (dz * dz + dy * dy + dx * dx)) for dz, dy, dx in offsets], dtype=np.float32)


if AVAILABLE:

    @njit(cache=True, fastmath=True)
    def _pad_plane(src: np.ndarray, dest: np.ndarray) -> None:
        """dest (H+2, W+2) <- src (H, W) with a replicated 1-voxel border."""
        height, width = src.shape
        for y in range(height + 2):
            row = src[min(max(y - 1, 0), height - 1)]
            dest[y, 0] = row[0]
            dest[y, 1 : width + 1] = row
            dest[y, width + 1] = row[width - 1]

    @njit(cache=True, fastmath=True, error_model="numpy")
    def _sobel_plane(below: np.ndarray, here: np.ndarray, above: np.ndarray, scale: float, out: np.ndarray) -> None:
        """Sobel gradient (3, H+2, W+2) at one volume plane, times ``scale``/32, from three padded value planes.

        Flat unsigned indices, as in ``_window_row``, so the loops vectorise.
        """
        hp, wp = here.shape
        size = hp * wp
        lo, mid, hi = below.reshape(-1), here.reshape(-1), above.reshape(-1)
        flat = out.reshape(-1)
        sz = np.empty(size, dtype=here.dtype)  # z-smoothed
        dz = np.empty(size, dtype=here.dtype)  # z-differenced
        for i in range(size):
            u = np.uint64(i)
            sz[u] = lo[u] + 2.0 * mid[u] + hi[u]
            dz[u] = hi[u] - lo[u]
        factor = scale / 32.0
        row, one = np.uint64(wp), np.uint64(1)
        c1, c2 = np.uint64(size), np.uint64(2 * size)
        for y in range(1, hp - 1):
            for x in range(1, wp - 1):
                u = np.uint64(y * wp + x)
                up, down = u - row, u + row
                smooth_dz_up = dz[up - one] + 2 * dz[up] + dz[up + one]
                smooth_dz = dz[u - one] + 2 * dz[u] + dz[u + one]
                smooth_dz_down = dz[down - one] + 2 * dz[down] + dz[down + one]
                flat[u] = factor * (smooth_dz_up + 2 * smooth_dz + smooth_dz_down)
                smooth_up = sz[up - one] + 2 * sz[up] + sz[up + one]
                smooth_down = sz[down - one] + 2 * sz[down] + sz[down + one]
                flat[c1 + u] = factor * (smooth_down - smooth_up)
                diff_up, diff, diff_down = (
                    sz[up + one] - sz[up - one],
                    sz[u + one] - sz[u - one],
                    sz[down + one] - sz[down - one],
                )
                flat[c2 + u] = factor * (diff_up + 2 * diff + diff_down)
        # The gradient's own border: replicated from the volume's edge (as the torch path extends it)
        for c in range(3):
            for y in range(1, hp - 1):
                out[c, y, 0] = out[c, y, 1]
                out[c, y, wp - 1] = out[c, y, wp - 2]
            out[c, 0, :] = out[c, 1, :]
            out[c, hp - 1, :] = out[c, hp - 2, :]

    @njit(cache=True)
    def _plane(values: np.ndarray, extra: np.ndarray, index: int, step: int) -> np.ndarray:
        """Padded value plane ``index + step`` (-1 and n+2: the extra Sobel rows beyond the chunk's planes)."""
        k = index + step
        if k < 0:
            return extra[0]
        if k >= values.shape[0]:
            return extra[1]
        return values[k]

    @njit(cache=True, fastmath=True, parallel=True)
    def _pad_chunk(
        rows: np.ndarray, first_row: int, z0: int, z1: int, depth: int, ibf: bool, scale: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Padded values (B, n+2, H+2, W+2) of volume rows z0-1..z1 (clamped) and, for IBF, their gradient."""
        batch, _, height, width = rows.shape
        planes = z1 - z0 + 2
        values = np.empty((batch, planes, height + 2, width + 2), dtype=rows.dtype)
        features = np.empty((batch, planes if ibf else 1, 3, height + 2, width + 2), dtype=rows.dtype)
        # Values of volume rows z0-2..z1+1 (the Sobel's rows) first, then the gradient from them.
        extra = np.empty((batch, 2, height + 2, width + 2), dtype=rows.dtype)
        for task in prange(batch * (planes + 2)):
            b, k = task // (planes + 2), task % (planes + 2)
            z = min(max(z0 - 2 + k, 0), depth - 1) - first_row
            target = extra[b, 0] if k == 0 else (extra[b, 1] if k == planes + 1 else values[b, k - 1])
            _pad_plane(rows[b, z], target)
        if ibf:
            for task in prange(batch * planes):
                b, k = task // planes, task % planes
                # a plane outside the volume (z0-1 = -1, z1 = depth) repeats the gradient of the edge plane
                z = min(max(z0 - 1 + k, 0), depth - 1)
                here = k + z - (z0 - 1 + k)
                below = _plane(values[b], extra[b], here, max(z - 1, 0) - z)
                above = _plane(values[b], extra[b], here, min(z + 1, depth - 1) - z)
                _sobel_plane(below, values[b, here], above, scale, features[b, k])
        return values, features

    @intrinsic
    def _as_float32(typingctx, bits):
        """The float32 whose bits are the int32 ``bits`` (for 2**n in ``_exp``)."""

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())

        return types.float32(types.int32), codegen

    @njit(inline="always", fastmath=True, error_model="numpy")
    def _exp(x: float) -> float:
        """exp(x) for float32 x <= 0, relative error < 1e-7: inline, so the pair loops vectorize.

        (numba's math.exp is a call per element, 3x slower here.) 2**n * exp(r), |r| <= ln2/2,
        exp(r) by its Taylor series to r**7.
        """
        x = max(x, np.float32(-87.0))  # type: ignore[assignment]  # numba: float32 throughout
        # round to nearest for x <= 0 by truncation (int32 and float32 conversions vectorize; int64 would not)
        k = np.int32(x * np.float32(1.4426950408889634) - np.float32(0.5))
        n = np.float32(k)
        r = x - n * np.float32(0.693145751953125) - n * np.float32(1.428606765330187e-06)
        p = np.float32(1 / 5040)
        for c in (1 / 720, 1 / 120, 1 / 24, 1 / 6, 0.5, 1.0, 1.0):
            p = p * r + np.float32(c)
        return p * _as_float32((k + np.int32(127)) << np.int32(23))  # type: ignore[call-arg, return-value]  # a numba intrinsic; float32 is the float here

    @njit(cache=True, fastmath=True, error_model="numpy")
    def _pair_span(
        values: np.ndarray, features: np.ndarray, at: tuple[int, int, int, int, int, bool], ibf: bool, scale: float,
        spatial: np.ndarray, sums: tuple[np.ndarray, np.ndarray], scratch: tuple[np.ndarray, np.ndarray],
    ) -> None:  # fmt: skip
        """The 13 pairs (p, p+o), o > 0, of the voxels p of one flat span of a padded plane; each weight once.

        ``values`` and ``features`` are the flat padded chunk, ``sums`` the task's flat num/den; ``at``
        = (the span's first p in ``values``, the same in ``sums``, its length, padded plane size,
        padded row length, halo: only the o that reach the next plane). A pair that wraps around a
        row or plane end joins two border voxels (the padding is 1 wide), so it only adds garbage to
        the padding; every interior voxel gets its 26 terms exactly once. The weight is added at p
        here and at p+o in a second pass (with o = (0, 0, 1) the ends are one voxel apart, which
        would stop the loop vectorising); each loop reads and writes few arrays, so they vectorise.
        """
        num, den = sums
        w_span, wd_span = scratch
        base, lbase, length, size, wp, halo = at
        f_base = 3 * (base - base % size) + base % size  # p's position in channel 0 of its plane's features
        stride = np.uint64(size)
        for j in range(14, 27):  # the offsets after the centre (13) in (dz, dy, dx) order: o > 0
            dz, dy, dx = j // 9 - 1, (j // 3) % 3 - 1, j % 3 - 1
            if halo and dz == 0:
                continue
            k = dz * size + dy * wp + dx
            n = min(length, num.size - k - lbase)  # p + o inside the task's planes (and the chunk's)
            sw = spatial[j]
            # unsigned indices: numba's wrap-around of negative ones would turn every load into a gather
            p, q, lp, lq = np.uint64(base), np.uint64(base + k), np.uint64(lbase), np.uint64(lbase + k)
            if ibf:
                p0, q0 = np.uint64(f_base), np.uint64(f_base + 3 * dz * size + dy * wp + dx)
                p1, q1, p2, q2 = p0 + stride, q0 + stride, p0 + 2 * stride, q0 + 2 * stride
                for i in range(n):
                    u = np.uint64(i)
                    a = features[p0 + u] - features[q0 + u]
                    b = features[p1 + u] - features[q1 + u]
                    c = features[p2 + u] - features[q2 + u]
                    w = sw * _exp(-(a * a + b * b + c * c))
                    wd = w * (values[q + u] - values[p + u])
                    w_span[u], wd_span[u] = w, wd
                    num[lp + u] += wd
                    den[lp + u] += w
            else:
                for i in range(n):
                    u = np.uint64(i)
                    d = values[q + u] - values[p + u]
                    w = sw * _exp(-(scale * d) * (scale * d))
                    w_span[u], wd_span[u] = w, w * d
                    num[lp + u] += w * d
                    den[lp + u] += w
            for i in range(n):
                u = np.uint64(i)
                num[lq + u] -= wd_span[u]
                den[lq + u] += w_span[u]

    @njit(cache=True, parallel=True)
    def _window_chunk(values: np.ndarray, features: np.ndarray, ibf: bool, scale: float, spatial: np.ndarray,
                      group: int, out: np.ndarray) -> None:  # fmt: skip
        """Every padded plane 1..n of every item into out (B, n, H, W); one task per ``group`` output planes.

        A task sums its pairs in its own num/den planes, from the plane before its first (the halo:
        only the pairs reaching into the task's planes) to its last, so tasks share no memory and
        every voxel's terms are added in the same order whatever the grouping (parallel = serial).
        A plane goes in spans of ``_SPAN`` voxels: long loops, and a span's data stays in L1.
        """
        batch, planes, hp, wp = values.shape
        inner, size = planes - 2, hp * wp
        groups = (inner + group - 1) // group
        flat_v, flat_f = values.reshape(-1), features.reshape(-1)
        for task in prange(batch * groups):
            b, first = task // groups, 1 + (task % groups) * group
            last = min(inner + 1, first + group)
            num = np.zeros((last - first + 2) * size, dtype=values.dtype)
            den = np.zeros((last - first + 2) * size, dtype=values.dtype)
            scratch = (np.empty(_SPAN, dtype=values.dtype), np.empty(_SPAN, dtype=values.dtype))
            for s in range(first - 1, last):
                for start in range(0, size, _SPAN):
                    at = ((b * planes + s) * size + start, (s - first + 1) * size + start, min(_SPAN, size - start),
                          size, wp, s < first)  # fmt: skip
                    _pair_span(flat_v, flat_f, at, ibf, scale, spatial, (num, den), scratch)
            for z in range(first, last):
                for y in range(1, hp - 1):
                    row = (b * planes + z) * size + y * wp
                    local = (z - first + 1) * size + y * wp
                    dest = out[b, z - 1, y - 1]
                    for x in range(wp - 2):
                        dest[x] = flat_v[row + 1 + x] + num[local + 1 + x] / (1.0 + den[local + 1 + x])


def fused_filter_rows(
    rows: torch.Tensor, first_row: int, target: tuple[int, int], depth: int, ibf: bool, sigma_d: float, sigma_r: float
) -> torch.Tensor:
    """bilateral._filter_rows for float32 on CPU: volume rows ``target`` of ``rows`` (B, R, H, W) from ``first_row``."""
    z0, z1 = target
    array = np.ascontiguousarray(rows.numpy())
    batch, _, height, width = array.shape
    torch_threads = torch.get_num_threads()
    threads = max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]  # set at import
    if batch * (z1 - z0) * height * width < _PARALLEL_VOXELS:
        threads = 1
    try:
        numba.set_num_threads(threads)
        return torch.from_numpy(_filter(array, first_row, target, depth, ibf, sigma_d, sigma_r))
    finally:
        # numba's OpenMP layer shares libgomp with torch: its thread pool start resets torch's thread
        # count (measured: 1 -> 2), which changes training's numbers, so put torch's back
        torch.set_num_threads(torch_threads)


def _filter(
    array: np.ndarray, first_row: int, target: tuple[int, int], depth: int, ibf: bool, sigma_d: float, sigma_r: float
) -> np.ndarray:
    """The two kernels on a contiguous float32 array (B, R, H, W)."""
    z0, z1 = target
    batch, _, height, width = array.shape
    scale = np.float32(1.0 / (math.sqrt(2.0) * float(sigma_r)))
    # the Sobel gradient is scaled once, so a weight is exp(-||f_p - f_q||^2)
    # scale stays float32 (numba compiles the kernels for it); the stubs only know Python floats
    values, features = _pad_chunk(array, first_row, z0, z1, depth, ibf, scale if ibf else 1.0)  # type: ignore[arg-type]  # float32 on purpose (numba compiles for it); the stubs know Python floats
    out = np.empty((batch, z1 - z0, height, width), dtype=np.float32)
    planes = z1 - z0
    threads = numba.get_num_threads()
    # one group per item on one thread; else about 4 tasks per thread, at least 8 planes each (a
    # task's halo plane repeats 9 of the 13 pair terms of its neighbour's last plane)
    group = planes if threads == 1 else max(8, -(-batch * planes // (4 * threads)))
    _window_chunk(values, features, ibf, scale, _spatial_weights(sigma_d), min(group, planes), out)  # type: ignore[arg-type]  # float32 on purpose (numba compiles for it); the stubs know Python floats
    return out
