"""Training methods as plug-ins: what a method needs, which losses it computes, and how.

The Trainer (training/loop.py) is generic: networks, optimiser, EMA teacher, AMP, checkpoints. It
asks the method (a :class:`Method` subclass, built from the run's settings) what to build and
feed: a teacher, a domain discriminator, target images, an NGM-noised source, a denoised target.
Each step it calls ``before_step`` and ``prepare`` (a method's own optimisation, with the batch),
feeds ``inputs(batch)`` to the student, and minimises the sum of
``weights(position)[term] * losses(step, batch)[term]``, stepping the method's ``optimizers()``
with its own. A method's own networks are built in ``attach`` (once the trainer exists); its
state (networks, optimisers, counters) goes into the checkpoint through ``state_dict`` /
``load_state_dict``. Method networks are not synchronised across torchrun processes: such methods
refuse to run in more than one (``single_process_only``).

A new method is one file with a Method subclass and one ``register_method`` call; its name then
works everywhere (``voxuda train --method``, the settings, the run summary). Built-in methods:
``vox-uda`` (vox_uda.py), ``dann`` (dann.py), ``source-only`` (source_only.py), ``supervised``
(supervised.py), and the Vox-UDA paper's baselines ``asc`` (asc.py), ``le-uda`` (le_uda.py),
``pdam`` (pdam.py) and ``mapseg`` (mapseg.py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.training import schedule

if TYPE_CHECKING:
    from voxuda_cli.training.data import Batch
    from voxuda_cli.training.loop import Trainer
    from voxuda_cli.training.settings import TrainSettings

DEFAULT_METHOD = "vox-uda"


@dataclass(frozen=True)
class Position:
    """Where a step stands in the run: ``epoch`` (epochs done, fractional; None where unknown, e.g.
    a benchmark step) and ``progress``, the fraction of the schedule's horizon (--ramp-epochs, or
    the --epochs the run started with; kept across --resume, so schedules do not move)."""

    epoch: float | None
    progress: float


@dataclass
class StepOutputs:
    """What one step's forward passes produced, for ``Method.losses``."""

    logits: torch.Tensor  # student logits of ``inputs(batch)``, (B', 2, D, H, W)
    features: tuple[torch.Tensor, ...]  # student features f_c, f_v2, f_v4, f_v6 of the same
    domain: torch.Tensor | None  # discriminator logits behind the reversal layer (has_discriminator)
    # The teacher's log-probabilities on ``teacher_views(batch)`` (the log of their mean probability
    # where there are several); None when ``wants_teacher`` said no this step.
    teacher_logits: torch.Tensor | None
    position: Position
    figures: dict[str, float] = field(default_factory=dict)  # extra numbers to log (e.g. pseudo-label coverage)

    @property
    def domain_logits(self) -> torch.Tensor:
        """``domain``, which the loop computes for every method with ``has_discriminator``."""
        assert self.domain is not None, "the method did not say has_discriminator"
        return self.domain


class Method:
    """One training recipe. Class attributes say what it needs; methods say what it computes."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for ``voxuda train --help`` and the README's method table
    labelled_option: ClassVar[str] = "--src"  # which dataset holds the labelled set: --src or --tgt
    uses_target: ClassVar[bool] = False  # unlabelled target images in every batch (batch.target_volumes)
    uses_noisy_source: ClassVar[bool] = False  # the NGM-noised labelled batch (batch.noisy)
    uses_denoised_target: ClassVar[bool] = False  # the denoised target, the teacher's input (batch.denoised)
    has_teacher: ClassVar[bool] = False  # an EMA teacher (saved in model.pt; predict --use teacher)
    has_discriminator: ClassVar[bool] = False  # a domain discriminator on f_v6, behind gradient reversal
    loss_terms: ClassVar[tuple[str, ...]] = ("seg",)  # the keys ``losses`` returns

    def __init__(self, settings: TrainSettings) -> None:
        self.settings = settings

    def inputs(self, batch: Batch) -> torch.Tensor:
        """The student's input of one step (one forward over the concatenation)."""
        return batch.images

    def statistics_samples(self, batch: Batch) -> int | None:
        """How many leading samples of ``inputs(batch)`` give the batch-norm statistics (None: all)."""
        return None

    def losses(self, step: StepOutputs, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def weights(self, position: Position) -> dict[str, float]:
        """Weight of each loss term at ``position``: ``--<term>-weight`` by default."""
        return {term: float(getattr(self.settings, f"{term}_weight", 1.0)) for term in self.loss_terms}

    def reversal_weight(self, position: Position) -> float:
        """The gradient-reversal weight in front of the discriminator (has_discriminator)."""
        return 0.0

    def teacher_ready(self, position: Position) -> bool:
        """Whether the teacher starts now as a copy of the student (has_teacher); at once by default."""
        return True

    def wants_teacher(self, position: Position, weights: dict[str, float]) -> bool:
        """Whether this step needs the teacher's forward pass; whenever there is a teacher by default."""
        return self.has_teacher

    def teacher_views(self, batch: Batch) -> list[torch.Tensor]:
        """What the teacher sees: the denoised target by default."""
        return [batch.denoised_volumes]

    def before_step(self, trainer: Trainer, position: Position) -> None:
        """Called before every optimisation step (e.g. for a schedule); nothing by default."""

    def attach(self, trainer: Trainer) -> None:
        """Called once the trainer's networks exist (its device known): build the method's own
        networks and optimisers here (before a checkpoint is loaded into them); nothing by default."""

    def prepare(self, trainer: Trainer, batch: Batch, position: Position) -> None:
        """Called before the student's forward of every step, with its batch: a method's own
        optimisation (e.g. PDAM's translator) runs here; nothing by default."""

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimisers of the method's own parameters that the step's total loss reaches (stepped
        with the student's, e.g. MAPSeg's reconstruction heads); none by default."""
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (a checkpoint of an earlier run)."""


class AdaptsOnSchedule(Method):
    """A method whose adaptation follows the run's schedule (training/schedule.py): the teacher
    starts as a copy of the student when the burn-in ends, the ``ramped`` term (the one trained
    towards the teacher) ramps in over --pl-ramp after it, and the reversal weight (where there is
    a discriminator) follows the DANN ramp up to --reversal-scale."""

    ramped: ClassVar[str] = "pl"

    def weights(self, position: Position) -> dict[str, float]:
        weights = super().weights(position)
        weights[self.ramped] *= schedule.pl_ramp_factor(self.settings, position.progress)
        return weights

    def reversal_weight(self, position: Position) -> float:
        return schedule.reversal_weight(self.settings, position.progress)

    def teacher_ready(self, position: Position) -> bool:
        return schedule.adapting(self.settings, position.progress)

    def wants_teacher(self, position: Position, weights: dict[str, float]) -> bool:
        return weights[self.ramped] > 0


def single_process(trainer: Trainer, name: str) -> None:
    """Refuse a method whose own networks torchrun would not synchronise (one line, exit 2)."""
    if trainer.context.world_size > 1:
        raise VoxudaInputError(
            f"--method {name}: its own networks are not synchronised across processes; run it in one"
        )


_REGISTRY: dict[str, type[Method]] = {}


def register_method(method: type[Method]) -> type[Method]:
    """Make ``method.name`` a training method (usable as a class decorator)."""
    if not method.name:
        raise ValueError(f"{method.__name__}: a method needs a name")
    _REGISTRY[method.name] = method
    return method


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``; an unknown name is a one-line error listing them."""
    if name not in _REGISTRY:
        raise VoxudaInputError(f"--method {name}: unknown method; use one of {', '.join(names())}")
    return _REGISTRY[name]


# The built-in methods register themselves on import (after the registry exists), in this order.
for _module in ("vox_uda", "source_only", "supervised", "dann", "asc", "le_uda", "pdam", "mapseg"):
    importlib.import_module(f"{__name__}.{_module}")
