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
  gradient across the tilted field: the box is a few tens of nm). torch-ctf's CTF is +A at zero
  frequency and positive up to the first zero (its sign convention), so protein comes out bright
  with no sign flip (a test checks the image follows the density).
  The projections are zero-padded to twice their size for the CTF, so the CTF's delocalisation
  (~5 pixels at 5 um, 10 A) does not wrap around. ``ctf_correction="none"`` leaves the CTF in the
  data, as the AITom simulator the paper used does (contrast reverses beyond the first zero);
  ``"phase-flip"`` multiplies by sign(CTF), as many tomogram pipelines do; ``"premultiply"``
  multiplies each tilt image by its CTF, as Warp/RELION subtomograms are (CTF-premultiplied: the
  signal carries CTF^2, the noise CTF, so both lose the band around every CTF zero).
* Noise: white Gaussian noise on every projection (after the CTF: shot noise is not filtered by
  the optics), one level for all tilts.
* Reconstruction: weighted Fourier back-projection, the method of torch-fourier-slice's
  ``backproject_2d_to_3d``: each projection's spectrum is inserted on its central slice and every
  Fourier voxel is divided by the summed insertion weights there (clamped at 1), which is the
  sampling-density compensation that R-weighting approximates. A ramp filter on top would weight
  twice (a full-range reconstruction of a blob correlates 0.9995 with it without a ramp, 0.88
  with one), so none is applied. ``reconstruct`` is that method specialised to a y tilt axis (10x
  faster); tests compare it with the library. (The library's ``_multichannel`` variant, 0.6.0,
  also applies its sinc^2 correction along the channel axis, scaling channels unequally.)
* SNR = var(signal) / var(noise) of the reconstruction, over the whole box. Reconstruction is
  linear, so signal and noise are reconstructed separately (one call, two channels per sample)
  and the noise is scaled to give exactly the requested SNR for that sample's realisation.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
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
    elif optics.ctf_correction == "premultiply":
        ctf = ctf * ctf
    return ctf


Envelope = Callable[[torch.Tensor], torch.Tensor]  # rfft radial frequency (cycles/pixel) -> (tilts|1, c, ...) filter


def apply_ctf(
    projections: torch.Tensor,
    defocus_um: np.ndarray,
    voxel_size: float,
    optics: Optics,
    envelope: Envelope | None = None,
) -> torch.Tensor:
    """Filter (tilts, c, d, d) projections by each sample's CTF (zero-padded to 2d to avoid wrap-around).

    ``envelope``, if given, multiplies the CTF (B-factor, dose and detector filters: nuisances.py).
    """
    from voxuda_cli.simulate.nuisances import rfft_frequency

    d = projections.shape[-1]
    pad = d // 2
    padded = torch.nn.functional.pad(projections, (pad, pad, pad, pad))
    size = padded.shape[-1]
    ctf = ctf_filters(defocus_um, size, voxel_size, optics)  # (c, size, size//2+1)
    if envelope is not None:
        ctf = ctf * envelope(rfft_frequency(size))  # (tilts | 1, c, size, size//2+1)
    spectrum = torch.fft.rfft2(padded) * ctf
    filtered = torch.fft.irfft2(spectrum, s=(size, size))
    return filtered[..., pad : pad + d, pad : pad + d].contiguous()


@functools.lru_cache(maxsize=8)
def _gridding(
    angles_deg: tuple[float, ...], size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear gridding of every tilt's 1D spectrum onto the padded (k_z, k_x) plane.

    Returns corner indices (4, tilts * P) into the flattened P x P plane (fftshifted, P = 2 size),
    corner weights (4, tilts * P), the summed weight per plane point (clamped at 1, as
    torch-fourier-slice does) and the sinc^2 correction of linear interpolation along one axis.
    """
    padded = 2 * size
    theta = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    k = np.fft.fftfreq(padded) * padded  # integer frequencies of the 1D FFT, unshifted order
    # the detector x axis at tilt t is (cos t, 0, -sin t): spectrum sample k lands at k_x = k cos t, k_z = -k sin t
    x = np.cos(theta)[:, None] * k[None, :] + padded // 2
    z = -np.sin(theta)[:, None] * k[None, :] + padded // 2
    x0, z0 = np.floor(x), np.floor(z)
    indices, weights = [], []
    for dz, wz in ((0, 1 - (z - z0)), (1, z - z0)):
        for dx, wx in ((0, 1 - (x - x0)), (1, x - x0)):
            zz, xx = z0 + dz, x0 + dx
            inside = (zz >= 0) & (zz < padded) & (xx >= 0) & (xx < padded)
            indices.append(np.where(inside, zz * padded + xx, 0).astype(np.int64).ravel())
            weights.append(np.where(inside, wz * wx, 0.0).ravel())
    index = torch.from_numpy(np.stack(indices))
    weight = torch.from_numpy(np.stack(weights))
    total = torch.zeros(padded * padded, dtype=torch.float64)
    for corner_index, corner_weight in zip(index, weight):
        total.index_add_(0, corner_index, corner_weight)
    sinc2 = torch.sinc(torch.fft.fftshift(torch.fft.fftfreq(padded, dtype=torch.float64))) ** 2
    return index, weight.to(torch.float32), total.clamp(min=1.0).to(torch.float32), sinc2.to(torch.float32)


def reconstruct(tilt_series: torch.Tensor, angles_deg: np.ndarray) -> torch.Tensor:
    """(tilts, c, d, d) -> (c, d, d, d): weighted Fourier back-projection for a tilt axis along y.

    The method of torch-fourier-slice's ``backproject_2d_to_3d`` (padding to 2d, linear insertion
    of each projection's spectrum on its central slice, division by the summed insertion weights
    clamped at 1, sinc^2 correction), specialised to single-axis tilt about y: y needs no
    interpolation, so every y row is an independent 2D problem and all rows share one gridding.
    ~10x faster, and it leaves out the library's sinc^2 correction along y, where nothing was
    interpolated (tests/simulate/test_imaging.py compares both).
    """
    tilts, channels, size, _ = tilt_series.shape
    padded = 2 * size
    pad = (padded - size) // 2
    index, weight, total, sinc2 = _gridding(tuple(float(a) for a in angles_deg), size)
    rows = torch.nn.functional.pad(tilt_series, (pad, padded - size - pad))
    spectra = torch.fft.fft(torch.fft.ifftshift(rows, dim=-1), dim=-1)  # (tilts, c, y, P)
    values = spectra.permute(0, 3, 1, 2).reshape(tilts * padded, channels * size)
    plane = torch.zeros(padded * padded, channels * size, dtype=values.dtype)
    for corner_index, corner_weight in zip(index, weight):
        plane.index_add_(0, corner_index, values * corner_weight[:, None])
    plane = (plane / total[:, None]).reshape(padded, padded, channels, size)  # (k_z, k_x, c, y)
    slices = torch.fft.ifft2(torch.fft.ifftshift(plane, dim=(0, 1)), dim=(0, 1)).real
    slices = torch.fft.fftshift(slices, dim=(0, 1))[pad : pad + size, pad : pad + size]  # (z, x, c, y)
    correction = sinc2[pad : pad + size, None] * sinc2[None, pad : pad + size]
    return (slices / correction[:, :, None, None]).permute(2, 0, 3, 1).contiguous()


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
    envelope: Envelope | None = None,
    snr_densities: np.ndarray | None = None,
) -> ImagingResult:
    """Simulate the subtomograms of a batch of clean densities (c, d, d, d).

    ``projection_noise`` is (tilts, c, d, d) standard normal noise (drawn by the caller from each
    sample's own random stream, so results do not depend on how samples are batched).
    ``snr_densities`` (c, d, d, d): the densities whose signal ``snr`` is of (default ``densities``):
    a box imaged without its molecule gets the noise its molecule's SNR would have set.
    """
    rotations = tilt_rotations(angles_deg)

    def imaged(volumes: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(volumes, dtype=np.float32))
        return apply_ctf(project(tensor, rotations), defocus_um, voxel_size, optics, envelope)

    clean = [imaged(densities)] + ([] if snr_densities is None else [imaged(snr_densities)])
    noise = torch.from_numpy(np.ascontiguousarray(projection_noise, dtype=np.float32))
    if optics.ctf_correction == "premultiply":  # the recorded noise is multiplied by the CTF once
        noise = apply_ctf(noise, defocus_um, voxel_size, dataclasses.replace(optics, ctf_correction="none"))
    reconstructed = reconstruct(torch.cat([*clean, noise], dim=1), angles_deg)
    count = len(densities)
    signal, unit_noise = reconstructed[:count], reconstructed[-count:]
    scale = noise_scale_for_snr(reconstructed[count : 2 * count] if len(clean) > 1 else signal, unit_noise, snr)
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
