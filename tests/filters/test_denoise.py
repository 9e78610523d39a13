import pytest
import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.filters import (
    DenoiseSettings,
    bilateral_filter,
    denoise,
    improved_bilateral_filter,
    ngm_denoise,
)


def test_methods_dispatch_on_batches_and_single_volumes() -> None:
    batch = torch.randn(3, 10, 11, 12)
    assert torch.equal(denoise(batch, "ibf", 120.0, 0.8), improved_bilateral_filter(batch, 120.0, 0.8))
    assert torch.equal(denoise(batch[0], "bf"), bilateral_filter(batch[0]))
    assert torch.equal(denoise(batch, "ngm", keep_rate=0.3), ngm_denoise(batch, 0.3))
    assert denoise(batch, "none") is batch
    assert denoise(batch).shape == batch.shape


def test_bad_method_and_keep_rate() -> None:
    with pytest.raises(VoxudaInputError, match="method"):
        denoise(torch.zeros(4, 4, 4), "median")
    with pytest.raises(VoxudaInputError, match="keep-rate"):
        denoise(torch.zeros(4, 4, 4), "ngm", keep_rate=1.2)


def test_settings_defaults_and_validation() -> None:
    settings = DenoiseSettings()
    assert (settings.denoiser, settings.sigma_d, settings.sigma_r, settings.keep_rate) == ("ibf", 120.0, 1.2, 0.244)
    assert settings.chunk is None and settings.zscore
    settings.validate()
    with pytest.raises(VoxudaInputError, match="chunk"):
        DenoiseSettings(chunk=0).validate()
