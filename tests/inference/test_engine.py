"""The engine's compositions agree with the plain one: every plan, grid and wrapper on small inputs."""

from pathlib import Path

import numpy as np
import pytest

from tests.inference.models import ball, random_network, threshold_network
from voxuda_cli.inference.engine import run_tiles
from voxuda_cli.inference.grids import MemoryGrid, MrcGrid
from voxuda_cli.inference.plan import TilePlan
from voxuda_cli.inference.predictor import Predictor
from voxuda_cli.inference.settings import PredictSettings
from voxuda_cli.io.mrc import read_mrc, write_mrc
from voxuda_cli.io.volume import Volume
from voxuda_cli.models import ModelInfo
from voxuda_cli.normalise import LocallyNormalised, stream_stats


def _predictor(network, **settings) -> Predictor:  # type: ignore[no-untyped-def]
    info = ModelInfo(architecture=network.config, box=(32, 32, 32), voxel_size=10.0)
    return Predictor.from_network(network, info, PredictSettings(device="cpu", **settings))


def _volume(rng: np.random.Generator, shape=(48, 72, 88)) -> np.ndarray:  # type: ignore[no-untyped-def]
    mask = ball(shape, (24, 30, 40), 8) | ball(shape, (20, 50, 70), 6)
    return (mask + rng.normal(0, 0.4, shape)).astype(np.float32)


@pytest.mark.parametrize("normalise", ["local", "tomogram"])
@pytest.mark.parametrize(("window", "margin"), [(32, 8), (48, 16), (64, 4), (512, 16)])
def test_any_window_gives_the_plain_answer_for_a_local_network(
    rng: np.random.Generator, window: int, margin: int, normalise: str
) -> None:
    """A network that sees 3 voxels: with statistics that do not depend on the window (the blocks' or
    the tomogram's), every tiling is one forward of the whole."""
    volume = _volume(rng)
    predictor = _predictor(threshold_network(width=2), window=window, margin=margin, normalise=normalise)
    if normalise == "tomogram":  # the plain forward z-scored by the whole volume's own statistics
        whole = predictor.predict_windows(volume[None], stats=stream_stats(volume))[0]
    else:  # the plain forward of the volume read through its block statistics (Predictor.scan's)
        local = predictor.scan(volume).local
        assert local is not None
        normalised = LocallyNormalised(volume, local)[:, :, :]
        whole = predictor.predict_windows(normalised[None], normalised=True)[0]
    tiled = predictor.predict_volume(volume)
    assert np.abs(tiled - whole).max() < 1e-5


def test_margin_bounds_the_difference_to_one_forward_of_the_whole(rng: np.random.Generator) -> None:
    """A deep random network: larger margins move the tiled answer towards the whole volume's."""
    volume = _volume(rng)
    network = random_network(width=4)
    whole = _predictor(network, window=512).predict_volume(volume)
    errors = [
        np.abs(_predictor(network, window=48, margin=m).predict_volume(volume) - whole).mean() for m in (0, 8, 16)
    ]
    assert errors[2] < errors[1] < errors[0]


def test_mrc_grid_equals_the_memory_grid_and_removes_small_components(tmp_path: Path, rng: np.random.Generator) -> None:
    volume = _volume(rng)
    function = _predictor(threshold_network(width=2)).predict_windows
    plan = TilePlan.make(volume.shape, 32, 8)
    memory = MemoryGrid(volume.shape)
    run_tiles(volume, function, plan, memory, batch_size=3)
    like = Volume(np.empty((0, 0, 0), np.float32), voxel_size=7.0, origin=(1.0, 2.0, 3.0))
    with MrcGrid(tmp_path / "m.mrc", volume.shape, like, 0.5, tmp_path / "p.mrc", min_size=30) as grid:
        run_tiles(volume, function, plan, grid, batch_size=2)
    mask, probability = read_mrc(tmp_path / "m.mrc"), read_mrc(tmp_path / "p.mrc")
    assert np.array_equal(probability.data, memory.probabilities)
    from voxuda_cli.inference.components import remove_small_components

    assert np.array_equal(mask.data, remove_small_components(memory.probabilities > 0.5, 30))
    assert mask.voxel_size == (7.0, 7.0, 7.0) and mask.origin == (1.0, 2.0, 3.0)
    assert grid.foreground == int(mask.data.sum()) and grid.preview["mask"].shape == (1, 72, 88)


def test_max_grid_unites_overlapping_writes(tmp_path: Path) -> None:
    like = Volume(np.empty((0, 0, 0), np.float32), voxel_size=10.0)
    with MrcGrid(tmp_path / "m.mrc", (8, 8, 8), like, 0.5, tmp_path / "p.mrc", combine="max") as grid:
        grid.write((slice(0, 4), slice(0, 8), slice(0, 8)), np.full((4, 8, 8), 0.9, np.float32))
        grid.write((slice(2, 6), slice(0, 8), slice(0, 8)), np.full((4, 8, 8), 0.2, np.float32))
    mask, probability = read_mrc(tmp_path / "m.mrc").data, read_mrc(tmp_path / "p.mrc").data
    assert mask[:4].all() and not mask[4:].any()
    assert np.allclose(probability[2:4], 0.9) and np.allclose(probability[4:6], 0.2)
    assert grid.foreground == 4 * 64


@pytest.mark.parametrize("blend", ["core", "gaussian"])
def test_resampled_tomogram_goes_through_the_same_engine(tmp_path: Path, rng: np.random.Generator, blend: str) -> None:
    """A 12 A tomogram: resampled to 10 A, the engine, and back; equal to doing those steps by hand."""
    from voxuda_cli.resample import fourier_resample, model_shape

    volume = _volume(rng, (40, 48, 56))
    write_mrc(tmp_path / "t.mrc", Volume(volume, voxel_size=12.0, origin=(5.0, 0.0, 0.0)))
    predictor = _predictor(threshold_network(width=2), window=48, margin=8, blend=blend)
    result = predictor.predict_tomogram(tmp_path / "t.mrc", tmp_path / "m.mrc", tmp_path / "p.mrc")
    grid_shape = model_shape(volume.shape, 12.0, 10.0)
    by_hand = predictor.predict_volume(fourier_resample(volume, grid_shape))
    expected = np.clip(fourier_resample(by_hand, volume.shape), 0, 1)
    probability = read_mrc(tmp_path / "p.mrc")
    assert probability.voxel_size == (12.0, 12.0, 12.0) and probability.origin == (5.0, 0.0, 0.0)
    assert np.abs(probability.data - expected).max() < 1e-3  # streamed resampling against in-memory
    assert np.array_equal(read_mrc(tmp_path / "m.mrc").data, (probability.data > 0.5).astype(np.int8))
    assert result.shape == volume.shape and result.windows == predictor.plan(grid_shape).n_windows
    assert not list(tmp_path.glob(".voxuda-*"))


def test_a_window_past_the_border_is_the_edge_padded_forward(rng: np.random.Generator) -> None:
    """37 voxels along z: one window of 40 whose last 3 rows replicate the border, not two of 32."""
    volume = _volume(rng, (37, 40, 40))
    predictor = _predictor(random_network(width=4), normalise="window")
    assert predictor.plan(volume.shape).edges == (40, 40, 40)
    padded = np.pad(volume, [(0, 3), (0, 0), (0, 0)], mode="edge")
    expected = predictor.predict_windows(padded[None])[0][:37]
    np.testing.assert_allclose(predictor.predict_volume(volume), expected, atol=1e-5)
