"""The loss terms: values at known inputs, zero where they must be zero, masking of pseudo-labels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from voxuda_cli.confidence import confident_labels, pseudo_labels
from voxuda_cli.training.losses import (
    balanced_pseudo_label_loss,
    consistency_loss,
    cosine_distance,
    domain_loss,
    pseudo_label_loss,
    segmentation_loss,
    soft_dice_loss,
)


def _logits_for(masks: torch.Tensor, margin: float) -> torch.Tensor:
    """Two-class logits that predict ``masks`` with confidence set by ``margin``."""
    foreground = masks.float() * 2 - 1
    return torch.stack([-margin * foreground, margin * foreground], dim=1)


def test_consistency_is_zero_for_identical_features() -> None:
    features = [torch.randn(2, 4, 8, 8, 8), torch.randn(2, 8, 4, 4, 4)]
    loss = consistency_loss(features, [f.clone() for f in features], [0.5, 0.5])
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_consistency_weights_each_level() -> None:
    a = [torch.ones(1, 1, 2, 2, 2)] * 4
    opposite = [-t for t in a]  # cos = -1: each level contributes 2 * lambda
    loss = consistency_loss(a, opposite, [0.2, 0.2, 0.3, 0.3])
    assert loss.item() == pytest.approx(2.0 * (0.2 + 0.2 + 0.3 + 0.3))
    assert cosine_distance(a[0], 3 * a[0]).item() == pytest.approx(0.0, abs=1e-6)  # scale-free


def test_consistency_gradient_reaches_both_branches() -> None:
    a = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    b = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    consistency_loss([a], [b], [1.0]).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_segmentation_loss_rewards_the_right_mask() -> None:
    masks = torch.zeros(2, 8, 8, 8, dtype=torch.uint8)
    masks[:, 2:6, 2:6, 2:6] = 1
    right = segmentation_loss(_logits_for(masks, 10.0), masks)
    wrong = segmentation_loss(_logits_for(1 - masks, 10.0), masks)
    assert right.item() < 0.01 < 1.5 < wrong.item()


def test_soft_dice_of_an_empty_mask_predicted_empty_is_zero() -> None:
    masks = torch.zeros(1, 4, 4, 4, dtype=torch.uint8)
    assert soft_dice_loss(_logits_for(masks, 20.0), masks).item() == pytest.approx(0.0, abs=1e-6)


def test_domain_loss_weights_the_two_domains_equally() -> None:
    # Two source samples predicted perfectly, one target sample predicted as source.
    logits = torch.tensor([-30.0, -30.0, -30.0])
    is_target = torch.tensor([False, False, True])
    assert domain_loss(logits, is_target).item() == pytest.approx(30.0 / 2, rel=1e-4)
    at_chance = domain_loss(torch.zeros(3), is_target)
    assert at_chance.item() == pytest.approx(math.log(2))


def test_pseudo_labels_keep_only_confident_voxels() -> None:
    logits = torch.zeros(1, 2, 1, 1, 3)
    logits[0, 1, 0, 0] = torch.tensor([4.0, 0.5, -4.0])  # p(fg) = 0.98, 0.62, 0.02
    targets = pseudo_labels(logits, 0.85)
    assert targets.labels.flatten().tolist() == [1, 1, 0]
    assert targets.confident.flatten().tolist() == [True, False, True]
    assert targets.coverage == pytest.approx(2 / 3)
    assert targets.foreground_fraction == pytest.approx(1 / 2)


def test_pseudo_label_loss_ignores_unconfident_voxels_and_is_zero_without_any() -> None:
    teacher = torch.zeros(1, 2, 1, 1, 2)
    teacher[0, 1, 0, 0] = torch.tensor([5.0, 0.1])
    targets = pseudo_labels(teacher, 0.85)
    student = torch.zeros(1, 2, 1, 1, 2, requires_grad=True)
    loss = pseudo_label_loss(student, targets)
    assert loss.item() == pytest.approx(math.log(2))
    loss.backward()
    assert student.grad[0, :, 0, 0, 1].abs().sum() == 0  # the unconfident voxel gets no gradient
    nobody = pseudo_labels(torch.zeros(1, 2, 2, 2, 2), 0.85)
    assert nobody.coverage == 0 and nobody.foreground_fraction == 0
    assert pseudo_label_loss(torch.randn(1, 2, 2, 2, 2), nobody).item() == 0.0


def _probabilities(foreground: list[float]) -> torch.Tensor:
    fg = torch.tensor(foreground).reshape(1, 1, 1, 1, -1)
    return torch.cat([1 - fg, fg], dim=1)


def test_class_quantile_thresholds_keep_the_most_confident_fraction_of_each_class() -> None:
    # Foreground (p >= 0.5): 0.6, 0.7, 0.8, 0.9 -> none reaches eta 0.95; keep 1/2 -> 0.8, 0.9.
    # Background: p(bg) 0.99, 0.98, 0.97, 0.6 -> all >= 0.95 but the last are confident by eta.
    probabilities = _probabilities([0.6, 0.7, 0.8, 0.9, 0.01, 0.02, 0.03, 0.4])
    single = confident_labels(probabilities, 0.95)
    assert single.confident.flatten().tolist() == [False] * 4 + [True, True, True, False]
    balanced = confident_labels(probabilities, 0.95, keep=0.5)
    assert balanced.labels.flatten().tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert balanced.confident.flatten().tolist() == [False, False, True, True, True, True, True, False]
    assert balanced.class_coverage(1) == pytest.approx(0.5)
    assert balanced.class_coverage(0) == pytest.approx(0.75)
    everything = confident_labels(probabilities, 0.95, keep=1.0)
    assert bool(everything.confident.all())


def test_balanced_pseudo_label_loss_weights_the_classes_equally() -> None:
    # One confident foreground voxel against three confident background voxels.
    targets = confident_labels(_probabilities([0.99, 0.01, 0.01, 0.01]), 0.9)
    student = torch.zeros(1, 2, 1, 1, 4)
    student[0, 1, 0, 0, 0] = -3.0  # the student misses the foreground voxel
    plain = pseudo_label_loss(student, targets)
    balanced = balanced_pseudo_label_loss(student, targets)
    ce_fg, ce_bg = F.cross_entropy(student[..., :1], targets.labels[..., :1]), math.log(2)
    assert plain.item() == pytest.approx((ce_fg.item() + 3 * ce_bg) / 4, rel=1e-5)
    assert balanced.item() > plain.item()
    none = confident_labels(_probabilities([0.6, 0.4]), 0.9)
    assert balanced_pseudo_label_loss(torch.zeros(1, 2, 1, 1, 2), none).item() == 0.0


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "flat", "zero"])
def test_cosine_distance_equals_torchs_composite_with_its_gradient(layout: str) -> None:
    generator = torch.Generator().manual_seed(4)
    shape = (2, 10) if layout == "flat" else (3, 4, 5, 6, 7)
    a = torch.randn(shape, dtype=torch.float64, generator=generator)
    b = a + 0.7 * torch.randn(shape, dtype=torch.float64, generator=generator)
    if layout == "channels_last":
        a, b = (t.to(memory_format=torch.channels_last_3d) for t in (a, b))
    if layout == "zero":
        a[1] = 0.0  # a clamped norm: torch's gradient is taken through max(|a|, eps)
    a.requires_grad_()
    b.requires_grad_()
    reference = (1 - torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=1e-8)).mean()
    got = cosine_distance(a, b)
    assert abs(float((got - reference).detach())) < 1e-12
    for mine, theirs in zip(torch.autograd.grad(got, (a, b)), torch.autograd.grad(reference, (a, b))):
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-12)
    if layout != "zero":
        assert torch.autograd.gradcheck(cosine_distance, (a, b))


def test_cosine_distance_of_bf16_computes_in_float32() -> None:
    a = torch.randn(2, 3, 4, 4, 4).to(torch.bfloat16).requires_grad_()
    b = torch.randn(2, 3, 4, 4, 4).to(torch.bfloat16).requires_grad_()
    got = cosine_distance(a, b)
    reference = (1 - torch.nn.functional.cosine_similarity(a.float().flatten(1), b.float().flatten(1), dim=1)).mean()
    assert got.dtype == torch.float32 and abs(float((got - reference).detach())) < 1e-6
    got.backward()
    assert a.grad is not None and a.grad.dtype == torch.bfloat16
