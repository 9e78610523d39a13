"""Denoisers and the noise model of Vox-UDA: NGM (Fourier high-pass), BF and IBF (3x3x3 bilateral filters).

``denoise`` is what training and pseudo-labelling call on z-scored batches; ``ibf-denoise`` and
``estimate-noise`` are the command-line faces of the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.filters.bilateral import (
    DEFAULT_SIGMA_D,
    DEFAULT_SIGMA_R,
    bilateral_filter,
    filter_volume,
    improved_bilateral_filter,
    sobel_gradient,
)
from voxuda_cli.filters.fourier import DEFAULT_KEEP_RATE, check_keep_rate, high_pass_residual
from voxuda_cli.filters.noise import (
    NoiseEstimate,
    NoiseSettings,
    add_ngm_noise,
    estimate_noise,
    ngm_denoise,
)

DENOISE_METHODS = ("ibf", "bf", "ngm", "none")


@dataclass
class DenoiseSettings:
    """Settings of `ibf-denoise` (the one source of its defaults)."""

    method: str = "ibf"
    sigma_d: float = DEFAULT_SIGMA_D
    sigma_r: float = DEFAULT_SIGMA_R
    keep_rate: float = DEFAULT_KEEP_RATE
    chunk: int | None = None
    zscore: bool = True

    def validate(self) -> None:
        check_method(self.method)
        check_keep_rate(self.keep_rate)
        for option, value in (("--sigma-d", self.sigma_d), ("--sigma-r", self.sigma_r)):
            if not float(value) > 0:
                raise VoxudaInputError(f"{option} {value}: must be a positive number")
        if self.chunk is not None and int(self.chunk) < 1:
            raise VoxudaInputError(f"--chunk {self.chunk}: must be at least 1 z-row (or leave it out: automatic)")


def check_method(method: str) -> str:
    if method not in DENOISE_METHODS:
        raise VoxudaInputError(f"--method {method}: unknown denoiser; use one of {', '.join(DENOISE_METHODS)}")
    return method


def denoise(
    volumes: torch.Tensor,
    method: str = "ibf",
    sigma_d: float = DEFAULT_SIGMA_D,
    sigma_r: float = DEFAULT_SIGMA_R,
    keep_rate: float = DEFAULT_KEEP_RATE,
) -> torch.Tensor:
    """Denoise z-scored volumes, (N, D, H, W) or (D, H, W), on their own device; no gradient.

    ``method``: ``ibf`` (improved bilateral filter), ``bf`` (bilateral filter), ``ngm`` (volume
    less its Fourier high-pass residual) or ``none`` (returned as given).
    """
    check_method(method)
    check_keep_rate(keep_rate)
    with torch.no_grad():
        if method == "ibf":
            return improved_bilateral_filter(volumes, sigma_d, sigma_r)
        if method == "bf":
            return bilateral_filter(volumes, sigma_d, sigma_r)
        if method == "ngm":
            return ngm_denoise(volumes, keep_rate)
        return volumes


__all__ = [
    "DENOISE_METHODS",
    "DenoiseSettings",
    "NoiseEstimate",
    "NoiseSettings",
    "add_ngm_noise",
    "bilateral_filter",
    "check_method",
    "denoise",
    "estimate_noise",
    "filter_volume",
    "high_pass_residual",
    "improved_bilateral_filter",
    "ngm_denoise",
    "sobel_gradient",
]
