"""BF, the plain bilateral filter (the ablation of IBF; range term on the intensities themselves)."""

from __future__ import annotations

from voxuda_cli.filters.denoisers import register_denoiser
from voxuda_cli.filters.denoisers.ibf import Bilateral

register_denoiser("bf", lambda params: Bilateral("bf", params.sigma_d, params.sigma_r))
