"""Pixel-size-aware prediction: a 10 A model predicts inputs at 13.5 A on its own grid, outputs on the input's."""

import numpy as np
import pytest
from scipy import ndimage

from tests.inference.models import threshold_network
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.inference.predictor import Predictor
from voxuda_cli.inference.pseudo_labels import make_pseudo_labels
from voxuda_cli.inference.settings import PredictSettings, PseudoLabelSettings
from voxuda_cli.io.dataset import Dataset
from voxuda_cli.io.mrc import read_mrc, write_mrc
from voxuda_cli.io.volume import Volume
from voxuda_cli.models import ModelInfo
from voxuda_cli.resample import fit_to_box, unfit

MODEL_VOXEL = 10.0


def predictor(**settings) -> Predictor:  # type: ignore[no-untyped-def]
    network = threshold_network(width=2)
    info = ModelInfo(architecture=network.config, box=(32, 32, 32), voxel_size=MODEL_VOXEL)
    return Predictor.from_network(network, info, PredictSettings(device="cpu", **settings))


def imaged(shape, voxel, particles, radius=55.0, noise=0.15, seed=0) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Balls of ``radius`` A at physical centres (A), sampled at ``voxel`` A (soft edge: no aliasing), plus noise."""
    grid = np.indices(shape, dtype=np.float64) * voxel
    density = np.zeros(shape)
    for centre in particles:
        distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
        density += 1.0 / (1.0 + np.exp((distance - radius) / 4.0))
    return (density + np.random.default_rng(seed).normal(0, noise, shape)).astype(np.float32)


def onto(mask: np.ndarray, voxel: float, shape, target_voxel: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A mask on a ``voxel`` grid resampled onto a ``target_voxel`` grid of ``shape`` (same physical origin)."""
    coordinates = np.indices(shape, dtype=np.float64) * (target_voxel / voxel)
    return ndimage.map_coordinates(mask.astype(np.float32), coordinates, order=1) > 0.5


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_same_particle_at_10_and_13_5_angstrom_gives_agreeing_masks():
    centre = [(160.0, 160.0, 160.0)]
    at_10 = Dataset(images=imaged((32,) * 3, 10.0, centre)[None], names=["a"], voxel_size=10.0)
    at_13 = Dataset(images=imaged((32,) * 3, 13.5, centre, seed=1)[None], names=["a"], voxel_size=13.5)
    model = predictor()
    mask_10 = model.predict_dataset(at_10).masks[0] > 0
    prediction = model.predict_dataset(at_13)
    assert prediction.masks.shape == (1, 32, 32, 32)  # the input's grid
    assert dice(onto(prediction.masks[0] > 0, 13.5, (32,) * 3, 10.0), mask_10) >= 0.9


def test_whole_tomogram_at_13_5_angstrom_keeps_its_grid(tmp_path):
    particles = [(200.0, 260.0, 300.0), (420.0, 500.0, 640.0)]
    at_10 = imaged((64, 80, 96), 10.0, particles)
    at_13 = imaged((48, 60, 72), 13.5, particles, seed=1)
    write_mrc(tmp_path / "t10.mrc", Volume(at_10, voxel_size=10.0, origin=(5.0, 6.0, 7.0)))
    write_mrc(tmp_path / "t13.mrc", Volume(at_13, voxel_size=13.5, origin=(5.0, 6.0, 7.0), labels=["scope"]))
    model = predictor()
    model.predict_tomogram(tmp_path / "t10.mrc", tmp_path / "m10.mrc")
    result = model.predict_tomogram(tmp_path / "t13.mrc", tmp_path / "m13.mrc", tmp_path / "p13.mrc")
    for path in ("m13.mrc", "p13.mrc"):
        output = read_mrc(tmp_path / path)
        assert output.shape == (48, 60, 72) and output.voxel_size == (13.5,) * 3 and output.origin == (5.0, 6.0, 7.0)
        assert output.labels[0] == "scope"
    assert result.shape == (48, 60, 72) and sorted(p.name for p in tmp_path.iterdir()) == [
        "m10.mrc",
        "m13.mrc",
        "p13.mrc",
        "t10.mrc",
        "t13.mrc",
    ]  # no scratch left behind
    mask_10 = read_mrc(tmp_path / "m10.mrc").data > 0
    mask_13 = read_mrc(tmp_path / "m13.mrc").data > 0
    assert dice(onto(mask_13, 13.5, mask_10.shape, 10.0), mask_10) >= 0.9


def test_lost_header_is_refused_then_overridden(tmp_path):
    data = imaged((40, 40, 40), 13.5, [(270.0, 270.0, 270.0)])
    write_mrc(tmp_path / "t.mrc", Volume(data, voxel_size=1.0))
    with pytest.raises(VoxudaInputError, match="--input-voxel-size"):
        predictor().predict_tomogram(tmp_path / "t.mrc", tmp_path / "m.mrc")
    assert not (tmp_path / "m.mrc").exists()
    predictor(input_voxel_size=13.5).predict_tomogram(tmp_path / "t.mrc", tmp_path / "m.mrc")
    assert read_mrc(tmp_path / "m.mrc").voxel_size == (13.5,) * 3  # the header is mended on the output
    with pytest.raises(VoxudaInputError, match="--input-voxel-size"):
        predictor().predict_dataset(Dataset(images=data[None, :32, :32, :32], names=["a"], voxel_size=1.0))


def test_fit_to_box_round_trip():
    rng = np.random.default_rng(0)
    images = ndimage.gaussian_filter(rng.normal(size=(2, 32, 32, 32)), (0, 2, 2, 2)).astype(np.float32)
    for voxel in (13.5, 7.0):  # the resampled grid is larger than the box, then smaller
        fitted, geometry = fit_to_box(images, voxel, 10.0, (32, 32, 32))
        assert fitted.shape == images.shape
        values = np.full(images.shape, 0.7, np.float32)
        back = unfit(values, geometry, (32, 32, 32), fill=0.5)
        assert back.shape == images.shape and np.isclose(back[:, 16, 16, 16], 0.7, atol=0.02).all()


def test_pseudo_labels_of_a_13_5_angstrom_target_match_the_10_angstrom_ones():
    centre = [(160.0, 160.0, 160.0)]
    at_10 = Dataset(images=imaged((32,) * 3, 10.0, centre)[None], names=["a"], voxel_size=10.0)
    at_13 = Dataset(images=imaged((32,) * 3, 13.5, centre, seed=1)[None], names=["a"], voxel_size=13.5)
    settings = PseudoLabelSettings(eta=0.6, denoiser="none", sigma_d=1.0, sigma_r=1.0, keep_rate=0.2, device="cpu")
    labels_10 = make_pseudo_labels(predictor(), at_10, settings)
    labels_13 = make_pseudo_labels(predictor(), at_13, settings)
    assert labels_13.masks.shape == (1, 32, 32, 32)
    assert dice(onto(labels_13.masks[0] > 0, 13.5, (32,) * 3, 10.0), labels_10.masks[0] > 0) >= 0.9
