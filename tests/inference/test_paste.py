"""extract -> predict --paste: each box's mask lands back where its particle is, on the tomogram's grid."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from tests.inference.models import ball, threshold_network, write_model
from voxuda_cli.cli.app import app
from voxuda_cli.io.mrc import read_mrc, write_mrc
from voxuda_cli.io.volume import Volume

SHAPE = (48, 64, 72)
CENTRES = [(24, 30, 36), (14, 16, 20), (33, 47, 52), (20, 40, 56), (3, 10, 40)]  # the last crosses the border


@pytest.fixture()
def scene(tmp_path):
    rng = np.random.default_rng(0)
    truth = np.zeros(SHAPE, np.uint8)
    for centre in CENTRES:
        truth |= ball(SHAPE, centre, 4.0)
    data = (truth + rng.normal(0, 0.15, SHAPE)).astype(np.float32)
    write_mrc(tmp_path / "TS_01.mrc", Volume(data, voxel_size=13.5, origin=(27.0, -13.5, 0.0)))
    zyx = np.asarray(CENTRES)
    pd.DataFrame({"x": zyx[:, 2], "y": zyx[:, 1], "z": zyx[:, 0]}).to_csv(tmp_path / "TS_01.csv", index=False)
    model = write_model(tmp_path / "run" / "model.pt", threshold_network(width=2), voxel_size=10.0)
    return tmp_path, truth, model


def test_extract_then_predict_paste_puts_each_mask_back(runner, scene):
    tmp_path, truth, model = scene
    extracted = tmp_path / "sub.h5"
    result = runner.invoke(
        app,
        ["extract", str(tmp_path / "TS_01.mrc"), "--coords", str(tmp_path / "TS_01.csv"), "-o", str(extracted),
         "--voxel-size", "10"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    pasted = tmp_path / "pasted"
    result = runner.invoke(
        app,
        ["predict", str(model), str(extracted), "-o", str(tmp_path / "pred.h5"), "--paste", str(pasted),
         "--probabilities", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    outputs = json.loads(result.stdout)["outputs"]
    assert str(pasted / "TS_01.mrc") in outputs and str(pasted / "TS_01_probabilities.mrc") in outputs
    mask = read_mrc(pasted / "TS_01.mrc")
    probabilities = read_mrc(pasted / "TS_01_probabilities.mrc")
    for volume in (mask, probabilities):
        assert volume.shape == SHAPE and volume.voxel_size == (13.5,) * 3 and volume.origin == (27.0, -13.5, 0.0)
    labels = mask.data > 0
    components, _ = ndimage.label(labels)
    for centre in CENTRES:  # each particle's mask is centred on it (to a fraction of a tomogram voxel)
        assert labels[centre], centre
        com = ndimage.center_of_mass(labels, components, components[centre])
        assert np.abs(np.array(com) - centre).max() < 0.5, (centre, com)
    assert (labels & (truth > 0)).sum() >= 0.95 * truth.sum()  # the particles are covered ...
    assert not (labels & ~ndimage.binary_dilation(truth > 0, iterations=2)).any()  # ... and nothing far from them
    assert 0.0 <= probabilities.data.min() and probabilities.data.max() <= 1.0
    assert np.array_equal(labels, probabilities.data > 0.5)


def test_paste_needs_an_extract_dataset(runner, scene, tiny_dataset):
    tmp_path, _, model = scene
    result = runner.invoke(
        app, ["predict", str(model), str(tiny_dataset), "-o", str(tmp_path / "p.h5"), "--paste", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "voxuda extract" in result.output
    assert not (tmp_path / "p.h5").exists() and not (tmp_path / "x").exists()
