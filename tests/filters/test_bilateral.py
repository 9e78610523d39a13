import itertools
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.filters import bilateral
from voxuda_cli.filters.bilateral import (
    auto_chunk,
    bilateral_filter,
    filter_volume,
    improved_bilateral_filter,
    sobel_gradient,
)


def loop_filter(x: np.ndarray, method: str, sigma_d: float, sigma_r: float) -> np.ndarray:
    """METHOD.md's formulas, voxel by voxel, replicate borders (clamped indices)."""
    gradient = np.stack([ndi.sobel(x, axis=a, mode="nearest") / 32 for a in range(3)])
    out = np.zeros_like(x)
    for p in itertools.product(*(range(n) for n in x.shape)):
        num = den = 0.0
        for o in itertools.product((-1, 0, 1), repeat=3):
            q = tuple(min(max(p[i] + o[i], 0), x.shape[i] - 1) for i in range(3))
            if method == "bf":
                r = x[q] - x[p]
            else:
                r = np.linalg.norm(gradient[(slice(None), *p)] - gradient[(slice(None), *q)])
            w = np.exp(-sum(c * c for c in o) / (2 * sigma_d**2)) * np.exp(-(r**2) / (2 * sigma_r**2))
            num += w * x[q]
            den += w
        out[p] = num / den
    return out


FILTERS = {"bf": bilateral_filter, "ibf": improved_bilateral_filter}


@pytest.mark.parametrize("method", ["bf", "ibf"])
@pytest.mark.parametrize(("shape", "sigma_d", "sigma_r"), [((5, 6, 7), 120.0, 1.2), ((4, 3, 6), 1.0, 0.3)])
def test_equals_loop_implementation(method, shape, sigma_d, sigma_r) -> None:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(3).normal(size=shape) * 1.5
    expected = loop_filter(x, method, sigma_d, sigma_r)
    got64 = FILTERS[method](torch.from_numpy(x), sigma_d, sigma_r).numpy()
    got32 = FILTERS[method](torch.from_numpy(x).float(), sigma_d, sigma_r).numpy()
    np.testing.assert_allclose(got64, expected, atol=1e-10)
    np.testing.assert_allclose(got32, expected, atol=1e-5)
    assert not np.allclose(got64, x, atol=1e-3)  # it did filter


@pytest.mark.parametrize("method", ["bf", "ibf"])
def test_thin_volumes_equal_loop(method) -> None:  # type: ignore[no-untyped-def]
    for shape in [(1, 4, 5), (3, 1, 2), (2, 2, 2)]:
        x = np.random.default_rng(5).normal(size=shape)
        np.testing.assert_allclose(
            FILTERS[method](torch.from_numpy(x), 1.0, 0.5).numpy(), loop_filter(x, method, 1.0, 0.5), atol=1e-10
        )


@pytest.mark.parametrize("method", ["bf", "ibf"])
def test_blocks_and_threads_change_nothing(method, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(7).normal(size=(11, 5, 6))
    expected = loop_filter(x, method, 2.0, 0.8)
    threads = torch.get_num_threads()
    monkeypatch.setattr(bilateral, "_BLOCK_VOXELS_CPU", 60)  # two rows per block: many blocks, split over threads
    try:
        torch.set_num_threads(2)
        got = FILTERS[method](torch.from_numpy(x), 2.0, 0.8).numpy()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(got, expected, atol=1e-10)


def test_sobel_matches_scipy_and_ramp() -> None:
    x = np.random.default_rng(0).normal(size=(2, 5, 6, 7))
    gradient = sobel_gradient(torch.from_numpy(x)).numpy()
    assert gradient.shape == (2, 3, 5, 6, 7)
    for item, axis in itertools.product(range(2), range(3)):
        expected = ndi.sobel(x[item], axis=axis, mode="nearest") / 32
        np.testing.assert_allclose(gradient[item, axis], expected, atol=1e-12)
    ramp = np.indices((6, 6, 6))[2].astype(np.float32)
    g = sobel_gradient(torch.from_numpy(ramp)).numpy()
    np.testing.assert_allclose(g[2, :, :, 1:-1], 1.0)
    np.testing.assert_allclose(g[:2], 0.0)


@pytest.mark.parametrize("method", ["bf", "ibf"])
def test_constant_unchanged_and_range_kept(method) -> None:  # type: ignore[no-untyped-def]
    constant = torch.full((2, 6, 7, 8), 3.7)
    assert torch.equal(FILTERS[method](constant), constant)
    x = torch.from_numpy(np.random.default_rng(1).standard_t(2, size=(9, 10, 11)).astype(np.float32))
    y = FILTERS[method](x, 120.0, 5.0)
    span = float(x.max() - x.min())
    assert float(y.min()) >= float(x.min()) - 1e-6 * span and float(y.max()) <= float(x.max()) + 1e-6 * span


def test_batched_equals_single() -> None:
    x = torch.randn(2, 3, 5, 6, 4)
    y = improved_bilateral_filter(x)
    assert y.shape == x.shape
    for i, j in itertools.product(range(2), range(3)):
        assert torch.equal(y[i, j], improved_bilateral_filter(x[i, j]))


@pytest.mark.parametrize("method", ["bf", "ibf"])
def test_chunked_equals_unchunked_on_memmap(method, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(2).normal(size=(9, 8, 7)).astype(np.float32)
    x.tofile(tmp_path / "v.raw")
    mapped = np.memmap(tmp_path / "v.raw", dtype=np.float32, mode="r", shape=x.shape)
    whole = FILTERS[method](torch.from_numpy(x)).numpy()
    # chunk 1 puts a chunk border between every pair of rows: IBF's 2-row halo (Sobel + window) must cover it
    for chunk in (1, 2, 4, 9, None):
        np.testing.assert_array_equal(filter_volume(mapped, method, chunk=chunk), whole)


def test_filter_volume_zscore_and_out(tmp_path: Path) -> None:
    x = (np.random.default_rng(4).normal(size=(6, 7, 8)) * 30 + 100).astype(np.float32)
    mean, std = float(x.mean()), float(x.std())
    out = np.zeros_like(x)
    result = filter_volume(x, "ibf", chunk=2, out=out, zscore_stats=(mean, std))
    assert result is out
    expected = improved_bilateral_filter(torch.from_numpy((x - mean) / std)).numpy() * std + mean
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-3)


def test_bad_arguments() -> None:
    x = np.zeros((4, 4, 4), np.float32)
    with pytest.raises(VoxudaInputError, match="sigma-r"):
        improved_bilateral_filter(torch.from_numpy(x), sigma_r=0)
    with pytest.raises(VoxudaInputError, match="method"):
        filter_volume(x, "median")
    with pytest.raises(VoxudaInputError, match="chunk"):
        filter_volume(x, "ibf", chunk=0)
    with pytest.raises(VoxudaInputError):
        bilateral_filter(torch.zeros(4, 4))


def test_auto_chunk_respects_budget() -> None:
    rows = auto_chunk((256, 512, 512), torch.device("cpu"), budget_bytes=64 << 20)
    assert 1 <= rows < 256
    assert auto_chunk((8, 16, 16), torch.device("cpu"), budget_bytes=64 << 20) == 8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_cuda_matches_cpu() -> None:
    x = torch.randn(2, 12, 13, 14)
    for method in ("bf", "ibf"):
        np.testing.assert_allclose(FILTERS[method](x.cuda()).cpu().numpy(), FILTERS[method](x).numpy(), atol=1e-5)
