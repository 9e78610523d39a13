"""Training: one loop for Vox-UDA and its baselines (source-only, supervised, dann), resumable, DDP-aware.

``train(settings, run_dir, *, resume=False, overwrite=False, progress=None) -> dict`` is what
``voxuda train`` calls; ``TrainSettings`` holds every setting and its default. The methods are
plug-ins (training/methods/): ``register_method`` adds one, ``method_names()`` lists them. The loop
module is imported only when ``train`` or ``Trainer`` is first used.
"""

from __future__ import annotations

from typing import Any

from voxuda_cli.training.methods import Method, get_method, register_method
from voxuda_cli.training.methods import names as method_names
from voxuda_cli.training.settings import TrainSettings

__all__ = [
    "Method",
    "TrainProgress",
    "TrainSettings",
    "Trainer",
    "get_method",
    "method_names",
    "register_method",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in ("train", "Trainer", "TrainProgress"):
        from voxuda_cli.training import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
