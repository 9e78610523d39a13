"""vox-uda: L_seg + L_con (NGM-noised source) + L_dis (discriminator) + L_pl (teacher's pseudo-labels).

The student sees [x_s, x_s', x_t] in one forward (loop.py says why); the EMA teacher labels the
denoised target; voxels whose class probability is below --eta are ignored by L_pl.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from voxuda_cli.training.losses import (
    consistency_loss,
    domain_loss,
    pseudo_label_loss,
    pseudo_labels,
    segmentation_loss,
)
from voxuda_cli.training.methods import Method, StepOutputs, register_method

if TYPE_CHECKING:
    from voxuda_cli.training.data import Batch


@register_method
class VoxUda(Method):
    name = "vox-uda"
    uses_target = True
    uses_noisy_source = True
    uses_denoised_target = True
    has_teacher = True
    has_discriminator = True
    loss_terms = ("seg", "con", "dis", "pl")

    def inputs(self, batch: Batch) -> torch.Tensor:
        return torch.cat([batch.images, batch.noisy, batch.target])  # type: ignore[list-item]

    def losses(self, step: StepOutputs, batch: Batch) -> dict[str, torch.Tensor]:
        n = batch.images.shape[0]
        # split, not slicing: its backward writes each tensor's gradient once, where every slice
        # would allocate (and add) a full-batch gradient of its own.
        clean_logits, noisy_logits, target_logits = step.logits.split(n)
        views = [f.split(n) for f in step.features]
        is_target = torch.arange(3 * n, device=step.logits.device) >= 2 * n
        targets = pseudo_labels(step.teacher_logits, self.settings.eta)  # type: ignore[arg-type]
        step.figures["pl_coverage"] = targets.coverage
        step.figures["pl_foreground"] = targets.foreground_fraction
        return {
            "seg": 0.5 * (segmentation_loss(clean_logits, batch.masks) + segmentation_loss(noisy_logits, batch.masks)),
            "con": consistency_loss([v[0] for v in views], [v[1] for v in views], self.settings.con_lambdas),
            "dis": domain_loss(step.domain, is_target),  # type: ignore[arg-type]
            "pl": pseudo_label_loss(target_logits, targets),
        }

    def weights(self, position: float | None) -> dict[str, float]:
        weights = super().weights(position)
        weights["pl"] *= pl_warmup_factor(self.settings.pl_warmup, position)
        return weights


def pl_warmup_factor(warmup_epochs: float, epoch_position: float | None) -> float:
    """Mean Teacher's ramp-up exp(-5 (1 - t)^2) over ``warmup_epochs``; 1 when off or done."""
    if warmup_epochs <= 0 or epoch_position is None or epoch_position >= warmup_epochs:
        return 1.0
    t = max(epoch_position, 0.0) / warmup_epochs
    return float(np.exp(-5.0 * (1.0 - t) ** 2))
