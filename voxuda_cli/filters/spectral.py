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

Where the source already spans the target's spectra (a domain-randomised simulation with coloured
noise, backgrounds and a range of optics), the view adds only distortion: ``spectral_coverage``
measures how much of the target's radial power spectra lies inside the source's range, and
``--source-view auto`` uses the view only where that coverage is low (benchmarks/results.md).
"""

from __future__ import annotations

import torch

from voxuda_cli.normalise import zscore_tensor


def mix_amplitudes(
    source: torch.Tensor, target: torch.Tensor, strength: torch.Tensor | float, band: float = 1.0
) -> torch.Tensor:
    """``source`` (B, ..., D, H, W) with its amplitude spectrum moved ``strength`` (per sample) to ``target``'s.

    ``band`` < 1 moves only the frequencies below that fraction of Nyquist (FDA's low-frequency
    swap, Yang & Soatto 2020); the phases, which carry the structure, stay the source's.
    """
    dims = (-3, -2, -1)
    source_spectrum = torch.fft.rfftn(source.float(), dim=dims)
    target_amplitude = torch.fft.rfftn(target.float(), dim=dims).abs()
    lam = torch.as_tensor(strength, dtype=torch.float32, device=source.device)
    lam = lam.reshape(-1, *([1] * (source.ndim - 1))) if lam.ndim else lam
    if band < 1.0:
        lam = lam * (_frequency_radius(source.shape[-3:], source.device) < band).float()
    amplitude = (1.0 - lam) * source_spectrum.abs() + lam * target_amplitude
    mixed = torch.polar(amplitude, source_spectrum.angle())
    volumes = torch.fft.irfftn(mixed, s=source.shape[-3:], dim=dims)
    return zscore_tensor(volumes).to(source.dtype)


def _frequency_radius(shape: torch.Size, device: torch.device) -> torch.Tensor:
    """|f| / Nyquist on the rfftn grid of ``shape`` (1 at Nyquist along an axis)."""
    axes = [torch.fft.fftfreq(n, device=device) * 2 for n in shape[:-1]] + [
        torch.fft.rfftfreq(shape[-1], device=device) * 2
    ]
    grids = torch.meshgrid(*axes, indexing="ij")
    return torch.sqrt(sum(g**2 for g in grids))  # type: ignore[arg-type]  # sum() of tensors is a tensor; its stubs say int


def radial_log_power(volumes: torch.Tensor) -> torch.Tensor:
    """(N, D, H, W) -> (N, S): log of the power spectrum averaged over shells 1 .. min(D, H, W) // 2 - 1.

    Shell 0 (the mean) is left out, and so are the corners beyond the inscribed sphere; each volume
    is z-scored first, so the spectra compare shapes, not scales.
    """
    dims = (-3, -2, -1)
    power = torch.fft.rfftn(zscore_tensor(volumes.float()), dim=dims).abs().square()
    depth, height, width = volumes.shape[-3:]
    grids = (torch.fft.fftfreq(depth) * depth, torch.fft.fftfreq(height) * height, torch.fft.rfftfreq(width) * width)
    squares = [g.square() for g in torch.meshgrid(*grids, indexing="ij")]
    radius = torch.sqrt(squares[0] + squares[1] + squares[2])
    shells = min(volumes.shape[-3:]) // 2
    index = radius.round().long().flatten()
    inside = (index >= 1) & (index < shells)
    counts = torch.bincount(index[inside], minlength=shells)[1:].float()
    flat = power.flatten(start_dim=1)[:, inside]
    sums = torch.zeros(power.shape[0], shells, dtype=flat.dtype).index_add_(1, index[inside], flat)[:, 1:]
    return torch.log(sums / counts.clamp(min=1.0) + 1e-12)


def spectral_coverage(
    source: torch.Tensor, target: torch.Tensor, band: tuple[float, float] = (0.05, 0.95), max_volumes: int = 256
) -> float:
    """Fraction of (target volume, frequency shell) pairs whose log power lies in the source's ``band`` of quantiles.

    1: every shell of every target spectrum is within the central range of the source's; near 0:
    the target's spectra lie outside what the source shows (other noise colour, MTF, background).
    At most ``max_volumes`` of each set, evenly spaced, so the figure is deterministic and cheap.
    """

    def subset(volumes: torch.Tensor) -> torch.Tensor:
        step = max(1, -(-volumes.shape[0] // max_volumes))
        return volumes[::step]

    def spectra(volumes: torch.Tensor) -> torch.Tensor:  # in chunks: bounds the FFTs' memory
        return torch.cat([radial_log_power(chunk) for chunk in subset(volumes).split(32)])

    source_power = spectra(source)
    target_power = spectra(target)
    low = torch.quantile(source_power, band[0], dim=0)
    high = torch.quantile(source_power, band[1], dim=0)
    return float(((target_power >= low) & (target_power <= high)).float().mean())
