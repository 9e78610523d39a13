"""VoxResNet (Chen et al. 2018) as Vox-UDA uses it, exposing the features f_c, f_v2, f_v4, f_v6."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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

    def inference_bytes_per_voxel(self) -> int:
        """Peak working memory of one float32 inference forward, per input voxel.

        Measured (ru_maxrss, 2-core CPU, channels-last, 128^3 window): 140 B at width 8, 441 B at
        width 32, i.e. three to four float32 tensors of C channels at full resolution alive at once
        (the stem's output waits for its classifier until the sum at the end). 16 C + 16 covers both.
        """
        return 16 * self.width + 16


class VoxResNetOutput(NamedTuple):
    logits: torch.Tensor  # (B, num_classes, D, H, W): the four auxiliary classifiers summed
    features: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # f_c, f_v2, f_v4, f_v6


class BatchNorm3d(nn.BatchNorm3d):
    """nn.BatchNorm3d that can take its batch statistics from the first ``reference`` samples.

    With ``reference`` set (VoxResNet.statistics_from), a training forward normalises the whole
    batch with the mean and variance of its first ``reference`` samples, and only those update the
    running statistics; otherwise it is nn.BatchNorm3d. A mixed batch ([x_s, x_s', x_t]) can then
    put the target through the source's normalisation, as a source-only network sees it
    (``voxuda train --bn-statistics``). The state dict is nn.BatchNorm3d's.
    """

    reference: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.reference is None or self.reference >= x.shape[0]:
            return super().forward(x)
        dims = (0, 2, 3, 4)
        head = x[: self.reference].float()
        mean = head.mean(dims)
        var = head.var(dims, unbiased=False)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[operator]
                # as nn.BatchNorm3d: momentum None is the cumulative average
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                count = head.numel() // head.shape[1]
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * count / max(count - 1, 1), momentum)
        scale = torch.rsqrt(var + self.eps)
        shift = -mean * scale
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        shape = (1, -1, 1, 1, 1)
        return x * scale.view(shape).to(x.dtype) + shift.view(shape).to(x.dtype)


class ResidualModule(nn.Module):
    """Pre-activation residual module: BN ReLU conv3 BN ReLU conv3 + identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            BatchNorm3d(channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(channels, channels, 3, padding=1, bias=False),
            BatchNorm3d(channels),
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
            BatchNorm3d(in_channels),
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
            BatchNorm3d(width),
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
            [nn.Sequential(BatchNorm3d(c), nn.ReLU()) for c in (width, 2 * width, 2 * width, 2 * width)]
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

    @contextlib.contextmanager
    def statistics_from(self, samples: int | None) -> Iterator[None]:
        """Inside, training forwards normalise with the first ``samples`` samples' statistics (None: all)."""
        if samples is None:  # every step of every method but one: no walk over the modules
            yield
            return
        norms = [m for m in self.modules() if isinstance(m, BatchNorm3d)]
        for norm in norms:
            norm.reference = samples
        try:
            yield
        finally:
            for norm in norms:
                norm.reference = None
