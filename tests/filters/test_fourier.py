import numpy as np
import pytest
import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.filters.fourier import high_pass_mask, high_pass_residual


def radius2(shape: tuple[int, int, int]) -> np.ndarray:
    f = [np.fft.fftfreq(n) for n in shape]
    return f[0][:, None, None] ** 2 + f[1][None, :, None] ** 2 + f[2][None, None, :] ** 2


@pytest.mark.parametrize("shape", [(32, 32, 32), (7, 9, 10), (16, 8, 5)])
@pytest.mark.parametrize("keep_rate", [0.244, 0.01, 0.5, 0.9])
def test_mask_keeps_exact_fraction_of_highest_frequencies(shape, keep_rate) -> None:  # type: ignore[no-untyped-def]
    mask = high_pass_mask(shape, keep_rate).numpy()
    total = int(np.prod(shape))
    assert mask.sum() == round(keep_rate * total)
    r2 = radius2(shape)
    assert r2[mask].min() >= r2[~mask].max() - 1e-12
    # kept in conjugate pairs: at most one pair is split at the boundary radius
    mirrored = np.roll(np.flip(mask), 1, axis=(0, 1, 2))
    assert (mask != mirrored).sum() <= 2


def test_residual_is_inverse_fft_of_kept_coefficients() -> None:
    x = torch.randn(2, 3, 8, 9, 10, dtype=torch.float64)
    mask = high_pass_mask((8, 9, 10), 0.244)
    expected = torch.fft.ifftn(torch.fft.fftn(x, dim=(-3, -2, -1)) * mask, dim=(-3, -2, -1)).real
    got = high_pass_residual(x, 0.244)
    assert got.shape == x.shape and got.dtype == torch.float64
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)


def test_low_frequencies_removed_high_kept() -> None:
    z, y, x = np.indices((16, 16, 16))
    smooth = torch.from_numpy(3.0 + np.sin(2 * np.pi * x / 16) + np.cos(2 * np.pi * z / 16))
    assert float(high_pass_residual(smooth).abs().max()) < 1e-10
    checker = torch.from_numpy(((-1.0) ** (x + y + z)).astype(np.float64))  # the highest frequency there is
    torch.testing.assert_close(high_pass_residual(checker), checker)


@pytest.mark.parametrize("keep_rate", [0.0, 1.0, -0.1, 1.5])
def test_keep_rate_outside_open_interval_rejected(keep_rate) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(VoxudaInputError, match="keep-rate"):
        high_pass_residual(torch.zeros(4, 4, 4), keep_rate)
