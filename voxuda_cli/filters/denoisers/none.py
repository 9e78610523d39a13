"""``none``: no denoising; the volumes come back as given (the teacher sees the raw target)."""

from __future__ import annotations

import torch

from voxuda_cli.filters.denoisers import Denoiser, register_denoiser


class NoDenoiser(Denoiser):
    name = "none"
    identity = True

    def apply(self, volumes: torch.Tensor) -> torch.Tensor:
        return volumes


register_denoiser("none", lambda params: NoDenoiser())
