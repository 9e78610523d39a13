"""asc: appearance and structure consistency (Xu, Gong, Wan & Li, MICCAI 2023), on 3D volumes.

- Appearance: each source volume x_s is given a target volume's Fourier amplitudes at low
  frequencies (FDA's swap, below ``APPEARANCE_BAND`` of Nyquist, by a random amount in [0, 1]) and
  keeps its phases, hence its structure and its mask: L_seg on both x_s and x_s->t, and
  L_app = mean squared difference of their softmax predictions.
- Structure: an EMA teacher predicts the raw target x_t; the student sees x_t flipped and with
  white noise (``STRUCTURE_NOISE`` std of the z-scored input) and L_struct is the mean squared
  difference of its softmax with the teacher's, flipped alike.

Simplifications (README's method table): ASC ran on 2D slices of fetal MRI in the Vox-UDA paper;
here the network is the 3D VoxResNet of every method. Its structure perturbation is flips and
noise (no elastic deformation: it would move the missing wedge). --con-weight weights both
consistency terms; L_struct and the teacher follow the run's burn-in and ramp (schedule.py),
as vox-uda's L_pl does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from voxuda_cli.filters.spectral import mix_amplitudes
from voxuda_cli.training import schedule
from voxuda_cli.training.losses import segmentation_loss
from voxuda_cli.training.methods import AdaptsOnSchedule, Position, StepOutputs, register_method
from voxuda_cli.training.perturbations import PerturbsEachStep, add_gaussian, draw_flips, flip_each

if TYPE_CHECKING:
    from voxuda_cli.training.data import Batch

APPEARANCE_BAND = 0.5  # fraction of Nyquist below which the target's amplitudes are imported
STRUCTURE_NOISE = 0.2  # std of the white noise on the student's target view (inputs are z-scored)


@register_method
class Asc(PerturbsEachStep, AdaptsOnSchedule):
    name = "asc"
    summary = "ASC (Xu 2023): Fourier appearance transfer source->target + teacher-student structure consistency."
    uses_target = True
    has_teacher = True
    loss_terms = ("seg", "app", "struct")
    ramped = "struct"

    def inputs(self, batch: Batch) -> torch.Tensor:
        assert batch.target is not None
        n = batch.images.shape[0]
        strength = torch.rand(n, generator=self.generator)
        appearance = mix_amplitudes(batch.images, batch.target_volumes, strength, band=APPEARANCE_BAND)
        self.flips = draw_flips(n, self.generator)
        perturbed = add_gaussian(flip_each(batch.target_volumes, self.flips), STRUCTURE_NOISE, self.generator)
        return torch.cat([batch.images, appearance, perturbed])

    def losses(self, step: StepOutputs, batch: Batch) -> dict[str, torch.Tensor]:
        source, appearance, target = step.logits.float().split(batch.images.shape[0])
        losses = {
            "seg": (segmentation_loss(source, batch.masks) + segmentation_loss(appearance, batch.masks)) / 2,
            "app": (source.softmax(1) - appearance.softmax(1)).pow(2).mean(),
            "struct": target.new_zeros(()),
        }
        if step.teacher_logits is not None:
            teacher = flip_each(step.teacher_logits.exp(), self.flips)
            losses["struct"] = (target.softmax(1) - teacher).pow(2).mean()
        return losses

    def weights(self, position: Position) -> dict[str, float]:
        consistency = float(self.settings.con_weight)
        ramp = schedule.pl_ramp_factor(self.settings, position.progress)
        return {"seg": float(self.settings.seg_weight), "app": consistency, "struct": consistency * ramp}

    def teacher_views(self, batch: Batch) -> list[torch.Tensor]:
        return [batch.target_volumes]
