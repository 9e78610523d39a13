"""VoxResNet: the grids and channels of f_c, f_v2, f_v4, f_v6, the summed classifiers, the box rule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from voxuda_cli.models import VoxResNet, VoxResNetConfig
from voxuda_cli.models.voxresnet import SLAB_ROWS, upsample_by_shuffle


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


def test_batch_norm_with_a_reference_is_plain_batch_norm_of_the_reference_samples() -> None:
    from voxuda_cli.models.voxresnet import BatchNorm3d

    torch.manual_seed(0)
    ours, plain = BatchNorm3d(3), torch.nn.BatchNorm3d(3)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2.0)
        ours.bias.uniform_(-1.0, 1.0)
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(5, 3, 4, 4, 4) * 2 + 1
    head = x[:2].clone().requires_grad_(True)
    batch = torch.cat([head, x[2:]])
    ours.reference = 2
    out = ours(batch)
    expected = plain(head)
    assert torch.allclose(out[:2], expected, atol=1e-5)
    assert torch.allclose(ours.running_mean, plain.running_mean, atol=1e-6)
    assert torch.allclose(ours.running_var, plain.running_var, atol=1e-5)
    # the tail is normalised with the head's statistics, not its own
    mean, var = x[:2].mean((0, 2, 3, 4)), x[:2].var((0, 2, 3, 4), unbiased=False)
    tail = (x[2:] - mean.view(1, -1, 1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1, 1) + ours.eps)
    tail = tail * ours.weight.view(1, -1, 1, 1, 1) + ours.bias.view(1, -1, 1, 1, 1)
    assert torch.allclose(out[2:], tail, atol=1e-5)
    (ours_grad,) = torch.autograd.grad((out[:2] ** 2).sum(), head)
    head_plain = x[:2].clone().requires_grad_(True)
    (plain_grad,) = torch.autograd.grad((plain(head_plain) ** 2).sum(), head_plain)
    assert torch.allclose(ours_grad, plain_grad, atol=1e-4)


def test_statistics_from_leaves_the_source_part_independent_of_the_rest() -> None:
    torch.manual_seed(0)
    model = VoxResNet(VoxResNetConfig(width=2)).train()
    source = torch.randn(2, 1, 16, 16, 16)
    outputs = []
    for scale in (1.0, 5.0):
        with torch.no_grad(), model.statistics_from(2):
            outputs.append(model(torch.cat([source, scale * torch.randn(2, 1, 16, 16, 16) + scale])))
    assert torch.allclose(outputs[0][:2], outputs[1][:2], atol=1e-5)
    with torch.no_grad():  # outside the context the whole batch normalises again
        mixed = model(torch.cat([source, 5.0 * torch.randn(2, 1, 16, 16, 16) + 5.0]))
    assert not torch.allclose(mixed[:2], outputs[0][:2], atol=1e-3)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_a_transposed_head_equals_its_convolution_and_voxel_shuffle(scale: int) -> None:
    torch.manual_seed(scale)
    head = nn.ConvTranspose3d(6, 2, kernel_size=2 * scale, stride=scale, padding=scale // 2)
    x = torch.randn(2, 6, 3, 4, 5)
    with torch.no_grad():
        torch.testing.assert_close(upsample_by_shuffle(head, x), head(x), atol=1e-5, rtol=1e-5)


def test_the_lean_inference_forward_gives_the_training_forwards_logits() -> None:
    """Without autograd: classifiers as soon as each feature exists, shuffled heads, oneDNN convolutions."""
    torch.manual_seed(0)
    network = VoxResNet(VoxResNetConfig(width=4)).eval()
    x = torch.randn(1, 1, 16, 24, 32)  # batch 1, small: ATen would pick its reference convolution
    with torch.enable_grad():
        reference = network.forward_features(x).logits.detach()
    with torch.inference_mode():
        torch.testing.assert_close(network(x), reference, atol=1e-4, rtol=1e-4)


def _with_trained_norms(network: VoxResNet, seed: int) -> VoxResNet:
    """Batch norms with running statistics and affine parameters away from their initial values."""
    generator = torch.Generator().manual_seed(seed)
    for norm in network.modules():
        if isinstance(norm, nn.BatchNorm3d):
            norm.running_mean.normal_(0.0, 0.3, generator=generator)  # type: ignore[union-attr]  # tracked
            norm.running_var.uniform_(0.5, 2.0, generator=generator)  # type: ignore[union-attr]
            norm.weight.data.uniform_(0.5, 1.5, generator=generator)
            norm.bias.data.normal_(0.0, 0.2, generator=generator)
    return network


def _trained_eval_case(
    shape: tuple[int, ...], channels_last: bool, seed: int
) -> tuple[VoxResNet, torch.Tensor, torch.Tensor]:
    """A width-4 eval network with trained-looking norms, an input of ``shape``, and the training forward's logits."""
    torch.manual_seed(seed)
    network = _with_trained_norms(VoxResNet(VoxResNetConfig(width=4)).eval(), seed=seed + 1)
    x = torch.randn(*shape)
    if channels_last:
        network.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    with torch.enable_grad():
        reference = network.forward_features(x).logits.detach()
    return network, x, reference


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_fused_inference_forward_gives_the_training_forwards_logits_with_trained_norms(channels_last: bool) -> None:
    """Folded norms, ReLU and residual sums as oneDNN post-ops: the eval logits of the plain modules."""
    network, x, reference = _trained_eval_case((2, 1, 16, 16, 24), channels_last, seed=1)
    with torch.inference_mode():
        torch.testing.assert_close(network(x), reference, atol=1e-4, rtol=1e-4)


def test_a_training_mode_forward_without_autograd_normalises_with_the_batch() -> None:
    """No folding in train mode (the teacher's forward under no_grad): batch statistics, as with autograd."""
    torch.manual_seed(1)
    network = _with_trained_norms(VoxResNet(VoxResNetConfig(width=4)), seed=3).train()
    x = torch.randn(2, 1, 16, 16, 16)
    state = {k: v.clone() for k, v in network.state_dict().items()}
    reference = network.forward_features(x).logits.detach()
    network.load_state_dict(state)  # the running statistics as before the first forward
    with torch.no_grad():
        torch.testing.assert_close(network(x), reference, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_streamed_stem_gives_the_whole_windows_logits(channels_last: bool) -> None:
    """Deeper than a slab and its context: the full-resolution part runs slab by slab (a last short one)."""
    depth = SLAB_ROWS * 2 + 8
    network, x, reference = _trained_eval_case((2, 1, depth, 16, 24), channels_last, seed=2)
    with torch.inference_mode():
        logits, strided = network._stem_in_slabs(x)
        streamed = network(x)
        whole = network.stem(x)
        whole_logits, whole_strided = network._classify(0, whole.clone()), network.stages[0].down(whole)
    assert logits.is_contiguous(memory_format=torch.channels_last_3d) == channels_last
    torch.testing.assert_close(logits, whole_logits, atol=1e-5, rtol=1e-5)  # the slabs' pieces, each exact
    torch.testing.assert_close(strided, whole_strided, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(streamed, reference, atol=1e-4, rtol=1e-4)


def test_a_streamed_forward_is_budgeted_less_memory_per_voxel_the_deeper_its_window() -> None:
    config = VoxResNetConfig(width=32)
    whole = config.inference_bytes_per_voxel()
    assert config.inference_bytes_per_voxel(depth=64) == whole  # not streamed: two slabs or less
    deep = [config.inference_bytes_per_voxel(depth=d) for d in (96, 128, 256)]
    assert whole > deep[0] > deep[1] > deep[2] > 3 * config.width
