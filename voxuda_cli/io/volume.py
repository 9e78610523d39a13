"""A volume travels with its voxel size and origin, so no command loses the pixel size."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from voxuda_cli.errors import VoxudaInputError


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
            self.voxel_size = (float(self.voxel_size),) * 3  # type: ignore[arg-type]  # callers may pass one float; made the declared tuple here
        self.voxel_size = tuple(float(v) for v in self.voxel_size)  # type: ignore[assignment]  # callers may pass any sequence; made the declared tuple here
        self.origin = tuple(float(v) for v in self.origin)  # type: ignore[assignment]  # callers may pass any sequence; made the declared tuple here

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


def checked_voxel_size(header: float, override: float | None, source: str) -> float:
    """The voxel size to use for an input: ``override`` if given, else its header, refused when lost (0 or 1.0 A).

    Tools that lose the pixel size write 0 or 1.0 A (IsoNet #14, membrain-seg #82); trusting
    that would resample by a factor of ten without a word.
    """
    if override is not None:
        if not override > 0:
            raise VoxudaInputError(f"--input-voxel-size {override}: must be a positive number of angstrom")
        return float(override)
    if header <= 0 or abs(header - 1.0) < 1e-6:
        raise VoxudaInputError(
            f"{source}: header voxel size is {header:g} A, what tools write when they lose it; "
            "pass the real one with --input-voxel-size A"
        )
    return float(header)


FINITE_CHECK_ROWS = 16  # z-slices at a time, so checking a huge tomogram needs little memory


def check_finite(data: np.ndarray, source: str, chunk: int = FINITE_CHECK_ROWS) -> None:
    """Refuse NaN/Inf, checked ``chunk`` entries of axis 0 at a time so a memory map is not loaded at once."""
    if not np.issubdtype(data.dtype, np.floating):
        return
    for start in range(0, data.shape[0], chunk):
        if not np.isfinite(data[start : start + chunk]).all():
            raise VoxudaInputError(f"{source} contains NaN or Inf values; clean or re-export the data")
