"""The one normalisation: numpy, torch and streaming passes agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.normalise import (
    STD_FLOOR,
    LocallyNormalised,
    LocalStats,
    VolumeStats,
    stream_stats,
    zscore,
    zscore_tensor,
)


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


def test_local_stats_are_the_blocks_means_and_stds() -> None:
    rng = np.random.default_rng(2)
    volume = rng.normal(0, 1, (20, 24, 40)).astype(np.float32)
    volume[:, :, 32:] = 5.0  # a constant border: its std floored, not 0
    whole = stream_stats(volume, block=16)
    stats = _local(whole)
    assert stats.mean.shape == (2, 2, 3)
    block = volume[16:20, 0:16, 16:32].astype(np.float64)  # a partial block (4 rows)
    assert stats.mean[1, 0, 1] == pytest.approx(block.mean()) and stats.std[1, 0, 1] == pytest.approx(block.std())
    assert stats.mean[0, 1, 2] == pytest.approx(5.0)
    assert stats.std[0, 1, 2] == pytest.approx(STD_FLOOR * volume.std(), rel=1e-3)
    np.testing.assert_allclose(stats.centres[0], [7.5, 17.5])  # the partial block's centre is its own
    inverted = stream_stats(volume, invert=True, block=16)
    np.testing.assert_allclose(_local(inverted).mean, -stats.mean)
    # the volume's own statistics come from the same pass, as without blocks
    assert whole.mean == pytest.approx(float(volume.astype(np.float64).mean()))
    assert whole.std == pytest.approx(stream_stats(volume).std) and inverted.mean == pytest.approx(-whole.mean)
    assert stream_stats(volume).local is None
    np.testing.assert_allclose(_local(whole.negated()).mean, _local(inverted).mean)  # a flip after the pass


def test_local_normalisation_removes_a_slow_ramp_whatever_the_window() -> None:
    rng = np.random.default_rng(3)
    shape = (64, 64, 96)
    ramp = np.linspace(-4, 4, shape[2], dtype=np.float32)[None, None, :]
    volume = (rng.normal(0, 1, shape) * 2 + 10 + ramp).astype(np.float32)
    view = LocallyNormalised(volume, _local(stream_stats(volume, block=32)))
    whole = view[:, :, :]
    assert view.shape == shape and whole.dtype == np.float32
    # z-scored across the ramp between the outer block centres (16 and 80; the fields are held flat
    # beyond them): every slab has mean ~0 and std ~1, where the raw slabs' means span 10 +- 3
    for x0 in range(16, 80, 16):
        slab = whole[:, :, x0 : x0 + 16]
        assert abs(float(slab.mean())) < 0.1 and abs(float(slab.std()) - 1) < 0.1
    np.testing.assert_allclose(view[8:40, 16:48, 50:90], whole[8:40, 16:48, 50:90], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(view[10:20], whole[10:20], rtol=1e-5, atol=1e-5)  # one slice, as bands are read
    inverted = LocallyNormalised(volume, _local(stream_stats(volume, invert=True, block=32)), invert=True)
    np.testing.assert_allclose(inverted[:, :, :], -whole, rtol=1e-5, atol=1e-5)


def _local(stats: VolumeStats) -> LocalStats:
    assert stats.local is not None
    return stats.local
