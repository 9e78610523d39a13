"""Smoothed masks of low-SNR subtomograms: blur the probabilities, keep the expected volume.

Why (docs/METHOD.md, "Smoothed masks"): in a single in-cell particle the noise is far above the
signal at the scale of a few voxels, so a voxel-wise threshold draws its boundary through the
noise, while masks of picked particles (from a sub-tomogram average) are smooth at the average's
resolution. Averaging the foreground probability over a Gaussian of ``sigma`` A before the
decision removes that noise; a fixed threshold on the blurred map would shrink the mask wherever
the network is uncertain (probabilities near 0.5 blur below it), so the mask is instead the
``round(sum of probabilities)`` voxels of highest blurred probability: the network's expected
foreground volume, placed where the blurred evidence is strongest. Measured on the real
development set (benchmarks/results.md): +8-10 Dice at 24-36 A; on the simulated targets with
labels of every molecule at full detail it costs Dice, so it is an option, not a default.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from voxuda_cli.errors import VoxudaInputError


def check_smooth(sigma_angstrom: float) -> None:
    if not np.isfinite(sigma_angstrom) or float(sigma_angstrom) < 0:
        raise VoxudaInputError(f"--smooth {sigma_angstrom}: must be 0 (off) or a Gaussian sigma in A")


def smoothed_mask(probabilities: np.ndarray, sigma_angstrom: float, voxel_size: float) -> np.ndarray:
    """(D, H, W) foreground probabilities -> uint8 mask of their expected volume after a Gaussian blur.

    Ties at the cut are broken by a stable sort (deterministic); an all-zero map gives an empty mask.
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    count = int(round(float(probabilities.sum(dtype=np.float64))))
    mask = np.zeros(probabilities.shape, dtype=np.uint8)
    if count == 0:
        return mask
    blurred = ndimage.gaussian_filter(probabilities, float(sigma_angstrom) / float(voxel_size), mode="nearest")
    order = np.argsort(-blurred.ravel(), kind="stable")
    mask.ravel()[order[:count]] = 1
    return mask
