"""dann: L_seg on the source plus a domain discriminator on f_v6 behind gradient reversal (Ganin 2016).

The reversal follows the run's adaptation schedule (training/schedule.py): off during the burn-in,
then the DANN ramp up to --reversal-scale, the same schedule as vox-uda's L_dis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from voxuda_cli.training import schedule
from voxuda_cli.training.losses import domain_loss, segmentation_loss
from voxuda_cli.training.methods import Method, Position, StepOutputs, register_method

if TYPE_CHECKING:
    from voxuda_cli.training.data import Batch


@register_method
class Dann(Method):
    name = "dann"
    summary = "DANN (Ganin 2016): L_seg + a domain discriminator on f_v6 behind gradient reversal."
    uses_target = True
    has_discriminator = True
    loss_terms = ("seg", "dis")

    def inputs(self, batch: Batch) -> torch.Tensor:
        return torch.cat([batch.images, batch.target_volumes])

    def losses(self, step: StepOutputs, batch: Batch) -> dict[str, torch.Tensor]:
        n = batch.images.shape[0]
        is_target = torch.arange(2 * n, device=step.logits.device) >= n
        return {
            "seg": segmentation_loss(step.logits[:n], batch.masks),
            "dis": domain_loss(step.domain_logits, is_target),
        }

    def reversal_weight(self, position: Position) -> float:
        return schedule.reversal_weight(self.settings, position.progress)
