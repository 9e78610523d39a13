"""Denoisers and the noise model of Vox-UDA: NGM (Fourier high-pass), BF and IBF (3x3x3 bilateral filters).

The denoisers are plug-ins (filters/denoisers/: ``register_denoiser``, ``make_denoiser``);
``denoise`` is the one-call shortcut on z-scored batches. ``ibf-denoise`` and ``estimate-noise``
are the command-line faces of the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from voxuda_cli import fields
from voxuda_cli.device import check_device
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.fields import setting
from voxuda_cli.filters.bilateral import (
    DEFAULT_SIGMA_D,
    DEFAULT_SIGMA_R,
    bilateral_filter,
    check_sigmas,
    filter_volume,
    improved_bilateral_filter,
    sobel_gradient,
)
from voxuda_cli.filters.denoisers import (
    DEFAULT_DENOISER,
    Denoiser,
    DenoiserParams,
    check_denoiser,
    make_denoiser,
    register_denoiser,
)
from voxuda_cli.filters.denoisers import names as denoiser_names
from voxuda_cli.filters.fourier import DEFAULT_KEEP_RATE, check_keep_rate, high_pass_residual
from voxuda_cli.filters.noise import (
    NoiseEstimate,
    NoiseSettings,
    add_ngm_noise,
    estimate_noise,
    ngm_denoise,
)


@dataclass
class DenoiseSettings:
    """Settings of `ibf-denoise` (the one source of its defaults)."""

    denoiser: str = setting(DEFAULT_DENOISER, "Denoiser: {choices}.", choices=denoiser_names)
    sigma_d: float = fields.sigma_d()
    sigma_r: float = fields.sigma_r()
    keep_rate: float = fields.keep_rate()
    chunk: int | None = setting(
        None, "z-rows per chunk for big volumes.", default_help="[default: chosen from free memory]"
    )
    zscore: bool = setting(True, "Z-score each volume before filtering (the output stays on the input's scale).")
    input_voxel_size: float | None = fields.input_voxel_size()
    shard: str | None = fields.shard()
    skip_existing: bool = fields.skip_existing()
    device: str = fields.device()

    def validate(self) -> None:
        check_denoiser(self.denoiser, "--denoiser")
        check_device(self.device)
        check_keep_rate(self.keep_rate)
        check_sigmas(self.sigma_d, self.sigma_r)
        if self.chunk is not None and int(self.chunk) < 1:
            raise VoxudaInputError(f"--chunk {self.chunk}: must be at least 1 z-row (or leave it out: automatic)")

    def build_denoiser(self) -> Denoiser:
        return make_denoiser(self.denoiser, DenoiserParams(self.sigma_d, self.sigma_r, self.keep_rate), "--denoiser")


def denoise(
    volumes: torch.Tensor,
    method: str = DEFAULT_DENOISER,
    sigma_d: float = DEFAULT_SIGMA_D,
    sigma_r: float = DEFAULT_SIGMA_R,
    keep_rate: float = DEFAULT_KEEP_RATE,
) -> torch.Tensor:
    """Denoise z-scored volumes, (N, D, H, W) or (D, H, W), on their own device; no gradient.

    ``method``: any registered denoiser (:func:`voxuda_cli.filters.denoisers.names`): ``ibf``
    (improved bilateral filter), ``bf`` (bilateral filter), ``ngm`` (volume less its Fourier
    high-pass residual), ``none`` (returned as given), or a plug-in.
    """
    check_keep_rate(keep_rate)
    return make_denoiser(method, DenoiserParams(sigma_d, sigma_r, keep_rate), "--method")(volumes)


__all__ = [
    "DEFAULT_DENOISER",
    "Denoiser",
    "DenoiserParams",
    "DenoiseSettings",
    "NoiseEstimate",
    "NoiseSettings",
    "add_ngm_noise",
    "bilateral_filter",
    "check_denoiser",
    "denoise",
    "estimate_noise",
    "filter_volume",
    "high_pass_residual",
    "improved_bilateral_filter",
    "make_denoiser",
    "ngm_denoise",
    "register_denoiser",
    "sobel_gradient",
]
