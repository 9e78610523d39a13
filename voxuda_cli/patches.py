"""Cut volumes into patches (patchify) and put patches back together (stitch); resampling is in resample.py."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxuda_cli import fields
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.fields import setting
from voxuda_cli.io.volume import Volume
from voxuda_cli.normalise import zscore
from voxuda_cli.progress import Progress
from voxuda_cli.resample import resize_volume


@dataclass
class PatchifySettings:
    """Settings of ``voxuda patchify`` (the one source of its defaults)."""

    patch: int = setting(32, "Patch edge (voxels).")
    # None: equal to patch (non-overlapping, as the paper)
    stride: int | None = setting(
        None, "Step between patches (voxels); smaller than --patch overlaps.", default_help="[default: patch]"
    )
    # Paper: 192 for Mycoplasma, 64 for Erwinia.
    resize: int | None = setting(
        None,
        "Resample each volume to N^3 first (Fourier resampling; voxel size scales).",
        default_help="[default: off]",
    )
    zscore: bool = setting(False, "Z-score each volume before cutting.")
    invert: bool = fields.invert()
    input_voxel_size: float | None = fields.input_voxel_size()

    def __post_init__(self) -> None:
        if self.patch < 4:
            raise VoxudaInputError(f"--patch {self.patch}: must be at least 4 voxels")
        if self.stride is None:
            self.stride = self.patch
        if not 1 <= self.stride <= self.patch:
            raise VoxudaInputError(f"--stride {self.stride}: must be between 1 and --patch ({self.patch})")
        if self.resize is not None and self.resize < self.patch:
            raise VoxudaInputError(f"--resize {self.resize}: must be at least --patch ({self.patch})")


def patch_starts(length: int, patch: int, stride: int) -> list[int]:
    """Start offsets along one axis covering ``[0, length)``.

    Regular steps of ``stride``; where they do not end flush with the border, one last patch is
    placed flush with it (overlapping its neighbour), so no voxel is left out and none is padded.
    An axis shorter than the patch gets one patch at 0 that reaches past the border (padded).
    """
    if length <= patch:
        return [0]
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] + patch < length:
        starts.append(length - patch)
    return starts


def patch_grid(shape: Sequence[int], patch: int, stride: int) -> list[tuple[int, int, int]]:
    """All patch origins (z, y, x) of a volume, in C order."""
    axes = [patch_starts(int(n), patch, stride) for n in shape]
    return [(z, y, x) for z in axes[0] for y in axes[1] for x in axes[2]]


def extract_patch(data: np.ndarray, origin: Sequence[int], patch: int) -> np.ndarray:
    """One cube; parts beyond the border are filled by edge replication."""
    z, y, x = origin
    cube = np.asarray(data[z : z + patch, y : y + patch, x : x + patch], dtype=np.float32)
    if cube.shape != (patch,) * 3:
        pad = [(0, patch - s) for s in cube.shape]
        cube = np.pad(cube, pad, mode="edge")
    return cube


def sample_boxes(data: np.ndarray, box: Sequence[int], per_axis: int, interior: bool = True) -> np.ndarray:
    """``per_axis``^3 windows of ``box`` (cut to the volume) spread evenly over a (memory-mapped) volume:
    (N, *box) float32, a few MB read from a tomogram of any size.

    ``interior``: each centred in its share of the grid, so none sits on the volume's edge (int8
    calibration); else from edge to edge, the first and last flush with the borders (polarity checks).
    """
    shape = np.array(data.shape)
    size = np.minimum(np.array(box), shape)
    if interior:
        starts = [((np.arange(per_axis) + 0.5) / per_axis * (s - b)).round().astype(int) for s, b in zip(shape, size)]
    else:
        starts = [np.linspace(0, s - b, per_axis).round().astype(int) for s, b in zip(shape, size)]
    boxes = [
        np.asarray(data[z : z + size[0], y : y + size[1], x : x + size[2]], dtype=np.float32)
        for z in starts[0]
        for y in starts[1]
        for x in starts[2]
    ]
    return np.stack(boxes)


@dataclass
class ParentInfo:
    """What stitching needs to rebuild a parent volume with its header."""

    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    origin: tuple[float, float, float]
    original_shape: tuple[int, int, int]
    original_voxel_size: tuple[float, float, float]

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> ParentInfo:
        return cls(**{k: tuple(v) for k, v in values.items()})


@dataclass
class Patch:
    image: np.ndarray
    name: str
    parent: str
    origin: tuple[int, int, int]


def patchify_volume(name: str, volume: Volume, settings: PatchifySettings) -> tuple[list[Patch], ParentInfo]:
    """Cut one volume into patches (after optional resize, inversion and z-scoring)."""
    original = volume
    if settings.resize is not None:
        volume = resize_volume(volume, (settings.resize,) * 3)
    data = np.asarray(volume.data, dtype=np.float32)
    if settings.invert:
        data = -data
    if settings.zscore:
        data = zscore(data)
    assert settings.stride is not None
    patches = [
        Patch(
            image=extract_patch(data, origin, settings.patch),
            name=f"{name}_z{origin[0]:04d}_y{origin[1]:04d}_x{origin[2]:04d}",
            parent=name,
            origin=origin,
        )
        for origin in patch_grid(data.shape, settings.patch, settings.stride)
    ]
    info = ParentInfo(
        shape=tuple(data.shape),
        voxel_size=volume.voxel_size,
        origin=volume.origin,
        original_shape=original.shape,  # type: ignore[arg-type]  # a 3D shape: mypy cannot count a generator's tuple
        original_voxel_size=original.voxel_size,
    )
    return patches, info


def write_patches(
    output: Path,
    volumes: Iterable[tuple[str, Volume]],
    settings: PatchifySettings,
    provenance_json: str,
    on_volume: Progress | None = None,
) -> dict[str, Any]:
    """Patchify every volume into one dataset file (written atomically); returns a summary."""
    from voxuda_cli.io.dataset import DatasetWriter

    iterator = iter(volumes)
    first = next(iterator, None)
    if first is None:
        raise VoxudaInputError("no input volumes")
    first_patches, first_info = patchify_volume(first[0], first[1], settings)
    voxel_size = float(np.mean(first_info.voxel_size))
    parents: dict[str, dict[str, Any]] = {}
    count = 0
    attrs = {"patch": settings.patch, "stride": int(settings.stride or settings.patch), "provenance": provenance_json}
    with DatasetWriter(output, (settings.patch,) * 3, voxel_size, "patches", attrs) as writer:
        pending: Iterator[tuple[str, list[Patch], ParentInfo]] = itertools.chain(
            [(first[0], first_patches, first_info)],
            (((name, *patchify_volume(name, volume, settings)) for name, volume in iterator)),
        )
        for name, patches, info in pending:
            this_size = float(np.mean(info.voxel_size))
            if abs(this_size - voxel_size) > 1e-3 * voxel_size:
                raise VoxudaInputError(
                    f"{name}: voxel size {this_size:.3f} A (after any resize) differs from the first volume's "
                    f"{voxel_size:.3f} A; patchify volumes of one voxel size together"
                )
            for patch in patches:
                writer.append(patch.image, patch.name, coords=patch.origin, parent=patch.parent)
            count += len(patches)
            parents[name] = info.to_json()
            if on_volume is not None:
                on_volume(1, f"{name}: {len(patches)} patches")
        writer.set_attr("parents_info", json.dumps(parents))
    return {
        "output": str(output),
        "patches": count,
        "parents": len(parents),
        "patch": settings.patch,
        "stride": settings.stride,
        "voxel_size": voxel_size,
    }


def stitch(patches: np.ndarray, coords: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Patches back into a volume of ``shape``: the mean where they overlap (patchify's patches agree there).

    Patches may reach past the border (those parts are dropped). Voxels no patch covers are 0.
    """
    patch = patches.shape[1]
    total = np.zeros(tuple(shape), dtype=np.float64)
    norm = np.zeros(tuple(shape), dtype=np.float64)
    for cube, origin in zip(patches, coords):
        z, y, x = (int(c) for c in origin)
        region = (slice(z, z + patch), slice(y, y + patch), slice(x, x + patch))
        extent = tuple(min(patch, int(n) - int(o)) for n, o in zip(shape, (z, y, x)))
        inside = tuple(slice(0, e) for e in extent)
        total[region] += cube[inside]
        norm[region] += 1.0
    return (total / np.maximum(norm, 1.0)).astype(np.float32)


def group_by_parent(parents: Sequence[str]) -> Iterator[tuple[str, np.ndarray]]:
    """Indices of each parent's patches, parents in first-seen order."""
    order: dict[str, list[int]] = {}
    for index, parent in enumerate(parents):
        order.setdefault(parent, []).append(index)
    for parent, indices in order.items():
        yield parent, np.asarray(indices)


def parents_info(attrs: dict[str, Any]) -> dict[str, ParentInfo]:
    """Parent geometry recorded by patchify (empty if the file has none)."""
    raw = attrs.get("parents_info")
    if not raw:
        return {}
    return {name: ParentInfo.from_json(values) for name, values in json.loads(raw).items()}
