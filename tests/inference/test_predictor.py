import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.inference.models import ball, random_network, sphere_batch, threshold_network, write_model
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.inference.components import remove_small_components
from voxuda_cli.inference.predictor import Predictor
from voxuda_cli.inference.settings import PredictSettings
from voxuda_cli.io.dataset import Dataset, read_h5_dataset
from voxuda_cli.io.mrc import read_mrc, write_mrc
from voxuda_cli.io.volume import Volume
from voxuda_cli.models import ModelInfo, int8
from voxuda_cli.models.int8 import Int8VoxResNet
from voxuda_cli.normalise import zscore
from voxuda_cli.patches import PatchifySettings, write_patches
from voxuda_cli.resample import back_to, fourier_resample, model_shape


def _predictor(network=None, **settings) -> Predictor:  # type: ignore[no-untyped-def]
    network = network or random_network(width=4)
    info = ModelInfo(architecture=network.config, box=(32, 32, 32), invert=settings.pop("invert", False))
    return Predictor.from_network(network, info, PredictSettings(device="cpu", **settings))


def _spheres_volume(rng: np.random.Generator, shape, centres, radius=6.0, noise=0.5):  # type: ignore[no-untyped-def]
    mask = np.zeros(shape, np.uint8)
    for centre in centres:
        mask |= ball(shape, centre, radius)
    return (mask + rng.normal(0, noise, shape)).astype(np.float32), mask


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def test_model_file_predicts_a_box_volume_like_its_windows(tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_model(tmp_path / "model.pt", random_network(width=4))
    predictor = Predictor(tmp_path, PredictSettings(tta=True), device="cpu", tta=False)  # a run folder; overrides
    assert predictor.settings.device == "cpu" and not predictor.settings.tta
    volume = rng.normal(size=(32, 32, 32)).astype(np.float32)
    probabilities = predictor.predict_volume(volume)
    assert probabilities.shape == (32, 32, 32) and probabilities.dtype == np.float32
    assert 0.0 <= probabilities.min() and probabilities.max() <= 1.0 and probabilities.std() > 0
    assert np.array_equal(probabilities, predictor.predict_windows(volume[None])[0])
    assert predictor.model_path == path


def test_each_window_is_z_scored_so_scale_and_offset_do_not_matter(rng: np.random.Generator) -> None:
    predictor = _predictor()
    volume = rng.normal(size=(32, 32, 48)).astype(np.float32)
    reference = predictor.predict_volume(volume)
    assert np.allclose(predictor.predict_volume(3.0 * volume + 7.0), reference, atol=1e-5)
    tomogram_wide = predictor.with_settings(normalise="tomogram")
    assert np.allclose(
        tomogram_wide.predict_volume(2.0 * volume - 1.0), tomogram_wide.predict_volume(volume), atol=1e-5
    )


def test_inverted_model_flips_contrast_first(rng: np.random.Generator) -> None:
    network = random_network(width=4)
    volume = rng.normal(size=(32, 32, 32)).astype(np.float32)
    plain = _predictor(network).predict_volume(-volume)
    assert np.allclose(_predictor(network, invert=True).predict_volume(volume), plain, atol=1e-6)


def test_whole_volume_equals_a_cut_out_region_away_from_its_border(rng: np.random.Generator) -> None:
    predictor = _predictor(batch_size=3, blend="gaussian", normalise="window")
    volume = rng.normal(size=(32, 64, 64)).astype(np.float32)
    whole = predictor.predict_volume(volume)
    cut = predictor.predict_volume(volume[:, 16:, 16:])  # its windows sit where the whole volume's do
    # Voxels at y, x >= 32 are covered by the same windows in both (the cut's first step is its border zone).
    assert np.abs(whole[:, 32:, 32:] - cut[:, 16:, 16:]).max() < 1e-5
    assert np.abs(whole[:, 16:32, 16:32] - cut[:, :16, :16]).max() > 1e-4  # the border zone does differ


def test_tta_is_flip_equivariant_and_exact_for_an_equivariant_network(rng: np.random.Generator) -> None:
    volume = rng.normal(size=(32, 64, 32)).astype(np.float32)  # window grid symmetric under flips
    tta = _predictor(tta=True, batch_size=3)
    forward = tta.predict_volume(volume)
    flipped = tta.predict_volume(np.ascontiguousarray(volume[::-1, :, ::-1]))
    assert np.allclose(flipped, forward[::-1, :, ::-1], atol=1e-5)
    symmetric = volume + volume[::-1] + volume[:, ::-1] + volume[:, :, ::-1]
    symmetric = symmetric + symmetric[::-1, ::-1, ::-1]
    on_symmetric = tta.predict_volume(symmetric)
    assert np.allclose(on_symmetric, on_symmetric[::-1, ::-1, ::-1], atol=1e-5)
    equivariant = threshold_network(width=2)  # symmetric kernels: every flip predicts the same
    box = rng.normal(size=(32, 32, 32)).astype(np.float32)
    assert np.allclose(
        _predictor(equivariant, tta=True).predict_volume(box), _predictor(equivariant).predict_volume(box), atol=1e-5
    )


def test_bad_volumes_are_refused(rng: np.random.Generator) -> None:
    predictor = _predictor()
    with pytest.raises(VoxudaInputError, match="smaller than the model box"):
        predictor.predict_volume(np.zeros((24, 40, 40), np.float32))
    nan = rng.normal(size=(32, 32, 32)).astype(np.float32)
    nan[1, 2, 3] = np.nan
    with pytest.raises(VoxudaInputError, match="NaN"):
        predictor.predict_volume(nan)
    dataset = Dataset(images=np.zeros((2, 40, 40, 40), np.float32), names=["a", "b"], source="d.h5")
    with pytest.raises(VoxudaInputError, match="model box"):
        predictor.predict_dataset(dataset)


def test_predict_dataset_thresholds_and_removes_small_components(rng: np.random.Generator) -> None:
    images, masks = sphere_batch(rng, 3)
    dataset = Dataset(images=images, names=["a", "b", "c"], voxel_size=10.0)
    result = _predictor(threshold_network(width=2), batch_size=2).predict_dataset(dataset)
    assert result.probabilities.shape == images.shape and result.masks.dtype == np.uint8
    assert np.array_equal(result.masks, (result.probabilities > 0.5).astype(np.uint8))
    assert _dice(result.masks, masks) > 0.8
    cleaned = _predictor(threshold_network(width=2), min_size=50, threshold=0.2).predict_dataset(dataset)
    for probabilities, mask in zip(cleaned.probabilities, cleaned.masks):
        assert np.array_equal(mask, remove_small_components(probabilities > 0.2, 50))


def test_predict_tomogram_streams_to_mrc_with_the_input_header(tmp_path: Path, rng: np.random.Generator) -> None:
    volume, truth = _spheres_volume(rng, (40, 48, 64), [(20, 20, 20), (18, 30, 46)])
    # within 1 % of the model's 10 A on every axis, so predicted as is (resampling has tests of its own)
    voxel_size = (10.0, 10.0625, 10.09375)
    write_mrc(tmp_path / "tomo.mrc", Volume(volume, voxel_size=voxel_size, origin=(1.0, 2.0, 3.0), labels=["x"]))
    predictor = _predictor(threshold_network(width=2), min_size=10, window=32, margin=8)
    result = predictor.predict_tomogram(tmp_path / "tomo.mrc", tmp_path / "mask.mrc", tmp_path / "prob.mrc")
    mask, probabilities = read_mrc(tmp_path / "mask.mrc"), read_mrc(tmp_path / "prob.mrc")
    for output in (mask, probabilities):
        assert output.shape == volume.shape
        assert output.voxel_size == voxel_size and output.origin == (1.0, 2.0, 3.0)
        assert output.labels[0] == "x"
    in_memory = predictor.predict_volume(volume)
    assert np.allclose(probabilities.data, in_memory, atol=1e-6)
    assert 0.0 <= probabilities.data.min() and probabilities.data.max() <= 1.0
    assert np.array_equal(mask.data, remove_small_components(in_memory > 0.5, 10).astype(np.int8))
    assert _dice(mask.data, truth) > 0.8
    # 32-voxel windows, 8 of margin: cores of 16-24 voxels tile 40 x 48 x 64 in 2 x 2 x 3 windows
    assert result.windows == 2 * 2 * 3 and result.foreground_fraction == pytest.approx(float(mask.data.mean()))
    assert set(result.preview) == {"input", "probability", "mask"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.mrc", "prob.mrc", "tomo.mrc"]  # no temp files left


def test_nan_tomogram_writes_nothing(tmp_path: Path, rng: np.random.Generator) -> None:
    volume = rng.normal(size=(32, 40, 40)).astype(np.float32)
    volume[30, 1, 1] = np.nan
    write_mrc(tmp_path / "tomo.mrc", Volume(volume, voxel_size=10.0))
    with pytest.raises(VoxudaInputError, match="NaN"):
        _predictor().predict_tomogram(tmp_path / "tomo.mrc", tmp_path / "mask.mrc")
    assert [p.name for p in tmp_path.iterdir()] == ["tomo.mrc"]


@pytest.mark.parametrize("resize", [None, 64])
def test_stitched_patches_line_up_with_the_parent(tmp_path: Path, rng: np.random.Generator, resize) -> None:  # type: ignore[no-untyped-def]
    shape = (48, 48, 48)
    volume, truth = _spheres_volume(rng, shape, [(16, 16, 30), (33, 30, 14)], radius=7.0, noise=0.3)
    write_patches(
        tmp_path / "patches.h5",
        [("tomo", Volume(volume, voxel_size=8.0, origin=(4.0, 5.0, 6.0)))],
        PatchifySettings(patch=32, resize=resize),
        json.dumps({}),
    )
    dataset = read_h5_dataset(tmp_path / "patches.h5")
    predictor = _predictor(threshold_network(width=2))
    prediction = predictor.predict_dataset(dataset)
    [(parent, probabilities, mask)] = list(predictor.parent_volumes(dataset, prediction))
    assert parent == "tomo" and mask.shape == shape
    assert probabilities.voxel_size == (8.0, 8.0, 8.0) and probabilities.origin == (4.0, 5.0, 6.0)
    assert _dice(mask, truth) > 0.75
    if resize is None:  # the parent went through the engine whole (at the model's 10 A and back); patches cut from it
        on_model = fourier_resample(zscore(volume), model_shape(shape, 8.0, predictor.model_voxel_size))
        whole = back_to(predictor.predict_volume(on_model), shape)
        np.testing.assert_allclose(probabilities.data, whole, atol=1e-5)
        np.testing.assert_allclose(prediction.probabilities[-1], whole[16:, 16:, 16:], atol=1e-5)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN: no streaming")
def test_the_window_fills_the_memory_budget_of_a_streamed_cpu_forward() -> None:
    """On a CPU in float32 the forward streams its full-resolution part: deeper windows for the same --memory."""
    budget = 0.5  # GiB (nothing is allocated)
    predictor = _predictor(random_network(width=32), memory=budget)
    edges = predictor.window_limits((1000, 1000, 1000))
    config = predictor.info.architecture
    whole_edge = int((budget * 2**30 / config.inference_bytes_per_voxel()) ** (1 / 3)) // 8 * 8
    assert edges[0] == edges[1] == edges[2] > whole_edge
    assert math.prod(edges) * config.inference_bytes_per_voxel(depth=edges[0]) <= budget * 2**30


def test_a_thin_tomogram_gets_its_depth_whole_and_wider_windows() -> None:
    predictor = _predictor(random_network(width=8), memory=0.5)
    cube = predictor.window_limits((1000, 1000, 1000))
    thin = predictor.window_limits((96, 1000, 1000))
    assert thin[0] == 96 and thin[1] > cube[1] and thin[2] > cube[2]
    assert math.prod(thin) * predictor.info.architecture.inference_bytes_per_voxel(depth=96) <= 0.5 * 2**30
    plan = predictor.plan((96, 1000, 1000))
    assert plan.edges[0] == 96 and len(plan.axes[0]) == 1


@pytest.mark.skipif(not int8.supported(), reason="torch without oneDNN's int8 convolution")
def test_int8_follows_float32_with_one_calibration_per_input(monkeypatch, rng: np.random.Generator) -> None:  # type: ignore[no-untyped-def]
    calls = []
    calibrated = Int8VoxResNet.calibrated
    monkeypatch.setattr(Int8VoxResNet, "calibrated", lambda self, inputs: calls.append(1) or calibrated(self, inputs))
    volume, _ = _spheres_volume(rng, (40, 48, 64), [(20, 20, 20), (18, 30, 46)])
    plain = _predictor(random_network(width=4), window=32, margin=8)
    reference = plain.predict_volume(volume)
    quantised = plain.with_settings(int8=True)
    assert quantised.numerics == "int8" and plain.numerics == "float32"
    got = quantised.predict_volume(volume)  # 12 windows, one calibration
    assert len(calls) == 1
    assert float(np.abs(got - reference).max()) < 0.05 and float(np.mean((got > 0.5) == (reference > 0.5))) > 0.99
    # the scales come from the input, not from the windows: another window size moves the numbers no
    # more than in float32 (where a margin under the receptive field moves them by a few 1e-3)
    moved = np.abs(plain.with_settings(window=48).predict_volume(volume) - reference).max()
    assert np.abs(quantised.with_settings(window=48).predict_volume(volume) - got).max() < moved + 1e-3
    # a dataset at another voxel size: each sample resampled and predicted whole, one calibration for all
    images = rng.normal(size=(3, 32, 32, 32)).astype(np.float32)
    quantised.predict_dataset(Dataset(images=images, names=["a", "b", "c"], voxel_size=12.0))
    assert len(calls) == 3


def test_int8_is_refused_where_it_cannot_run(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(VoxudaInputError, match="--int8 with --amp"):
        PredictSettings(int8=True, amp=True)
    monkeypatch.setattr(int8, "supported", lambda: False)
    with pytest.raises(VoxudaInputError, match="--int8: runs on x86-64 CPUs"):
        _predictor(int8=True)
