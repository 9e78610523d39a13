"""VoxResNet (Chen et al. 2018) as Vox-UDA uses it, exposing the features f_c, f_v2, f_v4, f_v6."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn


@dataclass
class VoxResNetConfig:
    """Architecture settings; saved in model.pt so a model file describes itself."""

    width: int = 32  # C: channels of the stem; stages have 2C
    in_channels: int = 1
    num_classes: int = 2

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class VoxResNetOutput(NamedTuple):
    logits: torch.Tensor  # (B, num_classes, D, H, W): the four auxiliary classifiers summed
    features: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # f_c, f_v2, f_v4, f_v6


class ResidualModule(nn.Module):
    """Pre-activation residual module: BN ReLU conv3 BN ReLU conv3 + identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm3d(channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm3d(channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(channels, channels, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Stage(nn.Module):
    """BN ReLU conv3 stride 2 (halves the grid), then two residual modules."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.down = nn.Sequential(
            nn.BatchNorm3d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
        )
        self.residuals = nn.Sequential(ResidualModule(out_channels), ResidualModule(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residuals(self.down(x))


class AuxiliaryClassifier(nn.Module):
    """Upsample a feature map to the input grid by a transposed convolution and classify."""

    def __init__(self, in_channels: int, num_classes: int, scale: int) -> None:
        super().__init__()
        if scale == 1:
            self.head: nn.Module = nn.Conv3d(in_channels, num_classes, 3, padding=1)
        else:
            self.head = nn.ConvTranspose3d(
                in_channels, num_classes, kernel_size=2 * scale, stride=scale, padding=scale // 2
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


class VoxResNet(nn.Module):
    """Stem (32^3, C) and three stages (16^3, 8^3, 4^3 at 2C); four auxiliary classifiers summed.

    Input edges must be multiples of 8 (three stride-2 stages).
    """

    downsampling = 8

    def __init__(self, config: VoxResNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or VoxResNetConfig()
        width, classes = self.config.width, self.config.num_classes
        self.stem = nn.Sequential(
            nn.Conv3d(self.config.in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
            nn.Conv3d(width, width, 3, padding=1, bias=False),
        )
        self.stages = nn.ModuleList([Stage(width, 2 * width), Stage(2 * width, 2 * width), Stage(2 * width, 2 * width)])
        self.classifiers = nn.ModuleList(
            [
                AuxiliaryClassifier(width, classes, 1),
                AuxiliaryClassifier(2 * width, classes, 2),
                AuxiliaryClassifier(2 * width, classes, 4),
                AuxiliaryClassifier(2 * width, classes, 8),
            ]
        )
        # The residual stream is pre-activation, so each classifier reads a BN-ReLU view of its feature.
        self.activations = nn.ModuleList(
            [nn.Sequential(nn.BatchNorm3d(c), nn.ReLU()) for c in (width, 2 * width, 2 * width, 2 * width)]
        )

    def forward_features(self, x: torch.Tensor) -> VoxResNetOutput:
        f_c = self.stem(x)
        features = [f_c]
        h = f_c
        for stage in self.stages:
            h = stage(h)
            features.append(h)
        logits = sum(
            classifier(activation(feature))
            for classifier, activation, feature in zip(self.classifiers, self.activations, features)
        )
        return VoxResNetOutput(logits=logits, features=tuple(features))  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).logits
