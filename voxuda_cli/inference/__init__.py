"""Inference: a trained model file -> segmentations of subtomograms, datasets, patches and whole tomograms.

``Predictor`` (predictor.py) is the Python entry point; ``sliding_window`` blends windows over
volumes of any size in bounded memory; ``pseudo_labels`` makes the teacher's pseudo-labels as
training does. ``PredictSettings`` and ``PseudoLabelSettings`` hold every default. torch is
imported only when a name that needs it is first used, so the CLI starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from voxuda_cli.inference.settings import PredictSettings, PseudoLabelSettings

_LAZY = {
    "DatasetPrediction": "predictor",
    "Predictor": "predictor",
    "TomogramPrediction": "predictor",
    "DatasetPseudoLabels": "pseudo_labels",
    "make_pseudo_labels": "pseudo_labels",
    "pseudo_label_predictor": "pseudo_labels",
    "resolve_pseudo_label_settings": "pseudo_labels",
    "write_pseudo_labels": "pseudo_labels",
    "PredictionJob": "run",
    "plan_prediction": "run",
    "WindowPlan": "sliding_window",
    "importance_map": "sliding_window",
    "sliding_window_array": "sliding_window",
    "remove_small_components": "components",
    "remove_small_components_chunked": "components",
}

__all__ = ["PredictSettings", "PseudoLabelSettings", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"voxuda_cli.inference.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
