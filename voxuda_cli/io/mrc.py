"""MRC (.mrc/.map/.rec/.st) read and write that keep voxel size, origin and labels."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import mrcfile
import numpy as np

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.atomic import atomic_output, reserve
from voxuda_cli.io.volume import FINITE_CHECK_ROWS, Volume, check_finite  # noqa: F401 (check_finite re-exported)
from voxuda_cli.io.zarr import is_zarr_path, read_zarr, write_ome_zarr

MRC_SUFFIXES = (".mrc", ".map", ".rec", ".st", ".mrcs", ".ali")


def is_mrc_path(path: Path) -> bool:
    return path.suffix.lower() in MRC_SUFFIXES


def _geometry(mrc: mrcfile.mrcfile.MrcFile) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    size = mrc.voxel_size
    voxel_size = (float(size.z), float(size.y), float(size.x))
    if any(v <= 0 for v in voxel_size):
        # An unset header (0) means "unknown": kept as 0, never made up; a command that needs the
        # voxel size refuses it or takes --input-voxel-size (io.volume.checked_voxel_size).
        voxel_size = (0.0, 0.0, 0.0)
    origin_rec = mrc.header.origin
    origin = (float(origin_rec.z), float(origin_rec.y), float(origin_rec.x))
    return voxel_size, origin


def _labels(mrc: mrcfile.mrcfile.MrcFile) -> list[str]:
    count = int(mrc.header.nlabl)
    labels = []
    for raw in mrc.header.label[:count]:
        text = bytes(raw).decode("ascii", errors="replace").rstrip("\x00 ").rstrip()
        if text:
            labels.append(text)
    return labels


def read_mrc(path: Path | str, mmap: bool = False, check: bool = True) -> Volume:
    """Read a 3D MRC volume. With ``mmap`` the data stays on disk (read-only memory map).

    An OME-Zarr folder (``.zarr``, the optional extra) is read here too, lazily (``io.zarr``).
    """
    path = Path(path)
    if is_zarr_path(path):
        volume = read_zarr(path, check)
        return volume if mmap else volume.with_data(np.asarray(volume.data[:]))
    if not path.is_file():
        raise VoxudaInputError(f"{path}: file not found; check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, mode="r", permissive=False, header_only=True) as mrc:
                voxel_size, origin = _geometry(mrc)
                labels = _labels(mrc)
                header = mrc.header
                shape = (int(header.nz), int(header.ny), int(header.nx))
                data_offset = 1024 + int(header.nsymbt)
                dtype = mrcfile.utils.data_dtype_from_header(header)
    except (ValueError, OSError, EOFError) as exc:
        raise VoxudaInputError(f"{path}: not a readable MRC file ({exc}); check the file format") from exc
    if min(shape) <= 1:
        raise VoxudaInputError(f"{path}: volume has shape {shape}, not a 3D volume; pass a 3D MRC")
    expected = data_offset + int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size < expected:
        raise VoxudaInputError(
            f"{path}: truncated MRC ({path.stat().st_size} bytes, header promises {expected}); re-copy the file"
        )
    data: np.ndarray = np.memmap(path, dtype=dtype, mode="r", offset=data_offset, shape=shape)
    if not mmap:
        data = np.array(data)
    if check:
        check_finite(data, f"{path}:")
    return Volume(data=data, voxel_size=voxel_size, origin=origin, labels=labels)


def _set_header(mrc: mrcfile.mrcfile.MrcFile, volume_like: Volume, extra_label: str | None) -> None:
    vz, vy, vx = volume_like.voxel_size
    mrc.voxel_size = (vx, vy, vz)
    oz, oy, ox = volume_like.origin
    mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = ox, oy, oz
    labels = list(volume_like.labels)
    if extra_label:
        labels.append(extra_label)
    labels = labels[-10:]  # MRC holds ten 80-character labels; keep the most recent
    mrc.header.nlabl = len(labels)
    for index, text in enumerate(labels):
        mrc.header.label[index] = text[:80].encode("ascii", errors="replace")


def _mrc_array(data: np.ndarray) -> np.ndarray:
    """Map dtypes MRC cannot hold onto ones it can (bool/uint8 masks become int8, float64 float32)."""
    if data.dtype == np.bool_ or data.dtype == np.uint8:
        return data.astype(np.int8)
    if data.dtype == np.float64:
        return data.astype(np.float32)
    return data


def write_mrc(path: Path | str, volume: Volume, label: str | None = None) -> None:
    """Write a volume atomically, keeping voxel size, origin and labels (plus ``label`` if given)."""
    path = Path(path)
    data = np.ascontiguousarray(_mrc_array(np.asarray(volume.data)))
    with atomic_output(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.new(tmp, overwrite=True) as mrc:
                mrc.set_data(data)
                _set_header(mrc, volume, label)
                mrc.update_header_stats()


@contextlib.contextmanager
def create_mrc_memmap(
    path: Path | str,
    shape: tuple[int, ...],
    like: Volume,
    dtype: np.dtype | type = np.float32,
    label: str | None = None,
    after_chunk: Callable[[np.ndarray, int, int], None] | None = None,
) -> Iterator[np.ndarray]:
    """Create an MRC on disk and yield its writable memory map; renamed into place on success.

    For outputs larger than memory (whole-tomogram predictions): fill the map slab by slab.
    ``like`` gives voxel size, origin and labels. ``after_chunk(data, start, stop)``, if given, is
    called after the closing header-statistics pass has read rows ``start:stop`` (e.g. to drop
    their pages from memory).
    """
    mode = {np.dtype(np.float32): 2, np.dtype(np.int8): 0, np.dtype(np.float16): 12, np.dtype(np.int16): 1}
    mrc_mode = mode[np.dtype(dtype)]
    with atomic_output(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.new_mmap(tmp, shape=shape, mrc_mode=mrc_mode, overwrite=True) as mrc:
                reserve(tmp, tmp.stat().st_size)
                _set_header(mrc, like, label)
                yield mrc.data
                _set_stats_chunked(mrc, after_chunk)
                mrc.flush()


def _set_stats_chunked(
    mrc: mrcfile.mrcfile.MrcFile, after_chunk: Callable[[np.ndarray, int, int], None] | None = None
) -> None:
    """Header min/max/mean/rms without a full-size temporary (update_header_stats makes one)."""
    data = mrc.data
    count = 0
    total = 0.0
    total_sq = 0.0
    low, high = np.inf, -np.inf
    for start in range(0, data.shape[0], FINITE_CHECK_ROWS):
        slab = np.asarray(data[start : start + FINITE_CHECK_ROWS], dtype=np.float64)
        count += slab.size
        total += float(slab.sum())
        total_sq += float(np.square(slab).sum())
        low, high = min(low, float(slab.min())), max(high, float(slab.max()))
        if after_chunk is not None:
            after_chunk(data, start, start + FINITE_CHECK_ROWS)
    mean = total / max(count, 1)
    mrc.header.dmin, mrc.header.dmax, mrc.header.dmean = low, high, mean
    mrc.header.rms = float(np.sqrt(max(total_sq / max(count, 1) - mean * mean, 0.0)))


def mrc_to_ome_zarr(mrc_path: Path | str, path: Path | str, label: str | None = None) -> None:
    """An MRC volume (read through a memory map) as an OME-Zarr image (or ``label``) with its voxel size and origin."""
    volume = read_mrc(mrc_path, mmap=True, check=False)
    write_ome_zarr(path, volume.data, volume.voxel_size, volume.origin, label)
