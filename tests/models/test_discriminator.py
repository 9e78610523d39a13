"""Gradient reversal (sign and scale), the DANN ramp, and the domain discriminator's shapes."""

from __future__ import annotations

import math

import pytest
import torch

from voxuda_cli.models import DomainDiscriminator, GradientReversal, dann_ramp, reverse_gradient


@pytest.mark.parametrize("weight", [1.0, 0.25])
def test_reversal_is_identity_forward_and_flips_and_scales_the_gradient(weight: float) -> None:
    x = torch.randn(3, 4, requires_grad=True)
    upstream = torch.randn(3, 4)
    y = reverse_gradient(x, weight)
    torch.testing.assert_close(y, x)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, -weight * upstream)


def test_reversal_module_against_plain_gradient() -> None:
    layer = torch.nn.Linear(4, 1)
    x = torch.randn(5, 4, requires_grad=True)
    layer(x).sum().backward()
    plain = x.grad.clone()
    x.grad = None
    layer(GradientReversal(0.5)(x)).sum().backward()
    torch.testing.assert_close(x.grad, -0.5 * plain)


def test_dann_ramp() -> None:
    assert dann_ramp(0.0) == 0.0
    assert dann_ramp(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert dann_ramp(0.1) == pytest.approx(2 / (1 + math.exp(-1)) - 1)
    assert dann_ramp(5.0) == dann_ramp(1.0)  # clamped past the horizon
    values = [dann_ramp(p / 10) for p in range(11)]
    assert values == sorted(values)


@pytest.mark.parametrize("edge", [4, 8])
def test_discriminator_gives_one_logit_per_sample_for_any_f_v6_grid(edge: int) -> None:
    discriminator = DomainDiscriminator(16)
    assert discriminator(torch.randn(3, 16, edge, edge, edge)).shape == (3,)


def test_discriminator_output_does_not_depend_on_the_rest_of_the_batch() -> None:
    discriminator = DomainDiscriminator(8).eval()
    x = torch.randn(4, 8, 4, 4, 4)
    torch.testing.assert_close(discriminator(x)[:1], discriminator(x[:1]))
