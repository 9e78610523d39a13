"""The network function of inference: raw windows -> foreground probabilities, and nothing else.

No I/O and no geometry: a batch of windows of any edge the network takes (multiples of 8 for
VoxResNet) is normalised as in training (contrast flipped when the model was trained with
``--invert``; z-scored per window, or with a whole tomogram's streamed statistics; windows of a
locally normalised volume come normalised), put through
the network (with ``--tta`` the mean of the 8 flips) under the autocast the settings chose, and
the softmax's foreground channel comes back as float32 numpy. With ``--int8`` the network is the
8-bit one (models/int8.py), its activation scales taken from a pass over the windows given
to :meth:`WindowNetwork.calibrated` (the predictor gives samples spread over each input), or else
over the first windows it is called on. Window plans (plan.py,
sliding_window.py) decide where windows go, output grids (grids.py) where results land.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import numpy as np
import torch
from torch import nn

from voxuda_cli.models.int8 import Int8VoxResNet
from voxuda_cli.models.serialization import ModelInfo
from voxuda_cli.models.speed import autocast
from voxuda_cli.normalise import VolumeStats, zscore_tensor

FOREGROUND = 1
FLIP_SETS = [dims for count in range(4) for dims in itertools.combinations((2, 3, 4), count)]


def foreground_probability(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, D, H, W) class logits -> (B, D, H, W) softmax probability of the foreground; (B, 1, ...): the
    foreground's logit over the background's (the 8-bit network's heads compute only that), its sigmoid."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0].float())
    return torch.softmax(logits.float(), dim=1)[:, FOREGROUND]


class WindowNetwork:
    """A loaded network with its model's normalisation, TTA and numerics: ``(B, d, h, w)`` -> probabilities."""

    def __init__(
        self,
        network: nn.Module,
        info: ModelInfo,
        device: torch.device,
        tta: bool,
        amp_dtype: torch.dtype | None,
        int8: Int8VoxResNet | None = None,
    ) -> None:
        self.network, self.info, self.device, self.tta, self.amp_dtype = network, info, device, tta, amp_dtype
        self.int8 = int8  # uncalibrated: the network to calibrate before the first forward

    def calibrated(
        self, windows: np.ndarray, stats: VolumeStats | None = None, normalised: bool = False
    ) -> WindowNetwork:
        """This function with the int8 network's activation scales from ``windows`` (as ``__call__`` takes
        them); itself where it runs in float."""
        if self.int8 is None:
            return self
        x = self._prepared(windows, stats, normalised).unsqueeze(1)
        network = self.int8.calibrated([x])
        return WindowNetwork(network, self.info, self.device, self.tta, self.amp_dtype)

    @property
    def passes(self) -> int:
        """Forward passes per window (8 with TTA)."""
        return len(FLIP_SETS) if self.tta else 1

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.amp_dtype, self.device)

    def normalise(self, windows: torch.Tensor, stats: VolumeStats | None = None) -> torch.Tensor:
        """Flip contrast if the model was trained so, then z-score each window (or by ``stats``)."""
        return zscore_tensor(windows.float(), self.info.invert, stats, dtype=torch.float64)

    def foreground(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W) normalised -> (B, D, H, W) foreground probability; 8-flip average with TTA."""
        total: torch.Tensor | None = None
        for dims in FLIP_SETS if self.tta else [()]:
            probability = foreground_probability(self.network(x.flip(dims) if dims else x))
            if dims:
                probability = probability.flip([d - 1 for d in dims])
            total = probability if total is None else total + probability
        assert total is not None
        return total / self.passes

    def __call__(self, windows: np.ndarray, stats: VolumeStats | None = None, normalised: bool = False) -> np.ndarray:
        """(B, d, h, w) windows -> (B, d, h, w) float32 foreground probabilities, one forward pass per flip.

        ``normalised`` skips the normalisation (inputs already z-scored, e.g. denoised targets).
        """
        if self.int8 is not None:
            return self.calibrated(windows, stats, normalised)(windows, stats, normalised)
        x = self._prepared(windows, stats, normalised)
        with torch.inference_mode(), self._autocast():
            probability = self.foreground(x.unsqueeze(1))
        return probability.float().cpu().numpy()

    def _prepared(self, windows: np.ndarray, stats: VolumeStats | None, normalised: bool) -> torch.Tensor:
        """(B, d, h, w) windows on the device, normalised unless ``normalised``."""
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
        if self.device.type == "cuda":  # page-locked host memory: the copy runs asynchronously
            x = x.pin_memory().to(self.device, non_blocking=True)
        else:
            x = x.to(self.device)
        return x if normalised else self.normalise(x, stats)
