"""Noise Generation Module (NGM): estimate the target noise level sigma_t, add it to source volumes, denoise.

sigma_t^2 is the mean, over ``n_sampled`` randomly chosen (seeded) target volumes, of the variance
of each z-scored volume's high-frequency residual (``fourier.high_pass_residual``). Training adds a
fresh N(0, sigma_t^2) draw per voxel to each source volume; NGM denoising is ``x - x'``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxuda_cli import fields
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.fields import setting
from voxuda_cli.filters.fourier import DEFAULT_KEEP_RATE, check_keep_rate, crop_to_band, data_band, high_pass_residual
from voxuda_cli.normalise import zscore_tensor

log = logging.getLogger("voxuda.filters")

_BATCH_VOXELS = 2**24  # volumes per FFT batch are limited to about this many voxels (memory)


@dataclass
class NoiseSettings:
    """Settings of `estimate-noise` (the one source of its defaults)."""

    n_sampled: int = setting(10, "Volumes to draw (all of them, with a warning, if fewer).")
    keep_rate: float = fields.keep_rate()
    seed: int = fields.seed()
    input_voxel_size: float | None = fields.input_voxel_size()

    def validate(self) -> None:
        check_keep_rate(self.keep_rate)
        if int(self.n_sampled) < 1:
            raise VoxudaInputError(f"--n-sampled {self.n_sampled}: must be at least 1")


@dataclass
class NoiseEstimate:
    """sigma_t (and its square) with the volumes it came from and their own sigma."""

    sigma: float
    variance: float
    keep_rate: float
    n_sampled: int
    samples: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma,
            "variance": self.variance,
            "keep_rate": self.keep_rate,
            "n_sampled": self.n_sampled,
            "samples": [{"name": name, "sigma": sigma} for name, sigma in self.samples],
        }

    def sample_sigmas(self) -> np.ndarray:
        return np.array([sigma for _, sigma in self.samples], dtype=np.float64)

    def save(self, path: Path | str) -> Path:
        """Write the estimate as JSON, atomically."""
        from voxuda_cli.io.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: Path | str) -> NoiseEstimate:
        """Read a file written by ``save`` (or `voxuda estimate-noise -o`), with a clear error if it is not one."""
        path = Path(path)
        if not path.is_file():
            raise VoxudaInputError(f"{path}: noise file not found; make one with `voxuda estimate-noise -o`")
        try:
            document = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise VoxudaInputError(f"{path}: not a JSON noise estimate ({exc}); make one with estimate-noise") from exc
        try:
            return cls._from_dict(document)
        except (KeyError, TypeError, ValueError) as exc:
            raise VoxudaInputError(
                f"{path}: not a valid noise estimate ({exc}); expected keys sigma, variance, keep_rate, "
                "n_sampled, samples as written by `voxuda estimate-noise -o`"
            ) from exc

    @classmethod
    def _from_dict(cls, document: Any) -> NoiseEstimate:
        if not isinstance(document, dict):
            raise TypeError("top level is not an object")
        sigma = float(document["sigma"])
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"sigma {sigma} is not a finite non-negative number")
        variance = float(document.get("variance", sigma * sigma))
        samples = [(str(item["name"]), float(item["sigma"])) for item in document.get("samples", [])]
        return cls(
            sigma=sigma,
            variance=variance,
            keep_rate=float(document.get("keep_rate", DEFAULT_KEEP_RATE)),
            n_sampled=int(document.get("n_sampled", len(samples))),
            samples=samples,
        )


def sample_indices(n_total: int, n_sampled: int, seed: int) -> np.ndarray:
    """The seeded random choice of volumes to estimate from (all of them, in order, if too few)."""
    if n_sampled >= n_total:
        if n_sampled > n_total:
            log.warning("n_sampled %d > %d volumes available; using all %d", n_sampled, n_total, n_total)
        return np.arange(n_total)
    return np.random.default_rng(seed).choice(n_total, size=n_sampled, replace=False)


FULL_BAND = 0.97  # a data band above this fraction of Nyquist is the whole spectrum


def residual_variances(
    volumes: torch.Tensor, keep_rate: float = DEFAULT_KEEP_RATE, band: tuple[float, ...] | None = None
) -> torch.Tensor:
    """Variance of the high-pass residual of each z-scored volume; (N, D, H, W) -> (N,) float64.

    Volumes that hold data only below part of Nyquist (Fourier-upsampled, e.g. by extract) are
    measured at the sampling that band holds (their spectrum cropped to it): the top ``keep_rate``
    of an empty band would report a fraction of the noise (3x too little from 13.5 to 10 A).
    ``band`` is ``data_band(volumes)`` where the caller has it already (an FFT of the batch).
    """
    band = data_band(volumes) if band is None else band
    if min(band) < FULL_BAND:
        volumes = crop_to_band(volumes, band)
    # float64 where it is cheap; a whole tomogram in float32 (its variance needs no more)
    precise = volumes.shape[-3:].numel() <= _BATCH_VOXELS // 4
    standardised = zscore_tensor(volumes.to(torch.float64 if precise else torch.float32))
    residual = high_pass_residual(standardised, keep_rate)
    return residual.var(dim=(-3, -2, -1), unbiased=False)


def band_note(band: tuple[float, ...]) -> str | None:
    """What estimate-noise says of volumes with this data band (data_band), or None for measured ones."""
    if min(band) >= FULL_BAND:
        return None
    return (
        f"the volumes hold data up to {min(band):.2f} of Nyquist (Fourier-upsampled); noise is measured "
        "at the sampling that band holds, as on the native boxes"
    )


def estimate_noise_from_volumes(
    volumes: Iterable[tuple[str, np.ndarray | torch.Tensor]], keep_rate: float = DEFAULT_KEEP_RATE
) -> NoiseEstimate:
    """sigma_t from the given (name, 3D volume) pairs, all of them used; volumes may differ in shape."""
    keep_rate = check_keep_rate(keep_rate)
    samples: list[tuple[str, float]] = []
    for name, volume in volumes:
        tensor = torch.as_tensor(np.asarray(volume) if not isinstance(volume, torch.Tensor) else volume)
        _check_volume(tensor, name)
        band = data_band(tensor[None])
        if not samples and (note := band_note(band)) is not None:
            log.info("estimate-noise: %s", note)
        samples.append((name, math.sqrt(float(residual_variances(tensor[None], keep_rate, band)[0]))))
    if not samples:
        raise VoxudaInputError("estimate-noise: no volumes to estimate from")
    return _summarise(samples, keep_rate)


def estimate_noise(
    images: np.ndarray | torch.Tensor, names: Sequence[str], settings: NoiseSettings | None = None
) -> NoiseEstimate:
    """sigma_t of a target set (N, D, H, W): ``settings.n_sampled`` volumes drawn with ``settings.seed``."""
    settings = settings or NoiseSettings()
    settings.validate()
    if images.ndim != 4:
        raise VoxudaInputError(f"estimate-noise: images have shape {tuple(images.shape)}, expected (N, D, H, W)")
    if len(names) != images.shape[0]:
        raise VoxudaInputError(f"estimate-noise: {len(names)} names for {images.shape[0]} volumes")
    chosen = sample_indices(int(images.shape[0]), int(settings.n_sampled), int(settings.seed))
    per_batch = max(1, _BATCH_VOXELS // int(np.prod(images.shape[1:])))
    samples: list[tuple[str, float]] = []
    for start in range(0, len(chosen), per_batch):
        picked = chosen[start : start + per_batch]
        batch = torch.as_tensor(np.asarray(images[picked])) if not isinstance(images, torch.Tensor) else images[picked]
        for index, tensor in zip(picked, batch):
            _check_volume(tensor, str(names[index]))
        band = data_band(batch)
        if start == 0 and (note := band_note(band)) is not None:
            log.info("estimate-noise: %s", note)
        variances = residual_variances(batch, settings.keep_rate, band)
        samples.extend((str(names[i]), math.sqrt(float(v))) for i, v in zip(picked, variances))
    return _summarise(samples, settings.keep_rate)


def _check_volume(volume: torch.Tensor, name: str) -> None:
    if volume.ndim != 3:
        raise VoxudaInputError(f"{name}: shape {tuple(volume.shape)} is not a 3D volume")
    if not bool(torch.isfinite(volume).all()):
        raise VoxudaInputError(f"{name}: contains NaN or Inf values; clean the data")


def _summarise(samples: list[tuple[str, float]], keep_rate: float) -> NoiseEstimate:
    variance = float(np.mean([sigma * sigma for _, sigma in samples]))
    return NoiseEstimate(
        sigma=math.sqrt(variance), variance=variance, keep_rate=keep_rate, n_sampled=len(samples), samples=samples
    )


def add_ngm_noise(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x + N(0, sigma^2)``: a fresh draw for every voxel (a new call, new noise)."""
    device = generator.device if generator is not None else x.device
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device)
    return x + noise.to(x.device).mul_(float(sigma))


def ngm_denoise(x: torch.Tensor, keep_rate: float = DEFAULT_KEEP_RATE) -> torch.Tensor:
    """NGM denoising: ``x - x'``, the volume less its high-frequency residual (last three dims)."""
    return x - high_pass_residual(x, keep_rate)
