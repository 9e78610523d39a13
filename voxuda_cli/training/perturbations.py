"""Random perturbations that consistency methods apply inside a step (asc, le-uda), reproducibly.

Each step draws from its own generator, seeded by (--seed, the step's index), so a resumed run
draws what an uninterrupted one would. Flips are their own inverse: a prediction on a flipped
input is compared with the flipped prediction of the unflipped one (equivariance), which keeps
the structure a consistency term compares. No 90-degree rotations (data.random_flips says why).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from voxuda_cli.training.data import derived_seed
from voxuda_cli.training.methods import Method, Position

if TYPE_CHECKING:
    from voxuda_cli.training.loop import Trainer
    from voxuda_cli.training.settings import TrainSettings

STREAM_PERTURB = 3  # beside data.STREAM_ORDER and STREAM_BATCH


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of one optimisation step's perturbations."""
    return torch.Generator().manual_seed(derived_seed(seed, STREAM_PERTURB, step))


def draw_flips(count: int, generator: torch.Generator) -> list[list[int]]:
    """For each sample, the spatial axes (of a (B, C, D, H, W) tensor) to flip, each with probability 1/2."""
    choices = torch.rand((count, 3), generator=generator) < 0.5
    return [[axis for axis, flip in zip((-3, -2, -1), row.tolist()) if flip] for row in choices]


def flip_each(x: torch.Tensor, flips: list[list[int]]) -> torch.Tensor:
    """Sample i of ``x`` flipped along ``flips[i]`` (its own inverse)."""
    return torch.stack([sample.flip(axes) if axes else sample for sample, axes in zip(x, flips)])


def add_gaussian(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` plus white Gaussian noise of standard deviation ``sigma`` (inputs are z-scored: in their std)."""
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)
    return x + sigma * noise


def patch_mask(shape: torch.Size, patch: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """A (B, 1, D, H, W) boolean mask, True on ``ratio`` of each sample's ``patch``^3 cubes (MAE masking).

    Edges need not be multiples of ``patch``: the last cube of an axis is cut at the border.
    """
    batch, grid = shape[0], [-(-int(n) // patch) for n in shape[-3:]]
    cubes = grid[0] * grid[1] * grid[2]
    masked = int(round(ratio * cubes))
    scores = torch.rand((batch, cubes), generator=generator)
    chosen = torch.zeros((batch, cubes), dtype=torch.bool)
    chosen.scatter_(1, scores.argsort(dim=1)[:, :masked], True)
    cube_mask = chosen.view(batch, 1, *grid)
    for axis in (2, 3, 4):
        cube_mask = cube_mask.repeat_interleave(patch, dim=axis)
    return cube_mask[..., : shape[-3], : shape[-2], : shape[-1]]


class PerturbsEachStep(Method):
    """A method that perturbs its inputs: ``generator`` is this optimisation step's (step_generator),
    ``flips`` the flips it drew last (for the equivariant comparison of its consistency term)."""

    def __init__(self, settings: TrainSettings) -> None:
        super().__init__(settings)
        self.generator = step_generator(settings.seed, 0)
        self.flips: list[list[int]] = []

    def before_step(self, trainer: Trainer, position: Position) -> None:
        super().before_step(trainer, position)
        self.generator = step_generator(self.settings.seed, trainer.steps_done)
