"""Put the segmentations of extracted subtomograms back into their tomograms.

For every parent tomogram of an ``extract`` dataset, one label MRC with the tomogram's shape,
voxel size and origin (``<tomogram>.mrc``, int8) and, on request, the foreground probability
(``<tomogram>_probabilities.mrc``, float32). Each box's probability is resampled from the box
voxel size back onto the tomogram's grid by trilinear interpolation around its centre (box index
``box // 2`` sits on the ``/coords`` voxel, as ``extract`` cut it) and thresholded there; where
boxes overlap the masks are united and the probabilities take their maximum. Voxels that no box
covers are 0. The outputs are memory maps filled box by box, so a large tomogram is not held in
memory, and are renamed into place only when complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.inference.grids import MrcGrid
from voxuda_cli.io.dataset import Dataset
from voxuda_cli.io.outputs import ensure_folder
from voxuda_cli.io.volume import Volume
from voxuda_cli.patches import ParentInfo, group_by_parent, parents_info


@dataclass
class BoxPlacement:
    """Where one box lands in its tomogram: the region (z, y, x slices) and the box values resampled onto it."""

    region: tuple[slice, slice, slice]
    values: np.ndarray


def check_pasteable(dataset: Dataset) -> dict[str, ParentInfo]:
    """The parents' geometry of an ``extract`` dataset, or a one-line error saying what to pass instead."""
    if not dataset.is_extracted:
        raise VoxudaInputError(
            f"{dataset.source}: --paste needs subtomograms made by voxuda extract (box centres in /coords); "
            "for patchify output pass a folder to -o instead"
        )
    infos = parents_info(dataset.attrs)
    missing = sorted(set(dataset.parents or []) - set(infos))
    if missing:
        raise VoxudaInputError(f"{dataset.source}: parents_info lacks {missing[:3]}; re-run voxuda extract")
    return infos


def place_box(values: np.ndarray, centre: np.ndarray, box_voxel: float, info: ParentInfo) -> BoxPlacement | None:
    """Resample one box's values onto the tomogram voxels it covers (None when it covers none)."""
    tomo_voxel = float(np.mean(info.voxel_size))
    factor = tomo_voxel / box_voxel  # box voxels per tomogram voxel
    box = values.shape[0]
    half = (box // 2) / factor
    lo = np.maximum(np.floor(centre - half).astype(int), 0)
    hi = np.minimum(np.ceil(centre + (box - 1 - box // 2) / factor).astype(int) + 1, np.array(info.shape))
    if np.any(hi <= lo):
        return None
    # tomogram voxel v <- box coordinate (v - centre) * factor + box // 2
    offset = (lo - centre) * factor + box // 2
    out = ndimage.affine_transform(
        values.astype(np.float32), [factor] * 3, offset=offset, output_shape=tuple(hi - lo), order=1, cval=0.0
    )
    region = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    return BoxPlacement(region, out)  # type: ignore[arg-type]  # 3 slices, one per axis


def paste_predictions(
    dataset: Dataset,
    probabilities: np.ndarray,
    folder: Path,
    threshold: float,
    with_probabilities: bool = False,
    label: str | None = None,
) -> list[str]:
    """Write one label MRC per parent tomogram into ``folder``; returns the files written."""
    infos = check_pasteable(dataset)
    assert dataset.parents is not None and dataset.coords is not None
    ensure_folder(folder, "--paste")
    written: list[str] = []
    for parent, indices in group_by_parent(dataset.parents):
        info = infos[parent]
        like = Volume(np.empty((0, 0, 0), np.float32), info.voxel_size, info.origin)
        probability_path = folder / f"{parent}_probabilities.mrc" if with_probabilities else None
        shape = tuple(int(n) for n in info.shape)
        # union of the boxes' masks, maximum of their probabilities (grids.py)
        with MrcGrid(
            folder / f"{parent}.mrc", shape, like, threshold, probability_path, label=label, combine="max"
        ) as grid:
            for index in indices:
                placed = place_box(probabilities[index], dataset.coords[index], dataset.voxel_size, info)
                if placed is not None:
                    grid.write(placed.region, placed.values)
        written += grid.paths
    return written
