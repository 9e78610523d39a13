"""Conventions and physics of the imaging step (projection axes, reconstruction, wedge, CTF, SNR)."""

import numpy as np
import pytest
import torch

from voxuda_cli.simulate.imaging import (
    Optics,
    apply_ctf,
    ctf_filters,
    fourier_power_in_wedge,
    image_batch,
    project,
    reconstruct,
    tilt_angles,
    tilt_rotations,
)


@pytest.fixture(autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blob(box: int = 32, centre_zyx: tuple[float, float, float] = (16, 16, 16), sigma: float = 1.5) -> np.ndarray:
    grid = np.indices((box,) * 3, dtype=np.float32)
    distance2 = sum((g - c) ** 2 for g, c in zip(grid, centre_zyx))
    return np.exp(-distance2 / (2 * sigma**2)).astype(np.float32)


def test_tilt_angles_include_both_ends() -> None:
    angles = tilt_angles((-60.0, 60.0), 3.0)
    assert len(angles) == 41 and angles[0] == -60.0 and angles[-1] == 60.0
    assert len(tilt_angles((-45.0, 60.0), 3.0)) == 36


def test_projection_tilts_about_y_with_a_known_sign() -> None:
    """A blob at x = +6, z = +4 voxels from the centre projects to x' = x cos t - z sin t; y stays
    (the detector's x axis is R(t) e_x = (cos t, 0, -sin t): R rotates the slice, not the volume)."""
    volume = torch.from_numpy(blob(centre_zyx=(20, 10, 22)))[None]
    for angle in (0.0, 30.0, -30.0, 60.0):
        image = project(volume, tilt_rotations(np.array([angle])))[0, 0].numpy()
        y, x = np.unravel_index(image.argmax(), image.shape)
        t = np.deg2rad(angle)
        assert y == 10
        assert x == pytest.approx(16 + 6 * np.cos(t) - 4 * np.sin(t), abs=0.75)


def test_library_back_projection_is_already_weighted() -> None:
    """backproject_2d_to_3d divides by the inserted slice weights: a full tilt range gives the volume
    back without a ramp filter (and a ramp on top makes it worse), so the simulator applies none."""
    from torch_fourier_slice import backproject_2d_to_3d

    volume = blob(centre_zyx=(12, 18, 21))
    rotations = tilt_rotations(np.arange(-90.0, 90.0, 1.5))
    projections = project(torch.from_numpy(volume)[None], rotations)[:, 0]
    direct = backproject_2d_to_3d(projections, rotations).numpy()
    ramp = torch.abs(torch.fft.fftfreq(32))
    ramped = torch.fft.ifft(torch.fft.fft(projections, dim=-1) * ramp, dim=-1).real
    with_ramp = backproject_2d_to_3d(ramped, rotations).numpy()
    correlation = np.corrcoef(direct.ravel(), volume.ravel())[0, 1]
    assert correlation > 0.995
    assert np.corrcoef(with_ramp.ravel(), volume.ravel())[0, 1] < correlation - 0.05


def test_reconstruct_matches_the_library_and_returns_the_volume() -> None:
    from torch_fourier_slice import backproject_2d_to_3d

    rng = np.random.default_rng(3)
    volumes = torch.from_numpy(rng.standard_normal((3, 32, 32, 32)).astype(np.float32))
    angles = tilt_angles((-60.0, 60.0), 3.0)
    rotations = tilt_rotations(angles)
    series = project(volumes, rotations)
    ours = reconstruct(series, angles)
    assert ours.shape == (3, 32, 32, 32)
    for channel in range(3):
        library = backproject_2d_to_3d(series[:, channel], rotations)
        assert np.corrcoef(ours[channel].ravel(), library.ravel())[0, 1] > 0.99
        # the library also "corrects" y, where a y-axis tilt interpolates nothing: ~8 % more variance
        assert 0.85 < float(ours[channel].std() / library.std()) < 1.0
    # full tilt range: the blob comes back where it was, at its own scale
    volume = blob(centre_zyx=(12, 18, 21))
    full = np.arange(-90.0, 90.0, 1.5)
    back = reconstruct(project(torch.from_numpy(volume)[None], tilt_rotations(full)), full)[0].numpy()
    assert np.corrcoef(back.ravel(), volume.ravel())[0, 1] > 0.995
    assert np.unravel_index(back.argmax(), back.shape) == (12, 18, 21)
    assert (back * volume).sum() / (volume * volume).sum() == pytest.approx(1.0, abs=0.1)


def test_multichannel_projection_equals_one_channel_at_a_time() -> None:
    volumes = torch.from_numpy(np.random.default_rng(4).standard_normal((4, 32, 32, 32)).astype(np.float32))
    rotations = tilt_rotations(np.array([-30.0, 0.0, 45.0]))
    together = project(volumes, rotations)
    for channel in range(4):
        alone = project(volumes[channel : channel + 1], rotations)[:, 0]
        torch.testing.assert_close(together[:, channel], alone, rtol=1e-4, atol=1e-3)


def _simulate(tilt_range, snr=0.5, seed=0, step=3.0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    angles = tilt_angles(tilt_range, step)
    density = blob(centre_zyx=(16, 15, 17), sigma=2.5)[None] * 100
    noise = rng.standard_normal((len(angles), 1, 32, 32)).astype(np.float32)
    return image_batch(density, np.array([3.0]), np.array([snr]), noise, angles, 10.0, Optics())


def test_missing_wedge_is_empty_in_fourier_space() -> None:
    result = _simulate((-60.0, 60.0))
    inside, outside = fourier_power_in_wedge(result.images[0], (-60.0, 60.0))
    assert inside < 0.05 * outside
    # an asymmetric range leaves the wedge on one side only: checks the tilt sign of the helper
    asymmetric = _simulate((-30.0, 60.0)).images[0]
    inside, outside = fourier_power_in_wedge(asymmetric, (-30.0, 60.0))
    mirror_inside, mirror_outside = fourier_power_in_wedge(asymmetric, (-60.0, 30.0))
    assert inside < 0.05 * outside
    assert mirror_inside > 0.2 * mirror_outside


def test_ctf_is_positive_at_low_frequency_and_phase_flip_makes_it_non_negative() -> None:
    ctf = ctf_filters(np.array([2.0, 5.0]), 64, 10.0, Optics())
    assert ctf.shape == (2, 64, 33)
    assert (ctf[:, 0, :2] > 0).all()
    assert (ctf < 0).any()  # contrast reversal beyond the first zero
    flipped = ctf_filters(np.array([2.0, 5.0]), 64, 10.0, Optics(ctf_correction="phase-flip"))
    assert (flipped >= 0).all()
    projections = torch.from_numpy(blob()[None, None, 16])  # (1 tilt, 1 sample, 32, 32)
    filtered = apply_ctf(projections, np.array([3.0]), 10.0, Optics())
    assert filtered.shape == projections.shape


def test_signal_is_protein_bright() -> None:
    result = _simulate((-60.0, 60.0), snr=100.0)
    density = blob(centre_zyx=(16, 15, 17), sigma=2.5)
    assert np.corrcoef(result.images[0].ravel(), density.ravel())[0, 1] > 0.5


@pytest.mark.parametrize("snr", [0.05, 1.0])
def test_snr_measured_from_two_noise_realisations(snr: float) -> None:
    """Independent check: with the same signal and two noise draws x1, x2, cov(x1, x2) estimates
    var(signal) and var(x) - cov the noise variance."""
    covariances, variances = [], []
    for pair in range(6):
        first = _simulate((-60.0, 60.0), snr=snr, seed=2 * pair).images[0].ravel().astype(np.float64)
        second = _simulate((-60.0, 60.0), snr=snr, seed=2 * pair + 1).images[0].ravel().astype(np.float64)
        covariances.append(np.cov(first, second)[0, 1])
        variances.append(0.5 * (first.var(ddof=1) + second.var(ddof=1)))
    measured = np.mean(covariances) / (np.mean(variances) - np.mean(covariances))
    assert measured == pytest.approx(snr, rel=0.25)


def test_an_empty_box_gets_the_noise_its_molecule_would_have_set() -> None:
    """snr_densities: the SNR is of other densities (the whole scene), the image of these (without the molecule)."""
    angles = tilt_angles((-60.0, 60.0), 6.0)
    density = blob(centre_zyx=(16, 15, 17), sigma=2.5)[None] * 100
    noise = np.random.default_rng(1).standard_normal((len(angles), 1, 32, 32)).astype(np.float32)
    whole = image_batch(density, np.array([3.0]), np.array([0.1]), noise, angles, 10.0, Optics())
    args = (np.array([3.0]), np.array([0.1]), noise, angles, 10.0, Optics())
    empty = image_batch(np.zeros_like(density), *args, snr_densities=density)
    np.testing.assert_allclose(empty.noise, whole.noise, rtol=1e-4, atol=1e-6)
    assert np.abs(empty.signal).max() < 1e-6 * np.abs(whole.signal).max() + 1e-12
