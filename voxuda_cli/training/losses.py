"""The loss terms of Vox-UDA (METHOD.md "Training"): segmentation, consistency, adversarial, pseudo-label.

Every function takes logits/features as the network returns them and computes in float32, so the
losses are the same under mixed precision.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from voxuda_cli.confidence import PseudoLabelBatch

DICE_SMOOTH = 1.0  # keeps the soft Dice of an empty mask predicted empty at 1 (loss 0), not 0/0


def soft_dice_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice of the foreground probability, per sample, averaged over the batch."""
    foreground = torch.softmax(logits.float(), dim=1)[:, 1]
    truth = masks.float()
    dims = tuple(range(1, foreground.ndim))
    overlap = (foreground * truth).sum(dims)
    total = foreground.sum(dims) + truth.sum(dims)
    return (1.0 - (2.0 * overlap + DICE_SMOOTH) / (total + DICE_SMOOTH)).mean()


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """L_seg of one batch: voxel cross-entropy + soft foreground Dice."""
    return F.cross_entropy(logits.float(), masks.long()) + soft_dice_loss(logits, masks)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of 1 - cos between each sample's flattened feature maps.

    The same number as ``F.cosine_similarity(a.flatten(1), b.flatten(1), eps=1e-8)``, with a
    hand-written backward: three dot products per sample (matrix products, no temporaries, no
    flattening copy of a channels-last map) and two fused passes for the gradient, where the
    composite op wrote a dozen full-size temporaries (measured: a third of a vox-uda step's
    elementwise time).
    """
    return (1.0 - _Cosine.apply(a, b)).mean()


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(N, -1) view of ``x`` (at least float32) in its memory order (a cosine does not depend on the order)."""
    x = _at_least_float32(x)
    if x.ndim == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        x = x.permute(0, 2, 3, 4, 1)
    return x.reshape(x.shape[0], -1)


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


class _Cosine(torch.autograd.Function):
    """Per-sample cos(a, b) = a.b / (max(|a|, eps) max(|b|, eps)), eps = 1e-8: torch's definition."""

    EPS = 1e-8

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = _flat(a), _flat(b)
        rows = fa.shape[0]
        dot = torch.bmm(fa.view(rows, 1, -1), fb.view(rows, -1, 1)).view(rows)
        a2 = torch.bmm(fa.view(rows, 1, -1), fa.view(rows, -1, 1)).view(rows)
        b2 = torch.bmm(fb.view(rows, 1, -1), fb.view(rows, -1, 1)).view(rows)
        norm_a, norm_b = a2.sqrt().clamp_min(_Cosine.EPS), b2.sqrt().clamp_min(_Cosine.EPS)
        cos = dot / (norm_a * norm_b)
        ctx.save_for_backward(a, b, cos, norm_a, norm_b)
        return cos

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b, cos, norm_a, norm_b = ctx.saved_tensors  # type: ignore[attr-defined]  # torch's autograd ctx stubs lack saved_tensors
        shape = (-1,) + (1,) * (a.ndim - 1)
        # d cos / d a = b / (|a| |b|) - cos a / |a|^2; a clamped norm is a constant (no second term)
        on_other = (grad / (norm_a * norm_b)).view(shape)
        zero = torch.zeros_like(cos)
        on_self_a = torch.where(norm_a > _Cosine.EPS, grad * cos / norm_a**2, zero).view(shape)
        on_self_b = torch.where(norm_b > _Cosine.EPS, grad * cos / norm_b**2, zero).view(shape)
        fa, fb = _at_least_float32(a), _at_least_float32(b)
        grad_a = (fb * on_other).sub_(fa * on_self_a)
        grad_b = (fa * on_other).sub_(fb * on_self_b)
        return grad_a.to(a.dtype), grad_b.to(b.dtype)


def consistency_loss(
    clean: Sequence[torch.Tensor], noisy: Sequence[torch.Tensor], lambdas: Sequence[float]
) -> torch.Tensor:
    """L_con = sum_k lambda_k (1 - cos(f_k(x_s), f_k(x_s'))) over k in (c, v2, v4, v6)."""
    if not (len(clean) == len(noisy) == len(lambdas)):
        raise ValueError(f"{len(clean)} clean, {len(noisy)} noisy feature maps and {len(lambdas)} weights")
    terms = [weight * cosine_distance(a, b) for a, b, weight in zip(clean, noisy, lambdas)]
    return torch.stack(terms).sum()


def domain_loss(domain_logits: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """L_dis: binary cross-entropy of the discriminator, source and target halves weighted equally.

    Vox-UDA feeds two source views (x_s, x_s') per target sample; weighting each domain's mean
    equally keeps the discriminator from settling on the 2:1 prior.
    """
    per_sample = F.binary_cross_entropy_with_logits(domain_logits.float(), is_target.float(), reduction="none")
    target = is_target.bool()
    parts = [per_sample[mask].mean() for mask in (~target, target) if bool(mask.any())]
    return torch.stack(parts).mean()


def pseudo_label_loss(student_logits: torch.Tensor, targets: PseudoLabelBatch) -> torch.Tensor:
    """L_pl: cross-entropy of the student over the confident voxels only (0 when there are none)."""
    per_voxel = F.cross_entropy(student_logits.float(), targets.labels, reduction="none")
    weight = targets.confident.float()
    return (per_voxel * weight).sum() / weight.sum().clamp_min(1.0)


def balanced_pseudo_label_loss(student_logits: torch.Tensor, targets: PseudoLabelBatch) -> torch.Tensor:
    """L_pl with the classes weighted equally: the mean of each class's mean CE over its confident
    voxels, plus the soft foreground Dice over the confident voxels (as L_seg has on the source)."""
    per_voxel = F.cross_entropy(student_logits.float(), targets.labels, reduction="none")
    confident = targets.confident
    parts = []
    for label in range(student_logits.shape[1]):
        weight = (confident & (targets.labels == label)).float()
        if float(weight.sum()) > 0:
            parts.append((per_voxel * weight).sum() / weight.sum())
    if not parts:
        return per_voxel.sum() * 0.0
    weight = confident.float()
    foreground = torch.softmax(student_logits.float(), dim=1)[:, 1] * weight
    truth = targets.labels.float() * weight
    dims = tuple(range(1, foreground.ndim))
    dice = (2.0 * (foreground * truth).sum(dims) + DICE_SMOOTH) / (foreground.sum(dims) + truth.sum(dims) + DICE_SMOOTH)
    return torch.stack(parts).mean() + (1.0 - dice).mean()
