"""mapseg: 3D masked autoencoding, then masked pseudo-labelling (Zhang et al., CVPR 2024).

- MAE stage (the run's burn-in, ``--burn-in`` of the schedule; resumable like every step):
  source and target volumes with ``MASK_RATIO`` of their ``MASK_PATCH``^3 cubes set to 0 go
  through the student; a reconstruction decoder (four one-channel heads on f_c, f_v2, f_v4, f_v6,
  shaped like the classifiers, with their own Adam at --lr) predicts the volume, and L_mae is the
  mean squared error on the masked voxels. No labels are used (MAPSeg pretrains without them).
- MPL stage (after the burn-in): L_seg on the source; an EMA teacher (a copy of the student at the
  switch) labels the whole raw target, its voxels whose class probability exceeds --eta are the
  pseudo-labels, and the student learns them on the same target with ``MASK_RATIO`` of its cubes
  masked (L_mpl, cross-entropy on the confident voxels), ramped in as L_pl is (--pl-ramp).

Simplifications (README's method table): MAPSeg's 70 % masking of 16^3 patches of 96^3 crops is
kept as a ratio with 4^3 cubes of the 32^3 box; its global-local context (a downsampled view of the
whole scan beside each local crop) is left out: a subtomogram already holds the whole particle.
Its separate pretraining run is the burn-in of the same run (with --burn-in 0 there is no MAE
stage), or an earlier run's, reused with ``--pretrained RUN`` (the student starts from that run's
checkpoint; this run's burn-in then trains L_seg alone, so that the teacher copied at its end
segments). Its L_mpl weighting is --pl-weight.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from voxuda_cli.confidence import confident_labels
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.models.serialization import load_tagged
from voxuda_cli.models.voxresnet import AuxiliaryClassifier
from voxuda_cli.training import schedule
from voxuda_cli.training.checkpoint import CHECKPOINT, CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION
from voxuda_cli.training.losses import pseudo_label_loss, segmentation_loss
from voxuda_cli.training.methods import AdaptsOnSchedule, Position, StepOutputs, register_method, single_process
from voxuda_cli.training.perturbations import PerturbsEachStep, patch_mask

if TYPE_CHECKING:
    from voxuda_cli.training.data import Batch
    from voxuda_cli.training.loop import Trainer

MASK_RATIO = 0.7
MASK_PATCH = 4
MAE_ONLY = {"seg": 0.0, "mae": 1.0, "mpl": 0.0}


def pretrained_student(path: Path, student: nn.Module) -> dict[str, torch.Tensor]:
    """The student weights of an earlier mapseg run (its folder or checkpoint.pt), checked to fit ``student``."""
    file = path / CHECKPOINT if path.is_dir() else path
    if not file.is_file():
        raise VoxudaInputError(
            f"--pretrained {path}: no {CHECKPOINT} there; pass a mapseg run folder or its checkpoint"
        )
    state = load_tagged(file, CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION, "checkpoint", "pass a voxuda checkpoint")
    method = dict(state.get("settings") or {}).get("method")
    if method != "mapseg":
        raise VoxudaInputError(f"--pretrained {file}: a {method} run's checkpoint; its MAE stage is a mapseg run's")
    weights = state["student"]
    mine = student.state_dict()
    if set(weights) != set(mine) or any(weights[k].shape != mine[k].shape for k in mine):
        raise VoxudaInputError(f"--pretrained {file}: its network differs (--width); train with the same --width")
    return weights


class Reconstruction(nn.Module):
    """Four one-channel heads on the student's features, summed: the MAE decoder."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            [AuxiliaryClassifier(c, 1, s) for c, s in ((width, 1), (2 * width, 2), (2 * width, 4), (2 * width, 8))]
        )

    def forward(self, features: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return sum(head(f) for head, f in zip(self.heads, features))


@register_method
class MapSeg(PerturbsEachStep, AdaptsOnSchedule):
    name = "mapseg"
    summary = "MAPSeg (Zhang 2024): 3D masked-autoencoder stage, then masked pseudo-labels from an EMA teacher."
    uses_target = True
    has_teacher = True
    loss_terms = ("seg", "mae", "mpl")
    ramped = "mpl"

    def attach(self, trainer: Trainer) -> None:
        single_process(trainer, self.name)
        self.decoder = Reconstruction(self.settings.width).to(trainer.device)
        self.decoder_optimizer = torch.optim.Adam(self.decoder.parameters(), lr=self.settings.lr)
        self._masks: torch.Tensor | None = None
        self._pretraining = not self._reused
        if self.settings.pretrained is not None:
            trainer.student.load_state_dict(pretrained_student(Path(self.settings.pretrained), trainer.student))

    @property
    def _reused(self) -> bool:
        """--pretrained: the MAE stage is an earlier run's, not this run's burn-in."""
        return self.settings.pretrained is not None

    def before_step(self, trainer: Trainer, position: Position) -> None:
        super().before_step(trainer, position)
        self._pretraining = not self._reused and not schedule.adapting(self.settings, position.progress)

    def inputs(self, batch: Batch) -> torch.Tensor:
        target = batch.target_volumes
        assert target is not None
        if self._pretraining:
            volumes = torch.cat([batch.images, target])
            self._masks = patch_mask(volumes.shape, MASK_PATCH, MASK_RATIO, self.generator).to(volumes.device)
            return volumes.masked_fill(self._masks, 0.0)
        self._masks = patch_mask(target.shape, MASK_PATCH, MASK_RATIO, self.generator).to(target.device)
        return torch.cat([batch.images, target.masked_fill(self._masks, 0.0)])

    def losses(self, step: StepOutputs, batch: Batch) -> dict[str, torch.Tensor]:
        n = batch.images.shape[0]
        zero = step.logits.new_zeros((), dtype=torch.float32)
        if self._pretraining:
            assert self._masks is not None and batch.target is not None
            volumes = torch.cat([batch.images, batch.target_volumes]).float()
            error = (self.decoder(step.features).float() - volumes).pow(2)
            return {"seg": zero, "mae": error[self._masks].mean(), "mpl": zero}
        losses = {"seg": segmentation_loss(step.logits[:n], batch.masks), "mae": zero, "mpl": zero}
        if step.teacher_logits is not None:
            labels = confident_labels(step.teacher_logits.float().exp(), float(self.settings.eta), None)
            step.figures["pl_coverage"] = labels.coverage
            losses["mpl"] = pseudo_label_loss(step.logits[n:], labels)
        return losses

    def weights(self, position: Position) -> dict[str, float]:
        if not schedule.adapting(self.settings, position.progress):
            return {"seg": float(self.settings.seg_weight), "mae": 0.0, "mpl": 0.0} if self._reused else MAE_ONLY
        ramp = schedule.pl_ramp_factor(self.settings, position.progress)
        return {"seg": float(self.settings.seg_weight), "mae": 0.0, "mpl": float(self.settings.pl_weight) * ramp}

    def teacher_views(self, batch: Batch) -> list[torch.Tensor]:
        return [batch.target_volumes]

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.decoder_optimizer]

    def state_dict(self) -> dict[str, Any]:
        return {"decoder": self.decoder.state_dict(), "decoder_optimizer": self.decoder_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.decoder.load_state_dict(state["decoder"])
            self.decoder_optimizer.load_state_dict(state["decoder_optimizer"])
