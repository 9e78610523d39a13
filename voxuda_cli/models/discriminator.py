"""The domain discriminator of L_dis and the gradient-reversal layer in front of it (DANN)."""

from __future__ import annotations

import math

import torch
from torch import nn


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.weight * grad, None


def reverse_gradient(x: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """Identity forward; backward multiplies the gradient by ``-weight`` (Ganin et al. 2016)."""
    return _GradientReversal.apply(x, float(weight))


class GradientReversal(nn.Module):
    """Module form of :func:`reverse_gradient`; ``weight`` may be changed between steps (the DANN ramp)."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = float(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(x, self.weight)

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


def dann_ramp(progress: float, gamma: float = 10.0) -> float:
    """Reversal weight 2 / (1 + exp(-gamma p)) - 1 at training progress p in [0, 1] (0 -> 0, 1 -> ~1)."""
    p = min(max(float(progress), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


class DomainDiscriminator(nn.Module):
    """A small 3D conv net on f_v6 -> one logit per sample (source 0, target 1).

    No batch norm: the discriminator sees source and target in one batch, and batch statistics
    would leak the batch's domain mix into every sample's prediction. Global average pooling
    makes it work for any box (f_v6 is box/8 per edge).
    """

    def __init__(self, in_channels: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or in_channels
        self.body = nn.Sequential(
            nn.Conv3d(in_channels, hidden, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv3d(hidden, hidden, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
            nn.Linear(hidden, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(features).squeeze(1)
