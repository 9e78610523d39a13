"""vox-uda: L_seg + L_con (a second source view) + L_dis (discriminator) + L_pl (teacher's pseudo-labels).

The student sees [x_s, x_s', x_t] in one forward (loop.py says why; [x_s, x_t] where x_s' = x_s).
x_s' is the NGM-noised source (or a target-styled one, --source-view). The EMA teacher starts as
a copy of the student when the burn-in ends (training/schedule.py) and labels the target view(s)
--teacher-input names; its pseudo-labels are the voxels above --eta, or the most confident
--pl-keep of each class (--pl-threshold class-quantile), and L_pl is their cross-entropy, plain or
class-balanced.
With --bn-statistics source the student's batch norm normalises x_t with the statistics of
[x_s, x_s'] (models/voxresnet.BatchNorm3d).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from voxuda_cli.confidence import PseudoLabelBatch, confident_labels
from voxuda_cli.training import schedule
from voxuda_cli.training.losses import (
    balanced_pseudo_label_loss,
    consistency_loss,
    domain_loss,
    pseudo_label_loss,
    segmentation_loss,
)
from voxuda_cli.training.methods import AdaptsOnSchedule, Position, StepOutputs, register_method

if TYPE_CHECKING:
    from voxuda_cli.training.data import Batch


@register_method
class VoxUda(AdaptsOnSchedule):
    name = "vox-uda"
    summary = "Vox-UDA (the default): L_seg + L_con on a second source view + L_dis + the teacher's pseudo-labels."
    uses_target = True
    uses_noisy_source = True
    has_teacher = True
    has_discriminator = True
    loss_terms = ("seg", "con", "dis", "pl")

    @property
    def uses_denoised_target(self) -> bool:  # type: ignore[override]  # a property where the base has a class attribute (read the same way)
        return self.settings.teacher_input != "raw"

    def inputs(self, batch: Batch) -> torch.Tensor:
        return torch.cat([*self._source_views(batch), batch.target_volumes])

    @staticmethod
    def _source_views(batch: Batch) -> list[torch.Tensor]:
        # x_s' = x_s (--source-view none) is not run twice: its L_seg is x_s's and its L_con 0.
        return [batch.images] if batch.noisy is None else [batch.images, batch.noisy]

    def statistics_samples(self, batch: Batch) -> int | None:
        return len(self._source_views(batch)) * batch.images.shape[0] if batch.source_statistics else None

    def losses(self, step: StepOutputs, batch: Batch) -> dict[str, torch.Tensor]:
        n, n_views = batch.images.shape[0], len(self._source_views(batch))
        # split, not slicing: its backward writes each tensor's gradient once, where every slice
        # would allocate (and add) a full-batch gradient of its own.
        *source_logits, target_logits = step.logits.split(n)
        views = [f.split(n) for f in step.features]
        is_target = torch.arange((n_views + 1) * n, device=step.logits.device) >= n_views * n
        con = (
            consistency_loss([v[0] for v in views], [v[1] for v in views], self.settings.con_lambdas)
            if n_views == 2
            else step.logits.new_zeros(())
        )
        losses = {
            "seg": torch.stack([segmentation_loss(logits, batch.masks) for logits in source_logits]).mean(),
            "con": con,
            "dis": domain_loss(step.domain_logits, is_target),
        }
        step.figures["source_foreground"] = float(batch.masks.float().mean())
        if step.teacher_logits is not None:
            targets = self.pseudo_labels(step.teacher_logits)
            step.figures.update(pseudo_label_figures(targets, target_logits))
            loss = balanced_pseudo_label_loss if self.settings.pl_loss == "balanced" else pseudo_label_loss
            losses["pl"] = loss(target_logits, targets)
        return losses

    def pseudo_labels(self, teacher_logits: torch.Tensor) -> PseudoLabelBatch:
        keep = self.settings.pl_keep if self.settings.pl_threshold == "class-quantile" else None
        return confident_labels(torch.softmax(teacher_logits.float(), dim=1), self.settings.eta, keep)

    def weights(self, position: Position) -> dict[str, float]:
        weights = super().weights(position)  # the ramp over --pl-ramp
        weights["pl"] *= pl_warmup_factor(self.settings.pl_warmup, position.epoch)
        return weights

    def teacher_views(self, batch: Batch) -> list[torch.Tensor]:
        choice = self.settings.teacher_input
        if choice == "raw":
            return [batch.target_volumes]
        if choice == "denoised":
            return [batch.denoised_volumes]
        return [batch.target_volumes, batch.denoised_volumes]  # mean


@torch.no_grad()
def pseudo_label_figures(targets: PseudoLabelBatch, student_target_logits: torch.Tensor) -> dict[str, float]:
    """What shows whether the teacher is healthy: coverage per class, foreground fractions, agreement."""
    student_labels = student_target_logits.detach().argmax(dim=1)
    return {
        "pl_coverage": targets.coverage,
        "pl_foreground": targets.foreground_fraction,
        "pl_coverage_fg": targets.class_coverage(1),
        "pl_coverage_bg": targets.class_coverage(0),
        "teacher_foreground": float(targets.labels.float().mean()),
        "student_foreground_target": float(student_labels.float().mean()),
        "agreement": float((student_labels == targets.labels).float().mean()),
    }


def pl_warmup_factor(warmup_epochs: float, epoch_position: float | None) -> float:
    """Mean Teacher's ramp-up (schedule.ramp_up) over ``warmup_epochs``; 1 when off or done."""
    if warmup_epochs <= 0 or epoch_position is None:
        return 1.0
    return schedule.ramp_up(epoch_position / warmup_epochs)
