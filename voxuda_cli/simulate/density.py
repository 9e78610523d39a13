"""Beads -> mass density on the sample grid, and the molecular-volume mask.

Density unit: Da per voxel (mass of the molecule inside each voxel). At ~10 A voxels a voxel full
of protein holds 0.81 Da/A^3 x 1000 A^3 = 810 Da, so the paper's greyscale-mask threshold of 300
(METHOD.md: "mass-weighted units of a density map gridded at ~10 A") reads as about a third of a
full voxel here too.

Each bead is a 3D Gaussian whose variance is the blur ``BLUR_VOXELS`` (in voxels, an anti-alias
filter: its transfer at Nyquist is exp(-2 pi^2 0.5^2 0.25) = 0.29) plus the bead's own spread,
integrated over each voxel (differences of erf), so the mass inside the box is exact and does not
ripple with the sub-voxel position. The Gaussian is separable: each bead adds the outer product of
three short 1D weight windows (+-3 sigma, 5 voxels at 10 A) to the grid, one scatter-add for all.

Grid convention: volumes are (z, y, x); bead coordinates are (x, y, z) angstrom about the box
centre, which is voxel (box - 1) / 2 on every axis (the geometric centre, so a molecule of radius
up to box * voxel / 2 fits under any rotation).
"""

from __future__ import annotations

import numpy as np

PROTEIN_DENSITY_DA_PER_A3 = 0.81  # 1.35 g/cm^3
BLUR_VOXELS = 0.5  # Gaussian sigma of the anti-alias blur, in voxels
_WINDOW_SIGMAS = 3.0  # each bead is splatted onto the voxels within 3 sigma of it


def molecular_volume(mass_da: float) -> float:
    """Expected volume of a macromolecule in A^3 (mass / 0.81 Da per A^3)."""
    return float(mass_da) / PROTEIN_DENSITY_DA_PER_A3


def voxel_coordinates(positions_xyz: np.ndarray, box: int, voxel_size: float) -> np.ndarray:
    """Angstrom (x, y, z) about the box centre -> fractional voxel indices (z, y, x)."""
    centre = (box - 1) / 2.0
    return np.asarray(positions_xyz, dtype=np.float64)[:, ::-1] / voxel_size + centre


def render_density(
    positions_xyz: np.ndarray,
    masses: np.ndarray,
    spreads: np.ndarray,
    box: int,
    voxel_size: float,
) -> np.ndarray:
    """Mass per voxel (Da) of Gaussian beads on a ``box``^3 grid; float32 (z, y, x)."""
    import torch

    coords_np = voxel_coordinates(positions_xyz, box, voxel_size)  # (N, 3) z y x, float64
    sigma_np = np.sqrt(BLUR_VOXELS**2 + (np.asarray(spreads, dtype=np.float64) / voxel_size) ** 2)
    half = _WINDOW_SIGMAS * float(sigma_np.max()) if len(sigma_np) else 0.0
    # beads whose window misses the box add nothing: drop them (a neighbour is mostly outside)
    near = np.all((coords_np > -half - 1.0) & (coords_np < box + half), axis=1)
    coords, sigma = torch.from_numpy(coords_np[near]), torch.from_numpy(sigma_np[near])
    masses = np.asarray(masses)[near]
    width = int(np.ceil(2 * half)) + 1
    index = torch.floor(coords - half).long()[:, :, None] + torch.arange(width)  # (N, 3, width)
    scale = (1.0 / (sigma * np.sqrt(2.0)))[:, None, None]
    lower = (index - 0.5 - coords[:, :, None]) * scale
    weights = 0.5 * (torch.special.erf(lower + scale) - torch.special.erf(lower))  # mass fraction per voxel slab
    weights = weights / weights.sum(dim=2, keepdim=True)  # the clipped tails (< 0.3 %) stay with the bead
    weights = torch.where((index >= 0) & (index < box), weights, 0.0).to(torch.float32)  # outside the box: lost
    index = index.clamp(0, box - 1)
    along_z = weights[:, 0] * torch.from_numpy(np.asarray(masses, dtype=np.float32))[:, None]
    values = along_z[:, :, None, None] * weights[:, 1, None, :, None] * weights[:, 2, None, None, :]
    flat = (index[:, 0, :, None, None] * box + index[:, 1, None, :, None]) * box + index[:, 2, None, None, :]
    out = torch.zeros(box**3, dtype=torch.float32)
    out.index_add_(0, flat.reshape(-1), values.reshape(-1))
    return out.reshape(box, box, box).numpy()


def iso_level(density: np.ndarray, volume_a3: float, voxel_size: float) -> float:
    """The density level whose super-level set holds ``volume_a3`` (midway between neighbouring values)."""
    values = np.sort(np.asarray(density, dtype=np.float64).ravel())[::-1]
    count = int(round(volume_a3 / voxel_size**3))
    count = min(max(count, 1), values.size - 1)
    return float(0.5 * (values[count - 1] + values[count]))


def molecule_mask(density: np.ndarray, level: float) -> np.ndarray:
    """Binary mask (uint8) of the voxels above the iso-surface ``level``."""
    return (np.asarray(density) > level).astype(np.uint8)
