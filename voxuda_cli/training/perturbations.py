"""Random perturbations that consistency methods apply inside a step (asc, le-uda), reproducibly.

Each step draws from its own generator, seeded by (--seed, the step's index), so a resumed run
draws what an uninterrupted one would. Flips are their own inverse: a prediction on a flipped
input is compared with the flipped prediction of the unflipped one (equivariance), which keeps
the structure a consistency term compares. No 90-degree rotations (data.random_flips says why).
"""

from __future__ import annotations

import torch

from voxuda_cli.training.data import derived_seed

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
