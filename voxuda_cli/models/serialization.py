"""model.pt: a self-describing model file (architecture, weights, normalisation, geometry)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from voxuda_cli.errors import VoxudaInputError, check_format_version
from voxuda_cli.fields import DEFAULT_ETA
from voxuda_cli.io.atomic import atomic_torch_save
from voxuda_cli.models.voxresnet import VoxResNet, VoxResNetConfig

MODEL_FORMAT = "voxuda-model"
MODEL_FORMAT_VERSION = 1
WEIGHT_SETS = ("teacher", "student")


@dataclass
class ModelInfo:
    """What a model file says about itself, besides the weights."""

    architecture: VoxResNetConfig
    box: tuple[int, int, int] = (32, 32, 32)
    voxel_size: float = 10.0
    normalisation: str = "zscore"  # each input volume z-scored on its own (METHOD.md)
    invert: bool = False  # inputs were contrast-flipped before normalisation
    method: str = "vox-uda"
    denoiser: str = "ibf"
    denoiser_params: dict[str, float] = field(default_factory=dict)
    eta: float = DEFAULT_ETA
    settings: dict[str, Any] = field(default_factory=dict)
    weights: tuple[str, ...] = ("student",)


def save_model(
    path: Path | str,
    info: ModelInfo,
    student: dict[str, torch.Tensor],
    teacher: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write model.pt atomically (weights moved to CPU so any device can load them)."""
    payload = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "architecture": {"name": "voxresnet", **info.architecture.to_dict()},
        "box": list(info.box),
        "voxel_size": info.voxel_size,
        "normalisation": info.normalisation,
        "invert": info.invert,
        "method": info.method,
        "denoiser": info.denoiser,
        "denoiser_params": dict(info.denoiser_params),
        "eta": info.eta,
        "settings": info.settings,
        "student": {k: v.detach().cpu() for k, v in student.items()},
    }
    if teacher is not None:
        payload["teacher"] = {k: v.detach().cpu() for k, v in teacher.items()}
    atomic_torch_save(path, payload)


def load_tagged(path: Path, tag: str, version: int, what: str, remedy: str) -> dict[str, Any]:
    """A torch file voxuda wrote (its "format" is ``tag``), on the CPU; a newer format version is refused."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file or one of another kind
        raise VoxudaInputError(f"{path}: not a voxuda {what} ({type(exc).__name__}); {remedy}") from exc
    if not isinstance(payload, dict) or payload.get("format") != tag:
        raise VoxudaInputError(f"{path}: not a voxuda {what}; {remedy}")
    check_format_version(path, payload.get("format_version", 1), version, what)
    return payload


def resolve_model_path(path: Path | str) -> Path:
    """A run directory or a model file -> the model file."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise VoxudaInputError(f"{path}: no model file; pass a run directory (with model.pt) or a model.pt")
    return path


def load_model(
    path: Path | str, which: str = "teacher", device: torch.device | str = "cpu"
) -> tuple[VoxResNet, ModelInfo]:
    """Load a model for inference (eval mode) on ``device``.

    ``which`` picks the teacher (EMA) or student weights; a file without a teacher falls back to
    the student.
    """
    path = resolve_model_path(path)
    payload = load_tagged(
        path, MODEL_FORMAT, MODEL_FORMAT_VERSION, "model file", "pass the model.pt that `voxuda train` wrote"
    )
    if which not in WEIGHT_SETS:
        raise VoxudaInputError(f"--use {which}: unknown weights; use teacher or student")
    arch = dict(payload["architecture"])
    arch.pop("name", None)
    config = VoxResNetConfig(**arch)
    weights = tuple(k for k in WEIGHT_SETS if k in payload)
    info = ModelInfo(
        architecture=config,
        box=tuple(payload.get("box", (32, 32, 32))),
        voxel_size=float(payload.get("voxel_size", 10.0)),
        normalisation=str(payload.get("normalisation", "zscore")),
        invert=bool(payload.get("invert", False)),
        method=str(payload.get("method", "")),
        denoiser=str(payload.get("denoiser", "ibf")),
        denoiser_params=dict(payload.get("denoiser_params", {})),
        eta=float(payload.get("eta", DEFAULT_ETA)),
        settings=dict(payload.get("settings", {})),
        weights=weights,
    )
    state = payload[which] if which in payload else payload["student"]
    model = VoxResNet(config)
    model.load_state_dict(state)
    model.to(device).eval()
    return model, info
