from pathlib import Path

import numpy as np
import pytest

from voxuda_cli.inference.sliding_window import (
    WindowPlan,
    importance_map,
    sliding_window,
    sliding_window_array,
    window_starts,
)


def _sigmoid(windows: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-windows))).astype(np.float32)


def _window_mean(windows: np.ndarray) -> np.ndarray:
    """A window-dependent prediction: every voxel gets its window's mean (so blending weights matter)."""
    means = windows.mean(axis=(1, 2, 3), keepdims=True)
    return np.broadcast_to(_sigmoid(means), windows.shape).astype(np.float32)


def test_window_starts_cover_the_axis_with_the_last_window_flush() -> None:
    assert window_starts(72, 32, 0.5) == [0, 16, 32, 40]
    assert window_starts(32, 32, 0.5) == [0]
    assert window_starts(64, 32, 0.0) == [0, 32]
    assert window_starts(70, 32, 0.75) == [0, 8, 16, 24, 32, 38]
    with pytest.raises(ValueError):
        window_starts(20, 32, 0.5)


def test_importance_map_is_a_centred_gaussian_of_sigma_box_over_8() -> None:
    weights = importance_map((32, 32, 32))
    assert weights.shape == (32, 32, 32) and weights.dtype == np.float32
    assert np.allclose(weights, weights[::-1, ::-1, ::-1])
    assert weights.min() == pytest.approx(1e-3)
    profile = weights[15, 15, :] / weights[15, 15, 15]
    x = np.arange(32) - 15.5
    expected = np.exp(-(x**2) / (2 * 4.0**2)) / np.exp(-(0.5**2) / (2 * 4.0**2))
    assert np.allclose(profile, np.maximum(expected, profile.min()), atol=1e-6)


def test_importance_map_matches_monai() -> None:
    monai_utils = pytest.importorskip("monai.data.utils")
    reference = monai_utils.compute_importance_map((32, 24, 40), mode="gaussian", sigma_scale=0.125).numpy()
    assert np.allclose(importance_map((32, 24, 40)), reference, rtol=1e-5, atol=1e-7)


def test_pointwise_predictions_blend_back_exactly(rng: np.random.Generator) -> None:
    volume = rng.normal(size=(40, 56, 72)).astype(np.float32)
    blended = sliding_window_array(volume, _sigmoid, (32, 32, 32), 0.5, batch_size=3)
    assert np.allclose(blended, _sigmoid(volume), atol=1e-6)


def test_blending_matches_monai_sliding_window_inference(rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    inferers = pytest.importorskip("monai.inferers")
    volume = rng.normal(size=(40, 56, 72)).astype(np.float32)
    ours = sliding_window_array(volume, _window_mean, (32, 32, 32), 0.5, batch_size=4)

    def predictor(batch):  # type: ignore[no-untyped-def]
        return torch.from_numpy(_window_mean(batch[:, 0].numpy()))[:, None]

    reference = inferers.sliding_window_inference(
        torch.from_numpy(volume)[None, None], (32, 32, 32), 4, predictor, overlap=0.5, mode="gaussian"
    )[0, 0].numpy()
    assert np.abs(ours - reference).max() < 1e-5


def test_rows_are_emitted_once_in_order_and_input_released_behind(rng: np.random.Generator) -> None:
    volume = rng.normal(size=(72, 32, 40)).astype(np.float32)
    emitted: list[tuple[int, int]] = []
    released: list[int] = []
    windows: list[int] = []
    plan = sliding_window(
        volume,
        _sigmoid,
        (32, 32, 32),
        0.5,
        2,
        emit=lambda z0, rows: emitted.append((z0, rows.shape[0])),
        on_windows=windows.append,
        release=released.append,
    )
    assert emitted == [(0, 16), (16, 16), (32, 8), (40, 32)]
    assert released == [16, 32, 40, 72]
    assert sum(windows) == plan.n_windows == 4 * 1 * 2


def test_reads_from_a_memory_map(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.normal(size=(48, 40, 32)).astype(np.float32)
    path = tmp_path / "volume.raw"
    data.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=data.shape)
    assert np.array_equal(
        sliding_window_array(mapped, _window_mean, (32, 32, 32), 0.5, 4),
        sliding_window_array(data, _window_mean, (32, 32, 32), 0.5, 4),
    )


def test_window_plan_counts() -> None:
    plan = WindowPlan.make((48, 64, 80), (32, 32, 32), 0.5)
    assert plan.starts == ([0, 16], [0, 16, 32], [0, 16, 32, 48])
    assert plan.n_windows == 24 and plan.windows_per_row == 12
