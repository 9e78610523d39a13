"""VoxResNet: the grids and channels of f_c, f_v2, f_v4, f_v6, the summed classifiers, the box rule."""

from __future__ import annotations

import torch

from voxuda_cli.models import VoxResNet, VoxResNetConfig


def test_features_and_logits_have_the_documented_shapes() -> None:
    torch.manual_seed(0)
    model = VoxResNet(VoxResNetConfig(width=4))
    output = model.forward_features(torch.randn(2, 1, 32, 32, 32))
    assert output.logits.shape == (2, 2, 32, 32, 32)
    assert [tuple(f.shape) for f in output.features] == [
        (2, 4, 32, 32, 32),
        (2, 8, 16, 16, 16),
        (2, 8, 8, 8, 8),
        (2, 8, 4, 4, 4),
    ]


def test_non_cubic_box_of_multiples_of_eight() -> None:
    model = VoxResNet(VoxResNetConfig(width=2)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 16, 24, 40)).shape == (1, 2, 16, 24, 40)


def test_logits_are_the_sum_of_the_four_auxiliary_classifiers() -> None:
    torch.manual_seed(0)
    model = VoxResNet(VoxResNetConfig(width=2)).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        output = model.forward_features(x)
        heads = [
            classifier(activation(feature))
            for classifier, activation, feature in zip(model.classifiers, model.activations, output.features)
        ]
    assert all(h.shape == output.logits.shape for h in heads)
    torch.testing.assert_close(output.logits, sum(heads))


def test_every_parameter_gets_a_gradient() -> None:
    model = VoxResNet(VoxResNetConfig(width=2))
    model(torch.randn(2, 1, 16, 16, 16)).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
