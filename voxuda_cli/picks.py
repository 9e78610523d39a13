"""Particles from a segmentation: connected components, instance labels and coordinates (`voxuda picks`).

A mask (or a probability map above --threshold) becomes 3D connected components (26-connected);
with --split, touching particles are separated by a watershed on the distance transform (markers
at its local maxima at least --min-distance voxels apart); with --meanshift BANDWIDTH the
foreground voxels are grouped by mean-shift clustering instead (scikit-learn's, as DeepFinder
picks), so that the fragments a network leaves of one particle (lobes of an irregular complex
segmented apart) come back together: a bandwidth of about a particle's diameter. Components outside --min-size /
--max-size (voxels, or cubic angstrom with --size-unit angstrom3) are dropped, the rest numbered
1..N in z, y, x order of their centres. Each particle's centre is its centre of mass (voxels and
RELION 5's centred angstrom, with the --centre convention `voxuda extract` reads them back
with), its volume, and its mean probability where a probability map is there (predict
--probabilities writes X_probabilities.mrc beside X.mrc).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from voxuda_cli import fields
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.fields import setting
from voxuda_cli.io.coordinates import CENTRE_CHOICES, centred_angstrom
from voxuda_cli.io.volume import Volume

SIZE_UNITS = ("voxels", "angstrom3")
STAR_FLAVOURS = ("relion5", "relion4")


@dataclass
class PicksSettings:
    """Settings of ``voxuda picks`` (the one source of their defaults)."""

    threshold: float = setting(0.5, "Probability maps: foreground above this (int masks: any non-zero voxel).")
    min_size: float = setting(0.0, "Smallest particle kept (--size-unit).")
    max_size: float | None = setting(None, "Largest particle kept (--size-unit).", default_help="[default: any]")
    size_unit: str = setting("voxels", "Unit of --min-size and --max-size: {choices}.", choices=lambda: SIZE_UNITS)
    split: bool = setting(False, "Split touching particles (distance-transform watershed).")
    min_distance: int = setting(4, "--split: the least distance between two particle centres, voxels.")
    meanshift: float | None = setting(
        None,
        "Group foreground voxels by mean-shift clustering with this bandwidth (voxels; about a particle's "
        "diameter) instead of connected components: fragments of one particle merge (DeepFinder's picking).",
        default_help="[default: off]",
    )
    star: str = setting("relion5", "STAR output: {choices}.", choices=lambda: STAR_FLAVOURS)
    centre: str = fields.centre(choices=lambda: CENTRE_CHOICES)
    input_voxel_size: float | None = fields.input_voxel_size()
    shard: str | None = fields.shard()

    def validate(self) -> None:
        for name, value, choices in (("size-unit", self.size_unit, SIZE_UNITS), ("star", self.star, STAR_FLAVOURS),
                                     ("centre", self.centre, CENTRE_CHOICES)):  # fmt: skip
            if value not in choices:
                raise VoxudaInputError(f"--{name} {value}: use one of {', '.join(choices)}")
        if self.min_size < 0 or (self.max_size is not None and self.max_size < self.min_size):
            raise VoxudaInputError(f"--min-size {self.min_size} --max-size {self.max_size}: need 0 <= min <= max")
        if int(self.min_distance) < 1:
            raise VoxudaInputError(f"--min-distance {self.min_distance}: must be at least 1 voxel")
        if self.meanshift is not None and not self.meanshift > 0:
            raise VoxudaInputError(f"--meanshift {self.meanshift}: the bandwidth must be a positive number of voxels")
        if self.meanshift is not None and self.split:
            raise VoxudaInputError("--split and --meanshift: choose one way to separate particles")


@dataclass
class Particles:
    """One tomogram's particles: the instance map (0 background, 1..N) and one row per particle."""

    labels: np.ndarray
    rows: list[dict[str, Any]]


def find_particles(
    segmentation: Volume, name: str, settings: PicksSettings, probabilities: np.ndarray | None = None
) -> Particles:
    """The particles of one mask or probability map (its voxel size must be known for angstrom units)."""
    settings.validate()
    data = np.asarray(segmentation.data)
    foreground = data > settings.threshold if np.issubdtype(data.dtype, np.floating) else data > 0
    if probabilities is None and np.issubdtype(data.dtype, np.floating):
        probabilities = data
    labels = _group(foreground, settings)
    labels, sizes, centres = _keep_sizes(labels, _voxel_limits(settings, segmentation.isotropic_voxel_size))
    rows = _measure(labels, sizes, centres, segmentation, name, settings.centre, probabilities)
    return Particles(labels=labels.astype(np.uint16), rows=rows)


def _group(foreground: np.ndarray, settings: PicksSettings) -> np.ndarray:
    """Foreground voxels -> particle labels (0 background), by the way the settings choose."""
    if settings.meanshift is not None:
        return _mean_shift(foreground, float(settings.meanshift))
    return _split(foreground, int(settings.min_distance)) if settings.split else _components(foreground)


def _mean_shift(foreground: np.ndarray, bandwidth: float) -> np.ndarray:
    """Each foreground voxel labelled by its mean-shift cluster (flat kernel, seeds on a grid of
    ``bandwidth``: scikit-learn's bin seeding, deterministic)."""
    from sklearn.cluster import MeanShift

    points = np.argwhere(foreground)
    labels = np.zeros(foreground.shape, dtype=np.int64)
    if len(points) == 0:
        return labels
    clusters = MeanShift(bandwidth=bandwidth, bin_seeding=True).fit_predict(points.astype(np.float64))
    labels[tuple(points.T)] = clusters + 1
    return labels


def _components(foreground: np.ndarray) -> np.ndarray:
    labels, _ = ndimage.label(foreground, structure=np.ones((3, 3, 3)))
    return labels


def _split(foreground: np.ndarray, min_distance: int) -> np.ndarray:
    """Touching particles apart: markers at the distance map's local maxima (at least
    ``min_distance`` apart), each foreground voxel given to its nearest marker of its own component.

    For round particles this is the distance-transform watershed's partition (the boundary between
    two touching balls is where they are equally near); scipy's watershed_ift, tried first, floods
    a 16-bit landscape in queue order and gave one of two touching balls two voxels.
    """
    distance = ndimage.distance_transform_edt(foreground)
    peaks = (distance == ndimage.maximum_filter(distance, size=2 * min_distance + 1)) & (distance >= 1)
    markers, count = ndimage.label(peaks, structure=np.ones((3, 3, 3)))
    components = _components(foreground)
    if count == 0:
        return components
    _, nearest = ndimage.distance_transform_edt(markers == 0, return_indices=True)
    labels = markers[tuple(nearest)]
    # a voxel whose nearest marker lies in another component keeps its component (offset past the markers)
    other = components[tuple(nearest)] != components
    labels[other] = components[other] + count
    labels[~foreground] = 0
    return labels


def _voxel_limits(settings: PicksSettings, voxel_size: float) -> tuple[float, float]:
    per_voxel = 1.0
    if settings.size_unit == "angstrom3":
        if not voxel_size > 0:
            raise VoxudaInputError("--size-unit angstrom3: the segmentation's voxel size is unknown (0)")
        per_voxel = float(voxel_size) ** 3
    upper = np.inf if settings.max_size is None else float(settings.max_size) / per_voxel
    return float(settings.min_size) / per_voxel, upper


def _keep_sizes(labels: np.ndarray, limits: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Components within ``limits`` (voxels), numbered 1..N in the z, y, x order of their centres.

    Returns the new labels with each kept particle's size and centre (in that order), measured in
    one pass over the volume each: a tomogram's labels are read twice, not four times.
    """
    count = int(labels.max())
    if count == 0:
        return labels, np.zeros(0), np.zeros((0, 3))
    index = np.arange(1, count + 1)
    inside = labels > 0
    sizes = np.asarray(ndimage.sum_labels(inside, labels, index), dtype=np.float64)
    centres = np.array(ndimage.center_of_mass(inside, labels, index)).reshape(-1, 3)
    kept = (sizes >= limits[0]) & (sizes <= limits[1]) & (sizes > 0)
    sizes, centres, index = sizes[kept], centres[kept], index[kept]
    order = np.lexsort(centres.T[::-1])
    lookup = np.zeros(count + 1, dtype=np.int64)
    lookup[index[order]] = np.arange(1, len(order) + 1)
    return lookup[labels], sizes[order], centres[order]


def _measure(
    labels: np.ndarray,
    sizes: np.ndarray,
    centres: np.ndarray,
    volume: Volume,
    name: str,
    centre: str,
    probabilities: np.ndarray | None,
) -> list[dict[str, Any]]:
    """One row per particle (labels 1..N, with their sizes and centres from _keep_sizes)."""
    count = len(sizes)
    if count == 0:
        return []
    index = np.arange(1, count + 1)
    means = ndimage.mean(probabilities, labels, index) if probabilities is not None else [None] * count
    voxel = volume.isotropic_voxel_size
    angstrom = centred_angstrom(centres, labels.shape, voxel, centre)
    return [
        {
            "tomogram": name,
            "x": float(c[2]),
            "y": float(c[1]),
            "z": float(c[0]),
            "x_angst": float(a[0]),
            "y_angst": float(a[1]),
            "z_angst": float(a[2]),
            "voxel_size": float(voxel),
            "volume_voxels": int(size),
            "volume_angst3": float(size) * voxel**3,
            **({"mean_probability": float(mean)} if mean is not None else {}),
        }  # fmt: skip
        for c, a, size, mean in zip(centres, angstrom, sizes, means)
    ]


def plan_picks(inputs: list[Path], output: Path, settings: PicksSettings) -> list[Path]:
    """The segmentations to read (probability maps beside their masks left out), every header and
    the output kind checked before any work."""
    from voxuda_cli.io.coordinates import pick_format
    from voxuda_cli.io.sources import (
        check_voxel_sizes,
        expand_mrc_paths,
        in_shard,
        volume_name,
        without_probability_maps,
    )

    settings.validate()
    kind = pick_format(output)
    files = [f for f in without_probability_maps(expand_mrc_paths(inputs)) if in_shard(volume_name(f), settings.shard)]
    check_voxel_sizes(files, settings.input_voxel_size)
    if kind == "copick":
        from voxuda_cli.io.copick import check_output

        check_output(output, "object", [volume_name(f) for f in files])
    return files


def pick_files(inputs: list[Path], output: Path, settings: PicksSettings, instances: Path | None = None,
               on_progress: Any = None) -> dict[str, Any]:  # fmt: skip
    """Every segmentation (MRC / OME-Zarr files, folders of them: a predict output) -> one picks file."""
    return run_picks(plan_picks(inputs, output, settings), output, settings, instances, on_progress)


def _write_instances(folder: Path, name: str, source: Path, labels: Volume) -> None:
    """X_instances.mrc (uint16), or for an OME-Zarr input X_instances.zarr, an NGFF labels image."""
    from voxuda_cli.io.mrc import write_mrc
    from voxuda_cli.io.zarr import is_zarr_path, write_ome_zarr

    if is_zarr_path(source):
        write_ome_zarr(folder / f"{name}_instances.zarr", labels.data, labels.voxel_size, labels.origin, "instances")
    else:
        write_mrc(folder / f"{name}_instances.mrc", labels, "voxuda picks")


def run_picks(files: list[Path], output: Path, settings: PicksSettings, instances: Path | None = None,
              on_progress: Any = None) -> dict[str, Any]:  # fmt: skip
    """The planned segmentations (plan_picks) -> one picks file.

    A probability map beside its mask (X_probabilities.mrc) gives the particles' mean probability.
    ``instances`` writes X_instances.mrc (uint16) per input (X_instances.zarr, labels, for OME-Zarr).
    """
    from voxuda_cli.io.coordinates import write_picks
    from voxuda_cli.io.mrc import read_mrc
    from voxuda_cli.io.sources import probabilities_path, volume_name, with_checked_voxel_size

    rows: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for path in files:
        name = volume_name(path)
        volume = with_checked_voxel_size(read_mrc(path), settings.input_voxel_size, str(path))
        beside = probabilities_path(path)
        probabilities = read_mrc(beside).data if beside.exists() and beside != path else None
        found = find_particles(volume, name, settings, probabilities)
        rows.extend(found.rows)
        if instances is not None:
            _write_instances(instances, name, path, volume.with_data(found.labels))
        records.append({"name": name, "particles": len(found.rows), "shape": list(volume.shape)})
        if on_progress is not None:
            on_progress(1, name)
    write_picks(output, rows, settings.star, [str(record["name"]) for record in records])
    return {"output": str(output), "particles": len(rows), "tomograms": records,
            "instances": str(instances) if instances is not None else None}  # fmt: skip
