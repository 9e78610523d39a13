"""Segmentation metrics: per-sample IoU and Dice, their means per class, and voxel-pooled figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.fields import setting


@dataclass
class ScoreSettings:
    """Settings of ``voxuda score`` (the one source of its defaults)."""

    per_sample: bool = setting(False, "List every sample in the table.")
    mask_threshold: float = setting(0.5, "MRC inputs are read as masks: foreground where the value is above this.")


@dataclass
class Overlap:
    """Voxel counts of one prediction against its ground truth (foreground = 1)."""

    intersection: int
    prediction: int
    truth: int

    @property
    def union(self) -> int:
        return self.prediction + self.truth - self.intersection

    @property
    def iou(self) -> float:
        return 1.0 if self.union == 0 else self.intersection / self.union

    @property
    def dice(self) -> float:
        total = self.prediction + self.truth
        return 1.0 if total == 0 else 2.0 * self.intersection / total


def overlap(prediction: np.ndarray, truth: np.ndarray) -> Overlap:
    predicted = np.asarray(prediction).astype(bool)
    actual = np.asarray(truth).astype(bool)
    if predicted.shape != actual.shape:
        raise VoxudaInputError(f"prediction shape {predicted.shape} differs from ground truth {actual.shape}")
    return Overlap(
        intersection=int(np.count_nonzero(predicted & actual)),
        prediction=int(np.count_nonzero(predicted)),
        truth=int(np.count_nonzero(actual)),
    )


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    return overlap(prediction, truth).iou


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    return overlap(prediction, truth).dice


def score_masks(
    names: Sequence[str],
    predictions: np.ndarray,
    truths: np.ndarray,
    classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The score report: ``samples``, ``mean``, ``per_class`` and ``global`` (voxel-pooled)."""
    samples = []
    pooled = Overlap(0, 0, 0)
    for index, name in enumerate(names):
        counts = overlap(predictions[index], truths[index])
        pooled = Overlap(
            pooled.intersection + counts.intersection,
            pooled.prediction + counts.prediction,
            pooled.truth + counts.truth,
        )
        samples.append(
            {
                "name": name,
                "class": classes[index] if classes else "all",
                "iou": counts.iou,
                "dice": counts.dice,
            }
        )
    per_class: dict[str, dict[str, float | int]] = {}
    for class_name in sorted({str(s["class"]) for s in samples}):
        members = [s for s in samples if s["class"] == class_name]
        per_class[class_name] = {
            "iou": float(np.mean([s["iou"] for s in members])),
            "dice": float(np.mean([s["dice"] for s in members])),
            "n": len(members),
        }
    return {
        "samples": samples,
        "mean": {
            "iou": float(np.mean([s["iou"] for s in samples])),
            "dice": float(np.mean([s["dice"] for s in samples])),
        },
        "per_class": per_class,
        "global": {"iou": pooled.iou, "dice": pooled.dice, "voxels": int(pooled.union)},
        "n": len(samples),
    }


def score_datasets(prediction: Any, truth: Any) -> dict[str, Any]:
    """Score two datasets matched by sample name (every name must be on both sides)."""
    if prediction.masks is None:
        raise VoxudaInputError(f"{prediction.source}: no /masks to score; predict with voxuda predict first")
    if truth.masks is None:
        raise VoxudaInputError(f"{truth.source}: no /masks (ground truth) to score against")
    truth_index = {name: i for i, name in enumerate(truth.names)}
    pred_index = {name: i for i, name in enumerate(prediction.names)}
    missing_truth = sorted(set(pred_index) - set(truth_index))
    missing_pred = sorted(set(truth_index) - set(pred_index))
    if missing_truth or missing_pred:
        parts = []
        if missing_truth:
            parts.append(f"{len(missing_truth)} without ground truth: {', '.join(missing_truth[:5])}")
        if missing_pred:
            parts.append(f"{len(missing_pred)} without prediction: {', '.join(missing_pred[:5])}")
        raise VoxudaInputError(f"{prediction.source}: unmatched sample names ({'; '.join(parts)})")
    names = list(prediction.names)
    order = np.asarray([truth_index[name] for name in names])
    truth_masks = truth.masks[order]
    if truth_masks.shape != prediction.masks.shape:
        raise VoxudaInputError(
            f"{prediction.source}: mask shape {prediction.masks.shape[1:]} differs from ground truth "
            f"{truth_masks.shape[1:]}"
        )
    classes = None
    if truth.classes:
        classes = [truth.classes[i] for i in order]
    elif prediction.classes:
        classes = list(prediction.classes)
    return score_masks(names, prediction.masks, truth_masks, classes)


def save_score_montage(path: Any, report: dict[str, Any], prediction: Any, truth: Any, rows: int = 3) -> None:
    """Central slices of image / prediction / truth for the best, median and worst samples by Dice."""
    from voxuda_cli.plots import save_montage

    ranked = sorted(report["samples"], key=lambda s: s["dice"], reverse=True)
    picks = [ranked[round(i * (len(ranked) - 1) / max(rows - 1, 1))] for i in range(min(rows, len(ranked)))]
    pred_index = {name: i for i, name in enumerate(prediction.names)}
    truth_index = {name: i for i, name in enumerate(truth.names)}
    save_montage(
        path,
        {
            "image": [truth.images[truth_index[s["name"]]] for s in picks],
            "prediction": [prediction.masks[pred_index[s["name"]]] for s in picks],
            "truth": [truth.masks[truth_index[s["name"]]] for s in picks],
        },
        row_labels=[f"{s['name']} Dice {s['dice']:.2f}" for s in picks],
        title="score: best, median and worst samples",
    )
