"""NGM as a denoiser: the volume less its Fourier high-pass residual (one FFT: whole volumes only)."""

from __future__ import annotations

import torch

from voxuda_cli.filters.denoisers import Denoiser, register_denoiser
from voxuda_cli.filters.fourier import check_keep_rate
from voxuda_cli.filters.noise import ngm_denoise


class NgmDenoiser(Denoiser):
    name = "ngm"

    def __init__(self, keep_rate: float) -> None:
        self.keep_rate = check_keep_rate(keep_rate)

    def apply(self, volumes: torch.Tensor) -> torch.Tensor:
        return ngm_denoise(volumes, self.keep_rate)


register_denoiser("ngm", lambda params: NgmDenoiser(params.keep_rate))
