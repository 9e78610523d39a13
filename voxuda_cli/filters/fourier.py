"""High-pass residual in Fourier space: keep the ``keep_rate`` fraction of highest-frequency coefficients.

The kept set is a spherical shell in normalised frequency (cycles per voxel along each axis), with
its inner radius chosen so that exactly ``round(keep_rate * D * H * W)`` coefficients of the full
3D DFT remain. Coefficients on the boundary radius are taken in conjugate pairs (k, -k), so at most
one pair is split; the residual is the real part of the inverse transform, which is computed on the
half spectrum (rfft) with the mask symmetrised (a split pair counts one half each way).
"""

from __future__ import annotations

import functools

import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.fields import DEFAULT_KEEP_RATE


def check_keep_rate(keep_rate: float, option: str = "--keep-rate") -> float:
    """Return ``keep_rate`` as a float if it lies strictly between 0 and 1, else raise VoxudaInputError."""
    value = float(keep_rate)
    if not 0.0 < value < 1.0:
        raise VoxudaInputError(f"{option} {keep_rate}: must lie strictly between 0 and 1 (paper: {DEFAULT_KEEP_RATE})")
    return value


def _frequency_radius2(shape: tuple[int, int, int]) -> torch.Tensor:
    """Squared normalised frequency of every coefficient of the full DFT, float64 (D, H, W)."""
    fz, fy, fx = (torch.fft.fftfreq(n, dtype=torch.float64) for n in shape)
    return fz[:, None, None] ** 2 + fy[None, :, None] ** 2 + fx[None, None, :] ** 2


def _conjugate_index(shape: tuple[int, int, int]) -> torch.Tensor:
    """Flat index of -k for every k of the full DFT grid (int64, flattened)."""
    axes = [(-torch.arange(n)) % n for n in shape]
    d, h, w = shape
    return (axes[0][:, None, None] * (h * w) + axes[1][None, :, None] * w + axes[2][None, None, :]).reshape(-1)


@functools.lru_cache(maxsize=8)
def _high_pass_mask_cpu(shape: tuple[int, int, int], keep_rate: float) -> torch.Tensor:
    radius2 = _frequency_radius2(shape).reshape(-1)
    total = radius2.numel()
    n_keep = int(round(keep_rate * total))
    mask = torch.zeros(total, dtype=torch.bool)
    if n_keep <= 0:
        return mask.reshape(shape)
    if n_keep >= total:
        return torch.ones(shape, dtype=torch.bool)
    # The n_keep-th largest radius is the shell's inner boundary; everything above it is kept.
    threshold = torch.kthvalue(radius2, total - n_keep + 1).values
    above = radius2 > threshold
    mask |= above
    need = n_keep - int(above.sum())
    if need > 0:
        tied = torch.nonzero(radius2 == threshold).reshape(-1)
        # Order the tied coefficients so conjugate partners are adjacent: at most one pair is split.
        pair_id = torch.minimum(tied, _conjugate_index(shape)[tied])
        order = torch.argsort(pair_id * 2 + (tied != pair_id).long(), stable=True)
        mask[tied[order[:need]]] = True
    return mask.reshape(shape)


def high_pass_mask(shape: tuple[int, int, int], keep_rate: float = DEFAULT_KEEP_RATE) -> torch.Tensor:
    """Boolean (D, H, W) mask over the full DFT that keeps exactly round(keep_rate * D*H*W) coefficients.

    The highest spatial frequencies are kept (a spherical shell around the corners of the
    frequency cube); the zero frequency is always the last to be kept.
    """
    keep_rate = check_keep_rate(keep_rate)
    shape = tuple(int(n) for n in shape)  # type: ignore[assignment]  # checked to be 3 long just below
    if len(shape) != 3:
        raise VoxudaInputError(f"high-pass mask: expected a 3D shape, got {shape}")
    return _high_pass_mask_cpu(shape, keep_rate)


@functools.lru_cache(maxsize=16)
def _half_spectrum_weights(shape: tuple[int, int, int], keep_rate: float, device: str) -> torch.Tensor:
    mask = high_pass_mask(shape, keep_rate).to(torch.float32)
    # Real part of ifft(F * M) equals irfft(rfft(x) * (M(k) + M(-k)) / 2) on the half spectrum.
    mirrored = torch.roll(torch.flip(mask, dims=(0, 1, 2)), shifts=(1, 1, 1), dims=(0, 1, 2))
    symmetric = (mask + mirrored) * 0.5
    return symmetric[..., : shape[2] // 2 + 1].contiguous().to(device)


def high_pass_residual(volumes: torch.Tensor, keep_rate: float = DEFAULT_KEEP_RATE) -> torch.Tensor:
    """The high-frequency residual x' of every volume over the last three dims (any leading dims).

    FFT, keep the ``keep_rate`` fraction of coefficients with the highest spatial frequency,
    inverse FFT (METHOD.md, NGM). Output has the input's shape and a float dtype.
    """
    if volumes.ndim < 3:
        raise VoxudaInputError(f"high-pass residual: expected (..., D, H, W), got shape {tuple(volumes.shape)}")
    shape = tuple(int(n) for n in volumes.shape[-3:])
    keep_rate = check_keep_rate(keep_rate)
    real = volumes if volumes.is_floating_point() else volumes.to(torch.float32)
    weights = _half_spectrum_weights(shape, keep_rate, str(real.device))
    spectrum = torch.fft.rfftn(real, dim=(-3, -2, -1))
    spectrum *= weights.to(spectrum.real.dtype)
    return torch.fft.irfftn(spectrum, s=shape, dim=(-3, -2, -1)).to(real.dtype)


# Fourier upsampling pads the spectrum with zeros: above the old Nyquist the power is round-off,
# ~1e-14 of the data's; measured data (noise everywhere) stays within a few orders of magnitude.
_EMPTY_POWER = 1e-8


def data_band(volumes: torch.Tensor) -> tuple[float, float, float]:
    """Per axis, the fraction of its highest frequency up to which ``volumes`` (..., D, H, W) hold data.

    1 for measured volumes; below 1 for Fourier-upsampled ones (e.g. boxes extracted at 10 A from a
    13.5 A tomogram hold data up to 10 / 13.5 = 0.74 of their Nyquist).
    """
    shape = tuple(int(n) for n in volumes.shape[-3:])
    precise = volumes.shape.numel() <= 1 << 22  # float32 for a whole tomogram: its FFT is the memory
    spectrum = torch.fft.rfftn(volumes.to(torch.float64 if precise else torch.float32), dim=(-3, -2, -1))
    power = spectrum.abs().pow(2).reshape(-1, *spectrum.shape[-3:]).mean(dim=0)
    del spectrum
    bands = []
    for axis, n in enumerate(shape):
        marginal = power.sum(dim=[a for a in range(3) if a != axis])
        if axis == 2:
            frequency = torch.fft.rfftfreq(n, dtype=torch.float64)
        else:
            frequency = torch.fft.fftfreq(n, dtype=torch.float64).abs()
        frequency = frequency / frequency.max()  # 1 at the highest frequency the axis has (odd n too)
        occupied = marginal > _EMPTY_POWER * marginal[1:].max().clamp_min(1e-30)
        occupied[0] = True
        bands.append(float(frequency[occupied].max()))
    return bands[0], bands[1], bands[2]


def crop_to_band(volumes: torch.Tensor, band: tuple[float, ...]) -> torch.Tensor:
    """``volumes`` at the sampling their data band holds: the spectrum cropped to ``band`` of Nyquist per axis."""
    from voxuda_cli.resample import fourier_resample

    shape = [max(4, int(round(int(n) * b))) for n, b in zip(volumes.shape[-3:], band)]
    return torch.from_numpy(fourier_resample(volumes.detach().cpu().float().numpy(), shape))
