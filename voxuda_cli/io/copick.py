"""copick projects (the ``copick`` package, an optional extra: ``pip install 'voxuda[copick]'``).

A project is named by its configuration file (local filesystem projects); what to read or write
follows it as ``:KEY=VALUE`` parts, one shell word with nothing to quote:

- ``copick.json:tomogram=wbp:spacing=10`` the ``wbp`` tomograms at 10 A of every run
  (``:runs=TS_01,TS_02`` for some): inputs of ``predict``, ``extract``, ``ibf-denoise``;
- ``copick.json:segmentation=ribosome:user=voxuda:session=1`` segmentations: ``predict -o``
  writes them (a label image per run, at the input's voxel spacing), ``picks`` reads them;
- ``copick.json:object=ribosome:user=voxuda:session=1`` picks: ``picks -o`` writes them (each
  particle's mean probability as its score), ``extract --coords`` reads them (``user``,
  ``session`` optional there: every matching set).

Tomograms and segmentations of a filesystem project are OME-Zarr stores on disk: voxuda reads them
as any OME-Zarr input (lazily, geometry from their metadata), named after their run
(:func:`run_name`, copick's folder layout). What voxuda writes goes through copick's own writers,
so copick's napari and ChimeraX tools show it. copick's pick locations are angstrom with voxel
(0, 0, 0) at 0: location = voxel index x voxel spacing (what copick's tools and the data portal use).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from voxuda_cli.errors import VoxudaInputError

CONFIG_SUFFIX = ".json"
KEYS = ("tomogram", "spacing", "runs", "segmentation", "object", "user", "session")
NAMES = ("segmentation", "object", "user", "session")  # copick cleans these on writing (sanitize_name)
_LOCATOR = re.compile(r"^(?P<config>.*?\.json)(?::(?P<parts>.*))?$", re.IGNORECASE)
COMPLETE_ATTR = "voxuda_complete"  # set on a segmentation once copick has written all of it
EXTRA = "pip install 'voxuda[copick]'"


@dataclass(frozen=True)
class CopickLocator:
    """A parsed ``CONFIG.json:KEY=VALUE...`` argument."""

    text: str
    config: Path
    parts: dict[str, str]

    def get(self, key: str) -> str | None:
        return self.parts.get(key)

    @cached_property
    def project(self) -> Any:
        """The copick root of the configuration, opened once per locator (a command plans,
        checks and writes through one locator: the project is not read again per run)."""
        try:
            import copick
        except ImportError:
            raise VoxudaInputError(f"{self.config}: copick projects need the optional extra: {EXTRA}") from None
        try:
            return copick.from_file(str(self.config))
        except Exception as exc:  # pydantic, JSON and filesystem errors alike
            raise VoxudaInputError(f"{self.config}: not a readable copick configuration ({exc})") from exc

    @property
    def spacing(self) -> float | None:
        return float(self.parts["spacing"]) if "spacing" in self.parts else None

    @property
    def runs(self) -> list[str] | None:
        return self.parts["runs"].split(",") if "runs" in self.parts else None

    def require(self, *keys: str, what: str) -> None:
        missing = [key for key in keys if key not in self.parts]
        if missing:
            example = ":".join(f"{key}=..." for key in keys)
            raise VoxudaInputError(f"{self.text}: {what} needs {', '.join(missing)}; e.g. {self.config}:{example}")


def is_copick_locator(value: Path | str) -> bool:
    """Whether an argument names a copick project (its configuration file, maybe with :KEY=VALUE parts)."""
    return _LOCATOR.match(str(value)) is not None


def parse_locator(value: Path | str) -> CopickLocator:
    """``CONFIG.json:KEY=VALUE...`` -> a locator; unknown keys and a missing file are one-line errors."""
    text = str(value)
    match = _LOCATOR.match(text)
    if match is None:
        raise VoxudaInputError(f"{text}: not a copick locator; name the project's configuration (.json) first")
    config, pieces = match["config"], (match["parts"] or "").split(":") if match["parts"] else []
    parts: dict[str, str] = {}
    for piece in pieces:
        key, sep, item = piece.partition("=")
        if not sep or key not in KEYS or not item:
            raise VoxudaInputError(f"{text}: {piece!r} is not KEY=VALUE with KEY one of {', '.join(KEYS)}")
        if key in parts:
            raise VoxudaInputError(f"{text}: {key} is given twice; give it once")
        parts[key] = _clean(item) if key in NAMES else item
    if "spacing" in parts:
        try:
            ok = float(parts["spacing"]) > 0 and math.isfinite(float(parts["spacing"]))
        except ValueError:
            ok = False
        if not ok:
            raise VoxudaInputError(f"{text}: spacing={parts['spacing']} is not a voxel spacing in angstrom")
    if not Path(config).is_file():
        raise VoxudaInputError(f"{config}: copick configuration not found; check the path")
    return CopickLocator(text, Path(config), parts)


def _clean(name: str) -> str:
    """A name as copick stores it (its sanitize_name: "my_user" is written as "my-user"), so that
    what voxuda writes is found again under the name given."""
    try:
        from copick.util.escape import sanitize_name
    except ImportError:  # without copick, open_project says what to install
        return name
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # copick warns on every cleaned name
        return str(sanitize_name(name))


def open_project(locator: CopickLocator) -> Any:
    """The copick root of a locator's configuration (copick's own reader), once per locator."""
    return locator.project


def run_name(path: Path) -> str | None:
    """The run a store of a copick filesystem project belongs to (None for any other path).

    copick's layout: ``ExperimentRuns/<run>/VoxelSpacing<A>/<type>.zarr`` (tomograms) and
    ``ExperimentRuns/<run>/Segmentations/<A>_<user>_<session>_<name>.zarr``.
    """
    folder = path.parent
    if folder.parent.parent.name != "ExperimentRuns":
        return None
    if folder.name.startswith("VoxelSpacing") or folder.name == "Segmentations":
        return folder.parent.name
    return None


def _runs(root: Any, locator: CopickLocator) -> list[Any]:
    runs = list(root.runs)
    wanted = locator.runs
    if wanted is None:
        return runs
    unknown = sorted(set(wanted) - {run.name for run in runs})
    if unknown:
        raise VoxudaInputError(f"{locator.text}: no run {unknown[0]} in the project ({len(runs)} runs)")
    return [run for run in runs if run.name in wanted]


def _local_path(item: Any, locator: CopickLocator) -> Path:
    store = item.zarr()
    path = getattr(store, "path", None)
    protocol = getattr(getattr(store, "fs", None), "protocol", ("file",))
    if path is None or not {"file", "local"} & set(np.atleast_1d(protocol).tolist()):
        raise VoxudaInputError(f"{locator.text}: voxuda reads copick projects on a local filesystem")
    return Path(path)


def input_stores(value: Path | str) -> list[Path]:
    """The OME-Zarr stores an input locator names: one tomogram or segmentation per run that has it."""
    locator = parse_locator(value)
    root = open_project(locator)
    if locator.get("tomogram") is not None:
        locator.require("tomogram", "spacing", what="reading tomograms")
        found = [_tomogram(run, locator) for run in _runs(root, locator)]
        what = f"a {locator.get('tomogram')} tomogram at {locator.spacing:g} A"
    elif locator.get("segmentation") is not None:
        found = [_segmentation(run, locator) for run in _runs(root, locator)]
        what = f"a {locator.get('segmentation')} segmentation"
    else:
        raise VoxudaInputError(f"{locator.text}: say what to read, e.g. {locator.config}:tomogram=wbp:spacing=10")
    stores = [_local_path(item, locator) for item in found if item is not None]
    if not stores:
        raise VoxudaInputError(f"{locator.text}: no run of the project has {what}; check the names")
    return stores


def _tomogram(run: Any, locator: CopickLocator) -> Any:
    spacing = run.get_voxel_spacing(locator.spacing)
    tomograms = spacing.get_tomograms(locator.get("tomogram")) if spacing is not None else []
    return tomograms[0] if tomograms else None


def _segmentation(run: Any, locator: CopickLocator) -> Any:
    found = run.get_segmentations(
        name=locator.get("segmentation"),
        user_id=locator.get("user"),
        session_id=locator.get("session"),
        voxel_size=locator.spacing,
    )
    if len(found) > 1:
        which = ", ".join(f"{s.user_id}/{s.session_id} at {s.voxel_size:g} A" for s in found[:4])
        raise VoxudaInputError(f"{locator.text}: run {run.name} has several such segmentations ({which}); "
                               "add user, session or spacing")  # fmt: skip
    return found[0] if found else None


# ---- writing ------------------------------------------------------------------------------------


def check_output(value: Path | str | CopickLocator, kind: str, runs: list[str]) -> CopickLocator:
    """A writable output locator of ``kind`` ("segmentation" or "object") for ``runs``, checked before work."""
    locator = value if isinstance(value, CopickLocator) else parse_locator(value)
    locator.require(kind, "user", "session", what=f"writing {'picks' if kind == 'object' else 'segmentations'}")
    root = open_project(locator)
    if root.get_object(locator.get(kind)) is None:
        names = ", ".join(o.name for o in root.pickable_objects)
        raise VoxudaInputError(f"{locator.text}: {locator.get(kind)} is not a pickable object of the project ({names})")
    known = {run.name for run in root.runs}
    missing = sorted(set(runs) - known)
    if missing:
        raise VoxudaInputError(
            f"{locator.text}: no run {missing[0]} in the project; name inputs after the project's runs"
        )
    return locator


def segmentation_complete(locator: CopickLocator, run: str, voxel_size: float) -> bool:
    """Whether voxuda finished writing this run's segmentation (copick writes a store in place)."""
    project_run = open_project(locator).get_run(run)
    found = _segmentation(project_run, _at(locator, voxel_size)) if project_run is not None else None
    if found is None:
        return False
    import zarr

    return bool(zarr.open_group(str(_local_path(found, locator)), mode="r").attrs.get(COMPLETE_ATTR, False))


def _at(locator: CopickLocator, voxel_size: float) -> CopickLocator:
    # copick names a segmentation's store by its spacing to 3 decimals, and reads that back
    return CopickLocator(locator.text, locator.config, {**locator.parts, "spacing": repr(round(voxel_size, 3))})


def write_segmentation(locator: CopickLocator, run: str, mask: np.ndarray, voxel_size: float) -> str:
    """One run's label image, through copick's writer, then marked complete; returns the store's path."""
    segmentation = (
        open_project(locator)
        .get_run(run)
        .new_segmentation(
            voxel_size=float(voxel_size),
            name=locator.get("segmentation"),
            session_id=locator.get("session"),
            is_multilabel=False,
            user_id=locator.get("user"),
            exist_ok=True,
        )
    )
    segmentation.from_numpy(np.asarray(mask, dtype=np.uint8))
    path = _local_path(segmentation, locator)
    import zarr

    zarr.open_group(str(path), mode="r+").attrs[COMPLETE_ATTR] = True
    return str(path)


def write_picks(locator: CopickLocator, runs: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """Each run's particles, ``{run: (positions (N, 3) x, y, z angstrom, scores (N,))}``, as copick picks."""
    root = open_project(locator)
    written = []
    for name, (positions, scores) in runs.items():
        picks = root.get_run(name).new_picks(
            locator.get("object"), locator.get("session"), locator.get("user"), exist_ok=True
        )
        picks.from_numpy(np.asarray(positions, dtype=float).reshape(-1, 3), scores=np.asarray(scores, dtype=float))
        written.append(f"{name}: {len(positions)} picks")
    return written


def read_picks(value: Path | str) -> tuple[np.ndarray, list[str]]:
    """Every pick set a locator names (object, and user / session where given): (N, 3) x, y, z
    angstrom (locations plus their transforms' shifts, as copick places particles) and each one's run."""
    locator = parse_locator(value)
    locator.require("object", what="reading picks")
    root = open_project(locator)
    positions, names = [], []
    for run in _runs(root, locator):
        for picks in run.get_picks(
            object_name=locator.get("object"), user_id=locator.get("user"), session_id=locator.get("session")
        ):
            found = picks.full_positions()
            positions.append(np.asarray(found, dtype=np.float64).reshape(-1, 3))
            names += [run.name] * len(found)
    return (np.concatenate(positions) if positions else np.zeros((0, 3))), names
