"""Which voxels a teacher labels: one threshold (eta) or CBST's class-wise quantiles.

Shared by training (the EMA teacher's pseudo-labels of every batch, training/methods/) and
inference (``voxuda pseudo-label`` on a whole dataset), so both apply one rule.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


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
