"""The 8-bit inference forward follows the float32 one it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.inference.models import random_network, sphere_batch, trained_sphere_network
from voxuda_cli.inference.network import foreground_probability
from voxuda_cli.models import int8
from voxuda_cli.models.int8 import Int8Ops, Int8VoxResNet

pytestmark = pytest.mark.skipif(not int8.supported(), reason="torch without oneDNN's int8 convolution")


@pytest.fixture(scope="module")
def spheres() -> tuple[torch.nn.Module, torch.Tensor, np.ndarray]:
    """A width-4 network trained briefly on noisy spheres, 8 held-out spheres and their masks."""
    network = trained_sphere_network(width=4, steps=80)  # Dice about 0.9 on held-out spheres
    images, masks = sphere_batch(np.random.default_rng(1), 8)
    return network, torch.from_numpy(images)[:, None], masks


def _foreground(network: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return foreground_probability(network(x))


def _dice(prediction: torch.Tensor, truth: np.ndarray) -> float:
    p, t = prediction.numpy(), truth > 0
    return 2 * float((p & t).sum()) / max(float(p.sum() + t.sum()), 1.0)


def test_int8_probabilities_follow_the_float_forward_and_segment_as_well(spheres) -> None:  # type: ignore[no-untyped-def]
    network, x, masks = spheres
    reference = _foreground(network, x)
    got = _foreground(Int8VoxResNet(network).calibrated([x]), x)
    assert float((got - reference).abs().mean()) < 0.01
    assert float(((got > 0.5) == (reference > 0.5)).float().mean()) > 0.995
    assert _dice(got > 0.5, masks) == pytest.approx(_dice(reference > 0.5, masks), abs=0.01)
    assert _dice(reference > 0.5, masks) > 0.5  # the comparison means something: the network segments


def test_calibration_covers_every_8_bit_map_and_is_deterministic(spheres) -> None:  # type: ignore[no-untyped-def]
    network, x, _ = spheres
    first, second = Int8VoxResNet(network).calibrated([x[:4], x[4:]]), Int8VoxResNet(network).calibrated([x])
    assert first.ops is not None and second.ops is not None and not first.ops.calibrating
    assert first.ops.scales == second.ops.scales  # the largest value over all inputs, however given
    # the input, the stem's map and its two views, then per stage: its strided convolution's view, the
    # view and hidden map of two residual modules, and its classifier's view
    assert len(first.ops.scales) == 4 + 3 * 6 - 1 and all(s > 0 for s in first.ops.scales.values())
    with torch.inference_mode():
        assert torch.equal(first(x), second(x))


def test_odd_window_shapes_and_an_uncalibrated_network(spheres) -> None:  # type: ignore[no-untyped-def]
    network, x, _ = spheres
    window = torch.randn(1, 1, 16, 24, 40)
    quantised = Int8VoxResNet(network)
    with pytest.raises(RuntimeError, match="calibrated"):
        quantised(window)
    margin = quantised.calibrated([x])(window)  # the foreground's logit over the background's
    assert margin.shape == (1, 1, 16, 24, 40) and margin.dtype == torch.float32


def test_a_view_is_relu_of_the_norm_rounded_to_its_step() -> None:
    ops = Int8Ops()
    ops.scales.update({"input": 4.0 / 127, "view": 0.01})
    ops.freeze()
    x = torch.linspace(-3, 3, 2 * 4 * 5 * 6 * 7).reshape(2, 4, 5, 6, 7)
    scale, shift = torch.tensor([1.0, 0.5, 2.0, 1.0]), torch.tensor([0.0, 0.1, -0.2, 3.0])
    view = ops.quantise_view("view", x, scale, shift)
    expected = torch.relu(x * scale.view(1, -1, 1, 1, 1) + shift.view(1, -1, 1, 1, 1)).clamp(max=2.55)
    assert view.data.dtype == torch.uint8 and view.scale == pytest.approx(0.01)
    torch.testing.assert_close(view.data.float() * view.scale, expected, atol=0.005 + 1e-6, rtol=0)


def test_a_random_wider_network_keeps_its_masks() -> None:
    network = random_network(width=8)
    x = torch.randn(2, 1, 32, 32, 32)
    reference, got = _foreground(network, x), _foreground(Int8VoxResNet(network).calibrated([x]), x)
    assert float((got - reference).abs().max()) < 0.05
