"""Guards that notice, without labels, an adaptation term failing, and switch it off.

Two failures seen on data the project had never seen (issue 23, docs/METHOD.md "Guards"):

- **A runaway adversarial game.** With gradient reversal the feature extractor *maximises* the
  discriminator's loss. Healthy alignment keeps that loss near ln 2 (0.69: the discriminator at
  chance); a loss well above it means the extractor has pushed the domains past indistinguishable
  into a reversed, ever-growing separation (measured: 2-3 on a simulated target, 7-26 on real
  ribosomes, after which the student's target masks collapsed). The guard keeps a running mean of
  L_dis once the reversal weight is on and, when it leaves the band (above ``dis_guard``), turns
  the reversal weight and L_dis off for the rest of the run.
- **A drifting teacher.** Pseudo-labels whose foreground fraction drifts far from the source's
  (below 1/``pl_guard`` of it, the collapse of issue 11, or above ``pl_guard`` times it, noise
  labelled as particle) teach the student that drift. While the running foreground fraction of the
  teacher's labels is outside the band, L_pl is off; it comes back when the teacher does.

A guard that trips says so once in the log and in the run's summary; its state is part of the
checkpoint, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("voxuda")

# Running means over about this many steps: long enough to ignore one bad batch, short enough to
# act within an epoch of a small run.
RUNNING_STEPS = 20


@dataclass
class GuardState:
    dis_mean: float | None = None  # running mean of L_dis while the reversal weight is on
    dis_steps: int = 0
    dis_tripped_at: int | None = None  # step at which the adversarial term was switched off
    pl_mean: float | None = None  # running mean of the teacher's label foreground / the source's
    pl_paused_steps: int = 0  # steps on which L_pl was off


class AdaptationGuard:
    """Watches a run's step figures; gates the reversal weight and L_pl of the steps that follow."""

    def __init__(self, dis_band: float, pl_band: float) -> None:
        self.dis_band = dis_band  # 0: off
        self.pl_band = pl_band  # 0: off
        self.state = GuardState()

    @property
    def adversarial_off(self) -> bool:
        return self.state.dis_tripped_at is not None

    @property
    def teacher_off(self) -> bool:
        if not self.pl_band or self.state.pl_mean is None:
            return False
        return not (1.0 / self.pl_band <= self.state.pl_mean <= self.pl_band)

    def reversal(self, weight: float) -> float:
        return 0.0 if self.adversarial_off else weight

    def weights(self, weights: dict[str, float]) -> dict[str, float]:
        gated = dict(weights)
        if self.adversarial_off and "dis" in gated:
            gated["dis"] = 0.0
        if self.teacher_off and "pl" in gated:
            gated["pl"] = 0.0
            self.state.pl_paused_steps += 1
        return gated

    def observe(self, figures: dict[str, float], step: int) -> None:
        """Update the running means with one step's figures (after the step)."""
        state = self.state
        if self.dis_band and not self.adversarial_off and figures.get("reversal_weight", 0.0) > 0 and "dis" in figures:
            state.dis_mean = _running(state.dis_mean, figures["dis"])
            state.dis_steps += 1
            if state.dis_steps >= RUNNING_STEPS // 2 and state.dis_mean > self.dis_band:
                state.dis_tripped_at = step
                log.warning(
                    "step %d: the discriminator's loss runs away (running mean %.2f, chance is ln 2 = %.2f, "
                    "band <= %.2f): the adversarial term is off for the rest of the run (--dis-guard 0 keeps it)",
                    step,
                    state.dis_mean,
                    math.log(2),
                    self.dis_band,
                )
        teacher, source = figures.get("teacher_foreground"), figures.get("source_foreground")
        if self.pl_band and teacher is not None and source:
            was_off = self.teacher_off
            state.pl_mean = _running(state.pl_mean, max(teacher, 1e-6) / source)
            if self.teacher_off and not was_off:
                log.warning(
                    "step %d: the teacher labels %.1fx the source's foreground fraction (band 1/%g-%g x): "
                    "L_pl is off until it returns (--pl-guard 0 keeps it)",
                    step,
                    state.pl_mean,
                    self.pl_band,
                    self.pl_band,
                )

    def figures(self) -> dict[str, float]:
        """What the step logs: the guards' running means and whether each term is on."""
        out = {"dis_guard_on": 0.0 if self.adversarial_off else 1.0, "pl_guard_on": 0.0 if self.teacher_off else 1.0}
        if self.state.dis_mean is not None:
            out["dis_running"] = self.state.dis_mean
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "adversarial_switched_off_at_step": self.state.dis_tripped_at,
            "pl_paused_steps": self.state.pl_paused_steps,
        }

    def state_dict(self) -> dict[str, Any]:
        return asdict(self.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = GuardState(**state) if state else GuardState()


def _running(mean: float | None, value: float) -> float:
    if mean is None or not math.isfinite(mean):
        return value
    return mean + (value - mean) / RUNNING_STEPS
