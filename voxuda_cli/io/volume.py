"""A volume travels with its voxel size and origin, so no command loses the pixel size."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class Volume:
    """A 3D array with its geometry.

    ``data`` is (D, H, W) = (z, y, x). ``voxel_size`` and ``origin`` are in angstrom and in the
    same axis order as ``data``. ``labels`` are the MRC header's text labels, kept on output.
    """

    data: np.ndarray
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if np.ndim(self.voxel_size) == 0:
            self.voxel_size = (float(self.voxel_size),) * 3  # type: ignore[arg-type]
        self.voxel_size = tuple(float(v) for v in self.voxel_size)  # type: ignore[assignment]
        self.origin = tuple(float(v) for v in self.origin)  # type: ignore[assignment]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def isotropic_voxel_size(self) -> float:
        """One voxel size in angstrom (the mean where the header is slightly anisotropic)."""
        return float(np.mean(self.voxel_size))

    def with_data(self, data: np.ndarray) -> Volume:
        """Same geometry and labels, new array (same shape expected)."""
        return replace(self, data=data, labels=list(self.labels))
