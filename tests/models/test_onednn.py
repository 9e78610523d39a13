"""The oneDNN inference calls equal the plain modules they replace."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voxuda_cli.models import onednn

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


def _norm(channels: int, seed: int) -> nn.BatchNorm3d:
    """A batch norm with running statistics and affine parameters far from their initial values."""
    generator = torch.Generator().manual_seed(seed)
    norm = nn.BatchNorm3d(channels).eval()
    norm.running_mean.normal_(0.0, 0.5, generator=generator)  # type: ignore[union-attr]  # tracked statistics
    norm.running_var.uniform_(0.3, 3.0, generator=generator)  # type: ignore[union-attr]
    norm.weight.data.uniform_(0.5, 1.5, generator=generator)
    norm.bias.data.normal_(0.0, 0.3, generator=generator)
    return norm


def test_a_folded_norm_equals_the_convolution_then_the_norm() -> None:
    torch.manual_seed(0)
    conv, norm = nn.Conv3d(3, 5, 3, padding=1, bias=False), _norm(5, 1)
    x = torch.randn(2, 3, 6, 7, 8)
    with torch.inference_mode():
        weight, bias = onednn.fold_batch_norm(conv.weight, norm)
        torch.testing.assert_close(torch.relu(norm(conv(x))), onednn.conv3d_relu(x, weight, bias), atol=1e-5, rtol=1e-5)


def test_a_convolution_with_a_summed_residual_equals_the_sum() -> None:
    torch.manual_seed(0)
    conv = nn.Conv3d(4, 4, 3, padding=1, bias=False)
    x, residual = torch.randn(1, 4, 8, 8, 8), torch.randn(1, 4, 8, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(
            onednn.conv3d_add(x, residual, conv.weight), residual + conv(x), atol=1e-5, rtol=1e-5
        )
    assert residual.shape == (1, 4, 8, 8, 8)


def test_the_calls_apply_only_without_autograd_in_float32_and_outside_autocast() -> None:
    x = torch.zeros(1, 1, 4, 4, 4)
    assert not onednn.applies(x)  # autograd on
    with torch.inference_mode():
        assert onednn.applies(x)
        assert not onednn.applies(x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not onednn.applies(x)
