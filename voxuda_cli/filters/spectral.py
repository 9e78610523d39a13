"""Target-styled source views: the source's Fourier phases with amplitudes mixed towards a target's.

What differs between a simulated source and a real target is mostly second-order statistics: the
noise's colour, the detector's MTF, the CTF envelope, low-frequency background (ice thickness,
gradients) and the SNR. They live in the amplitude spectrum; the structure a mask labels lives in
the phases (Oppenheim & Lim 1981). Fourier domain adaptation (Yang & Soatto, CVPR 2020) swaps the
low-frequency amplitudes of source images for a target's; here the whole amplitude spectrum is
interpolated, ``|F(x')| = (1 - lam) |F(x_s)| + lam |F(x_t)|`` with ``lam`` drawn per sample, and
the phases are the source's, so the source's masks stay valid for ``x'``. The result is z-scored
again, as every volume the network sees is.

Unlike the NGM's white noise at one sigma_t, this carries any spectral nuisance of the target
without a model of it, which is why it is offered as a source view (``train --source-view``).
"""

from __future__ import annotations

import torch

from voxuda_cli.normalise import zscore_tensor


def mix_amplitudes(source: torch.Tensor, target: torch.Tensor, strength: torch.Tensor | float) -> torch.Tensor:
    """``source`` (B, ..., D, H, W) with its amplitude spectrum moved ``strength`` (per sample) to ``target``'s."""
    dims = (-3, -2, -1)
    source_spectrum = torch.fft.rfftn(source.float(), dim=dims)
    target_amplitude = torch.fft.rfftn(target.float(), dim=dims).abs()
    lam = torch.as_tensor(strength, dtype=torch.float32, device=source.device)
    lam = lam.reshape(-1, *([1] * (source.ndim - 1))) if lam.ndim else lam
    amplitude = (1.0 - lam) * source_spectrum.abs() + lam * target_amplitude
    mixed = torch.polar(amplitude, source_spectrum.angle())
    volumes = torch.fft.irfftn(mixed, s=source.shape[-3:], dim=dims)
    return zscore_tensor(volumes).to(source.dtype)
