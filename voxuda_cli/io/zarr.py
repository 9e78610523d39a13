"""OME-Zarr volumes (the CZ cryoET data portal's and copick's format), an optional extra: ``pip install voxuda[zarr]``.

Reading: scale 0 of the first multiscale image, opened lazily with ``zarr`` (slices read only
the chunks they touch, so the streaming readers treat it like a memory map); voxel size and
origin from its ``scale`` and ``translation`` transforms, converted to angstrom from the axes'
units (OME-NGFF 0.4 ``multiscales`` attributes, or 0.5's ``ome.multiscales``).

Writing: ``ome_zarr.writer.write_multiscale`` (NGFF 0.4, what napari's OME-Zarr reader, copick and
the data portal read) with a pyramid of 2x and 4x downsampled levels (every 2nd / 4th voxel:
nearest neighbour, so labels stay labels, and each level's voxel 0 is scale 0's, so one
translation, the origin, serves all), from a dask array over the input (a memory map is read
chunk by chunk). The store is written into a temporary folder beside the target and renamed into
place when complete. The calls used are those ome-zarr 0.10-0.11 (zarr 2, what copick needs) and
0.12+ (zarr 3) share.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.atomic import file_mode
from voxuda_cli.io.outputs import ensure_folder
from voxuda_cli.io.volume import Volume, check_finite

ZARR_SUFFIX = ".zarr"
PYRAMID = (2, 4)  # downsampling factors of the levels after scale 0
CHUNK = 64
_TO_ANGSTROM = {"angstrom": 1.0, "nanometer": 10.0, "micrometer": 1e4, "": 1.0}


def is_zarr_path(path: Path | str) -> bool:
    return Path(path).suffix.lower() == ZARR_SUFFIX


def _zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise VoxudaInputError("OME-Zarr needs the optional extra: pip install 'voxuda[zarr]'") from None
    return zarr


def _multiscale(path: Path, group: Any) -> dict[str, Any]:
    attrs = dict(group.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        raise VoxudaInputError(f"{path}: no OME-Zarr multiscales metadata; pass an OME-Zarr image (or an MRC file)")
    return multiscales[0]


def _transforms(path: Path, multiscale: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    axes = multiscale.get("axes", [])
    units = [str(a.get("unit", "")) if isinstance(a, dict) else "" for a in axes][-3:] or [""] * 3
    unknown = sorted({u for u in units if u not in _TO_ANGSTROM})
    if unknown:
        raise VoxudaInputError(f"{path}: axis unit {unknown[0]} is not a length voxuda knows (angstrom, nanometer)")
    factor = np.array([_TO_ANGSTROM[u] for u in units])
    scale, translation = np.ones(3), np.zeros(3)
    for transform in multiscale["datasets"][0].get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            scale = np.asarray(transform["scale"], dtype=float)[-3:]
        elif transform.get("type") == "translation":
            translation = np.asarray(transform["translation"], dtype=float)[-3:]
    return scale * factor, translation * factor


def read_zarr(path: Path | str, check: bool = True) -> Volume:
    """Scale 0 of an OME-Zarr image as a lazily read Volume (z, y, x), geometry in angstrom."""
    path = Path(path)
    if not path.is_dir():
        raise VoxudaInputError(f"{path}: OME-Zarr folder not found; check the path")
    zarr = _zarr()
    try:
        group = zarr.open_group(str(path), mode="r")
        multiscale = _multiscale(path, group)
        array = group[multiscale["datasets"][0]["path"]]
    except (KeyError, ValueError, OSError) as exc:
        raise VoxudaInputError(f"{path}: not a readable OME-Zarr image ({exc}); check the store") from exc
    if array.ndim != 3 or min(array.shape) <= 1:
        raise VoxudaInputError(f"{path}: scale 0 has shape {array.shape}; voxuda reads 3D (z, y, x) volumes")
    voxel_size, origin = _transforms(path, multiscale)
    if check:
        check_finite(array, f"{path}:")
    return Volume(data=array, voxel_size=tuple(voxel_size), origin=tuple(origin))


def write_ome_zarr(
    path: Path | str,
    data: np.ndarray,
    voxel_size: tuple[float, ...],
    origin: tuple[float, ...],
    label: str | None = None,
) -> None:
    """Write a (D, H, W) array (a memory map is fine) as an OME-Zarr image with a pyramid, atomically.

    ``label`` marks it as an NGFF labels image (``image-label`` metadata, named ``label``: napari
    opens it as a labels layer), what masks are. Folders and files get the usual
    modes (0777 / 0666 minus the umask; the temporary folder is made 0700).
    """
    zarr = _zarr()
    import dask.array as da
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscale

    path = Path(path)
    ensure_folder(path.parent)
    spacing = np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,))
    translation = np.broadcast_to(np.asarray(origin, dtype=float), (3,)).tolist()
    levels = (1, *PYRAMID)
    transforms = [
        [{"type": "scale", "scale": (spacing * f).tolist()}, {"type": "translation", "translation": translation}]
        for f in levels
    ]
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        array = da.from_array(data, chunks=(CHUNK,) * 3)
        group = _new_group(zarr, folder)
        write_multiscale(
            [array[::f, ::f, ::f] for f in levels],
            group,
            fmt=FormatV04(),
            axes=[{"name": axis, "type": "space", "unit": "angstrom"} for axis in "zyx"],
            coordinate_transformations=transforms,
            storage_options={"chunks": (CHUNK,) * 3},
        )
        if label is not None:  # NGFF's mark of a labels image, what readers (napari) show as labels
            group.attrs["image-label"] = {"version": "0.4", "name": label}
        _share(folder)
        _replace_folder(folder, path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _new_group(zarr: Any, folder: Path) -> Any:
    """An empty zarr v2 group (NGFF 0.4's format) at ``folder``, with zarr 2 or zarr 3."""
    if int(str(zarr.__version__).split(".")[0]) >= 3:
        return zarr.open_group(str(folder), mode="w", zarr_format=2)
    return zarr.open_group(str(folder), mode="w")


def _share(folder: Path) -> None:
    """Give a store the modes of normally created folders and files (mkdtemp made its root 0700)."""
    files = file_mode()
    folders = files | ((files & 0o444) >> 2)  # x wherever r: 0644 -> 0755, 0664 -> 0775
    os.chmod(folder, folders)
    for root, names, filenames in os.walk(folder):
        for name in names:
            os.chmod(os.path.join(root, name), folders)
        for name in filenames:
            os.chmod(os.path.join(root, name), files)


def _replace_folder(folder: Path, path: Path) -> None:
    """Move a finished store onto ``path`` (an older store there is removed only once the new one exists)."""
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        os.replace(path, old)
        os.replace(folder, path)
        with contextlib.suppress(OSError):
            shutil.rmtree(old)
    else:
        os.replace(folder, path)
