import numpy as np
import pytest

from voxuda_cli.resample import (
    differs,
    fourier_resample,
    matched_sizes,
    resample_to_map,
    resampled_shape,
    resize_mask,
)


def gaussian(shape, spacing, centre_angstrom, sigma=20.0):
    axes = [np.arange(n) * spacing for n in shape]
    grid = np.meshgrid(*axes, indexing="ij")
    return np.exp(-sum((g - c) ** 2 for g, c in zip(grid, centre_angstrom)) / (2 * sigma**2)).astype(np.float32)


def test_box_resize_matches_the_analytic_blob():
    source = gaussian((40,) * 3, 13.5, (20 * 13.5,) * 3)
    out = fourier_resample(source, (54,) * 3)
    np.testing.assert_allclose(out, gaussian((54,) * 3, 10.0, (27 * 10.0,) * 3), atol=1e-4)


@pytest.mark.parametrize("n, m", [(31, 45), (32, 45), (44, 31), (32, 44)])
def test_voxel_0_stays_in_place_for_odd_and_even_sizes(n, m):
    # a blob at 150 A on a 10 A grid of n voxels, resampled to m voxels, is still at 150 A
    spacing = 10.0
    data = gaussian((n, 8, 8), spacing, (150.0, 35.0, 35.0), sigma=25.0)
    out = fourier_resample(data, (m, 8, 8))
    new_spacing = spacing * n / m
    origin = 0.0  # voxel 0 stays in place
    profile = out[:, 4, 4].astype(np.float64)
    positions = origin + np.arange(m) * new_spacing
    assert abs((profile * positions).sum() / profile.sum() - 150.0) < 0.5


def test_streamed_tomogram_equals_in_memory(tmp_path, monkeypatch):
    import voxuda_cli.resample as resample

    monkeypatch.setattr(resample, "SLAB_BYTES", 40_000)  # many slabs
    rng = np.random.default_rng(0)
    from scipy import ndimage

    # band-limited: the separable passes and the 3D crop differ only in how the Nyquist plane is split
    data = ndimage.gaussian_filter(rng.normal(size=(20, 30, 26)), 1.5, mode="wrap").astype(np.float32)
    shape = resampled_shape(data.shape, 13.5, 10.0)
    assert shape == (27, 40, 35)
    out = np.zeros(shape, np.float32)
    resample_to_map(data, out, tmp_path)
    np.testing.assert_allclose(out, fourier_resample(data, shape), atol=2e-4)
    back = np.zeros(data.shape, np.float32)
    resample_to_map(out, back, tmp_path)
    assert np.corrcoef(back.ravel(), data.ravel())[0, 1] > 0.99
    assert not list(tmp_path.iterdir())  # the scratch map is gone


def test_matched_sizes_and_tolerance():
    n_source, n_out = matched_sizes(32, 10.0 / 13.5, margin=4)
    assert n_source % 2 == 0 and n_out % 2 == 0 and n_out >= 40
    assert abs(n_source / n_out - 10.0 / 13.5) / (10.0 / 13.5) < 1e-3
    assert differs(10.2, 10.0) and not differs(10.05, 10.0)


def test_fourier_resample_keeps_a_smooth_signal() -> None:
    axis = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    signal = np.sin(axis)[:, None, None] * np.cos(axis)[None, :, None] * np.ones((1, 1, 64))
    down = fourier_resample(signal.astype(np.float32), (32, 32, 32))
    axis32 = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    expected = np.sin(axis32)[:, None, None] * np.cos(axis32)[None, :, None] * np.ones((1, 1, 32))
    np.testing.assert_allclose(down, expected, atol=1e-5)


def test_resize_mask_keeps_a_ball_a_ball() -> None:
    grid = np.indices((64,) * 3) - 31.5
    ball = (np.sqrt((grid**2).sum(0)) < 20).astype(np.uint8)
    small = resize_mask(ball, (32, 32, 32))
    assert small.dtype == np.uint8 and small.shape == (32, 32, 32)
    assert abs(small.sum() * 8 / ball.sum() - 1) < 0.05
