"""Nuisances of real tomograms that the simulator composes in: each a small function, off by default.

Every function is pure (inputs -> array), so the simulator decides where it acts and tests can
check each one alone. Where each acts (simulator.py composes them in this order):

* Scene (density, Da per voxel): neighbouring molecules (``neighbour_centre``: other copies of
  molecules around the central one, partly inside the box, at random distances; their density
  inside the box is labelled foreground like the central molecule's), and membranes
  (``membrane_density``: a curved lipid-bilayer-like sheet, two head-group layers, labelled
  background).
* Tilt images, signal (``signal_envelope`` on the rfft grid, with the CTF): a B-factor envelope
  exp(-B s^2 / 4), the exposure filter of dose weighting (Grant & Grigorieff 2015, dose-symmetric
  order) and a detector MTF.
* Tilt images, noise (``shape_noise``): coloured noise with power ~ f^-slope, and the noise
  spectrum of a detector with that MTF (shot noise blurred by the same point spread, plus white
  read-out noise, ``READOUT_FRACTION`` of the power).
* Reconstruction: a smooth background (``smooth_background``: a random linear ramp plus a
  low-frequency Gaussian random field, an ice-thickness gradient), contrast inversion, and the
  Fourier resampling from the simulation voxel size to the box's (voxel-size jitter).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from voxuda_cli.simulate.density import BLUR_VOXELS, PROTEIN_DENSITY_DA_PER_A3

if TYPE_CHECKING:  # torch is imported where used: importing the simulate package stays light for the CLI
    import torch

READOUT_FRACTION = 0.2  # white share of a detector's noise power (read-out / counting), the rest blurred by the MTF
LEAFLET_SEPARATION_A = (35.0, 45.0)  # head-group to head-group distance of a lipid bilayer
LEAFLET_SIGMA_A = 5.0  # Gaussian width of one head-group layer
# Grant & Grigorieff (2015) critical exposure Ne(s) = a s^b + c (e/A^2, s in 1/A), at 300 kV
_DOSE_A, _DOSE_B, _DOSE_C = 0.245, -1.665, 2.81


def uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """One draw uniform in [low, high] (exactly ``low`` when the range is a point: no draw wasted)."""
    low, high = float(bounds[0]), float(bounds[1])
    return low if high <= low else float(rng.uniform(low, high))


def log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = np.log(bounds[0]), np.log(bounds[1])
    return float(np.exp(rng.uniform(min(low, high), max(low, high))))


def random_direction(rng: np.random.Generator) -> np.ndarray:
    vector = rng.standard_normal(3)
    return vector / np.linalg.norm(vector)


def neighbour_centre(
    rng: np.random.Generator, centre: np.ndarray, radii: tuple[float, float], distance: tuple[float, float]
) -> np.ndarray:
    """Centre (A, x y z) of a neighbour: a random direction at ``u`` x (sum of both radii) from ``centre``.

    ``u`` uniform in ``distance``; below 1 the bounding spheres overlap, which molecules (not
    spheres) mostly tolerate: that is how close crowded molecules sit.
    """
    return np.asarray(centre, dtype=np.float64) + random_direction(rng) * uniform(rng, distance) * sum(radii)


def membrane_density(
    box: int, voxel_size: float, centre: np.ndarray, radius: float, separation: float, peak: float
) -> np.ndarray:
    """A spherical bilayer shell (two Gaussian head-group layers), Da per voxel, (z, y, x) float32.

    ``centre`` (A, x y z about the box centre) and ``radius`` set the curvature; ``peak`` is the
    head-group density as a fraction of a voxel full of protein. The layers are blurred by the
    same anti-alias blur as the molecules.
    """
    axis = (np.arange(box) - (box - 1) / 2.0) * voxel_size
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    r = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    sigma = np.hypot(LEAFLET_SIGMA_A, BLUR_VOXELS * voxel_size)
    profile = sum(np.exp(-0.5 * ((r - radius - side * separation / 2) / sigma) ** 2) for side in (-1.0, 1.0))
    full_voxel = PROTEIN_DENSITY_DA_PER_A3 * voxel_size**3
    return (peak * full_voxel * profile).astype(np.float32)


def rfft_frequency(size: int) -> torch.Tensor:
    """Radial frequency (cycles per pixel) of a (size, size) image's rfft2 grid: (size, size // 2 + 1)."""
    import torch

    ky = torch.fft.fftfreq(size, dtype=torch.float64)
    kx = torch.fft.rfftfreq(size, dtype=torch.float64)
    return torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def detector_mtf(frequency: torch.Tensor, at_nyquist: float) -> torch.Tensor:
    """A Gaussian detector MTF with value ``at_nyquist`` at 0.5 cycles per pixel (1 = a perfect detector)."""
    return (np.log(at_nyquist) * (frequency / 0.5) ** 2).exp()


def b_factor_envelope(frequency: torch.Tensor, voxel_size: float, b_factor: float) -> torch.Tensor:
    """exp(-B s^2 / 4), s = frequency / voxel size in 1/A (amplitude; B in A^2)."""
    return (-b_factor * (frequency / voxel_size) ** 2 / 4.0).exp()


def dose_symmetric_doses(angles_deg: np.ndarray, total_dose: float) -> np.ndarray:
    """Exposure (e/A^2) accumulated before each tilt, collected dose-symmetrically from the lowest |tilt|.

    Order: by |tilt|, the positive side first at equal |tilt| (Hagen et al. 2017, without their
    groups of two); each tilt gets total_dose / tilts.
    """
    angles = np.asarray(angles_deg, dtype=np.float64)
    order = np.lexsort((-angles, np.abs(angles)))
    per_tilt = total_dose / len(angles)
    before = np.empty(len(angles))
    before[order] = per_tilt * np.arange(len(angles))
    return before + per_tilt / 2  # mid-exposure of each tilt


def dose_filter(frequency: torch.Tensor, voxel_size: float, doses: np.ndarray) -> torch.Tensor:
    """Exposure filter exp(-N / (2 Ne(s))) per tilt: (tilts, *frequency.shape)."""
    s = (frequency / voxel_size).clamp(min=1e-4)
    critical = _DOSE_A * s**_DOSE_B + _DOSE_C
    dose = frequency.new_tensor(np.asarray(doses, dtype=np.float64))
    return (-dose.reshape(-1, *([1] * frequency.dim())) / (2 * critical)).exp()


def signal_envelope(
    frequency: torch.Tensor,
    voxel_size: float,
    b_factors: Sequence[float],
    mtf_nyquist: Sequence[float],
    doses: Sequence[np.ndarray] | None,
) -> torch.Tensor:
    """Product of each sample's B-factor envelope, MTF and (if ``doses``, one array per sample) dose filter.

    Shape (tilts or 1, samples, *frequency.shape), float32, to multiply the tilt images' spectra.
    """
    import torch

    per_sample = torch.stack(
        [
            b_factor_envelope(frequency, voxel_size, float(b)) * detector_mtf(frequency, float(m))
            for b, m in zip(b_factors, mtf_nyquist)
        ]
    )[None]
    if doses is not None:
        per_sample = per_sample * torch.stack([dose_filter(frequency, voxel_size, d) for d in doses], 1)
    return per_sample.to(torch.float32)


def noise_filter(frequency: torch.Tensor, slope: float, mtf_nyquist: float) -> torch.Tensor:
    """Amplitude filter of tilt-image noise: f^(-slope / 2) (power ~ f^-slope) times the detector's noise shape.

    Frequencies below the lowest non-zero one are held at it (the field has no infinite DC power).
    The result is scaled to unit mean power, so the noise keeps unit variance.
    """
    floor = float(frequency[frequency > 0].min())
    shape = frequency.clamp(min=floor) ** (-slope / 2.0)
    if mtf_nyquist < 1.0:
        mtf = detector_mtf(frequency, mtf_nyquist)
        shape = shape * ((1 - READOUT_FRACTION) * mtf**2 + READOUT_FRACTION).sqrt()
    return shape / (shape**2).mean().sqrt()


def shape_noise(noise: np.ndarray, slopes: np.ndarray, mtf_nyquist: np.ndarray) -> np.ndarray:
    """Colour white (tilts, samples, d, d) noise per sample (spectral slope, detector noise spectrum).

    Samples with slope 0 and a perfect detector are returned untouched (bit for bit).
    """
    import torch

    out = np.array(noise, dtype=np.float32, copy=True)
    frequency = rfft_frequency(noise.shape[-1])
    for index, (slope, mtf) in enumerate(zip(slopes, mtf_nyquist)):
        if slope == 0.0 and mtf >= 1.0:
            continue
        spectrum = torch.fft.rfft2(torch.from_numpy(out[:, index]).double())
        coloured = torch.fft.irfft2(spectrum * noise_filter(frequency, float(slope), float(mtf)), s=noise.shape[-2:])
        out[:, index] = coloured.to(torch.float32).numpy()
    return out


def smooth_background(rng: np.random.Generator, box: int, voxel_size: float, length: float) -> np.ndarray:
    """A smooth field of unit standard deviation: a random linear ramp plus a Gaussian random field.

    The field is white noise low-passed by a Gaussian of correlation length ``length`` (A), so its
    power sits below 1 / length; the ramp (random direction, as an ice-thickness gradient) and
    the field get equal variance.
    """
    white = rng.standard_normal((box,) * 3)
    k = np.fft.fftfreq(box) / voxel_size
    kz, ky, kx = np.meshgrid(k, k, np.fft.rfftfreq(box) / voxel_size, indexing="ij")
    lowpass = np.exp(-2 * (np.pi * length) ** 2 * (kz**2 + ky**2 + kx**2))
    field = np.fft.irfftn(np.fft.rfftn(white) * lowpass, s=(box,) * 3)
    axis = np.arange(box) - (box - 1) / 2.0
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    direction = random_direction(rng)
    ramp = direction[0] * x + direction[1] * y + direction[2] * z
    total = field / max(field.std(), 1e-12) + ramp / ramp.std()
    return ((total - total.mean()) / total.std()).astype(np.float32)
