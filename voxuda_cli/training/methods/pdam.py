"""pdam: image-level translation, feature-level alignment and task re-weighting (Liu et al., TMI 2020).

- Image level: a translator moves each source volume towards the target's appearance before the
  student sees it. PDAM uses a CycleGAN; here a lighter one-way translator: a small residual 3D
  conv net (x + G(x), G starting at zero) trained adversarially against a patch discriminator
  of volumes (least squares, as CycleGAN's), with an L1 self-regularisation to its input in place
  of the second generator and the cycle loss (SimGAN's refiner, Shrivastava et al. 2017): the
  translation must keep the source's structure, which is what its mask needs, at a quarter of a
  CycleGAN's cost. The translator and its discriminator have their own Adam (lr 2e-4, betas 0.5,
  0.999, CycleGAN's) and take one step each per training step, before the student's.
- Feature level: the domain discriminator on f_v6 behind gradient reversal (the module every
  method here shares), translated source against target: PDAM's semantic-level alignment. Its
  instance- and panoptic-level branches need instance proposals, which a one-particle voxel mask
  does not have: left out.
- Task re-weighting: each translated source sample's L_seg is weighted by how target-like the
  domain discriminator finds it, 2 sigmoid(d) scaled to mean 1 over the batch (no gradient), so
  the source samples closest to the target count most.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from voxuda_cli.training import schedule
from voxuda_cli.training.losses import domain_loss, segmentation_loss
from voxuda_cli.training.methods import Method, Position, StepOutputs, register_method, single_process

if TYPE_CHECKING:
    from voxuda_cli.training.data import Batch
    from voxuda_cli.training.loop import Trainer

TRANSLATOR_WIDTH = 8
L1_WEIGHT = 10.0  # self-regularisation: translated volumes stay close to their source (z-score units)
ADAM = {"lr": 2e-4, "betas": (0.5, 0.999)}


class Translator(nn.Module):
    """x -> x + G(x): three 3^3 convolutions; the last starts at zero, so translation starts as the identity."""

    def __init__(self, width: int = TRANSLATOR_WIDTH) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(1, width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv3d(width, width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv3d(width, 1, 3, padding=1),
        )
        last = self.body[-1]
        assert isinstance(last, nn.Conv3d) and last.bias is not None
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class VolumeCritic(nn.Module):
    """A patch discriminator of volumes: one logit per 8^3 patch (real = target)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(1, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv3d(width, 2 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv3d(2 * width, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@register_method
class Pdam(Method):
    name = "pdam"
    summary = "PDAM (Liu 2020): source translated to the target + adversarial feature alignment + task re-weighting."
    uses_target = True
    has_discriminator = True
    loss_terms = ("seg", "dis")

    def attach(self, trainer: Trainer) -> None:
        single_process(trainer, self.name)
        self.translator = Translator().to(trainer.device)
        self.critic = VolumeCritic().to(trainer.device)
        self.translator_optimizer = torch.optim.Adam(self.translator.parameters(), **ADAM)  # type: ignore[arg-type]  # ADAM's betas tuple, typed as object in the dict
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), **ADAM)  # type: ignore[arg-type]  # ADAM's betas tuple, typed as object in the dict
        self._translated: torch.Tensor | None = None
        self._figures: dict[str, float] = {}

    def prepare(self, trainer: Trainer, batch: Batch, position: Position) -> None:
        source, target = batch.images.float(), batch.target_volumes.float()
        with torch.no_grad():
            fake = self.translator(source)
        real_score, fake_score = self.critic(target), self.critic(fake)
        critic_loss = (_least_squares(real_score, 1.0) + _least_squares(fake_score, 0.0)) / 2
        _minimise(self.critic_optimizer, critic_loss)
        fake = self.translator(source)
        score = self.critic(fake)
        adversarial = _least_squares(score, 1.0)
        self_regularisation = (fake - source).abs().mean()
        _minimise(self.translator_optimizer, adversarial + L1_WEIGHT * self_regularisation)
        with torch.no_grad():
            self._translated = self.translator(source).to(batch.images.dtype)
        self._figures = {
            "critic": float(critic_loss.detach()),
            "translator_adv": float(adversarial.detach()),
            "translator_l1": float(self_regularisation.detach()),
        }

    def inputs(self, batch: Batch) -> torch.Tensor:
        assert self._translated is not None, "prepare() runs before inputs()"
        return torch.cat([self._translated, batch.target_volumes])

    def losses(self, step: StepOutputs, batch: Batch) -> dict[str, torch.Tensor]:
        n = batch.images.shape[0]
        assert step.domain is not None
        per_sample = torch.stack([segmentation_loss(step.logits[i : i + 1], batch.masks[i : i + 1]) for i in range(n)])
        weights = task_weights(step.domain[:n])
        is_target = torch.arange(2 * n, device=step.logits.device) >= n
        step.figures.update(self._figures)
        step.figures["task_weight_max"] = float(weights.max())
        return {"seg": (weights * per_sample).mean(), "dis": domain_loss(step.domain_logits, is_target)}

    def reversal_weight(self, position: Position) -> float:
        return schedule.reversal_weight(self.settings, position.progress)

    def state_dict(self) -> dict[str, Any]:
        return {
            "translator": self.translator.state_dict(),
            "critic": self.critic.state_dict(),
            "translator_optimizer": self.translator_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.translator.load_state_dict(state["translator"])
        self.critic.load_state_dict(state["critic"])
        self.translator_optimizer.load_state_dict(state["translator_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])


def task_weights(source_domain_logits: torch.Tensor) -> torch.Tensor:
    """2 sigmoid(d) of each source sample (how target-like it looks), scaled to mean 1; no gradient."""
    weights = 2 * torch.sigmoid(source_domain_logits.detach().float())
    return weights / weights.mean().clamp_min(1e-6)


def _least_squares(scores: torch.Tensor, label: float) -> torch.Tensor:
    """LSGAN's loss (CycleGAN's choice): mean squared distance of the critic's scores to ``label``."""
    return F.mse_loss(scores, torch.full_like(scores, label))


def _minimise(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
