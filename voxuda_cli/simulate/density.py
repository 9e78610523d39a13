"""Beads -> mass density on the sample grid, and the molecular-volume mask.

Density unit: Da per voxel (mass of the molecule inside each voxel). At ~10 A voxels a voxel full
of protein holds 0.81 Da/A^3 x 1000 A^3 = 810 Da, so the paper's greyscale-mask threshold of 300
(METHOD.md: "mass-weighted units of a density map gridded at ~10 A") reads as about a third of a
full voxel here too.

Each bead is a 3D Gaussian whose variance is the blur ``BLUR_VOXELS`` (in voxels, an anti-alias
filter: its transfer at Nyquist is exp(-2 pi^2 0.5^2 0.25) = 0.29) plus the bead's own spread,
integrated over each voxel (differences of erf), so the mass inside the box is exact and does not
ripple with the sub-voxel position. The Gaussian is separable, so a whole volume is one matrix
product per chunk of beads: (D x beads) @ (beads x H*W).

Grid convention: volumes are (z, y, x); bead coordinates are (x, y, z) angstrom about the box
centre, which is voxel (box - 1) / 2 on every axis (the geometric centre, so a molecule of radius
up to box * voxel / 2 fits under any rotation).
"""

from __future__ import annotations

import numpy as np

PROTEIN_DENSITY_DA_PER_A3 = 0.81  # 1.35 g/cm^3
BLUR_VOXELS = 0.5  # Gaussian sigma of the anti-alias blur, in voxels
_BEAD_CHUNK = 2048  # beads per matrix product: bounds the (beads x H*W) temporary to ~8 MB at 32^3


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

    coords = torch.from_numpy(voxel_coordinates(positions_xyz, box, voxel_size))  # (N, 3) z y x, float64
    sigma = np.sqrt(BLUR_VOXELS**2 + (np.asarray(spreads, dtype=np.float64) / voxel_size) ** 2)
    scale = torch.from_numpy(1.0 / (sigma * np.sqrt(2.0)))[:, None, None]
    edges = torch.arange(box + 1, dtype=torch.float64) - 0.5
    cdf = torch.special.erf((edges[None, :, None] - coords[:, None, :]) * scale)  # (N, box+1, 3)
    weights = (0.5 * (cdf[:, 1:] - cdf[:, :-1])).to(torch.float32)  # (N, box, 3): mass fraction per slab
    mass = torch.from_numpy(np.asarray(masses, dtype=np.float32))
    out = torch.zeros(box, box * box, dtype=torch.float32)
    for start in range(0, weights.shape[0], _BEAD_CHUNK):
        chunk = weights[start : start + _BEAD_CHUNK]
        along_z = chunk[:, :, 0] * mass[start : start + _BEAD_CHUNK, None]  # (n, D)
        plane = (chunk[:, :, None, 1] * chunk[:, None, :, 2]).reshape(chunk.shape[0], box * box)  # (n, H*W)
        out += along_z.T @ plane
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
