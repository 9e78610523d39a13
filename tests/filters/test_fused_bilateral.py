"""The fused numba kernel equals bilateral.py's torch path (the reference) within 1e-5."""

import numpy as np
import pytest
import torch

from voxuda_cli.filters import bilateral, fused_bilateral
from voxuda_cli.filters.bilateral import bilateral_filter, filter_volume, improved_bilateral_filter

FILTERS = {"bf": bilateral_filter, "ibf": improved_bilateral_filter}


def test_numba_is_installed() -> None:
    # numba is a dependency: without it every CPU filter silently takes the slower torch path
    assert fused_bilateral.AVAILABLE


@pytest.mark.parametrize("method", ["bf", "ibf"])
@pytest.mark.parametrize(
    ("shape", "sigma_d", "sigma_r"),
    [
        ((5, 6, 7), 120.0, 1.2),
        ((4, 3, 6), 1.0, 0.3),
        ((1, 4, 5), 2.0, 0.8),
        ((3, 1, 2), 1.0, 0.5),
        ((2, 3, 9, 10, 11), 120.0, 1.2),
    ],
)
def test_fused_equals_torch_path(method, shape, sigma_d, sigma_r) -> None:  # type: ignore[no-untyped-def]
    x = torch.from_numpy((np.random.default_rng(3).normal(size=shape) * 1.5).astype(np.float32))
    reference = FILTERS[method](x, sigma_d, sigma_r, kernel="torch")
    fused = FILTERS[method](x, sigma_d, sigma_r, kernel="fused")
    assert fused.shape == reference.shape and fused.dtype == torch.float32
    np.testing.assert_allclose(fused.numpy(), reference.numpy(), atol=1e-5)
    assert not np.allclose(fused.numpy(), x.numpy(), atol=1e-3)  # it did filter


@pytest.mark.parametrize("method", ["bf", "ibf"])
def test_fused_parallel_equals_serial(method, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    x = torch.from_numpy(np.random.default_rng(8).normal(size=(3, 7, 9, 10)).astype(np.float32))
    serial = FILTERS[method](x, kernel="fused")
    monkeypatch.setattr(fused_bilateral, "_PARALLEL_VOXELS", 1)  # numba's threads even on this small input
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        parallel = FILTERS[method](x, kernel="fused")
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(parallel.numpy(), serial.numpy())


def test_fused_keeps_constant_exactly() -> None:
    constant = torch.full((2, 6, 7, 8), 3.7)
    for method in FILTERS:
        assert torch.equal(FILTERS[method](constant, kernel="fused"), constant)


@pytest.mark.parametrize("method", ["bf", "ibf"])
def test_fused_chunks_equal_torch_whole(method) -> None:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(2).normal(size=(9, 8, 7)).astype(np.float32)
    whole = FILTERS[method](torch.from_numpy(x), kernel="torch").numpy()
    for chunk in (1, 2, 4, 9):  # filter_volume takes the fused kernel on CPU
        np.testing.assert_allclose(filter_volume(x, method, chunk=chunk), whole, atol=1e-5)


def test_kernel_choice() -> None:
    x32, x64 = torch.zeros(4, 4, 4), torch.zeros(4, 4, 4, dtype=torch.float64)
    assert bilateral._use_fused(x32, "auto") and not bilateral._use_fused(x32, "torch")
    assert not bilateral._use_fused(x64, "auto")  # float64 keeps the torch path (and its 1e-10 agreement)
    with pytest.raises(ValueError, match="float32"):
        improved_bilateral_filter(x64, kernel="fused")
    with pytest.raises(ValueError, match="kernel"):
        improved_bilateral_filter(x32, kernel="numba")


def test_fused_leaves_torch_threads_alone() -> None:
    # numba's OpenMP thread pool shares libgomp with torch; starting it must not change torch's count
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        improved_bilateral_filter(torch.zeros(40, 160, 170), kernel="fused")  # large enough to run in parallel
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("method", ["bf", "ibf"])
def test_fused_spans_and_task_groups_equal_torch_path(method, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # padded planes of 52 x 62 voxels: more than one span each; 20 planes: three tasks of 8 planes on 2 threads
    assert 52 * 62 > fused_bilateral._SPAN
    x = torch.from_numpy(np.random.default_rng(5).normal(size=(20, 50, 60)).astype(np.float32))
    reference = FILTERS[method](x, kernel="torch").numpy()
    serial = FILTERS[method](x, kernel="fused").numpy()
    monkeypatch.setattr(fused_bilateral, "_PARALLEL_VOXELS", 1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        grouped = FILTERS[method](x, kernel="fused").numpy()
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(serial, reference, atol=1e-5)
    np.testing.assert_array_equal(grouped, serial)
