"""VoxResNet (Chen et al. 2018) as Vox-UDA uses it, exposing the features f_c, f_v2, f_v4, f_v6."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import NamedTuple, cast

import torch
from torch import nn

from voxuda_cli.models import onednn
from voxuda_cli.models.onednn import conv3d

# Full-resolution rows per slab in the streamed inference forward (VoxResNet._stem_in_slabs), and
# the rows of real context computed again on each side: the receptive field of what a slab keeps
# (the stem's two convolutions, then the classifier's or the strided one), even so strides align.
SLAB_ROWS = 32
SLAB_CONTEXT = 4
# both even: a slab and its context start on even rows, where the stride-2 convolution's outputs fall
assert SLAB_ROWS % 2 == 0 and SLAB_CONTEXT % 2 == 0 and SLAB_CONTEXT >= 3


def streams(depth: int) -> bool:
    """Whether a window this deep is streamed (where streaming applies): from two whole slabs on,
    where the slabs' maps and recomputed context take less memory than the whole window's."""
    return depth > 2 * SLAB_ROWS


@dataclass
class VoxResNetConfig:
    """Architecture settings; saved in model.pt so a model file describes itself."""

    width: int = 32  # C: channels of the stem; stages have 2C
    in_channels: int = 1
    num_classes: int = 2

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def inference_bytes_per_voxel(self, depth: int | None = None) -> int:
        """Peak working memory of one float32 inference forward (VoxResNet._lean_logits), per input voxel.

        ``depth``: the window's depth where the forward streams its full-resolution part in slabs
        (CPU float32 on oneDNN, ``onednn.runs_on``), else None. Whole-window forward: about two
        float32 maps of C channels at full resolution (a feature and its BN-ReLU view) plus the
        logits: 8 C + 32 (measured with VmHWM on a 128^3 channels-last window, 2-core CPU: 80-120 B
        at width 8, 288-317 B at width 32, the upper figures beside a running benchmark).
        Streamed: the stage-1 maps (2C channels at 1/8 of the voxels, about three alive) and two
        full-resolution maps over a slab and its context only: 3 C + 8 C (slab + context) / depth
        + 32 (measured at width 32: 171 B at 128^3, 143 B at 192^3, 195 B at 80 x 160^2).
        """
        whole = 8 * self.width + 32
        if depth is None or not streams(depth):
            return whole
        slab = (SLAB_ROWS + 2 * SLAB_CONTEXT) / depth
        return min(whole, int(3 * self.width + 8 * self.width * slab) + 32)


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
        tracked = self.num_batches_tracked
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            assert tracked is not None  # track_running_stats keeps the counter
            with torch.no_grad():
                tracked.add_(1)
                # as nn.BatchNorm3d: momentum None is the cumulative average
                momentum = 1.0 / float(tracked) if self.momentum is None else self.momentum
                count = head.numel() // head.shape[1]
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * count / max(count - 1, 1), momentum)
        scale = torch.rsqrt(var + self.eps)
        shift = -mean * scale
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        shape = (1, -1, 1, 1, 1)
        return x * scale.view(shape).to(x.dtype) + shift.view(shape).to(x.dtype)


class Conv3d(nn.Conv3d):
    """nn.Conv3d (zero padding, no dilation or groups) through :func:`conv3d`; the state dict is nn.Conv3d's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv3d(x, self.weight, self.bias, self.stride, self.padding)  # type: ignore[arg-type]  # nn.Conv3d's stride/padding are int tuples here (zero padding)


class ResidualModule(nn.Module):
    """Pre-activation residual module: BN ReLU conv3 BN ReLU conv3 + identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            BatchNorm3d(channels),
            nn.ReLU(inplace=True),
            Conv3d(channels, channels, 3, padding=1, bias=False),
            BatchNorm3d(channels),
            nn.ReLU(inplace=True),
            Conv3d(channels, channels, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not onednn.applies(x):
            return x + self.body(x)
        # the second norm folded into the first convolution, its ReLU and the sum as post-ops
        first, second = cast(Conv3d, self.body[2]), cast(Conv3d, self.body[5])
        view = torch.relu_(self.body[0](x))
        hidden = onednn.conv3d_relu(view, *onednn.fold_batch_norm(first.weight, cast(nn.BatchNorm3d, self.body[3])))
        del view
        return onednn.conv3d_add(hidden, x, second.weight)


class Stem(nn.Sequential):
    """conv3 BN ReLU conv3 at full resolution, giving f_c (an nn.Sequential: the state dict keys are its indices)."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__(
            Conv3d(in_channels, width, 3, padding=1, bias=False),
            BatchNorm3d(width),
            nn.ReLU(inplace=True),
            Conv3d(width, width, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not onednn.applies(x):
            return super().forward(x)
        first, norm = cast(Conv3d, self[0]), cast(nn.BatchNorm3d, self[1])
        return self[3](onednn.conv3d_relu(x, *onednn.fold_batch_norm(first.weight, norm)))


class Stage(nn.Module):
    """BN ReLU conv3 stride 2 (halves the grid), then two residual modules."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.down = nn.Sequential(
            BatchNorm3d(in_channels),
            nn.ReLU(inplace=True),
            Conv3d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
        )
        self.residuals = nn.Sequential(ResidualModule(out_channels), ResidualModule(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residuals(self.down(x))


class AuxiliaryClassifier(nn.Module):
    """Upsample a feature map to the input grid by a transposed convolution and classify."""

    def __init__(self, in_channels: int, num_classes: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        if scale == 1:
            self.head: nn.Module = Conv3d(in_channels, num_classes, 3, padding=1)
        else:
            self.head = nn.ConvTranspose3d(
                in_channels, num_classes, kernel_size=2 * scale, stride=scale, padding=scale // 2
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1 or torch.is_grad_enabled():
            return self.head(x)
        return upsample_by_shuffle(self.head, x)  # type: ignore[arg-type]  # head is the ConvTranspose3d when scale > 1


def upsample_by_shuffle(head: nn.ConvTranspose3d, x: torch.Tensor) -> torch.Tensor:
    """``head(x)`` for a transposed convolution of kernel 2s, stride s, padding s/2, computed as a 3^3
    convolution to C_out * s^3 channels and a voxel shuffle.

    The same numbers (up to float rounding), but where PyTorch's CPU transposed convolution fills a
    column buffer of 16 floats per output voxel and runs outside oneDNN, this runs on the fast
    convolution path with no buffer. Why it is exact: output voxel ``s q + r`` of each axis takes
    input ``q + j`` through kernel tap ``r + s/2 - s j`` for the taps j in {-1, 0, 1} that fall inside
    the kernel; the others are zero weights here.
    """
    kernel, bias = shuffle_kernel(head)
    phases = conv3d(x, kernel.to(x.dtype), None if bias is None else bias.to(x.dtype), (1, 1, 1), (1, 1, 1))
    return voxel_shuffle(phases, int(head.stride[0]))


def shuffle_kernel(head: nn.ConvTranspose3d) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The 3^3 kernel (C_out * s^3, C_in, 3, 3, 3) and bias of :func:`upsample_by_shuffle`'s convolution."""
    scale = int(head.stride[0])
    weight = head.weight  # (C_in, C_out, 2s, 2s, 2s)
    c_in, c_out = weight.shape[:2]
    taps = torch.full((scale, 3), -1, dtype=torch.long)  # kernel index of (phase r, tap j + 1), -1: none
    for r in range(scale):
        for j in (-1, 0, 1):
            k = r + scale // 2 - scale * j
            if 0 <= k < 2 * scale:
                taps[r, j + 1] = k
    padded = torch.nn.functional.pad(weight, (0, 1, 0, 1, 0, 1))  # index -1 -> the zero row
    index = taps.view(scale, 1, 1, 3, 1, 1), taps.view(1, scale, 1, 1, 3, 1), taps.view(1, 1, scale, 1, 1, 3)
    # (C_in, C_out, rz, ry, rx, jz, jy, jx) -> (C_out * s^3, C_in, 3, 3, 3)
    kernel = padded[:, :, index[0], index[1], index[2]]
    kernel = kernel.permute(1, 2, 3, 4, 0, 5, 6, 7).reshape(c_out * scale**3, c_in, 3, 3, 3)
    bias = head.bias.repeat_interleave(scale**3) if head.bias is not None else None
    return kernel, bias


def voxel_shuffle(phases: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, C * s^3, d, h, w) phases of :func:`shuffle_kernel`'s convolution -> (B, C, s d, s h, s w)."""
    b, channels, d, h, w = phases.shape
    c_out = channels // scale**3
    phases = phases.view(b, c_out, scale, scale, scale, d, h, w)
    return phases.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, c_out, d * scale, h * scale, w * scale)


class VoxResNet(nn.Module):
    """Stem (32^3, C) and three stages (16^3, 8^3, 4^3 at 2C); four auxiliary classifiers summed.

    Input edges must be multiples of 8 (three stride-2 stages).
    """

    downsampling = 8

    def __init__(self, config: VoxResNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or VoxResNetConfig()
        width, classes = self.config.width, self.config.num_classes
        self.stem = Stem(self.config.in_channels, width)
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
        return VoxResNetOutput(logits=logits, features=tuple(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.forward_features(x).logits
        return self._lean_logits(x)

    def _lean_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logits without autograd, in a fraction of the memory: each feature's classifier runs as
        soon as the feature exists (its BN-ReLU view computed in place), so no full-resolution feature
        waits for the sum; in eval mode on oneDNN, for windows deeper than two slabs (:func:`streams`),
        the full-resolution part runs in slabs (:meth:`_stem_in_slabs`). The order of the sum
        is forward_features'."""
        logits: torch.Tensor | None = None
        first = 0
        if streams(x.shape[2]) and not self.training and onednn.applies(x):
            logits, h = self._stem_in_slabs(x)
            h, first = cast(Stage, self.stages[0]).residuals(h), 1
        else:
            h = self.stem(x)
        for index in range(first, len(self.classifiers)):
            if index > first:
                h = self.stages[index - 1](h)
            term = self._classify(index, h)
            logits = term if logits is None else logits.add_(term)
        assert logits is not None
        return logits

    def _stem_in_slabs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Classifier 0's logits and stage 1's strided convolution, a slab of z-rows at a time.

        The full-resolution feature maps (the stem's two, f_c's two BN-ReLU views: C channels each)
        are most of a large window's memory; here they exist for a slab and its context only, and
        only the logits (2 channels) and the strided output (2C channels at 1/8 of the voxels) for
        the whole window. Exact: every kept row is computed from its real neighbours (or the
        window's zero padding, as the whole-window forward), ``SLAB_CONTEXT`` rows covering them.
        """
        depth, rows, context = x.shape[2], SLAB_ROWS, SLAB_CONTEXT
        logits = strided = None
        for z0 in range(0, depth, rows):
            z1 = min(z0 + rows, depth)
            start, stop = max(z0 - context, 0), min(z1 + context, depth)
            feature = self.stem(x[:, :, start:stop])
            part = self._classify(0, feature)
            down = cast(Stage, self.stages[0]).down(feature)
            del feature
            if logits is None or strided is None:
                logits = _empty_as(part, (*part.shape[:2], *x.shape[2:]))
                strided = _empty_as(down, (*down.shape[:2], depth // 2, *down.shape[3:]))
            logits[:, :, z0:z1] = part[:, :, z0 - start : z1 - start]
            strided[:, :, z0 // 2 : z1 // 2] = down[:, :, (z0 - start) // 2 : (z1 - start) // 2]
            del part, down  # before the next slab's maps
        assert logits is not None and strided is not None
        return logits, strided

    def _classify(self, index: int, feature: torch.Tensor) -> torch.Tensor:
        """Auxiliary classifier ``index`` on its BN-ReLU view of ``feature`` (inference: ReLU in place)."""
        view = torch.relu_(self.activations[index][0](feature))  # type: ignore[index]  # a Sequential (BN, ReLU): nn.Module's stubs hide __getitem__
        return self.classifiers[index](view)

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


def _empty_as(like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised tensor of ``shape`` with ``like``'s dtype, device and memory layout."""
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=onednn.layout_of(like))
