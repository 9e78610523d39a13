"""le-uda: self-ensembling consistency across domains plus adversarial alignment (Zhao et al., TMI 2022).

- Self-ensembling: an EMA teacher (Mean Teacher) predicts the clean source and target volumes;
  the student sees both flipped and with white noise (``NOISE`` std of the z-scored input), and
  L_con is the mean squared difference of the student's softmax and the teacher's (flipped alike)
  over both domains: the teacher's knowledge of the source carries over to the target.
- Adversarial: a domain discriminator on f_v6 behind gradient reversal (the DANN module every
  method here shares), L_dis on the student's source and target features.
- L_seg on the student's (perturbed) source volumes.

Simplifications (README's method table): LE-UDA ran on 2D slices in the Vox-UDA paper; here it is
3D. Its paper's second, teacher-side adversarial branch is left out (one discriminator, on the
student). The consistency ramp and the reversal follow the run's schedule (schedule.py);
--con-weight and --dis-weight weight the terms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from voxuda_cli.training.losses import domain_loss, segmentation_loss
from voxuda_cli.training.methods import AdaptsOnSchedule, StepOutputs, register_method
from voxuda_cli.training.perturbations import PerturbsEachStep, add_gaussian, draw_flips, flip_each

if TYPE_CHECKING:
    from voxuda_cli.training.data import Batch

NOISE = 0.2  # std of the white noise on the student's views (inputs are z-scored)


@register_method
class LeUda(PerturbsEachStep, AdaptsOnSchedule):
    name = "le-uda"
    summary = "LE-UDA (Zhao 2022): mean-teacher consistency on source and target + adversarial feature alignment."
    uses_target = True
    has_teacher = True
    has_discriminator = True
    loss_terms = ("seg", "con", "dis")
    ramped = "con"

    def inputs(self, batch: Batch) -> torch.Tensor:
        clean = torch.cat([batch.images, batch.target_volumes])
        self.flips = draw_flips(clean.shape[0], self.generator)
        return add_gaussian(flip_each(clean, self.flips), NOISE, self.generator)

    def losses(self, step: StepOutputs, batch: Batch) -> dict[str, torch.Tensor]:
        n = batch.images.shape[0]
        logits = step.logits.float()
        masks = flip_each(batch.masks.unsqueeze(1), self.flips[:n]).squeeze(1)
        is_target = torch.arange(2 * n, device=logits.device) >= n
        losses = {
            "seg": segmentation_loss(logits[:n], masks),
            "con": logits.new_zeros(()),
            "dis": domain_loss(step.domain_logits, is_target),
        }
        if step.teacher_logits is not None:
            teacher = flip_each(step.teacher_logits.exp(), self.flips)
            losses["con"] = (logits.softmax(1) - teacher).pow(2).mean()
        return losses

    def teacher_views(self, batch: Batch) -> list[torch.Tensor]:
        # one view of both domains (several views would be averaged into one prediction)
        return [torch.cat([batch.images, batch.target_volumes])]
