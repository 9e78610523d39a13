"""The loss terms of Vox-UDA (METHOD.md "Training"): segmentation, consistency, adversarial, pseudo-label.

Every function takes logits/features as the network returns them and computes in float32, so the
losses are the same under mixed precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

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
    """Mean over the batch of 1 - cos between each sample's flattened feature maps."""
    return (1.0 - F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1, eps=1e-8)).mean()


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


class PseudoLabelBatch(NamedTuple):
    """The teacher's labels of one training batch, on its device (what L_pl trains towards)."""

    labels: torch.Tensor  # (B, D, H, W) int64: the teacher's argmax
    confident: torch.Tensor  # (B, D, H, W) bool: max probability >= eta

    @property
    def coverage(self) -> float:
        """Fraction of target voxels that carry a pseudo-label."""
        return float(self.confident.float().mean())

    @property
    def foreground_fraction(self) -> float:
        """Fraction of the pseudo-labelled voxels labelled foreground (0 when none are confident)."""
        count = int(self.confident.sum())
        return 0.0 if count == 0 else float((self.labels.bool() & self.confident).sum()) / count

    def class_coverage(self, label: int) -> float:
        """Fraction of the voxels the teacher labels ``label`` that are confident (0 when it labels none)."""
        of_class = self.labels == label
        count = int(of_class.sum())
        return 0.0 if count == 0 else float((of_class & self.confident).sum()) / count


def pseudo_labels(teacher_logits: torch.Tensor, eta: float) -> PseudoLabelBatch:
    """Voxels whose teacher foreground or background probability is >= eta become labels."""
    return confident_labels(torch.softmax(teacher_logits.float(), dim=1), eta)


def confident_labels(teacher_probabilities: torch.Tensor, eta: float, keep: float | None = None) -> PseudoLabelBatch:
    """Pseudo-labels from the teacher's class probabilities (B, C, D, H, W); selection as in
    :func:`select_confident`."""
    confidence, labels = teacher_probabilities.float().max(dim=1)
    n_classes = teacher_probabilities.shape[1]
    return PseudoLabelBatch(labels=labels, confident=select_confident(confidence, labels, n_classes, eta, keep))


def select_confident(
    confidence: torch.Tensor, labels: torch.Tensor, n_classes: int, eta: float, keep: float | None = None
) -> torch.Tensor:
    """Which voxels carry a pseudo-label, given the teacher's max probability and argmax class.

    ``keep`` None: one threshold, voxels whose most probable class has probability >= eta.
    ``keep`` given: CBST's class-wise thresholds (Zou et al. 2018): per class, the ``keep`` most
    confident fraction of the voxels the teacher labels with it, or every voxel at or above
    ``eta``, become labels. Training applies it per batch, ``pseudo-label`` to a whole dataset.

    With one threshold for both classes a rare class (here the macromolecule, a few % of the
    voxels) seldom becomes confident and the loss drifts to background; a quantile per class keeps
    each class represented in proportion to what the teacher predicts.
    """
    confident = confidence >= eta
    if keep is None:
        return confident
    for label in range(n_classes):
        of_class = labels == label
        count = int(of_class.sum())
        if count == 0:
            continue
        values = confidence[of_class]
        rank = max(1, min(count, count - int(round(keep * count)) + 1))  # the k-th smallest kept value
        threshold = values.kthvalue(rank).values
        confident |= of_class & (confidence >= threshold)
    return confident


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
