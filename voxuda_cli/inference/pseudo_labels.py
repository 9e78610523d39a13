"""Pseudo-labels as Vox-UDA training makes them, written out to inspect or to train from offline.

The teacher (EMA) network sees each target sample normalised as in training (contrast flipped if
the model was trained with ``--invert``, z-scored on its own) and then denoised as the model file
records (``--denoiser``; "none" for a teacher trained on the raw target, the default recipe). The
pseudo-label is the argmax class where the voxel is confident: its class probability is at least
``eta`` or, with ``--pl-threshold class-quantile`` (the default recipe's, read from the model
file), it is among the ``--pl-keep`` most confident of the voxels of its class over the whole
dataset (CBST; training takes the same rule per batch: confidence.select_confident).

Output dataset (kind ``pseudo-labels``), aligned with the target:
- ``/images``: the target images as given (not normalised, not denoised);
- ``/masks``: uint8, 1 where confidently foreground, 0 elsewhere (confident background *and*
  unconfident voxels; use ``/params/confident`` to tell them apart);
- ``/confidence``: float32, the teacher's max class probability, in [0.5, 1];
- ``/params/confident``: float32 0/1 (stored as the format stores per-sample arrays): 1 where a
  voxel carries a pseudo-label, 0 where training ignores it;
- names, classes, /coords, /parents (and patch attributes) carried; attributes ``eta``,
  ``pl_threshold``, ``pl_keep``, ``denoiser``, ``coverage``, ``foreground_fraction``, ``provenance``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxuda_cli.confidence import select_confident
from voxuda_cli.fields import DEFAULT_KEEP_RATE, DEFAULT_SIGMA_D, DEFAULT_SIGMA_R
from voxuda_cli.inference.predictor import Predictor
from voxuda_cli.inference.settings import DEFAULT_ETA, PredictSettings, PseudoLabelSettings
from voxuda_cli.io.dataset import CARRIED_ATTRS, Dataset, DatasetWriter
from voxuda_cli.models.serialization import ModelInfo
from voxuda_cli.progress import Progress
from voxuda_cli.resample import checked_voxel_size, fit_to_box, unfit

PREVIEW_ROWS = 4
FILTER_DEFAULTS = {"sigma_d": DEFAULT_SIGMA_D, "sigma_r": DEFAULT_SIGMA_R, "keep_rate": DEFAULT_KEEP_RATE}


@dataclass
class DatasetPseudoLabels:
    """Per-voxel pseudo-labels of a dataset (all arrays (N, D, H, W))."""

    masks: np.ndarray  # uint8: 1 where confident foreground
    confidence: np.ndarray  # float32: max class probability
    confident: np.ndarray  # bool: carries a pseudo-label (select_confident)
    eta: float
    denoised_preview: list[np.ndarray]  # a few denoised inputs, for --preview

    @property
    def coverage(self) -> float:
        """Fraction of voxels that carry a pseudo-label (confident either way)."""
        return float(self.confident.mean())

    @property
    def foreground_fraction(self) -> float:
        """Fraction of the pseudo-labelled voxels that are foreground (0 when none is confident); as training logs."""
        count = int(self.confident.sum())
        return float(self.masks.sum()) / count if count else 0.0

    def accuracy(self, truth: np.ndarray) -> float | None:
        """Agreement with ground-truth masks over the confident voxels (None when none is confident)."""
        count = int(self.confident.sum())
        if count == 0:
            return None
        return float(((self.masks > 0) == (truth > 0))[self.confident].mean())


def resolve_pseudo_label_settings(settings: PseudoLabelSettings, info: ModelInfo) -> PseudoLabelSettings:
    """Fill what the user left unset from the model file (what training used), then the defaults."""
    params = {**FILTER_DEFAULTS, **{k: float(v) for k, v in info.denoiser_params.items()}}
    trained = info.settings
    return replace(
        settings,
        eta=settings.eta if settings.eta is not None else float(info.eta or DEFAULT_ETA),
        pl_threshold=settings.pl_threshold or str(trained.get("pl_threshold") or "global"),
        pl_keep=settings.pl_keep if settings.pl_keep is not None else float(trained.get("pl_keep") or 0.5),
        denoiser=settings.denoiser or info.denoiser or "ibf",
        sigma_d=settings.sigma_d if settings.sigma_d is not None else params["sigma_d"],
        sigma_r=settings.sigma_r if settings.sigma_r is not None else params["sigma_r"],
        keep_rate=settings.keep_rate if settings.keep_rate is not None else params["keep_rate"],
    )


def pseudo_label_predictor(model: Path | str, settings: PseudoLabelSettings) -> Predictor:
    """The network that makes pseudo-labels: no test-time augmentation, as in training."""
    predict_settings = PredictSettings(
        batch_size=settings.batch_size, device=settings.device, amp=settings.amp, use=settings.use
    )
    return Predictor(model, predict_settings)


def make_pseudo_labels(
    predictor: Predictor,
    dataset: Dataset,
    settings: PseudoLabelSettings,
    on_progress: Progress | None = None,
) -> DatasetPseudoLabels:
    """The teacher's pseudo-labels of every sample; ``settings`` resolved (eta, denoiser and its parameters)."""
    from voxuda_cli.filters.denoisers import DenoiserParams, make_denoiser

    assert settings.eta is not None and settings.denoiser is not None
    predictor.check_dataset_box(dataset)
    source_images, geometry = _on_model_grid(predictor, dataset, settings)
    foreground = np.empty(dataset.images.shape, dtype=np.float32)
    previews: list[np.ndarray] = []
    preview_picks = set(np.linspace(0, len(dataset) - 1, min(PREVIEW_ROWS, len(dataset))).astype(int).tolist())
    params = DenoiserParams(float(settings.sigma_d), float(settings.sigma_r), float(settings.keep_rate))  # type: ignore[arg-type]  # filled from the model file before this call
    denoiser = make_denoiser(settings.denoiser, params)
    step = settings.batch_size
    for start in range(0, len(dataset), step):
        images = torch.as_tensor(np.asarray(source_images[start : start + step], dtype=np.float32))
        normalised = predictor.normalise(images.to(predictor.device))
        denoised = denoiser(normalised)
        denoised_np = denoised.float().cpu().numpy()
        stop = start + denoised_np.shape[0]
        foreground[start:stop] = predictor.predict_windows(denoised_np, normalised=True)
        previews.extend(denoised_np[i - start] for i in range(start, stop) if i in preview_picks)
        if on_progress is not None:
            on_progress(stop - start)
    if geometry is not None:  # back to the target's grid; voxels the box did not see stay unconfident (0.5)
        foreground = unfit(foreground, geometry, dataset.box, fill=0.5)
    confidence = np.maximum(foreground, 1.0 - foreground)
    labels = foreground > 0.5
    keep = settings.pl_keep if settings.pl_threshold == "class-quantile" else None
    confident = select_confident(
        torch.from_numpy(confidence), torch.from_numpy(labels).long(), 2, float(settings.eta), keep
    ).numpy()
    masks = (labels & confident).astype(np.uint8)
    return DatasetPseudoLabels(masks, confidence, confident, float(settings.eta), previews)


def _on_model_grid(
    predictor: Predictor, dataset: Dataset, settings: PseudoLabelSettings
) -> tuple[np.ndarray, tuple | None]:
    """The target on the model's voxel size, fitted to its box (``geometry`` None when no resampling was needed)."""
    voxel_size = checked_voxel_size(dataset.voxel_size, settings.input_voxel_size, dataset.source)
    if not predictor.needs_resampling(voxel_size):
        return dataset.images, None
    return fit_to_box(dataset.images, voxel_size, float(predictor.info.voxel_size), predictor.box)


def write_pseudo_labels(
    path: Path | str,
    dataset: Dataset,
    labels: DatasetPseudoLabels,
    settings: PseudoLabelSettings,
    provenance: str = "",
) -> None:
    """The pseudo-label dataset (format in this module's docstring), written atomically."""
    keep = {k: v for k, v in dataset.attrs.items() if k in CARRIED_ATTRS}
    attrs = {
        "provenance": provenance,
        "eta": labels.eta,
        "pl_threshold": str(settings.pl_threshold),
        "pl_keep": float(settings.pl_keep or 0.0),
        "denoiser": str(settings.denoiser),
        "coverage": labels.coverage,
        "foreground_fraction": labels.foreground_fraction,
        **keep,
    }
    with DatasetWriter(path, dataset.box, dataset.voxel_size, "pseudo-labels", attrs) as writer:
        for index, name in enumerate(dataset.names):
            writer.append(
                dataset.images[index],
                name,
                mask=labels.masks[index],
                confidence=labels.confidence[index],
                class_name=dataset.classes[index] if dataset.classes else None,
                coords=dataset.coords_at(index),
                parent=dataset.parents[index] if dataset.parents else None,
                params={"confident": labels.confident[index].astype(np.float32)},
            )


def summarise(
    dataset: Dataset, labels: DatasetPseudoLabels, settings: PseudoLabelSettings, output: Path, model: str
) -> dict[str, Any]:
    """The figures ``pseudo-label`` prints."""
    return {
        "model": model,
        "weights": settings.use,
        "output": str(output),
        "samples": len(dataset),
        "eta": labels.eta,
        "pl_threshold": settings.pl_threshold,
        "pl_keep": settings.pl_keep if settings.pl_threshold == "class-quantile" else None,
        "denoiser": settings.denoiser,
        "denoiser_params": {"sigma_d": settings.sigma_d, "sigma_r": settings.sigma_r, "keep_rate": settings.keep_rate},
        "coverage": labels.coverage,
        "foreground_fraction": labels.foreground_fraction,
        "confident_foreground_fraction": float(labels.masks.mean()),
        "accuracy_on_confident": labels.accuracy(dataset.masks) if dataset.masks is not None else None,
    }
