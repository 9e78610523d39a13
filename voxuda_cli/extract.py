"""Cut subtomograms at picked coordinates out of tomograms, at the model's voxel size, into one dataset.

Each pick's centre is rounded to the nearest tomogram voxel; the box is cut around it, Fourier-
resampled from the tomogram's voxel size to ``voxel_size`` (``voxuda_cli.resample``: a larger
crop with an even number of voxels whose ratio matches the voxel sizes to 0.1 %, resampled, and
the box taken from its middle, so the crop's edge ringing stays outside), and written with the
box centre (index ``box // 2``) on the pick. Parts of a box beyond the tomogram are filled with
the mean of the part inside and the fraction outside is stored as ``/params/padded``
(``border="skip"`` leaves those picks out instead). Picks whose centre lies outside their
tomogram are skipped and counted. Tomograms are read through memory maps, picks in z order,
and the pages behind the current z are given back, so memory stays bounded by a slab.

Output (kind ``subtomograms``): ``/images``, names ``<tomogram>_<row:05d>`` (the pick's row in
its tomogram's picks), ``/coords`` the centre voxel (z, y, x) in the tomogram, ``/parents`` the
tomogram, ``/params/padded``; attributes ``coordinates = "centre"``, ``parents_info`` (each
tomogram's shape, voxel size and origin), ``box``, ``provenance``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxuda_cli import fields
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.fields import setting
from voxuda_cli.io.coordinates import CENTRE_CHOICES, assign_picks, read_picks
from voxuda_cli.io.copick import is_copick_locator
from voxuda_cli.io.dataset import DatasetWriter
from voxuda_cli.io.memory import release_rows
from voxuda_cli.io.mrc import read_mrc
from voxuda_cli.io.sources import expand_mrc_paths, in_shard, volume_name
from voxuda_cli.io.volume import Volume
from voxuda_cli.patches import ParentInfo
from voxuda_cli.polarity import resolve_polarity
from voxuda_cli.progress import Progress
from voxuda_cli.resample import checked_voxel_size, differs, fourier_resample, matched_sizes

log = logging.getLogger("voxuda")

BORDER_CHOICES = ("pad", "skip")
BATCH = 4  # boxes resampled per call (larger batches were slower per box and cost memory)


@dataclass
class ExtractSettings:
    """Settings of ``voxuda extract`` (the one source of its defaults)."""

    box: int = setting(32, "Edge of the extracted cube, in voxels at --voxel-size.")
    voxel_size: float | None = setting(
        None, "Resample boxes to this voxel size (A), e.g. the model's.", default_help="[default: the tomogram's own]"
    )
    input_voxel_size: float | None = fields.input_voxel_size()
    invert: bool = fields.invert()
    polarity: str = fields.polarity("the picked boxes (after --invert)")
    border: str = setting(
        "pad", "Boxes crossing the tomogram's border: {choices} (pad: with the mean, flagged).",
        choices=lambda: BORDER_CHOICES,
    )  # fmt: skip
    centre: str = fields.centre(choices=lambda: CENTRE_CHOICES)
    scale: float = setting(1.0, "Multiply voxel coordinates (RELION 4, CSV, IMOD) first, e.g. by 1/binning.")
    shard: str | None = fields.shard()
    skip_existing: bool = setting(
        False, "Do nothing when -o exists (written atomically: one that exists is complete; a killed run leaves none)."
    )

    def __post_init__(self) -> None:
        if self.box < 4 or self.box % 2:
            raise VoxudaInputError(f"--box {self.box}: must be an even number of at least 4 voxels")
        if self.voxel_size is not None and not self.voxel_size > 0:
            raise VoxudaInputError(f"--voxel-size {self.voxel_size}: must be a positive number of angstrom")
        fields.check_polarity(self.polarity)
        if self.border not in BORDER_CHOICES:
            raise VoxudaInputError(f"--border {self.border}: use one of {', '.join(BORDER_CHOICES)}")
        if self.centre not in CENTRE_CHOICES:
            raise VoxudaInputError(f"--centre {self.centre}: use one of {', '.join(CENTRE_CHOICES)}")
        if not self.scale > 0:
            raise VoxudaInputError(f"--scale {self.scale}: must be positive")


@dataclass
class TomogramPicks:
    """One tomogram's header, voxel size and its picks' centre voxels (z, y, x), in pick order."""

    path: Path
    header: Volume  # memory-mapped
    voxel_size: float
    centres: np.ndarray  # (M, 3) int64
    outside: int  # picks whose centre lies outside the tomogram (left out)

    @property
    def name(self) -> str:
        return volume_name(self.path)


@dataclass
class ExtractionPlan:
    """Everything checked before a byte is written."""

    tomograms: list[TomogramPicks]
    voxel_size: float  # of the boxes
    settings: ExtractSettings

    @property
    def total(self) -> int:
        """Boxes that will be written (with --border skip, not those crossing the border)."""
        return sum(len(kept_rows(t, self.settings.box, self.voxel_size, self.settings.border)) for t in self.tomograms)


def already_extracted(output: Path, settings: ExtractSettings) -> bool:
    """--skip-existing and ``output`` exists: complete, as every dataset is written atomically."""
    return bool(settings.skip_existing) and Path(output).exists()


def plan_extraction(tomograms: list[Path], coords: list[Path], settings: ExtractSettings) -> ExtractionPlan:
    """Read every header and coordinate file, match picks to tomograms; errors name the file."""
    if not coords:
        raise VoxudaInputError("no coordinate file given; pass --coords FILE (.star, .csv/.tsv or .mod)")
    every = expand_mrc_paths(tomograms)
    names = [volume_name(p) for p in every]
    # a copick project's picks name every run that has them; only the runs given are extracted
    tables = [read_picks(path) for path in coords]
    tables = [table.of_tomograms(names) if is_copick_locator(path) else table for table, path in zip(tables, coords)]
    assignment = assign_picks(tables, names)  # picks of other shards are no error
    paths = [path for path in every if in_shard(volume_name(path), settings.shard)]
    if not paths:  # a job of an array with nothing to do succeeds (predict and picks alike)
        log.info(
            "--shard %s: none of the %d tomograms falls in this shard; nothing to extract", settings.shard, len(every)
        )
        return ExtractionPlan([], float(settings.voxel_size or 0.0), settings)
    planned = []
    for path in paths:
        header = read_mrc(path, mmap=True, check=False)
        voxel_size = checked_voxel_size(header.isotropic_voxel_size, settings.input_voxel_size, str(path))
        centres = [
            table.voxels(rows, header.shape, voxel_size, settings.centre, settings.scale)
            for table, rows in assignment[volume_name(path)]
        ]
        if not centres:
            log.info("%s: no picks name this tomogram; skipped", path)
            continue
        rounded = np.rint(np.concatenate(centres)).astype(np.int64)
        inside = np.all((rounded >= 0) & (rounded < np.array(header.shape)), axis=1)
        if not inside.any():
            continue
        if not inside.all():
            log.warning("%s: %d pick(s) lie outside the tomogram and are left out", path, int((~inside).sum()))
        planned.append(TomogramPicks(path, header, voxel_size, rounded[inside], int((~inside).sum())))
    if not planned:
        raise VoxudaInputError(
            f"{_describe(coords)}: no pick lies inside its tomogram; check the coordinate units "
            "(RELION 5: angstrom from the centre; RELION 4, CSV: voxels; --scale for binning)"
        )
    voxel_size = _box_voxel_size(planned, settings, coords)
    return ExtractionPlan(planned, voxel_size, _with_polarity(planned, settings, voxel_size))


def _with_polarity(planned: list[TomogramPicks], settings: ExtractSettings, voxel_size: float) -> ExtractSettings:
    """--polarity on up to 64 picked boxes (cropped on the tomogram's grid); auto flips --invert."""
    boxes = []
    for tomogram in planned:
        size = max(4, round(settings.box * voxel_size / tomogram.voxel_size))
        for centre in tomogram.centres[:: max(1, len(tomogram.centres) // 16)][:16]:
            boxes.append(_crop(tomogram.header.data, centre - size // 2, size))
    names = _describe([t.path for t in planned])
    if resolve_polarity(np.stack(boxes[:64]), settings.polarity, f"extract {names}", settings.invert):
        return dataclasses.replace(settings, invert=not settings.invert)
    return settings


def _describe(paths: list[Path]) -> str:
    return str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"


def _box_voxel_size(planned: list[TomogramPicks], settings: ExtractSettings, coords: list[Path]) -> float:
    if settings.voxel_size is not None:
        return float(settings.voxel_size)
    sizes = sorted({round(t.voxel_size, 4) for t in planned})
    if len(sizes) > 1 and differs(sizes[-1], sizes[0], 1e-3):
        raise VoxudaInputError(
            f"{planned[0].path}: tomograms have voxel sizes {sizes} A; pass --voxel-size A to resample them to one"
        )
    return planned[0].voxel_size


def _crop(data: np.ndarray, start: np.ndarray, size: int) -> np.ndarray:
    """A cube of ``size`` from ``start`` (may reach past the border: filled with the inside's mean)."""
    lo = np.maximum(start, 0)
    hi = np.minimum(start + size, np.array(data.shape))
    inside = np.asarray(data[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], dtype=np.float32)
    if inside.shape == (size,) * 3:
        return inside
    cube = np.full((size,) * 3, float(inside.mean()) if inside.size else 0.0, dtype=np.float32)
    offset = lo - start
    cube[tuple(slice(o, o + n) for o, n in zip(offset, inside.shape))] = inside
    return cube


def outside_fraction(centre: np.ndarray, half: float, shape: tuple[int, ...]) -> float:
    """Fraction of a box (``half`` source voxels either side of ``centre``) that lies beyond the tomogram."""
    lo, hi = centre - half, centre + half
    inside = np.clip(np.minimum(hi, np.array(shape) - 0.5) - np.maximum(lo, -0.5), 0, None)
    fraction = float(1.0 - np.prod(inside) / (2 * half) ** 3)
    return fraction if fraction > 1e-9 else 0.0  # rounding of a box that fits exactly


def _half_width(tomogram: TomogramPicks, box: int, voxel_size: float) -> float:
    """The box's half-width in tomogram voxels."""
    return box / 2 * voxel_size / tomogram.voxel_size


def kept_rows(tomogram: TomogramPicks, box: int, voxel_size: float, border: str) -> list[int]:
    """The picks whose boxes are written: all with --border pad, those inside the tomogram with skip."""
    half = _half_width(tomogram, box, voxel_size)
    shape = tomogram.header.data.shape
    return [row for row, centre in enumerate(tomogram.centres)
            if border == "pad" or outside_fraction(centre, half, shape) <= 0.0]  # fmt: skip


def iter_boxes(
    tomogram: TomogramPicks, box: int, voxel_size: float, border: str = "pad"
) -> Iterator[tuple[int, np.ndarray, float]]:
    """Yield ``(row, box, padded_fraction)`` per pick, in z order, ``BATCH`` boxes resampled at a time."""
    data = tomogram.header.data
    ratio = voxel_size / tomogram.voxel_size
    if differs(voxel_size, tomogram.voxel_size, 1e-3):
        n_source, n_out = matched_sizes(box, ratio, margin=max(4, box // 8))
    else:
        n_source = n_out = box
    cut = n_out // 2 - box // 2
    half = _half_width(tomogram, box, voxel_size)
    order = np.argsort(tomogram.centres[:, 0], kind="stable")
    released = 0
    for first in range(0, len(order), BATCH):
        rows = order[first : first + BATCH]
        outside = [outside_fraction(tomogram.centres[row], half, data.shape) for row in rows]
        keep = [i for i, fraction in enumerate(outside) if border == "pad" or fraction <= 0.0]
        if keep:
            stack = np.stack([_crop(data, tomogram.centres[rows[i]] - n_source // 2, n_source) for i in keep])
            if n_out != n_source:
                stack = fourier_resample(stack, (n_out,) * 3)
            stack = stack[:, cut : cut + box, cut : cut + box, cut : cut + box]
            for slot, i in enumerate(keep):
                yield int(rows[i]), np.ascontiguousarray(stack[slot]), outside[i]
        below = int(tomogram.centres[order[min(first + BATCH, len(order) - 1)], 0]) - n_source // 2
        if below > released:  # picks are in z order: nothing above this row is read again
            release_rows(data, released, below)
            released = below


def write_subtomograms(
    output: Path,
    plan: ExtractionPlan,
    provenance_json: str,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Extract every planned pick into ``output`` (written atomically); returns a summary.

    A plan without tomograms (an empty --shard) writes nothing.
    """
    settings = plan.settings
    if not plan.tomograms:
        return {"output": None, "subtomograms": 0, "box": settings.box, "voxel_size": plan.voxel_size, "tomograms": []}
    parents = {}
    records = []
    attrs = {"coordinates": "centre", "box": settings.box, "provenance": provenance_json}
    with DatasetWriter(output, (settings.box,) * 3, plan.voxel_size, "subtomograms", attrs) as writer:
        for tomogram in plan.tomograms:
            written = padded_count = 0
            for row, cube, padded in iter_boxes(tomogram, settings.box, plan.voxel_size, settings.border):
                centre = tuple(int(c) for c in tomogram.centres[row])
                writer.append(
                    -cube if settings.invert else cube,
                    f"{tomogram.name}_{row:05d}",
                    coords=centre,  # type: ignore[arg-type]  # a centre of 3 ints
                    parent=tomogram.name,
                    params={"padded": padded},
                )
                written += 1
                padded_count += padded > 0
                if on_progress is not None:
                    on_progress(1, tomogram.name)
            skipped = len(tomogram.centres) - written  # --border skip: not in the bar's total either
            parents[tomogram.name] = _parent_info(tomogram).to_json()
            records.append(_record(tomogram, written, padded_count, skipped))
        writer.set_attr("parents_info", json.dumps(parents))
    return {
        "output": str(output),
        "subtomograms": sum(r["extracted"] for r in records),
        "box": settings.box,
        "voxel_size": plan.voxel_size,
        "tomograms": records,
    }


def _parent_info(tomogram: TomogramPicks) -> ParentInfo:
    shape = tuple(int(n) for n in tomogram.header.shape)
    voxel_size = (tomogram.voxel_size,) * 3
    return ParentInfo(shape, voxel_size, tomogram.header.origin, shape, voxel_size)  # type: ignore[arg-type]  # a 3D shape: mypy cannot count a generator's tuple


def _record(tomogram: TomogramPicks, written: int, padded: int, skipped: int) -> dict[str, Any]:
    return {
        "name": tomogram.name,
        "shape": list(tomogram.header.shape),
        "voxel_size": tomogram.voxel_size,
        "picks": len(tomogram.centres) + tomogram.outside,
        "extracted": written,
        "padded": padded,
        "skipped_border": skipped,
        "skipped_outside": tomogram.outside,
    }
