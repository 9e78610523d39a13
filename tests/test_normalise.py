"""The one normalisation: numpy, torch and streaming passes agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.normalise import VolumeStats, stream_stats, zscore, zscore_tensor


def test_zscore_each_volume_on_its_own() -> None:
    rng = np.random.default_rng(0)
    images = np.stack([rng.normal(5, 3, (8, 8, 8)), rng.normal(-2, 0.1, (8, 8, 8)), np.full((8, 8, 8), 7.0)])
    out = zscore(images)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:2].mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out[:2].std(axis=(1, 2, 3)), 1, atol=1e-5)
    assert not out[2].any()  # a constant volume becomes zeros, not NaN
    np.testing.assert_allclose(zscore(images, invert=True)[:2], -out[:2], atol=1e-5)


def test_torch_twin_matches_numpy() -> None:
    images = np.random.default_rng(1).normal(3, 2, (3, 6, 6, 6)).astype(np.float32)
    expected = zscore(images, invert=True)
    got = zscore_tensor(torch.from_numpy(images), invert=True, dtype=torch.float64)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def test_whole_tomogram_stats_replace_per_volume_ones() -> None:
    x = torch.full((1, 4, 4, 4), 5.0)
    np.testing.assert_allclose(zscore_tensor(x, stats=VolumeStats(mean=1.0, std=2.0)).numpy(), 2.0)


def test_stream_stats_matches_numpy_and_checks_finite() -> None:
    data = np.random.default_rng(2).normal(4, 3, (21, 5, 7)).astype(np.float32)
    stats = stream_stats(data, invert=True)
    assert stats.mean == pytest.approx(-float(data.astype(np.float64).mean()))
    assert stats.std == pytest.approx(float(data.astype(np.float64).std()))
    assert stream_stats(np.zeros((3, 3, 3), np.float32)).std == 1.0
    data[17, 2, 3] = np.nan
    with pytest.raises(VoxudaInputError, match="tomo.mrc: contains NaN"):
        stream_stats(data, source="tomo.mrc")
