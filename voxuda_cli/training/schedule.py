"""When the adaptation terms act: the burn-in, the DANN reversal ramp and the L_pl ramp (issue 11).

Every figure is a function of the step's ``progress`` (fraction of the schedule's horizon), so a
resumed run follows the same schedule as one that never stopped. During the burn-in (the first
``--burn-in`` of the horizon) nothing adapts: the student learns the source (with the NGM's second
view and L_con), the discriminator learns the domains with no gradient reversed into the encoder,
and there is no teacher yet. After it the reversal weight ramps as in DANN, 2/(1+exp(-10 p)) - 1
over the rest of the horizon, up to ``--reversal-scale``; the teacher starts as a copy of the
student, and L_pl ramps in as Mean Teacher's exp(-5 (1 - t)^2) over ``--pl-ramp``. With
``--recipe paper`` (no burn-in, no ramp, scale 1) this is the paper's schedule.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from voxuda_cli.models.discriminator import dann_ramp

if TYPE_CHECKING:
    from voxuda_cli.training.settings import TrainSettings


def ramp_up(t: float) -> float:
    """Mean Teacher's sigmoid ramp exp(-5 (1 - t)^2) for t in [0, 1]; 1 beyond."""
    if t >= 1.0:
        return 1.0
    return math.exp(-5.0 * (1.0 - max(t, 0.0)) ** 2)


def adapting(settings: TrainSettings, progress: float) -> bool:
    """Whether the burn-in is over."""
    return progress >= (settings.burn_in or 0.0)


def after_burn_in(settings: TrainSettings, progress: float) -> float:
    """Progress through the rest of the horizon once the burn-in is over, in [0, 1]."""
    burn_in = settings.burn_in or 0.0
    return min(max(progress - burn_in, 0.0) / (1.0 - burn_in), 1.0)


def reversal_weight(settings: TrainSettings, progress: float) -> float:
    """The DANN ramp over what follows the burn-in, scaled to --reversal-scale; 0 during the burn-in."""
    if not adapting(settings, progress):
        return 0.0
    return float(settings.reversal_scale) * dann_ramp(after_burn_in(settings, progress))  # type: ignore[arg-type]  # set by the recipe in __post_init__


def pl_ramp_factor(settings: TrainSettings, progress: float) -> float:
    """Factor of the L_pl weight: 0 during the burn-in, then ramped in over --pl-ramp of the horizon."""
    if not adapting(settings, progress):
        return 0.0
    if not settings.pl_ramp:
        return 1.0
    return ramp_up((progress - (settings.burn_in or 0.0)) / settings.pl_ramp)
