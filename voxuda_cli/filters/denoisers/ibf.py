"""IBF, the improved bilateral filter of Vox-UDA (a 3x3x3 window; range term on the Sobel gradient)."""

from __future__ import annotations

import numpy as np
import torch

from voxuda_cli.filters.bilateral import bilateral_filter, check_sigmas, filter_volume, improved_bilateral_filter
from voxuda_cli.filters.denoisers import Denoiser, register_denoiser
from voxuda_cli.normalise import VolumeStats
from voxuda_cli.progress import Progress


class Bilateral(Denoiser):
    """BF or IBF with fixed sigmas; files stream through in z-chunks with a halo (same result as whole)."""

    def __init__(self, name: str, sigma_d: float, sigma_r: float) -> None:
        check_sigmas(sigma_d, sigma_r)
        self.name, self.sigma_d, self.sigma_r = name, float(sigma_d), float(sigma_r)

    def apply(self, volumes: torch.Tensor) -> torch.Tensor:
        if self.name == "ibf":
            return improved_bilateral_filter(volumes, self.sigma_d, self.sigma_r)
        return bilateral_filter(volumes, self.sigma_d, self.sigma_r)

    def filter_volume(
        self,
        volume: np.ndarray,
        out: np.ndarray,
        device: torch.device,
        stats: VolumeStats | None = None,
        chunk: int | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        zscore_stats = None if stats is None else (stats.mean, stats.std)
        return filter_volume(volume, self.name, self.sigma_d, self.sigma_r, chunk, device, out, zscore_stats, progress)


register_denoiser("ibf", lambda params: Bilateral("ibf", params.sigma_d, params.sigma_r))
