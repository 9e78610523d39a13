"""Target-styled source views: phases of the source, amplitudes moved towards the target's."""

from __future__ import annotations

import torch

from voxuda_cli.filters.spectral import mix_amplitudes


def _zscore(x: torch.Tensor) -> torch.Tensor:
    dims = (-3, -2, -1)
    return (x - x.mean(dim=dims, keepdim=True)) / x.std(dim=dims, keepdim=True, correction=0)


def test_strength_zero_is_the_source_and_one_takes_the_target_amplitudes_with_the_source_phases() -> None:
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(2, 1, 16, 16, 16, generator=generator)
    # A coloured (low-pass) target: its amplitudes differ from the white source's.
    target = torch.nn.functional.avg_pool3d(torch.randn(2, 1, 20, 20, 20, generator=generator), 5, 1)
    torch.testing.assert_close(mix_amplitudes(source, target, 0.0), _zscore(source), atol=1e-5, rtol=1e-4)
    mixed = mix_amplitudes(source, target, torch.tensor([1.0, 1.0]))
    dims = (-3, -2, -1)
    amplitude = torch.fft.rfftn(mixed, dim=dims).abs()
    expected = torch.fft.rfftn(_zscore(target), dim=dims).abs()
    torch.testing.assert_close(amplitude[..., 1:, 1:, 1:], expected[..., 1:, 1:, 1:], atol=1e-3, rtol=1e-3)
    phase_in = torch.fft.rfftn(source, dim=dims).angle()
    phase_out = torch.fft.rfftn(mixed, dim=dims).angle()
    strong = expected > 1e-2 * expected.max()  # phases are defined where there is amplitude
    assert torch.allclose(torch.cos(phase_in - phase_out)[strong], torch.ones(()), atol=1e-3)
    assert mixed.shape == source.shape and mixed.dtype == source.dtype


def test_per_sample_strength_mixes_each_sample_by_its_own_amount() -> None:
    generator = torch.Generator().manual_seed(1)
    source = torch.randn(2, 1, 8, 8, 8, generator=generator)
    target = torch.randn(2, 1, 8, 8, 8, generator=generator)
    mixed = mix_amplitudes(source, target, torch.tensor([0.0, 0.8]))
    torch.testing.assert_close(mixed[0], _zscore(source)[0], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(mixed[1], _zscore(source)[1], atol=1e-2)


def _coloured(n: int, seed: int, smoothing: int) -> torch.Tensor:
    """n 16^3 volumes of noise low-passed by a box of ``smoothing`` voxels (1: white)."""
    noise = torch.randn(
        n, 1, 16 + smoothing - 1, 16 + smoothing - 1, 16 + smoothing - 1, generator=torch.Generator().manual_seed(seed)
    )
    return torch.nn.functional.avg_pool3d(noise, smoothing, 1)[:, 0]


def test_radial_log_power_is_flat_for_white_noise_and_falls_for_low_passed_noise() -> None:
    from voxuda_cli.filters.spectral import radial_log_power

    white = radial_log_power(_coloured(8, 0, 1)).mean(dim=0)
    low_pass = radial_log_power(_coloured(8, 0, 3)).mean(dim=0)
    assert white.shape == (7,) and float(white.max() - white.min()) < 0.5
    assert float(low_pass[0] - low_pass[-1]) > 2.0  # the power falls with frequency


def test_spectral_coverage_is_high_for_the_same_kind_of_volumes_and_low_for_another_colour() -> None:
    from voxuda_cli.filters.spectral import spectral_coverage

    white, other_white, coloured = _coloured(64, 1, 1), _coloured(64, 2, 1), _coloured(64, 3, 3)
    assert spectral_coverage(white, other_white) > 0.8
    assert spectral_coverage(white, coloured) < 0.1
    # A source that mixes both colours spans each of them (a domain-randomised source).
    assert spectral_coverage(torch.cat([white, coloured]), coloured) > 0.5
    assert spectral_coverage(white, other_white) == spectral_coverage(white, other_white)  # no randomness
