import numpy as np
import pytest

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.dataset import Dataset
from voxuda_cli.metrics import dice, iou, score_datasets, score_masks


def _mask(*indices: int) -> np.ndarray:
    mask = np.zeros(10, np.uint8)
    mask[list(indices)] = 1
    return mask.reshape(10, 1, 1)


def test_hand_made_cases() -> None:
    assert iou(_mask(0, 1, 2, 3), _mask(2, 3, 4, 5)) == pytest.approx(2 / 6)
    assert dice(_mask(0, 1, 2, 3), _mask(2, 3, 4, 5)) == pytest.approx(4 / 8)
    assert iou(_mask(0, 1), _mask(0, 1)) == 1.0
    assert dice(_mask(0), _mask(1)) == 0.0
    assert iou(_mask(), _mask()) == 1.0 and dice(_mask(), _mask()) == 1.0  # both empty
    assert iou(_mask(), _mask(3)) == 0.0 and dice(_mask(3), _mask()) == 0.0


def test_report_means_per_class_and_pooled() -> None:
    predictions = np.stack([_mask(0, 1), _mask(0, 1, 2, 3), _mask()])
    truths = np.stack([_mask(0, 1), _mask(0, 1), _mask()])
    report = score_masks(["a", "b", "c"], predictions, truths, ["x", "y", "y"])
    assert [s["iou"] for s in report["samples"]] == [1.0, 0.5, 1.0]
    assert report["mean"]["iou"] == pytest.approx(2.5 / 3)
    assert report["per_class"]["y"] == {"iou": 0.75, "dice": pytest.approx((2 / 3 + 1) / 2), "n": 2}
    # pooled: intersection 4, prediction 6, truth 4 -> IoU 4/6, Dice 8/10
    assert report["global"]["iou"] == pytest.approx(4 / 6)
    assert report["global"]["dice"] == pytest.approx(0.8)


def _ds(names: list[str], masks: np.ndarray, classes: list[str] | None = None) -> Dataset:
    return Dataset(images=masks.astype(np.float32), names=names, masks=masks, classes=classes, source="x.h5")


def test_matching_by_name_in_any_order() -> None:
    masks = np.stack([_mask(0), _mask(1)])
    prediction = _ds(["b", "a"], masks[::-1].copy())
    truth = _ds(["a", "b"], masks, ["c1", "c2"])
    report = score_datasets(prediction, truth)
    assert report["mean"]["dice"] == 1.0
    assert {s["name"]: s["class"] for s in report["samples"]} == {"a": "c1", "b": "c2"}


def test_unmatched_names_are_listed() -> None:
    masks = np.stack([_mask(0), _mask(1)])
    with pytest.raises(VoxudaInputError, match="without ground truth: c.*without prediction: b"):
        score_datasets(_ds(["a", "c"], masks), _ds(["a", "b"], masks))
