from pathlib import Path

import numpy as np
import pytest
import torch

from tests.inference.models import sphere_batch, threshold_network, write_model
from voxuda_cli.confidence import select_confident
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.filters import denoise
from voxuda_cli.inference.pseudo_labels import (
    make_pseudo_labels,
    pseudo_label_predictor,
    resolve_pseudo_label_settings,
    write_pseudo_labels,
)
from voxuda_cli.inference.settings import PseudoLabelSettings
from voxuda_cli.io.dataset import Dataset, read_h5_dataset


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return write_model(tmp_path / "model.pt", threshold_network(width=2), eta=0.8, denoiser="bf")


@pytest.fixture
def target(rng: np.random.Generator) -> Dataset:
    images, masks = sphere_batch(rng, 3, noise=0.8)
    return Dataset(
        images=3.0 * images + 5.0, names=["t0", "t1", "t2"], voxel_size=10.0, masks=masks, classes=["a", "b", "b"]
    )


def test_unset_settings_come_from_the_model_file(model_file: Path) -> None:
    predictor = pseudo_label_predictor(model_file, PseudoLabelSettings(device="cpu"))
    resolved = resolve_pseudo_label_settings(PseudoLabelSettings(), predictor.info)
    assert (resolved.eta, resolved.denoiser, resolved.sigma_r) == (0.8, "bf", 1.2)
    chosen = resolve_pseudo_label_settings(PseudoLabelSettings(eta=0.95, denoiser="none", sigma_r=2.0), predictor.info)
    assert (chosen.eta, chosen.denoiser, chosen.sigma_r) == (0.95, "none", 2.0)
    with pytest.raises(VoxudaInputError):
        PseudoLabelSettings(eta=0.3)
    with pytest.raises(VoxudaInputError):
        PseudoLabelSettings(denoiser="median")
    assert (resolved.pl_threshold, resolved.pl_keep) == ("global", 0.5)  # a model file that records none
    for bad in ({"pl_threshold": "median"}, {"pl_keep": 0.0}, {"pl_keep": 1.5}):
        with pytest.raises(VoxudaInputError):
            PseudoLabelSettings(**bad)


def test_class_quantile_selection_is_read_from_the_model_file_and_taken_over_the_dataset(
    tmp_path: Path, target: Dataset
) -> None:
    trained = {"pl_threshold": "class-quantile", "pl_keep": 0.3}
    model = write_model(tmp_path / "cq.pt", threshold_network(width=2), eta=0.99, denoiser="none", settings=trained)
    settings = resolve_pseudo_label_settings(
        PseudoLabelSettings(device="cpu"), pseudo_label_predictor(model, PseudoLabelSettings()).info
    )
    assert (settings.pl_threshold, settings.pl_keep, settings.denoiser) == ("class-quantile", 0.3, "none")
    predictor = pseudo_label_predictor(model, settings)
    labels = make_pseudo_labels(predictor, target, settings)
    normalised = (target.images - target.images.mean(axis=(1, 2, 3), keepdims=True)) / target.images.std(
        axis=(1, 2, 3), keepdims=True
    )
    foreground = torch.from_numpy(predictor.predict_windows(normalised.astype(np.float32), normalised=True))
    confidence = torch.maximum(foreground, 1 - foreground)
    expected = select_confident(confidence, (foreground > 0.5).long(), 2, 0.99, 0.3)
    assert np.array_equal(labels.confident, expected.numpy())
    # eta 0.99 alone labels (almost) nothing; the quantile keeps about 30 % of each predicted class
    predicted_foreground = foreground > 0.5
    kept = labels.confident[predicted_foreground.numpy()].mean()
    assert 0.29 <= kept <= 0.5
    assert labels.masks.sum() > (confidence.numpy() >= 0.99)[predicted_foreground.numpy()].sum()


@pytest.mark.parametrize("denoiser", ["none", "ibf", "ngm"])
def test_pseudo_labels_are_the_confident_teacher_argmax_on_the_denoised_target(
    model_file: Path, target: Dataset, denoiser: str
) -> None:
    settings = resolve_pseudo_label_settings(
        PseudoLabelSettings(denoiser=denoiser, device="cpu", batch_size=2),
        pseudo_label_predictor(model_file, PseudoLabelSettings(device="cpu")).info,
    )
    predictor = pseudo_label_predictor(model_file, settings)
    labels = make_pseudo_labels(predictor, target, settings)
    normalised = (target.images - target.images.mean(axis=(1, 2, 3), keepdims=True)) / target.images.std(
        axis=(1, 2, 3), keepdims=True
    )
    teacher_input = denoise(torch.from_numpy(normalised.astype(np.float32)), method=denoiser).numpy()
    foreground = predictor.predict_windows(teacher_input, normalised=True)
    confident = np.maximum(foreground, 1 - foreground) >= 0.8
    assert np.array_equal(labels.confident, confident)
    assert np.array_equal(labels.masks, ((foreground > 0.5) & confident).astype(np.uint8))
    assert np.allclose(labels.confidence, np.maximum(foreground, 1 - foreground), atol=1e-6)
    assert 0.5 < labels.coverage < 1.0
    assert labels.foreground_fraction == pytest.approx(labels.masks.sum() / confident.sum())
    assert labels.accuracy(target.masks) > 0.95


def test_written_dataset_layout(tmp_path: Path, model_file: Path, target: Dataset) -> None:
    settings = resolve_pseudo_label_settings(
        PseudoLabelSettings(device="cpu"), pseudo_label_predictor(model_file, PseudoLabelSettings()).info
    )
    labels = make_pseudo_labels(pseudo_label_predictor(model_file, settings), target, settings)
    write_pseudo_labels(tmp_path / "pseudo.h5", target, labels, settings, provenance="{}")
    written = read_h5_dataset(tmp_path / "pseudo.h5")
    assert written.kind == "pseudo-labels" and written.names == target.names and written.classes == target.classes
    assert np.allclose(written.images, target.images)
    assert np.array_equal(written.masks, labels.masks)
    assert np.allclose(written.confidence, labels.confidence)
    assert np.array_equal(written.params["confident"] > 0, labels.confident)
    assert written.attrs["eta"] == pytest.approx(0.8) and written.attrs["denoiser"] == "bf"
    assert written.attrs["coverage"] == pytest.approx(labels.coverage)
