"""``none``: no denoising; the volumes come back as given (the teacher sees the raw target)."""

from __future__ import annotations

import numpy as np
import torch

from voxuda_cli.filters.denoisers import Denoiser, register_denoiser
from voxuda_cli.normalise import VolumeStats
from voxuda_cli.progress import Progress


class NoDenoiser(Denoiser):
    name = "none"
    identity = True

    def apply(self, volumes: torch.Tensor) -> torch.Tensor:
        return volumes

    def filter_volume(
        self,
        volume: np.ndarray,
        out: np.ndarray,
        device: torch.device,
        stats: VolumeStats | None = None,
        chunk: int | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        out[...] = np.asarray(volume, dtype=np.float32)  # exactly the input: no z-scoring round trip
        if progress is not None:
            progress(int(volume.shape[0]), total=int(volume.shape[0]))
        return out


register_denoiser("none", lambda params: NoDenoiser())
