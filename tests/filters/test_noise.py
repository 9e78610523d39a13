import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.filters.fourier import high_pass_residual
from voxuda_cli.filters.noise import (
    NoiseEstimate,
    NoiseSettings,
    add_ngm_noise,
    estimate_noise,
    estimate_noise_from_volumes,
    ngm_denoise,
)


def test_white_noise_sigma_recovered_as_defined() -> None:
    # Parseval: a z-scored white-noise volume keeps keep_rate of its (unit) power in the high-pass shell.
    rng = np.random.default_rng(0)
    images = rng.normal(0, 7.0, size=(6, 32, 32, 32)).astype(np.float32)
    estimate = estimate_noise(images, [f"n{i}" for i in range(6)], NoiseSettings(n_sampled=6, keep_rate=0.244))
    assert estimate.variance == pytest.approx(0.244, rel=0.02)
    assert estimate.sigma == pytest.approx(math.sqrt(0.244), rel=0.01)


def test_signal_plus_noise_sigma_as_predicted() -> None:
    # smooth signal (no power in the shell) + white noise s: sigma_t^2 = keep_rate * s^2 / (A^2/2 + s^2)
    z, y, x = np.indices((32, 32, 32))
    amplitude, s = 2.0, 0.5
    rng = np.random.default_rng(1)
    signal = amplitude * np.sin(2 * np.pi * x / 32)
    images = np.stack([signal + rng.normal(0, s, signal.shape) for _ in range(4)])
    estimate = estimate_noise(images, list("abcd"), NoiseSettings(n_sampled=4, keep_rate=0.3))
    assert estimate.variance == pytest.approx(0.3 * s**2 / (amplitude**2 / 2 + s**2), rel=0.03)
    assert len(estimate.samples) == 4 and estimate.n_sampled == 4


def test_sampling_seeded_and_too_many_uses_all(caplog, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(logging.getLogger("voxuda"), "propagate", True)  # the CLI's log setup turns it off
    rng = np.random.default_rng(2)
    images = rng.normal(size=(12, 8, 8, 8)) * np.linspace(0.5, 3, 12)[:, None, None, None]
    names = [f"v{i}" for i in range(12)]
    first = estimate_noise(images, names, NoiseSettings(n_sampled=3, seed=5))
    again = estimate_noise(images, names, NoiseSettings(n_sampled=3, seed=5))
    other = estimate_noise(images, names, NoiseSettings(n_sampled=3, seed=6))
    assert first.samples == again.samples
    assert [n for n, _ in first.samples] != [n for n, _ in other.samples]
    with caplog.at_level(logging.WARNING, logger="voxuda"):
        everything = estimate_noise(images, names, NoiseSettings(n_sampled=50))
    assert everything.n_sampled == 12 and sorted(n for n, _ in everything.samples) == sorted(names)
    assert "using all 12" in caplog.text


def test_from_volumes_of_any_shape() -> None:
    rng = np.random.default_rng(3)
    estimate = estimate_noise_from_volumes([("a", rng.normal(size=(8, 10, 12))), ("b", rng.normal(size=(16, 16, 8)))])
    assert [n for n, _ in estimate.samples] == ["a", "b"]
    assert estimate.variance == pytest.approx(np.mean([s * s for _, s in estimate.samples]))


def test_bad_inputs() -> None:
    images = np.zeros((2, 8, 8, 8), np.float32)
    images[1, 0, 0, 0] = np.nan
    with pytest.raises(VoxudaInputError, match="NaN"):
        estimate_noise(images, ["a", "b"], NoiseSettings(n_sampled=2))
    with pytest.raises(VoxudaInputError, match="keep-rate"):
        estimate_noise(images, ["a", "b"], NoiseSettings(keep_rate=1.0))
    with pytest.raises(VoxudaInputError, match="n-sampled"):
        estimate_noise(images, ["a", "b"], NoiseSettings(n_sampled=0))
    with pytest.raises(VoxudaInputError, match="shape"):
        estimate_noise(images[0], ["a"], NoiseSettings())


def test_json_round_trip_and_bad_files(tmp_path: Path) -> None:
    estimate = NoiseEstimate(sigma=0.5, variance=0.25, keep_rate=0.244, n_sampled=2, samples=[("a", 0.4), ("b", 0.6)])
    document = estimate.to_dict()
    assert set(document) == {"sigma", "variance", "keep_rate", "n_sampled", "samples"}
    assert document["samples"][1] == {"name": "b", "sigma": 0.6}
    path = estimate.save(tmp_path / "noise.json")
    assert json.loads(path.read_text()) == document
    assert NoiseEstimate.load(path) == estimate
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "wrong.json").write_text(json.dumps({"variance": 1.0}))
    (tmp_path / "negative.json").write_text(json.dumps({"sigma": -1.0}))
    for name in ("junk.json", "wrong.json", "negative.json", "missing.json"):
        with pytest.raises(VoxudaInputError, match=name):
            NoiseEstimate.load(tmp_path / name)


def test_add_ngm_noise_fresh_and_seeded() -> None:
    x = torch.zeros(4, 16, 16, 16)
    noisy = add_ngm_noise(x, 0.7)
    assert float(noisy.std()) == pytest.approx(0.7, rel=0.03) and abs(float(noisy.mean())) < 0.02
    assert not torch.equal(noisy, add_ngm_noise(x, 0.7))
    a = add_ngm_noise(x, 0.7, torch.Generator().manual_seed(1))
    b = add_ngm_noise(x, 0.7, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype


def test_ngm_denoise_is_volume_less_residual() -> None:
    x = torch.randn(2, 12, 12, 12)
    torch.testing.assert_close(ngm_denoise(x, 0.3), x - high_pass_residual(x, 0.3))
    assert float(ngm_denoise(x).var()) < float(x.var())


def test_fourier_upsampled_volumes_give_the_native_sigma() -> None:
    """Boxes Fourier-upsampled (13.5 -> 10 A, as extract makes them) hold no data above the old Nyquist:
    the estimate is made at the sampling their band holds, so it equals the native boxes' one."""
    import torch

    from voxuda_cli.filters.fourier import data_band
    from voxuda_cli.resample import fourier_resample

    native = np.random.default_rng(0).normal(size=(12, 24, 24, 24)).astype(np.float32)
    upsampled = fourier_resample(native, (32, 32, 32))
    names = [str(i) for i in range(12)]
    settings = NoiseSettings(n_sampled=12)
    assert data_band(torch.from_numpy(native)) == (1.0, 1.0, 1.0)
    assert data_band(torch.from_numpy(upsampled)) == pytest.approx((0.75,) * 3, abs=0.07)
    expected = estimate_noise(native, names, settings).sigma
    assert estimate_noise(upsampled, names, settings).sigma == pytest.approx(expected, rel=0.03)
