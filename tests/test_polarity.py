"""Polarity from the data: simulated boxes of both signs, check refuses dark, auto flips, off looks at nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.polarity import detect_polarity, resolve_polarity
from voxuda_cli.simulate.presets import SimulationSettings
from voxuda_cli.simulate.simulator import simulate_in_memory


@pytest.fixture(scope="module")
def bright() -> np.ndarray:
    settings = SimulationSettings(structures=("7pbl", "4v1w"), tilt_step=6.0, n_per_structure=6, snr=(0.05,))
    return simulate_in_memory(settings).images


def test_simulated_boxes_look_bright_and_their_inverse_dark(bright: np.ndarray) -> None:
    assert detect_polarity(bright).verdict == "bright"
    assert detect_polarity(-bright).verdict == "dark"
    assert detect_polarity(bright, negate=True).verdict == "dark"
    assert detect_polarity(bright[0]).boxes == 1  # one box is a set of one


def test_pure_noise_is_unclear_and_never_acted_on() -> None:
    noise = np.random.default_rng(0).normal(size=(24, 32, 32, 32)).astype(np.float32)
    assert detect_polarity(noise).verdict == "unclear"
    assert resolve_polarity(noise, "check", "--tgt noise.h5", inverted=False) is False


def test_check_refuses_dark_data_in_one_line_that_says_what_to_do(bright: np.ndarray) -> None:
    with pytest.raises(VoxudaInputError, match="looks dark.*pass --invert.*--polarity auto") as error:
        resolve_polarity(-bright, "check", "--tgt dark.h5", inverted=False)
    assert "\n" not in str(error.value)
    with pytest.raises(VoxudaInputError, match="after --invert.*drop --invert"):
        resolve_polarity(bright, "check", "--tgt bright.h5", inverted=True)


def test_auto_flips_what_looks_dark_and_off_looks_at_nothing(bright: np.ndarray) -> None:
    assert resolve_polarity(-bright, "auto", "--tgt dark.h5", inverted=False) is True
    assert resolve_polarity(bright, "auto", "--tgt bright.h5", inverted=False) is False
    assert resolve_polarity(-bright, "off", "--tgt dark.h5", inverted=False) is False


def test_train_flips_a_dark_target_under_auto_and_records_it_for_predict(bright: np.ndarray, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from voxuda_cli.io import Dataset, write_dataset
    from voxuda_cli.models.serialization import load_model
    from voxuda_cli.training import TrainSettings, train

    masks = (bright > np.percentile(bright, 95)).astype(np.uint8)
    write_dataset(
        tmp_path / "src.h5",
        Dataset(images=bright, names=[f"s{i}" for i in range(len(bright))], voxel_size=10.0, masks=masks),
    )
    dark = Dataset(images=-bright, names=[f"t{i}" for i in range(len(bright))], voxel_size=10.0, kind="target")
    write_dataset(tmp_path / "tgt.h5", dark)
    base = TrainSettings(
        src=(tmp_path / "src.h5",),
        tgt=(tmp_path / "tgt.h5",),
        method="dann",
        width=4,
        batch_size=2,
        epochs=1,
        threads=1,
    )
    with pytest.raises(VoxudaInputError, match="--tgt .*tgt.h5: protein looks dark.*pass --polarity auto"):
        train(base, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    train(dataclasses.replace(base, polarity="auto"), tmp_path / "run")
    assert load_model(tmp_path / "run", "student")[1].invert is True
