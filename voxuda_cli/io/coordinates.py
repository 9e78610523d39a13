"""Particle picks from RELION 4/5 STAR, CSV/TSV and IMOD ``.mod`` files, read with the field's libraries.

Every reader gives a :class:`PickTable`: positions (x, y, z) as written, their unit, an optional
shift in angstrom (RELION's ``rlnOriginX/Y/ZAngst``, subtracted) and the tomogram each pick names.
:meth:`PickTable.voxels` turns them into (z, y, x) voxel indices of a given tomogram:

- RELION 4 (``rlnCoordinateX/Y/Z``), CSV/TSV (``x, y, z`` columns): tomogram voxels, index 0 at
  the centre of the first voxel (RELION's and membrain-seg's convention); ``scale`` multiplies
  them first (picks made on a tomogram binned differently from the one given);
- RELION 5 (``rlnCenteredCoordinateX/Y/ZAngst``): angstrom from the tomogram's centre. Where that
  centre is differs between RELION's own programs (relion #1137, #1280): ``centre="half"`` puts
  it at voxel ``size / 2`` (``ParticleSet::getPosition``, the C++ code that extracts), and
  ``centre="half-minus-one"`` at ``size / 2 - 1`` (the Python particle picker's export);
- IMOD models: IMOD puts the centre of voxel (0, 0, 0) at model point (0.5, 0.5, 0), so 0.5 is
  taken off x and y;
- copick picks (``copick.json:object=NAME[:user=U][:session=S]``, io.copick): angstrom with voxel
  (0, 0, 0) at 0, each pick named by its run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.copick import is_copick_locator

CENTRE_CHOICES = ("half", "half-minus-one")
STAR_SUFFIXES = (".star",)
TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
MOD_SUFFIXES = (".mod",)
_RELION4 = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
_RELION5 = ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst")
_ORIGIN = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")
_NAME_COLUMNS = ("rlnTomoName", "rlnMicrographName")
_TOMOGRAM_SUFFIXES = (".mrc", ".rec", ".map", ".st", ".mrcs", ".tomostar", ".zarr")


@dataclass
class PickTable:
    """Picks of one coordinate file; ``xyz`` (N, 3) in ``unit`` ("voxels", "centred-angstrom" or
    "angstrom": voxel (0, 0, 0) at 0, copick's)."""

    source: Path
    xyz: np.ndarray
    unit: str
    tomograms: list[str | None]
    shift_angstrom: np.ndarray  # (N, 3) x, y, z; subtracted from the position

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    def of_tomograms(self, names: Sequence[str]) -> PickTable:
        """The picks naming one of ``names`` (a project's picks cover runs not given)."""
        wanted = set(names)
        rows = np.flatnonzero([name in wanted for name in self.tomograms])
        return PickTable(self.source, self.xyz[rows], self.unit, [self.tomograms[i] for i in rows],
                         self.shift_angstrom[rows])  # fmt: skip

    def voxels(
        self,
        rows: np.ndarray,
        shape: Sequence[int],
        voxel_size: float,
        centre: str = "half",
        scale: float = 1.0,
    ) -> np.ndarray:
        """(len(rows), 3) voxel positions (z, y, x), float, in a tomogram of ``shape`` (z, y, x) and ``voxel_size``."""
        xyz = self.xyz[rows].astype(np.float64)
        shift = self.shift_angstrom[rows] / voxel_size
        if self.unit == "centred-angstrom":
            middle = np.array([int(n) for n in shape][::-1], dtype=np.float64) / 2.0
            if centre == "half-minus-one":
                middle -= 1.0
            xyz = xyz / voxel_size + middle
        elif self.unit == "angstrom":
            xyz = xyz / voxel_size
        else:
            xyz = xyz * scale
        return (xyz - shift)[:, ::-1].copy()


def read_picks(path: Path | str) -> PickTable:
    """Read one coordinate file (kind by suffix); one-line error naming the file when it holds no picks."""
    if is_copick_locator(path):
        table = _read_copick(Path(path))
        if len(table) == 0:
            raise VoxudaInputError(f"{path}: the project holds no such picks; check object, user and session")
        return table
    path = Path(path)
    if not path.is_file():
        raise VoxudaInputError(f"{path}: coordinate file not found; check the path")
    suffix = path.suffix.lower()
    if suffix in STAR_SUFFIXES:
        table = _read_star(path)
    elif suffix in TABLE_SUFFIXES:
        table = _read_table(path)
    elif suffix in MOD_SUFFIXES:
        table = _read_mod(path)
    else:
        raise VoxudaInputError(
            f"{path}: unknown coordinate file; pass a RELION .star, a .csv/.tsv with x, y, z columns or an IMOD .mod"
        )
    if len(table) == 0:
        raise VoxudaInputError(f"{path}: holds no picks; check the file")
    if not np.isfinite(table.xyz).all() or not np.isfinite(table.shift_angstrom).all():
        raise VoxudaInputError(f"{path}: coordinates contain NaN or Inf; fix the file")
    return table


def _read_copick(path: Path) -> PickTable:
    from voxuda_cli.io.copick import read_picks as read_copick_picks

    xyz, runs = read_copick_picks(path)
    return PickTable(path, xyz, "angstrom", list(runs), np.zeros_like(xyz))


def _read_star(path: Path) -> PickTable:
    import starfile

    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # the parser raises many kinds on a broken file
        raise VoxudaInputError(f"{path}: not a readable STAR file ({exc}); check the file") from exc
    for frame in blocks.values():
        columns = getattr(frame, "columns", ())
        for names, unit in ((_RELION5, "centred-angstrom"), (_RELION4, "voxels")):
            if all(name in columns for name in names):
                xyz = frame[list(names)].to_numpy(dtype=np.float64)
                shift = np.zeros_like(xyz)
                for axis, name in enumerate(_ORIGIN):
                    if name in columns:
                        shift[:, axis] = frame[name].to_numpy(dtype=np.float64)
                tomograms = _names(frame, next((c for c in _NAME_COLUMNS if c in columns), None))
                return PickTable(path, xyz, unit, tomograms, shift)
    raise VoxudaInputError(
        f"{path}: no coordinate columns ({', '.join(_RELION4)} or {', '.join(_RELION5)}); "
        "pass a RELION particle STAR file"
    )


def _names(frame: object, column: str | None) -> list[str | None]:
    if column is None:
        return [None] * len(frame)  # type: ignore[arg-type]  # no tomogram column: every pick unnamed
    return [tomogram_key(str(value)) for value in frame[column]]  # type: ignore[index]  # a pandas column


def tomogram_key(name: str) -> str:
    """The name a pick file uses for a tomogram, reduced to a file stem (folders and known suffixes dropped)."""
    base = Path(name).name
    for suffix in _TOMOGRAM_SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def _read_table(path: Path) -> PickTable:
    import pandas as pd

    try:
        frame = pd.read_csv(path, sep=None, engine="python", comment="#")
    except Exception as exc:  # pandas raises several kinds on malformed text
        raise VoxudaInputError(f"{path}: not a readable CSV/TSV table ({exc}); check the file") from exc
    columns = {str(c).strip().lower(): c for c in frame.columns}
    if not all(axis in columns for axis in ("x", "y", "z")):
        raise VoxudaInputError(f"{path}: needs x, y, z columns (tomogram voxels), found {list(frame.columns)[:6]}")
    try:
        xyz = frame[[columns["x"], columns["y"], columns["z"]]].to_numpy(dtype=np.float64)
    except ValueError as exc:
        raise VoxudaInputError(f"{path}: x, y, z must be numbers ({exc})") from exc
    return PickTable(path, xyz, "voxels", _names(frame, columns.get("tomogram")), np.zeros_like(xyz))


def _read_mod(path: Path) -> PickTable:
    import imodmodel

    try:
        model = imodmodel.ImodModel.from_file(path)
    except Exception as exc:  # the binary parser raises several kinds on a broken file
        raise VoxudaInputError(f"{path}: not a readable IMOD model ({exc}); check the file") from exc
    points = [c.points for o in model.objects for c in o.contours if len(c.points)]
    xyz = np.concatenate(points).astype(np.float64) if points else np.zeros((0, 3))  # x, y, z per point
    xyz = xyz - np.array([0.5, 0.5, 0.0])  # IMOD: voxel (0, 0, 0) is centred at (0.5, 0.5, 0)
    return PickTable(path, xyz, "voxels", [None] * len(xyz), np.zeros_like(xyz))


def assign_picks(
    tables: Sequence[PickTable], tomograms: Sequence[str]
) -> dict[str, list[tuple[PickTable, np.ndarray]]]:
    """Which rows of which table belong to which tomogram (by stem); errors name the coordinate file.

    A pick names its tomogram (STAR ``rlnTomoName``/``rlnMicrographName``, a CSV ``tomogram``
    column); a file without names belongs to the tomogram whose stem it starts with, or to the
    only tomogram given.
    """
    known = set(tomograms)
    result: dict[str, list[tuple[PickTable, np.ndarray]]] = {name: [] for name in tomograms}
    for table in tables:
        names = [name if name is not None else _file_tomogram(table, tomograms) for name in table.tomograms]
        missing = sorted({name for name in names if name not in known})
        if missing:
            raise VoxudaInputError(
                f"{table.source}: picks name tomogram(s) {', '.join(missing[:3])} that are not given "
                f"(given: {', '.join(sorted(known)[:5])}); pass those tomograms too"
            )
        labels = np.asarray(names, dtype=object)
        for name in tomograms:
            rows = np.flatnonzero(labels == name)
            if rows.size:
                result[name].append((table, rows))
    return result


def _file_tomogram(table: PickTable, tomograms: Sequence[str]) -> str:
    stem = table.source.stem
    matches = [name for name in tomograms if stem.startswith(name)]
    if matches:
        return max(matches, key=len)
    if len(tomograms) == 1:
        return tomograms[0]
    raise VoxudaInputError(
        f"{table.source}: picks do not say which tomogram they belong to; name the file after its tomogram "
        "(e.g. TS_01.csv for TS_01.mrc), add a tomogram column, or extract one tomogram at a time"
    )


def _write_copick(path: Path, rows: list[dict[str, object]], tomograms: Sequence[str]) -> None:
    from voxuda_cli.io.copick import parse_locator
    from voxuda_cli.io.copick import write_picks as write_copick_picks

    runs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in dict.fromkeys([*tomograms, *(str(row["tomogram"]) for row in rows)]):
        mine = [row for row in rows if row["tomogram"] == name]
        xyz = np.array([[row[a] for a in "xyz"] for row in mine], dtype=np.float64).reshape(-1, 3)
        sizes = np.array([row["voxel_size"] for row in mine], dtype=np.float64)
        scores = np.array([row.get("mean_probability", 1.0) for row in mine], dtype=np.float64)
        runs[name] = (xyz * sizes[:, None], scores)
    write_copick_picks(parse_locator(path), runs)


# ---- writing picks: the inverse of PickTable.voxels ------------------------------------------------

PICK_FORMATS = ("relion5", "relion4", "csv")


def centred_angstrom(zyx: np.ndarray, shape: Sequence[int], voxel_size: float, centre: str = "half") -> np.ndarray:
    """(N, 3) voxel positions (z, y, x) -> RELION 5's (x, y, z) angstrom from the tomogram's centre."""
    middle = np.array([int(n) for n in shape][::-1], dtype=np.float64) / 2.0
    if centre == "half-minus-one":
        middle -= 1.0
    return (np.asarray(zyx, dtype=np.float64)[:, ::-1] - middle) * float(voxel_size)


def pick_format(path: Path) -> str:
    """``relion5`` for .star (``relion4`` on request), ``csv`` for .csv/.tsv, ``copick`` for a
    project's picks (``copick.json:object=NAME:user=U:session=S``); others refused."""
    if is_copick_locator(path):
        return "copick"
    suffix = path.suffix.lower()
    if suffix in STAR_SUFFIXES:
        return "relion5"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise VoxudaInputError(
        f"-o {path}: picks are written as .star (RELION), .csv/.tsv or copick.json:object=NAME:user=U:session=S"
    )


def write_picks(
    path: Path, rows: list[dict[str, object]], star: str = "relion5", tomograms: Sequence[str] = ()
) -> None:
    """Write particle rows atomically: RELION 5 STAR (centred angstrom, rlnTomoName), RELION 4 STAR
    (voxels, rlnMicrographName) or CSV/TSV (x, y, z in voxels plus every measured column).

    Each row holds ``tomogram``, ``x``, ``y``, ``z`` (voxels), ``x_angst``/``y_angst``/``z_angst``
    (centred angstrom), ``voxel_size`` and its measurements (``volume_voxels``, ``volume_angst3``,
    ``mean_probability``). copick: one pick set per tomogram (a run) of ``tomograms``, empty ones too.
    """
    kind = pick_format(path)
    if kind == "copick":
        _write_copick(path, rows, tomograms)
        return
    import pandas as pd
    import starfile

    from voxuda_cli.io.atomic import atomic_output

    # no particle (an empty tomogram, an empty shard): a file with the columns and no rows
    empty = ["tomogram", "x", "y", "z", "x_angst", "y_angst", "z_angst", "volume_voxels", "volume_angst3"]
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=empty)
    measured = [c for c in ("volume_voxels", "volume_angst3", "mean_probability") if c in frame]
    if kind == "csv":
        table = frame[["tomogram", "x", "y", "z", *measured]]
        with atomic_output(path) as tmp:
            table.to_csv(tmp, sep="\t" if path.suffix.lower() == ".tsv" else ",", index=False)
        return
    if star == "relion4":
        columns = {"tomogram": "rlnMicrographName", "x": _RELION4[0], "y": _RELION4[1], "z": _RELION4[2]}
    else:
        columns = {"tomogram": "rlnTomoName", "x_angst": _RELION5[0], "y_angst": _RELION5[1], "z_angst": _RELION5[2]}
    table = frame[list(columns)].rename(columns=columns)
    for name in measured:  # RELION ignores columns it does not know; they stay readable
        table[f"voxuda_{name}"] = frame[name]
    with atomic_output(path) as tmp:
        starfile.write({"particles": table}, tmp, overwrite=True)
