"""Pick the torch device: ``auto`` takes CUDA when present, else CPU."""

from __future__ import annotations

import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.fields import DEVICE_CHOICES


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N`` into a torch.device, with a clear error if CUDA is missing."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise VoxudaInputError("--device cuda: no CUDA GPU is visible to torch; use --device cpu or auto")
        return torch.device(name)
    raise VoxudaInputError(f"--device {name}: unknown device; use one of {', '.join(DEVICE_CHOICES)}")


def check_device(name: str) -> str:
    """``name`` if it is auto, cpu, cuda or cuda:N (without touching CUDA); else a one-line error."""
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise VoxudaInputError(f"--device {name}: unknown device; use one of {', '.join(DEVICE_CHOICES)}")
    return name


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch so CPU runs repeat bit for bit."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
