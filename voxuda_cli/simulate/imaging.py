"""Tilt series, CTF, noise at a given SNR, and the reconstruction: density in, subtomogram out.

Everything runs on batches of samples that share one tilt geometry: volumes are (c, d, d, d),
tilt series (tilts, c, d, d). Conventions (checked by tests/simulate/test_imaging.py):

* Rotation matrices act on (x, y, z) column vectors (torch-fourier-slice's default). The tilt
  axis is y (volume axis 1); the beam runs along z (volume axis 0) at tilt 0, so the missing
  wedge is the cone about k_z, within the (k_x, k_z) plane, of half-angle 90 - max|tilt|.
  R(t) rotates the central slice: the detector axes at tilt t are R e_x = (cos t, 0, -sin t) and
  e_y, so a point (x, y, z) lands at (x cos t - z sin t, y).
* Projection is torch-fourier-slice's ``project_3d_to_2d`` (central slices of the padded 3D DFT).
* CTF: torch-ctf's ``calculate_ctf_2d``, one defocus per sample for all its tilts (no defocus
  gradient across the tilted field: the box is a few tens of nm). torch-ctf's CTF is positive at
  low frequency (+A cos chi + sqrt(1 - A^2) sin chi), so protein comes out bright with no sign flip.
  The projections are zero-padded to twice their size for the CTF, so the CTF's delocalisation
  (~5 pixels at 5 um, 10 A) does not wrap around. ``ctf_correction="none"`` leaves the CTF in the
  data, as the AITom simulator the paper used does (contrast reverses beyond the first zero);
  ``"phase-flip"`` multiplies by sign(CTF), as many tomogram pipelines do.
* Noise: white Gaussian noise on every projection (after the CTF: shot noise is not filtered by
  the optics), one level for all tilts.
* Reconstruction: ``backproject_2d_to_3d``. Note: it is not a plain back-projection — it divides
  every 3D Fourier voxel by the summed weights of the slices inserted there (clamped at 1), which
  is the sampling-density compensation that R-weighting approximates. A ramp filter on top would
  weight twice (a full-range reconstruction of a blob correlates 0.9995 with the blob without a
  ramp, 0.88 with one), so no ramp is applied; the test keeps that claim honest.
* SNR = var(signal) / var(noise) of the reconstruction, over the whole box. Reconstruction is
  linear, so signal and noise are reconstructed separately (one call, two channels per sample)
  and the noise is scaled to give exactly the requested SNR for that sample's realisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Optics:
    """Microscope settings (defocus is per sample, so it is not here)."""

    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.07
    ctf_correction: str = "none"


def tilt_angles(tilt_range: tuple[float, float], step: float) -> np.ndarray:
    """Tilt angles in degrees from ``tilt_range[0]`` to ``tilt_range[1]`` (inclusive) every ``step``."""
    low, high = float(tilt_range[0]), float(tilt_range[1])
    count = int(np.floor((high - low) / step + 1e-6)) + 1
    return low + step * np.arange(count, dtype=np.float64)


def tilt_rotations(angles_deg: np.ndarray) -> torch.Tensor:
    """Rotations about y (xyz convention), one per tilt: (tilts, 3, 3) float32."""
    theta = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    c, s = np.cos(theta), np.sin(theta)
    zero, one = np.zeros_like(c), np.ones_like(c)
    matrices = np.stack([np.stack([c, zero, s], -1), np.stack([zero, one, zero], -1), np.stack([-s, zero, c], -1)], -2)
    return torch.from_numpy(matrices.astype(np.float32))


def project(volumes: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Projections of (c, d, d, d) volumes: (tilts, c, d, d)."""
    from torch_fourier_slice import project_3d_to_2d_multichannel

    return project_3d_to_2d_multichannel(volumes, rotations)


def ctf_filters(defocus_um: np.ndarray, size: int, voxel_size: float, optics: Optics) -> torch.Tensor:
    """rfft CTFs (c, size, size // 2 + 1), one per sample's defocus; sign(CTF) when phase-flipping."""
    from torch_ctf import calculate_ctf_2d

    ctf = calculate_ctf_2d(
        defocus=torch.as_tensor(np.asarray(defocus_um, dtype=np.float32)),
        astigmatism=0.0,
        astigmatism_angle=0.0,
        voltage=optics.voltage_kv,
        spherical_aberration=optics.spherical_aberration_mm,
        amplitude_contrast=optics.amplitude_contrast,
        phase_shift=0.0,
        pixel_size=voxel_size,
        image_shape=(size, size),
        rfft=True,
        fftshift=False,
    ).to(torch.float32)
    if optics.ctf_correction == "phase-flip":
        ctf = ctf * torch.sign(ctf)
    return ctf


def apply_ctf(projections: torch.Tensor, defocus_um: np.ndarray, voxel_size: float, optics: Optics) -> torch.Tensor:
    """Filter (tilts, c, d, d) projections by each sample's CTF (zero-padded to 2d to avoid wrap-around)."""
    d = projections.shape[-1]
    pad = d // 2
    padded = torch.nn.functional.pad(projections, (pad, pad, pad, pad))
    size = padded.shape[-1]
    ctf = ctf_filters(defocus_um, size, voxel_size, optics)  # (c, size, size//2+1)
    spectrum = torch.fft.rfft2(padded) * ctf
    filtered = torch.fft.irfft2(spectrum, s=(size, size))
    return filtered[..., pad : pad + d, pad : pad + d].contiguous()


def reconstruct(tilt_series: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """(tilts, c, d, d) -> (c, d, d, d) by weighted Fourier back-projection (see the module docstring)."""
    from torch_fourier_slice import backproject_2d_to_3d_multichannel

    return backproject_2d_to_3d_multichannel(tilt_series, rotations)


def noise_scale_for_snr(signal: torch.Tensor, unit_noise: torch.Tensor, snr: np.ndarray) -> torch.Tensor:
    """Per-sample factor k so that var(signal) / var(k * noise) = snr; inputs (c, d, d, d)."""
    var_signal = signal.flatten(1).double().var(dim=1)
    var_noise = unit_noise.flatten(1).double().var(dim=1)
    ratio = var_signal / (torch.as_tensor(np.asarray(snr), dtype=torch.float64) * var_noise)
    return torch.sqrt(ratio).to(torch.float32)


@dataclass
class ImagingResult:
    """Reconstructions of one batch: ``images`` = signal + scaled noise; all (c, d, d, d) numpy float32."""

    images: np.ndarray
    signal: np.ndarray
    noise: np.ndarray  # the scaled noise alone (images - signal)


def image_batch(
    densities: np.ndarray,
    defocus_um: np.ndarray,
    snr: np.ndarray,
    projection_noise: np.ndarray,
    angles_deg: np.ndarray,
    voxel_size: float,
    optics: Optics,
) -> ImagingResult:
    """Simulate the subtomograms of a batch of clean densities (c, d, d, d).

    ``projection_noise`` is (tilts, c, d, d) standard normal noise (drawn by the caller from each
    sample's own random stream, so results do not depend on how samples are batched).
    """
    rotations = tilt_rotations(angles_deg)
    volumes = torch.from_numpy(np.ascontiguousarray(densities, dtype=np.float32))
    clean = apply_ctf(project(volumes, rotations), defocus_um, voxel_size, optics)
    noise = torch.from_numpy(np.ascontiguousarray(projection_noise, dtype=np.float32))
    both = reconstruct(torch.cat([clean, noise], dim=1), rotations)
    count = volumes.shape[0]
    signal, unit_noise = both[:count], both[count:]
    scale = noise_scale_for_snr(signal, unit_noise, snr)
    scaled_noise = unit_noise * scale[:, None, None, None]
    return ImagingResult(images=(signal + scaled_noise).numpy(), signal=signal.numpy(), noise=scaled_noise.numpy())


def fourier_power_in_wedge(
    volume: np.ndarray, tilt_range: tuple[float, float], margin_deg: float = 10.0
) -> tuple[float, float]:
    """Mean Fourier power of a (z, y, x) volume inside the missing wedge and outside it.

    A frequency (k_x, k_y, k_z) is measured by the tilt whose central slice holds it, the tilt
    theta with tan(theta) = -k_z / k_x (torch-fourier-slice's sign, checked by a test with an
    asymmetric tilt range). Inside: theta more than ``margin_deg`` beyond the tilt range;
    outside: more than ``margin_deg`` within it. Only 0.1 < |(k_x, k_z)| < 0.45 cycles per voxel.
    """
    power = np.abs(np.fft.fftn(volume - volume.mean())) ** 2
    kz, _, kx = np.meshgrid(*(np.fft.fftfreq(n) for n in volume.shape), indexing="ij")
    in_plane = np.sqrt(kz**2 + kx**2)
    band = (in_plane > 0.1) & (in_plane < 0.45)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.degrees(np.arctan(-kz / kx))
    theta = np.where(kx == 0, 90.0, theta)
    low, high = float(min(tilt_range)), float(max(tilt_range))
    inside = band & ((theta > high + margin_deg) | (theta < low - margin_deg))
    outside = band & (theta > low + margin_deg) & (theta < high - margin_deg)
    return float(power[inside].mean()), float(power[outside].mean())
