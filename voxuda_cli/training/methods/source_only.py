"""source-only: the lower bound; L_seg on the labelled source alone, the target never seen."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from voxuda_cli.training.losses import segmentation_loss
from voxuda_cli.training.methods import Method, StepOutputs, register_method

if TYPE_CHECKING:
    from voxuda_cli.training.data import Batch


@register_method
class SourceOnly(Method):
    name = "source-only"
    summary = "w/o adaptation: L_seg on the labelled source; the target is never seen."

    def losses(self, step: StepOutputs, batch: Batch) -> dict[str, torch.Tensor]:
        n = batch.images.shape[0]
        return {"seg": segmentation_loss(step.logits[:n], batch.masks)}
