"""The run directory: what a fresh run or a --resume may find there, and checkpoint.pt itself.

checkpoint.pt holds everything needed to continue bit for bit: the trainer's state (student,
teacher and discriminator weights, optimiser, scheduler and gradient-scaler states, the
method's state), the global RNG states (torch, CUDA, numpy, python), the epochs done, the
position inside the next epoch when a checkpoint signal stopped the run there, the metrics so
far and the settings. It is written atomically, so a run killed at any moment (SIGKILL) leaves
the previous checkpoint.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxuda_cli.config import settings_to_dict
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io import atomic
from voxuda_cli.io.atomic import atomic_torch_save
from voxuda_cli.io.lock import LOCK_NAME
from voxuda_cli.models.serialization import load_tagged
from voxuda_cli.training import selection
from voxuda_cli.training.settings import RESUMABLE_CHANGES, TrainSettings

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
CONFIG = "config.toml"
METRICS = "metrics.jsonl"
CURVES = "curves.png"
RUN_FILES = (CHECKPOINT, MODEL, CONFIG, METRICS, CURVES, selection.LAST_MODEL, selection.CHOICE)
CHECKPOINT_FORMAT = "voxuda-checkpoint"
# 2: "position" inside an epoch (a checkpoint signal's); a checkpoint without the key is version 1.
CHECKPOINT_FORMAT_VERSION = 2


def check_fresh_run_dir(run_dir: Path, overwrite: bool) -> None:
    """A fresh run needs an empty (or new) folder, or --overwrite (which replaces only the run's files)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise VoxudaInputError(f"-o {run_dir}: exists and is not a folder; pass a run directory")
    if overwrite or not run_dir.is_dir():
        return
    if any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        hint = "continue it with --resume, " if (run_dir / CHECKPOINT).is_file() else ""
        raise VoxudaInputError(f"-o {run_dir}: folder is not empty; {hint}pass --overwrite or another folder")


def remove_run_files(run_dir: Path) -> None:
    """--overwrite: remove the previous run's files (and nothing else the folder holds)."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / selection.CANDIDATES, ignore_errors=True)


def remove_stale_temporaries(run_dir: Path) -> None:
    """Temporary files a killed run left behind (atomic writes that never got renamed)."""
    for name in RUN_FILES:
        atomic.remove_stale_temporaries(run_dir / name)


def comparable_settings(settings: TrainSettings | dict[str, Any]) -> dict[str, Any]:
    values = settings if isinstance(settings, dict) else settings_to_dict(settings)
    return {k: v for k, v in values.items() if k not in RESUMABLE_CHANGES}


def settings_differences(saved: dict[str, Any], settings: TrainSettings) -> list[str]:
    """Settings (other than epochs, device, amp, threads, workers) whose value differs from the checkpoint's."""
    old, new = comparable_settings(saved), comparable_settings(settings)
    return [f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def load_checkpoint(run_dir: Path, settings: TrainSettings) -> dict[str, Any]:
    """The checkpoint of ``run_dir``, checked against ``settings``; a clear error if it cannot continue."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise VoxudaInputError(f"--resume: {path} not found; start the run without --resume")
    remedy = "start again with --overwrite"
    state = load_tagged(path, CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION, "checkpoint", remedy)
    differences = settings_differences(state["settings"], settings)
    if differences:
        raise VoxudaInputError(
            f"--resume {path}: settings differ from the checkpoint's: {'; '.join(differences)}; "
            "resume with the same settings (only --epochs, --device, --amp, --threads, --workers may change)"
        )
    if settings.epochs < state["epoch"]:
        raise VoxudaInputError(
            f"--epochs {settings.epochs}: the checkpoint is already at epoch {state['epoch']}; pass at least that"
        )
    if state.get("position") and settings.epochs <= state["epoch"]:
        raise VoxudaInputError(
            f"--epochs {settings.epochs}: the checkpoint is inside epoch {state['epoch'] + 1}; pass at least that"
        )
    return state


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_torch_save(path, {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION, **state})


def rng_states() -> dict[str, Any]:
    """The global RNG states, in a form torch.load(weights_only=True) accepts."""
    state: Any = np.random.get_state()  # the legacy tuple (name, keys, position, has_gauss, cached)
    name, keys, position, has_gauss, cached = state
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": _plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached"],
        )
    )
    random.setstate(_tuples(states["python"]))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
