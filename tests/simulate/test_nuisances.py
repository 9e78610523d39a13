"""Each nuisance function alone: it changes what it should, and is the identity when off."""

import numpy as np
import pytest
import torch

from voxuda_cli.simulate import nuisances as nz


def radial_power(image_stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean 2D power per radial frequency bin (cycles/pixel) of (..., d, d) images."""
    d = image_stack.shape[-1]
    power = (np.abs(np.fft.fft2(image_stack)) ** 2).reshape(-1, d, d).mean(axis=0)
    k = np.fft.fftfreq(d)
    radius = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    edges = np.linspace(0.05, 0.45, 9)
    centres = 0.5 * (edges[1:] + edges[:-1])
    return centres, np.array([power[(radius >= a) & (radius < b)].mean() for a, b in zip(edges[:-1], edges[1:])])


@pytest.mark.parametrize("slope", [-0.5, 1.0, 2.0])
def test_coloured_noise_has_the_requested_spectral_slope_and_unit_variance(slope: float) -> None:
    white = np.random.default_rng(0).standard_normal((40, 2, 32, 32)).astype(np.float32)
    coloured = nz.shape_noise(white, np.array([slope, 0.0]), np.array([1.0, 1.0]))
    centres, power = radial_power(coloured[:, 0])
    fitted = np.polyfit(np.log(centres), np.log(power), 1)[0]
    assert fitted == pytest.approx(-slope, abs=0.12)
    assert coloured[:, 0].std() == pytest.approx(1.0, abs=0.06)
    assert np.array_equal(coloured[:, 1], white[:, 1])  # off: untouched, bit for bit


def test_detector_noise_spectrum_follows_the_mtf_above_the_readout_floor() -> None:
    white = np.random.default_rng(1).standard_normal((40, 1, 32, 32)).astype(np.float32)
    shaped = nz.shape_noise(white, np.array([0.0]), np.array([0.3]))
    _, power = radial_power(shaped[:, 0])
    assert power[0] > 1.5 * power[-1]  # high frequencies damped, as the MTF
    frequency = nz.rfft_frequency(64)
    mtf = nz.detector_mtf(frequency, 0.3)
    assert float(mtf[0, 32]) == pytest.approx(0.3) and float(mtf[0, 0]) == 1.0


def test_b_factor_and_dose_filters_damp_high_frequencies_only() -> None:
    frequency = nz.rfft_frequency(32)
    envelope = nz.b_factor_envelope(frequency, 10.0, 800.0)
    assert float(envelope[0, 0]) == 1.0
    assert float(envelope[0, 16]) == pytest.approx(np.exp(-800 * 0.05**2 / 4))
    doses = nz.dose_symmetric_doses(np.arange(-60.0, 61.0, 3.0), 120.0)
    assert doses.argmin() == 20 and doses[21] < doses[19] < doses[22]  # 0 first, then +3, -3, +6
    assert doses.max() < 120.0
    filters = nz.dose_filter(frequency, 10.0, doses)
    assert filters.shape == (41, 32, 17)
    assert float(filters[20, 0, 16]) > float(filters[0, 0, 16])  # the first tilt keeps more signal
    assert torch.all(filters <= 1.0)


def test_smooth_background_puts_its_power_at_low_frequency() -> None:
    field = nz.smooth_background(np.random.default_rng(2), 32, 10.0, 300.0)
    assert field.std() == pytest.approx(1.0, abs=1e-5)
    power = np.abs(np.fft.fftn(field)) ** 2
    k = np.fft.fftfreq(32)
    radius = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    # white noise holds 0.4 % of its power there; the ramp's sawtooth (it is not periodic) leaks some out
    assert power[radius < 0.1].sum() > 0.75 * power.sum()


def test_membrane_is_a_bilayer_of_two_head_group_layers() -> None:
    # a flat-ish membrane (radius 1e5 A) through the box centre, normal along x
    density = nz.membrane_density(32, 5.0, np.array([-1e5, 0.0, 0.0]), 1e5, 40.0, 1.0)
    profile = density[16, 16, :]  # along x
    x = (np.arange(32) - 15.5) * 5.0
    peaks = x[[i for i in range(1, 31) if profile[i] > profile[i - 1] and profile[i] >= profile[i + 1]]]
    assert len(peaks) == 2 and abs(peaks[1] - peaks[0] - 40.0) <= 5.0
    assert profile.max() <= 0.81 * 5.0**3 * 1.01  # at most a voxel full of protein
    assert np.allclose(density[:, :, 0], density[0, 0, 0], rtol=1e-3)  # flat across y and z


def test_neighbour_centres_sit_at_the_requested_distance() -> None:
    rng = np.random.default_rng(3)
    centres = np.array([nz.neighbour_centre(rng, np.zeros(3), (50.0, 30.0), (0.8, 1.2)) for _ in range(500)])
    distance = np.linalg.norm(centres, axis=1)
    assert distance.min() >= 0.8 * 80 - 1e-9 and distance.max() <= 1.2 * 80 + 1e-9
    assert np.abs(centres.mean(axis=0)).max() < 8.0  # no preferred direction
