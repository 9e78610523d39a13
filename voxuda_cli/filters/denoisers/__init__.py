"""Denoisers as plug-ins: a registry of constructors, looked up by name (``--denoiser``, ``--method``).

A denoiser gets its parameters at construction and is then called on a batch of z-scored volumes,
(N, D, H, W) or (D, H, W), on any device (CPU or CUDA), returning a batch of the same shape and
device, without gradients. ``filter_volume`` applies it to one volume of a file (a memory map is
fine), on the input's scale; the base class does it in one piece, the bilateral filters stream it
in z-chunks. A new denoiser is one file here (or anywhere) with a ``Denoiser`` subclass and one
``register_denoiser(name, factory)`` call; every command that takes a denoiser lists ``names()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.fields import DEFAULT_DENOISER, DEFAULT_KEEP_RATE, DEFAULT_SIGMA_D, DEFAULT_SIGMA_R
from voxuda_cli.normalise import VolumeStats
from voxuda_cli.progress import Progress

__all__ = ["DEFAULT_DENOISER", "Denoiser", "DenoiserParams", "check_denoiser", "make_denoiser", "names"]


@dataclass(frozen=True)
class DenoiserParams:
    """The parameters any denoiser may take; each one reads those it uses."""

    sigma_d: float = DEFAULT_SIGMA_D  # (I)BF spatial sigma, voxels
    sigma_r: float = DEFAULT_SIGMA_R  # (I)BF range sigma, z-score units
    keep_rate: float = DEFAULT_KEEP_RATE  # NGM: fraction of highest-frequency coefficients taken as noise


class Denoiser:
    """Base of every denoiser: ``denoiser(volumes) -> volumes`` (no gradient), plus the file path."""

    name = "denoiser"
    identity = False  # True: returns its input unchanged (callers may skip the copy)

    def apply(self, volumes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, volumes: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.apply(volumes)

    def filter_volume(
        self,
        volume: np.ndarray,
        out: np.ndarray,
        device: torch.device,
        stats: VolumeStats | None = None,
        chunk: int | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """One (D, H, W) volume into ``out``: z-scored with ``stats`` (if given), denoised, scale undone.

        This default holds the whole volume in memory (needed by global filters such as NGM's FFT);
        ``chunk`` is for denoisers that stream. An ``identity`` denoiser copies the input as it is.
        """
        if self.identity:  # exactly the input: no z-scoring round trip
            out[...] = np.asarray(volume, dtype=np.float32)
        else:
            data = torch.from_numpy(np.array(volume, dtype=np.float32)).to(device)
            mean, std = (stats.mean, stats.std) if stats is not None else (0.0, 1.0)
            out[...] = (self((data - mean) / std) * std + mean).cpu().numpy()
        if progress is not None:
            progress(int(volume.shape[0]), total=int(volume.shape[0]))
        return out


DenoiserFactory = Callable[[DenoiserParams], Denoiser]
_REGISTRY: dict[str, DenoiserFactory] = {}


def register_denoiser(name: str, factory: DenoiserFactory) -> None:
    """Make ``name`` a denoiser: ``factory(params)`` builds it (a Denoiser subclass, or a function)."""
    _REGISTRY[name] = factory


def names() -> tuple[str, ...]:
    """Every registered denoiser, in registration order (the built-in ones first)."""
    return tuple(_REGISTRY)


def check_denoiser(name: str, option: str = "--denoiser") -> str:
    """``name`` if it is registered; else a one-line error listing the registry."""
    if name not in _REGISTRY:
        raise VoxudaInputError(f"{option} {name}: unknown denoiser; use one of {', '.join(names())}")
    return name


def make_denoiser(name: str, params: DenoiserParams | None = None, option: str = "--denoiser") -> Denoiser:
    """The denoiser ``name`` built with ``params`` (an unknown name is an error, never an identity)."""
    return _REGISTRY[check_denoiser(name, option)](params or DenoiserParams())


# The built-in denoisers register themselves on import (after the registry exists), in this order.
for _module in ("ibf", "bf", "ngm", "none"):
    importlib.import_module(f"{__name__}.{_module}")
