"""CPU float32 inference on oneDNN: every convolution on its fast path, batch norm folded into the
convolution before it, ReLU and residual sums run as the convolution's post-ops.

Only where the numbers are the training forward's (up to float rounding): no autograd, a float32
CPU tensor, no autocast, and batch norm from its running statistics (an ``eval()`` module); anywhere
else the callers run their plain modules. Why: a width-8 VoxResNet is memory-bound on a CPU, so
each elementwise pass over a feature map (a batch norm, a ReLU, a residual sum) costs about as much
as a convolution's arithmetic (benchmarks/results.md, issue 24).
"""

from __future__ import annotations

import torch
from torch import nn

_ONEDNN = torch.backends.mkldnn.is_available()


def runs_on(device: torch.device, autocast_dtype: torch.dtype | None) -> bool:
    """Whether inference on ``device`` (under autocast to ``autocast_dtype``, None: float32) takes these calls."""
    return _ONEDNN and device.type == "cpu" and autocast_dtype is None


def applies(x: torch.Tensor) -> bool:
    """Whether ``x`` may take the oneDNN calls below (eval-mode modules are the caller's condition)."""
    autocast = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    # torch.compile traces the plain modules: these oneDNN ops have no fake-tensor kernels to trace
    tracing = torch.compiler.is_compiling()
    return not torch.is_grad_enabled() and not tracing and x.dtype == torch.float32 and runs_on(x.device, autocast)


def conv3d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, ...],
    padding: tuple[int, ...],
) -> torch.Tensor:
    """A 3D convolution; in CPU float32 inference always on oneDNN.

    PyTorch sends a CPU convolution to its reference path (im2col, outside oneDNN) when batch x
    channels x depth x height is at most 20480 (ATen's ``use_mkldnn``): with one large window per
    forward that is the one-channel stem and every layer of the deeper stages. Measured on 2 cores
    (128^3 window, width 8): 7x slower at 32^3 x 16 channels, 3.4x at the stem, whose im2col buffer
    (27 floats per voxel) was also the forward's peak memory. The same numbers either way. Under
    autocast the plain call, so that autocast picks the dtype.
    """
    if not applies(x):
        return torch.nn.functional.conv3d(x, weight, bias, stride, padding)
    return torch.ops.aten.mkldnn_convolution(x, weight, bias, padding, stride, (1, 1, 1), 1)


def fold_batch_norm(weight: torch.Tensor, norm: nn.BatchNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a bias-free convolution followed by ``norm`` (running statistics) as one convolution."""
    scale, shift = norm_affine(norm)
    folded = (weight * scale.view(-1, 1, 1, 1, 1)).contiguous(memory_format=layout_of(weight))
    return folded, shift


def norm_affine(norm: nn.BatchNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel: ``norm`` with its running statistics is ``x * scale + shift``."""
    assert norm.running_mean is not None and norm.running_var is not None  # VoxResNet's norms track them
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.affine:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.affine:
        shift = shift + norm.bias
    return scale, shift


def conv3d_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """relu(conv3d(x) + bias), stride 1, padding 1, in one oneDNN call (ReLU as its post-op)."""
    return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, [1, 1, 1], [1, 1, 1], [1, 1, 1], 1, "relu", [], "")


def conv3d_add(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """residual + conv3d(x) (no bias), stride 1, padding 1, in one oneDNN call (the sum as its post-op)."""
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, residual, weight, None, [1, 1, 1], [1, 1, 1], [1, 1, 1], 1, "add", None, None, [], ""
    )


def layout_of(tensor: torch.Tensor) -> torch.memory_format:
    """channels_last_3d where ``tensor`` is laid out so and not also plain-contiguous (shapes where both hold
    store the same bytes either way), else the plain layout."""
    channels_last = tensor.is_contiguous(memory_format=torch.channels_last_3d) and not tensor.is_contiguous()
    return torch.channels_last_3d if channels_last else torch.contiguous_format
